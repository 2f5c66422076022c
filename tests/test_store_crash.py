"""A writer killed with SIGKILL mid-shard leaves a clean store; a resumed run completes it to
exactly the content of an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from cinefuse.store import open_store
from cinefuse.store.verify import verify_store

ROWS_PER_SHARD = 400
SHARDS = 4

# A resumable writer: skips committed ids, writes fixed chunks of the rest. Rows are large
# (4,096 float32) so each shard takes long enough to be killed in the middle of.
WRITER = f"""
import sys
import numpy as np
from cinefuse.store import FeatureBlock, StoreWriter
writer = StoreWriter(sys.argv[1], {{"test": "crash"}})
done = writer.committed_ids()
todo = [f"item-{{i:05d}}" for i in range({ROWS_PER_SHARD * SHARDS}) if f"item-{{i:05d}}" not in done]
print("start", flush=True)
for start in range(0, len(todo), {ROWS_PER_SHARD}):
    ids = todo[start:start + {ROWS_PER_SHARD}]
    index = np.array([int(i.split("-")[1]) for i in ids])
    data = ((index[:, None] * 31 + np.arange(4096)[None, :]) % 1009).astype(np.float32)
    seq = ((index[:, None, None] + np.arange(6)[None, :, None] * np.arange(8)[None, None, :]) % 7).astype(np.float16)
    writer.write_shard(ids, {{
        "visual/a": FeatureBlock(data, index % 5 != 0, ["ok" if i % 5 else "bad" for i in index]),
        "audio/s": FeatureBlock(seq, np.ones(len(ids), bool), ["ok"] * len(ids), lengths=(index % 7).astype(np.int32)),
    }})
    print("committed", flush=True)
print("done", flush=True)
"""


def run_writer(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", WRITER, str(root)], capture_output=True, text=True, timeout=300)


def kill_writer(root: Path, after_commits: int, delay: float) -> None:
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(root)], stdout=subprocess.PIPE, text=True)
    wanted = "start" if after_commits == 0 else "committed"
    seen = 0
    while True:
        line = proc.stdout.readline()
        if not line:
            break
        if line.strip() == wanted:
            seen += 1
            if wanted == "start" or seen == after_commits:
                break
    time.sleep(delay)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    proc.stdout.close()


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


@pytest.mark.parametrize(
    "after_commits,delay",
    [(0, 0.0), (0, 0.3), (1, 0.0), (1, 0.02), (1, 0.08), (2, 0.15), (3, 0.01)],
)
def test_sigkill_then_resume_matches_uninterrupted(tmp_path, reference, after_commits, delay):
    root = tmp_path / "store"
    kill_writer(root, after_commits, delay)

    # The killed store verifies clean and holds exactly the committed shards.
    report = verify_store(root) if (root / "manifest.json").exists() else None
    committed = 0
    if report is not None:
        assert report.ok, report.to_json()
        committed = len(report.shards)
        assert committed >= after_commits
        on_disk = sorted(p.name for p in root.glob("shard-*.h5"))
        assert on_disk == sorted(s.name for s in report.shards)
        # the only possible trace of the half shard is the dead writer's temp file, which
        # no reader opens and is not part of the store
        assert all(name.startswith(".tmp-") for name in report.leftovers), report.leftovers
        rows = open_store(root).manifest.total_rows
        assert rows == committed * ROWS_PER_SHARD

    result = run_writer(root)
    assert result.returncode == 0, result.stderr
    assert verify_store(root).ok
    assert not [p.name for p in root.iterdir() if p.name.startswith(".tmp-")]
    assert content(root) == reference
