"""The pinned nDCG@K and HR@K over one item set, on the device (validation during training).

Queries and candidates are the same N items (the validation cold items). For each query q and
each user u who liked q, R = u's other liked items among the candidates; the list is q's top-K
by score with q itself excluded; binary gain, log2 discount, ideal over min(|R|, K); pairs with
an empty R are not scored; averaged per (q, u), then over the queries with a scored pair. This
is :func:`cinefuse.metrics.metrics.accuracy_metrics` restricted to nDCG and HR.

Score = cosine(q, c) + ``weight`` * ``prior``(c). Ties are broken by a seeded pseudo-random order
of the candidates, never by position: the candidates are permuted by ``cinefuse.metrics.ties.
device_tie_order(key)`` (validation's key: ``ties.validation_tie_key(seed)``), ``lax.top_k``
(which keeps the lower index among equal values) runs in the permuted order, and its picks are
mapped back. ``likes`` is the dense (U, N) like
matrix of the N items (``LikeMatrix.X.toarray()``; only users with two or more likes among them
can ever be scored, so the caller may drop the others). Queries run ``block`` at a time under
``lax.map`` so the (U, block, K) hit tensor bounds memory.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp

from cinefuse.metrics.ties import device_tie_order


def top_k_lists(emb, k: int, key, prior=None, weight=0.0):
    """(N, k) candidate rows of every query's list, best first, query excluded, seeded ties;
    slots past the N - 1 other items hold -1 (as the host ranking's lists do)."""
    e = emb * jax.lax.rsqrt(jnp.maximum(jnp.sum(emb * emb, axis=-1, keepdims=True), 1e-12))
    n = e.shape[0]
    scores = e @ e.T
    if prior is not None:
        scores = scores + weight * prior[None, :]
    scores = jnp.where(jnp.eye(n, dtype=bool), -jnp.inf, scores)
    perm = device_tie_order(key, n)
    values, where = jax.lax.top_k(scores[:, perm], min(k, n))
    lists = jnp.where(jnp.isfinite(values), perm[where], -1)       # the query's own -inf slot is no candidate
    return jnp.pad(lists, ((0, 0), (0, k - lists.shape[1])), constant_values=-1)


@partial(jax.jit, static_argnames=("k", "block"))
def per_query_ndcg_hr(emb, likes, key, k: int = 10, prior=None, weight=0.0, block: int = 128):
    """Per-query nDCG@k and HR@k (N,) each (0 where not scored) and the (N,) mask of scored
    queries, for embeddings (N, d) and likes (U, N); the input of bootstrap intervals."""
    n = emb.shape[0]
    lists = top_k_lists(emb, k, key, prior, weight)                 # (N, K)
    likes = likes.astype(bool)
    n_rel = jnp.sum(likes, axis=1)[:, None] - 1                     # (U, 1): q is a candidate u liked
    disc = 1.0 / jnp.log2(jnp.arange(2, k + 2, dtype=jnp.float32))
    ideal = jnp.cumsum(disc)[jnp.clip(jnp.minimum(n_rel, k) - 1, 0, k - 1)]
    n_blocks = -(-n // block)
    queries = jnp.pad(jnp.arange(n), (0, n_blocks * block - n), constant_values=-1).reshape(n_blocks, block)

    def per_block(q):
        qc = jnp.maximum(q, 0)
        rows = lists[qc]
        hits = likes[:, jnp.maximum(rows, 0)] & (rows >= 0)[None]     # (U, b, K); -1 slots never hit
        pair = (likes[:, qc] & (q >= 0)[None, :] & (n_rel > 0)).astype(jnp.float32)  # u liked q, R not empty
        ndcg = jnp.sum(hits * disc, axis=-1) / ideal
        return jnp.sum(ndcg * pair, axis=0), jnp.sum(jnp.any(hits, axis=-1) * pair, axis=0), jnp.sum(pair, axis=0)

    s_ndcg, s_hr, count = (x.reshape(-1)[:n] for x in jax.lax.map(per_block, queries))
    scored = count > 0
    count = jnp.maximum(count, 1.0)
    return jnp.where(scored, s_ndcg / count, 0.0), jnp.where(scored, s_hr / count, 0.0), scored


@partial(jax.jit, static_argnames=("k", "block"))
def ndcg_hr_at_k(emb, likes, key, k: int = 10, prior=None, weight=0.0, block: int = 128):
    """{"nDCG", "HR", "queries_scored"}: the per-query values averaged over scored queries."""
    ndcg, hr, scored = per_query_ndcg_hr(emb, likes, key, k, prior, weight, block)
    denom = jnp.maximum(jnp.sum(scored), 1)
    return {"nDCG": jnp.sum(ndcg) / denom, "HR": jnp.sum(hr) / denom, "queries_scored": jnp.sum(scored)}
