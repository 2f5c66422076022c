"""User-to-item: rank the cold items for each warm user from that user's history (the task the
cold-start literature reports: DropoutNet, Heater, CLCRec, ALDI, beeFormer; issue 20).

- Users: everyone with at least one liked training item (the history) and at least one liked
  candidate (relevant). The others are left out and counted (``users_without_history``: likes
  among the candidates but none in training; ``users_without_relevant``: a history but no liked
  candidate).
- History: the user's liked items of the split's ``train`` part (under ``cold-item-time`` only
  likes given before the cut): never a validation or a test item.
- Candidates: the split's test items (the validation version, :func:`build_user_eval_set` over
  the ``val`` items, is how evaluate picks a prior weight when the run did not record one).
- Score of cold item c for user u: the mean over u's history items h of cos(e_h, e_c), computed
  as the dot of unit(e_c) with the mean of the unit history vectors; ``+prior`` rows add
  w * prior(c). The raw-feature baselines score the same way over each set's features
  standardised per column (mean 0, sd 1 over the store's valid rows; :meth:`content_rows`).
- Metrics (``cinefuse.metrics.user_metrics``) at the K list plus 20, 50 and 100; the verdict
  metric is Recall@20 (the selection metric of this task).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from cinefuse.errors import CinefuseError
from cinefuse.evaluate.evalset import genre_matrix, rater_counts
from cinefuse.evaluate.verdict import history_strata
from cinefuse.metrics.likes import like_matrix
from cinefuse.metrics.metrics import PerQuery, beyond_accuracy_metrics
from cinefuse.metrics.ranking import l2_normalise, top_k_cosine
from cinefuse.metrics.ties import tie_order
from cinefuse.metrics.user_metrics import USER_ACCURACY_METRICS, per_user_metrics

EXTRA_KS = (20, 50, 100)
SELECTION_METRIC = "R@20"
STRATA_KS = (10, 20)


@dataclass
class UserEvalSet:
    """Users (the queries), their histories and relevant candidates, candidates in tie order."""

    query_ids: np.ndarray       # (U,) str user ids, ascending
    candidate_ids: np.ndarray   # (C,) in the order score ties follow
    history_ids: np.ndarray     # (H,) the training items any history holds
    history: sp.csr_array       # (U, H) 1 where u liked the training item
    relevant: sp.csr_array      # (U, C) 1 where u liked the candidate
    genres: np.ndarray | None
    raters: np.ndarray          # (C,) users who rated each candidate (held out: no model saw them)
    n_users: int
    tie_break: str = "random"
    tie_seed: int = 0
    counts: dict = field(default_factory=dict)

    @property
    def self_index(self) -> np.ndarray:
        return np.full(len(self.query_ids), -1, dtype=np.int64)

    @property
    def history_len(self) -> np.ndarray:
        return np.diff(self.history.indptr)

    @property
    def item_strata(self) -> dict[str, np.ndarray]:
        """Candidates by held-out popularity: head = raters > the median over candidates."""
        median = float(np.median(self.raters)) if len(self.raters) else 0.0
        return {"items head": self.raters > median, "items tail": self.raters <= median}


@dataclass
class UserPerQuery(PerQuery):
    item_strata: dict = field(default_factory=dict)  # {stratum: {"R@K": (U,) NaN where none there}}


def build_user_eval_set(ratings, history_ids, candidate_ids, threshold: float, cut: int | None = None,
                        movies=None, tie_break: str = "random", tie_seed: int = 0, only_users=None) -> UserEvalSet:
    """The users with a liked history item and a liked candidate (see the module docstring);
    ``cut``: only ratings before it count for the history (``cold-item-time``); ``only_users``: only
    those of them (``cinefuse compare``: the users every compared run scores; the others are
    counted in ``users_not_given``)."""
    candidate_ids = tie_order(candidate_ids, tie_break, tie_seed)
    history_ids = np.asarray(sorted(set(np.asarray(history_ids, dtype=str).tolist())), dtype=str)
    users = np.asarray(ratings.user)
    items = np.asarray(ratings.item).astype(str).astype(object)
    values = np.asarray(ratings.rating, np.float32)
    seen = np.ones(len(users), bool) if cut is None else np.asarray(ratings.timestamp) < cut
    hist = like_matrix(users[seen], items[seen], values[seen], history_ids, threshold)
    test = like_matrix(users, items, values, candidate_ids, threshold)
    keep, in_hist, in_test = np.intersect1d(hist.user_ids, test.user_ids, return_indices=True)
    counts = {"users": len(keep), "candidates": len(candidate_ids),
              "users_without_history": int(len(test.user_ids) - len(keep)),
              "users_without_relevant": int(len(hist.user_ids) - len(keep)),
              "history_items": len(history_ids)}
    if only_users is not None:
        given = np.isin(np.asarray(keep).astype(str), np.asarray(list(only_users), dtype=str))
        keep, in_hist, in_test = keep[given], in_hist[given], in_test[given]
        counts.update({"users": len(keep), "users_not_given": int((~given).sum())})
    history = sp.csr_array(hist.X[in_hist])
    relevant = sp.csr_array(test.X[in_test])
    counts["relevant_pairs"] = int(relevant.nnz)
    raters, _, n_users = rater_counts(users, items, candidate_ids, candidate_ids)
    position = {c: i for i, c in enumerate(candidate_ids.tolist())}
    genres = genre_matrix(movies, position, len(candidate_ids)) if movies is not None else None
    return UserEvalSet(np.asarray(keep).astype(str), candidate_ids, history_ids, history, relevant, genres,
                       raters, n_users, tie_break, tie_seed, counts)


def rows_of(ids, wanted) -> np.ndarray:
    """Row of each ``wanted`` id in ``ids``, -1 where absent."""
    row = {i: r for r, i in enumerate(np.asarray(ids, dtype=str).tolist())}
    return np.array([row.get(i, -1) for i in np.asarray(wanted, dtype=str).tolist()], dtype=np.int64)


def taken(matrix: np.ndarray, take: np.ndarray) -> np.ndarray:
    """Rows ``take`` of ``matrix``, zeros where -1."""
    return np.where((take >= 0)[:, None], matrix[np.maximum(take, 0)], 0.0).astype(np.float32)


def user_vectors(es: UserEvalSet, ids, unit: np.ndarray) -> np.ndarray:
    """(U, D) the mean of each user's unit history vectors (rows of ``unit`` in ``ids`` order)."""
    hist = taken(unit, rows_of(ids, es.history_ids)).astype(np.float64)
    n = np.maximum(es.history_len, 1).astype(np.float64)
    return (es.history @ hist / n[:, None]).astype(np.float32)


class UserToItem:
    """The user-to-item task (see the module docstring)."""

    name = "user-to-item"
    metric_names = USER_ACCURACY_METRICS
    selection_metric = SELECTION_METRIC

    def ks(self, ks) -> tuple[int, ...]:
        return tuple(sorted(set(int(k) for k in ks) | set(EXTRA_KS)))

    def verdict_metric(self, ks) -> str:
        return SELECTION_METRIC

    def interval_metrics(self, ks) -> tuple[str, ...]:
        return (SELECTION_METRIC, "nDCG@10") if 10 in ks else (SELECTION_METRIC,)

    def eval_set(self, job, models: dict, tie_break: str = "random", tie_seed: int = 0, part: str = "test",
                 items=None, users=None):
        """``items``/``users``: rank only those candidates for only those users (``cinefuse compare``)."""
        notes: list[str] = []
        candidates = embedded_items(job, models, part, notes)
        if items is not None:
            given = set(str(i) for i in items)
            notes.append(f"user-to-item: restricted to the {len(given & set(candidates))} given items; "
                         f"{len(set(candidates) - given)} other {part} items left out")
            candidates = sorted(set(candidates) & given)
        history = embedded_items(job, models, "train", notes)
        es = build_user_eval_set(job.ratings, history, candidates, job.threshold, job.wd.split().get("cut_timestamp"),
                                 job.movies, tie_break, tie_seed, users)
        if users is not None:
            notes.append(f"user-to-item: restricted to the given users; {es.counts['users_not_given']} other users "
                         f"left out")
        c = es.counts
        if c["users"] < 1:
            raise CinefuseError(f"no user has a liked training item and a liked {part} item; user-to-item needs one")
        notes.append(f"user-to-item: {c['users']} users scored; left out {c['users_without_history']} users with "
                     f"liked {part} items but no liked training item and {c['users_without_relevant']} with a "
                     f"history but no liked {part} item")
        return es, {**c, "queries": c["users"], "queries_with_relevant": c["users"], "queries_without_relevant": 0,
                    "pairs": c["relevant_pairs"]}, notes

    def rank(self, es: UserEvalSet, ids, emb, k: int, prior=None, weight: float = 0.0) -> np.ndarray:
        unit = l2_normalise(emb)
        users = user_vectors(es, ids, unit)
        take = rows_of(ids, es.candidate_ids)
        cand = taken(unit, take)
        if prior is not None:
            users = np.concatenate([users, np.ones((len(users), 1), np.float32)], axis=1)
            p = np.where(take >= 0, np.asarray(prior, np.float32)[np.maximum(take, 0)], 0.0)
            cand = np.concatenate([cand, (weight * p)[:, None].astype(np.float32)], axis=1)
        topk, _ = top_k_cosine(users, cand, k, self_index=es.self_index, normalise=False)
        return topk

    def content_rows(self, matrix: np.ndarray, valid) -> np.ndarray:
        """Each column standardised over the valid rows (sd 0: left centred); invalid rows stay 0."""
        valid = np.asarray(valid, bool)
        if not valid.any():
            return matrix
        mean = matrix[valid].mean(axis=0)
        sd = matrix[valid].std(axis=0)
        out = (matrix - mean) / np.where(sd > 0, sd, 1.0)
        return np.where(valid[:, None], out, 0.0).astype(np.float32)

    def rank_content(self, es: UserEvalSet, ids, features: np.ndarray, k: int, knn) -> np.ndarray:
        unit = l2_normalise(features)
        return knn(user_vectors(es, ids, unit), taken(unit, rows_of(ids, es.candidate_ids)), k, es.self_index)

    def score(self, topk: np.ndarray, es: UserEvalSet, ks):
        values, strata = per_user_metrics(topk, es.relevant, ks, es.item_strata, [k for k in STRATA_KS if k in ks])
        scored = np.ones(len(es.query_ids), bool)
        out = {name: float(v.mean()) for name, v in values.items()}
        out["queries_scored"] = int(scored.sum())
        out.update(beyond_accuracy_metrics(topk, ks, len(es.candidate_ids), es.genres, es.raters, es.n_users))
        return out, UserPerQuery(values, scored, strata)

    def strata(self, rows, es: UserEvalSet):
        return history_strata(rows, es)


USER_TO_ITEM = UserToItem()


def embedded_items(job, models: dict, part: str, notes: list[str]) -> list[str]:
    """The split's ``part`` items that the store holds and every model embeds (so every row ranks
    and scores from the same items); those left out are counted in ``notes``."""
    if job.protocol != "cold-item":
        raise CinefuseError(f"the user-to-item task needs the cold-item protocol, not {job.protocol!r}")
    split = job.wd.split()
    pool = set(str(i) for i in split.get(part, []))
    if not pool:
        raise CinefuseError(f"{job.wd.root}/split.json has no {part} items; the user-to-item task needs them")
    kept = pool & set(np.asarray(job.store.ids(), dtype=str).tolist())
    for e in models.values():
        kept &= set(np.asarray(e.ids, dtype=str).tolist())
    if len(kept) < len(pool):
        notes.append(f"user-to-item: {len(pool) - len(kept)} {part} items are not in the store or not embedded "
                     f"by every model; left out for every row")
    return sorted(kept)
