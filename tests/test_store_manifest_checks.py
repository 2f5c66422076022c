"""A manifest's numbers are input: counts and shapes are checked against the shard before anything
is allocated from them, impossible numbers are refused on load, and a shard resealed (its sha256
put back in the manifest) with an id twice fails verify."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from cinefuse.errors import StoreError
from cinefuse.store import FeatureBlock, StoreWriter, open_store
from cinefuse.store.integrity import check_recorded_shapes
from cinefuse.store.manifest import read_manifest, sha256_file
from cinefuse.store.shard import write_shard_file
from cinefuse.store.verify import verify_store

ROWS = 40


def make_store(root: Path) -> Path:
    writer = StoreWriter(root, {"checks": True})
    rng = np.random.default_rng(0)
    for k in range(2):
        writer.write_shard([f"{k}-{i}" for i in range(ROWS)], {
            "visual/a": FeatureBlock(rng.standard_normal((ROWS, 1280)).astype(np.float16), np.ones(ROWS, bool),
                                     ["ok"] * ROWS)})
    return root


def edit_manifest(root: Path, change) -> None:
    manifest = json.loads((root / "manifest.json").read_text())
    change(manifest["shards"][1])
    (root / "manifest.json").write_text(json.dumps(manifest))


def h5_shapes(path):
    h5 = h5py.File(path, "r")
    return lambda key: tuple(h5[key].shape) if key in h5 else None


INFLATED = 30_000_000  # x 1280 float16 = 71.5 GiB, the soak's allocation


def test_an_inflated_row_count_is_caught_against_the_shard(tmp_path):
    root = make_store(tmp_path / "store")
    edit_manifest(root, lambda shard: shard.update(rows=INFLATED))
    record = read_manifest(root).shards[1]
    with pytest.raises(StoreError) as err:
        check_recorded_shapes(record, str(root), h5_shapes(root / record.name))
    assert str(err.value) == (
        f"manifest of store {root} says shard shard-00001.h5 holds {INFLATED} rows, the shard holds {ROWS} ids; the "
        f"manifest is damaged: run `cinefuse store verify {root}`")
    good = read_manifest(root).shards[0]
    assert check_recorded_shapes(good, str(root), h5_shapes(root / good.name)) is None


def test_an_inflated_shape_is_caught_against_the_shard(tmp_path):
    root = make_store(tmp_path / "store")
    edit_manifest(root, lambda shard: shard["feature_sets"]["visual/a"].update(shape=[1280, 4096]))
    record = read_manifest(root).shards[1]
    with pytest.raises(StoreError) as err:
        check_recorded_shapes(record, str(root), h5_shapes(root / record.name))
    assert str(err.value) == (
        f"manifest of store {root} says feature set visual/a of shard shard-00001.h5 is ({ROWS}, 1280, 4096), the "
        f"shard holds data of shape ({ROWS}, 1280); the manifest is damaged: run `cinefuse store verify {root}`")
    assert check_recorded_shapes(record, str(root), h5_shapes(root / record.name), names=["text/other"]) is None


LOAD = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))  # a 71 GiB allocation cannot hide behind overcommit
from cinefuse.cli import main
from cinefuse.store import open_store
from cinefuse.errors import CinefuseError
try:
    open_store(sys.argv[1]).load_feature_set("visual/a")
except CinefuseError as exc:
    print(exc)
"""


def test_loading_a_store_with_an_inflated_count_is_one_line(tmp_path):
    root = make_store(tmp_path / "store")
    edit_manifest(root, lambda shard: shard.update(rows=INFLATED))
    result = subprocess.run([sys.executable, "-c", LOAD, str(root)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stderr == "", result.stderr[-2000:]
    assert result.stdout == (
        f"manifest of store {root} says shard shard-00001.h5 holds {INFLATED} rows, the shard holds {ROWS} ids; the "
        f"manifest is damaged: run `cinefuse store verify {root}`\n")


@pytest.mark.parametrize("field,value", [("rows", -1), ("bytes", -5)])
def test_impossible_numbers_are_refused_on_load(tmp_path, field, value):
    root = make_store(tmp_path / "store")
    edit_manifest(root, lambda shard: shard.update({field: value}))
    with pytest.raises(StoreError, match=r"^manifest shard entry is malformed \(ValueError\('negative rows or bytes'\)\)"):
        open_store(root)


def test_a_bad_dtype_or_negative_shape_is_refused_on_load(tmp_path):
    root = make_store(tmp_path / "store")
    edit_manifest(root, lambda shard: shard["feature_sets"]["visual/a"].update(shape=[-1280]))
    with pytest.raises(StoreError, match=r"^manifest shard entry is malformed .*feature set shape \[-1280\]"):
        open_store(root)
    edit_manifest(root, lambda shard: shard["feature_sets"]["visual/a"].update(shape=[1280], dtype="object"))
    with pytest.raises(StoreError, match=r"^manifest shard entry is malformed .*dtype 'object' is not a store's"):
        open_store(root)


def test_a_resealed_shard_with_a_repeated_id_fails_verify(tmp_path):
    root = make_store(tmp_path / "store")
    record = read_manifest(root).shards[1]
    path = root / record.name
    ids = [f"1-{i}" for i in range(ROWS)]
    ids[7] = ids[3]  # the same id twice, then the file resealed: size and sha256 put back in the manifest
    write_shard_file(path, ids, {"visual/a": FeatureBlock(np.zeros((ROWS, 1280), np.float16), np.ones(ROWS, bool),
                                                          ["ok"] * ROWS)}, record.config_hash)
    edit_manifest(root, lambda shard: shard.update(sha256=sha256_file(path), bytes=path.stat().st_size))
    report = verify_store(root)
    assert not report.ok
    assert [(c.name, c.reason) for c in report.damaged] == [
        ("shard-00001.h5", "id '1-3' appears 2 times in the shard; ids must be unique within a shard")]
