"""`cinefuse store merge`: per-node stores written by separate processes (one of them on a moto S3
server) merge into a store equal to one written in one run; conflicting configs and hostile
manifests are refused and leave nothing behind."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cinefuse.cli import main as cli_main
from cinefuse.errors import StoreError
from cinefuse.store import FeatureBlock, StoreWriter, open_store
from cinefuse.store.combine import merge_stores
from cinefuse.store.manifest import read_manifest
from cinefuse.store.s3 import push
from cinefuse.store.verify import verify_store

ITEMS = 45

# One node of a run: the items of slice I of K (item i belongs to slice i % K), in chunks of 7,
# each row a pure function of its id, as an extraction is.
NODE = """
import sys
import numpy as np
from cinefuse.store import FeatureBlock, StoreWriter
root, index, count, tag = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
writer = StoreWriter(root, {"extract": tag})
mine = [i for i in range(%(items)d) if i %% count == index]
for start in range(0, len(mine), 7):
    part = np.array(mine[start:start + 7])
    ids = [f"m{i}" for i in part]
    a = np.sin(part[:, None] * 0.37 + np.arange(6)[None, :]).astype(np.float32)
    seq = np.cos(part[:, None, None] + np.arange(3)[None, :, None] * np.arange(2)[None, None, :]).astype(np.float16)
    writer.write_shard(ids, {
        "visual/a": FeatureBlock(a, part %% 4 != 0, ["ok" if i %% 4 else "decode error" for i in part]),
        "audio/s": FeatureBlock(seq, np.ones(len(part), bool), ["ok"] * len(part), lengths=(part %% 4).astype(np.int32)),
    })
""" % {"items": ITEMS}


def run_node(root: Path, index: int, count: int, tag: str = "same") -> Path:
    result = subprocess.run([sys.executable, "-c", NODE, str(root), str(index), str(count), tag],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return root


def content(root) -> dict:
    store = open_store(root)
    out = {}
    for name in ("visual/a", "audio/s"):
        fa = store.load_feature_set(name)
        order = np.argsort(fa.ids)
        out[name] = (fa.ids[order].tolist(), fa.data[order].tobytes(), fa.valid[order].tolist(),
                     fa.status[order].tolist(), None if fa.lengths is None else fa.lengths[order].tolist())
    return out


@pytest.fixture(scope="module")
def one_run(tmp_path_factory):
    return content(run_node(tmp_path_factory.mktemp("one") / "store", 0, 1))


def shard_digests(*roots) -> list[str]:
    return sorted(s.sha256 for root in roots for s in read_manifest(Path(root)).shards)


def test_two_node_stores_merge_into_the_one_run_store(tmp_path, one_run, capsys):
    a = run_node(tmp_path / "node0", 0, 2)
    b = run_node(tmp_path / "node1", 1, 2)
    merged = tmp_path / "merged"
    assert cli_main(["store", "merge", str(a), str(b), str(merged)]) == 0
    assert capsys.readouterr().out.startswith(f"merged 2 store(s) -> {merged}: 8 shards, {ITEMS} rows")
    report = verify_store(merged)
    assert report.ok and report.leftovers == []
    assert content(merged) == one_run
    assert shard_digests(merged) == shard_digests(a, b)  # every shard copied byte for byte
    manifest = read_manifest(merged)
    assert [s.name for s in manifest.shards] == [f"shard-{i:05d}.h5" for i in range(8)]
    assert list(manifest.configs) == [manifest.shards[0].config_hash]


@pytest.mark.s3
def test_merge_with_a_store_on_s3(tmp_path, one_run, s3_server):
    a = run_node(tmp_path / "node0", 0, 3)
    b = run_node(tmp_path / "node1", 1, 3)
    c = run_node(tmp_path / "node2", 2, 3)
    uri = f"s3://{s3_server.bucket}/nodes/2"
    push(c, uri, s3_server.endpoint_url)
    merged = tmp_path / "merged"
    result = merge_stores([str(a), str(b), uri], str(merged), endpoint_url=s3_server.endpoint_url)
    assert result == {"shards": 9, "rows": ITEMS, "sources": 3, "repeated_rows": {}}
    assert verify_store(merged).ok
    assert content(merged) == one_run
    assert shard_digests(merged) == shard_digests(a, b, c)


def test_repeated_id_the_last_source_wins(tmp_path):
    first = StoreWriter(tmp_path / "first", {"x": 1})
    first.write_shard(["a", "b"], {"visual/a": FeatureBlock(np.zeros((2, 2), np.float32), np.ones(2, bool), ["ok"] * 2)})
    second = StoreWriter(tmp_path / "second", {"x": 1})
    second.write_shard(["b", "c"], {"visual/a": FeatureBlock(np.ones((2, 2), np.float32), np.ones(2, bool), ["ok"] * 2)})
    for order, b_value in (((first, second), 1.0), ((second, first), 0.0)):
        dest = tmp_path / f"merged-{b_value}"
        result = merge_stores([str(w.root) for w in order], str(dest))
        assert result["repeated_rows"] == {"visual/a": 1}
        fa = open_store(dest).load_feature_set("visual/a")
        by_id = dict(zip(fa.ids.tolist(), fa.data[:, 0].tolist()))
        assert by_id == {"a": 0.0, "b": b_value, "c": 1.0}


def test_conflicting_configs_are_refused_naming_the_feature_set(tmp_path):
    a = run_node(tmp_path / "a", 0, 2, tag="same")
    b = run_node(tmp_path / "b", 1, 2, tag="other frames")
    ha, hb = read_manifest(a).shards[0].config_hash, read_manifest(b).shards[0].config_hash
    dest = tmp_path / "merged"
    with pytest.raises(StoreError) as err:
        merge_stores([str(a), str(b)], str(dest))
    assert str(err.value) == (
        f"feature set audio/s was extracted with config {ha} in {a} and with config {hb} in {b}; merge only stores "
        "extracted with the same config for a feature set (`cinefuse store info --json` lists each store's "
        "configs), or re-extract one of them")
    assert not dest.exists()


def test_merge_refuses_a_used_destination_and_leaves_it(tmp_path):
    a = run_node(tmp_path / "a", 0, 2)
    with pytest.raises(StoreError, match=f"^{tmp_path / 'a'} is both a source and the destination; merge into a new folder$"):
        merge_stores([str(a)], str(a))
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "notes.txt").write_text("mine")
    with pytest.raises(StoreError, match="already exists and is not empty; merge or compact into a new folder$"):
        merge_stores([str(a)], str(tmp_path / "used"))
    assert [p.name for p in (tmp_path / "used").iterdir()] == ["notes.txt"]


def test_a_changed_source_shard_stops_the_merge_and_leaves_nothing(tmp_path):
    a = run_node(tmp_path / "a", 0, 2)
    b = run_node(tmp_path / "b", 1, 2)
    victim = b / "shard-00001.h5"
    raw = bytearray(victim.read_bytes())
    raw[-100] ^= 0xFF
    victim.write_bytes(bytes(raw))
    dest = tmp_path / "merged"
    with pytest.raises(StoreError, match=f"^shard shard-00001.h5 of store {b} has changed since it was committed"):
        merge_stores([str(a), str(b)], str(dest))
    assert not dest.exists()  # the copies already staged were removed, and the folder the merge made


@pytest.mark.s3
def test_hostile_source_manifest_is_refused(tmp_path, s3_server):
    a = run_node(tmp_path / "a", 0, 2)
    manifest = json.loads((a / "manifest.json").read_text())
    manifest["shards"][0]["name"] = "../../escaped.h5"
    client = s3_server.client()
    client.put_object(Bucket=s3_server.bucket, Key="evil/manifest.json", Body=json.dumps(manifest).encode())
    client.put_object(Bucket=s3_server.bucket, Key="evil/../../escaped.h5", Body=(a / "shard-00000.h5").read_bytes())
    uri = f"s3://{s3_server.bucket}/evil"
    dest = tmp_path / "x" / "y" / "merged"
    with pytest.raises(StoreError) as err:
        merge_stores([uri], str(dest), endpoint_url=s3_server.endpoint_url)
    assert str(err.value) == (
        f"{uri}/manifest.json names shard '../../escaped.h5', which is not a store shard name (shard-NNNNN.h5, no "
        "folders): the manifest is damaged or was not written by cinefuse; refusing to read or write any path it names")
    assert not list(tmp_path.rglob("escaped.h5")) and not (tmp_path / "x").exists()


MERGE = """
import sys
from cinefuse.store.combine import merge_stores
merge_stores(sys.argv[2:], sys.argv[1])
"""


@pytest.mark.parametrize("point", ["shard-renamed", "manifest.json-temp-written"])
def test_a_killed_merge_is_redone_by_the_next_run(tmp_path, one_run, point):
    import os
    import socket

    a = run_node(tmp_path / "node0", 0, 2)
    b = run_node(tmp_path / "node1", 1, 2)
    dest = tmp_path / "merged"
    env = dict(os.environ, CINEFUSE_FAULT=f"{point}:kill")
    result = subprocess.run([sys.executable, "-c", MERGE, str(dest), str(a), str(b)], env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == -9 and result.stdout == f"fault {point}\n", result.stderr[-1000:]
    left = sorted(p.name for p in dest.iterdir())
    assert "manifest.json" not in left and ".cinefuse.lock" in left and len([n for n in left if n.endswith(".h5")]) == 8
    (dest / f".tmp-{socket.gethostname()}-999999999-0badc0de.h5").write_bytes(b"half a copy")  # a dead copier's
    assert cli_main(["store", "merge", str(a), str(b), str(dest)]) == 0  # no files to delete by hand first
    assert content(dest) == one_run
    assert sorted(p.name for p in dest.iterdir()) == sorted(
        [".manifest.lock", "manifest.json"] + [f"shard-{i:05d}.h5" for i in range(8)])
    assert verify_store(dest).ok
