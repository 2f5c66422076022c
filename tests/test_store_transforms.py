"""The store's fitted transforms (``transforms/``) travel with its shards: a store made by
``store merge``, ``compact`` into a new folder, or ``push`` then ``pull``, holds the same TF-IDF
file byte for byte, and extract grows it under the same config, the new films' rows equal to those
of growing the original store."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from cinefuse.cli import main as cli_main
from cinefuse.extract.config import ExtractConfig
from cinefuse.extract.run import run_extract
from cinefuse.store import open_store
from test_extract_catalogue import TEXT, write_items

NEW = [str(i) for i in range(31, 36)]


def transforms_of(root: Path) -> dict[str, str]:
    folder = root / "transforms"
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())} if folder.is_dir() else {}


@pytest.fixture
def grown(tmp_path):
    """A text-only store of 30 films, and the rows of 5 more films extracted into a copy of it."""
    store = tmp_path / "store"
    run_extract(ExtractConfig(manifest=str(write_items(tmp_path / "a.csv", 30)), store=str(store), **TEXT))
    assert len(transforms_of(store)) == 1
    reference = tmp_path / "reference"
    shutil.copytree(store, reference)
    more = write_items(tmp_path / "b.csv", 35)
    run_extract(ExtractConfig(manifest=str(more), store=str(reference), **TEXT))
    return store, more, open_store(reference).load(["text/tfidf", "meta/year"], ids=NEW)


def grows_like_the_original(store: Path, copy: Path, more: Path, expected) -> None:
    assert transforms_of(copy) == transforms_of(store)
    summary = run_extract(ExtractConfig(manifest=str(more), store=str(copy), **TEXT))
    assert (summary["processed"], summary["skipped"]) == (5, 30)
    table = open_store(copy).load(["text/tfidf", "meta/year"], ids=NEW)
    for name in ("text/tfidf", "meta/year"):
        assert table.features[name].tobytes() == expected.features[name].tobytes()


def test_a_merged_store_carries_its_transforms_and_grows(grown, tmp_path):
    store, more, expected = grown
    assert cli_main(["store", "merge", str(store), str(tmp_path / "merged")]) == 0
    grows_like_the_original(store, tmp_path / "merged", more, expected)


def test_a_store_compacted_into_a_new_folder_carries_its_transforms_and_grows(grown, tmp_path):
    store, more, expected = grown
    assert cli_main(["store", "compact", str(store), str(tmp_path / "compacted")]) == 0
    grows_like_the_original(store, tmp_path / "compacted", more, expected)


@pytest.mark.s3
def test_a_pushed_and_pulled_store_carries_its_transforms_and_grows(grown, tmp_path, s3_server):
    store, more, expected = grown
    uri, endpoint = f"s3://{s3_server.bucket}/stores/carried", s3_server.endpoint_url
    assert cli_main(["store", "push", str(store), uri, "--endpoint-url", endpoint]) == 0
    (name,) = transforms_of(store)
    keys = [o["Key"] for o in s3_server.client().list_objects_v2(Bucket=s3_server.bucket)["Contents"]]
    assert f"stores/carried/transforms/{name}" in keys
    assert cli_main(["store", "pull", uri, str(tmp_path / "pulled"), "--endpoint-url", endpoint]) == 0
    # merging from s3:// carries them too
    assert cli_main(["store", "merge", uri, str(tmp_path / "merged"), "--endpoint-url", endpoint]) == 0
    assert transforms_of(tmp_path / "merged") == transforms_of(store)
    grows_like_the_original(store, tmp_path / "pulled", more, expected)
