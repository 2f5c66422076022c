"""Data-parallel training over 2 (forced host) devices: the batch is really split over both, the
result matches 1-device training, and a batch the devices cannot share is refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = r"""
import sys, json
sys.path.insert(0, sys.argv[2])
from pathlib import Path
import jax, numpy as np
assert jax.device_count() == 2, jax.devices()
from fuse_fixtures import write_synthetic_store, small_config
from cinefuse.errors import CinefuseError
from cinefuse.fuse.config import as_config
from cinefuse.fuse.train import GroupTrainer, plan_runs, prepare, run_fuse, with_store_modalities
from cinefuse.fuse.embed import load_model
root = Path(sys.argv[1])
env = write_synthetic_store(root)
out, leaves = {}, {}
for dp in (True, False):
    cfg = small_config(env, train={"data_parallel": dp, "steps": 60, "eval_every": 60, "checkpoint_every": 60})
    w = root / f"w-{dp}"
    s = run_fuse(cfg, w, log=lambda m: None)
    _, params, _, _ = load_model(w, s["models"][0])
    leaves[dp] = jax.tree.leaves(params)
    # the program the trainer runs, as XLA compiled it
    config = with_store_modalities(as_config(cfg), False, log=lambda m: None)  # sets from the store
    group = plan_runs(config, False)[0]
    trainer = GroupTrainer(config, group, prepare(config, w, group[0].feature_sets, log=lambda m: None), w,
                           log=lambda m: None)
    state = trainer.init_state()
    compiled = trainer.multi_step.lower(state).compile()
    shardings = jax.tree.leaves(compiled.input_shardings[0])
    text = compiled.as_text()
    out[str(dp)] = {
        "input_devices": sorted({len(sh.device_set) for sh in shardings}),
        "input_replicated": all(sh.is_fully_replicated for sh in shardings),
        "state_devices": sorted({len(x.sharding.device_set) for x in jax.tree.leaves(state)}),
        "num_partitions": int(text.split("num_partitions=")[1].split(",")[0].split("\n")[0])
                          if "num_partitions=" in text else 1,
        # the batch's visual/effnet rows (3 x 32 items, 24 wide) as each device holds them
        "whole_batch_rows": "f32[96,24]" in text, "half_batch_rows": "f32[48,24]" in text,
    }
worst = max(float(np.max(np.abs(a - b))) for a, b in zip(leaves[True], leaves[False]))
scale = max(float(np.max(np.abs(a))) for a in leaves[False])
try:
    run_fuse(small_config(env, train={"batch_size": 33, "steps": 20, "eval_every": 20, "checkpoint_every": 20}),
             root / "odd", log=lambda m: None)
    refused = None
except CinefuseError as exc:
    refused = str(exc)
print(json.dumps({"worst": worst, "scale": scale, "programs": out, "refused": refused}))
"""


@pytest.mark.slow  # ~25 s (two subprocesses, each compiling); make test-all runs it
def test_two_devices_shard_the_batch_and_match_one(tmp_path):
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2", "JAX_PLATFORMS": "cpu"}
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path), str(Path(__file__).parent)], env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    sharded, single = result["programs"]["True"], result["programs"]["False"]
    # data parallel: one SPMD program over both devices, the state replicated on both, and each
    # device gathering half of the batch's rows (48 of 96), never the whole batch
    assert sharded["num_partitions"] == 2 and sharded["input_devices"] == [2] and sharded["state_devices"] == [2]
    assert sharded["input_replicated"]
    assert sharded["half_batch_rows"] and not sharded["whole_batch_rows"], sharded
    # data_parallel = false: one device, the whole batch
    assert single["num_partitions"] == 1 and single["input_devices"] == [1] and single["state_devices"] == [1]
    assert single["whole_batch_rows"] and not single["half_batch_rows"], single
    # same batches, same initial parameters: only the order of float reductions differs
    assert result["worst"] < 1e-4 * max(1.0, result["scale"]), result
    assert result["refused"] == ("train.batch_size 33 must be a multiple of the 2 devices for data-parallel "
                                 "training (or set train.data_parallel = false)")
