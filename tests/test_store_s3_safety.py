"""Pull never replaces another store, push never overwrites a remote shard in place, and a push or
pull killed with SIGKILL mid-transfer leaves the remote (or the next run) whole. A real moto
server on 127.0.0.1; the killed runs are real processes."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import numpy as np
import pytest

from cinefuse.cli import main as cli_main
from cinefuse.errors import StoreError
from cinefuse.store import FeatureBlock, StoreWriter, open_store
from cinefuse.store.manifest import Manifest, read_manifest
from cinefuse.store.s3 import pull, push
from cinefuse.store.verify import verify_store

pytestmark = pytest.mark.s3

# push (or pull) in a child that SIGKILLs itself once more than KILL_AFTER bytes have moved
KILLED = """
import os, signal, sys
from cinefuse.store.s3 import pull, push
verb, a, b, endpoint, kill_after = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
moved = [0]
def progress(n):
    moved[0] += n
    if moved[0] > kill_after:
        print("killing", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
if verb == "push":
    push(a, b, endpoint, multipart_bytes=5 << 20, progress=progress)
else:
    pull(a, b, endpoint, progress=progress)
print("finished", flush=True)
"""


def make_store(root, shards=2, rows=30, dim=64, seed=0, prefix="i"):
    writer = StoreWriter(root, {"safety": True})
    rng = np.random.default_rng(seed)
    for k in range(shards):
        ids = [f"{prefix}{k}-{i}" for i in range(rows)]
        writer.write_shard(ids, {"visual/a": FeatureBlock(rng.standard_normal((rows, dim)).astype(np.float16),
                                                          np.ones(rows, bool), ["ok"] * rows)})
    return root


def files_of(root):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.iterdir())}


def remote_objects(s3, prefix):
    client = s3.client()
    listed = client.list_objects_v2(Bucket=s3.bucket, Prefix=f"{prefix}/").get("Contents", [])
    return {o["Key"][len(prefix) + 1:]: hashlib.sha256(client.get_object(Bucket=s3.bucket, Key=o["Key"])["Body"].read())
            .hexdigest() for o in listed}


def rows_of(location, endpoint=None):
    fa = open_store(location, endpoint_url=endpoint).load_feature_set("visual/a")
    return fa.ids.tolist(), fa.data.tobytes()


def run_killed(verb, a, b, endpoint, kill_after):
    result = subprocess.run([sys.executable, "-c", KILLED, verb, str(a), str(b), endpoint, str(kill_after)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == -9 and result.stdout == "killing\n", (result.returncode, result.stderr[-2000:])


def test_pull_refuses_another_store_and_a_used_folder(tmp_path, s3_server, capsys):
    uri = f"s3://{s3_server.bucket}/other"
    push(make_store(tmp_path / "remote", seed=1, prefix="r"), uri, s3_server.endpoint_url)
    mine = make_store(tmp_path / "mine", shards=1, rows=36, seed=2, prefix="m")
    before = files_of(mine)
    assert cli_main(["store", "pull", uri, str(mine), "--endpoint-url", s3_server.endpoint_url]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"cinefuse store: error: {mine} already holds another store (1 shards, none of them in {uri}); pull into an "
        f"empty folder, or `cinefuse store merge {mine} {uri} NEW` to combine them")
    assert files_of(mine) == before and len(rows_of(mine)[0]) == 36  # all 36 rows still there

    used = tmp_path / "used"
    used.mkdir()
    (used / "notes.txt").write_text("mine")
    with pytest.raises(StoreError) as err:
        pull(uri, used, s3_server.endpoint_url)
    assert str(err.value) == (f"{used} already exists and is not empty; pull {uri} into an empty folder, or into a "
                              "copy of the same store")
    assert sorted(p.name for p in used.iterdir()) == [".manifest.lock", "notes.txt"]


def test_pull_into_a_copy_of_the_same_store_adds_what_it_lacks(tmp_path, s3_server):
    uri = f"s3://{s3_server.bucket}/same"
    origin = make_store(tmp_path / "origin", shards=2)
    push(origin, uri, s3_server.endpoint_url)
    copy = tmp_path / "copy"
    pull(uri, copy, s3_server.endpoint_url)
    StoreWriter(copy, {"safety": True}).write_shard(["local-only"], {"visual/a": FeatureBlock(
        np.ones((1, 64), np.float16), np.ones(1, bool), ["ok"])})  # written here, never pushed
    writer = StoreWriter(origin, {"safety": True})  # meanwhile the origin grows and is pushed again
    writer.write_shard(["new-0", "new-1"], {"visual/a": FeatureBlock(np.full((2, 64), 2, np.float16), np.ones(2, bool),
                                                                     ["ok"] * 2)})
    push(origin, uri, s3_server.endpoint_url)

    assert pull(uri, copy, s3_server.endpoint_url) == {"downloaded": 1, "skipped": 2, "bytes": read_manifest(
        origin).shards[-1].bytes, "shards": 3}
    ids = set(rows_of(copy)[0])
    assert ids == set(rows_of(origin)[0]) | {"local-only"}
    assert verify_store(copy).ok and verify_store(copy).leftovers == []
    assert pull(uri, copy, s3_server.endpoint_url)["downloaded"] == 0

    # every local shard is checked: a damaged one stops the pull before anything is written
    victim = copy / read_manifest(copy).shards[0].name
    raw = bytearray(victim.read_bytes())
    raw[-50] ^= 0xFF
    victim.write_bytes(bytes(raw))
    manifest = (copy / "manifest.json").read_bytes()
    with pytest.raises(StoreError, match=f"^shard {victim.name} of store {copy} has changed since it was committed"):
        pull(uri, copy, s3_server.endpoint_url)
    assert (copy / "manifest.json").read_bytes() == manifest


def test_push_over_a_store_uses_new_names_and_removes_the_old_after_the_swap(tmp_path, s3_server):
    uri = f"s3://{s3_server.bucket}/swap"
    first = make_store(tmp_path / "first", shards=3, seed=3)
    push(first, uri, s3_server.endpoint_url)
    assert sorted(remote_objects(s3_server, "swap")) == [
        "manifest.json", "shard-00000.h5", "shard-00001.h5", "shard-00002.h5"]
    # extract --overwrite restarts the numbering: the same names, other bytes
    second = make_store(tmp_path / "second", shards=2, seed=4, prefix="s")
    assert [s.name for s in read_manifest(second).shards] == ["shard-00000.h5", "shard-00001.h5"]
    result = push(second, uri, s3_server.endpoint_url)
    assert result["uploaded"] == 2 and result["removed"] == 3
    objects = remote_objects(s3_server, "swap")
    assert sorted(objects) == ["manifest.json", "shard-00003.h5", "shard-00004.h5"]
    remote = Manifest.from_bytes(s3_server.client().get_object(Bucket=s3_server.bucket, Key="swap/manifest.json")[
        "Body"].read(), uri)
    assert [(s.name, s.sha256) for s in remote.shards] == [
        ("shard-00003.h5", read_manifest(second).shards[0].sha256), ("shard-00004.h5", read_manifest(second).shards[1].sha256)]
    assert rows_of(uri, s3_server.endpoint_url) == rows_of(second)
    # a name dropped with its shard is never used again: the manifest keeps the next free number
    third = make_store(tmp_path / "third", shards=1, seed=5, prefix="t")
    push(third, uri, s3_server.endpoint_url)
    assert sorted(remote_objects(s3_server, "swap")) == ["manifest.json", "shard-00005.h5"]
    push(second, uri, s3_server.endpoint_url)
    assert sorted(remote_objects(s3_server, "swap")) == ["manifest.json", "shard-00006.h5", "shard-00007.h5"]


def test_push_killed_mid_upload_leaves_the_remote_store_as_it_was(tmp_path, s3_server):
    uri = f"s3://{s3_server.bucket}/killed"
    endpoint = s3_server.endpoint_url
    old = make_store(tmp_path / "old", shards=2, rows=3000, dim=1024, seed=6)
    push(old, uri, endpoint, multipart_bytes=5 << 20)
    before, old_rows = remote_objects(s3_server, "killed"), rows_of(uri, endpoint)
    new = make_store(tmp_path / "new", shards=2, rows=3000, dim=1024, seed=7, prefix="n")  # same names, other bytes
    size = read_manifest(new).shards[0].bytes
    run_killed("push", new, uri, endpoint, size + size // 2)  # inside the second shard's multipart upload
    after = remote_objects(s3_server, "killed")
    assert {k: after[k] for k in before} == before  # the manifest and every shard it names: the same bytes
    assert verify_store(uri, endpoint_url=endpoint).ok and rows_of(uri, endpoint) == old_rows

    result = push(new, uri, endpoint, multipart_bytes=5 << 20)  # the rerun reuses what the killed one sent
    assert result["skipped"] == 1 and result["uploaded"] == 1 and result["removed"] == 2
    assert rows_of(uri, endpoint) == rows_of(new) and verify_store(uri, endpoint_url=endpoint).ok
    assert len(remote_objects(s3_server, "killed")) == 3
    assert s3_server.client().list_multipart_uploads(Bucket=s3_server.bucket).get("Uploads", []) == []


def test_pull_killed_mid_download_is_finished_by_the_next_pull(tmp_path, s3_server):
    uri = f"s3://{s3_server.bucket}/pulled"
    endpoint = s3_server.endpoint_url
    origin = make_store(tmp_path / "origin", shards=3, rows=2000, dim=512, seed=8)
    push(origin, uri, endpoint)
    local = tmp_path / "local"
    size = read_manifest(origin).shards[0].bytes
    run_killed("pull", uri, local, endpoint, size + size // 2)  # the first shard in place, the second half done
    left = sorted(p.name for p in local.iterdir())
    assert "manifest.json" not in left and any(n.startswith(".tmp-") for n in left), left
    (local / ".tmp-pull-12345-shard-00002.h5").write_bytes(b"left by an older cinefuse")
    result = pull(uri, local, endpoint)
    assert result["skipped"] == 1 and result["downloaded"] == 2
    assert files_of(local) == {**files_of(origin), ".manifest.lock": files_of(local)[".manifest.lock"]}
    assert verify_store(local).ok and verify_store(local).leftovers == []
