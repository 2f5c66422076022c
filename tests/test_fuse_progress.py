"""Training shows its progress: a bar with steps/s on stderr (off with progress=False /
--no-progress) and one line per program with the steps, seconds and steps/s it ran."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from fuse_fixtures import small_config, write_synthetic_store  # noqa: E402

FAST = {"train": {"steps": 40, "steps_per_call": 20, "eval_every": 40, "checkpoint_every": 40}}


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    return write_synthetic_store(tmp_path_factory.mktemp("progress"), n_items=60, n_users=40,
                                 dims={"text/minilm": 6}, shards=1)


@pytest.mark.parametrize("progress", [True, False])
def test_training_reports_steps_per_second(env, tmp_path, capsys, progress):
    from cinefuse.fuse.train import run_fuse

    run_fuse(small_config(env, **FAST), tmp_path / "w", progress=progress)
    err = capsys.readouterr().err
    bar = re.findall(r"fuse triplet-cosine-full-concat-mlp: 100%\|.*\| 40/40 \[[\d:<]+, *([\d.]+)step/s", err)
    assert bool(bar) is progress, err
    line = re.search(r"^triplet-cosine-full-concat-mlp: 40 steps in ([\d.]+) s \(([\d.]+) steps/s, first call's "
                     r"compile included\)$", err, re.M)
    assert line, err
    seconds, rate = float(line.group(1)), float(line.group(2))
    assert abs(rate - 40 / seconds) <= 0.05 * rate + 0.1
