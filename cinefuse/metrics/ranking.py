"""Cosine top-K over a candidate set, on the device, one block of queries at a time.

The score matrix of one block (block_size x C) is the largest thing ever held, so a 27,000 x
27,000 ranking never materialises 2.9 GB of scores on the host. The query itself is excluded,
and ties are broken by candidate position: ``lax.top_k`` keeps the lower index first among
equal values, so the order callers hold candidates in is the tie rule (``cinefuse.metrics.ties``:
a seeded permutation of the id order, or the id order itself).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

DEFAULT_BLOCK = 256  # queries per step: 256 x C scores stay cache-sized on a CPU


def id_sort_key(ids) -> np.ndarray:
    """A permutation that orders ``ids`` the one way cinefuse orders items (tie-breaking in every
    ranking, split and pair lists): decimal integers in numeric order (MovieLens ``"2"`` before
    ``"10"``), then any other ids as strings; equal keys keep their input order."""
    ids = np.asarray(ids, dtype=str)
    strings = ids.tolist()
    numeric = np.array([s.isascii() and s.isdigit() for s in strings], dtype=bool)
    value = np.array([int(s) if n else 0 for s, n in zip(strings, numeric.tolist())], dtype=np.int64)
    if numeric.all():
        return np.argsort(value, kind="stable")
    text = np.where(numeric, "", ids)
    return np.lexsort((text, value, ~numeric))


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
def _block_fn(k_sel: int, n_chunks_sel: int, width: int):
    """The jitted step for one block of queries: the top ``k_sel`` scores and their columns.

    ``lax.top_k`` over all C columns is the slow part on a CPU (several times the matmul), so
    the selection runs in two stages: the maximum of each chunk of ``width`` columns, the best
    ``n_chunks_sel`` chunks by that maximum (ties: lower chunk), then ``top_k`` over those
    chunks' scores only, gathered in column order. Exact: every one of the top ``k_sel`` scores
    sits in a chunk whose maximum is at least that score, and fewer than ``k_sel`` chunks can
    beat such a chunk, so the chunks holding the answer are always among those kept; ties keep
    the lower column because chunks and the columns within them stay in index order.
    """
    import jax
    import jax.numpy as jnp

    @jax.jit
    def top_k_block(queries, candidates):
        b, n_cols = queries.shape[0], candidates.shape[0]
        scores = queries @ candidates.T
        chunk_max = scores.reshape(b, n_cols // width, width).max(axis=2)
        _, chunks = jax.lax.top_k(chunk_max, n_chunks_sel)
        chunks = jnp.sort(chunks, axis=1)
        columns = (chunks[:, :, None] * width + jnp.arange(width)[None, None, :]).reshape(b, -1)
        flat = (jnp.arange(b)[:, None] * n_cols + columns).reshape(-1)
        picked = jnp.take(scores.reshape(-1), flat).reshape(b, -1)
        values, where = jax.lax.top_k(picked, k_sel)
        return values, jnp.take_along_axis(columns, where, axis=1)

    return top_k_block


CHUNK_WIDTH = 64
PAD_SCORE = -1e30  # what a padding column scores: below any cosine


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
        self_index = np.full(n_queries, -1, dtype=np.int64)
    self_index = np.asarray(self_index, dtype=np.int64)
    if normalise:
        queries, candidates = l2_normalise(queries), l2_normalise(candidates)

    indices = np.full((n_queries, k), -1, dtype=np.int64)
    scores = np.full((n_queries, k), -np.inf, dtype=np.float32)
    if n_queries == 0 or n_cand == 0 or k == 0:
        return indices, scores

    # Candidates padded to whole chunks. An extra coordinate (1 in every query, 0 in a real
    # candidate, PAD_SCORE in a padding row) sinks the padding below every real score without
    # a masking pass over the score matrix. The query's own row is dropped after selection:
    # one more than k is selected for that.
    width = min(CHUNK_WIDTH, n_cand)
    n_cols = -(-n_cand // width) * width
    cand = np.zeros((n_cols, candidates.shape[1] + 1), dtype=np.float32)
    cand[:n_cand, :-1] = candidates
    cand[n_cand:, -1] = PAD_SCORE
    k_sel = min(k + 1, n_cols)
    fn = _block_fn(k_sel, min(k_sel, n_cols // width), width)
    cand_dev = jax.device_put(jnp.asarray(cand))

    # every block has the same shape (the last one padded) so the step compiles once
    block = max(1, min(block_size, n_queries))
    pending = []
    for start in range(0, n_queries, block):
        stop = min(start + block, n_queries)
        q = np.ones((block, queries.shape[1] + 1), dtype=np.float32)
        q[: stop - start, :-1] = queries[start:stop]
        q[stop - start :, :-1] = 0.0
        # dispatch is asynchronous: the next block is queued while this one computes
        pending.append((start, stop, fn(q, cand_dev)))
        if len(pending) > 2:
            _collect(pending.pop(0), self_index, n_cand, indices, scores)
    for item in pending:
        _collect(item, self_index, n_cand, indices, scores)
    return indices, scores


def _collect(item, self_index: np.ndarray, n_cand: int, indices: np.ndarray, scores: np.ndarray) -> None:
    """Drop each query's own row and padding columns, keep the first k survivors in order."""
    start, stop, (vals, idx) = item
    n = stop - start
    vals = np.asarray(vals)[:n]
    idx = np.asarray(idx)[:n].astype(np.int64)
    drop = (idx == self_index[start:stop, None]) | (idx >= n_cand)
    order = np.argsort(drop, axis=1, kind="stable")  # survivors first, their order kept
    vals = np.take_along_axis(vals, order, axis=1)
    idx = np.take_along_axis(idx, order, axis=1)
    drop = np.take_along_axis(drop, order, axis=1)
    k = min(indices.shape[1], idx.shape[1])
    indices[start:stop, :k] = np.where(drop[:, :k], -1, idx[:, :k])
    scores[start:stop, :k] = np.where(drop[:, :k], -np.inf, vals[:, :k])


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
