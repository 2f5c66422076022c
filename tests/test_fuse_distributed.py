"""Training on 2 processes (jax.distributed, gloo on CPU) equals one process over 2 local devices."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cinefuse.errors import CinefuseError
from cinefuse.fuse.distributed import ProcessGroup, resolve_process_group

from fuse_fixtures import small_config, write_synthetic_store

STEPS = 40


def _toml(config: dict) -> str:
    out = []
    for section, values in config.items():
        out.append(f"[{section}]")
        out.extend(f"{k} = {json.dumps(v)}" for k, v in values.items())
    return "\n".join(out) + "\n"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _fuse(config: Path, workdir: Path, env: dict, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "cinefuse", "fuse", "--config", str(config),
                             "--workdir", str(workdir), *extra], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _params(workdir: Path) -> tuple[str, list[np.ndarray]]:
    import jax

    from cinefuse.fuse.embed import load_model

    model = json.loads((workdir / "summary.json").read_text())["models"][0]
    _, params, _, _ = load_model(workdir, model)
    return model, [np.asarray(x) for x in jax.tree.leaves(params)]


def test_two_processes_equal_one_process_over_two_devices(tmp_path):
    env_data = write_synthetic_store(tmp_path)
    config = tmp_path / "fuse.toml"
    config.write_text(_toml(small_config(env_data, train={"steps": STEPS, "eval_every": 20,
                                                          "checkpoint_every": 20})))
    base = {k: v for k, v in os.environ.items() if not k.startswith("CINEFUSE_") and k != "XLA_FLAGS"}
    base["JAX_PLATFORMS"] = "cpu"
    coordinator = f"127.0.0.1:{_free_port()}"
    # the same command on both processes, only the process id differs (one CPU device each)
    pair = [_fuse(config, tmp_path / "w-two", base, "--coordinator", coordinator, "--num-processes", "2",
                  "--process-id", str(i)) for i in range(2)]
    single = _fuse(config, tmp_path / "w-one", {**base, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"})
    for proc in [*pair, single]:
        try:
            _, err = proc.communicate(timeout=240)
        except subprocess.TimeoutExpired:
            for p in [*pair, single]:
                p.kill()
            raise
        assert proc.returncode == 0, err[-3000:]
    model_two, two = _params(tmp_path / "w-two")
    model_one, one = _params(tmp_path / "w-one")
    assert model_two == model_one
    assert len(two) == len(one) > 0
    # bit for bit: the same HLO partitioned over the same 2-device mesh; the gradient all-reduce
    # has 2 participants, and a + b is the same float whichever side the sum starts from
    for a, b in zip(two, one):
        assert a.dtype == b.dtype and a.shape == b.shape
        assert np.array_equal(a, b), float(np.max(np.abs(a - b)))
    # one writer: process 1 wrote no records, so every validation step is logged once
    lines = [json.loads(x) for x in (tmp_path / "w-two" / "runs" / model_two / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [20, 40]
    ref = [json.loads(x) for x in (tmp_path / "w-one" / "runs" / model_one / "metrics.jsonl").read_text().splitlines()]
    assert [x["val_auc"] for x in lines] == [x["val_auc"] for x in ref]


def test_process_group_from_options_then_environment():
    env = {"CINEFUSE_COORDINATOR": "10.0.0.1:1234", "CINEFUSE_NUM_PROCESSES": "4", "JOB_COMPLETION_INDEX": "3"}
    assert resolve_process_group(environ=env) == ProcessGroup("10.0.0.1:1234", 4, 3)
    assert resolve_process_group(process_id=1, environ={**env, "CINEFUSE_PROCESS_ID": "2"}) == \
        ProcessGroup("10.0.0.1:1234", 4, 1)
    assert resolve_process_group(environ={**env, "CINEFUSE_PROCESS_ID": "2"}).process_id == 2
    assert not resolve_process_group(environ={}).given


@pytest.mark.parametrize("kwargs, message", [
    ({"coordinator": "10.0.0.1"}, "--coordinator '10.0.0.1' must be HOST:PORT (e.g. 10.0.0.1:1234), the address of process 0"),
    ({"num_processes": 2, "process_id": 2}, "--process-id 2 is out of range for --num-processes 2 (ids are 0..1)"),
    ({"num_processes": 0}, "--num-processes must be at least 1 (got 0)"),
])
def test_process_group_refuses_bad_options(kwargs, message):
    with pytest.raises(CinefuseError) as err:
        resolve_process_group(environ={}, **kwargs)
    assert str(err.value) == message


def test_bad_environment_names_the_variable():
    with pytest.raises(CinefuseError) as err:
        resolve_process_group(environ={"CINEFUSE_NUM_PROCESSES": "two"})
    assert str(err.value) == "CINEFUSE_NUM_PROCESSES must be an integer (got 'two')"


@pytest.mark.slow  # three fuse processes of a 3-objective grid: about 3-4 minutes on 2 loaded cores
def test_co_preference_objectives_on_two_processes_equal_one_process(tmp_path):
    """The co-preference objectives draw their batches (co-like pairs, user histories, distill
    items) from the same key on every process: two processes train what one process over two
    devices trains, bit for bit, for each objective of a grid."""
    import jax

    from cinefuse.fuse.embed import load_model

    env_data = write_synthetic_store(tmp_path)
    config = small_config(env_data, train={"steps": 20, "eval_every": 20, "checkpoint_every": 20},
                          objective={"kind": "co-like", "history_users": 8, "history_per_user": 4,
                                     "history_random": 8, "teacher_dim": 8},
                          grid={"objectives": ["co-like", "history", "distill"], "modalities": ["full"],
                                "losses": ["triplet"], "distances": ["cosine"], "heads": []})
    path = tmp_path / "fuse.toml"
    path.write_text(_toml(config))
    base = {k: v for k, v in os.environ.items() if not k.startswith("CINEFUSE_") and k != "XLA_FLAGS"}
    base["JAX_PLATFORMS"] = "cpu"
    coordinator = f"127.0.0.1:{_free_port()}"
    procs = [_fuse(path, tmp_path / "w-two", base, "--grid", "--coordinator", coordinator, "--num-processes", "2",
                   "--process-id", str(i)) for i in range(2)]
    procs.append(_fuse(path, tmp_path / "w-one", {**base, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"},
                       "--grid"))
    for proc in procs:
        try:
            _, err = proc.communicate(timeout=400)
        except subprocess.TimeoutExpired:
            for p in procs:
                p.kill()
            raise
        assert proc.returncode == 0, err[-3000:]
    models = json.loads((tmp_path / "w-one" / "grid_summary.json").read_text())["models"]
    assert sorted(models) == ["co-like-full-concat-mlp", "distill-full-concat-mlp", "history-full-concat-mlp"]
    for model in models:
        two = jax.tree.leaves(load_model(tmp_path / "w-two", model)[1])
        one = jax.tree.leaves(load_model(tmp_path / "w-one", model)[1])
        assert len(two) == len(one) > 0
        for a, b in zip(two, one):
            assert np.array_equal(np.asarray(a), np.asarray(b)), (model, float(np.max(np.abs(a - b))))
