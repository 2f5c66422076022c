"""Cosine top-K over a candidate set, on the device, one block of queries at a time.

The score matrix of one block (block_size x C) is the largest thing ever held, so a 27,000 x
27,000 ranking never materialises 2.9 GB of scores on the host. The query itself is excluded
(its own column is set to -inf), and ties are broken by candidate position: ``lax.top_k`` keeps
the lower index first among equal values, so callers that order candidates by id
(``id_order``) get ties broken by id.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

DEFAULT_BLOCK = 1024


def id_sort_key(ids) -> np.ndarray:
    """A permutation that orders ``ids`` for tie-breaking: numerically when every id is a
    decimal integer (MovieLens ``"2"`` before ``"10"``), else as strings."""
    ids = np.asarray(ids, dtype=str)
    if ids.size and all(s.isdigit() for s in ids):
        as_int = np.array([int(s) for s in ids], dtype=np.int64)
        return np.argsort(as_int, kind="stable")
    return np.argsort(ids, kind="stable")


def sort_ids(ids) -> np.ndarray:
    """``ids`` (str) in tie-breaking order."""
    ids = np.asarray(ids, dtype=str)
    return ids[id_sort_key(ids)]


def l2_normalise(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Rows scaled to unit length; all-zero rows stay zero (cosine 0 with everything)."""
    x = np.asarray(x, dtype=np.float32)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norm, eps)


@lru_cache(maxsize=None)
def _block_fn(k: int):
    import jax
    import jax.numpy as jnp

    @jax.jit
    def top_k_block(queries, candidates, self_index):
        scores = queries @ candidates.T
        columns = jnp.arange(candidates.shape[0], dtype=self_index.dtype)
        scores = jnp.where(columns[None, :] == self_index[:, None], -jnp.inf, scores)
        return jax.lax.top_k(scores, k)

    return top_k_block


def top_k_cosine(
    queries: np.ndarray,
    candidates: np.ndarray,
    k: int,
    self_index: np.ndarray | None = None,
    block_size: int = DEFAULT_BLOCK,
    normalise: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` candidates by cosine for every query row.

    queries (Q, D), candidates (C, D); ``self_index[q]`` is the query's own row in
    ``candidates`` (excluded from its list) or -1 when it is not a candidate.
    Returns ``indices`` (Q, k) int64 into ``candidates`` and ``scores`` (Q, k) float32, ordered
    best first, ties by lower candidate index; slots past the available candidates hold -1 and
    -inf.
    """
    import jax
    import jax.numpy as jnp

    queries = np.asarray(queries, dtype=np.float32)
    candidates = np.asarray(candidates, dtype=np.float32)
    if queries.ndim != 2 or candidates.ndim != 2 or queries.shape[1] != candidates.shape[1]:
        raise ValueError(f"queries {queries.shape} and candidates {candidates.shape} must be (Q, D) and (C, D)")
    n_queries, n_cand = queries.shape[0], candidates.shape[0]
    if self_index is None:
        self_index = np.full(n_queries, -1, dtype=np.int32)
    self_index = np.asarray(self_index, dtype=np.int32)
    if normalise:
        queries, candidates = l2_normalise(queries), l2_normalise(candidates)

    indices = np.full((n_queries, k), -1, dtype=np.int64)
    scores = np.full((n_queries, k), -np.inf, dtype=np.float32)
    k_eff = min(k, n_cand)
    if n_queries == 0 or k_eff == 0:
        return indices, scores

    # every block has the same shape (the last one padded) so the step compiles once
    block = max(1, min(block_size, n_queries))
    fn = _block_fn(k_eff)
    cand_dev = jax.device_put(jnp.asarray(candidates))
    pending = []
    for start in range(0, n_queries, block):
        stop = min(start + block, n_queries)
        q = queries[start:stop]
        s = self_index[start:stop]
        if stop - start < block:
            q = np.pad(q, ((0, block - (stop - start)), (0, 0)))
            s = np.pad(s, (0, block - (stop - start)), constant_values=-1)
        # dispatch is asynchronous: the next block is queued while this one computes
        pending.append((start, stop, fn(q, cand_dev, s)))
        if len(pending) > 2:
            _collect(pending.pop(0), indices, scores)
    for item in pending:
        _collect(item, indices, scores)
    unavailable = ~np.isfinite(scores)
    indices[unavailable] = -1
    return indices, scores


def _collect(item, indices: np.ndarray, scores: np.ndarray) -> None:
    start, stop, (vals, idx) = item
    n = stop - start
    k_eff = vals.shape[1]
    scores[start:stop, :k_eff] = np.asarray(vals)[:n]
    indices[start:stop, :k_eff] = np.asarray(idx)[:n]


def top_k_by_score(
    score: np.ndarray, n_queries: int, k: int, self_index: np.ndarray | None = None
) -> np.ndarray:
    """The same top-``k`` list for every query from one global score per candidate (the
    popularity baseline), each query's own row skipped. Ties by lower candidate index."""
    score = np.asarray(score, dtype=np.float64)
    order = np.lexsort((np.arange(score.size), -score))[: k + 1]
    indices = np.full((n_queries, k), -1, dtype=np.int64)
    if self_index is None:
        self_index = np.full(n_queries, -1)
    self_index = np.asarray(self_index)
    head = np.broadcast_to(order, (n_queries, order.size))
    keep = head != self_index[:, None]
    # drop the query's own row, then keep the first k survivors of each row
    rank = np.cumsum(keep, axis=1) - 1
    rows, cols = np.nonzero(keep & (rank < k))
    indices[rows, rank[rows, cols]] = head[rows, cols]
    return indices


def random_top_k(
    n_queries: int,
    n_candidates: int,
    k: int,
    self_index: np.ndarray | None = None,
    seed: int = 0,
    block_size: int = DEFAULT_BLOCK,
) -> np.ndarray:
    """A uniformly random top-``k`` list per query (without repeats, query excluded)."""
    rng = np.random.default_rng(seed)
    if self_index is None:
        self_index = np.full(n_queries, -1)
    self_index = np.asarray(self_index)
    k_eff = min(k, n_candidates)
    indices = np.full((n_queries, k), -1, dtype=np.int64)
    for start in range(0, n_queries, block_size):
        stop = min(start + block_size, n_queries)
        draws = rng.random((stop - start, n_candidates))
        rows = np.arange(stop - start)
        own = self_index[start:stop]
        draws[rows[own >= 0], own[own >= 0]] = np.inf
        part = np.argpartition(draws, k_eff - 1, axis=1)[:, :k_eff] if k_eff < n_candidates else np.argsort(draws, axis=1)
        part = np.take_along_axis(part, np.argsort(np.take_along_axis(draws, part, axis=1), axis=1), axis=1)
        picked = np.take_along_axis(draws, part, axis=1)
        part = np.where(np.isfinite(picked), part, -1)
        indices[start:stop, : part.shape[1]] = part[:, :k_eff]
    return indices
