"""Real data end to end: MovieLens ml-latest-small -> extract (title text, year) + editorial genres
-> fuse grid of objectives -> cold-item evaluation with random ties, intervals and a paired verdict.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_quality.py [--work /tmp/cinefuse-quality2] [--steps 1000]

1. Item inputs are content a new item has before anyone rates it: ``text/minilm``
   (all-MiniLM-L6-v2 over the title) and ``meta/year`` from ``run_extract``, and the editorial
   genres ``meta/genres`` (multi-hot over movies.csv's genres), written into the same store with
   ``cinefuse.store``'s writer (one shard; the extract stage has no genres backbone). Users' tags
   are interactions, not content: not used.
2. ``run_fuse`` trains the grid ``objectives`` x ``modality sets`` with the cold-item split
   (70/15/15 of the items; targets from the training items' ratings only): thesis (triplet,
   cosine; never over ``meta/genres``, its pair labels), co-like, history, distill, each with the
   item-prior head; model selection by validation nDCG@10; the prior weight chosen on validation.
3. Every model (and ``<model>+prior``) and every raw-feature cosine baseline ranks the unseen test
   items (queries and candidates), ties in a seeded random order, as ``cinefuse evaluate`` scores
   them (``evaluate.run.evaluate_run``): the pinned nDCG@10 / HR@10, a 95% bootstrap interval over
   queries (``row.ci``) and evaluate's paired bootstrap of the best trained row against the best
   raw row (``evaluate.verdict.paired_comparison``).

Writes benchmarks/results/quality.json (top-level ``ratio_best_trained_vs_best_raw``,
``ratio_text_trained_vs_raw_minilm``, ``paired_ci_low``, ``tie_break``, the table, the time of
each objective, the default objective chosen on validation) and quality.md. Rerunning reuses the
store and the trained models in --work; pass --fresh to start over.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
DEFAULT_DATA = REPO.parent / "shared" / "data" / "movielens" / "ml-latest-small"
OBJECTIVES = ["thesis", "co-like", "history", "distill"]
MODALITY_SETS = {"text": ["text/minilm"], "year": ["meta/year"], "genres": ["meta/genres"]}
GRID_MODALITIES = ["text", "text+year", "full"]      # thesis skips "full" (it holds meta/genres)
TIE_SEED = 20261201


def write_manifest(data: Path, path: Path) -> int:
    import csv

    import numpy as np

    from cinefuse.datasets.movielens import load_movies

    movies = load_movies(data)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "title", "year"])
        for mid, title, year in zip(np.asarray(movies.ids, dtype=str).tolist(), movies.titles, movies.years):
            writer.writerow([mid, title, "" if year != year else int(year)])
    return len(movies.ids)


def write_genres(data: Path, store: Path) -> str:
    """``meta/genres``: the editorial genres as a multi-hot (a film without genres is a zero row,
    valid), one shard in the extraction store. Skipped when the store already holds it."""
    import numpy as np

    from cinefuse.datasets.movielens import genre_vocabulary, load_movies
    from cinefuse.store import FeatureBlock, StoreWriter, open_store

    if "meta/genres" in open_store(store).feature_sets():
        return "already in the store"
    movies = load_movies(data)
    vocab = genre_vocabulary(movies.genres)
    col = {g: k for k, g in enumerate(vocab)}
    x = np.zeros((len(movies.ids), len(vocab)), np.float32)
    for row, gs in enumerate(movies.genres):
        x[row, [col[g] for g in gs]] = 1.0
    n = len(movies.ids)
    writer = StoreWriter(store, config={"bench_quality": "meta/genres", "source": "movies.csv genres"})
    writer.write_shard([str(i) for i in movies.ids], {"meta/genres": FeatureBlock(
        x, np.ones(n, bool), ["ok"] * n, None, {"backbone": "movielens genres multi-hot", "columns": vocab})})
    return f"written ({len(vocab)} genres)"


def honest_rows(workdir: Path, summaries: dict) -> tuple[list[dict], dict, object]:
    """Every trained model (plain cosine and ``+prior``) and every raw cosine baseline on the
    test items, as evaluate scores them (``cinefuse.evaluate.run.evaluate_run``: random ties
    seeded by ``TIE_SEED``, 95% intervals, per-query values): (bench rows, counts, results)."""
    from cinefuse.evaluate.run import evaluate_run

    ev = evaluate_run(workdir, ks=(10,), tie_seed=TIE_SEED, progress=False)
    rows = [bench_row(r, summaries, ev) for r in ev.results.rows if r.kind in ("model", "itemknn-cbf")]
    counts = {"test_items": ev.results.counts["candidates"],
              "queries_scored": int(ev.results.rows[0].per_query.scored.sum()), **ev.results.counts}
    return rows, counts, ev.results


def bench_row(row, summaries: dict, ev=None) -> dict:
    """One evaluate row as the benchmark's table holds it; a ``+prior`` row also gets the test
    nDCG@10 at every prior weight its validation tried (``ev``: the evaluation that made it)."""
    out = {"name": row.name, "kind": "model" if row.kind == "model" else "raw"}
    if row.kind == "model":
        out["objective"] = row.objective
    model = row.name.removesuffix("+prior")
    if row.name.endswith("+prior"):
        s = summaries[model]
        out["prior_weight"] = float(s.get("prior_weight", 0.0))
        if ev is not None:
            m = ev.models[model]
            out["test_by_weight"] = {wt: ev.task.score(ev.task.rank(ev.es, m.ids, m.emb, 10, prior=m.prior,
                                                                    weight=float(wt)), ev.es, (10,))[0]["nDCG@10"]
                                     for wt in s.get("prior_weight_scan", {})}
    out.update({"per_query": row.per_query.of("nDCG@10"), "nDCG@10": float(row.metrics["nDCG@10"]),
                "HR@10": float(row.metrics["HR@10"]), "ci": row.ci})
    return out


def verdict(results, best_model: dict, best_raw: dict) -> dict:
    """evaluate's paired comparison of two rows of ``results`` (by name), in the benchmark's keys."""
    from cinefuse.evaluate.verdict import paired_comparison

    c = paired_comparison(results.row(best_model["name"]), results.row(best_raw["name"]), "nDCG@10")
    return {"metric": "nDCG@10", "best_model": c["a"], "best_baseline": c["b"], "model_value": c["a_value"],
            "baseline_value": c["b_value"], "diff": c["diff"], "ci_low": c["ci_low"], "ci_high": c["ci_high"],
            "p_better": c["p_better"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="ml-latest-small folder")
    parser.add_argument("--work", default="/tmp/cinefuse-quality2", help="scratch folder (store, workdir)")
    parser.add_argument("--steps", type=int, default=300, help="training steps per configuration")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--objectives", default=",".join(OBJECTIVES))
    parser.add_argument("--fresh", action="store_true", help="delete --work first")
    parser.add_argument("--out", type=Path, default=RESULTS / "quality.json",
                        help="the JSON to write (the Markdown goes beside it, same name, .md; default results/quality.json)")
    args = parser.parse_args()

    data = Path(args.data)
    if not (data / "ratings.csv").is_file():
        print(f"MovieLens ml-latest-small not found at {data}", file=sys.stderr)
        return 2
    work = Path(args.work)
    if args.fresh and work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    timings = {}

    from cinefuse.extract.config import ExtractConfig
    from cinefuse.extract.run import run_extract

    manifest = work / "movies_manifest.csv"
    n_movies = write_manifest(data, manifest)
    start = time.perf_counter()
    extract_summary = run_extract(ExtractConfig(
        manifest=str(manifest), store=str(work / "store"), visual=[], audio=[], text=["minilm"],
        meta=["year"], text_fields=["title"], year_field="year", shard_size=4096, workers=0, progress=True,
    ))
    genres_note = write_genres(data, work / "store")
    timings["extract_seconds"] = time.perf_counter() - start
    print(f"extract: {timings['extract_seconds']:.1f} s; meta/genres {genres_note}", file=sys.stderr)

    from cinefuse.fuse.train import run_fuse

    steps_per_call = 50
    steps = max(steps_per_call, args.steps // steps_per_call * steps_per_call)
    eval_every = steps_per_call * max(1, steps // steps_per_call // 5)
    objectives = args.objectives.split(",")
    config = {
        "data": {"store": str(work / "store"), "ratings": str(data), "movies": str(data),
                 "modality_sets": MODALITY_SETS},
        "model": {"modalities": "full"},
        "loss": {"kind": "triplet", "distance": "cosine"},
        "objective": {"kind": "co-like"},
        "train": {"steps": steps, "steps_per_call": steps_per_call, "eval_every": eval_every,
                  "checkpoint_every": eval_every, "batch_size": args.batch_size, "patience": 3},
        "grid": {"objectives": objectives, "losses": ["triplet"], "distances": ["cosine"],
                 "modalities": GRID_MODALITIES, "heads": []},
    }
    start = time.perf_counter()
    workdir = work / f"fuse-{steps}steps-b{args.batch_size}"  # a workdir holds one config
    fuse_summary = run_fuse(config, workdir, grid=True)
    timings["fuse_seconds"] = time.perf_counter() - start
    print(fuse_summary["table"], file=sys.stderr)
    summaries = {s["model"]: s for s in fuse_summary["runs"]}
    # each program's seconds, once per program (its members record the program's time)
    by_objective = {}
    for s in fuse_summary["runs"]:
        by_objective[s["objective"]] = by_objective.get(s["objective"], 0.0) + s["train_seconds"] / s["group_size"]

    start = time.perf_counter()
    rows, counts, results = honest_rows(workdir, summaries)
    timings["evaluate_seconds"] = time.perf_counter() - start
    models = [r for r in rows if r["kind"] == "model"]
    raw = [r for r in rows if r["kind"] == "raw"]
    best_model = max(models, key=lambda r: r["nDCG@10"])
    best_raw = max(raw, key=lambda r: r["nDCG@10"])
    text_models = [r for r in models if r["name"].split("+")[0].endswith("-text-concat-mlp")]
    raw_minilm = next(r for r in raw if r["name"] == "cosine text/minilm")
    best_text = max(text_models, key=lambda r: r["nDCG@10"]) if text_models else None
    v = verdict(results, best_model, best_raw)
    plain = [r for r in models if "+prior" not in r["name"]]
    best_plain = max(plain, key=lambda r: r["nDCG@10"])
    text_plain = [r for r in text_models if "+prior" not in r["name"]]
    best_text_plain = max(text_plain, key=lambda r: r["nDCG@10"]) if text_plain else None
    # the default objective: the best validation nDCG@10 (plain cosine) among the co-preference ones
    val_best = {}
    for s in fuse_summary["runs"]:
        val_best[s["objective"]] = max(val_best.get(s["objective"], -1.0), s["val_ndcg10"])
    co_pref = {k: x for k, x in val_best.items() if k != "thesis"}
    default_objective = max(co_pref, key=co_pref.get) if co_pref else None
    table = [{k: x for k, x in r.items() if k != "per_query"} for r in rows]
    record = {
        "ratio_best_trained_vs_best_raw": best_model["nDCG@10"] / best_raw["nDCG@10"],
        "ratio_text_trained_vs_raw_minilm": (best_text["nDCG@10"] / raw_minilm["nDCG@10"]) if best_text else None,
        "paired_ci_low": v["ci_low"],
        "tie_break": "random",
        "tie_seed": TIE_SEED,
        "verdict": v,
        # the same figures without the item prior (plain cosine of the trained embedding)
        "without_prior": {
            "best_model": best_plain["name"],
            "ratio_best_trained_vs_best_raw": best_plain["nDCG@10"] / best_raw["nDCG@10"],
            "paired": verdict(results, best_plain, best_raw),
            "best_text_model": best_text_plain["name"] if best_text_plain else None,
            "ratio_text_trained_vs_raw_minilm": (best_text_plain["nDCG@10"] / raw_minilm["nDCG@10"])
            if best_text_plain else None},
        "best_text_model": best_text["name"] if best_text else None,
        "default_objective_by_validation": default_objective,
        "validation_ndcg10_best_by_objective": val_best,
        "objective_train_seconds": {k: round(x, 2) for k, x in by_objective.items()},
        "table": sorted(table, key=lambda r: -r["nDCG@10"]),
        "validation": [{k: s.get(k) for k in ("model", "val_ndcg10", "val_hr10", "val_auc", "prior_weight",
                                              "val_ndcg10_prior", "prior_weight_scan", "best_step",
                                              "stopped_early", "train_seconds")} for s in fuse_summary["runs"]],
        "counts": counts,
        "timings": timings,
        "fuse": {"steps": steps, "batch_size": args.batch_size, "configs": len(summaries),
                 "objectives": objectives, "modalities": GRID_MODALITIES, "split": fuse_summary.get("split"),
                 "items": fuse_summary.get("items")},
        "inputs": {"text/minilm": "all-MiniLM-L6-v2 over the title", "meta/year": "extract year backbone",
                   "meta/genres": f"editorial genres multi-hot, {genres_note}", "tags": "not used (interactions)"},
        "dataset": "ml-latest-small", "movies": n_movies,
        "extract": {k: x for k, x in extract_summary.items() if isinstance(x, (int, float, str))},
        "machine": f"{os.cpu_count()}-core CPU ({platform.machine()}), shared with other jobs",
        "date": datetime.date.today().isoformat(),
        "command": "python benchmarks/bench_quality.py " + " ".join(sys.argv[1:]),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2, default=float) + "\n")
    lines = [
        "## Quality: ml-latest-small, cold-item, random ties (bench_quality.py)",
        "",
        f"Machine: {record['machine']}; date {record['date']}; command `{record['command']}`. Inputs: title "
        "(MiniLM), year, editorial genres; no tags. Test items "
        f"{counts['test_items']} (queries scored {counts['queries_scored']}), ties in a random order "
        f"(seed {TIE_SEED}). Fuse {timings['fuse_seconds']:.0f} s for {len(summaries)} configs x {steps} steps "
        f"(per objective, s: {record['objective_train_seconds']}).",
        "",
        f"Best trained {v['best_model']} {v['model_value']:.4f} vs best raw {v['best_baseline']} "
        f"{v['baseline_value']:.4f}: ratio {record['ratio_best_trained_vs_best_raw']:.3f}, paired difference "
        f"{v['diff']:+.4f} [{v['ci_low']:+.4f}, {v['ci_high']:+.4f}]. Text only: "
        f"{record['best_text_model']} / raw MiniLM = {record['ratio_text_trained_vs_raw_minilm']:.3f}. "
        f"Default objective by validation nDCG@10: {default_objective}. Without the prior: best "
        f"{best_plain['name']} ratio {record['without_prior']['ratio_best_trained_vs_best_raw']:.3f}, paired "
        f"[{record['without_prior']['paired']['ci_low']:+.4f}, {record['without_prior']['paired']['ci_high']:+.4f}]; "
        f"text {record['without_prior']['ratio_text_trained_vs_raw_minilm']:.3f}.",
        "",
        "| row | nDCG@10 [95% CI] | HR@10 | prior w |",
        "|---|---|---:|---:|",
    ] + [f"| {r['name']} | {r['nDCG@10']:.4f} [{r['ci']['nDCG@10'][0]:.4f}, {r['ci']['nDCG@10'][1]:.4f}] | "
         f"{r['HR@10']:.4f} | {r.get('prior_weight', '')} |" for r in record["table"]]
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
