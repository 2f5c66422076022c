"""Score a fuse workdir: every trained model and every baseline, one table.

``run_evaluate(workdir)`` embeds every item with each trained model (``cinefuse.fuse.embed``),
writes those fused embeddings to a store as feature sets ``fused/<model>``, ranks the candidates
of the chosen protocol by cosine on the device in blocks, and computes the pinned metrics
(``cinefuse.metrics.metrics``) for the models and the baselines (``cinefuse.evaluate.baselines``).

Protocols:
- ``cold-item`` (default): queries and candidates are the split's unseen test items.
- ``thesis``: the thesis's item-based protocol: queries and candidates are all rated items
  (training items included, so it rewards memorising the training pairs; for comparison only).

Every row of one table ranks the same candidates: items a model cannot embed are dropped from
the candidate set for all rows and counted in ``notes``.
"""

from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cinefuse.datasets.movielens import genre_vocabulary
from cinefuse.errors import CinefuseError
from cinefuse.fuse.config import FuseConfig, as_config
from cinefuse.fuse.workdir import Workdir
from cinefuse.metrics.metrics import METRIC_LABELS, index_of, accuracy_metrics, beyond_accuracy_metrics, build_relevance
from cinefuse.metrics.ranking import id_sort_key, top_k_cosine
from cinefuse.protocols import EVAL_PROTOCOLS

DEFAULT_KS = (1, 3, 5, 10)


@dataclass
class EvalSet:
    """Queries, candidates (in tie-breaking order) and everything the metrics need."""

    query_ids: np.ndarray
    candidate_ids: np.ndarray
    self_index: np.ndarray  # (Q,) the query's row in candidate_ids, -1 if not a candidate
    relevance: Any
    genres: np.ndarray | None  # (C, G) multi-hot, None when no movie metadata
    raters: np.ndarray  # (C,) users who rated each candidate
    n_users: int


@dataclass
class Row:
    name: str
    kind: str  # "model" | "random" | "popularity" | "itemknn-cbf"
    metrics: dict[str, float]
    train_seconds: float | None  # None: nothing is trained (baselines)
    eval_seconds: float
    note: str = ""


@dataclass
class Results:
    protocol: str
    ks: tuple[int, ...]
    rows: list[Row]
    counts: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=lambda: dict(METRIC_LABELS))
    outputs: dict[str, str] = field(default_factory=dict)  # files written: markdown, csv, json, plots

    def to_json(self) -> dict:
        """Plain JSON: NaN (a metric undefined here, e.g. Div@1) becomes null."""
        return _finite_or_none({
            "protocol": self.protocol,
            "ks": list(self.ks),
            "counts": self.counts,
            "notes": self.notes,
            "labels": self.labels,
            "rows": [asdict(r) for r in self.rows],
        })

    def row(self, name: str) -> Row:
        for r in self.rows:
            if r.name == name:
                return r
        raise KeyError(name)


def _finite_or_none(obj):
    if isinstance(obj, float):
        return obj if np.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite_or_none(v) for v in obj]
    return obj


def parse_ks(text: str | tuple | list) -> tuple[int, ...]:
    if isinstance(text, (tuple, list)):
        parts = [str(x) for x in text]
    else:
        parts = [p.strip() for p in str(text).split(",") if p.strip()]
    try:
        ks = tuple(sorted({int(p) for p in parts}))
    except ValueError:
        raise CinefuseError(f"--k {text!r} must be comma-separated positive integers, e.g. 1,3,5,10") from None
    if not ks or ks[0] < 1:
        raise CinefuseError(f"--k {text!r} must be comma-separated positive integers, e.g. 1,3,5,10")
    return ks


# ---- the evaluation set ------------------------------------------------------------------------

def build_eval_set(
    ratings,
    query_ids,
    candidate_ids,
    k_max: int,
    movies=None,
    threshold: float = 4.0,
) -> EvalSet:
    """Relevance, genres and popularity for ``query_ids`` against ``candidate_ids``
    (``ratings``: a ``cinefuse.datasets.movielens.Ratings``; ``movies``: its ``Movies`` or None)."""
    candidate_ids = np.asarray(candidate_ids, dtype=str)
    candidate_ids = candidate_ids[id_sort_key(candidate_ids)]
    query_ids = np.asarray(query_ids, dtype=str)
    query_ids = query_ids[id_sort_key(query_ids)]
    position = {c: i for i, c in enumerate(candidate_ids.tolist())}
    self_index = np.array([position.get(q, -1) for q in query_ids.tolist()], dtype=np.int64)

    items = np.asarray(ratings.item)
    items = items if items.dtype == object else items.astype(str).astype(object)
    rel = build_relevance(ratings.user, items, ratings.rating, query_ids, candidate_ids, k_max=k_max, threshold=threshold)

    # raters per candidate: distinct users who rated it at all
    cand_index = index_of(candidate_ids, items)
    _, user_code = np.unique(np.asarray(ratings.user), return_inverse=True)
    n_users = int(user_code.max()) + 1 if user_code.size else 0
    in_cand = cand_index >= 0
    rated = np.unique(cand_index[in_cand] * max(n_users, 1) + user_code[in_cand])
    raters = np.bincount(rated // max(n_users, 1), minlength=len(candidate_ids))

    genres = None
    if movies is not None:
        names = genre_vocabulary(movies.genres)
        col = {g: j for j, g in enumerate(names)}
        genres = np.zeros((len(candidate_ids), len(names)), dtype=np.float32)
        for mid, gs in zip(np.asarray(movies.ids, dtype=str).tolist(), movies.genres):
            row = position.get(mid)
            if row is not None:
                for g in gs:
                    genres[row, col[g]] = 1.0
    return EvalSet(query_ids, candidate_ids, self_index, rel, genres, raters, n_users)


def score_lists(topk: np.ndarray, es: EvalSet, ks) -> dict[str, float]:
    out = accuracy_metrics(topk, es.relevance, ks)
    out.update(beyond_accuracy_metrics(topk, ks, len(es.candidate_ids), es.genres, es.raters, es.n_users))
    return out


def evaluate_embeddings(
    ids: np.ndarray, emb: np.ndarray, es: EvalSet, ks, block_size: int = 1024
) -> dict[str, float]:
    """Metrics of cosine top-K over ``emb`` (rows in ``ids`` order, every query and candidate
    among them)."""
    rows = {i: r for r, i in enumerate(np.asarray(ids, dtype=str).tolist())}
    q = emb[[rows[i] for i in es.query_ids.tolist()]]
    c = emb[[rows[i] for i in es.candidate_ids.tolist()]]
    topk, _ = top_k_cosine(q, c, max(ks), self_index=es.self_index, block_size=block_size)
    return score_lists(topk, es, ks)


def prior_vectors(emb: np.ndarray, prior: np.ndarray, weight: float) -> tuple[np.ndarray, np.ndarray]:
    """(query, candidate) vectors whose plain dot product is cos(q, c) + weight * prior[c]:
    queries [q/|q|, 1], candidates [c/|c|, weight * prior_c], so a prior row goes through the
    same ranking (``top_k_cosine(..., normalise=False)``) and tie-break path as every row."""
    unit = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    ones = np.ones((len(emb), 1), np.float32)
    return (np.concatenate([unit, ones], axis=1).astype(np.float32),
            np.concatenate([unit, weight * np.asarray(prior, np.float32)[:, None]], axis=1).astype(np.float32))


def evaluate_prior_embeddings(ids: np.ndarray, emb: np.ndarray, prior: np.ndarray, weight: float, es: EvalSet, ks,
                              block_size: int = 1024) -> dict[str, float]:
    """Metrics of top-K by cos(q, c) + ``weight`` * ``prior``[c] (rows of both in ``ids`` order)."""
    rows = {i: r for r, i in enumerate(np.asarray(ids, dtype=str).tolist())}
    qv, cv = prior_vectors(emb, prior, weight)
    q = qv[[rows[i] for i in es.query_ids.tolist()]]
    c = cv[[rows[i] for i in es.candidate_ids.tolist()]]
    topk, _ = top_k_cosine(q, c, max(ks), self_index=es.self_index, block_size=block_size, normalise=False)
    return score_lists(topk, es, ks)


# ---- the workdir's run and data ------------------------------------------------------------------

def safe_set_name(model: str) -> str:
    """``fused/<model>`` with characters the store does not allow in names replaced by '-'."""
    return "fused/" + re.sub(r"[^A-Za-z0-9_.-]", "-", model)


def data_sources(config: FuseConfig, store=None, ratings=None, movies=None, endpoint_url=None) -> dict[str, str | None]:
    """Where the run's store, ratings and movies live: each override, else the fuse config's."""
    d = config.data

    def pick(override, recorded):
        if override is not None:
            return str(override)
        return str(recorded) if recorded else None

    return {"store": pick(store, d.store), "ratings": pick(ratings, d.ratings), "movies": pick(movies, d.movies),
            "endpoint_url": pick(endpoint_url, d.endpoint_url)}


@dataclass
class Job:
    """One evaluation: the workdir's run, its data, the protocol and cut-offs."""

    wd: Workdir
    config: FuseConfig
    protocol: str
    ks: tuple[int, ...]
    threshold: float
    models: list[str]
    ratings: Any            # cinefuse.datasets.movielens.Ratings
    movies: Any             # Movies or None
    store: Any              # the feature store the models read


@dataclass
class Embedded:
    ids: np.ndarray         # (N,) str
    emb: np.ndarray         # (N, E) float32
    seconds: float          # embedding time, the shared store read charged evenly
    prior: np.ndarray | None = None  # (N,) the model's item prior (``fuse.embed.item_priors``), None without the head


def run_evaluate(
    workdir,
    ks=DEFAULT_KS,
    protocol: str = "cold-item",
    threshold: float | None = None,
    store=None,
    ratings=None,
    movies=None,
    fused_store=None,
    endpoint_url: str | None = None,
    seed: int = 0,
    write: bool = True,
    progress: bool = True,
) -> Results:
    """Evaluate every trained model of ``workdir`` and every baseline; write the tables, plots
    and fused embeddings (unless ``write=False``) and return the results."""
    job = open_job(workdir, ks, protocol, threshold, store, ratings, movies, endpoint_url)
    bar = _progress(progress, total=len(job.models) + 3)
    bar.set_description("embedding")
    embeddings = embed_models(job, bar)
    es, counts, notes = candidates(job, embeddings)
    bar.update(1)
    bar.set_description("ranking models")
    rows = model_rows(job, embeddings, es)
    bar.update(1)
    bar.set_description("baselines")
    rows += baseline_rows(job, es, seed)
    bar.update(1)
    bar.close()
    results = Results(job.protocol, job.ks, rows, {**counts, "like_threshold": job.threshold}, notes)
    if write:
        write_results(job, results, embeddings, fused_store)
    return results


def open_job(workdir, ks, protocol, threshold, store, ratings, movies, endpoint_url) -> Job:
    """The run's config and data, every user mistake a clear error before any work."""
    from cinefuse.datasets.movielens import load_movies, load_ratings
    from cinefuse.store import open_store

    wd = Workdir(workdir)
    ks = parse_ks(ks)
    if protocol not in EVAL_PROTOCOLS:
        raise CinefuseError(f"unknown protocol {protocol!r}; choose one of {', '.join(EVAL_PROTOCOLS)}")
    wd.check()
    config = wd.config()
    sources = data_sources(config, store, ratings, movies, endpoint_url)
    if threshold is None:  # the like threshold the pairs were built with
        threshold = float(config.pairs.like_threshold)
    for key in ("store", "ratings"):
        if sources[key] is None:
            raise CinefuseError(f"{wd.root}/config.json names no {key}; pass --{key} PATH")
    models = wd.models()
    if not models:
        raise CinefuseError(f"{wd.root} holds no trained model under runs/; train first with `cinefuse fuse`")
    return Job(wd, config, protocol, ks, threshold, models, load_ratings(sources["ratings"]),
               load_movies(sources["movies"]) if sources["movies"] else None,
               open_store(sources["store"], endpoint_url=sources["endpoint_url"]))


def embed_models(job: Job, bar) -> dict[str, Embedded]:
    """Every item embedded by every model; the feature sets they need read from the store once."""
    from cinefuse.fuse.embed import embed_items, item_priors

    start = time.perf_counter()
    table = _shared_table(job)
    load_seconds = (time.perf_counter() - start) / len(job.models)
    out = {}
    for model in job.models:
        start = time.perf_counter() - load_seconds
        ids, emb = embed_items(job.wd.root, model, table=table)
        prior = item_priors(job.wd.root, model, table=table)
        out[model] = Embedded(np.asarray(ids, dtype=str), np.asarray(emb, dtype=np.float32),
                              time.perf_counter() - start, prior)
        bar.update(1)
    return out


def _shared_table(job: Job):
    """One store read holding every feature set any model needs (None: let each model load)."""
    names: list[str] = []
    for model in job.models:
        try:
            sets = job.wd.run_record(model).feature_sets
        except (CinefuseError, KeyError):
            return None
        names += [n for n in sets if n not in names]
    return job.store.load(names) if names else None


def candidates(job: Job, embeddings: dict[str, Embedded]) -> tuple[EvalSet, dict, list[str]]:
    """The protocol's queries and candidates, every one in the store and embedded by every model
    (so that every row ranks the same set): (eval set, counts, notes)."""
    notes: list[str] = []
    if job.protocol == "cold-item":
        split = job.wd.split()
        pool = [str(i) for i in split.get("test", [])]
        if not pool:
            raise CinefuseError(f"{job.wd.root}/split.json has no test items; the cold-item protocol needs them")
        if split.get("protocol") == "pair":
            notes.append("split.json is a pair split: its test items may appear in training pairs (not cold)")
    else:
        pool = sorted(set(np.asarray(job.ratings.item, dtype=str).tolist()))
    pool_set = set(pool) & set(job.store.ids().tolist())
    dropped_store = len(set(pool)) - len(pool_set)
    if dropped_store:
        notes.append(f"{dropped_store} items of the protocol are not in the store and were left out")
    for model, e in embeddings.items():
        missing = pool_set - set(e.ids.tolist())
        if missing:
            notes.append(f"model {model} could not embed {len(missing)} items; left out for every row")
            pool_set -= missing
    if len(pool_set) < 2:
        raise CinefuseError(f"only {len(pool_set)} items to rank under the {job.protocol} protocol; need at least 2")
    chosen = np.array(sorted(pool_set), dtype=str)
    es = build_eval_set(job.ratings, chosen, chosen, max(job.ks), movies=job.movies, threshold=job.threshold)
    with_relevant = int(es.relevance.queries_with_relevant.size)
    counts = {
        "queries": len(es.query_ids),
        "candidates": len(es.candidate_ids),
        "queries_with_relevant": with_relevant,
        "queries_without_relevant": len(es.query_ids) - with_relevant,
        "pairs": int(es.relevance.pair_query.size),
        "pairs_without_relevant": int(es.relevance.pairs_without_relevant),
        "users": es.n_users,
    }
    return es, counts, notes


def model_rows(job: Job, embeddings: dict[str, Embedded], es: EvalSet) -> list[Row]:
    """One row per trained model: cosine top-K over its embeddings; for a model with a prior head
    also ``<model>+prior``, cos + w * prior with the weight w its training chose on validation."""
    rows = []
    for model in job.models:
        e = embeddings[model]
        start = time.perf_counter()
        metrics = evaluate_embeddings(e.ids, e.emb, es, job.ks)
        rows.append(Row(model, "model", metrics, job.wd.train_seconds(model),
                        time.perf_counter() - start + e.seconds))
        if e.prior is not None:
            weight = float(job.wd.summary(model).get("prior_weight", 0.0))
            start = time.perf_counter()
            metrics = evaluate_prior_embeddings(e.ids, e.emb, e.prior, weight, es, job.ks)
            rows.append(Row(f"{model}+prior", "model", metrics, job.wd.train_seconds(model),
                            time.perf_counter() - start + e.seconds,
                            note=f"cosine + {weight:g} x item prior (weight chosen on the validation items)"))
    return rows


def baseline_rows(job: Job, es: EvalSet, seed: int) -> list[Row]:
    """random, popularity, cosine over each raw feature set and over all of them concatenated."""
    from cinefuse.evaluate.baselines import (
        concatenate_sets,
        itemknn_cbf,
        pooled_rows,
        popularity_baseline,
        random_baseline,
    )

    ks, k = job.ks, max(job.ks)
    rows = []
    start = time.perf_counter()
    topk = random_baseline(len(es.query_ids), len(es.candidate_ids), k, es.self_index, seed=seed)
    rows.append(Row("random", "random", score_lists(topk, es, ks), None, time.perf_counter() - start))
    start = time.perf_counter()
    topk = popularity_baseline(es.raters, len(es.query_ids), k, es.self_index)
    rows.append(
        # Under cold-item the candidates' rating counts are exactly what a new item lacks, so the
        # row is an oracle reference, and its name says so wherever the table is read.
        Row("popularity (oracle)" if job.protocol == "cold-item" else "popularity", "popularity",
            score_lists(topk, es, ks), None, time.perf_counter() - start,
            note="uses the candidates' own rating counts (unknown for truly new items)")
    )
    raw_sets = raw_feature_sets(job.store, job.config)
    matrices = []
    if raw_sets:
        table = job.store.load(raw_sets)  # the union of their ids; a candidate lacking a set gets zeros
        table_row = {i: r for r, i in enumerate(table.ids.tolist())}
        take = np.array([table_row.get(i, -1) for i in es.candidate_ids.tolist()], dtype=np.int64)
    for name in raw_sets:
        start = time.perf_counter()
        pooled = pooled_rows(table.features[name], table.lengths.get(name), table.valid[name])
        matrix = np.where((take >= 0)[:, None], pooled[np.maximum(take, 0)], 0.0).astype(np.float32)
        matrices.append(matrix)
        rows.append(_knn_row(f"cosine {name}", matrix, es, ks, itemknn_cbf, start))
    if len(matrices) > 1:
        start = time.perf_counter()
        rows.append(_knn_row("cosine all concatenated", concatenate_sets(matrices), es, ks, itemknn_cbf, start,
                             note=" + ".join(raw_sets)))
    return rows


def write_results(job: Job, results: Results, embeddings: dict[str, Embedded], fused_store=None) -> None:
    """The fused embeddings to a store, the tables and plots to ``W/evaluation/<protocol>/``."""
    from cinefuse.evaluate.report import write_report

    location = write_fused_embeddings(job.wd.root, {m: (e.ids, e.emb) for m, e in embeddings.items()}, fused_store)
    results.notes.append(f"fused embeddings written to {location} as {', '.join(safe_set_name(m) for m in job.models)}")
    written = write_report(results, job.wd.evaluation_dir(job.protocol), job.wd.root)
    results.outputs = {k: str(v) for k, v in written.items()}


def _knn_row(name, matrix, es: EvalSet, ks, knn, start, note="") -> Row:
    position = {c: i for i, c in enumerate(es.candidate_ids.tolist())}
    q = matrix[[position[i] for i in es.query_ids.tolist()]]
    topk = knn(q, matrix, max(ks), es.self_index)
    return Row(name, "itemknn-cbf", score_lists(topk, es, ks), None, time.perf_counter() - start, note=note)


def raw_feature_sets(store, config: FuseConfig | dict | None = None) -> list[str]:
    """The raw sets the baselines rank by: those the fuse config's modalities name that the
    store holds (what the models could see); else every per-item vector set (N, D) of the
    store, fused embeddings and sequence sets left out (their pooled versions are there)."""
    sets = store.feature_sets()
    named = []
    modality_sets = as_config(config).data.modality_sets if config else {}
    for names in modality_sets.values():
        named += [n for n in names if n in sets and n not in named]
    if named:
        return sorted(named)
    return sorted(n for n, info in sets.items() if not n.startswith("fused/") and len(info.shape) == 1)


def write_fused_embeddings(workdir: Path, embeddings: dict, fused_store=None) -> str:
    """One shard per model under ``fused/<model>``. The default store ``W/embeddings`` belongs
    to this workdir and is rewritten whole each run; a store named with ``fused_store`` (for
    example the extraction store) only gains shards, the newest winning per id."""
    from cinefuse.store import FeatureBlock, StoreWriter

    workdir = Path(workdir)
    location = Path(fused_store) if fused_store else Workdir(workdir).embeddings_dir
    for model, (ids, emb) in embeddings.items():
        config = {"fused_embeddings": {"workdir": str(workdir.resolve()), "model": model}}
        writer = StoreWriter(location, config=config)
        if not fused_store and model == next(iter(embeddings)):
            writer.reset()
        n = len(ids)
        writer.write_shard(
            ids=list(ids),
            features={
                safe_set_name(model): FeatureBlock(
                    data=np.ascontiguousarray(emb, dtype=np.float32),
                    valid=np.ones(n, dtype=bool),
                    status=["ok"] * n,
                    lengths=None,
                    attrs={"model": model, "workdir": str(workdir.resolve()), "normalised": "l2"},
                )
            },
        )
    return str(location)


def _progress(enabled: bool, total: int):
    from tqdm import tqdm

    return tqdm(total=total, disable=not enabled, file=None, leave=False, unit="step")
