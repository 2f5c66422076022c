"""Kill `cinefuse fuse` with SIGKILL part-way, run the same command again: it resumes from the last
checkpoint and ends with exactly the parameters of an uninterrupted run (CPU, same seed)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from fuse_fixtures import write_synthetic_store  # noqa: E402

CINEFUSE = Path(sys.executable).with_name("cinefuse")
TOML = """
[objective]
kind = "thesis"
[model]
token_dim = 16
hidden = 32
embed_dim = 16
[train]
batch_size = 64
steps = 1500
steps_per_call = 50
eval_every = 250
checkpoint_every = 500
learning_rate = 0.003
warmup_steps = 50
patience = 0
"""


def command(env, workdir, config):
    return [str(CINEFUSE), "fuse", "--store", env["store"], "--ratings", env["ratings"], "--movies", env["movies"],
            "--workdir", str(workdir), "--config", str(config)]


def checkpoint_steps(workdir: Path) -> list[int]:
    folder = workdir / "runs" / "triplet-cosine-full-concat-mlp" / "checkpoints"
    if not folder.is_dir():
        return []
    # a step counts once sealed with its checksum manifest (a step without one is not resumed from)
    return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit() and (p / "cinefuse.sha256").is_file())


def final_params(workdir: Path):
    from cinefuse.fuse.embed import load_model

    _, params, _, _ = load_model(workdir, "triplet-cosine-full-concat-mlp")
    import jax
    return jax.tree.leaves(params)


def test_sigkill_then_resume_matches_uninterrupted(tmp_path):
    env = write_synthetic_store(tmp_path)
    config = tmp_path / "fuse.toml"
    config.write_text(TOML)
    run_env = {**os.environ, "JAX_PLATFORMS": "cpu", "JAX_COMPILATION_CACHE_DIR": str(tmp_path / "jax-cache"),
               "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0", "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"}

    whole = tmp_path / "whole"
    done = subprocess.run(command(env, whole, config), env=run_env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]

    killed = tmp_path / "killed"
    proc = subprocess.Popen(command(env, killed, config), env=run_env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while not checkpoint_steps(killed) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    steps = checkpoint_steps(killed)
    assert steps and steps[-1] < 1500
    assert not (killed / "runs" / "triplet-cosine-full-concat-mlp" / "summary.json").exists()

    resumed = subprocess.run(command(env, killed, config), env=run_env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"resuming triplet-cosine-full-concat-mlp from step {steps[-1]}" in resumed.stderr

    for a, b in zip(final_params(whole), final_params(killed), strict=True):
        np.testing.assert_array_equal(a, b)
    run = "runs/triplet-cosine-full-concat-mlp/metrics.jsonl"
    whole_lines = [json.loads(x) for x in (whole / run).read_text().splitlines()]
    killed_lines = [json.loads(x) for x in (killed / run).read_text().splitlines()]
    assert [x["step"] for x in killed_lines] == [x["step"] for x in whole_lines]
    assert [x["loss"] for x in killed_lines] == [x["loss"] for x in whole_lines]
