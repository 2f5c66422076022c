"""Real trailers: do what a film looks like and sounds like help, on ml-latest-small?

    PYTHONPATH=. .venv/bin/python benchmarks/bench_trailers.py [--work /tmp/cinefuse-trailers] [--steps 1000]
        [--require any|all]

1. Store: ``text/minilm`` (all-MiniLM-L6-v2 over the title) and ``meta/year`` from ``run_extract``
   and the editorial genres ``meta/genres`` (multi-hot, one shard), as bench_quality.py builds
   them; then the three published trailer files of ``../shared/data/trailers`` brought in with
   ``cinefuse store import`` (the command itself, as a user runs it): ``visual/mmtf_aesthetic``
   (MMTF-14K aesthetic visual, 107 dims), ``audio/mmtf_ivector`` (MMTF-14K audio i-vector, 20 dims),
   ``visual/mise_en_scene`` (7 dims). Modalities: text = minilm; meta = year + genres; visual =
   both visual sets; audio = the i-vector.
2. ``run_fuse`` trains the grid text+meta, text+meta+visual, text+meta+audio and full with the
   default objective, one cold-item split (70/15/15 of the items) for every model. ``--require``
   writes ``[data] require = "any"`` (an item trains on the modalities it has; the default once
   fuse supports it) or leaves the key out (``all``: today's rule, an item needs every set of the
   grid, so every model trains and is evaluated on the items holding trailer features).
3. ``run_evaluate`` ranks the test items (the same queries and candidates for every row) with every
   model and the raw-feature cosine baselines (each set and all concatenated), ties in a seeded
   random order. The headline: Recall@20, the trained row of each model (``<model>+prior``, its
   prior weight chosen on validation, or the plain cosine for a model without a prior head), paired
   bootstrap over queries of full against text+meta.

Writes ``benchmarks/results/trailers.json`` (``--out``): ``ratio_full_vs_textmeta_trained``,
``paired_ci_low_full_vs_textmeta``, ``ratio_full_trained_vs_best_raw``, ``task`` (the task the three
are read from), ``items_with_trailer_features``, the full table (and availability strata when
evaluate reports them) and the seconds of each stage. Under ``--require any`` the rows are also
measured on the items with trailer features alone (``tasks_on_items_with_trailer_features``: the
same models evaluated over a store view holding only those items). ``--subset N`` (smoke tests) builds the
store from N movies with MMTF features and N without; its JSON says ``"smoke": true``.
The user-to-item task is measured too when ``run_evaluate`` offers it (``task="user-to-item"``).
"""

from __future__ import annotations

import argparse
import csv
import datetime
import inspect
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
DEFAULT_DATA = REPO.parent / "shared" / "data" / "movielens" / "ml-latest-small"
DEFAULT_TRAILERS = REPO.parent / "shared" / "data" / "trailers"
IMPORTS = {  # feature set -> (file, description)
    "visual/mmtf_aesthetic": ("mmtf14k_aesthetic_visual_med.csv",
                              "MMTF-14K aesthetic visual features of the trailer, median over key frames (107)"),
    "audio/mmtf_ivector": ("mmtf14k_audio_ivector_gmm32_tv20.csv",
                           "MMTF-14K i-vector of the trailer audio, GMM 32, total variability 20, fold 1"),
    "visual/mise_en_scene": ("mise_en_scene_13k.csv",
                             "mise-en-scene of the trailer (Deldjoo et al.), 7 log-scaled features"),
}
MODALITY_SETS = {"text": ["text/minilm"], "meta": ["meta/year", "meta/genres"],
                 "visual": ["visual/mmtf_aesthetic", "visual/mise_en_scene"], "audio": ["audio/mmtf_ivector"]}
GRID = ["text+meta", "text+meta+visual", "text+meta+audio", "full"]
METRIC = "R@20"
KS = (10, 20)
TIE_SEED = 20261202


def choose_movies(data: Path, trailers: Path, subset: int | None):
    """The movies of the run: every ml-latest-small movie, or (``subset``) the first N by id that
    have MMTF features and the first N that have not."""
    from cinefuse.datasets.movielens import load_movies

    movies = load_movies(data)
    ids = [str(i) for i in movies.ids]
    keep = list(range(len(ids)))
    if subset:
        with open(trailers / IMPORTS["visual/mmtf_aesthetic"][0], newline="") as handle:
            mmtf = {row[0] for row in csv.reader(handle)}
        order = sorted(range(len(ids)), key=lambda k: int(ids[k]) if ids[k].isdigit() else 0)
        have = [k for k in order if ids[k] in mmtf][:subset]
        lack = [k for k in order if ids[k] not in mmtf][:subset]
        keep = sorted(have + lack)
    return movies, keep


def write_manifest(movies, keep: list[int], path: Path) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "title", "year"])
        for k in keep:
            year = movies.years[k]
            writer.writerow([str(movies.ids[k]), movies.titles[k], "" if year != year else int(year)])


def write_genres(movies, keep: list[int], store: Path) -> str:
    """``meta/genres``: editorial genres as a multi-hot (as bench_quality.py writes it), one shard."""
    import numpy as np

    from cinefuse.datasets.movielens import genre_vocabulary
    from cinefuse.store import FeatureBlock, StoreWriter, open_store

    if "meta/genres" in open_store(store).feature_sets():
        return "already in the store"
    genres = [movies.genres[k] for k in keep]
    vocab = genre_vocabulary(genres)
    col = {g: c for c, g in enumerate(vocab)}
    x = np.zeros((len(keep), len(vocab)), np.float32)
    for row, gs in enumerate(genres):
        x[row, [col[g] for g in gs]] = 1.0
    writer = StoreWriter(store, config={"bench_trailers": "meta/genres", "source": "movies.csv genres"})
    writer.write_shard([str(movies.ids[k]) for k in keep], {"meta/genres": FeatureBlock(
        x, np.ones(len(keep), bool), ["ok"] * len(keep), None, {"backbone": "movielens genres multi-hot",
                                                                  "columns": vocab})})
    return f"written ({len(vocab)} genres)"


def import_trailers(store: Path, trailers: Path) -> dict:
    """``cinefuse store import`` for each trailer file, as a user runs it; its output and seconds."""
    out = {}
    for name, (file_name, description) in IMPORTS.items():
        start = time.perf_counter()
        result = subprocess.run([sys.executable, "-m", "cinefuse", "store", "import", str(store),
                                 str(trailers / file_name), "--name", name, "--description", description],
                                capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
        if result.returncode != 0:
            raise SystemExit(f"store import {file_name} failed: {result.stderr.strip()}")
        print(result.stdout.rstrip(), file=sys.stderr)
        out[name] = {"seconds": round(time.perf_counter() - start, 3), "output": result.stdout.strip().splitlines()}
    return out


def trailer_coverage(store: Path) -> dict:
    import numpy as np

    from cinefuse.store import open_store

    table = open_store(store).load(list(IMPORTS))
    valid = {name: np.asarray(table.valid[name], bool) for name in IMPORTS}
    mmtf = valid["visual/mmtf_aesthetic"] | valid["audio/mmtf_ivector"]
    every = np.logical_and.reduce(list(valid.values()))
    return {"items": int(len(table.ids)), **{name: int(v.sum()) for name, v in valid.items()},
            "any_mmtf": int(mmtf.sum()), "any_trailer_set": int(np.logical_or.reduce(list(valid.values())).sum()),
            "every_trailer_set": int(every.sum())}


def fuse_config(work: Path, data: Path, steps: int, batch_size: int, require: str, train: dict | None = None,
                model: dict | None = None) -> dict:
    per_call = min(50, steps)
    steps = max(per_call, steps // per_call * per_call)
    eval_every = per_call * max(1, steps // per_call // 5)
    config = {
        "data": {"store": str(work / "store"), "ratings": str(data), "movies": str(data),
                 "modality_sets": MODALITY_SETS},
        "model": {"modalities": "full"},
        "train": {"steps": steps, "steps_per_call": per_call, "eval_every": eval_every,
                  "checkpoint_every": eval_every, "batch_size": batch_size, "patience": 3, **(train or {})},
        "grid": {"modalities": GRID, "heads": []},
    }
    config["model"].update(model or {})
    if require == "any":  # the key exists once fuse handles items that miss a modality
        config["data"]["require"] = "any"
    return config


def trained_row(results, model: str):
    """The row a model is judged by: ``<model>+prior`` (prior weight chosen on validation, 0
    allowed) when the model has a prior head, else its plain cosine row."""
    names = {r.name: r for r in results.rows}
    return names.get(f"{model}+prior") or names[model]


def per_query(row, metric: str):
    # the per-query values run_evaluate keeps in memory for its paired intervals
    return row.per_query.of(metric)


def headline(results, models: dict[str, str]) -> dict:
    """The three figures of one task, read from ``results`` (a ``run_evaluate`` result)."""
    from cinefuse.metrics.bootstrap import paired_bootstrap

    full, textmeta = trained_row(results, models["full"]), trained_row(results, models["text+meta"])
    raws = [r for r in results.rows if r.kind == "itemknn-cbf"]
    best_raw = max(raws, key=lambda r: r.metrics[METRIC])
    pair = paired_bootstrap(per_query(full, METRIC), per_query(textmeta, METRIC), seed=0)
    return {
        "metric": METRIC,
        "ratio_full_vs_textmeta_trained": full.metrics[METRIC] / textmeta.metrics[METRIC],
        "paired_ci_low_full_vs_textmeta": pair.low,
        "ratio_full_trained_vs_best_raw": full.metrics[METRIC] / best_raw.metrics[METRIC],
        "full": {"row": full.name, METRIC: full.metrics[METRIC]},
        "text+meta": {"row": textmeta.name, METRIC: textmeta.metrics[METRIC]},
        "best_raw": {"row": best_raw.name, METRIC: best_raw.metrics[METRIC]},
        "paired_full_vs_textmeta": {"diff": pair.mean, "ci_low": pair.low, "ci_high": pair.high,
                                    "p_better": pair.share_above_zero, "queries": pair.n_queries},
        "per_model": {mods: {"row": trained_row(results, m).name, METRIC: trained_row(results, m).metrics[METRIC]}
                      for mods, m in models.items()},
    }


def table_of(results) -> list[dict]:
    keep = [f"{m}@{k}" for m in ("R", "nDCG", "HR", "P") for k in KS]
    return [{"name": r.name, "kind": r.kind, **{m: r.metrics.get(m) for m in keep}, "ci": r.ci, "note": r.note}
            for r in sorted(results.rows, key=lambda r: -(r.metrics.get(METRIC) or 0.0))]


def trailer_items_store(store: Path, view: Path) -> int:
    """A store holding every set of ``store`` for the items with trailer features only (a valid
    row in at least one imported set): evaluated over it, the test items ranked are those items,
    the models and baselines unchanged. Returns how many items it holds."""
    import numpy as np

    from cinefuse.store import FeatureBlock, StoreWriter, open_store

    source = open_store(store)
    names = [n for n in source.feature_sets() if not n.startswith("fused/")]
    table = source.load(names)
    keep = np.logical_or.reduce([np.asarray(table.valid[n], bool) for n in IMPORTS])
    if view.exists():
        shutil.rmtree(view)
    blocks = {n: FeatureBlock(np.ascontiguousarray(table.features[n][keep]), np.asarray(table.valid[n], bool)[keep],
                              np.asarray(table.status[n], dtype=str)[keep].tolist(), None, dict(table.attrs[n]))
              for n in names}
    StoreWriter(view, {"bench_trailers": "items with trailer features", "from": str(store)}).write_shard(
        np.asarray(table.ids, dtype=str)[keep].tolist(), blocks)
    return int(keep.sum())


def evaluate(workdir: Path, models: dict[str, str], store: Path | None = None) -> dict:
    """Item-to-item (cold-item) always; user-to-item when run_evaluate offers that task.
    ``store``: evaluate over that store (the trailer-items view) and write nothing."""
    from cinefuse.evaluate.run import run_evaluate

    tasks = ["item-to-item"]
    if "task" in inspect.signature(run_evaluate).parameters:
        tasks.append("user-to-item")
    out = {}
    for task in tasks:
        start = time.perf_counter()
        extra = {"task": task} if task != "item-to-item" else {}
        if store is not None:
            extra.update(store=str(store), write=False)
        results = run_evaluate(workdir, ks=KS, protocol="cold-item", tie_break="random", tie_seed=TIE_SEED,
                               progress=False, **extra)
        raw = results.to_json()
        out[task] = {"seconds": round(time.perf_counter() - start, 3), **headline(results, models),
                     "table": table_of(results), "counts": raw.get("counts"), "notes": raw.get("notes"),
                     "strata": raw.get("strata"), "strata_cut": raw.get("strata_cut"), "verdict": raw.get("verdict")}
    return out


def build_store(args, work: Path, timings: dict) -> tuple[int, dict]:
    from cinefuse.extract.config import ExtractConfig
    from cinefuse.extract.run import run_extract

    data, trailers = Path(args.data), Path(args.trailers)
    movies, keep = choose_movies(data, trailers, args.subset)
    manifest = work / "movies_manifest.csv"
    write_manifest(movies, keep, manifest)
    start = time.perf_counter()
    run_extract(ExtractConfig(
        manifest=str(manifest), store=str(work / "store"), visual=[], audio=[], text=["minilm"],
        meta=["year"], text_fields=["title"], year_field="year", shard_size=4096, workers=0, progress=True,
    ))
    timings["extract_seconds"] = round(time.perf_counter() - start, 3)
    start = time.perf_counter()
    genres_note = write_genres(movies, keep, work / "store")
    timings["genres_seconds"] = round(time.perf_counter() - start, 3)
    start = time.perf_counter()
    imports = import_trailers(work / "store", trailers)
    timings["import_seconds"] = round(time.perf_counter() - start, 3)
    timings["import_seconds_per_file"] = {name: v["seconds"] for name, v in imports.items()}
    return len(keep), {"genres": genres_note, "imports": {k: v["output"] for k, v in imports.items()}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="ml-latest-small folder")
    parser.add_argument("--trailers", default=str(DEFAULT_TRAILERS), help="folder of the trailer feature files")
    parser.add_argument("--work", default="/tmp/cinefuse-trailers", help="scratch folder (store, workdir)")
    parser.add_argument("--steps", type=int, default=1000, help="training steps per model")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--require", choices=["any", "all"], default="any",
                        help="any: [data] require = \"any\" (items train on the modalities they have); "
                        "all: the key left out (today's rule: items holding every set)")
    parser.add_argument("--subset", type=int, help="smoke test: N movies with MMTF features and N without "
                        "(give it its own --work: a store holds the items it was built with)")
    parser.add_argument("--modality-dropout", type=float, help="[train] modality_dropout (default: fuse's)")
    parser.add_argument("--head", help="[model] head (default: fuse's, concat-mlp)")
    parser.add_argument("--patience", type=int, help="[train] patience in evaluations (default 3)")
    parser.add_argument("--learning-rate", type=float, help="[train] learning_rate (default: fuse's)")
    parser.add_argument("--out", default=str(RESULTS / "trailers.json"), help="the JSON to write")
    parser.add_argument("--fresh", action="store_true", help="delete --work first")
    args = parser.parse_args()

    if not (Path(args.data) / "ratings.csv").is_file() or not Path(args.trailers).is_dir():
        print(f"ml-latest-small ({args.data}) or the trailer files ({args.trailers}) not found", file=sys.stderr)
        return 2
    work = Path(args.work)
    if args.fresh and work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    timings: dict = {}
    n_movies, inputs = build_store(args, work, timings)
    coverage = trailer_coverage(work / "store")

    from cinefuse.fuse.train import run_fuse

    train = {k: v for k, v in (("modality_dropout", args.modality_dropout), ("patience", args.patience),
                               ("learning_rate", args.learning_rate)) if v is not None}
    model = {"head": args.head} if args.head else {}
    config = fuse_config(work, Path(args.data), args.steps, args.batch_size, args.require, train, model)
    options = "".join(f"-{k}{v}" for k, v in {**train, **model}.items())
    workdir = work / f"fuse-{config['train']['steps']}steps-b{args.batch_size}-{args.require}{options}"
    start = time.perf_counter()
    fuse_summary = run_fuse(config, workdir, grid=True)
    timings["fuse_seconds"] = round(time.perf_counter() - start, 3)
    print(fuse_summary["table"], file=sys.stderr)
    runs = fuse_summary["runs"]
    models = {mods: next(s["model"] for s in runs if f"-{mods}-" in f"-{s['model']}-") for mods in GRID}
    start = time.perf_counter()
    tasks = evaluate(workdir, models)
    timings["evaluate_seconds"] = round(time.perf_counter() - start, 3)
    if args.require == "any":  # under "all" every evaluated item has trailer features already
        start = time.perf_counter()
        trailer_items_store(work / "store", work / "store-trailer-items")
        on_trailer_items = evaluate(workdir, models, work / "store-trailer-items")
        timings["evaluate_trailer_items_seconds"] = round(time.perf_counter() - start, 3)
    else:
        on_trailer_items = "the same rows as tasks: under require = all every evaluated item has trailer features"
    task = "user-to-item" if "user-to-item" in tasks else "item-to-item"
    head = tasks[task]
    record = {
        "ratio_full_vs_textmeta_trained": head["ratio_full_vs_textmeta_trained"],
        "paired_ci_low_full_vs_textmeta": head["paired_ci_low_full_vs_textmeta"],
        "ratio_full_trained_vs_best_raw": head["ratio_full_trained_vs_best_raw"],
        "task": task,
        "metric": METRIC,
        "items_with_trailer_features": coverage["any_trailer_set"],
        "trailer_coverage": coverage,
        "require": args.require,
        "table": head["table"],  # of the task above; every task's table is under "tasks"
        "scope": ("every item with at least one of the model's sets" if args.require == "any" else
                  "items holding every set of the grid (require = all): all evaluated items have trailer features"),
        "tasks": tasks,
        "tasks_on_items_with_trailer_features": on_trailer_items,
        "timings": timings,
        "models": models,
        "fuse": {"steps": config["train"]["steps"], "batch_size": args.batch_size, "grid": GRID,
                 "train_options": train, "model_options": model,
                 "modality_sets": MODALITY_SETS, "objective": "default (the fuse config's)",
                 "split": fuse_summary.get("split"), "items": fuse_summary.get("items"),
                 "feature_counts": fuse_summary.get("feature_counts"),
                 "validation": [{k: s.get(k) for k in ("model", "val_ndcg10", "prior_weight", "val_ndcg10_prior",
                                                       "best_step", "train_seconds")} for s in runs]},
        "inputs": inputs,
        "dataset": "ml-latest-small", "movies": n_movies, "smoke": bool(args.subset),
        "tie_break": "random", "tie_seed": TIE_SEED,
        "machine": f"{os.cpu_count()}-core CPU ({platform.machine()}), shared with other jobs",
        "date": datetime.date.today().isoformat(),
        "command": "python benchmarks/bench_trailers.py " + " ".join(sys.argv[1:]),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2, default=float) + "\n")
    print(json.dumps({k: record[k] for k in list(record)[:6]}, indent=2, default=float))
    return 0


if __name__ == "__main__":
    from cinefuse.errors import CinefuseError

    try:
        sys.exit(main())
    except CinefuseError as exc:  # a user's mistake (or a fuse without [data] require yet): one line
        print(f"bench_trailers: error: {exc}", file=sys.stderr)
        sys.exit(2)
