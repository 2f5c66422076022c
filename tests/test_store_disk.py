"""A full disk: every store write stops with one line naming the folder and the bytes needed, and
leaves nothing half written. On a real 2 MiB tmpfs (needs root and mount; skipped otherwise)."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid

import numpy as np
import pytest

import cinefuse.store.writer
from cinefuse.atomic import DiskFullError, atomic_write
from cinefuse.cli import main as cli_main
from cinefuse.store import FeatureBlock, StoreWriter, open_store
from cinefuse.store.manifest import read_manifest
from cinefuse.store.shard import estimate_shard_bytes


@pytest.fixture
def disk(tmp_path):
    """A 2 MiB tmpfs, unmounted afterwards."""
    mount = tmp_path / f"disk-{uuid.uuid4().hex[:6]}"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()})")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def features(rows, dim=1024, value=1.0):
    return {"visual/a": FeatureBlock(np.full((rows, dim), value, np.float32), np.ones(rows, bool), ["ok"] * rows)}


def free(folder):
    return shutil.disk_usage(folder).free


def test_a_shard_too_big_for_the_disk_is_refused_before_writing(disk):
    root = disk / "store"
    writer = StoreWriter(root, {"disk": 1})
    ids = [f"i{k}" for k in range(800)]  # 3.2 MB of float32
    needed = estimate_shard_bytes(ids, features(800))
    with pytest.raises(DiskFullError) as err:
        writer.write_shard(ids, features(800))
    assert str(err.value) == (f"no space left in {root}: a shard of 800 rows needs {needed:,} bytes ({free(root):,} "
                              "bytes free); free some space or write somewhere else, then run the command again")
    assert sorted(p.name for p in root.iterdir()) == [".manifest.lock"]


def test_disk_filling_up_mid_write_leaves_the_store_as_it_was(disk, monkeypatch):
    root = disk / "store"
    writer = StoreWriter(root, {"disk": 1})
    writer.write_shard(["a", "b"], features(2))
    before = (root / "manifest.json").read_bytes()
    monkeypatch.setattr(cinefuse.store.writer, "require_free", lambda *a: None)  # the check passed; the disk filled later
    ids = [f"i{k}" for k in range(800)]
    with pytest.raises(DiskFullError, match=f"^no space left in {root}: a shard of 800 rows needs "):
        writer.write_shard(ids, features(800))
    assert (root / "manifest.json").read_bytes() == before
    assert sorted(p.name for p in root.iterdir()) == [".manifest.lock", "manifest.json", "shard-00000.h5"]
    assert open_store(root).load_feature_set("visual/a").ids.tolist() == ["a", "b"]


def test_a_manifest_that_does_not_fit_is_not_half_written(disk):
    target = disk / "manifest.json"
    target.write_bytes(b"old")
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)  # fill the disk to the last block
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError:
        pass
    finally:
        os.close(fd)
    with pytest.raises(DiskFullError, match=f"^no space left in {disk}: writing manifest.json needs 100,000 bytes"):
        atomic_write(target, b"x" * 100_000)
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in disk.iterdir()) == ["filler", "manifest.json"]


def test_merge_onto_a_full_disk_is_one_line_and_leaves_no_folder(tmp_path, disk, capsys):
    src = tmp_path / "src"
    writer = StoreWriter(src, {"disk": 1})
    writer.write_shard(["a"], features(1))
    writer.write_shard([f"i{k}" for k in range(800)], features(800, value=2.0))
    dest = disk / "merged"
    assert cli_main(["store", "merge", str(src), str(dest)]) == 2
    big = read_manifest(src).shards[1]
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(
        f"cinefuse store: error: no space left in {dest}: copying shard {big.name} of {src} needs {big.bytes:,} bytes (")
    assert not dest.exists()


@pytest.mark.s3
def test_pull_onto_a_full_disk_is_one_line_and_leaves_nothing_half_written(tmp_path, disk, s3_server):
    from cinefuse.store.s3 import pull, push

    src = tmp_path / "src"
    writer = StoreWriter(src, {"disk": 1})
    writer.write_shard(["a"], features(1))
    writer.write_shard([f"i{k}" for k in range(800)], features(800, value=2.0))
    uri = f"s3://{s3_server.bucket}/full"
    push(src, uri, s3_server.endpoint_url)
    dest = disk / "pulled"
    big = read_manifest(src).shards[1]
    with pytest.raises(DiskFullError, match=f"^no space left in {dest}: shard {big.name} of {uri} needs {big.bytes:,} bytes"):
        pull(uri, dest, s3_server.endpoint_url)
    assert sorted(p.name for p in dest.iterdir()) == [".manifest.lock", "shard-00000.h5"]  # no manifest, no temp
    # room made: the next pull keeps the shard already checked in place and finishes
    subprocess.run(["mount", "-o", "remount,size=8m", str(disk)], check=True)
    assert pull(uri, dest, s3_server.endpoint_url)["skipped"] == 1
    assert open_store(dest).load_feature_set("visual/a").ids.tolist() == ["a"] + [f"i{k}" for k in range(800)]
