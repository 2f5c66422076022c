"""Killed with SIGKILL at fixed points, then run again: the store ends up exactly as an
uninterrupted run leaves it (every feature set, every id, bit for bit).

The kill points are not timed by sleeps: the extract process stops itself (SIGSTOP) at a named
point of its loop (``CINEFUSE_FAULT=POINT:stop:N``, see ``cinefuse.faults``); the test waits for
that stop, checks the process is alive and what the store holds at that moment, then kills it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from cinefuse.extract.config import ExtractConfig
from cinefuse.faults import ENV as FAULT_ENV, fault_spec
from cinefuse.extract.run import run_extract
from cinefuse.store import open_store
from cinefuse.store.manifest import LOCK_NAME
from media_fixtures import encode_video

ITEMS, SHARD = 10, 2  # 5 chunks of 2 items; batch_size 1: two forward batches per chunk


def manifest_shards(store: Path) -> list[dict]:
    path = store / "manifest.json"
    return json.loads(path.read_text())["shards"] if path.is_file() else []


def assert_same_store(a: Path, b: Path) -> None:
    sa, sb = open_store(a), open_store(b)
    assert sorted(sa.feature_sets()) == sorted(sb.feature_sets())
    for name in sa.feature_sets():
        fa, fb = sa.load_feature_set(name), sb.load_feature_set(name)
        oa, ob = np.argsort(fa.ids), np.argsort(fb.ids)
        assert fa.ids[oa].tolist() == fb.ids[ob].tolist() and len(fa.ids) == ITEMS
        assert np.array_equal(fa.data[oa], fb.data[ob]), name
        assert np.array_equal(fa.valid[oa], fb.valid[ob]) and fa.status[oa].tolist() == fb.status[ob].tolist()
        if fa.lengths is not None:
            assert np.array_equal(fa.lengths[oa], fb.lengths[ob])


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    """Ten clips with their own tones, a TOML config writing into ``store``, and the store an
    uninterrupted run leaves."""
    root = tmp_path_factory.mktemp("resume")
    lines = ["id,video,title,plot,year"]
    for i in range(ITEMS):
        encode_video(root / f"v{i}.mp4", seconds=1.2, fps=10, size=(48, 32), tone_hz=300 + 50 * i)
        lines.append(f"{i},v{i}.mp4,Clip {i},a clip with tone number {i} and {'dogs' if i % 2 else 'cats'},{1950 + i}")
    manifest = root / "items.csv"
    manifest.write_text("\n".join(lines) + "\n", encoding="utf-8")

    def toml(store: Path) -> Path:
        path = store.parent / f"{store.name}.toml"
        path.write_text(
            f'manifest = "{manifest}"\nstore = "{store}"\nframes = 3\nshard_size = {SHARD}\nbatch_size = 1\n'
            'workers = 0\ntorch_threads = 1\nvisual = ["effnet-lite0", "lowlevel"]\naudio = ["logmel"]\n'
            'text = ["tfidf"]\nmeta = ["year"]\nprogress = false\n', encoding="utf-8")
        return path

    threads = torch.get_num_threads()
    try:
        run_extract(ExtractConfig.from_toml(toml(root / "reference")))
    finally:
        torch.set_num_threads(threads)
    return toml, root / "reference"


# (point, N): where the process stops; then the shards and ids the store holds at that moment
KILL_POINTS = {
    "mid-chunk": (("forward", 5), 2),  # the 5th item (first of chunk 3) embedded: chunks 1-2 committed
    "chunk-computed": (("before-commit", 3), 2),  # chunk 3 ready to write, nothing of it on disk
    "just-committed": (("after-commit", 3), 3),  # chunk 3's shard is in the manifest
}


@pytest.mark.parametrize("where", list(KILL_POINTS))
def test_sigkill_at_a_fixed_point_then_resume_equals_uninterrupted_run(media, tmp_path, where):
    toml, reference = media
    (point, count), shards_at_kill = KILL_POINTS[where]
    killed = tmp_path / "killed"
    process = subprocess.Popen([sys.executable, "-m", "cinefuse", "extract", "--config", str(toml(killed))],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               env={**os.environ, FAULT_ENV: fault_spec(point, "stop", count)})
    try:
        _, status = os.waitpid(process.pid, os.WUNTRACED)  # returns when it stops itself (or ends)
        assert os.WIFSTOPPED(status), f"extract ended before {point}:{count}: {process.stderr.read().decode()[-2000:]}"
        assert process.poll() is None  # alive, stopped at the point
        # what is on disk at the kill: exactly the committed chunks, no temp file of a writer
        shards = manifest_shards(killed)
        assert [s["rows"] for s in shards] == [SHARD] * shards_at_kill
        assert sorted(open_store(killed).ids(), key=int) == [str(i) for i in range(SHARD * shards_at_kill)]
        on_disk = sorted(p.name for p in killed.iterdir() if p.name != LOCK_NAME)
        assert on_disk == sorted(["manifest.json", "transforms", *(s["name"] for s in shards)])  # + the kept TF-IDF
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert process.returncode == -signal.SIGKILL

    threads = torch.get_num_threads()
    try:
        resumed = run_extract(ExtractConfig.from_toml(toml(killed)))
    finally:
        torch.set_num_threads(threads)
    assert resumed["skipped"] == SHARD * shards_at_kill and resumed["processed"] == ITEMS - resumed["skipped"]
    assert resumed["shards_written"] == ITEMS // SHARD - shards_at_kill
    assert_same_store(killed, reference)
    assert not list(killed.glob(".tmp-*"))
