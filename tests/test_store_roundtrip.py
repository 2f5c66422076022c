"""Store round trips: what is written is read back bit for bit, joined correctly by id."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import h5py
import numpy as np
import pytest

from cinefuse.errors import StoreError
from cinefuse.store import FeatureBlock, StoreWriter, config_hash, open_store

CONFIG = {"backbones": {"visual": "test"}, "frames": 4}


def block(data, valid=None, status=None, lengths=None, **attrs):
    n = data.shape[0]
    valid = np.ones(n, bool) if valid is None else np.asarray(valid, bool)
    status = status or ["ok" if v else "decode error: test" for v in valid]
    return FeatureBlock(data=data, valid=valid, status=status, lengths=lengths, attrs=attrs)


def random_shard(rng, ids):
    n = len(ids)
    return {
        "visual/frames": block(
            rng.standard_normal((n, 3, 5)).astype(np.float16),
            valid=rng.random(n) > 0.2,
            lengths=rng.integers(0, 4, n).astype(np.int32),
            backbone="unit-test", weights={"sha256": "abc"},
        ),
        "text/vec": block(rng.standard_normal((n, 7)).astype(np.float32)),
    }


def test_round_trip_bit_for_bit_across_shards(tmp_path):
    rng = np.random.default_rng(1)
    writer = StoreWriter(tmp_path / "s", CONFIG)
    shards = [[f"m{i}" for i in range(0, 6)], [f"m{i}" for i in range(6, 10)], ["é-ünïcode", "日本"]]
    written = {}
    for ids in shards:
        feats = random_shard(rng, ids)
        writer.write_shard(ids, feats)
        for row, item in enumerate(ids):
            written[item] = {name: (b.data[row], b.valid[row], b.status[row], None if b.lengths is None else b.lengths[row])
                             for name, b in feats.items()}
    store = open_store(tmp_path / "s")
    for name in ("visual/frames", "text/vec"):
        fa = store.load_feature_set(name)
        assert fa.ids.tolist() == [i for ids in shards for i in ids]
        for row, item in enumerate(fa.ids.tolist()):
            data, valid, status, length = written[item][name]
            assert fa.data[row].tobytes() == data.tobytes()
            assert fa.data.dtype == data.dtype
            assert bool(fa.valid[row]) == bool(valid)
            assert fa.status[row] == status
            if length is not None:
                assert fa.lengths[row] == length
    assert store.load_feature_set("text/vec").lengths is None
    info = store.feature_sets()
    assert info["visual/frames"].shape == (3, 5) and info["visual/frames"].dtype == "float16"
    assert info["visual/frames"].rows == 12 and info["visual/frames"].kind == "sequence"
    assert info["visual/frames"].attrs["weights"] == {"sha256": "abc"}
    assert info["text/vec"].shape == (7,) and info["text/vec"].kind == "matrix"


def test_manifest_records_rows_and_checksums(tmp_path):
    writer = StoreWriter(tmp_path, CONFIG)
    rng = np.random.default_rng(2)
    record = writer.write_shard(["a", "b", "c"], random_shard(rng, ["a", "b", "c"]))
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["format"] == "cinefuse-store" and manifest["format_version"] == 1
    entry = manifest["shards"][0]
    assert entry["name"] == "shard-00000.h5" == record.name
    assert entry["rows"] == 3
    assert entry["sha256"] == hashlib.sha256((tmp_path / "shard-00000.h5").read_bytes()).hexdigest()
    assert entry["bytes"] == (tmp_path / "shard-00000.h5").stat().st_size
    assert entry["config_hash"] == config_hash(CONFIG) == writer.config_hash
    assert manifest["configs"][writer.config_hash] == CONFIG
    assert entry["feature_sets"]["visual/frames"] == {"shape": [3, 5], "dtype": "float16", "kind": "sequence"}


def test_plain_h5py_reads_a_shard(tmp_path):
    writer = StoreWriter(tmp_path, CONFIG)
    data = np.arange(12, dtype=np.float32).reshape(3, 4)
    writer.write_shard(["x", "y", "z"], {"meta/year": block(data, valid=[1, 0, 1], backbone="year")})
    with h5py.File(tmp_path / "shard-00000.h5", "r") as h5:
        assert h5.attrs["format"] == "cinefuse-store" and h5.attrs["format_version"] == 1
        assert h5["ids"].asstr()[()].tolist() == ["x", "y", "z"]
        group = h5["features/meta/year"]
        assert np.array_equal(group["data"][()], data)
        assert group["valid"][()].tolist() == [1, 0, 1]
        assert group["status"].asstr()[()].tolist() == ["ok", "decode error: test", "ok"]
        assert group.attrs["kind"] == "matrix" and group.attrs["backbone"] == "year"


def test_join_by_id_across_sets_written_in_different_orders(tmp_path):
    writer = StoreWriter(tmp_path, CONFIG)
    a = np.arange(10, dtype=np.float32).reshape(5, 2)
    writer.write_shard(["3", "1", "5"], {"visual/a": block(a[:3])})
    writer.write_shard(["2", "4"], {"visual/a": block(a[3:])})
    b = np.arange(100, 108, dtype=np.float32).reshape(4, 2)
    other = StoreWriter(tmp_path, {"other": True})
    other.write_shard(["4", "2", "1", "9"], {"text/b": block(b)})
    store = open_store(tmp_path)
    table = store.load(["visual/a", "text/b"])
    assert table.ids.tolist() == ["1", "2", "3", "4", "5", "9"]
    a_by_id = {"3": a[0], "1": a[1], "5": a[2], "2": a[3], "4": a[4]}
    b_by_id = {"4": b[0], "2": b[1], "1": b[2], "9": b[3]}
    for row, item in enumerate(table.ids.tolist()):
        if item in a_by_id:
            assert np.array_equal(table.features["visual/a"][row], a_by_id[item])
            assert table.valid["visual/a"][row]
        else:
            assert not table.valid["visual/a"][row] and table.status["visual/a"][row] == "missing"
            assert not table.features["visual/a"][row].any()
        if item in b_by_id:
            assert np.array_equal(table.features["text/b"][row], b_by_id[item])
        else:
            assert table.status["text/b"][row] == "missing"
    picked = store.load(["text/b", "visual/a"], ids=["9", "3"])
    assert picked.ids.tolist() == ["9", "3"]
    assert np.array_equal(picked.features["text/b"][0], b[3])
    assert np.array_equal(picked.features["visual/a"][1], a[0])
    assert picked.valid["visual/a"].tolist() == [False, True]


def test_later_shard_wins_for_a_repeated_id(tmp_path):
    writer = StoreWriter(tmp_path, CONFIG)
    writer.write_shard(["a", "b"], {"visual/a": block(np.zeros((2, 2), np.float32))})
    writer.write_shard(["b"], {"visual/a": block(np.ones((1, 2), np.float32))})
    fa = open_store(tmp_path).load_feature_set("visual/a")
    assert fa.ids.tolist() == ["a", "b"]
    assert fa.data.tolist() == [[0, 0], [1, 1]]


def test_missing_feature_set_and_unknown_id_errors(tmp_path):
    writer = StoreWriter(tmp_path, CONFIG)
    writer.write_shard(["a"], {"visual/a": block(np.zeros((1, 2), np.float32)), "text/t": block(np.zeros((1, 3), np.float32))})
    store = open_store(tmp_path)
    with pytest.raises(StoreError) as err:
        store.load(["audio/vggish"])
    assert str(err.value) == f"feature set 'audio/vggish' is not in store {tmp_path}; it has: text/t, visual/a"
    with pytest.raises(StoreError) as err:
        store.load(["visual/a"], ids=["a", "zz"])
    assert str(err.value) == f"id 'zz' is in none of the feature sets ['visual/a'] of store {tmp_path}"


def test_bad_writes_are_refused_with_the_reason(tmp_path):
    writer = StoreWriter(tmp_path, CONFIG)
    ok = block(np.zeros((2, 2), np.float32))
    cases = [
        (["a", "a"], {"visual/a": ok}, "ids must be unique within a shard; repeated: ['a']"),
        (["a", "b"], {"visual": ok}, "feature set name 'visual' must be '<modality>/<name>'"),
        (["a", "b"], {"visual/a": block(np.zeros((2, 2), np.float64))}, "data must be a float16 or float32 numpy array, got float64"),
        (["a", "b", "c"], {"visual/a": ok}, "feature set visual/a: 2 rows of data for 3 ids"),
        (["a", "b"], {"visual/a": block(np.zeros((2, 2), np.float32), lengths=np.array([1, 1]))}, "lengths are for sequences"),
    ]
    for ids, features, message in cases:
        with pytest.raises(StoreError, match=message.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(").replace(")", r"\)")):
            writer.write_shard(ids, features)
    assert not (tmp_path / "manifest.json").exists() or json.loads((tmp_path / "manifest.json").read_text())["shards"] == []
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) in ([], ["manifest.json"])


def test_committed_ids_are_per_config_and_reset_empties(tmp_path):
    first = StoreWriter(tmp_path, {"v": 1})
    first.write_shard(["a", "b"], {"visual/a": block(np.zeros((2, 2), np.float32))})
    second = StoreWriter(tmp_path, {"v": 2})
    second.write_shard(["c"], {"visual/b": block(np.zeros((1, 2), np.float32))})
    assert first.committed_ids() == {"a", "b"}
    assert second.committed_ids() == {"c"}
    assert StoreWriter(tmp_path, {"v": 3}).committed_ids() == set()
    first.reset()
    assert open_store(tmp_path).manifest.shards == []
    assert not list(tmp_path.glob("shard-*.h5"))


WRITER_SCRIPT = """
import sys
import numpy as np
from cinefuse.store import FeatureBlock, StoreWriter
root, tag = sys.argv[1], sys.argv[2]
writer = StoreWriter(root, {"shared": True})
for k in range(5):
    ids = [f"{tag}-{k}-{i}" for i in range(50)]
    data = np.full((50, 64), k, np.float32)
    writer.write_shard(ids, {"visual/a": FeatureBlock(data, np.ones(50, bool), ["ok"] * 50)})
"""


def test_concurrent_writer_processes_commit_distinct_shards(tmp_path):
    procs = [subprocess.Popen([sys.executable, "-c", WRITER_SCRIPT, str(tmp_path), tag]) for tag in "ABC"]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0]
    store = open_store(tmp_path)
    names = [s.name for s in store.manifest.shards]
    assert sorted(names) == [f"shard-{i:05d}.h5" for i in range(15)]
    fa = store.load_feature_set("visual/a")
    assert len(fa.ids) == 750 and len(set(fa.ids.tolist())) == 750
    from cinefuse.store.verify import verify_store

    assert verify_store(tmp_path).ok
