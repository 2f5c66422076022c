"""Validation's ranking metrics on the device, in bounded memory: item-to-item nDCG@K / HR@K and
user-to-item Recall@20 / nDCG@10 over one item set (the validation cold items).

**Item-to-item** (the pinned selection metric). Queries and candidates are the same N items. For
each query q and each user u who liked q, R = u's other liked items among the candidates; the
list is q's top-K by score with q itself excluded; binary gain, log2 discount, ideal over
min(|R|, K); pairs with an empty R are not scored; averaged per (q, u), then over the queries
with a scored pair. This is :func:`cinefuse.metrics.metrics.accuracy_metrics` restricted to nDCG
and HR. Score = cosine(q, c) + ``weight`` * ``prior``(c).

**User-to-item** (issue 20). ``histories`` (U, H) and ``relevant`` (U, N) are the users' liked
history items and liked candidates; score of candidate c for user u = unit(e_c) . mean over u's
history of unit(e_h) (the mean of the cosines) + ``weight`` * ``prior``(c); Recall@20 =
hits in the top 20 / |relevant|, nDCG@10 binary with the ideal over min(|relevant|, 10);
averaged over the users (every row of ``relevant`` holds a like and every row of ``histories``
one; the caller keeps only those).

Ties are broken by a seeded pseudo-random order of the candidates, never by position: the
candidates are permuted by ``cinefuse.metrics.ties.device_tie_order(key)`` (validation's key:
``ties.validation_tie_key(seed)``), ``lax.top_k`` (which keeps the lower index among equal values)
runs in the permuted order, and its picks are mapped back.

Memory stays bounded as the catalogue grows: no N x N score matrix and no dense users x N like
matrix. Queries (users) are scored a block at a time against every candidate (the block sized so
a block holds at most ``SCORE_BUDGET`` scores) keeping only each row's top K. Item-to-item's
per-query sums over users: up to ``DENSE_LIKES`` (user, item) cells (ml-latest-small's
validation: 0.9M) the likes are a dense (U, N) matrix and each block of 128 queries sums a
(U, 128) array, as validation always did (the values bit for bit those of the dense version);
above it, or with sampled queries, the likes are a CSR matrix (:class:`Likes`: each user's liked
items, sorted), a list slot is a hit when a binary search finds it in the user's row, and the
(q, u) pairs are scored in chunks of ``PAIR_CHUNK`` (the same values up to float32 summation
order). ``queries`` (``users``) restricts the scored queries (users) to a
sample (the candidates stay all N): ``sample_rows`` draws one, seeded, when there are more than
``MAX_QUERIES``. ``likes`` may be a dense (U, N) bool array or a scipy sparse matrix; only users
with two or more likes among the items can ever be scored in item-to-item.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from cinefuse.metrics.ties import device_tie_order

SCORE_BUDGET = 1 << 24      # scores held per block of queries (64 MB of float32)
PAIR_CHUNK = 1 << 14        # (query, user) pairs scored per step
MAX_QUERIES = 16384         # above: validation scores a seeded sample of the queries (users)
DENSE_LIKES = 1 << 27       # up to this many (user, item) cells the likes are a dense matrix
U2I_K = (20, 10)            # Recall@20, nDCG@10


@dataclass(frozen=True)
class Likes:
    """A (U, N) bool like matrix as CSR on the host: ``indptr`` (U + 1,), ``indices`` (P,) sorted
    within each row."""

    indptr: np.ndarray
    indices: np.ndarray
    n_items: int

    @classmethod
    def of(cls, likes) -> Likes:
        if isinstance(likes, Likes):
            return likes
        import scipy.sparse as sp

        m = sp.csr_matrix(likes.astype(bool) if isinstance(likes, np.ndarray) else likes)
        m.eliminate_zeros()
        m.sort_indices()
        return cls(m.indptr.astype(np.int32), m.indices.astype(np.int32), int(m.shape[1]))

    @property
    def n_users(self) -> int:
        return len(self.indptr) - 1

    @property
    def counts(self) -> np.ndarray:
        return np.diff(self.indptr).astype(np.int32)

    def rows_of_pairs(self) -> np.ndarray:
        """(P,) the user of each stored like."""
        return np.repeat(np.arange(self.n_users, dtype=np.int32), self.counts)

    def steps(self) -> int:
        """Binary search steps that find any item in the longest row."""
        return max(1, int(self.counts.max(initial=0)).bit_length() + 1)


def sample_rows(n: int, seed: int, limit: int = MAX_QUERIES) -> np.ndarray | None:
    """A seeded sorted sample of ``limit`` of ``n`` rows, or None (all of them) when ``n <= limit``."""
    if n <= limit:
        return None
    return np.sort(np.random.default_rng(seed).choice(n, limit, replace=False)).astype(np.int32)


def _unit(x):
    return x * jax.lax.rsqrt(jnp.maximum(jnp.sum(x * x, axis=-1, keepdims=True), 1e-12))


def _block_size(n_candidates: int, n_rows: int) -> int:
    return int(max(1, min(n_rows, SCORE_BUDGET // max(n_candidates, 1))))


def _blocks(rows: np.ndarray, block: int) -> np.ndarray:
    n_blocks = -(-len(rows) // block)
    return np.pad(rows, (0, n_blocks * block - len(rows)), constant_values=-1).reshape(n_blocks, block)


@partial(jax.jit, static_argnames=("k",))
def _ranked(scores, perm, k: int):
    """(rows, k) top-k candidates of each score row in the tie order ``perm``; -1 past the finite."""
    values, where = jax.lax.top_k(scores[:, perm], min(k, scores.shape[1]))
    lists = jnp.where(jnp.isfinite(values), perm[where], -1)
    return jnp.pad(lists, ((0, 0), (0, k - lists.shape[1])), constant_values=-1)


@partial(jax.jit, static_argnames=("k",))
def _i2i_lists(e, blocks, perm, prior, weight, k: int):
    n = e.shape[0]

    def one(q):
        s = e[jnp.maximum(q, 0)] @ e.T
        if prior is not None:
            s = s + weight * prior[None, :]
        s = jnp.where(jnp.arange(n)[None, :] == q[:, None], -jnp.inf, s)
        return _ranked(s, perm, k)

    return jax.lax.map(one, blocks).reshape(-1, k)


def top_k_lists(emb, k: int, key, prior=None, weight=0.0, queries=None, block: int | None = None):
    """(Q, k) candidate rows of each query's list, best first, query excluded, seeded ties; slots
    past the N - 1 other items hold -1 (as the host ranking's lists do). ``queries``: the query
    rows (default all N, in order)."""
    emb = jnp.asarray(emb)
    n = emb.shape[0]
    queries = np.arange(n, dtype=np.int32) if queries is None else np.asarray(queries, np.int32)
    block = block or _block_size(n, len(queries))
    prior = None if prior is None else jnp.asarray(prior)
    lists = _i2i_lists(_unit(emb), jnp.asarray(_blocks(queries, block)), device_tie_order(key, n), prior,
                       jnp.float32(weight), k)
    return lists[:len(queries)]


def _member(indptr, indices, users, items, steps: int):
    """Whether each ``items[..., j]`` is among row ``users[...]``'s sorted liked items (binary search)."""
    lo = jnp.broadcast_to(indptr[users][..., None], items.shape)
    end = jnp.broadcast_to(indptr[users + 1][..., None], items.shape)
    hi = end

    def step(_, bounds):
        lo, hi = bounds
        mid = (lo + hi) // 2
        right = indices[jnp.clip(mid, 0, indices.shape[0] - 1)] < items
        open_ = lo < hi
        return jnp.where(open_ & right, mid + 1, lo), jnp.where(open_ & ~right, mid, hi)

    lo, _ = jax.lax.fori_loop(0, steps, step, (lo, hi))
    return (lo < end) & (indices[jnp.clip(lo, 0, indices.shape[0] - 1)] == items) & (items >= 0)


@partial(jax.jit, static_argnames=("k", "steps", "n_queries"))
def _i2i_pairs(lists, indptr, indices, pair_user, pair_query, k: int, steps: int, n_queries: int):
    disc = 1.0 / jnp.log2(jnp.arange(2, k + 2, dtype=jnp.float32))
    ideal_of = jnp.cumsum(disc)
    n_rel = (indptr[1:] - indptr[:-1]) - 1                          # q is a candidate u liked

    def chunk(acc, x):
        users, q = x
        ok = (q >= 0) & (n_rel[jnp.maximum(users, 0)] > 0)
        users, qc = jnp.maximum(users, 0), jnp.maximum(q, 0)
        rows = lists[qc]                                            # (C, K)
        hits = _member(indptr, indices, users, rows, steps)
        ideal = ideal_of[jnp.clip(jnp.minimum(n_rel[users], k) - 1, 0, k - 1)]
        ndcg = jnp.sum(hits * disc, axis=-1) / ideal
        pair = ok.astype(jnp.float32)
        s_ndcg, s_hr, count = acc
        return (s_ndcg.at[qc].add(ndcg * pair), s_hr.at[qc].add(jnp.any(hits, axis=-1) * pair),
                count.at[qc].add(pair)), None

    zeros = jnp.zeros(n_queries, jnp.float32)
    (s_ndcg, s_hr, count), _ = jax.lax.scan(chunk, (zeros, zeros, zeros), (pair_user, pair_query))
    scored = count > 0
    count = jnp.maximum(count, 1.0)
    return jnp.where(scored, s_ndcg / count, 0.0), jnp.where(scored, s_hr / count, 0.0), scored


@partial(jax.jit, static_argnames=("k", "block"))
def _i2i_dense(lists, likes, k: int, block: int):
    """The per-query sums over a dense (U, N) like matrix, 128 queries a block."""
    n = lists.shape[0]
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


def _chunks(*arrays, size: int = PAIR_CHUNK):
    n = len(arrays[0])
    size = max(1, min(size, n))
    n_chunks = max(1, -(-n // size))
    return [np.pad(a, (0, n_chunks * size - n), constant_values=-1).reshape(n_chunks, size) for a in arrays]


def per_query_ndcg_hr(emb, likes, key, k: int = 10, prior=None, weight=0.0, block: int | None = None,
                      queries=None):
    """Per-query nDCG@k and HR@k (Q,) each (0 where not scored) and the (Q,) mask of scored
    queries, for embeddings (N, d) and likes (U, N) (dense, sparse or :class:`Likes`);
    ``queries``: the scored query rows (default all N). The input of bootstrap intervals."""
    n = int(np.shape(emb)[0])
    sampled = queries is not None
    queries = np.arange(n, dtype=np.int32) if queries is None else np.asarray(queries, np.int32)
    lists = top_k_lists(emb, k, key, prior, weight, queries, block)
    if not sampled and isinstance(likes, (np.ndarray, jax.Array)) and likes.size <= DENSE_LIKES:
        return _i2i_dense(lists, jnp.asarray(likes).astype(bool), k, 128)
    likes = Likes.of(likes)
    position = np.full(n, -1, np.int32)
    position[queries] = np.arange(len(queries), dtype=np.int32)
    pair_user, pair_query = likes.rows_of_pairs(), position[likes.indices]
    keep = pair_query >= 0
    pair_user, pair_query = _chunks(pair_user[keep], pair_query[keep])
    return _i2i_pairs(lists, jnp.asarray(likes.indptr), jnp.asarray(likes.indices), jnp.asarray(pair_user),
                      jnp.asarray(pair_query), k, likes.steps(), len(queries))


def ndcg_hr_at_k(emb, likes, key, k: int = 10, prior=None, weight=0.0, block: int | None = None, queries=None):
    """{"nDCG", "HR", "queries_scored"}: the per-query values averaged over scored queries."""
    ndcg, hr, scored = per_query_ndcg_hr(emb, likes, key, k, prior, weight, block, queries)
    denom = jnp.maximum(jnp.sum(scored), 1)
    return {"nDCG": jnp.sum(ndcg) / denom, "HR": jnp.sum(hr) / denom, "queries_scored": jnp.sum(scored)}


@partial(jax.jit, static_argnames=("steps",))
def _u2i_blocks(c, user_vec, blocks, perm, prior, weight, rel_indptr, rel_indices, steps: int):
    k_recall, k_ndcg = U2I_K
    disc = 1.0 / jnp.log2(jnp.arange(2, k_ndcg + 2, dtype=jnp.float32))
    ideal_of = jnp.cumsum(disc)

    def one(users):
        uc = jnp.maximum(users, 0)
        s = user_vec[uc] @ c.T
        if prior is not None:
            s = s + weight * prior[None, :]
        lists = _ranked(s, perm, k_recall)
        hits = _member(rel_indptr, rel_indices, uc, lists, steps)
        n_rel = rel_indptr[uc + 1] - rel_indptr[uc]
        recall = jnp.sum(hits, axis=-1) / jnp.maximum(n_rel, 1)
        ideal = ideal_of[jnp.clip(jnp.minimum(n_rel, k_ndcg) - 1, 0, k_ndcg - 1)]
        ndcg = jnp.sum(hits[:, :k_ndcg] * disc, axis=-1) / ideal
        ok = (users >= 0) & (n_rel > 0)
        return jnp.where(ok, recall, 0.0), jnp.where(ok, ndcg, 0.0), ok

    recall, ndcg, ok = jax.lax.map(one, blocks)
    return recall.reshape(-1), ndcg.reshape(-1), ok.reshape(-1)


def user_vectors(hist_emb, histories) -> np.ndarray:
    """(U, d): each user's mean of the unit history embeddings (``histories``: (U, H) likes), on
    the host as a sparse product (no (likes, d) gather)."""
    import scipy.sparse as sp

    h = Likes.of(histories)
    x = np.asarray(hist_emb, np.float32)
    unit = x / np.sqrt(np.maximum(np.sum(x * x, axis=-1, keepdims=True), 1e-12))
    m = sp.csr_matrix((np.ones(len(h.indices), np.float32), h.indices, h.indptr), shape=(h.n_users, len(x)))
    return np.asarray(m @ unit, np.float32) / np.maximum(h.counts, 1)[:, None].astype(np.float32)


def per_user_u2i(emb, hist_emb, histories, relevant, key, prior=None, weight=0.0, users=None,
                 block: int | None = None):
    """Per-user Recall@20 and nDCG@10 (U',) and the mask of scored users (those with a relevant
    candidate), for candidates ``emb`` (N, d), history items ``hist_emb`` (H, d), ``histories``
    (U, H) and ``relevant`` (U, N) likes; ``users``: the scored user rows (default all U)."""
    rel = Likes.of(relevant)
    emb = jnp.asarray(emb)
    n = emb.shape[0]
    users = np.arange(rel.n_users, dtype=np.int32) if users is None else np.asarray(users, np.int32)
    block = block or _block_size(n, len(users))
    prior = None if prior is None else jnp.asarray(prior)
    recall, ndcg, ok = _u2i_blocks(_unit(emb), jnp.asarray(user_vectors(hist_emb, histories)),
                                   jnp.asarray(_blocks(users, block)),
                                   device_tie_order(key, n), prior, jnp.float32(weight), jnp.asarray(rel.indptr),
                                   jnp.asarray(rel.indices), rel.steps())
    return recall[:len(users)], ndcg[:len(users)], ok[:len(users)]


def u2i_at_k(emb, hist_emb, histories, relevant, key, prior=None, weight=0.0, users=None,
             block: int | None = None) -> dict:
    """{"recall20", "ndcg10", "users_scored"}: the per-user values averaged over scored users."""
    recall, ndcg, ok = per_user_u2i(emb, hist_emb, histories, relevant, key, prior, weight, users, block)
    denom = jnp.maximum(jnp.sum(ok), 1)
    return {"recall20": jnp.sum(recall) / denom, "ndcg10": jnp.sum(ndcg) / denom, "users_scored": jnp.sum(ok)}
