"""``cinefuse demo``: the whole job on the embedded collection, offline, in one call.

generate the collection -> extract (offline default backbones) -> fuse --grid (pairs and the
ablation grid, with each single modality as its own row) -> evaluate (cold-item) -> report.

The workdir is the single source of truth and every stage resumes: the collection is reused when
its config matches, extract skips committed items, fuse resumes from checkpoints and skips
finished runs. Running ``cinefuse demo`` again in the same workdir redoes only what is missing.

Layout of the workdir::

    W/collection/    videos, movies.csv, ratings.csv, manifest.csv, genres.csv (cinefuse.demo.collection)
    W/store/         the extracted features (cinefuse.store)
    W/fuse/          the fuse workdir: config.json, split.json, pairs.npz, runs/<model>/...
    W/fuse/evaluation/cold-item/   results.md/.csv/.json and plots (cinefuse.evaluate.run)
    W/report.md, W/modalities.png, W/demo.json   the demo's own report and verdict
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import ClassVar

from cinefuse.demo.collection import CollectionConfig, generate_collection
from cinefuse.errors import CinefuseError

@dataclass
class DemoConfig:
    """Everything the demo does, as data; ``demo.json`` in the workdir records it.

    The verdict compares the ``FULL`` modality set with each of ``SINGLE_MODALITIES``; the
    modality sets of the grid (``modality_sets``) name the rows of the report.
    """

    SINGLE_MODALITIES: ClassVar[tuple[str, ...]] = ("visual", "audio", "text")
    FULL: ClassVar[str] = "full"

    collection: CollectionConfig = field(default_factory=CollectionConfig)
    # extract: overrides of cinefuse.extract.config.ExtractConfig (offline default backbones)
    extract: dict = field(default_factory=lambda: {
        # the clips are 3 s of one scene: 4 frames see the genre; 128 px is above the 96 px source
        "frames": 4, "image_size": 128, "batch_size": 16, "shard_size": 128,
        "visual": ["effnet-lite0", "lowlevel"], "audio": ["logmel"], "text": ["minilm", "tfidf"],
        "meta": ["year"],
    })
    # fuse: sections of cinefuse.fuse.config (merged over its defaults)
    fuse: dict = field(default_factory=lambda: {
        "model": {"modalities": "full", "head": "concat-mlp", "hidden": 128, "token_dim": 64, "embed_dim": 32},
        "loss": {"kind": "triplet", "distance": "cosine"},
        # a larger cold share than fuse's default (15%): the verdict is a paired interval over
        # the cold items, so they are what the demo needs most of
        "split": {"fractions": [0.6, 0.1, 0.3]},
        # user-history reconstruction: on the default collection (seed 0) the full model's
        # validation nDCG@10 was 0.2923 for history, 0.2879 co-like, 0.2829 distill (chosen on the
        # validation items only; `--objective`-style overrides go in this section)
        "objective": {"kind": "history"},
        "train": {"steps": 300, "steps_per_call": 50, "eval_every": 100, "checkpoint_every": 300,
                  "batch_size": 128, "patience": 0, "warmup_steps": 50, "seed": 0},
        # each single modality is a row of its own, so the report can compare full fusion with it
        "grid": {"losses": ["pair", "triplet"], "distances": ["cosine"],
                 "modalities": ["visual", "audio", "text", "visual+audio", "full"],
                 "heads": ["ln-linear"]},
    })
    ks: tuple = (1, 3, 5, 10)
    workers: int = 2                  # processes rendering the collection and decoding for extract
    progress: bool = True

    def modality_sets(self) -> tuple[str, ...]:
        """The modality sets the fuse grid trains, in the grid's order."""
        return tuple(self.fuse.get("grid", {}).get("modalities", ()))

    def to_json(self) -> dict:
        record = asdict(self)
        record["collection"] = self.collection.to_json()
        record["ks"] = list(self.ks)
        return record


@dataclass
class DemoResult:
    workdir: Path
    report: Path
    verdict: dict                     # {"metric", "full", "singles", "paired": {rival: interval}, "fusion_wins", ...}
    seconds: dict                     # stage -> wall seconds
    results: object = None            # cinefuse.evaluate.results.Results
    missing: list = field(default_factory=list)   # stages that could not run, and why


def model_row(loss: str, distance: str, modalities: str, head: str, objective: str = "thesis") -> str:
    from cinefuse.fuse.config import model_name

    return model_name(loss, distance, modalities, head, objective=objective)


def run_demo(workdir: str | Path, config: DemoConfig | None = None, log=None) -> DemoResult:
    """Run every stage into ``workdir`` and write the report; returns the verdict and timings."""
    config = config or DemoConfig()
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}
    start = time.perf_counter()

    def stage(name: str):
        log(f"[demo] {name} ...")
        return time.perf_counter()

    t = stage(f"rendering {config.collection.items} clips into {workdir / 'collection'}")
    collection = generate_collection(workdir / "collection", config.collection, workers=config.workers,
                                     progress=config.progress)
    seconds["collection"] = time.perf_counter() - t

    t = stage("extracting features with the offline default backbones")
    store = workdir / "store"
    run_extract_stage(collection.manifest_csv, store, config)
    seconds["extract"] = time.perf_counter() - t

    t = stage("training the fusion grid (pairs from ratings, cold-item split)")
    fuse_dir = workdir / "fuse"
    run_fuse_stage(store, collection, fuse_dir, config, log)
    seconds["fuse"] = time.perf_counter() - t

    t = stage("evaluating cold-item recommendations")
    from cinefuse.evaluate.run import run_evaluate

    results = run_evaluate(fuse_dir, ks=config.ks, protocol="cold-item", progress=config.progress)
    seconds["evaluate"] = time.perf_counter() - t

    seconds["total"] = time.perf_counter() - start
    verdict = fusion_verdict(results, config)
    from cinefuse.demo.report import write_demo_report

    report = write_demo_report(workdir, config, collection, results, verdict, seconds)
    return DemoResult(workdir=workdir, report=report, verdict=verdict, seconds=seconds, results=results)


def run_extract_stage(manifest: Path, store: Path, config: DemoConfig) -> None:
    try:
        from cinefuse.extract.config import ExtractConfig
        from cinefuse.extract.run import run_extract
    except ModuleNotFoundError as exc:
        raise CinefuseError(f"demo: the extract stage is not available ({exc}); "
                            f"install cinefuse with its extract dependencies") from None
    options = {**config.extract, "manifest": str(manifest), "store": str(store),
               "workers": config.workers, "progress": config.progress}
    summary = run_extract(ExtractConfig.from_dict(options, where="demo extract config"))
    if summary.get("failed"):
        # The clips are made here, so a failure is a broken install (codec, backbone weights),
        # not bad input: stop rather than train on a store with holes.
        raise CinefuseError(
            f"demo: extract failed for {summary['failed']} of {summary['items']} clips "
            f"({summary.get('by_status')}); run `cinefuse store info {store}` and "
            f"`cinefuse extract --manifest {manifest} --store {store} --strict` to see why")


def fuse_config(store: Path, collection, config: DemoConfig):
    from cinefuse.fuse.config import config_from_dict

    sections = {name: dict(values) for name, values in config.fuse.items()}
    sections["data"] = {**sections.get("data", {}), "store": str(store),
                        "ratings": str(collection.ratings_csv), "movies": str(collection.movies_csv)}
    return config_from_dict(sections)


def run_fuse_stage(store: Path, collection, fuse_dir: Path, config: DemoConfig, log) -> dict:
    from cinefuse.fuse.train import run_fuse

    return run_fuse(fuse_config(store, collection, config), fuse_dir, grid=True, log=log, progress=config.progress)


RAW_CONCAT = "cosine all concatenated"


def fusion_verdict(results, config: DemoConfig, metric: str = "nDCG@10") -> dict:
    """Full fusion against each single modality (same objective, loss, distance and head) and against the
    raw concatenated features, each a paired bootstrap over the same cold queries.

    ``fusion_wins`` holds only when every paired 95% interval of full minus rival lies above 0;
    ``beats_point`` when the full model's mean is merely above each rival's. The best row of each
    modality set over the whole grid is reported beside it.
    """
    from cinefuse.evaluate.verdict import paired_comparison

    loss = config.fuse.get("loss", {})
    kind, distance = loss.get("kind", "triplet"), loss.get("distance", "cosine")
    head = config.fuse.get("model", {}).get("head", "concat-mlp")
    singles, full = config.SINGLE_MODALITIES, config.FULL
    objective = config.fuse.get("objective", {}).get("kind", "thesis")
    names = {m: model_row(kind, distance, m, head, objective) for m in (*singles, full)}
    try:
        rows = {m: results.row(n) for m, n in names.items()}
    except KeyError as exc:
        raise CinefuseError(f"demo: the evaluation has no row {exc}; the fuse grid must train "
                            f"{', '.join(names.values())}") from None
    scores = {m: float(r.metrics[metric]) for m, r in rows.items()}
    rivals = {m: rows[m] for m in singles}
    try:
        rivals[RAW_CONCAT] = results.row(RAW_CONCAT)
    except KeyError:
        pass  # fewer than two raw feature sets: nothing concatenated to compare with
    paired = {}
    for name, rival in rivals.items():
        c = paired_comparison(rows[full], rival, metric)
        paired[name] = {"rival": rival.name, "value": c["b_value"], "diff": c["diff"], "ci_low": c["ci_low"],
                        "ci_high": c["ci_high"], "p_better": c["p_better"], "beats": c["beats"]}
    best = best_per_modality_set(results, config, metric)
    baselines = {r.name: float(r.metrics[metric]) for r in results.rows
                 if r.kind != "model" and r.metrics.get(metric) is not None}
    return {
        "metric": metric,
        "models": names,
        "full": scores[full],
        "singles": {m: scores[m] for m in singles},
        "paired": paired,
        "queries": int(rows[full].per_query.scored.sum()),
        "fusion_wins": bool(paired) and all(p["beats"] for p in paired.values()),
        "beats_point": all(p["diff"] > 0 for p in paired.values()),
        "margin": scores[full] - max(scores[m] for m in singles),
        "best_per_modality_set": best,
        "baselines": baselines,
        "tie_break": results.tie_break,
        "tie_seed": results.tie_seed,
        "evaluate_verdict": results.verdict,
    }


def best_per_modality_set(results, config: DemoConfig, metric: str) -> dict:
    """Per modality set, the model row validation chose (highest validation value of its run,
    ``+prior`` rows by their prior value), the best test row beside it labelled "chosen on test";
    without validation values the best test row, ``chosen_on`` saying so."""
    from cinefuse.evaluate.selection import row_validation

    validation = getattr(results, "validation", {}) or {}
    value = lambda r: r.metrics[metric] if r.metrics.get(metric) is not None else -1.0  # noqa: E731
    best = {}
    for m in config.modality_sets():
        set_rows = [r for r in results.rows if r.kind == "model" and r.modalities == m]
        if not set_rows:
            continue
        on_test = max(set_rows, key=value)
        judged = [r for r in set_rows if row_validation(r.name, validation) is not None]
        top = max(judged, key=lambda r: row_validation(r.name, validation)) if judged else on_test
        best[m] = {"model": top.name, metric: float(top.metrics[metric]),
                   "chosen_on": "validation" if judged else "test",
                   "validation": row_validation(top.name, validation),
                   "best_on_test": {"model": on_test.name, metric: float(on_test.metrics[metric])}}
    return best
