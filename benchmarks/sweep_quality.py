"""One variant of the quality benchmark's training, judged on VALIDATION only (issue 20's sweep).

    PYTHONPATH=. .venv/bin/python benchmarks/sweep_quality.py NAME ['{"objective": {"history_random": 2048}}']
        [--objectives history] [--modalities full] [--seeds 0,1] [--steps 400] [--work /tmp/cinefuse-sweep]
        [--log benchmarks/results/quality_sweep.json]

Trains the grid ``--objectives`` x ``--modalities`` of ``bench_quality.py``'s configuration (the
same store: title MiniLM, year, editorial genres; batch 256) once per seed, with the overrides of
the JSON argument ({section: {key: value}}), ``[selection] task = "user-to-item"``, an evaluation
every 50 steps and no early stopping, so each run's whole validation curve is logged. It records
per run the validation user-to-item Recall@20 at every evaluation (``curve``), its best
(``peak``) and last value, the item-to-item nDCG@10, and per variant the means over seeds of the
peaks and of the last values. No test item is ranked: choices made from this log (defaults,
hyper-parameters) see validation only. The runs share one split (that of the first seed), as
``train.seeds`` trains them. ``--log`` (a JSON of variants by name) is updated in place.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_quality as bq  # noqa: E402


def curve_of(workdir: Path, model: str) -> dict[int, float]:
    lines = [json.loads(x) for x in (workdir / "runs" / model / "metrics.jsonl").read_text().splitlines()]
    return {int(x["step"]): float(x["val_u2i_recall20"]) for x in lines if "val_u2i_recall20" in x}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", help="the variant's name in the log")
    parser.add_argument("overrides", nargs="?", default="{}", help="JSON {section: {key: value}} over the bench config")
    parser.add_argument("--objectives", default="history", help="comma-separated (default: history)")
    parser.add_argument("--modalities", default="full", help="comma-separated grid modalities (default: full)")
    parser.add_argument("--seeds", default="0,1", help="training seeds; the split is the first's (default: 0,1)")
    parser.add_argument("--steps", type=int, default=400, help="training steps, a multiple of 50 (default: 400)")
    parser.add_argument("--work", default="/tmp/cinefuse-sweep", help="scratch folder (store, workdirs)")
    parser.add_argument("--data", default=str(bq.DEFAULT_DATA), help="ml-latest-small folder")
    parser.add_argument("--log", default=str(bq.RESULTS / "quality_sweep.json"), help="the sweep's JSON log")
    args = parser.parse_args()

    work, data = Path(args.work), Path(args.data)
    work.mkdir(parents=True, exist_ok=True)
    if not (work / "store").exists():
        bq.extract_store(data, work)
    seeds = [int(s) for s in args.seeds.split(",")]
    config = bq.fuse_config(work, data, args.steps, 256, args.objectives.split(","), "user-to-item")
    config["grid"]["modalities"] = args.modalities.split(",")
    config["train"].update(patience=0, eval_every=50, checkpoint_every=args.steps, seed=seeds[0], seeds=seeds)
    overrides = json.loads(args.overrides)
    for section, values in overrides.items():
        config.setdefault(section, {}).update(values)
    wd = work / f"sweep-{args.name}"
    if wd.exists():
        shutil.rmtree(wd)
    start = time.perf_counter()
    from cinefuse.fuse.train import run_fuse

    summary = run_fuse(config, wd, grid=True, progress=False, log=lambda m: None)
    runs = []
    for s in summary["runs"]:
        curve = curve_of(wd, s["model"])
        runs.append({"model": s["model"], "base_model": s.get("base_model"), "seed": s.get("seed"),
                     "peak": max(curve.values()), "peak_step": max(curve, key=lambda k: (curve[k], -k)),
                     "last": curve[max(curve)], "val_ndcg10_last": s["val_ndcg10"],
                     "curve": {str(k): round(v, 4) for k, v in sorted(curve.items())}})
    record = {"overrides": overrides, "objectives": args.objectives, "modalities": args.modalities, "seeds": seeds,
              "steps": args.steps, "seconds": round(time.perf_counter() - start, 1), "runs": runs, "mean": {}}
    for base in sorted({r["base_model"] for r in runs}):
        mine = [r for r in runs if r["base_model"] == base]
        record["mean"][base] = {k: sum(r[k] for r in mine) / len(mine) for k in ("peak", "last")}
    log_path = Path(args.log)
    log = json.loads(log_path.read_text()) if log_path.is_file() else {
        "what": "validation user-to-item Recall@20 of training variants (benchmarks/sweep_quality.py); no test "
                "item ranked", "variants": {}}
    log["variants"][args.name] = record
    log_path.write_text(json.dumps(log, indent=1) + "\n")
    for base, m in record["mean"].items():
        print(f"{args.name} {base}: mean over seeds {seeds}: peak {m['peak']:.4f}, last {m['last']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
