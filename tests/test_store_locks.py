"""The store's lock: merge, compact, pull and --overwrite hold a store exclusively, writers add
shards side by side; whoever comes second stops at once with one line naming the other. A holder
killed with SIGKILL leaves a lock the next run takes over. Real processes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys

import numpy as np
import pytest

from cinefuse.cli import main as cli_main
from cinefuse.locks import LOCK_NAME, LockedError
from cinefuse.store import FeatureBlock, StoreWriter, open_store
from cinefuse.store.combine import compact_store, merge_stores
from cinefuse.store.manifest import read_manifest
from cinefuse.store.verify import verify_store

HOLD = """
import sys
from pathlib import Path
from cinefuse.store.writer import store_lock
with store_lock(Path(sys.argv[1]), "cinefuse store compact"):
    print("held", flush=True)
    sys.stdin.readline()
"""

WRITE = """
import sys
import numpy as np
from cinefuse.store import FeatureBlock, StoreWriter
writer = StoreWriter(sys.argv[1], {"locks": 1})
for k in range(2):
    ids = [f"w{k}-{i}" for i in range(4)]
    writer.write_shard(ids, {"text/t": FeatureBlock(np.full((4, 3), k, np.float32), np.ones(4, bool), ["ok"] * 4)})
print("done", flush=True)
"""


def block(rows, value=0.0):
    return FeatureBlock(np.full((rows, 3), value, np.float32), np.ones(rows, bool), ["ok"] * rows)


def small_store(root, shards=3):
    writer = StoreWriter(root, {"locks": 1})
    for k in range(shards):
        writer.write_shard([f"s{k}-{i}" for i in range(4)], {"text/t": block(4, k)})
    return root


def holder(root):
    child = subprocess.Popen([sys.executable, "-c", HOLD, str(root)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    assert child.stdout.readline() == "held\n", child.stderr.read()
    return child


def in_use(root, pid, what="cinefuse store compact"):
    started = json.loads((root / LOCK_NAME).read_text())["started"]
    return (f"{root} is in use by {what} (pid {pid} on {socket.gethostname()}, since {started}); "
            "wait for it to finish or stop it, then run this again")


def test_every_writer_of_a_held_store_stops_naming_the_holder(tmp_path, capsys):
    root = small_store(tmp_path / "store")
    before = (root / "manifest.json").read_bytes()
    child = holder(root)
    try:
        message = in_use(root, child.pid)
        writer = StoreWriter(root, {"locks": 1})  # opening is fine: it only clears dead writers' files
        for action in (lambda: writer.write_shard(["x"], {"text/t": block(1)}), writer.reset,
                       lambda: compact_store(str(root), target_mb=1)):
            with pytest.raises(LockedError) as err:
                action()
            assert str(err.value) == message
        assert cli_main(["store", "compact", str(root)]) == 2
        assert capsys.readouterr().err == f"cinefuse store: error: {message}\n"
        assert (root / "manifest.json").read_bytes() == before
        assert sorted(p.name for p in root.iterdir()) == [
            ".cinefuse.lock", ".manifest.lock", "manifest.json", "shard-00000.h5", "shard-00001.h5", "shard-00002.h5"]
    finally:
        child.kill()
        child.wait()
    # SIGKILLed holder: its lock stays behind, and the next run takes it over
    assert json.loads((root / LOCK_NAME).read_text())["pid"] == child.pid
    assert compact_store(str(root), target_mb=1)["shards_after"] == 1
    assert not (root / LOCK_NAME).exists() and verify_store(root).ok and verify_store(root).leftovers == []


def test_merge_into_a_held_destination_is_refused(tmp_path):
    src = small_store(tmp_path / "src")
    dest = tmp_path / "dest"
    dest.mkdir()
    child = holder(dest)
    try:
        with pytest.raises(LockedError) as err:
            merge_stores([str(src)], str(dest))
        assert str(err.value) == in_use(dest, child.pid)
    finally:
        child.kill()
        child.wait()
    assert merge_stores([str(src)], str(dest))["shards"] == 3  # the dead holder's lock is taken over


def test_a_live_writer_stops_a_compaction_and_they_never_mix(tmp_path):
    root = small_store(tmp_path / "store")
    env = dict(os.environ, CINEFUSE_FAULT="shard-temp-written:pause:2")
    live = subprocess.Popen([sys.executable, "-c", WRITE, str(root)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert live.stdout.readline() == "fault shard-temp-written\n"  # its second shard, written, not committed
        (temp,) = [p for p in root.iterdir() if p.name.startswith(f".tmp-{socket.gethostname()}-{live.pid}-")]
        with pytest.raises(LockedError) as err:
            compact_store(str(root), target_mb=1)
        assert str(err.value).startswith(f"{root} is in use by a store writer (temp shard {temp.name}) (pid {live.pid} on ")
        assert not (root / LOCK_NAME).exists()
        live.stdin.write("\n")
        live.stdin.flush()
        assert live.stdout.readline() == "done\n"
        assert live.wait(timeout=60) == 0
    finally:
        if live.poll() is None:
            live.kill()
            live.wait()
    assert len(read_manifest(root).shards) == 5
    compact_store(str(root), target_mb=1)
    fa = open_store(root).load_feature_set("text/t")
    assert sorted(fa.ids.tolist()) == sorted([f"s{k}-{i}" for k in range(3) for i in range(4)]
                                             + [f"w{k}-{i}" for k in range(2) for i in range(4)])


def test_killed_holder_of_a_store_lock_leaves_it_usable(tmp_path):
    root = small_store(tmp_path / "store")
    child = holder(root)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    StoreWriter(root, {"locks": 1}).write_shard(["after"], {"text/t": block(1)})  # a stale lock stops no one
    assert len(read_manifest(root).shards) == 4 and verify_store(root).ok
