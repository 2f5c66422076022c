"""Real data end to end, both tasks, several seeds, every headline chosen on validation:
MovieLens ml-latest-small -> extract (title text, year) + editorial genres -> fuse grid of
objectives, once per seed -> cold-item evaluation in the item-to-item and the user-to-item task.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_quality.py [--work /tmp/cinefuse-quality3] [--steps 300]
        [--seeds 0,1,2] [--selection-task user-to-item] [--subset N (smoke test: the N lowest movie ids
        and their ratings only)]

1. Item inputs are content a new item has before anyone rates it: ``text/minilm``
   (all-MiniLM-L6-v2 over the title) and ``meta/year`` from ``run_extract``, and the editorial
   genres ``meta/genres`` (multi-hot over movies.csv's genres), written into the same store with
   ``cinefuse.store``'s writer (one shard; the extract stage has no genres backbone). Users' tags
   are interactions, not content: not used.
2. ``run_fuse`` trains the grid ``objectives`` x ``modality sets`` with the cold-item split
   (70/15/15 of the items; targets from the training items' ratings only), each with the
   item-prior head, once per seed, each run's checkpoint kept (and stopped early) by the
   validation metric of ``--selection-task`` (``[selection] task``; default user-to-item Recall@20,
   the task whose target the benchmark chases; both tasks' validation values are recorded).
   Where the fuse config knows ``train.seeds`` one workdir trains every seed (runs
   ``<model>@seed<N>``); otherwise (``seeds_via`` in the JSON says which) one workdir per seed
   with ``train.seed = N``, every one reading the split of the first seed's workdir (split.json
   and pairs.npz copied), so all seeds rank the same test items.
3. ``cinefuse evaluate``'s pieces (``evaluate.run.evaluate_runs``) score every row in both tasks
   with random ties seeded by ``TIE_SEED``; rows of several seeds are grouped by base model
   (``evaluate.selection``), and every headline names the group validation chose (the mean over
   seeds of item-to-item validation nDCG@10 / user-to-item validation Recall@20, from the runs'
   summary.json, or computed by evaluate on the validation items when a run lacks them), never
   the best test row. The paired interval resamples seeds, then queries (users).

Writes benchmarks/results/quality.json (top-level ``u2i_ratio_validated_vs_best_raw``,
``u2i_ratio_validated_prior_vs_best_raw``, ``u2i_paired_ci_low``, ``i2i_ratio_validated_vs_best_raw``,
``i2i_ratio_validated_prior_vs_best_raw``, ``i2i_coverage10_validated_prior``, ``seeds``,
``selection`` = "validation", and ``tables``: each task's rows, seed groups and verdict) and
quality.md. Rerunning reuses the store and the trained models in --work; pass --fresh to start over.
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
TASKS = ("item-to-item", "user-to-item")
METRIC = {"item-to-item": "nDCG@10", "user-to-item": "R@20"}
PREFIX = {"item-to-item": "i2i", "user-to-item": "u2i"}


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




def subset_data(data: Path, work: Path, n: int) -> Path:
    """A MovieLens folder of the ``n`` lowest movie ids and their ratings (smoke tests)."""
    import pandas as pd

    out = work / f"subset-{n}"
    out.mkdir(parents=True, exist_ok=True)
    movies = pd.read_csv(data / "movies.csv").sort_values("movieId").head(n)
    ratings = pd.read_csv(data / "ratings.csv")
    movies.to_csv(out / "movies.csv", index=False)
    ratings[ratings.movieId.isin(movies.movieId)].to_csv(out / "ratings.csv", index=False)
    return out


def extract_store(data: Path, work: Path, text_backbone: str = "minilm") -> tuple[int, dict, str, float]:
    """(movies, extract summary, what write_genres did, seconds): MiniLM (or ``text_backbone``)
    over titles, year, genres."""
    from cinefuse.extract.config import ExtractConfig
    from cinefuse.extract.run import run_extract

    manifest = work / "movies_manifest.csv"
    n_movies = write_manifest(data, manifest)
    start = time.perf_counter()
    summary = run_extract(ExtractConfig(
        manifest=str(manifest), store=str(work / "store"), visual=[], audio=[], text=[text_backbone],
        meta=["year"], text_fields=["title"], year_field="year", shard_size=4096, workers=0, progress=True,
    ))
    note = write_genres(data, work / "store")
    return n_movies, summary, note, time.perf_counter() - start


def fuse_config(work: Path, data: Path, steps: int, batch_size: int, objectives: list[str],
                selection_task: str = "user-to-item") -> dict:
    steps_per_call = 50
    eval_every = steps_per_call * max(1, steps // steps_per_call // 5)
    return {
        "data": {"store": str(work / "store"), "ratings": str(data), "movies": str(data),
                 "modality_sets": MODALITY_SETS},
        "model": {"modalities": "full"},
        "loss": {"kind": "triplet", "distance": "cosine"},
        "objective": {"kind": "co-like", "prior": True},
        "train": {"steps": steps, "steps_per_call": steps_per_call, "eval_every": eval_every,
                  "checkpoint_every": eval_every, "batch_size": batch_size, "patience": 3},
        "grid": {"objectives": objectives, "losses": ["triplet"], "distances": ["cosine"],
                 "modalities": GRID_MODALITIES, "heads": []},
        "selection": {"task": selection_task},
    }


def seeds_supported() -> bool:
    """Whether the fuse config knows ``train.seeds`` (the fuse side of issue 20)."""
    from cinefuse.fuse.config import TrainConfig

    return "seeds" in getattr(TrainConfig, "__dataclass_fields__", {})


def train_seeds(config: dict, work: Path, seeds: list[int], tag: str) -> tuple[list[Path], list[dict], str]:
    """(workdirs, every run's summary, how the seeds were trained)."""
    from cinefuse.fuse.train import run_fuse

    if seeds_supported():
        wd = work / f"fuse-{tag}-seeds{'-'.join(map(str, seeds))}"
        summary = run_fuse({**config, "train": {**config["train"], "seed": seeds[0], "seeds": seeds}}, wd, grid=True)
        return [wd], summary["runs"], "train.seeds (one workdir)"
    workdirs, runs = [], []
    for seed in seeds:
        wd = work / f"fuse-{tag}-seed{seed}"
        if workdirs and not (wd / "split.json").is_file():  # every seed ranks the first seed's split
            wd.mkdir(parents=True, exist_ok=True)
            for name in ("split.json", "pairs.npz"):
                shutil.copy2(workdirs[0] / name, wd / name)
        summary = run_fuse({**config, "train": {**config["train"], "seed": seed}}, wd, grid=True)
        workdirs.append(wd)
        runs += [{**s, "seed": seed} for s in summary["runs"]]
    return workdirs, runs, "one workdir per train.seed, the split of the first seed copied to the others"


def evaluate_seeds(workdirs: list[Path], seeds: list[int]) -> dict:
    """Task -> finished Results over every seed's rows (one workdir: as evaluate groups them;
    several: model rows renamed ``<run>@seed<N>``, the baselines of the first, regrouped)."""
    from cinefuse.evaluate.run import evaluate_runs
    from cinefuse.evaluate.selection import run_of
    from cinefuse.evaluate.verdict import finish_results

    evs = [evaluate_runs(wd, ks=(10,), tie_seed=TIE_SEED, progress=False, tasks=TASKS) for wd in workdirs]
    if len(evs) == 1:
        return {task: evs[0][task].results for task in TASKS}
    out = {}
    for task in TASKS:
        first = evs[0][task]
        rows, validation = [], {}
        for seed, ev in zip(seeds, (e[task] for e in evs)):
            if ev.es.candidate_ids.tolist() != first.es.candidate_ids.tolist() or \
                    ev.es.query_ids.tolist() != first.es.query_ids.tolist():
                raise RuntimeError(f"seed {seed} ranks other {task} queries or candidates than seed {seeds[0]}")
            for r in ev.results.rows:
                if r.kind == "model":
                    run, prior = run_of(r.name)
                    r.name = f"{run}@seed{seed}" + ("+prior" if prior else "")
                    rows.append(r)
            validation.update({f"{run}@seed{seed}": {**v, "seed": seed, "base_model": run}
                               for run, v in ev.results.validation.items()})
        results = first.results
        results.rows = rows + [r for r in first.results.rows if r.kind != "model"]
        results.notes = [n for n in results.notes if not n.startswith("no validation values")]
        results.notes.append(f"seeds {seeds}: one workdir per seed ({', '.join(str(w) for w in workdirs)}), "
                             "the same split; baselines from the first")
        results.verdict, results.seed_groups = None, {}
        finish_results(results, first.es, first.task, validation)
        out[task] = results
    return out


def headline(results, task: str) -> dict:
    """The task's figures, every one of a model chosen on validation: the embedding alone and its
    ``+prior`` variant against the best raw row, the paired interval of the first."""
    from cinefuse.evaluate.selection import group_rows
    from cinefuse.evaluate.verdict import best_row, compare_group

    metric, p = METRIC[task], PREFIX[task]
    v = results.verdict
    raw = best_row(results.rows, "itemknn-cbf", metric)
    chosen = v["chosen"]
    groups = group_rows(results.rows, results.validation)
    plain = compare_group(groups[chosen["plain"]["model"]], raw, metric)
    prior = chosen.get("prior")
    return {
        f"{p}_ratio_validated_vs_best_raw": chosen["plain"]["value"] / raw.metrics[metric],
        f"{p}_ratio_validated_prior_vs_best_raw": (prior["value"] / raw.metrics[metric]) if prior else None,
        f"{p}_paired_ci_low": plain["ci_low"],
        f"{p}_paired_ci_high": plain["ci_high"],
        f"{p}_coverage10_validated": chosen["plain"]["coverage10"],
        f"{p}_coverage10_validated_prior": prior["coverage10"] if prior else None,
        f"{p}_best_raw": {"row": raw.name, metric: float(raw.metrics[metric]),
                          "coverage10": raw.metrics.get("Cov@10")},
        f"{p}_validated": chosen["plain"], f"{p}_validated_prior": prior,
        f"{p}_best_test_row_chosen_on_test": v["best_on_test"],
    }


def table_of(results) -> dict:
    """A task's rows (metrics and intervals), seed groups, verdict and notes, as plain JSON."""
    from cinefuse.evaluate.results import finite_or_none

    record = results.to_json()
    return finite_or_none({"task": results.task, "metric": METRIC[results.task], "counts": results.counts,
                           "rows": [{k: r[k] for k in ("name", "kind", "metrics", "ci")} for r in record["rows"]],
                           "seed_groups": results.seed_groups, "verdict": results.verdict,
                           "strata": results.strata, "strata_cut": results.strata_cut, "notes": results.notes})


def markdown(record: dict) -> list[str]:
    lines = [
        "## Quality: ml-latest-small, cold-item, both tasks, headlines chosen on validation (bench_quality.py)",
        "",
        f"Machine: {record['machine']}; date {record['date']}; command `{record['command']}`. Inputs: title "
        f"(MiniLM), year, editorial genres; no tags. Seeds {record['seeds']} ({record['seeds_via']}); ties in a "
        f"random order (seed {TIE_SEED}); selection: {record['selection']}; checkpoints kept by "
        f"{record.get('selection_task', 'item-to-item')} validation.",
        "",
    ]
    for task in TASKS:
        p, metric = PREFIX[task], METRIC[task]
        t = record["tables"][task]
        v = t["verdict"]
        lines += [
            f"### {task} ({metric})",
            "",
            f"Chosen on validation: {record[f'{p}_validated']['model']} (embedding alone) "
            f"{record[f'{p}_validated']['value']:.4f}, ratio to the best raw row "
            f"{record[f'{p}_ratio_validated_vs_best_raw']:.3f}, paired 95% "
            f"[{record[f'{p}_paired_ci_low']:+.4f}, {record[f'{p}_paired_ci_high']:+.4f}]; with the prior "
            + (f"{record[f'{p}_validated_prior']['model']} ratio {record[f'{p}_ratio_validated_prior_vs_best_raw']:.3f}"
               if record[f"{p}_validated_prior"] else "none")
            + f"; best raw {record[f'{p}_best_raw']['row']} {record[f'{p}_best_raw'][metric]:.4f}. Coverage@10: "
            f"{fmt_share(record[f'{p}_coverage10_validated'])} (embedding), "
            f"{fmt_share(record[f'{p}_coverage10_validated_prior'])} (+prior), "
            f"{fmt_share(record[f'{p}_best_raw']['coverage10'])} (best raw). Verdict: {v['best_model']} "
            f"{'beats' if v['beats'] else 'does not beat'} {v['best_baseline']}. Best test row (chosen on test): "
            f"{v['best_on_test']['model']} {v['best_on_test']['value']:.4f}.",
            "",
            f"| model | seeds | validation | {metric} mean | min | max | 95% CI (seeds, queries) | Cov@10 |",
            "|---|---:|---:|---:|---:|---:|---|---:|",
        ]
        for g, s in sorted(t["groups"].items(), key=lambda kv: -(kv[1]["value"] or 0)):
            ci = s.get("ci") or [float("nan")] * 2
            lines.append(f"| {g} | {s['seeds']} | {fmt(s['validation'])} | {s['value']:.4f} | {s['min']:.4f} | "
                         f"{s['max']:.4f} | [{ci[0]:.4f}, {ci[1]:.4f}] | {fmt_share(s['coverage10'])} |")
        lines += [f"| {r['name']} (raw) | | | {r['metrics'][metric]:.4f} | | | | "
                  f"{fmt_share(r['metrics'].get('Cov@10'))} |" for r in t["rows"] if r["kind"] != "model"]
        lines.append("")
    return lines


def fmt(x) -> str:
    return "-" if x is None else f"{x:.4f}"


def fmt_share(x) -> str:
    return "-" if x is None else f"{x:.1%}"


def group_table(results) -> dict:
    """Every model group (mean over its seeds, spread, interval over seeds and queries)."""
    from cinefuse.evaluate.selection import group_rows
    from cinefuse.evaluate.verdict import seed_group

    metric = METRIC[results.task]
    return {g: seed_group(g, rs, results.validation, metric)
            for g, rs in group_rows(results.rows, results.validation).items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="ml-latest-small folder")
    parser.add_argument("--work", default="/tmp/cinefuse-quality3", help="scratch folder (store, workdirs)")
    parser.add_argument("--steps", type=int, default=300, help="training steps per configuration")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--objectives", default=",".join(OBJECTIVES))
    parser.add_argument("--seeds", default="0,1,2", help="training seeds, comma-separated")
    parser.add_argument("--subset", type=int, default=0, help="smoke test: only the N lowest movie ids")
    parser.add_argument("--out", default=str(RESULTS),
                        help="folder for quality.json and quality.md, or a .json path (the .md goes beside it)")
    parser.add_argument("--text-backbone", choices=["minilm", "tfidf"], default="minilm",
                        help="the title's text features (tfidf where the MiniLM weights are not installed)")
    parser.add_argument("--selection-task", choices=TASKS, default="user-to-item",
                        help="[selection] task of every run: whose validation metric keeps the checkpoint and "
                             "stops early (default: user-to-item, Recall@20)")
    parser.add_argument("--fresh", action="store_true", help="delete --work first")
    args = parser.parse_args()
    MODALITY_SETS["text"] = [f"text/{args.text_backbone}"]

    data = Path(args.data)
    if not (data / "ratings.csv").is_file():
        print(f"MovieLens ml-latest-small not found at {data}", file=sys.stderr)
        return 2
    work = Path(args.work)
    if args.fresh and work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    if args.subset:
        data = subset_data(data, work, args.subset)
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    timings = {}
    n_movies, extract_summary, genres_note, timings["extract_seconds"] = extract_store(data, work, args.text_backbone)
    print(f"extract: {timings['extract_seconds']:.1f} s; meta/genres {genres_note}", file=sys.stderr)

    steps = max(50, args.steps // 50 * 50)
    objectives = args.objectives.split(",")
    config = fuse_config(work, data, steps, args.batch_size, objectives, args.selection_task)
    start = time.perf_counter()
    workdirs, runs, seeds_via = train_seeds(config, work, seeds, f"{steps}steps-b{args.batch_size}-{PREFIX[args.selection_task]}")
    timings["fuse_seconds"] = time.perf_counter() - start
    start = time.perf_counter()
    results = evaluate_seeds(workdirs, seeds)
    timings["evaluate_seconds"] = time.perf_counter() - start

    record = {}
    for task in TASKS:
        record.update(headline(results[task], task))
    tables = {task: {**table_of(results[task]), "groups": group_table(results[task])} for task in TASKS}
    record.update({
        "seeds": seeds,
        "seeds_via": seeds_via,
        "selection": "validation",
        "selection_task": args.selection_task,
        "interval": "paired percentile bootstrap, seeds resampled then queries (users); one seed: queries only",
        "tie_break": "random",
        "tie_seed": TIE_SEED,
        "tables": tables,
        "validation": [{k: s.get(k) for k in ("model", "seed", "val_ndcg10", "val_ndcg10_prior", "prior_weight",
                                              "val_u2i_recall20", "val_u2i_recall20_prior", "prior_weight_u2i",
                                              "best_step", "train_seconds")} for s in runs],
        "timings": timings,
        "fuse": {"steps": steps, "batch_size": args.batch_size, "configs_per_seed": len(runs) // max(len(seeds), 1),
                 "objectives": objectives, "modalities": GRID_MODALITIES, "workdirs": [str(w) for w in workdirs]},
        "inputs": {MODALITY_SETS["text"][0]: ("all-MiniLM-L6-v2" if args.text_backbone == "minilm" else "TF-IDF")
                   + " over the title", "meta/year": "extract year backbone",
                   "meta/genres": f"editorial genres multi-hot, {genres_note}", "tags": "not used (interactions)"},
        "dataset": "ml-latest-small" + (f" (subset: {args.subset} lowest movie ids)" if args.subset else ""),
        "movies": n_movies,
        "extract": {k: x for k, x in extract_summary.items() if isinstance(x, (int, float, str))},
        "machine": f"{os.cpu_count()}-core CPU ({platform.machine()}), shared with other jobs",
        "date": datetime.date.today().isoformat(),
        "command": "python benchmarks/bench_quality.py " + " ".join(sys.argv[1:]),
    })
    out = Path(args.out)
    json_path = out if out.suffix == ".json" else out / "quality.json"
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(record, indent=2, default=float) + "\n")
    lines = markdown(record)
    json_path.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
