"""Distances, in-batch negative mining and the losses, all with fixed shapes under ``jax.jit``.

Distances (``kind``):
- ``cosine``: d = 1 - cos(u, v), in [0, 2].
- ``euclidean``: d = ||u - v||. The model's output embedding is L2-normalised, so by default this
  is the euclidean distance between unit vectors (in [0, 2], d^2 = 2 * cosine distance). With
  ``loss.euclidean_normalized = false`` it is taken on the *unnormalised* projection instead (the
  layer before the L2 normalisation), as in a plain Siamese network.

Losses:
- **pair** (contrastive, Hadsell et al. 2006): mean over pairs of
  y * d^2 + (1 - y) * max(0, margin - d)^2.
- **triplet**: mean over anchors of max(0, d(a, p) - d(a, n) + margin), the negative n chosen by
  the miner from the batch's candidates (every anchor, positive and negative in the batch) that are
  valid negatives for the anchor (genre Jaccard <= the negative threshold, not the anchor or its
  positive item).
- **infonce**: symmetric InfoNCE over the batch's (anchor, positive) pairs with cosine logits
  divided by ``temperature``; other pairs' positives are the negatives, duplicates of the true
  positive item are masked out.

Miners (for triplet):
- ``semi-hard`` (FaceNet, Schroff et al. 2015): the candidates with d(a, p) < d(a, n) < d(a, p) +
  margin; the hardest of them (smallest d(a, n)). When an anchor has none, the hardest valid
  negative overall (smallest d(a, n)); ties go to the lowest candidate index. An anchor with no
  valid candidate at all (cannot happen with stored negatives of Jaccard <= the threshold, but a
  miner must not invent one) keeps its own stored negative.
- ``batch-hard`` (Hermans et al. 2017): the hardest valid negative (smallest d(a, n)); the positive
  is the anchor's own (the pairs give exactly one known positive per anchor).
- ``none``: the triplet's own stored negative.
Masks and ``argmin`` over fixed (B, 3B) matrices: no data-dependent shapes.

The pieces are named as pytorch-metric-learning separates them: a **distance**
(``paired_distance`` / ``pairwise_distance``), a **miner** (``candidate_mask`` says which batch
items may be an anchor's negative, ``mine`` picks one), the per-element **loss** terms
(``contrastive_terms``, ``triplet_terms``, ``info_nce_terms``) and a **reducer** that makes them
one number (``mean_reducer``: the mean over the batch, pml's ``MeanReducer``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from cinefuse.choices import DEFAULT_MARGINS, DISTANCES, LOSSES, MINERS  # noqa: F401 (re-exported)

EPS = 1e-12


# -- distances ----------------------------------------------------------------------------------
def unit(x):
    """Rows scaled to unit length (the one definition the losses and the objectives use)."""
    return x * jax.lax.rsqrt(jnp.maximum(jnp.sum(x * x, axis=-1, keepdims=True), EPS))


def paired_distance(x, y, kind: str):
    """(B,) distances between rows of x and y."""
    if kind == "cosine":
        return 1.0 - jnp.sum(unit(x) * unit(y), axis=-1)
    return jnp.sqrt(jnp.maximum(jnp.sum((x - y) ** 2, axis=-1), EPS))


def pairwise_distance(x, y, kind: str):
    """(B, M) distances between every row of x and every row of y."""
    if kind == "cosine":
        return 1.0 - unit(x) @ unit(y).T
    sq = jnp.sum(x * x, -1)[:, None] + jnp.sum(y * y, -1)[None, :] - 2.0 * (x @ y.T)
    return jnp.sqrt(jnp.maximum(sq, EPS))


# -- reducer and loss terms -----------------------------------------------------------------------
def mean_reducer(terms):
    """One number from per-element loss terms: their mean (pml's ``MeanReducer``)."""
    return jnp.mean(terms)


def contrastive_terms(d, labels, margin):
    """Per pair: y * d^2 + (1 - y) * max(0, margin - d)^2."""
    y = labels.astype(d.dtype)
    return y * d**2 + (1.0 - y) * jnp.maximum(margin - d, 0.0) ** 2


def contrastive_loss(d, labels, margin):
    return mean_reducer(contrastive_terms(d, labels, margin))


def triplet_terms(d_ap, d_an, margin):
    """Per anchor: max(0, d(a, p) - d(a, n) + margin)."""
    return jnp.maximum(d_ap - d_an + margin, 0.0)


def triplet_loss(d_ap, d_an, margin):
    return mean_reducer(triplet_terms(d_ap, d_an, margin))


def info_nce_terms(a, p, same_item, temperature):
    """(per row, per column) cross-entropy terms of the symmetric InfoNCE; ``same_item[i, j]``
    marks p_j as the same item as p_i (masked, i != j)."""
    logits = (unit(a) @ unit(p).T) / temperature
    b = a.shape[0]
    eye = jnp.eye(b, dtype=bool)
    logits = jnp.where(same_item & ~eye, -1e9, logits)
    diag = jnp.diagonal(logits)
    return jax.nn.logsumexp(logits, axis=1) - diag, jax.nn.logsumexp(logits, axis=0) - diag


def info_nce(a, p, same_item, temperature):
    """Symmetric InfoNCE; ``same_item[i, j]`` marks p_j as the same item as p_i (masked, i != j)."""
    row, col = info_nce_terms(a, p, same_item, temperature)
    return 0.5 * (mean_reducer(row) + mean_reducer(col))


# -- miner ----------------------------------------------------------------------------------------
def mine(d_ap, d_cand, valid, margin, miner: str):
    """Index of the chosen negative candidate per anchor: (B,) int32."""
    inf = jnp.asarray(jnp.inf, d_cand.dtype)
    hardest = jnp.argmin(jnp.where(valid, d_cand, inf), axis=1)
    if miner == "batch-hard":
        return hardest
    semi = valid & (d_cand > d_ap[:, None]) & (d_cand < d_ap[:, None] + margin)
    semi_idx = jnp.argmin(jnp.where(semi, d_cand, inf), axis=1)
    return jnp.where(jnp.any(semi, axis=1), semi_idx, hardest)


def genre_jaccard(words_a, words_b):
    """Pairwise genre Jaccard from packed uint32 genre bit words: (B, W) x (M, W) -> (B, M)."""
    inter = jnp.zeros((words_a.shape[0], words_b.shape[0]), jnp.float32)
    union = jnp.zeros_like(inter)
    for w in range(words_a.shape[1]):
        wa, wb = words_a[:, w][:, None], words_b[:, w][None, :]
        inter = inter + jax.lax.population_count(wa & wb).astype(jnp.float32)
        union = union + jax.lax.population_count(wa | wb).astype(jnp.float32)
    return jnp.where(union > 0, inter / jnp.maximum(union, 1.0), 0.0)


def candidate_mask(items, words, negative_max_jaccard):
    """Valid negatives for each anchor among the 3B batch items [anchors; positives; negatives].

    ``items`` (B, 3) int item rows of the batch triplets; ``words`` (B, 3, W) their genre words.
    """
    b = items.shape[0]
    cand_items = items.T.reshape(-1)                       # (3B,) anchors, then positives, negatives
    cand_words = jnp.swapaxes(words, 0, 1).reshape(3 * b, -1)
    jac = genre_jaccard(words[:, 0], cand_words)
    not_self = (cand_items[None, :] != items[:, 0:1]) & (cand_items[None, :] != items[:, 1:2])
    return (jac <= negative_max_jaccard) & not_self


# -- the configured loss --------------------------------------------------------------------------
def batch_loss(spec: dict, emb, raw, items, words, negative_max_jaccard: float):
    """The configured loss for a batch of triplets.

    ``emb``/``raw``: (B, 3, E) normalised / unnormalised embeddings of (anchor, positive, negative).
    ``spec``: ``loss`` (index into LOSSES), ``distance`` (index into DISTANCES), ``miner`` (index
    into MINERS), ``margin``, ``temperature``, ``euclidean_normalized`` (0/1). A python int picks
    its branch at trace time; a traced scalar (an ablation grid vmaps over configurations) selects
    at run time, every branch then computed.
    Returns (loss, aux) where aux holds the mean anchor-positive and anchor-negative distances.
    """
    b = emb.shape[0]
    static = lambda key: isinstance(spec[key], int)  # noqa: E731  (python ints: resolved at trace time)
    if static("euclidean_normalized"):
        euc_in = emb if spec["euclidean_normalized"] else raw
    else:
        euc_in = jnp.where(spec["euclidean_normalized"] > 0, emb, raw)
    same_item = items[:, 1][:, None] == items[:, 1][None, :]

    def pair_branch(x, kind):
        d_pos = paired_distance(x[:, 0], x[:, 1], kind)
        d_neg = paired_distance(x[:, 0], x[:, 2], kind)
        d = jnp.concatenate([d_pos, d_neg])
        labels = jnp.concatenate([jnp.ones(b), jnp.zeros(b)])
        return contrastive_loss(d, labels, spec["margin"]), d_pos, d_neg

    def triplet_branch(x, kind):
        d_ap = paired_distance(x[:, 0], x[:, 1], kind)
        own = 2 * b + jnp.arange(b)
        if static("miner") and MINERS[spec["miner"]] == "none":
            d_an = paired_distance(x[:, 0], x[:, 2], kind)
            return triplet_loss(d_ap, d_an, spec["margin"]), d_ap, d_an
        valid = candidate_mask(items, words, negative_max_jaccard)
        cands = jnp.swapaxes(x, 0, 1).reshape(3 * b, -1)
        d_cand = pairwise_distance(x[:, 0], cands, kind)
        if static("miner"):
            idx = mine(d_ap, d_cand, valid, spec["margin"], MINERS[spec["miner"]])
        else:
            semi = mine(d_ap, d_cand, valid, spec["margin"], "semi-hard")
            hard = mine(d_ap, d_cand, valid, spec["margin"], "batch-hard")
            idx = jnp.select([spec["miner"] == 0, spec["miner"] == 1], [semi, hard], own)
        idx = jnp.where(jnp.any(valid, axis=1), idx, own)  # no valid candidate: the stored negative
        d_an = jnp.take_along_axis(d_cand, idx[:, None], axis=1)[:, 0]
        return triplet_loss(d_ap, d_an, spec["margin"]), d_ap, d_an

    def infonce_branch(x, kind):
        loss = info_nce(x[:, 0], x[:, 1], same_item, spec["temperature"])
        return loss, paired_distance(x[:, 0], x[:, 1], kind), paired_distance(x[:, 0], x[:, 2], kind)

    branches = [
        lambda: pair_branch(emb, "cosine"),
        lambda: pair_branch(euc_in, "euclidean"),
        lambda: triplet_branch(emb, "cosine"),
        lambda: triplet_branch(euc_in, "euclidean"),
        lambda: infonce_branch(emb, "cosine"),
        lambda: infonce_branch(emb, "cosine"),
    ]
    if static("loss") and static("distance"):
        loss, d_pos, d_neg = branches[spec["loss"] * 2 + spec["distance"]]()
    else:
        loss, d_pos, d_neg = jax.lax.switch(spec["loss"] * 2 + spec["distance"], branches)
    return loss, {"d_pos": jnp.mean(d_pos), "d_neg": jnp.mean(d_neg)}


def loss_spec(kind: str, distance: str, miner: str, margin: float, temperature: float, euclidean_normalized: bool) -> dict:
    return {
        "loss": LOSSES.index(kind),
        "distance": DISTANCES.index(distance),
        "miner": MINERS.index(miner),
        "margin": float(margin),
        "temperature": float(temperature),
        "euclidean_normalized": 1 if euclidean_normalized else 0,
    }


SELECTORS = ("loss", "distance", "miner", "euclidean_normalized")


def split_specs(specs: list[dict]) -> tuple[dict, dict]:
    """(static, stacked): selectors equal across ``specs`` stay python ints (one branch compiled);
    the rest, and margins and temperatures, become (G,) arrays to vmap over."""
    static = {k: specs[0][k] for k in SELECTORS if all(s[k] == specs[0][k] for s in specs)}
    stacked = {k: jnp.asarray([s[k] for s in specs], dtype=jnp.float32 if isinstance(specs[0][k], float) else jnp.int32)
               for k in specs[0] if k not in static}
    return static, stacked
