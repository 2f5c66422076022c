"""The pinned item-to-item metrics (../shared/DESIGN.md, section Evaluate), vectorised over
(query, user) pairs.

For each query item q and each user u who liked q (rating >= ``threshold``), the relevant set
R(q, u) is u's other liked items among the candidates. With ``hit_j`` = 1 when the item at rank
j (1-based) of q's list is in R(q, u):

- ``P@K``    = hits / K (always divided by K, also when fewer than K candidates exist)
- ``R@K``    = hits / |R|
- ``HR@K``   = 1[hits > 0]
- ``MRR@K``  = 1 / rank of the first hit, 0 when none
- ``nDCG@K`` = sum_j hit_j / log2(j + 1), divided by the ideal sum over min(|R|, K) ranks
- ``gnDCG@K`` the thesis's graded nDCG: gain 2^rating - 1 (u's rating of the hit item), the
  ideal from u's highest-rated min(|R|, K) items of R

Each metric is averaged over the (q, u) pairs of a query, then over queries. Pairs with an empty
R (u liked no other candidate) cannot be scored and are left out; a query with no pair left is
left out of the accuracy averages and counted in ``queries_without_relevant``.

Beyond accuracy, over every ranked query: ``Cov@K`` catalogue coverage (share of candidates in
at least one top-K list), ``Div@K`` intra-list genre diversity (mean pairwise 1 - Jaccard of the
genre sets within a list, K >= 2; two items that both lack genres count as identical),
``Nov@K`` novelty (mean self-information -log2 p(i) of the listed items, p(i) = (raters of i +
1) / (users + 1) so unrated items stay finite).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cinefuse.genres import pairwise_jaccard_distance

ACCURACY_METRICS = ("P", "R", "HR", "nDCG", "MRR", "gnDCG")
BEYOND_METRICS = ("Cov", "Div", "Nov")
METRIC_LABELS = {
    "P": "Precision",
    "R": "Recall",
    "HR": "HitRate",
    "nDCG": "nDCG (binary)",
    "MRR": "MRR",
    "gnDCG": "nDCG graded 2^r-1 (thesis)",
    "Cov": "catalogue coverage",
    "Div": "intra-list genre diversity",
    "Nov": "novelty (bits)",
}
PAIR_CHUNK = 1 << 20  # (query, user) pairs scored per chunk: bounds memory at any scale


@dataclass
class Relevance:
    """Who liked what among the candidates, laid out for vectorised lookups.

    ``liked_keys`` are sorted ``user * n_candidates + candidate`` codes of every liked
    (user, candidate) rating, ``liked_ratings`` their ratings. One row per scorable
    (query, user) pair in ``pair_query``/``pair_user``/``n_relevant``/``pair_drop``.
    """

    n_queries: int
    n_candidates: int
    k_max: int
    liked_keys: np.ndarray
    liked_ratings: np.ndarray
    liked_gain: np.ndarray  # 2^rating - 1 of each liked_keys entry
    pair_query: np.ndarray
    pair_user: np.ndarray
    n_relevant: np.ndarray
    # the graded ideal DCG, per user rather than per pair: ideal_dcg[u, d, j] sums the discounted
    # gains of u's best j + 1 liked candidates with u's rank d left out (q's own rating, when q is a
    # candidate; d = k_max + 1 leaves nothing out), and pair_drop[p] is that d for pair p
    ideal_dcg: np.ndarray   # (users, k_max + 2, k_max) float64
    pair_drop: np.ndarray   # (P,)
    query_self: np.ndarray  # (Q,) each query's own candidate row, -1 when not a candidate
    pairs_without_relevant: int = 0
    # (users, candidates) CSR of the liked table, value = 1 + the entry's row in liked_keys: a hit
    # is looked up in the user's own few likes, not by binary search over all of them
    liked_rows: Any = None
    counts: dict = field(default_factory=dict)

    @property
    def queries_with_relevant(self) -> np.ndarray:
        return np.unique(self.pair_query)


def index_of(ids: np.ndarray, lookup: np.ndarray) -> np.ndarray:
    """Position of each ``lookup`` id in ``ids`` (unique), -1 where absent (hash lookup)."""
    import pandas as pd

    return pd.Index(np.asarray(ids, dtype=object)).get_indexer(np.asarray(lookup, dtype=object)).astype(np.int64)


def build_relevance(
    users: np.ndarray,
    items: np.ndarray,
    ratings: np.ndarray,
    query_ids,
    candidate_ids,
    k_max: int,
    threshold: float = 4.0,
) -> Relevance:
    """Relevance for ``query_ids`` against ``candidate_ids`` from raw ratings
    (users (n,), items (n,) str, ratings (n,)). A repeated (user, item) keeps its last rating.

    Steps: the likes coded by user and item (:func:`_coded_likes`), the liked (user, candidate)
    table (:func:`_liked_table`), each user's likes ranked by rating and the ideal DCG with each
    rank left out (:func:`_ranked_likes`), the scorable (query, user) pairs (:func:`_query_pairs`)
    and the rank each pair leaves out (:func:`_drop_ranks`)."""
    query_ids = np.asarray(query_ids, dtype=str)
    candidate_ids = np.asarray(candidate_ids, dtype=str)
    n_q, n_c = len(query_ids), len(candidate_ids)
    user_code, n_users, ratings, rows_in = _coded_likes(users, items, ratings, threshold)
    cand_of_rating = rows_in(candidate_ids)
    query_of_rating = rows_in(query_ids)
    query_self = index_of(candidate_ids, query_ids)  # the query's own candidate row, or -1

    liked_keys, liked_ratings, liked_users, n_liked_cand, liked_rows = _liked_table(
        user_code, cand_of_rating, ratings, n_users, n_c)
    levels, code_sorted, start, ideal_dcg = _ranked_likes(liked_users, liked_ratings, n_liked_cand, n_users, k_max)
    pq, pu, pr, n_rel, q_is_cand, pairs_without = _query_pairs(
        query_of_rating, user_code, ratings, query_self, n_liked_cand, n_q)
    drop_at = _drop_ranks(levels, code_sorted, start, pu, pr, q_is_cand, k_max)

    return Relevance(
        n_queries=n_q,
        n_candidates=n_c,
        k_max=k_max,
        liked_keys=liked_keys,
        liked_ratings=liked_ratings,
        liked_gain=np.exp2(liked_ratings.astype(np.float64)) - 1.0,
        pair_query=pq.astype(np.int64),
        pair_user=pu.astype(np.int64),
        n_relevant=n_rel.astype(np.int64),
        ideal_dcg=ideal_dcg,
        pair_drop=drop_at.astype(np.int64),
        query_self=query_self.astype(np.int64),
        pairs_without_relevant=pairs_without,
        liked_rows=liked_rows,
        counts={"users": n_users, "pairs": int(pq.size), "pairs_without_relevant": pairs_without},
    )


def _coded_likes(users, items, ratings, threshold: float):
    """The likes (rating >= ``threshold``) with users coded in ascending user order (as
    np.unique's inverse, by hashing instead of sorting); returns ``(user codes, number of users,
    liked ratings, rows_in)`` where ``rows_in(ids)`` maps each liked rating to the row of its item
    in ``ids`` (-1: not there)."""
    import pandas as pd

    users = np.asarray(users)
    items = np.asarray(items)
    ratings = np.asarray(ratings, dtype=np.float32)
    liked = ratings >= threshold
    users, items, ratings = users[liked], items[liked], ratings[liked]
    items = items if items.dtype == object else items.astype(str).astype(object)
    user_code = pd.factorize(users, sort=True)[0].astype(np.int64)
    n_users = int(user_code.max()) + 1 if user_code.size else 0

    # one hash pass over the ratings' items; candidates and queries are looked up among the
    # distinct items only (a catalogue, not a rating log)
    item_code, distinct = pd.factorize(items)
    item_code = item_code.astype(np.int64)

    def rows_in(ids):
        where = np.append(index_of(ids, np.asarray(distinct, dtype=object)), -1)  # code -1 (missing) -> -1
        return where[item_code]

    return user_code, n_users, ratings, rows_in


def _liked_table(user_code, cand_of_rating, ratings, n_users: int, n_c: int):
    """The liked (user, candidate) lookup table, the last rating of a repeated pair winning:
    ``(keys user * n_c + candidate, sorted; their ratings; their users; liked candidates per
    user; the table as a sparse user x candidate matrix of 1-based table positions)``."""
    import scipy.sparse as sp

    in_cand = cand_of_rating >= 0
    keys = user_code[in_cand] * n_c + cand_of_rating[in_cand]
    vals = ratings[in_cand]
    rev_unique_keys, rev_first = np.unique(keys[::-1], return_index=True)
    liked_keys = rev_unique_keys
    liked_ratings = vals[::-1][rev_first]
    liked_users = liked_keys // max(n_c, 1)
    n_liked_cand = np.bincount(liked_users, minlength=n_users)
    # liked_keys are sorted user-major, so each row's columns are already sorted and unique
    liked_rows = sp.csr_array(
        (np.arange(1, liked_keys.size + 1, dtype=np.float64), liked_keys - liked_users * n_c,
         np.concatenate([[0], np.cumsum(n_liked_cand)])),
        shape=(n_users, n_c))
    return liked_keys, liked_ratings, liked_users, n_liked_cand, liked_rows


def _ranked_likes(liked_users, liked_ratings, n_liked_cand, n_users: int, k_max: int):
    """Each user's likes by rating descending: ``(rating levels, the sorted (user, level) codes,
    each user's first position in them, ideal DCG (users, k_max + 2, k_max))``."""
    import pandas as pd

    # the liked table by user, then rating descending (ties in table order): one stable sort of
    # a (user, rating level) code, already in user order so the sort has little to do
    levels = np.sort(pd.unique(liked_ratings))
    level_code = liked_users * max(levels.size, 1) + (levels.size - 1 - np.searchsorted(levels, liked_ratings))
    order = np.argsort(level_code, kind="stable")
    su, sr, code_sorted = liked_users[order], liked_ratings[order], level_code[order]
    start = np.concatenate([[0], np.cumsum(n_liked_cand)[:-1]]) if n_users else np.zeros(0, np.int64)
    rank_in_user = np.arange(su.size) - start[su] if su.size else np.zeros(0, np.int64)
    top = np.full((n_users, k_max + 1), np.nan, dtype=np.float32)
    keep = rank_in_user <= k_max
    top[su[keep], rank_in_user[keep]] = sr[keep]
    return levels, code_sorted, start, _ideal_dcg(top, n_users, k_max)


def _ideal_dcg(top: np.ndarray, n_users: int, k_max: int) -> np.ndarray:
    """Graded gain of each user's top (k_max + 1) ratings (``top``, NaN past the user's likes:
    gain 0) and the ideal DCG with each rank d left out (rank j of the ideal list is u's rank j,
    or j + 1 once past d), summed rank by rank in the order the metric pass once summed them per
    pair."""
    top_wide = top.astype(np.float64)
    top_gain = np.where(np.isnan(top_wide), 0.0, np.exp2(np.nan_to_num(top_wide)) - 1.0)
    disc = discounts(k_max)
    drops = np.arange(k_max + 2)
    ideal_dcg = np.zeros((n_users, k_max + 2, k_max))
    acc = np.zeros((n_users, k_max + 2))
    for j in range(k_max):
        acc += top_gain[:, j + (j >= drops)] * disc[j]
        ideal_dcg[:, :, j] = acc
    return ideal_dcg


def _query_pairs(query_of_rating, user_code, ratings, query_self, n_liked_cand, n_q: int):
    """The (query, user) pairs where u liked q (q need not be a candidate) and u liked some other
    candidate: ``(query, user, rating, relevant count, whether q is a candidate, pairs dropped for
    having no relevant candidate)``."""
    in_query = query_of_rating >= 0
    # reversed so np.unique's first occurrence is the last rating, as in the lookup table
    pq_all = query_of_rating[in_query][::-1]
    pu_all = user_code[in_query][::-1]
    pr_all = ratings[in_query][::-1]
    # user-major order: a chunk's lookups sweep the user-sorted liked table (cache friendly)
    pair_code, first = np.unique(pu_all * max(n_q, 1) + pq_all, return_index=True)
    pq, pu, pr = pq_all[first], pu_all[first], pr_all[first]
    q_is_cand = query_self[pq] >= 0
    n_rel = n_liked_cand[pu] - q_is_cand.astype(np.int64) if pu.size else np.zeros(0, np.int64)
    scorable = n_rel > 0
    pairs_without = int((~scorable).sum())
    return pq[scorable], pu[scorable], pr[scorable], n_rel[scorable], q_is_cand[scorable], pairs_without


def _drop_ranks(levels, code_sorted, start, pu, pr, q_is_cand, k_max: int) -> np.ndarray:
    """q's own rating is left out of u's ideal list once (q is in R's pool only when it is a
    candidate), at u's first rank holding that rating: the count of u's liked candidates rated
    higher, found in the (user, rating descending) order of the liked table; k_max + 1: none."""
    pr_level = levels.size - 1 - np.clip(np.searchsorted(levels, pr), 0, max(levels.size - 1, 0))
    higher = np.searchsorted(code_sorted, pu * max(levels.size, 1) + pr_level) - start[pu] if pu.size else pu
    return np.where(q_is_cand, np.minimum(higher, k_max + 1), k_max + 1)


def discounts(k: int) -> np.ndarray:
    return 1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64))


@dataclass
class PerQuery:
    """Each accuracy metric per query (the (query, user) mean), the input of bootstrap intervals.

    ``values[name]`` is (Q,) with 0 where the query has no scorable pair; ``scored`` (Q,) marks
    the queries that have one (the only ones any average or interval uses)."""

    values: dict[str, np.ndarray]
    scored: np.ndarray

    def of(self, name: str) -> np.ndarray:
        """The scored queries' values of one metric, in query order."""
        return self.values[name][self.scored]


def accuracy_metrics(topk: np.ndarray, rel: Relevance, ks) -> dict[str, float]:
    """Every accuracy metric at every K in ``ks`` for the lists ``topk`` (Q, >= max(ks)) of
    candidate indices (-1 = empty slot). Returns ``{"P@10": value, ...}`` plus
    ``queries_scored``."""
    return average_per_query(per_query_accuracy_metrics(topk, rel, ks))


def average_per_query(per_query: PerQuery) -> dict[str, float]:
    """The averages :func:`accuracy_metrics` reports: the mean over scored queries."""
    scored = per_query.scored
    out = {name: float(v[scored].mean()) if scored.any() else float("nan") for name, v in per_query.values.items()}
    out["queries_scored"] = int(scored.sum())
    return out


def per_query_accuracy_metrics(topk: np.ndarray, rel: Relevance, ks) -> PerQuery:
    """:func:`accuracy_metrics` before the average over queries."""
    ks = sorted(int(k) for k in ks)
    k_max = max(ks)
    if k_max > rel.k_max:
        raise ValueError(f"relevance was built for K <= {rel.k_max}, asked for {k_max}")
    if topk.shape[1] < k_max:
        raise ValueError(f"lists hold {topk.shape[1]} items, K = {k_max} asked")
    sums = {f"{m}@{k}": np.zeros(rel.n_queries) for m in ACCURACY_METRICS for k in ks}
    pairs_per_query = np.bincount(rel.pair_query, minlength=rel.n_queries).astype(np.float64)
    disc = discounts(k_max)
    ideal_binary = np.cumsum(disc)
    has_likes = rel.liked_keys.size > 0
    # one rank at a time over all pairs: every step is a contiguous vector operation, and each
    # rank's column of the lists (one entry per query) stays in cache while pairs gather from it
    lists_t = np.ascontiguousarray(topk[:, :k_max].T)
    for lo in range(0, rel.pair_query.size, PAIR_CHUNK):
        hi = min(lo + PAIR_CHUNK, rel.pair_query.size)
        q, u = rel.pair_query[lo:hi], rel.pair_user[lo:hi]
        n = hi - lo
        own = rel.query_self[q]
        n_rel = rel.n_relevant[lo:hi]
        n_rel_f = n_rel.astype(np.float64)
        hits = np.zeros(n)
        dcg = np.zeros(n)
        gdcg = np.zeros(n)
        drop = rel.pair_drop[lo:hi]
        first = np.zeros(n)
        for j in range(k_max):
            column = lists_t[j][q]
            if has_likes:
                pos = rel.liked_rows[u, np.maximum(column, 0)].astype(np.int64) - 1  # -1: not liked
                # q itself is never relevant to q, even in a list that (wrongly) holds it
                hit = (pos >= 0) & (column >= 0) & (column != own)
                gdcg += np.where(hit, rel.liked_gain[pos], 0.0) * disc[j]
            else:
                hit = np.zeros(n, bool)
            hits += hit
            dcg += hit * disc[j]
            first = np.where((first == 0) & hit, j + 1.0, first)
            k = j + 1
            if k not in ks:
                continue
            values = {
                "P": hits / k,
                "R": hits / n_rel_f,
                "HR": (hits > 0).astype(np.float64),
                "nDCG": dcg / ideal_binary[np.minimum(n_rel, k) - 1],
                "MRR": np.where(first > 0, 1.0 / np.maximum(first, 1.0), 0.0),
                "gnDCG": _safe_div(gdcg, rel.ideal_dcg[u, drop, j]),
            }
            for m, v in values.items():
                sums[f"{m}@{k}"] += np.bincount(q, weights=v, minlength=rel.n_queries)
    scored = pairs_per_query > 0
    per_query = {name: np.where(scored, s / np.where(scored, pairs_per_query, 1.0), 0.0) for name, s in sums.items()}
    return PerQuery(per_query, scored)


def _safe_div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.where(b > 0, a / np.where(b > 0, b, 1.0), 0.0)


def coverage(topk: np.ndarray, n_candidates: int, k: int) -> float:
    if not n_candidates:
        return float("nan")
    listed = topk[:, :k]
    seen = np.zeros(n_candidates, dtype=bool)
    seen[listed[listed >= 0]] = True
    return float(seen.sum() / n_candidates)


def genre_diversity(topk: np.ndarray, genres: np.ndarray, k: int, chunk: int = 8192) -> float:
    """Mean over queries of the mean pairwise (1 - Jaccard) genre distance within the top-k;
    ``genres`` is the (C, G) multi-hot genre matrix of the candidates. NaN for k < 2."""
    return genre_diversity_at(topk, genres, [k], chunk)[k]


def genre_diversity_at(topk: np.ndarray, genres: np.ndarray, ks, chunk: int = 8192) -> dict[int, float]:
    """``genre_diversity`` at every k in ``ks`` from one pairwise-distance pass over the lists."""
    ks = sorted(int(k) for k in ks)
    k_max = max(ks)
    out = {k: float("nan") for k in ks}
    if topk.shape[0] == 0 or k_max < 2:
        return out
    genres = np.asarray(genres, dtype=np.float32)
    totals = {k: 0.0 for k in ks}
    counts = {k: 0 for k in ks}
    upper = np.triu(np.ones((k_max, k_max), bool), 1)
    for lo in range(0, topk.shape[0], chunk):
        lists = topk[lo : lo + chunk, :k_max]
        valid = lists >= 0
        g = genres[np.where(valid, lists, 0)] * valid[..., None]
        distance = pairwise_jaccard_distance(g)
        both = valid[:, :, None] & valid[:, None, :] & upper
        for k in ks:
            if k < 2:
                continue
            pairs = both[:, :k, :k]
            n_pairs = pairs.sum(axis=(1, 2))
            has = n_pairs > 0
            totals[k] += float(((distance[:, :k, :k] * pairs).sum(axis=(1, 2))[has] / n_pairs[has]).sum())
            counts[k] += int(has.sum())
    return {k: (totals[k] / counts[k] if counts[k] else float("nan")) for k in ks}


def novelty(topk: np.ndarray, raters: np.ndarray, n_users: int, k: int) -> float:
    """Mean over queries of the mean self-information -log2((raters + 1) / (users + 1)) of the
    listed candidates; ``raters`` (C,) counts the users who rated each candidate."""
    info = -np.log2((np.asarray(raters, dtype=np.float64) + 1.0) / (n_users + 1.0))
    lists = topk[:, :k]
    valid = lists >= 0
    counts = valid.sum(axis=1)
    per_query = (info[np.where(valid, lists, 0)] * valid).sum(axis=1)
    has = counts > 0
    return float((per_query[has] / counts[has]).mean()) if has.any() else float("nan")


def beyond_accuracy_metrics(
    topk: np.ndarray, ks, n_candidates: int, genres: np.ndarray | None, raters: np.ndarray | None, n_users: int
) -> dict[str, float]:
    out = {}
    ks = sorted(int(k) for k in ks)
    diversity = genre_diversity_at(topk, genres, ks) if genres is not None else {}
    for k in ks:
        out[f"Cov@{k}"] = coverage(topk, n_candidates, k)
        out[f"Div@{k}"] = diversity.get(k, float("nan"))
        out[f"Nov@{k}"] = novelty(topk, raters, n_users, k) if raters is not None else float("nan")
    return out
