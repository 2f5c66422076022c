"""Data-parallel training over 2 (forced host) devices matches 1-device training."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SCRIPT = r"""
import sys, json
sys.path.insert(0, sys.argv[2])
from pathlib import Path
import jax, numpy as np
assert jax.device_count() == 2, jax.devices()
from fuse_fixtures import write_synthetic_store, small_config
from cinefuse.fuse.train import run_fuse
from cinefuse.fuse.embed import load_model
root = Path(sys.argv[1])
env = write_synthetic_store(root)
leaves = {}
for dp in (True, False):
    cfg = small_config(env, train={"data_parallel": dp, "steps": 60, "eval_every": 60, "checkpoint_every": 60})
    w = root / f"w-{dp}"
    s = run_fuse(cfg, w, log=lambda m: None)
    _, params, _, _ = load_model(w, s["models"][0])
    leaves[dp] = jax.tree.leaves(params)
worst = max(float(np.max(np.abs(a - b))) for a, b in zip(leaves[True], leaves[False]))
scale = max(float(np.max(np.abs(a))) for a in leaves[False])
print(json.dumps({"worst": worst, "scale": scale}))
"""


def test_two_devices_match_one(tmp_path):
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2", "JAX_PLATFORMS": "cpu"}
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path), str(Path(__file__).parent)], env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    import json
    result = json.loads(out.stdout.strip().splitlines()[-1])
    # same batches, same initial parameters: only the order of float reductions differs
    assert result["worst"] < 1e-4 * max(1.0, result["scale"]), result
