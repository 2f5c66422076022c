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

import json
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from cinefuse.errors import CinefuseError
from cinefuse.metrics.metrics import METRIC_LABELS, index_of, accuracy_metrics, beyond_accuracy_metrics, build_relevance
from cinefuse.metrics.ranking import id_sort_key, top_k_cosine

PROTOCOLS = ("cold-item", "thesis")
DEFAULT_KS = (1, 3, 5, 10)
RESULTS_DIR = "evaluation"
FUSED_STORE_DIR = "embeddings"


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
        names = sorted({g for gs in movies.genres for g in gs})
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


def timed(fn: Callable[[], np.ndarray]) -> tuple[np.ndarray, float]:
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


# ---- the workdir ---------------------------------------------------------------------------------

def safe_set_name(model: str) -> str:
    """``fused/<model>`` with characters the store does not allow in names replaced by '-'."""
    return "fused/" + re.sub(r"[^A-Za-z0-9_.-]", "-", model)


def read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise CinefuseError(f"{path} not found: {what}") from None
    except json.JSONDecodeError as exc:
        raise CinefuseError(f"{path} is not valid JSON ({exc}); rerun `cinefuse fuse` in that workdir") from None


def check_workdir(workdir: Path) -> None:
    if not workdir.is_dir():
        raise CinefuseError(f"workdir {workdir} does not exist; train first with `cinefuse fuse --workdir {workdir} ...`")
    if not (workdir / "config.json").is_file():
        raise CinefuseError(
            f"{workdir} is not a fuse workdir (no config.json); train first with `cinefuse fuse --workdir {workdir} ...`"
        )


def data_sources(config: dict, store=None, ratings=None, movies=None, endpoint_url=None) -> dict[str, str | None]:
    """Where the run's store, ratings and movies live, from the fuse config unless overridden."""
    data = config.get("data", {}) if isinstance(config.get("data"), dict) else {}

    def pick(override, *keys):
        if override is not None:
            return str(override)
        for key in keys:
            for source in (config, data):
                if source.get(key):
                    return str(source[key])
        return None

    return {
        "store": pick(store, "store", "store_path"),
        "ratings": pick(ratings, "ratings", "ratings_path"),
        "movies": pick(movies, "movies", "movies_path"),
        "endpoint_url": pick(endpoint_url, "endpoint_url"),
    }


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
    from cinefuse.datasets.movielens import load_movies, load_ratings
    from cinefuse.fuse import embed as embed_api
    from cinefuse.evaluate.baselines import (
        concatenate_sets,
        itemknn_cbf,
        pooled_rows,
        popularity_baseline,
        random_baseline,
    )
    from cinefuse.store import open_store

    workdir = Path(workdir)
    ks = parse_ks(ks)
    if protocol not in PROTOCOLS:
        raise CinefuseError(f"unknown protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
    check_workdir(workdir)
    config = read_json(workdir / "config.json", "rerun `cinefuse fuse` in that workdir")
    sources = data_sources(config, store, ratings, movies, endpoint_url)
    if threshold is None:  # the like threshold the pairs were built with
        threshold = float(((config.get("pairs") or {}).get("like_threshold")) or 4.0)
    for key in ("store", "ratings"):
        if sources[key] is None:
            raise CinefuseError(f"{workdir}/config.json names no {key}; pass --{key} PATH")
    models = embed_api.list_models(workdir)
    if not models:
        raise CinefuseError(f"{workdir} holds no trained model under runs/; train first with `cinefuse fuse`")
    bar = _progress(progress, total=len(models) + 3)

    ratings_data = load_ratings(sources["ratings"])
    movies_data = load_movies(sources["movies"]) if sources["movies"] else None
    st = open_store(sources["store"], endpoint_url=sources["endpoint_url"])
    bar.set_description("embedding")

    # 1. embed with every model; the feature sets they need are read from the store once
    embeddings: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    embed_seconds: dict[str, float] = {}
    start = time.perf_counter()
    shared_table = _shared_table(workdir, models, st)
    load_seconds = (time.perf_counter() - start) / len(models)  # charged evenly to the models
    for model in models:
        start = time.perf_counter() - load_seconds
        ids, emb = embed_api.embed_items(workdir, model, table=shared_table)
        embed_seconds[model] = time.perf_counter() - start
        embeddings[model] = (np.asarray(ids, dtype=str), np.asarray(emb, dtype=np.float32))
        bar.update(1)

    # 2. queries and candidates of the protocol
    notes: list[str] = []
    store_ids = set(st.ids().tolist())
    if protocol == "cold-item":
        split = read_json(workdir / "split.json", "rerun `cinefuse fuse` in that workdir to write the split")
        pool = [str(i) for i in split.get("test", [])]
        if not pool:
            raise CinefuseError(f"{workdir}/split.json has no test items; the cold-item protocol needs them")
        if split.get("protocol") == "pair":
            notes.append("split.json is a pair split: its test items may appear in training pairs (not cold)")
    else:
        pool = sorted(set(np.asarray(ratings_data.item, dtype=str).tolist()))
    pool_set = set(pool) & store_ids
    dropped_store = len(set(pool)) - len(pool_set)
    if dropped_store:
        notes.append(f"{dropped_store} items of the protocol are not in the store and were left out")
    for model, (ids, _) in embeddings.items():
        missing = pool_set - set(ids.tolist())
        if missing:
            notes.append(f"model {model} could not embed {len(missing)} items; left out for every row")
            pool_set -= missing
    if len(pool_set) < 2:
        raise CinefuseError(f"only {len(pool_set)} items to rank under the {protocol} protocol; need at least 2")
    candidates = np.array(sorted(pool_set), dtype=str)
    es = build_eval_set(ratings_data, candidates, candidates, max(ks), movies=movies_data, threshold=threshold)
    counts = {
        "queries": len(es.query_ids),
        "candidates": len(es.candidate_ids),
        "queries_with_relevant": int(es.relevance.queries_with_relevant.size),
        "queries_without_relevant": len(es.query_ids) - int(es.relevance.queries_with_relevant.size),
        "pairs": int(es.relevance.pair_query.size),
        "pairs_without_relevant": int(es.relevance.pairs_without_relevant),
        "users": es.n_users,
    }
    bar.update(1)

    rows: list[Row] = []
    k = max(ks)

    # 3. trained models
    bar.set_description("ranking models")
    for model in models:
        ids, emb = embeddings[model]
        start = time.perf_counter()
        metrics = evaluate_embeddings(ids, emb, es, ks)
        seconds = time.perf_counter() - start + embed_seconds[model]
        rows.append(Row(model, "model", metrics, _train_seconds(workdir, model), seconds))
    bar.update(1)

    # 4. baselines
    bar.set_description("baselines")
    start = time.perf_counter()
    topk = random_baseline(len(es.query_ids), len(es.candidate_ids), k, es.self_index, seed=seed)
    rows.append(Row("random", "random", score_lists(topk, es, ks), None, time.perf_counter() - start))
    start = time.perf_counter()
    topk = popularity_baseline(es.raters, len(es.query_ids), k, es.self_index)
    rows.append(
        # Under cold-item the candidates' rating counts are exactly what a new item lacks, so the
        # row is an oracle reference, and its name says so wherever the table is read.
        Row("popularity (oracle)" if protocol == "cold-item" else "popularity", "popularity",
            score_lists(topk, es, ks), None, time.perf_counter() - start,
            note="uses the candidates' own rating counts (unknown for truly new items)")
    )
    raw_sets = raw_feature_sets(st, config)
    matrices = []
    if raw_sets:
        table = st.load(raw_sets)  # the union of their ids; a candidate lacking a set gets zeros
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
    bar.update(1)
    bar.close()

    counts["like_threshold"] = threshold
    results = Results(protocol, ks, rows, counts, notes)
    if write:
        from cinefuse.evaluate.report import write_report

        fused_location = write_fused_embeddings(workdir, embeddings, fused_store)
        results.notes.append(f"fused embeddings written to {fused_location} as {', '.join(safe_set_name(m) for m in models)}")
        results.outputs = {k: str(v) for k, v in write_report(results, workdir / RESULTS_DIR / protocol, workdir).items()}
    return results


def _knn_row(name, matrix, es: EvalSet, ks, knn, start, note="") -> Row:
    position = {c: i for i, c in enumerate(es.candidate_ids.tolist())}
    q = matrix[[position[i] for i in es.query_ids.tolist()]]
    topk = knn(q, matrix, max(ks), es.self_index)
    return Row(name, "itemknn-cbf", score_lists(topk, es, ks), None, time.perf_counter() - start, note=note)


def _shared_table(workdir: Path, models: list[str], store):
    """One store read holding every feature set any model needs (None: let each model load)."""
    names: list[str] = []
    for model in models:
        try:
            record = json.loads((workdir / "runs" / model / "config.json").read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None
        sets = record.get("feature_sets")
        if not isinstance(sets, list):
            return None
        names += [n for n in sets if n not in names]
    return store.load(names) if names else None


def raw_feature_sets(store, config: dict | None = None) -> list[str]:
    """The raw sets the baselines rank by: those the fuse config's modalities name that the
    store holds (what the models could see); else every per-item vector set (N, D) of the
    store, fused embeddings and sequence sets left out (their pooled versions are there)."""
    sets = store.feature_sets()
    named = []
    modality_sets = ((config or {}).get("data") or {}).get("modality_sets") or {}
    for names in modality_sets.values():
        named += [n for n in names if n in sets and n not in named]
    if named:
        return sorted(named)
    return sorted(n for n, info in sets.items() if not n.startswith("fused/") and len(info.shape) == 1)


def _train_seconds(workdir: Path, model: str) -> float:
    path = workdir / "runs" / model / "summary.json"
    try:
        return float(json.loads(path.read_text()).get("train_seconds", float("nan")))
    except (FileNotFoundError, json.JSONDecodeError, TypeError, ValueError):
        return float("nan")


def write_fused_embeddings(workdir: Path, embeddings: dict, fused_store=None) -> str:
    """One shard per model under ``fused/<model>``. The default store ``W/embeddings`` belongs
    to this workdir and is rewritten whole each run; a store named with ``fused_store`` (for
    example the extraction store) only gains shards, the newest winning per id."""
    from cinefuse.store import FeatureBlock, StoreWriter

    location = Path(fused_store) if fused_store else workdir / FUSED_STORE_DIR
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
