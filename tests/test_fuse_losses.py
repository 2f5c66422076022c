"""Losses and miners against brute-force numpy loops on random batches."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cinefuse.fuse.losses import DEFAULT_MARGINS, LOSSES, DISTANCES, MINERS, batch_loss, loss_spec, split_specs

B, E, NEG_MAX = 12, 8, 0.1


def np_dist(u, v, kind, normalize=True):
    if kind == "cosine":
        return 1.0 - float(u @ v / (np.linalg.norm(u) * np.linalg.norm(v)))
    return float(np.linalg.norm(u - v))


def np_jaccard(a: int, b: int) -> float:
    inter, union = bin(a & b).count("1"), bin(a | b).count("1")
    return inter / union if union else 0.0


def reference(kind, distance, miner, margin, temperature, emb, raw, items, genres, euclidean_normalized=True):
    """Plain loops over the batch; the definitions of cinefuse.fuse.losses, written out."""
    x = emb if (distance == "cosine" or euclidean_normalized or kind == "infonce") else raw
    b = len(items)
    if kind == "pair":
        terms = []
        for i in range(b):
            d = np_dist(x[i, 0], x[i, 1], distance)
            terms.append(d * d)
        for i in range(b):
            d = np_dist(x[i, 0], x[i, 2], distance)
            terms.append(max(margin - d, 0.0) ** 2)
        return np.mean(terms)
    if kind == "infonce":
        a = emb[:, 0] / np.linalg.norm(emb[:, 0], axis=1, keepdims=True)
        p = emb[:, 1] / np.linalg.norm(emb[:, 1], axis=1, keepdims=True)
        logits = a @ p.T / temperature
        for i in range(b):
            for j in range(b):
                if i != j and items[i, 1] == items[j, 1]:
                    logits[i, j] = -1e9
        def lse(v):
            m = v.max()
            return m + np.log(np.exp(v - m).sum())
        row = np.mean([lse(logits[i]) - logits[i, i] for i in range(b)])
        col = np.mean([lse(logits[:, j]) - logits[j, j] for j in range(b)])
        return 0.5 * (row + col)
    # triplet: candidates are all anchors, then positives, then negatives
    cand_vecs = [x[k, 0] for k in range(b)] + [x[k, 1] for k in range(b)] + [x[k, 2] for k in range(b)]
    cand_items = [items[k, 0] for k in range(b)] + [items[k, 1] for k in range(b)] + [items[k, 2] for k in range(b)]
    cand_genres = [genres[k, 0] for k in range(b)] + [genres[k, 1] for k in range(b)] + [genres[k, 2] for k in range(b)]
    losses = []
    for i in range(b):
        d_ap = np_dist(x[i, 0], x[i, 1], distance)
        if miner == "none":
            d_an = np_dist(x[i, 0], x[i, 2], distance)
        else:
            valid = [c for c in range(3 * b) if np_jaccard(genres[i, 0], cand_genres[c]) <= NEG_MAX
                     and cand_items[c] != items[i, 0] and cand_items[c] != items[i, 1]]
            dists = {c: np_dist(x[i, 0], cand_vecs[c], distance) for c in valid}
            semi = [c for c in valid if d_ap < dists[c] < d_ap + margin]
            pool = semi if (miner == "semi-hard" and semi) else valid
            d_an = min(dists[c] for c in pool) if pool else np_dist(x[i, 0], x[i, 2], distance)
        losses.append(max(d_ap - d_an + margin, 0.0))
    return np.mean(losses)


def random_batch(seed):
    rng = np.random.default_rng(seed)
    raw = rng.normal(size=(B, 3, E)).astype(np.float32) * rng.uniform(0.5, 2.0, size=(B, 3, 1)).astype(np.float32)
    emb = raw / np.linalg.norm(raw, axis=-1, keepdims=True)
    items = rng.integers(0, 20, size=(B, 3)).astype(np.int32)     # repeats on purpose
    item_genres = rng.integers(1, 16, size=20)                       # 4 genres as bits
    genres = item_genres[items]
    words = genres.astype(np.uint32)[..., None]
    return emb, raw, items, genres, words


CASES = [(k, d, m) for k in ("pair", "infonce") for d in DISTANCES for m in ("none",)] + \
        [("triplet", d, m) for d in DISTANCES for m in MINERS]


@pytest.mark.parametrize("seed", [0, 1])
def test_losses_match_brute_force(seed):
    emb, raw, items, genres, words = random_batch(seed)
    margins = {"pair": {"cosine": 0.5, "euclidean": 1.0}, "triplet": {"cosine": 0.3, "euclidean": 0.5},
               "infonce": {"cosine": 0.0, "euclidean": 0.0}}
    cases = [(k, d, m, en) for k, d, m in CASES for en in ((True, False) if d == "euclidean" else (True,))]
    specs = [loss_spec(k, d, m, margins[k][d], 0.2, en) for k, d, m, en in cases]
    expected = [reference(k, d, m, margins[k][d], 0.2, emb, raw, items, genres, en) for k, d, m, en in cases]
    # python-int selectors (one branch compiled) ...
    args = (jnp.asarray(emb), jnp.asarray(raw), jnp.asarray(items), jnp.asarray(words))
    every = jax.jit(lambda e, r, i, w: jnp.stack([batch_loss(spec, e, r, i, w, NEG_MAX)[0] for spec in specs]))
    np.testing.assert_allclose(np.asarray(every(*args)), expected, rtol=2e-4, atol=2e-5)
    # ... and the vmapped grid path, where every selector is traced
    static, stacked = split_specs(specs)
    assert static == {}
    got = jax.jit(jax.vmap(lambda s: batch_loss(s, *args, NEG_MAX)[0]))(stacked)
    np.testing.assert_allclose(np.asarray(got), expected, rtol=2e-4, atol=2e-5)


def test_semi_hard_picks_the_closest_negative_beyond_the_positive():
    """A hand-built anchor: positive at cosine distance .2, valid negatives at .1 (hard), .25 and
    .35 (semi-hard for margin .3), .9 (easy). Semi-hard picks .25; batch-hard picks .1."""
    from cinefuse.fuse.losses import mine

    d_ap = jnp.array([0.2])
    d = jnp.array([[0.1, 0.35, 0.25, 0.9, 0.05]])
    valid = jnp.array([[True, True, True, True, False]])  # the .05 candidate is not a valid negative
    assert int(mine(d_ap, d, valid, 0.3, "semi-hard")[0]) == 2
    assert int(mine(d_ap, d, valid, 0.3, "batch-hard")[0]) == 0
    # none semi-hard: falls back to the hardest valid negative
    assert int(mine(d_ap, d, valid, 0.01, "semi-hard")[0]) == 0


def test_default_margins_cover_every_loss():
    assert {(k, d) for k in LOSSES for d in DISTANCES} == set(DEFAULT_MARGINS)
