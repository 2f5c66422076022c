"""Item-to-item: a cold item is the query, the other cold items are its candidates, relevant =
the items the query's likers also liked (the thesis's task; DESIGN.md, Evaluation).

Protocols (the pool of queries and candidates):
- ``cold-item`` (default): the split's unseen test items.
- ``thesis``: every rated item (training items included, so it rewards memorising the training
  pairs; for comparison only).

Every row ranks the same candidates: items a model cannot embed are dropped for all rows and
counted in the notes. A model ranks by cosine; its ``+prior`` row by cos(q, c) + w * prior(c)
through the same ranking and tie path (:func:`prior_vectors`).
"""

from __future__ import annotations

import numpy as np

from cinefuse.errors import CinefuseError
from cinefuse.evaluate.evalset import (
    EvalSet,
    build_eval_set,
    score_lists,
    score_lists_per_query,
)
from cinefuse.evaluate.results import verdict_k
from cinefuse.evaluate.verdict import popularity_strata
from cinefuse.metrics.metrics import ACCURACY_METRICS
from cinefuse.metrics.ranking import l2_normalise, top_k_cosine


class ItemToItem:
    """The item-to-item task (see the module docstring)."""

    name = "item-to-item"
    metric_names = ACCURACY_METRICS
    selection_metric = "nDCG@10"

    def ks(self, ks) -> tuple[int, ...]:
        return tuple(ks)

    def verdict_metric(self, ks) -> str:
        return f"nDCG@{verdict_k(ks)}"

    def interval_metrics(self, ks) -> tuple[str, ...]:
        k = verdict_k(ks)
        return (f"nDCG@{k}", f"HR@{k}")

    def content_rows(self, matrix: np.ndarray, valid) -> np.ndarray:
        return matrix

    def eval_set(self, job, models: dict, tie_break: str = "random", tie_seed: int = 0, items=None):
        return candidates(job, models, tie_break, tie_seed, items)

    def rank(self, es: EvalSet, ids, emb, k: int, prior=None, weight: float = 0.0) -> np.ndarray:
        if prior is None:
            return rank_vectors(ids, emb, emb, es, k, normalise=True)
        qv, cv = prior_vectors(emb, prior, weight)
        return rank_vectors(ids, qv, cv, es, k, normalise=False)

    def rank_content(self, es: EvalSet, ids, features: np.ndarray, k: int, knn) -> np.ndarray:
        matrix = candidate_rows(es, ids, features)
        position = {c: i for i, c in enumerate(es.candidate_ids.tolist())}
        return knn(matrix[[position[i] for i in es.query_ids.tolist()]], matrix, k, es.self_index)

    def score(self, topk: np.ndarray, es: EvalSet, ks):
        return score_lists_per_query(topk, es, ks)

    def strata(self, rows, es: EvalSet):
        return popularity_strata(rows, es)


ITEM_TO_ITEM = ItemToItem()


def candidates(job, models: dict, tie_break: str = "random", tie_seed: int = 0,
               items=None) -> tuple[EvalSet, dict, list[str]]:
    """The protocol's queries and candidates, every one in the store and embedded by every model
    (so that every row ranks the same set): (eval set, counts, notes). ``items``: rank only
    those of them (``cinefuse compare``: the items every compared run can rank)."""
    notes: list[str] = []
    pool_set = rankable_items(job, models, notes)
    if items is not None:
        outside = pool_set - set(str(i) for i in items)
        pool_set -= outside
        notes.append(f"restricted to {len(pool_set)} given items; {len(outside)} other items of the protocol "
                     f"left out")
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


def rankable_items(job, models: dict, notes: list[str]) -> set[str]:
    """The protocol's items that the store holds and every model embeds; those left out are
    counted in ``notes``."""
    pool = protocol_pool(job, notes)
    pool_set = set(pool) & set(job.store.ids().tolist())
    dropped_store = len(set(pool)) - len(pool_set)
    if dropped_store:
        notes.append(f"{dropped_store} items of the protocol are not in the store and were left out")
    for model, e in models.items():
        missing = pool_set - set(np.asarray(e.ids, dtype=str).tolist())
        if missing:
            notes.append(f"model {model} could not embed {len(missing)} items; left out for every row")
            pool_set -= missing
    return pool_set


def protocol_pool(job, notes: list[str]) -> list[str]:
    """The items the protocol ranks: the split's test items (cold-item) or every rated item."""
    if job.protocol != "cold-item":
        return sorted(set(np.asarray(job.ratings.item, dtype=str).tolist()))
    split = job.wd.split()
    pool = [str(i) for i in split.get("test", [])]
    if not pool:
        raise CinefuseError(f"{job.wd.root}/split.json has no test items; the cold-item protocol needs them")
    if split.get("protocol") == "pair":
        notes.append("split.json is a pair split: its test items may appear in training pairs (not cold)")
    return pool


def candidate_rows(es: EvalSet, ids, features: np.ndarray) -> np.ndarray:
    """(C, D) rows of ``features`` (rows in ``ids`` order) for ``es``'s candidates; a candidate
    missing from ``ids`` gets a zero row (cosine 0 with everything)."""
    row = {i: r for r, i in enumerate(np.asarray(ids, dtype=str).tolist())}
    take = np.array([row.get(i, -1) for i in es.candidate_ids.tolist()], dtype=np.int64)
    return np.where((take >= 0)[:, None], features[np.maximum(take, 0)], 0.0).astype(np.float32)


def evaluate_embeddings(ids: np.ndarray, emb: np.ndarray, es: EvalSet, ks, block_size: int = 1024) -> dict[str, float]:
    """Metrics of cosine top-K over ``emb`` (rows in ``ids`` order, every query and candidate
    among them)."""
    return score_lists(rank_embeddings(ids, emb, es, ks, block_size), es, ks)


def rank_embeddings(ids: np.ndarray, emb: np.ndarray, es: EvalSet, ks, block_size: int = 1024) -> np.ndarray:
    """Cosine top-K lists (candidate rows of ``es``) over ``emb`` (rows in ``ids`` order)."""
    return rank_vectors(ids, emb, emb, es, max(ks), block_size, normalise=True)


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
    return rank_vectors(ids, qv, cv, es, max(ks), block_size, normalise=False)


def rank_vectors(ids, query_vectors, candidate_vectors, es: EvalSet, k: int, block_size: int = 1024,
                 normalise: bool = True) -> np.ndarray:
    """Top-``k`` over ``es``'s queries and candidates, picked from vectors whose rows follow ``ids``."""
    rows = {i: r for r, i in enumerate(np.asarray(ids, dtype=str).tolist())}
    q = query_vectors[[rows[i] for i in es.query_ids.tolist()]]
    c = candidate_vectors[[rows[i] for i in es.candidate_ids.tolist()]]
    topk, _ = top_k_cosine(q, c, k, self_index=es.self_index, block_size=block_size, normalise=normalise)
    return topk
