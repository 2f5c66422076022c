"""The user-to-item metrics: one ranked list of cold items per user, relevant = the user's liked
items among the candidates (issue 20; the task the cold-start literature reports).

With ``hits@K`` the relevant items among the first K of the user's list and ``R`` the user's
relevant set:

- ``P@K``     = hits / K
- ``R@K``     = hits / |R| (Recall)
- ``cR@K``    = hits / min(K, |R|) (calibrated recall, as beeFormer and recpack report it)
- ``HR@K``    = 1[hits > 0]
- ``nDCG@K``  = sum_j hit_j / log2(j + 1), over the ideal sum of min(|R|, K) ranks
- ``MRR@K``   = 1 / rank of the first hit, 0 when none

Every user scored has |R| >= 1 (the task leaves the others out), so each metric is the mean over
users. :func:`per_user_metrics` also returns, per stratum of items (a boolean mask over the
candidates), the recall of each user's relevant items in that stratum (NaN for a user with none
there), for the strata by the cold items' held-out popularity.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

USER_ACCURACY_METRICS = ("P", "R", "cR", "HR", "nDCG", "MRR")
USER_METRIC_LABELS = {"cR": "calibrated recall hits/min(K,|R|)"}
USER_BLOCK = 4096  # users whose relevance rows are held dense at once


def discounts(k: int) -> np.ndarray:
    return 1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64))


def list_hits(topk: np.ndarray, relevant: sp.csr_array, block: int = USER_BLOCK) -> np.ndarray:
    """(U, k) bool: whether the item at each rank of each user's list is relevant to that user
    (``topk`` (U, k) candidate rows, -1 = empty slot; ``relevant`` (U, C) sparse)."""
    relevant = sp.csr_array(relevant)
    out = np.zeros(topk.shape, dtype=bool)
    for lo in range(0, topk.shape[0], block):
        dense = relevant[lo:lo + block].toarray() > 0
        lists = topk[lo:lo + block]
        got = np.take_along_axis(dense, np.maximum(lists, 0), axis=1)
        out[lo:lo + block] = got & (lists >= 0)
    return out


def per_user_metrics(topk: np.ndarray, relevant, ks, item_strata: dict[str, np.ndarray] | None = None,
                     strata_ks=()) -> tuple[dict[str, np.ndarray], dict[str, dict[str, np.ndarray]]]:
    """({"R@20": (U,) values, ...} for every metric of the module docstring at every K in ``ks``,
    {stratum: {"R@K": (U,) recall of the user's relevant items in the stratum, NaN where none}}
    for every K in ``strata_ks``)."""
    ks = sorted(int(k) for k in ks)
    k_max = max(ks)
    if topk.shape[1] < k_max:
        raise ValueError(f"lists hold {topk.shape[1]} items, K = {k_max} asked")
    relevant = sp.csr_array(relevant)
    n_rel = np.diff(relevant.indptr).astype(np.float64)
    if (n_rel < 1).any():
        raise ValueError("every user scored needs at least one relevant item")
    hit = list_hits(topk[:, :k_max], relevant)
    hits = np.cumsum(hit, axis=1, dtype=np.float64)
    disc = discounts(k_max)
    dcg = np.cumsum(hit * disc, axis=1)
    ideal = np.cumsum(disc)
    first = np.where(hit.any(axis=1), hit.argmax(axis=1) + 1.0, np.inf)
    out = {}
    for k in ks:
        h = hits[:, k - 1]
        out[f"P@{k}"] = h / k
        out[f"R@{k}"] = h / n_rel
        out[f"cR@{k}"] = h / np.minimum(n_rel, k)
        out[f"HR@{k}"] = (h > 0).astype(np.float64)
        out[f"nDCG@{k}"] = dcg[:, k - 1] / ideal[np.minimum(n_rel, k).astype(np.int64) - 1]
        out[f"MRR@{k}"] = np.where(first <= k, 1.0 / first, 0.0)
    strata = {}
    for name, mask in (item_strata or {}).items():
        in_stratum = np.asarray(mask, bool)
        rel_s = relevant @ sp.diags_array(in_stratum.astype(np.float64))
        n_s = np.asarray(rel_s.sum(axis=1)).ravel()
        listed = in_stratum[np.maximum(topk[:, :k_max], 0)] & (topk[:, :k_max] >= 0)
        hits_s = np.cumsum(hit & listed, axis=1, dtype=np.float64)
        strata[name] = {f"R@{k}": np.where(n_s > 0, hits_s[:, k - 1] / np.maximum(n_s, 1), np.nan)
                        for k in strata_ks if k <= k_max}
    return out, strata
