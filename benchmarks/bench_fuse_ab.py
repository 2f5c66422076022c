"""Training steps/s of two source trees of cinefuse, A/B in one run (a refactor's speed check).

    .venv/bin/python benchmarks/bench_fuse_ab.py --before /path/to/old/checkout [--after .] [--rounds 11]

Each tree runs in its own long-lived child process (``PYTHONPATH=<tree>``) that builds the same
``GroupTrainer`` as ``bench_fuse.py``'s side (a): the thesis objective, triplet loss, cosine, the
full concat-mlp model over the synthetic feature sets, batch 256, 50 steps per call. The trainer
is compiled and warmed up before timing. The parent then alternates the two children call by
call for ``--rounds`` rounds (which one goes first alternating too), so the machine's load hits
both alike, and reports the median of the per-round ratios after / before. Also checks that
both trees produce the same parameters after the warm-up (same seed, same batches: a refactor
must not change the numbers).
Writes benchmarks/results/fuse-ab.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import sys, time, hashlib
import numpy as np
sys.path.insert(0, {bench!r})
import bench_fuse as bf
from pathlib import Path

def trainer(feats, bits, trip, batch):
    from cinefuse.fuse.config import DataConfig, FuseConfig, LossConfig, ModelConfig, ObjectiveConfig, TrainConfig
    from cinefuse.fuse.features import FeatureTable
    try:
        from cinefuse.fuse.plan import RunSpec
        from cinefuse.fuse.prepare import Prepared
        from cinefuse.fuse.trainer import GroupTrainer
    except ImportError:  # the tree before the trainer was split by job
        from cinefuse.fuse.train import GroupTrainer, Prepared, RunSpec
    n = len(next(iter(feats.values())))
    ids = np.array([str(i) for i in range(n)], object)
    table = FeatureTable(ids, dict(feats), {{k: None for k in feats}})
    arrays = {{"ids": ids.astype(str), "train_triplets": trip,
              "val_pairs": np.concatenate([trip[:128, :2], trip[:128, ::2]]),
              "val_labels": np.r_[np.ones(128, np.int8), np.zeros(128, np.int8)]}}
    config = FuseConfig(data=DataConfig(modality_sets=bf.MODALITY_SETS),
                        objective=ObjectiveConfig(kind="thesis", prior=False),
                        train=TrainConfig(batch_size=batch, steps=10**6, steps_per_call=50, eval_every=50,
                                          checkpoint_every=50))
    sets = list(bf.SETS)
    model = ModelConfig(modalities="full", token_dim=bf.TOKEN, hidden=bf.HIDDEN, embed_dim=bf.EMBED)
    runs = [RunSpec("triplet-cosine-full", LossConfig(kind="triplet", distance="cosine", margin=None), model, sets,
                    [1] * len(sets), objective=config.objective)]
    data = Prepared(ids, table, bits[:, None], arrays, {{}}, train_rows=np.arange(n), val_rows=np.arange(128),
                    val_likes=np.ones((2, 128), bool))
    return GroupTrainer(config, runs, data, Path("."), log=lambda m: None)

import jax
feats, bits, trip, _ = bf.synthetic({items})
tr = trainer(feats, bits, trip, {batch})
state = tr.init_state()
for _ in range(2):
    state, _ = tr.multi_step(state)
jax.block_until_ready(state)
digest = hashlib.sha256()
for leaf in jax.tree.leaves(state["params"]):
    digest.update(np.ascontiguousarray(np.asarray(leaf)).tobytes())
print("ready", digest.hexdigest(), flush=True)
for line in sys.stdin:
    t = time.perf_counter()
    state, _ = tr.multi_step(state)
    jax.block_until_ready(state)
    print(time.perf_counter() - t, flush=True)
"""


def start(tree: Path, items: int, batch: int) -> tuple[subprocess.Popen, str]:
    code = CHILD.format(bench=str(ROOT / "benchmarks"), items=items, batch=batch)
    env = {**os.environ, "PYTHONPATH": str(tree)}
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            env=env, cwd=str(tree))
    line = proc.stdout.readline().split()
    if not line or line[0] != "ready":
        raise SystemExit(f"the child for {tree} did not start")
    return proc, line[1]


def timed_call(proc: subprocess.Popen) -> float:
    proc.stdin.write("go\n")
    proc.stdin.flush()
    return float(proc.stdout.readline())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", type=Path, required=True, help="the old source tree (a checkout or worktree)")
    ap.add_argument("--after", type=Path, default=ROOT, help="the new source tree (default: this checkout)")
    ap.add_argument("--rounds", type=int, default=11)
    ap.add_argument("--items", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "fuse-ab.json")
    args = ap.parse_args()
    before, digest_before = start(args.before.resolve(), args.items, args.batch)
    after, digest_after = start(args.after.resolve(), args.items, args.batch)
    t_before, t_after = [], []
    for k in range(args.rounds):  # which side goes first alternates, so neither always follows the other
        if k % 2:
            t_after.append(timed_call(after))
            t_before.append(timed_call(before))
        else:
            t_before.append(timed_call(before))
            t_after.append(timed_call(after))
    for proc in (before, after):
        proc.stdin.close()
        proc.wait(timeout=60)
    steps = 50
    ratios = [tb / ta for tb, ta in zip(t_before, t_after)]  # steps/s after over steps/s before
    out = {
        "ratio_steps_per_s_after_vs_before": round(statistics.median(ratios), 4),
        "ratio_min": round(min(ratios), 4), "ratio_max": round(max(ratios), 4),
        "steps_per_s_before_median": round(steps / statistics.median(t_before), 2),
        "steps_per_s_after_median": round(steps / statistics.median(t_after), 2),
        "params_identical_after_warmup": digest_before == digest_after,
        "rounds": args.rounds, "steps_per_call": steps, "batch": args.batch, "items": args.items,
        "model": "thesis objective, triplet cosine, full concat-mlp (bench_fuse side (a))",
        "load_average": os.getloadavg(), "date": date.today().isoformat(),
        "before": str(args.before), "after": str(args.after),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
