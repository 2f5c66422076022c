"""A writer SIGKILLed at each point of a commit (through the ``CINEFUSE_FAULT`` hook, so the
kill lands exactly there, not where a sleep happens to end) leaves exactly the previous committed
state plus a known leftover; the next open sees only committed shards and a resumed run completes
the store to exactly the content of an uninterrupted run. Cleanup of leftovers never touches a
live writer's temp file."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from cinefuse.errors import StoreError
from cinefuse.store import FeatureBlock, StoreWriter, open_store
from cinefuse.store.manifest import read_manifest
from cinefuse.store.verify import verify_store

ROWS_PER_SHARD = 50
SHARDS = 4
CONFIG = {"test": "crash"}

# A resumable writer: skips committed ids, writes fixed chunks of the rest, says when each is in.
WRITER = f"""
import sys
import numpy as np
from cinefuse.store import FeatureBlock, StoreWriter
writer = StoreWriter(sys.argv[1], {CONFIG!r})
done = writer.committed_ids()
todo = [f"item-{{i:05d}}" for i in range({ROWS_PER_SHARD * SHARDS}) if f"item-{{i:05d}}" not in done]
for start in range(0, len(todo), {ROWS_PER_SHARD}):
    ids = todo[start:start + {ROWS_PER_SHARD}]
    index = np.array([int(i.split("-")[1]) for i in ids])
    data = ((index[:, None] * 31 + np.arange(64)[None, :]) % 1009).astype(np.float32)
    seq = ((index[:, None, None] + np.arange(6)[None, :, None] * np.arange(8)[None, None, :]) % 7).astype(np.float16)
    writer.write_shard(ids, {{
        "visual/a": FeatureBlock(data, index % 5 != 0, ["ok" if i % 5 else "bad" for i in index]),
        "audio/s": FeatureBlock(seq, np.ones(len(ids), bool), ["ok"] * len(ids), lengths=(index % 7).astype(np.int32)),
    }})
    print("committed", flush=True)
print("done", flush=True)
"""


def run_writer(root: Path, fault: str | None = None, **kwargs):
    env = dict(os.environ)
    env.pop("CINEFUSE_FAULT", None)
    if fault:
        env["CINEFUSE_FAULT"] = fault
    return subprocess.run([sys.executable, "-c", WRITER, str(root)], capture_output=True, text=True, timeout=120,
                          env=env, **kwargs)


def content(root: Path) -> dict:
    store = open_store(root)
    out = {}
    for name in ("visual/a", "audio/s"):
        fa = store.load_feature_set(name)
        order = np.argsort(fa.ids)
        out[name] = (
            fa.ids[order].tolist(), fa.data[order].tobytes(), fa.valid[order].tolist(),
            fa.status[order].tolist(), None if fa.lengths is None else fa.lengths[order].tolist(),
        )
    return out


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    root = tmp_path_factory.mktemp("reference")
    result = run_writer(root)
    assert result.returncode == 0, result.stderr
    return content(root)


def listing(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir())


def killed_at(root: Path, point: str, nth: int):
    """Run the writer until it SIGKILLs itself at the nth time it reaches ``point``; check it
    was alive there, having committed the shards before."""
    result = run_writer(root, f"{point}:kill:{nth}")
    assert result.returncode == -signal.SIGKILL, (result.returncode, result.stderr[-1000:])
    committed_before = nth - 1
    assert result.stdout == "committed\n" * committed_before + f"fault {point}\n"
    return result


def resumes_to_reference(root: Path, reference: dict) -> None:
    result = run_writer(root)
    assert result.returncode == 0, result.stderr
    report = verify_store(root)
    assert report.ok and report.leftovers == []
    assert [s.name for s in report.shards] == [f"shard-{i:05d}.h5" for i in range(SHARDS)]
    assert listing(root) == [".manifest.lock", "manifest.json"] + [f"shard-{i:05d}.h5" for i in range(SHARDS)]
    assert content(root) == reference


@pytest.mark.parametrize("nth", [2, 4])
def test_killed_with_the_shard_written_under_its_temp_name(tmp_path, reference, nth):
    root = tmp_path / "store"
    killed_at(root, "shard-temp-written", nth)
    host = socket.gethostname()
    temps = [n for n in listing(root) if n.startswith(f".tmp-{host}-")]
    committed = [f"shard-{i:05d}.h5" for i in range(nth - 1)]
    assert listing(root) == sorted([".manifest.lock", "manifest.json", *committed, *temps]) and len(temps) == 1
    with h5py.File(root / temps[0], "r") as h5:  # the whole next shard, complete but not committed
        assert len(h5["ids"]) == ROWS_PER_SHARD
    assert [s.name for s in read_manifest(root).shards] == committed
    assert open_store(root).manifest.total_rows == (nth - 1) * ROWS_PER_SHARD
    report = verify_store(root)
    assert report.ok and report.leftovers == temps
    resumes_to_reference(root, reference)


def test_killed_at_the_first_shard_before_any_manifest(tmp_path, reference):
    root = tmp_path / "store"
    killed_at(root, "shard-temp-written", 1)
    assert "manifest.json" not in listing(root)
    with pytest.raises(StoreError, match="it has no manifest.json"):
        open_store(root)
    resumes_to_reference(root, reference)


@pytest.mark.parametrize("nth", [1, 3])
def test_killed_after_the_rename_before_the_manifest(tmp_path, reference, nth):
    root = tmp_path / "store"
    killed_at(root, "shard-renamed", nth)
    orphan = f"shard-{nth - 1:05d}.h5"
    committed = [f"shard-{i:05d}.h5" for i in range(nth - 1)]
    assert listing(root) == sorted([".manifest.lock", orphan] + (["manifest.json"] if nth > 1 else []) + committed)
    if nth > 1:
        assert [s.name for s in read_manifest(root).shards] == committed
        assert open_store(root).manifest.total_rows == (nth - 1) * ROWS_PER_SHARD
        report = verify_store(root)
        assert report.ok and report.leftovers == [orphan]
    resumes_to_reference(root, reference)


@pytest.mark.parametrize("nth", [2, 4])
def test_killed_mid_manifest(tmp_path, reference, nth):
    root = tmp_path / "store"
    killed_at(root, "manifest.json-temp-written", nth)
    temps = [n for n in listing(root) if n.startswith(".manifest.json.tmp-")]
    assert len(temps) == 1
    # the new manifest was complete under its temp name, naming the shard just renamed ...
    pending = json.loads((root / temps[0]).read_text())
    assert [s["name"] for s in pending["shards"]] == [f"shard-{i:05d}.h5" for i in range(nth)]
    # ... but the manifest readers see is the previous one
    committed = [f"shard-{i:05d}.h5" for i in range(nth - 1)]
    assert [s.name for s in read_manifest(root).shards] == committed
    assert open_store(root).manifest.total_rows == (nth - 1) * ROWS_PER_SHARD
    report = verify_store(root)
    assert report.ok and report.leftovers == sorted(temps + [f"shard-{nth - 1:05d}.h5"])
    resumes_to_reference(root, reference)


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_cleanup_next_to_a_live_writer_keeps_its_temp_file(tmp_path):
    root = tmp_path / "store"
    env = dict(os.environ, CINEFUSE_FAULT="shard-temp-written:pause:2")
    live = subprocess.Popen([sys.executable, "-c", WRITER, str(root)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert live.stdout.readline() == "committed\n"
        assert live.stdout.readline() == "fault shard-temp-written\n"  # paused with its temp file written
        host = socket.gethostname()
        (live_temp,) = [p for p in root.iterdir() if p.name.startswith(f".tmp-{host}-{live.pid}-")]
        live_bytes = live_temp.read_bytes()
        # leftovers of dead writers: a temp shard, a renamed shard never recorded, a manifest temp
        dead = root / f".tmp-{host}-{dead_pid()}-0badc0de.h5"
        dead.write_bytes(b"half a shard")
        (root / "shard-00007.h5").write_bytes(live_bytes)
        (root / ".manifest.json.tmp-0badc0de").write_text("{")

        other = StoreWriter(root, {"other": "writer"})  # cleans up under the manifest lock
        assert listing(root) == sorted([".manifest.lock", "manifest.json", "shard-00000.h5", live_temp.name])
        assert live_temp.read_bytes() == live_bytes
        other.write_shard(["x"], {"text/t": FeatureBlock(np.ones((1, 2), np.float32), np.ones(1, bool), ["ok"])})

        live.stdin.write("\n")
        live.stdin.flush()
        out, err = live.communicate(timeout=120)
    finally:
        if live.poll() is None:
            live.kill()
            live.wait()
    assert live.returncode == 0, err[-1000:]
    assert out == "committed\n" * (SHARDS - 1) + "done\n"
    report = verify_store(root)
    assert report.ok and report.leftovers == []
    assert len(report.shards) == SHARDS + 1
    assert StoreWriter(root, CONFIG).committed_ids() == {f"item-{i:05d}" for i in range(ROWS_PER_SHARD * SHARDS)}
