"""The evaluation set: queries, candidates in the order score ties follow, and everything the
metrics need (relevance, genres, popularity), built from the ratings.

Ties: the candidates of an :class:`EvalSet` are held in tie order (``cinefuse.metrics.ties``), and
every row ranks through that order (``top_k_cosine`` and ``top_k_by_score`` keep the lower
position among equal scores). By default a seeded pseudo-random permutation of the id order
(``tie_break="random"``, ``tie_seed``); ``tie_break="id"`` keeps the id order, for comparison.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from cinefuse.datasets.movielens import genre_vocabulary
from cinefuse.metrics.metrics import (
    PerQuery,
    average_per_query,
    beyond_accuracy_metrics,
    build_relevance,
    index_of,
    per_query_accuracy_metrics,
)
from cinefuse.metrics.ranking import id_sort_key
from cinefuse.metrics.ties import tie_order


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
    raters, query_raters, n_users = rater_counts(ratings.user, items, candidate_ids, query_ids)
    genres = genre_matrix(movies, position, len(candidate_ids)) if movies is not None else None
    return EvalSet(query_ids, candidate_ids, self_index, rel, genres, raters, n_users, query_raters,
                   tie_break, tie_seed)


def rater_counts(users, items, candidate_ids, query_ids) -> tuple[np.ndarray, np.ndarray, int]:
    """(distinct users who rated each candidate, each query, the number of users)."""
    cand_index = index_of(candidate_ids, items)
    _, user_code = np.unique(np.asarray(users), return_inverse=True)
    n_users = int(user_code.max()) + 1 if user_code.size else 0
    in_cand = cand_index >= 0
    rated = np.unique(cand_index[in_cand] * max(n_users, 1) + user_code[in_cand])
    raters = np.bincount(rated // max(n_users, 1), minlength=len(candidate_ids))
    query_index = index_of(query_ids, items)
    in_query = query_index >= 0
    rated_q = np.unique(query_index[in_query] * max(n_users, 1) + user_code[in_query])
    query_raters = np.bincount(rated_q // max(n_users, 1), minlength=len(query_ids))
    return raters, query_raters, n_users


def genre_matrix(movies, position: dict[str, int], n: int) -> np.ndarray:
    """(n, G) multi-hot genres of the items at ``position`` (id -> row)."""
    names = genre_vocabulary(movies.genres)
    col = {g: j for j, g in enumerate(names)}
    genres = np.zeros((n, len(names)), dtype=np.float32)
    for mid, gs in zip(np.asarray(movies.ids, dtype=str).tolist(), movies.genres):
        row = position.get(mid)
        if row is not None:
            for g in gs:
                genres[row, col[g]] = 1.0
    return genres


def score_lists(topk: np.ndarray, es: EvalSet, ks) -> dict[str, float]:
    return score_lists_per_query(topk, es, ks)[0]


def score_lists_per_query(topk: np.ndarray, es: EvalSet, ks) -> tuple[dict[str, float], PerQuery]:
    """Every metric of the lists ``topk`` and the per-query accuracy values they average."""
    per_query = per_query_accuracy_metrics(topk, es.relevance, ks)
    out = average_per_query(per_query)
    out.update(beyond_accuracy_metrics(topk, ks, len(es.candidate_ids), es.genres, es.raters, es.n_users))
    return out, per_query
