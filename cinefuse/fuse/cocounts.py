"""Co-occurrence counts that stay affordable: how many products X^T X takes, and the heavy-user cap.

Item x item co-counts C = X^T X (likes, ratings, dislikes) cost sum_u L_u^2 products over users' row
lengths L_u: quadratic in the heaviest users. A MovieLens-20M-sized catalogue (20M ratings) takes
~2.3e9 like products. Above a budget of products each heavy user's row is cut to ``m`` entries,
the largest ``m`` whose sum_u min(L_u, m)^2 fits (:func:`co_count_cap`; Apache Mahout's
ItemSimilarityJob caps users the same way with ``maxPrefsPerUser``). A capped user keeps their
rarest items (fewest entries in X; ties in a seeded random order) and drops the popular ones
first, in the spirit of word2vec's subsampling of frequent words: a popular item has many other
users to supply its co-counts, a rare one may have only this one. ``benchmarks/bench_cocounts.py``
(100k synthetic items, the budget a tenth of the exact products, cap 34): keeping the rarest
likes left 146 items without a co-like partner against 2,117 for a uniform random sample (28
exact), found 24% of the exact top-32 partners against 14%, at about the same share of partners
from the anchor's own taste cluster (82.7% and 83.0%; 97.3% exact, 1.6% by chance).
Below the budget (ml-latest-small: 1.1e7 like products, 6.1e7 for any rating) nothing changes
and the counts are exact. Used by the co-like partners (:mod:`cinefuse.fuse.targets`) and the
thesis pairs (:mod:`cinefuse.fuse.pairs`).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

#: co-like products (sum over users of likes^2, the work of X^T X) done exactly; above it each
#: heavy user's likes are down-sampled (:func:`co_count_cap`). ml-latest-small: 1.1e7 (exact).
CO_PRODUCTS_BUDGET = 2e8


def row_ranks(X: sp.csr_matrix, rows: np.ndarray, key: list) -> np.ndarray:
    """Rank of each stored entry of ``X`` within its row: its position for rows not in the bool
    mask ``rows``, a seeded random order (``np.random.default_rng(key)``) for rows in it."""
    X = sp.csr_matrix(X)
    row = np.repeat(np.arange(X.shape[0], dtype=np.int64), np.diff(X.indptr))
    rank = np.arange(X.nnz, dtype=np.int64) - X.indptr[row]
    pick = np.flatnonzero(rows[row])
    rank[pick] = random_ranks(row[pick], key)
    return rank


def random_ranks(group: np.ndarray, key: list, priority: np.ndarray | None = None) -> np.ndarray:
    """0 .. n_g - 1 within each value g of the integer array ``group`` (any order): by ascending
    ``priority`` when given, ties (all of a group without it) in a seeded random order, so the
    entries with rank < m are the m lowest-priority ones, a uniform random m among equals."""
    group = np.asarray(group, dtype=np.int64)
    out = np.empty(len(group), np.int64)
    if len(group) == 0:
        return out
    prio = np.zeros(len(group), np.int64) if priority is None else np.asarray(priority, dtype=np.int64)
    group_bits, prio_bits = int(group.max()).bit_length(), int(prio.max()).bit_length()
    noise_bits = 64 - group_bits - prio_bits
    rng = np.random.default_rng(key)
    if noise_bits >= 24 and group.min() >= 0 and prio.min() >= 0:
        # one 64-bit key (group, priority, noise): a single argsort instead of a 3-key lexsort
        noise = rng.integers(0, 1 << noise_bits, len(group), dtype=np.uint64)
        order = np.argsort((group.astype(np.uint64) << np.uint64(prio_bits + noise_bits))
                           | (prio.astype(np.uint64) << np.uint64(noise_bits)) | noise)
    else:
        order = np.lexsort((rng.random(len(group)), prio, group))
    out[order] = rank_in_runs(group[order])
    return out


def rank_in_runs(sorted_keys: np.ndarray) -> np.ndarray:
    """0, 1, 2, ... within each run of equal values of a sorted array (O(n), no search)."""
    n = len(sorted_keys)
    start = np.ones(n, bool)
    start[1:] = sorted_keys[1:] != sorted_keys[:-1]
    first = np.flatnonzero(start)
    return np.arange(n) - first[np.cumsum(start) - 1]


def co_count_cap(lengths: np.ndarray, budget: float = CO_PRODUCTS_BUDGET) -> int | None:
    """The largest m with sum_u min(L_u, m)^2 <= ``budget`` over row lengths L_u (None: the exact
    co-counts, sum_u L_u^2, fit the budget). Floor 8: a user votes for at least 28 pairs."""
    lengths = np.asarray(lengths, dtype=np.float64)
    if (lengths ** 2).sum() <= budget or len(lengths) == 0:
        return None
    lo, hi = 1, int(lengths.max())
    while lo < hi:  # the sum grows with m: the largest m within the budget
        mid = (lo + hi + 1) // 2
        if (np.minimum(lengths, mid) ** 2).sum() <= budget:
            lo = mid
        else:
            hi = mid - 1
    return max(lo, 8)


def keep_rarest(group: np.ndarray, item: np.ndarray, cap: int | None, key: list) -> np.ndarray:
    """The heavy-user cap as a bool mask over entries (``group`` g holds ``item`` j): every entry
    of a group with at most ``cap`` entries; of a larger group, the ``cap`` entries whose items
    have the fewest entries overall (the rarest), ties in a seeded random order."""
    group, item = np.asarray(group, dtype=np.int64), np.asarray(item, dtype=np.int64)
    keep = np.ones(len(group), bool)
    if cap is None or len(group) == 0:
        return keep
    heavy = np.flatnonzero(np.bincount(group)[group] > cap)
    rarity = np.bincount(item)[item[heavy]]
    keep[heavy] = random_ranks(group[heavy], key, rarity) < cap
    return keep


def down_sample_rows(X: sp.csr_matrix, cap: int | None, seed: int) -> sp.csr_matrix:
    """``X`` with every row longer than ``cap`` cut to ``cap`` of its entries by
    :func:`keep_rarest` (the rarest columns first, ties in a seeded random order)."""
    X = sp.csr_matrix(X)
    if cap is None:
        return X
    row = np.repeat(np.arange(X.shape[0]), np.diff(X.indptr))
    keep = keep_rarest(row, X.indices, cap, [seed, 14])
    indptr = np.concatenate([[0], np.cumsum(np.bincount(row[keep], minlength=X.shape[0]))])
    out = sp.csr_matrix((X.data[keep], X.indices[keep], indptr), shape=X.shape)
    out.has_sorted_indices = X.has_sorted_indices
    return out
