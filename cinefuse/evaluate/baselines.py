"""The reference rows of every results table: random, popularity and raw-feature cosine
(ItemKNN-CBF) per feature set and over all of them concatenated.

Each baseline turns the evaluation's queries and candidates into top-K lists of candidate
indices, the same shape a trained model's cosine ranking produces, so one metric pass scores
them all.
"""

from __future__ import annotations

import numpy as np

from cinefuse.metrics.ranking import l2_normalise, random_top_k, top_k_by_score, top_k_cosine


def pooled_rows(data: np.ndarray, lengths: np.ndarray | None, valid: np.ndarray) -> np.ndarray:
    """One vector per item: the row itself for (N, D) sets, the mean over valid timesteps for
    (N, T, D) sequences; rows that are not valid become zeros (cosine 0 with everything)."""
    data = np.asarray(data, dtype=np.float32)
    if data.ndim == 3:
        steps = data.shape[1]
        if lengths is None:
            lengths = np.full(data.shape[0], steps)
        mask = (np.arange(steps)[None, :] < np.asarray(lengths)[:, None]).astype(np.float32)
        data = (data * mask[..., None]).sum(axis=1) / np.maximum(mask.sum(axis=1), 1.0)[:, None]
    elif data.ndim != 2:
        raise ValueError(f"feature data must be (N, D) or (N, T, D), got {data.shape}")
    return np.where(np.asarray(valid, bool)[:, None], data, 0.0).astype(np.float32)


def concatenate_sets(matrices: list[np.ndarray]) -> np.ndarray:
    """Each set scaled to unit length before joining, so a wide set (1280-d) does not drown a
    narrow one (10-d) in the concatenated cosine."""
    return np.concatenate([l2_normalise(m) for m in matrices], axis=1)


def random_baseline(n_queries: int, n_candidates: int, k: int, self_index: np.ndarray, seed: int = 0) -> np.ndarray:
    return random_top_k(n_queries, n_candidates, k, self_index=self_index, seed=seed)


def popularity_baseline(raters: np.ndarray, n_queries: int, k: int, self_index: np.ndarray) -> np.ndarray:
    """The most-rated candidates for every query. It reads the candidates' own rating counts,
    which a truly new item would not have: a non-content reference, not a fair cold-start rival."""
    return top_k_by_score(raters, n_queries, k, self_index=self_index)


def itemknn_cbf(
    query_features: np.ndarray, candidate_features: np.ndarray, k: int, self_index: np.ndarray
) -> np.ndarray:
    """Cosine over raw features (ItemKNN content-based filtering)."""
    topk, _ = top_k_cosine(query_features, candidate_features, k, self_index=self_index)
    return topk
