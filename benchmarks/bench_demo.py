"""Wall time of the default ``cinefuse demo``, end to end and per stage, from a fresh workdir.

    .venv/bin/python benchmarks/bench_demo.py [--items N] [--repeats R] [--keep DIR]

Target: under 5 minutes on a 2-core CPU. Writes ``benchmarks/results/demo.json`` (top-level keys
``total_seconds`` (median), ``stage_seconds`` (median per stage), ``runs``, ``fusion_wins``,
``verdict``) and ``benchmarks/results/demo.md``. One repetition is the default: a run takes
minutes, and each repetition starts from an empty workdir (nothing resumed).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=None, help="films (default: the demo's default)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--keep", help="run in this folder and keep it (one repeat)")
    args = parser.parse_args()

    from cinefuse.demo.pipeline import DemoConfig, run_demo

    runs = []
    for r in range(args.repeats):
        config = DemoConfig(progress=False)
        if args.items:
            config.collection = dataclasses.replace(config.collection, items=args.items)
        workdir = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="cinefuse-bench-demo-"))
        try:
            result = run_demo(workdir, config)
            runs.append({"seconds": {k: round(v, 2) for k, v in result.seconds.items()},
                         "verdict": result.verdict})
            print(f"run {r}: " + ", ".join(f"{k} {v:.1f} s" for k, v in result.seconds.items())
                  + f"; fusion wins: {result.verdict['fusion_wins']}")
        finally:
            if not args.keep:
                shutil.rmtree(workdir, ignore_errors=True)
    stages = list(runs[0]["seconds"])
    median = {s: round(statistics.median(run["seconds"][s] for run in runs), 2) for s in stages}
    machine = f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPU cores"
    out = {"total_seconds": median["total"], "stage_seconds": median, "runs": runs,
           "fusion_wins": all(run["verdict"]["fusion_wins"] for run in runs),
           "verdict": runs[-1]["verdict"], "target_seconds": 300, "machine": machine,
           "date": time.strftime("%Y-%m-%d"), "items": args.items or DemoConfig().collection.items}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "demo.json").write_text(json.dumps(out, indent=2) + "\n")
    v = out["verdict"]
    lines = [f"### cinefuse demo ({out['date']}, {machine}, shared and noisy)", "",
             f"`python benchmarks/bench_demo.py` ({len(runs)} run(s), default demo: {out['items']} films): "
             f"**{median['total']:.0f} s** end to end (target 300 s).", "",
             "| stage | seconds |", "|---|---:|", *(f"| {s} | {median[s]:.1f} |" for s in stages), "",
             f"Cold-item nDCG@10: full {v['full']:.4f}; " + ", ".join(f"{m} {x:.4f}" for m, x in v["singles"].items())
             + f"; full fusion beats every single modality: {out['fusion_wins']}.", ""]
    (RESULTS / "demo.md").write_text("\n".join(lines))
    print(json.dumps({k: out[k] for k in ("total_seconds", "stage_seconds", "fusion_wins")}, indent=2))


if __name__ == "__main__":
    main()
