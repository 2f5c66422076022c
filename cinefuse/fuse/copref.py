"""Co-preference objectives on the device: batch samplers and losses, fixed shapes, pure functions
(the math of :mod:`cinefuse.fuse.objectives`, which says which objective uses which).

Every function here is usable under ``jax.jit`` and ``jax.vmap``: shapes depend only on static
sizes (batch, slice, partners), never on data; masks and weights carry what varies. The targets
they read come from :mod:`cinefuse.fuse.targets` (training ratings only). Embeddings passed to
the losses are the model's L2-normalised outputs unless said otherwise. See docs/OBJECTIVES.md.

Samplers (``key`` a ``jax.random`` key):
- :func:`sample_co_like`: B anchors uniform over the items with partners, one partner each drawn
  in proportion to the association weight.
- :func:`sample_history`: B users uniform over ``user_pool``; the item slice is ``per_user`` of
  each user's liked items (a random subset without replacement) plus ``n_random`` uniform
  training items, S = B * per_user + n_random slots. Repeated items keep their first slot (the
  others are masked), so no item can score itself through a duplicate. ``likes`` (B, S) is 1
  where the user liked the slot's item, from the user's whole history, not only the sampled part.

Losses:
- :func:`multi_positive_info_nce`: logits a_i . p_j / t over the B x B batch; the positives of
  row i are every j with (a_i, p_j) co-like partners in either direction (the diagonal always),
  pairs where p_j is a_i's own item are left out of numerator and denominator. Loss per row:
  -mean over positives of log softmax (SupCon's L_out), the same per column, the two averaged.
- :func:`history_loss`: scores = X A A^T - X * diag(A A^T) (each item's own term removed) over
  the slice; ``nmse`` (default, ELSA): || x / |x| - s / |s| ||^2 per user over valid slots, which
  needs no temperature since both sides are normalised; ``softmax``: -sum_s x_s log softmax(s /
  t)_s / sum_s x_s (the multinomial likelihood of Mult-VAE). Mean over users with a like.
- :func:`distill_info_nce`: symmetric InfoNCE between the content embedding mapped by a learnt
  (k, d) kernel and the teacher's item vector (both normalised), positives on the diagonal,
  repeated items masked (CLCRec-style alignment).
- :func:`similarity_kl`: mean over rows of KL(softmax(teacher_i / t_t) || softmax(content_i /
  t)) over the batch's other items; teacher logits rows come from :func:`teacher_logits`.
- :func:`prior_loss`: MSE of a scalar head against standardised log like counts;
  :func:`prior_scores`: the scoring rule cosine + w * prior(candidate).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from cinefuse.choices import HISTORY_LOSSES
from cinefuse.fuse.losses import unit

NEG = -1e9  # a logit that softmax treats as absent without producing NaN


# -- samplers -----------------------------------------------------------------------------------
def sample_co_like(key, anchor_pool, partner_idx, partner_weight, partner_mask, batch: int):
    """(anchors (B,), partners (B,)) int32 item rows."""
    anchor_pool, partner_idx, partner_weight, partner_mask = map(
        jnp.asarray, (anchor_pool, partner_idx, partner_weight, partner_mask))
    k_anchor, k_partner = jax.random.split(key)
    anchors = anchor_pool[jax.random.randint(k_anchor, (batch,), 0, anchor_pool.shape[0])]
    logw = jnp.where(partner_mask[anchors], jnp.log(jnp.maximum(partner_weight[anchors], 1e-30)), -jnp.inf)
    slot = jax.random.categorical(k_partner, logw, axis=-1)
    return anchors, jnp.take_along_axis(partner_idx[anchors], slot[:, None], axis=1)[:, 0]


def co_like_masks(anchors, partners, partner_idx, partner_mask):
    """(positive, exclude) (B, B) bool for the anchor x partner logits."""
    anchors, partners, partner_idx, partner_mask = map(jnp.asarray, (anchors, partners, partner_idx, partner_mask))
    a_lists = jnp.where(partner_mask[anchors], partner_idx[anchors], -1)      # (B, N)
    p_lists = jnp.where(partner_mask[partners], partner_idx[partners], -1)    # (B, N)
    forward = jnp.any(a_lists[:, None, :] == partners[None, :, None], axis=-1)   # p_j in top(a_i)
    backward = jnp.any(p_lists[None, :, :] == anchors[:, None, None], axis=-1)  # a_i in top(p_j)
    eye = jnp.eye(anchors.shape[0], dtype=bool)
    exclude = (anchors[:, None] == partners[None, :]) & ~eye
    positive = (forward | backward | eye) & ~exclude
    return positive, exclude


def sample_history(key, user_pool, hist_items, hist_len, n_items: int, batch: int, per_user: int, n_random: int):
    """A user x item slice: dict of ``users`` (B,), ``items`` (S,), ``item_mask`` (S,) and
    ``likes`` (B, S) float32. ``hist_items`` (U, H) ascending, padded with ``n_items``."""
    user_pool, hist_items, hist_len = map(jnp.asarray, (user_pool, hist_items, hist_len))
    k_user, k_pick, k_rand = jax.random.split(key, 3)
    users = user_pool[jax.random.randint(k_user, (batch,), 0, user_pool.shape[0])]
    hist = hist_items[users]                                                  # (B, H)
    length = hist_len[users]
    width = hist.shape[1]
    # a random subset of each history: the per_user largest uniform keys among the valid slots
    keys = jax.random.uniform(k_pick, hist.shape)
    keys = jnp.where(jnp.arange(width)[None, :] < length[:, None], keys, -1.0)
    top_keys, pos = jax.lax.top_k(keys, min(per_user, width))
    picked = jnp.where(top_keys >= 0, jnp.take_along_axis(hist, pos, axis=1), n_items)
    if per_user > width:
        picked = jnp.pad(picked, ((0, 0), (0, per_user - width)), constant_values=n_items)
    extra = jax.random.randint(k_rand, (n_random,), 0, n_items)
    items = jnp.concatenate([picked.reshape(-1), extra]).astype(jnp.int32)
    # first occurrence of each item keeps its slot; padding (n_items) is never valid
    order = jnp.argsort(items, stable=True)
    sorted_items = items[order]
    first_sorted = jnp.concatenate([jnp.ones(1, bool), sorted_items[1:] != sorted_items[:-1]])
    first = jnp.zeros_like(first_sorted).at[order].set(first_sorted)
    item_mask = first & (items < n_items)
    items = jnp.where(item_mask, items, 0)
    where = jax.vmap(lambda h: jnp.searchsorted(h, items))(hist)              # (B, S)
    found = jnp.take_along_axis(hist, jnp.minimum(where, width - 1), axis=1) == items[None, :]
    likes = (found & item_mask[None, :]).astype(jnp.float32)
    return {"users": users, "items": items, "item_mask": item_mask, "likes": likes}


def sample_items(key, pool, batch: int):
    """B item rows uniform over ``pool`` (distill and prior batches)."""
    pool = jnp.asarray(pool)
    return pool[jax.random.randint(key, (batch,), 0, pool.shape[0])]


# -- losses -------------------------------------------------------------------------------------
def soft_target_cross_entropy(logits, positive, exclude):
    """Mean over rows of -sum_j t_ij log softmax(logits_i)_j, t uniform over the positives."""
    logits = jnp.where(exclude, NEG, logits)
    log_p = jax.nn.log_softmax(logits, axis=-1)
    t = positive.astype(logits.dtype)
    t = t / jnp.maximum(jnp.sum(t, axis=-1, keepdims=True), 1.0)
    return -jnp.mean(jnp.sum(t * log_p, axis=-1))


def multi_positive_info_nce(a_emb, p_emb, positive, exclude, temperature):
    """Symmetric multi-positive InfoNCE of anchor x partner embeddings (B, d) each."""
    logits = (unit(a_emb) @ unit(p_emb).T) / temperature
    rows = soft_target_cross_entropy(logits, positive, exclude)
    cols = soft_target_cross_entropy(logits.T, positive.T, exclude.T)
    return 0.5 * (rows + cols)


def history_scores(likes, item_emb, item_mask):
    """X A A^T with each item's own term removed, (B, S); masked slots contribute nothing."""
    a = unit(item_emb) * item_mask[:, None].astype(item_emb.dtype)
    x = likes * item_mask[None, :].astype(likes.dtype)
    return (x @ a) @ a.T - x * jnp.sum(a * a, axis=-1)[None, :]


def history_loss(likes, item_emb, item_mask, kind: str = "nmse", temperature: float = 1.0):
    """The history reconstruction loss of a slice (see the module docstring)."""
    m = item_mask[None, :].astype(likes.dtype)
    x = likes * m
    s = history_scores(likes, item_emb, item_mask) * m
    has = (jnp.sum(x, axis=-1) > 0).astype(likes.dtype)
    if kind == "nmse":
        per_user = jnp.sum((unit(x) - unit(s)) ** 2, axis=-1)
    elif kind == "softmax":
        log_p = jax.nn.log_softmax(jnp.where(m > 0, s / temperature, NEG), axis=-1)
        per_user = -jnp.sum(x * log_p, axis=-1) / jnp.maximum(jnp.sum(x, axis=-1), 1.0)
    else:
        raise ValueError(f"history loss {kind!r} is unknown; use one of {', '.join(HISTORY_LOSSES)}")
    return jnp.sum(per_user * has) / jnp.maximum(jnp.sum(has), 1.0)


def same_item_exclude(items):
    """(B, B) True where two different batch slots hold the same item."""
    items = jnp.asarray(items)
    return (items[:, None] == items[None, :]) & ~jnp.eye(items.shape[0], dtype=bool)


def distill_info_nce(content_emb, kernel, teacher_vec, items, temperature):
    """Symmetric InfoNCE of content embeddings (B, d) mapped by ``kernel`` (k, d) against the
    teacher vectors (B, k) of the same items ``items`` (B,)."""
    mapped = content_emb @ kernel.T
    logits = (unit(mapped) @ unit(teacher_vec).T) / temperature
    eye = jnp.eye(items.shape[0], dtype=bool)
    exclude = same_item_exclude(items)
    return 0.5 * (soft_target_cross_entropy(logits, eye, exclude)
                  + soft_target_cross_entropy(logits.T, eye, exclude.T))


def teacher_logits(sim_rows, items, temperature):
    """Teacher logits over the batch: ``sim_rows`` (I, I) (EASE's B, or any item similarity),
    rows standardised over the batch's other items (EASE weights have no fixed scale), / t."""
    sim_rows, items = jnp.asarray(sim_rows), jnp.asarray(items)
    s = sim_rows[items][:, items]
    valid = ~(same_item_exclude(items) | jnp.eye(items.shape[0], dtype=bool))
    n = jnp.maximum(jnp.sum(valid, axis=-1, keepdims=True), 1)
    mean = jnp.sum(jnp.where(valid, s, 0.0), axis=-1, keepdims=True) / n
    var = jnp.sum(jnp.where(valid, (s - mean) ** 2, 0.0), axis=-1, keepdims=True) / n
    return (s - mean) * jax.lax.rsqrt(jnp.maximum(var, 1e-12)) / temperature


def similarity_kl(content_emb, teacher_logit, items, temperature):
    """Mean over rows of KL(softmax(teacher) || softmax(content cosine / t)) over the batch's
    other items (self and repeated items left out)."""
    e = unit(content_emb)
    logits = (e @ e.T) / temperature
    drop = same_item_exclude(items) | jnp.eye(items.shape[0], dtype=bool)
    log_q = jax.nn.log_softmax(jnp.where(drop, NEG, logits), axis=-1)
    log_p = jax.nn.log_softmax(jnp.where(drop, NEG, teacher_logit), axis=-1)
    p = jnp.where(drop, 0.0, jnp.exp(log_p))
    return jnp.mean(jnp.sum(p * (jnp.where(drop, 0.0, log_p) - jnp.where(drop, 0.0, log_q)), axis=-1))


def prior_loss(predicted, target):
    """MSE of the prior head (B,) against standardised log like counts (B,)."""
    return jnp.mean((predicted - target) ** 2)


def prior_scores(query_emb, candidate_emb, candidate_prior, weight):
    """cosine(query, candidate) + weight * prior(candidate): (Q, C)."""
    return unit(query_emb) @ unit(candidate_emb).T + weight * candidate_prior[None, :]
