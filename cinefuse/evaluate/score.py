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

Ties: the candidates of an :class:`EvalSet` are held in the order score ties follow, and every
row ranks through that order (``top_k_cosine`` and ``top_k_by_score`` keep the lower position
among equal scores). By default it is a seeded pseudo-random permutation (``tie_break="random"``,
``tie_seed``): MovieLens ids follow the catalogue's age and popularity, so id order would hand a
feature with many ties (release year) a score it did not earn. ``tie_break="id"`` keeps the old
id order, for comparison.

Every row goes through :func:`score_row`, which keeps the per-query accuracy values
(``row.per_query``) and the 95% bootstrap interval over queries of nDCG and HR at the verdict K
(``row.ci``); :func:`attach_verdict` adds the paired bootstrap of the best model against the best
raw-feature baseline, and :func:`popularity_strata` the table per popularity stratum.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from cinefuse.datasets.movielens import genre_vocabulary
from cinefuse.errors import CinefuseError
from cinefuse.fuse.config import FuseConfig, as_config
from cinefuse.fuse.workdir import Workdir
from cinefuse.metrics.bootstrap import bootstrap_interval, paired_bootstrap
from cinefuse.metrics.metrics import (
    METRIC_LABELS,
    PerQuery,
    average_per_query,
    beyond_accuracy_metrics,
    build_relevance,
    index_of,
    per_query_accuracy_metrics,
)
from cinefuse.metrics.ranking import id_sort_key, l2_normalise, top_k_cosine
from cinefuse.protocols import EVAL_PROTOCOLS

DEFAULT_KS = (1, 3, 5, 10)
TIE_BREAKS = ("random", "id")
VERDICT_K = 10          # nDCG@10 and HR@10 carry intervals (the largest K when 10 is not asked)
BOOTSTRAP_SEED = 0      # resampling seed of every interval, recorded in results.json


@dataclass
class EvalSet:
    """Queries, candidates (in tie-breaking order) and everything the metrics need."""

    query_ids: np.ndarray
    candidate_ids: np.ndarray   # the order score ties follow (see the module docstring)
    self_index: np.ndarray  # (Q,) the query's row in candidate_ids, -1 if not a candidate
    relevance: Any
    genres: np.ndarray | None  # (C, G) multi-hot, None when no movie metadata
    raters: np.ndarray  # (C,) users who rated each candidate
    n_users: int
    query_raters: np.ndarray | None = None  # (Q,) users who rated each query item (its strata)
    tie_break: str = "random"
    tie_seed: int = 0


@dataclass
class Row:
    name: str
    kind: str  # "model" | "random" | "popularity" | "itemknn-cbf"
    metrics: dict[str, float]
    train_seconds: float | None  # None: nothing is trained (baselines)
    eval_seconds: float
    note: str = ""
    ci: dict[str, list[float]] = field(default_factory=dict)  # {"nDCG@10": [lo, hi], "HR@10": [lo, hi]}
    per_query: PerQuery | None = field(default=None, repr=False, compare=False)  # in memory only


@dataclass
class Results:
    protocol: str
    ks: tuple[int, ...]
    rows: list[Row]
    counts: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=lambda: dict(METRIC_LABELS))
    outputs: dict[str, str] = field(default_factory=dict)  # files written: markdown, csv, json, plots
    tie_break: str = "random"
    tie_seed: int = 0
    verdict: dict | None = None      # paired bootstrap, best model vs best raw baseline (attach_verdict)
    strata: dict = field(default_factory=dict)      # {"head": {row: {metric: value}}, "tail": {...}}
    strata_cut: dict = field(default_factory=dict)  # how the strata were cut (median, sizes)
    bootstrap: dict = field(default_factory=lambda: {"level": 0.95, "resamples": 0, "seed": BOOTSTRAP_SEED})

    def to_json(self) -> dict:
        """Plain JSON: NaN (a metric undefined here, e.g. Div@1) becomes null."""
        return _finite_or_none({
            "protocol": self.protocol,
            "ks": list(self.ks),
            "tie_break": self.tie_break,
            "tie_seed": self.tie_seed,
            "counts": self.counts,
            "notes": self.notes,
            "labels": self.labels,
            "rows": [{f.name: getattr(r, f.name) for f in fields(r) if f.name != "per_query"} for r in self.rows],
            "verdict": self.verdict,
            "strata": self.strata,
            "strata_cut": self.strata_cut,
            "bootstrap": self.bootstrap,
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
    tie_break: str = "random",
    tie_seed: int = 0,
) -> EvalSet:
    """Relevance, genres and popularity for ``query_ids`` against ``candidate_ids``
    (``ratings``: a ``cinefuse.datasets.movielens.Ratings``; ``movies``: its ``Movies`` or None).
    The candidates are put in tie order: a permutation seeded by ``tie_seed`` of the id order
    (``tie_break="random"``), or the id order itself (``"id"``)."""
    candidate_ids = tie_order(candidate_ids, tie_break, tie_seed)
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
    query_index = index_of(query_ids, items)
    in_query = query_index >= 0
    rated_q = np.unique(query_index[in_query] * max(n_users, 1) + user_code[in_query])
    query_raters = np.bincount(rated_q // max(n_users, 1), minlength=len(query_ids))

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
    return EvalSet(query_ids, candidate_ids, self_index, rel, genres, raters, n_users, query_raters,
                   tie_break, tie_seed)


def tie_order(candidate_ids, tie_break: str = "random", tie_seed: int = 0) -> np.ndarray:
    """``candidate_ids`` (str) in the order score ties follow. The permutation is drawn over the
    id-sorted ids, so the same set of candidates gets the same order whatever order it came in."""
    if tie_break not in TIE_BREAKS:
        raise CinefuseError(f"unknown tie-break {tie_break!r}; choose one of {', '.join(TIE_BREAKS)}")
    candidate_ids = np.asarray(candidate_ids, dtype=str)
    candidate_ids = candidate_ids[id_sort_key(candidate_ids)]
    if tie_break == "id":
        return candidate_ids
    return candidate_ids[np.random.default_rng(tie_seed).permutation(candidate_ids.size)]


def score_lists(topk: np.ndarray, es: EvalSet, ks) -> dict[str, float]:
    return score_lists_per_query(topk, es, ks)[0]


def score_lists_per_query(topk: np.ndarray, es: EvalSet, ks) -> tuple[dict[str, float], PerQuery]:
    """Every metric of the lists ``topk`` and the per-query accuracy values they average."""
    per_query = per_query_accuracy_metrics(topk, es.relevance, ks)
    out = average_per_query(per_query)
    out.update(beyond_accuracy_metrics(topk, ks, len(es.candidate_ids), es.genres, es.raters, es.n_users))
    return out, per_query


def verdict_k(ks) -> int:
    return VERDICT_K if VERDICT_K in ks else max(ks)


def score_row(name: str, kind: str, topk: np.ndarray, es: EvalSet, ks, train_seconds, start: float,
              note: str = "") -> Row:
    """The one way a row of the table is made (models, their ``+prior`` variants, baselines):
    the metrics of ``topk`` (ranked in ``es``'s tie order), its per-query values and its 95%
    bootstrap intervals; ``start`` is the ``perf_counter`` at which its evaluation began."""
    metrics, per_query = score_lists_per_query(topk, es, ks)
    k = verdict_k(ks)
    ci = {}
    if int(per_query.scored.sum()) >= 2:
        for metric in (f"nDCG@{k}", f"HR@{k}"):
            iv = bootstrap_interval(per_query.of(metric), seed=BOOTSTRAP_SEED)
            ci[metric] = [iv.low, iv.high]
    return Row(name, kind, metrics, train_seconds, time.perf_counter() - start, note=note, ci=ci,
               per_query=per_query)


def evaluate_embeddings(
    ids: np.ndarray, emb: np.ndarray, es: EvalSet, ks, block_size: int = 1024
) -> dict[str, float]:
    """Metrics of cosine top-K over ``emb`` (rows in ``ids`` order, every query and candidate
    among them)."""
    return score_lists(rank_embeddings(ids, emb, es, ks, block_size), es, ks)


def rank_embeddings(ids: np.ndarray, emb: np.ndarray, es: EvalSet, ks, block_size: int = 1024) -> np.ndarray:
    """Cosine top-K lists (candidate rows of ``es``) over ``emb`` (rows in ``ids`` order)."""
    return _rank_rows(ids, emb, emb, es, ks, block_size, normalise=True)


def prior_vectors(emb: np.ndarray, prior: np.ndarray, weight: float) -> tuple[np.ndarray, np.ndarray]:
    """(query, candidate) vectors whose plain dot product is cos(q, c) + weight * prior[c]:
    queries [q/|q|, 1], candidates [c/|c|, weight * prior_c], so a prior row goes through the
    same ranking (``top_k_cosine(..., normalise=False)``) and tie-break path as every row."""
    unit = l2_normalise(emb)
    ones = np.ones((len(emb), 1), np.float32)
    return (np.concatenate([unit, ones], axis=1),
            np.concatenate([unit, weight * np.asarray(prior, np.float32)[:, None]], axis=1))


def rank_prior_embeddings(ids: np.ndarray, emb: np.ndarray, prior: np.ndarray, weight: float, es: EvalSet, ks,
                          block_size: int = 1024) -> np.ndarray:
    """Top-K lists by cos(q, c) + ``weight`` * ``prior``[c] (rows of both in ``ids`` order)."""
    qv, cv = prior_vectors(emb, prior, weight)
    return _rank_rows(ids, qv, cv, es, ks, block_size, normalise=False)


def _rank_rows(ids, query_vectors, candidate_vectors, es: EvalSet, ks, block_size: int, normalise: bool) -> np.ndarray:
    """Top-K over ``es``'s queries and candidates, picked from vectors whose rows follow ``ids``."""
    rows = {i: r for r, i in enumerate(np.asarray(ids, dtype=str).tolist())}
    q = query_vectors[[rows[i] for i in es.query_ids.tolist()]]
    c = candidate_vectors[[rows[i] for i in es.candidate_ids.tolist()]]
    topk, _ = top_k_cosine(q, c, max(ks), self_index=es.self_index, block_size=block_size, normalise=normalise)
    return topk


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
    tie_break: str = "random",
    tie_seed: int = 0,
) -> Results:
    """Evaluate every trained model of ``workdir`` and every baseline; write the tables, plots
    and fused embeddings (unless ``write=False``) and return the results. ``seed`` seeds the
    random baseline; ``tie_break``/``tie_seed`` the order score ties follow (every row)."""
    if tie_break not in TIE_BREAKS:
        raise CinefuseError(f"unknown tie-break {tie_break!r}; choose one of {', '.join(TIE_BREAKS)}")
    job = open_job(workdir, ks, protocol, threshold, store, ratings, movies, endpoint_url)
    bar = _progress(progress, total=len(job.models) + 3)
    bar.set_description("embedding")
    embeddings = embed_models(job, bar)
    es, counts, notes = candidates(job, embeddings, tie_break, tie_seed)
    bar.update(1)
    bar.set_description("ranking models")
    rows = model_rows(job, embeddings, es)
    bar.update(1)
    bar.set_description("baselines")
    rows += baseline_rows(job, es, seed, notes)
    bar.update(1)
    bar.close()
    results = Results(job.protocol, job.ks, rows, {**counts, "like_threshold": job.threshold}, notes,
                      tie_break=tie_break, tie_seed=tie_seed)
    finish_results(results, es)
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


def candidates(job: Job, embeddings: dict[str, Embedded], tie_break: str = "random",
               tie_seed: int = 0) -> tuple[EvalSet, dict, list[str]]:
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
    es = build_eval_set(job.ratings, chosen, chosen, max(job.ks), movies=job.movies, threshold=job.threshold,
                        tie_break=tie_break, tie_seed=tie_seed)
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
        start = time.perf_counter() - e.seconds
        topk = rank_embeddings(e.ids, e.emb, es, job.ks)
        rows.append(score_row(model, "model", topk, es, job.ks, job.wd.train_seconds(model), start))
        if e.prior is not None:
            weight = float(job.wd.summary(model).get("prior_weight", 0.0))
            start = time.perf_counter() - e.seconds
            topk = rank_prior_embeddings(e.ids, e.emb, e.prior, weight, es, job.ks)
            rows.append(score_row(f"{model}+prior", "model", topk, es, job.ks, job.wd.train_seconds(model), start,
                                  note=f"cosine + {weight:g} x item prior (weight chosen on the validation items)"))
    return rows


def baseline_rows(job: Job, es: EvalSet, seed: int, notes: list[str] | None = None) -> list[Row]:
    """random, popularity, cosine over each raw feature set and over all of them concatenated.
    A raw set with no valid row among the candidates would rank by zeros (every score tied):
    it gets no row, and ``notes`` says so."""
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
    rows.append(score_row("random", "random", topk, es, ks, None, start))
    start = time.perf_counter()
    topk = popularity_baseline(es.raters, len(es.query_ids), k, es.self_index)
    rows.append(
        # Under cold-item the candidates' rating counts are exactly what a new item lacks, so the
        # row is an oracle reference, and its name says so wherever the table is read.
        score_row("popularity (oracle)" if job.protocol == "cold-item" else "popularity", "popularity",
                  topk, es, ks, None, start,
                  note="uses the candidates' own rating counts (unknown for truly new items)")
    )
    raw_sets = raw_feature_sets(job.store, job.config)
    matrices = []
    if raw_sets:
        table = job.store.load(raw_sets)  # the union of their ids; a candidate lacking a set gets zeros
        table_row = {i: r for r, i in enumerate(table.ids.tolist())}
        take = np.array([table_row.get(i, -1) for i in es.candidate_ids.tolist()], dtype=np.int64)
        empty = [n for n in raw_sets if not np.asarray(table.valid[n], bool)[take[take >= 0]].any()]
        if empty and notes is not None:
            notes.append(f"no raw-feature baseline for {', '.join(empty)}: none of the {len(take)} candidates "
                         f"has a valid row there")
        raw_sets = [n for n in raw_sets if n not in empty]
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
    return score_row(name, "itemknn-cbf", topk, es, ks, None, start, note=note)


# ---- intervals, verdict and strata ---------------------------------------------------------------

def finish_results(results: Results, es: EvalSet) -> None:
    """The verdict, the popularity strata and the bootstrap record, from the rows' per-query values."""
    from cinefuse.metrics.bootstrap import N_RESAMPLES

    results.bootstrap = {"level": 0.95, "resamples": N_RESAMPLES, "seed": BOOTSTRAP_SEED}
    attach_verdict(results)
    results.strata, results.strata_cut = popularity_strata(results.rows, es)


def paired_comparison(a: Row, b: Row, metric: str) -> dict:
    """A's ``metric`` minus B's over the same queries: mean difference and its paired 95%
    bootstrap interval, and the share of resamples in which A beats B."""
    if a.per_query is None or b.per_query is None:
        raise CinefuseError(f"rows {a.name!r} and {b.name!r} must be made by score_row to be compared")
    iv = paired_bootstrap(a.per_query.of(metric), b.per_query.of(metric), seed=BOOTSTRAP_SEED)
    return {"metric": metric, "a": a.name, "b": b.name, "a_value": float(a.metrics[metric]),
            "b_value": float(b.metrics[metric]), "diff": iv.mean, "ci_low": iv.low, "ci_high": iv.high,
            "p_better": iv.share_above_zero, "beats": iv.low > 0}


def attach_verdict(results: Results) -> None:
    """Best model (kind "model", by nDCG@K) against the best raw-feature cosine row (the
    popularity oracle is not a content baseline): ``results.verdict`` and a note when either
    side is missing."""
    metric = f"nDCG@{verdict_k(results.ks)}"
    key = lambda r: r.metrics.get(metric) if np.isfinite(r.metrics.get(metric, np.nan)) else -np.inf  # noqa: E731
    models = [r for r in results.rows if r.kind == "model" and r.per_query is not None]
    raws = [r for r in results.rows if r.kind == "itemknn-cbf" and r.per_query is not None]
    scored = int(models[0].per_query.scored.sum()) if models else 0
    if not models or not raws or scored < 2:
        results.verdict = None
        results.notes.append("no verdict: it needs a trained model, a raw-feature baseline and 2 scored queries")
        return
    best, base = max(models, key=key), max(raws, key=key)
    c = paired_comparison(best, base, metric)
    results.verdict = {"metric": metric, "best_model": best.name, "best_baseline": base.name,
                       "model_value": c["a_value"], "baseline_value": c["b_value"], "diff": c["diff"],
                       "ci_low": c["ci_low"], "ci_high": c["ci_high"], "p_better": c["p_better"],
                       "beats": c["beats"], "queries": scored}


def popularity_strata(rows: list[Row], es: EvalSet) -> tuple[dict, dict]:
    """Each row's accuracy metrics over the head and the tail of the queries by their rating
    count (for cold items: held-out ratings, which no model sees), cut at the median count of
    the scored queries: head = count > median, tail = count <= median."""
    with_values = [r for r in rows if r.per_query is not None]
    if not with_values or es.query_raters is None:
        return {}, {}
    scored = with_values[0].per_query.scored
    counts = np.asarray(es.query_raters, dtype=np.int64)
    if not scored.any():
        return {}, {}
    median = float(np.median(counts[scored]))
    masks = {"head": scored & (counts > median), "tail": scored & (counts <= median)}
    strata = {}
    for stratum, mask in masks.items():
        strata[stratum] = {}
        for r in with_values:
            strata[stratum][r.name] = {
                name: (float(v[mask].mean()) if mask.any() else float("nan"))
                for name, v in r.per_query.values.items()}
    cut = {"by": "the users who rated each query item (held-out ratings under cold-item, seen by no model)",
           "median": median,
           "head": f"raters > {median:g}", "tail": f"raters <= {median:g}",
           "head_queries": int(masks["head"].sum()), "tail_queries": int(masks["tail"].sum())}
    return strata, cut


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
