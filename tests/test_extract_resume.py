"""Killed with SIGKILL part-way, then run again: the store ends up exactly as an uninterrupted
run leaves it (every feature set, every id, bit for bit)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from cinefuse.extract.config import ExtractConfig
from cinefuse.extract.run import run_extract
from cinefuse.store import open_store
from media_fixtures import encode_video

ITEMS, SHARD = 16, 2


def shard_count(store: Path) -> int:
    try:
        return len(json.loads((store / "manifest.json").read_text())["shards"])
    except (FileNotFoundError, json.JSONDecodeError, KeyError):
        return 0


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


def test_sigkill_then_resume_equals_uninterrupted_run(tmp_path):
    media = tmp_path / "media"
    media.mkdir()
    lines = ["id,video,title,plot,year"]
    for i in range(ITEMS):
        encode_video(media / f"v{i}.mp4", seconds=1.2, fps=10, size=(48, 32), tone_hz=300 + 50 * i)
        lines.append(f"{i},v{i}.mp4,Clip {i},a clip with tone number {i} and {'dogs' if i % 2 else 'cats'},{1950 + i}")
    manifest = tmp_path / "items.csv"
    manifest.write_text("\n".join(lines) + "\n", encoding="utf-8")
    killed = tmp_path / "killed"
    toml = tmp_path / "extract.toml"
    toml.write_text(
        f'manifest = "{manifest}"\nstore = "{killed}"\nframes = 3\nshard_size = {SHARD}\nbatch_size = 2\n'
        'workers = 0\ntorch_threads = 1\nvisual = ["effnet-lite0", "lowlevel"]\naudio = ["logmel"]\n'
        'text = ["tfidf"]\nmeta = ["year"]\nprogress = false\n', encoding="utf-8")

    process = subprocess.Popen([sys.executable, "-m", "cinefuse", "extract", "--config", str(toml)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    deadline = time.monotonic() + 120
    while shard_count(killed) < 1 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    assert process.poll() is None, f"extract ended before the kill: {process.stderr.read().decode()[-2000:]}"
    process.send_signal(signal.SIGKILL)
    process.wait()
    at_kill = shard_count(killed)
    assert 1 <= at_kill < ITEMS // SHARD, at_kill

    threads = torch.get_num_threads()
    try:
        config = ExtractConfig.from_toml(toml)
        resumed = run_extract(config)
        reference = run_extract(config.replace(store=str(tmp_path / "reference")))
    finally:
        torch.set_num_threads(threads)
    assert resumed["skipped"] >= at_kill * SHARD and resumed["processed"] == ITEMS - resumed["skipped"]
    assert reference["processed"] == ITEMS
    assert_same_store(killed, tmp_path / "reference")
    assert not list(killed.glob(".tmp-*"))  # the dead writer's temp file was cleaned up
