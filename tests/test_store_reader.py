"""The vectorised reader against a brute-force Python reference: many shards, ids repeated across
them (the later shard wins), joins by id in any order, datasets HDF5 must read itself."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from cinefuse.store import FeatureBlock, StoreWriter, open_store
from cinefuse.store import reader as reader_module
from cinefuse.store.manifest import read_manifest, sha256_file
from fixtures import ok_block, write_store


def write_random_store(root, seed=0, shards=12):
    """Shards of random sizes whose ids overlap; returns the brute-force truth per feature set:
    id -> (row bytes, valid, status, length) with the later shard winning."""
    rng = np.random.default_rng(seed)
    writer = StoreWriter(root, {"reader": seed})
    truth = {"visual/a": {}, "audio/s": {}}
    universe = [f"id-{i}" if i % 3 else f"ünï-{i}" for i in range(300)]
    for _ in range(shards):
        n = int(rng.integers(1, 60))
        ids = [universe[i] for i in rng.choice(len(universe), n, replace=False)]
        a = rng.standard_normal((n, 5)).astype(np.float32)
        valid = rng.random(n) > 0.3
        status = [("ok" if v else f"bad {k}") for k, v in enumerate(valid)]
        seq = rng.standard_normal((n, 4, 3)).astype(np.float16)
        lengths = rng.integers(0, 5, n).astype(np.int32)
        blocks = {"visual/a": FeatureBlock(a, valid, status)}
        with_audio = rng.random() > 0.3
        if with_audio:
            blocks["audio/s"] = FeatureBlock(seq, np.ones(n, bool), ["ok"] * n, lengths=lengths)
        writer.write_shard(ids, blocks)
        for row, item in enumerate(ids):
            truth["visual/a"][item] = (a[row].tobytes(), bool(valid[row]), status[row], None)
            if with_audio:
                truth["audio/s"][item] = (seq[row].tobytes(), True, "ok", int(lengths[row]))
    return truth


def brute_order(root, name):
    """Ids of ``name`` in manifest order, each at the position of its last occurrence."""
    order = []
    for record in read_manifest(root).shards:
        if name not in record.feature_sets:
            continue
        with h5py.File(root / record.name, "r") as h5:
            for item in h5["ids"].asstr()[()].tolist():
                if item in order:
                    order.remove(item)
                order.append(item)
    return order


def test_load_feature_set_matches_brute_force(tmp_path):
    truth = write_random_store(tmp_path)
    store = open_store(tmp_path)
    for name in ("visual/a", "audio/s"):
        fa = store.load_feature_set(name)
        assert fa.ids.tolist() == brute_order(tmp_path, name)
        for row, item in enumerate(fa.ids.tolist()):
            data, valid, status, length = truth[name][item]
            assert fa.data[row].tobytes() == data and bool(fa.valid[row]) == valid and fa.status[row] == status
            if length is not None:
                assert int(fa.lengths[row]) == length


def test_load_joins_by_id_like_brute_force(tmp_path):
    truth = write_random_store(tmp_path, seed=1)
    store = open_store(tmp_path)
    union = sorted(set(truth["visual/a"]) | set(truth["audio/s"]))
    table = store.load(["visual/a", "audio/s"])
    assert table.ids.tolist() == union
    rng = np.random.default_rng(5)
    picked = [union[i] for i in rng.permutation(len(union))[:40]]
    chosen = store.load(["audio/s", "visual/a"], ids=picked)
    assert chosen.ids.tolist() == picked
    for t in (table, chosen):
        for row, item in enumerate(t.ids.tolist()):
            for name in ("visual/a", "audio/s"):
                if item in truth[name]:
                    data, valid, status, length = truth[name][item]
                    assert t.features[name][row].tobytes() == data and t.status[name][row] == status
                    assert bool(t.valid[name][row]) == valid
                    if length is not None:
                        assert int(t.lengths[name][row]) == length
                else:
                    assert t.status[name][row] == "missing" and not t.valid[name][row]
                    assert not t.features[name][row].any()
    assert store.ids().tolist() == list(dict.fromkeys(
        item for r in read_manifest(tmp_path).shards for item in store.shard_ids([r.name]).tolist()))


def test_repeats_found_even_when_hashes_collide(monkeypatch):
    ids = np.array(["a", "b", "c", "b"])
    assert reader_module.has_repeats(ids)
    assert not reader_module.has_repeats(ids[:3])
    assert reader_module.last_occurrences(ids).tolist() == [True, False, True, True]
    monkeypatch.setattr(reader_module, "id_hashes", lambda x: np.zeros(len(x), np.uint64))  # all collide
    assert not reader_module.has_repeats(np.array(["a", "b", "c"]))
    assert reader_module.has_repeats(ids)


def test_chunked_and_compressed_datasets_are_read_by_hdf5(tmp_path):
    """A shard written by another tool (chunked, gzip, big-endian) reads the same values."""
    writer = StoreWriter(tmp_path, {"other": True})
    data = np.arange(24, dtype=np.float32).reshape(6, 4)
    writer.write_shard([str(i) for i in range(6)], {"visual/a": FeatureBlock(data, np.ones(6, bool), ["ok"] * 6)})
    path = tmp_path / "shard-00000.h5"
    with h5py.File(path, "a") as h5:
        del h5["features/visual/a/data"]
        h5.create_dataset("features/visual/a/data", data=data.astype(">f4"), chunks=(2, 4), compression="gzip")
    manifest = (tmp_path / "manifest.json").read_text()
    record = read_manifest(tmp_path).shard("shard-00000.h5")
    new = manifest.replace(record.sha256, sha256_file(path)).replace(f'"bytes": {record.bytes}', f'"bytes": {path.stat().st_size}')
    (tmp_path / "manifest.json").write_text(new)
    fa = open_store(tmp_path).load_feature_set("visual/a")
    assert fa.data.dtype == np.float32 and np.array_equal(fa.data, data)


@pytest.mark.parametrize("rows", [1, 7])
def test_single_row_and_small_shards(tmp_path, rows):
    write_store(tmp_path, {"small": rows}, [([f"{k}.{i}" for i in range(rows)],
                                             {"text/t": ok_block(np.full((rows, 2), k, np.float16))}) for k in range(3)])
    fa = open_store(tmp_path).load_feature_set("text/t")
    assert fa.ids.tolist() == [f"{k}.{i}" for k in range(3) for i in range(rows)]
    assert fa.data[:, 0].tolist() == [k for k in range(3) for _ in range(rows)]
