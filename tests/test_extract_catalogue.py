"""A growing catalogue: extract into an existing store adds only the new ids, under the store's
frozen TF-IDF, and never changes a committed row; other options stop with one line naming them
and the choice (a new store, or --refit)."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from cinefuse.cli import main
from cinefuse.errors import CinefuseError
from cinefuse.extract.config import ExtractConfig
from cinefuse.extract.run import run_extract
from cinefuse.store import open_store
from cinefuse.store.manifest import read_manifest

WORDS = [["space", "rocket", "planet", "alien"], ["love", "wedding", "romance", "heart"],
         ["murder", "detective", "crime", "police"], ["war", "soldier", "battle", "army"]]
TEXT = dict(visual=[], audio=[], text=["tfidf"], meta=["year"], progress=False)  # no network, seconds


def write_items(path: Path, n: int, start: int = 1) -> Path:
    rng = np.random.default_rng(0)
    plots = [" ".join(rng.choice(WORDS[i % 4], 3)) + f" and the word{i % 7}" for i in range(start + n)]
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["id", "video", "title", "plot", "year"])
        for i in range(1, start + n):
            w.writerow([i, "", f"Film {i}", plots[i], 1950 + i % 60])
    return path


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_adding_films_extracts_only_the_new_ids_under_the_frozen_tfidf(tmp_path):
    store = tmp_path / "store"
    first = run_extract(ExtractConfig(manifest=str(write_items(tmp_path / "a.csv", 30)), store=str(store), **TEXT))
    assert first["processed"] == 30
    before = {s.name: sha(store / s.name) for s in read_manifest(store).shards}
    old = open_store(store).load(["text/tfidf", "meta/year"])

    grown = write_items(tmp_path / "b.csv", 35)  # the same 30 rows, plus 5 new films
    second = run_extract(ExtractConfig(manifest=str(grown), store=str(store), **TEXT))
    assert (second["processed"], second["skipped"], second["config_hash"]) == (5, 30, first["config_hash"])
    manifest = read_manifest(store)
    assert len(manifest.configs) == 1 and manifest.total_rows == 35
    # the committed shard is the same file, byte for byte, and every old row reads back the same
    assert {name: sha(store / name) for name in before} == before
    new = open_store(store).load(["text/tfidf", "meta/year"], ids=old.ids)
    for name in ("text/tfidf", "meta/year"):
        assert new.features[name].tobytes() == old.features[name].tobytes()

    # the new films are in the store's vector space: the frozen fit, not one refitted on 35 films
    (config,) = manifest.configs.values()
    assert (store / "transforms" / f"{config['text']['tfidf_transform']}.npz").is_file()
    from cinefuse.extract.backbones.tfidf import TfIdf
    from cinefuse.extract.transforms import load_transform

    frozen = TfIdf(256).load_state(load_transform(store, config["text"]["tfidf_transform"]))
    plots = {row["id"]: row["plot"] for row in csv.DictReader(open(grown, encoding="utf-8"))}
    table = open_store(store).load(["text/tfidf"], ids=["31", "35"])
    expected, _ = frozen.transform([plots["31"], plots["35"]])
    assert table.features["text/tfidf"].tobytes() == expected.tobytes()
    refitted, _ = TfIdf(256).fit(list(plots.values())).transform([plots["31"]])
    assert not np.allclose(refitted[0], expected[0])  # a refit would have moved the space

    # a damaged kept transform is refused with the fix, before anything is extracted
    path = store / "transforms" / f"{config['text']['tfidf_transform']}.npz"
    state = dict(np.load(path))
    state["idf"] = state["idf"] * 2
    np.savez(path, **state)
    with pytest.raises(CinefuseError, match=r"does not match its name \(damaged or edited\): extract into a new "
                                            r"store, or pass --refit"):
        run_extract(ExtractConfig(manifest=str(write_items(tmp_path / "c.csv", 36)), store=str(store), **TEXT))


def test_other_options_stop_with_one_line_naming_them_and_the_choice(tmp_path, capsys):
    store = tmp_path / "store"
    items = write_items(tmp_path / "a.csv", 12)
    base = ["extract", "--manifest", str(items), "--store", str(store), "--visual", "", "--audio", "",
            "--text", "tfidf", "--meta", "year", "--no-progress"]
    assert main(base) == 0
    capsys.readouterr()
    assert main(base + ["--text-fields", "title"]) == 2
    err = capsys.readouterr().err
    assert err == (f"cinefuse extract: error: store {store} was extracted with other options (text.fields: "
                   "store ['title', 'plot'], this run ['title']): extract into a new store, or pass --refit to "
                   "re-extract every item with these options (replaces the store's shards)\n")
    assert len(read_manifest(store).configs) == 1  # nothing written
    # --refit re-extracts every item under the new options: one config, every row
    assert main(base + ["--text-fields", "title", "--refit", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["processed"] == 12 and summary["skipped"] == 0
    manifest = read_manifest(store)
    assert len(manifest.configs) == 1 and manifest.total_rows == 12
    assert next(iter(manifest.configs.values()))["text"]["fields"] == ["title"]


def test_a_grown_manifest_with_refit_fits_again_on_every_item(tmp_path):
    store = tmp_path / "store"
    run_extract(ExtractConfig(manifest=str(write_items(tmp_path / "a.csv", 20)), store=str(store), **TEXT))
    first = read_manifest(store)
    summary = run_extract(ExtractConfig(manifest=str(write_items(tmp_path / "b.csv", 24)), store=str(store),
                                        refit=True, **TEXT))
    assert summary["processed"] == 24
    second = read_manifest(store)
    assert len(second.configs) == 1 and set(second.configs) != set(first.configs)


def test_a_text_only_store_of_300_films_is_small(movielens_small, tmp_path):
    """With the default backbones, 300 MovieLens films without video: no all-zero video or audio
    set is written, so the store (shards, manifest and the kept TF-IDF) stays under 5 MB."""
    import pandas as pd

    movies = pd.read_csv(movielens_small / "movies.csv").head(300)
    tags = pd.read_csv(movielens_small / "tags.csv").groupby("movieId")["tag"].apply(lambda t: ", ".join(map(str, t)))
    manifest = tmp_path / "ml300.csv"
    with open(manifest, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["id", "video", "title", "plot"])
        for m in movies.itertuples():
            w.writerow([m.movieId, "", m.title, tags.get(m.movieId, "")])
    store = tmp_path / "store"
    summary = run_extract(ExtractConfig(manifest=str(manifest), store=str(store), progress=False))
    assert summary["processed"] == 300 and summary["by_status"] == {"no video": 300}
    assert sorted(open_store(store).feature_sets()) == ["meta/year", "text/minilm", "text/tfidf"]
    size = sum(p.stat().st_size for p in store.rglob("*") if p.is_file())
    assert size < 5_000_000, size


@pytest.mark.s3
def test_an_s3_store_grows_from_a_fresh_staging_folder(s3_server, tmp_path):
    """The kept TF-IDF travels with an s3:// store: a run on another machine (a fresh staging
    folder) adds only the new ids, under the same config."""
    uri = f"s3://{s3_server.bucket}/stores/grow"
    base = dict(store=uri, endpoint_url=s3_server.endpoint_url, **TEXT)
    first = run_extract(ExtractConfig(manifest=str(write_items(tmp_path / "a.csv", 16)),
                                      staging=str(tmp_path / "stage1"), **base))
    keys = [o["Key"] for o in s3_server.client().list_objects_v2(Bucket=s3_server.bucket,
                                                                 Prefix="stores/grow/transforms/")["Contents"]]
    assert len(keys) == 1 and keys[0].endswith(".npz")
    second = run_extract(ExtractConfig(manifest=str(write_items(tmp_path / "b.csv", 20)),
                                       staging=str(tmp_path / "stage2"), **base))
    assert (second["processed"], second["skipped"], second["config_hash"]) == (4, 16, first["config_hash"])
    store = open_store(uri, endpoint_url=s3_server.endpoint_url)
    assert len(store.manifest.configs) == 1 and store.manifest.total_rows == 20


def test_configs_not_written_by_extract_do_not_count(tmp_path):
    """A store that also holds fused embeddings (evaluate --fused-store) or imported features:
    only its extraction config is compared with the run's options."""
    from cinefuse.store import FeatureBlock, StoreWriter

    store = tmp_path / "store"
    first = run_extract(ExtractConfig(manifest=str(write_items(tmp_path / "a.csv", 10)), store=str(store), **TEXT))
    StoreWriter(store, {"fused_embeddings": {"model": "m"}}).write_shard(
        ["1"], {"fused/m": FeatureBlock(np.ones((1, 4), np.float32), np.ones(1, bool), ["ok"], None, {})})
    grown = run_extract(ExtractConfig(manifest=str(write_items(tmp_path / "b.csv", 12)), store=str(store), **TEXT))
    assert (grown["processed"], grown["config_hash"]) == (2, first["config_hash"])
    with pytest.raises(CinefuseError, match=r"other options \(backbones.meta: store \['year'\], this run \[\]\)"):
        run_extract(ExtractConfig(manifest=str(write_items(tmp_path / "b.csv", 12)), store=str(store),
                                  **{**TEXT, "meta": []}))
