"""Co-preference samplers and losses against brute-force numpy loops on small batches, under jit
(and vmap where a grid would use it)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cinefuse.fuse import copref as ob


def log_softmax(x):
    x = np.asarray(x, np.float64)
    m = x.max()
    return x - m - np.log(np.exp(x - m).sum())


def unit(x):
    x = np.asarray(x, np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-6)


def partner_table(seed=0, n_items=12, n=3):
    rng = np.random.default_rng(seed)
    idx = np.stack([rng.choice([j for j in range(n_items) if j != i], n, replace=False) for i in range(n_items)])
    weight = rng.random((n_items, n)).astype(np.float32) + 0.1
    mask = rng.random((n_items, n)) < 0.8
    mask[:, 0] = True
    mask[n_items - 1] = False  # an item without partners: never an anchor
    return idx.astype(np.int32), np.where(mask, weight, 0).astype(np.float32), mask


def test_sample_co_like_draws_partners_by_weight():
    idx, weight, mask = partner_table()
    pool = np.flatnonzero(mask.any(axis=1)).astype(np.int32)
    fn = jax.jit(lambda k: ob.sample_co_like(k, pool, idx, weight, mask, 4096))
    a, p = map(np.asarray, fn(jax.random.PRNGKey(0)))
    a2, p2 = map(np.asarray, fn(jax.random.PRNGKey(0)))
    assert np.array_equal(a, a2) and np.array_equal(p, p2)
    assert set(a.tolist()) <= set(pool.tolist()) and len(set(a.tolist())) == len(pool)
    for anchor in pool:
        sel = p[a == anchor]
        allowed = idx[anchor][mask[anchor]]
        assert set(sel.tolist()) <= set(allowed.tolist())
        share = np.array([(sel == j).mean() for j in allowed])
        expect = weight[anchor][mask[anchor]] / weight[anchor][mask[anchor]].sum()
        assert np.abs(share - expect).max() < 0.12  # ~340 draws per anchor


def brute_co_like_masks(a, p, idx, mask):
    b = len(a)
    pos = np.zeros((b, b), bool)
    exc = np.zeros((b, b), bool)
    for i in range(b):
        for j in range(b):
            if i != j and p[j] == a[i]:
                exc[i, j] = True
                continue
            pos[i, j] = i == j or p[j] in idx[a[i]][mask[a[i]]] or a[i] in idx[p[j]][mask[p[j]]]
    return pos, exc


def brute_info_nce(a_emb, p_emb, pos, exc, t):
    logits = unit(a_emb) @ unit(p_emb).T / t

    def side(lg, ps, ex):
        out = []
        for i in range(lg.shape[0]):
            keep = ~ex[i]
            lp = log_softmax(lg[i][keep])
            out.append(-lp[ps[i][keep]].mean())
        return np.mean(out)

    return 0.5 * (side(logits, pos, exc) + side(logits.T, pos.T, exc.T))


def test_multi_positive_info_nce_matches_brute_force():
    idx, weight, mask = partner_table(seed=1)
    pool = np.flatnonzero(mask.any(axis=1)).astype(np.int32)
    a, p = ob.sample_co_like(jax.random.PRNGKey(3), pool, idx, weight, mask, 10)
    a, p = np.array(a), np.array(p)
    p[3] = a[1]  # a partner that is another anchor's own item: excluded, not a negative
    pos, exc = jax.jit(ob.co_like_masks)(a, p, idx, mask)
    ref_pos, ref_exc = brute_co_like_masks(a, p, idx, mask)
    np.testing.assert_array_equal(np.asarray(pos), ref_pos)
    np.testing.assert_array_equal(np.asarray(exc), ref_exc)
    assert ref_pos.sum() > len(a) and ref_exc.sum() >= 1  # off-diagonal positives exist
    rng = np.random.default_rng(0)
    ea, ep = rng.normal(size=(10, 5)).astype(np.float32), rng.normal(size=(10, 5)).astype(np.float32)
    got = jax.jit(ob.multi_positive_info_nce)(ea, ep, pos, exc, 0.2)
    assert float(got) == pytest.approx(brute_info_nce(ea, ep, ref_pos, ref_exc, 0.2), rel=1e-5)
    # a grid vmaps over temperatures
    ts = jnp.asarray([0.1, 0.5])
    many = jax.vmap(lambda t: ob.multi_positive_info_nce(ea, ep, pos, exc, t))(ts)
    np.testing.assert_allclose(np.asarray(many), [brute_info_nce(ea, ep, ref_pos, ref_exc, t) for t in (0.1, 0.5)],
                               rtol=1e-5)


def history_fixture(seed=0, n_users=9, n_items=15, width=6):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(0, width + 1, n_users)
    lengths[:3] = [width, 1, 0]
    hist = np.full((n_users, width), n_items, np.int32)
    for u in range(n_users):
        hist[u, :lengths[u]] = np.sort(rng.choice(n_items, lengths[u], replace=False))
    return hist, lengths.astype(np.int32), n_items


def test_sample_history_slice_is_deduplicated_and_likes_exact():
    hist, lengths, n_items = history_fixture()
    pool = np.flatnonzero(lengths >= 1).astype(np.int32)
    fn = jax.jit(lambda k: ob.sample_history(k, pool, hist, lengths, n_items, batch=4, per_user=3, n_random=5))
    for seed in range(5):
        out = {k: np.asarray(v) for k, v in fn(jax.random.PRNGKey(seed)).items()}
        users, items, m, likes = out["users"], out["items"], out["item_mask"], out["likes"]
        assert items.shape == (4 * 3 + 5,) and likes.shape == (4, 17)
        # every valid slot holds a distinct item; sampled history slots come from that user
        assert len(set(items[m].tolist())) == int(m.sum())
        for b, u in enumerate(users):
            own = set(hist[u, :lengths[u]].tolist())
            block = items[b * 3:(b + 1) * 3][m[b * 3:(b + 1) * 3]]
            assert set(block.tolist()) <= own
            for s in range(17):
                assert likes[b, s] == float(m[s] and items[s] in own)
    a = fn(jax.random.PRNGKey(1))
    b = fn(jax.random.PRNGKey(1))
    assert all(np.array_equal(np.asarray(a[k]), np.asarray(b[k])) for k in a)


def test_sample_history_masks_repeats_after_the_first():
    # user 0 liked 1 2 3, user 1 liked 2 3 4, user 2 only 7 (two padding picks): 3 picks each
    hist = np.array([[1, 2, 3], [2, 3, 4], [7, 9, 9]], np.int32)
    lengths = np.array([3, 3, 1], np.int32)
    fn = jax.jit(lambda k: ob.sample_history(k, np.array([0, 1, 2], np.int32), hist, lengths, 9, batch=3,
                                             per_user=3, n_random=0))
    for seed in range(300):  # users are drawn at random: find a draw of 0, 1, 2 in that order
        out = fn(jax.random.PRNGKey(seed))
        users, items, m = (np.asarray(out[k]) for k in ("users", "items", "item_mask"))
        if users.tolist() != [0, 1, 2]:
            continue
        assert sorted(items[:3].tolist()) == [1, 2, 3] and m[:3].all()
        # 2 and 3 already hold a slot in user 0's block: only 4 stays valid in user 1's
        assert items[3:6][m[3:6]].tolist() == [4] and (items[3:6][~m[3:6]] == 0).all()
        assert m[6:].tolist() == [True, False, False] and items[6] == 7
        likes = np.asarray(out["likes"])
        for b, u in enumerate(users):
            for s in range(9):
                assert likes[b, s] == float(m[s] and items[s] in hist[u, :lengths[u]])
        return
    pytest.fail("no seed drew users 0, 1, 2 in order")


def brute_history_loss(likes, emb, mask, kind, t):
    a = unit(emb)
    users = []
    for b in range(likes.shape[0]):
        x = np.array([likes[b, s] if mask[s] else 0.0 for s in range(len(mask))])
        s_row = np.zeros(len(mask))
        for s in range(len(mask)):
            if not mask[s]:
                continue
            s_row[s] = sum(x[r] * a[r] @ a[s] for r in range(len(mask)) if r != s and mask[r])
        if x.sum() == 0:
            continue
        if kind == "nmse":
            users.append(((x / np.linalg.norm(x) - s_row / max(np.linalg.norm(s_row), 1e-6)) ** 2).sum())
        else:
            lp = log_softmax(s_row[mask] / t)
            users.append(-(x[mask] * lp).sum() / x.sum())
    return np.mean(users)


@pytest.mark.parametrize("kind", ["nmse", "softmax"])
def test_history_loss_matches_brute_force(kind):
    rng = np.random.default_rng(2)
    b, s, d = 5, 11, 4
    likes = (rng.random((b, s)) < 0.35).astype(np.float32)
    likes[4] = 0.0  # a user with no like in the slice: left out of the mean
    mask = rng.random(s) < 0.85
    emb = rng.normal(size=(s, d)).astype(np.float32)
    got = jax.jit(lambda x, e, m: ob.history_loss(x, e, m, kind, 0.3))(likes, emb, mask)
    assert float(got) == pytest.approx(brute_history_loss(likes, emb, mask, kind, 0.3), rel=1e-5)
    scores = np.asarray(ob.history_scores(likes, emb, mask))
    a = unit(emb) * mask[:, None]
    ref = (likes * mask) @ a @ a.T - (likes * mask) * (a * a).sum(1)
    np.testing.assert_allclose(scores, ref, atol=1e-5)


def test_distill_info_nce_matches_brute_force():
    rng = np.random.default_rng(4)
    b, d, k = 7, 5, 3
    emb = rng.normal(size=(b, d)).astype(np.float32)
    kernel = rng.normal(size=(k, d)).astype(np.float32)
    teacher = rng.normal(size=(b, k)).astype(np.float32)
    items = np.array([0, 1, 2, 3, 1, 5, 6])  # item 1 twice
    teacher[4] = teacher[1]
    got = jax.jit(ob.distill_info_nce)(emb, kernel, teacher, items, 0.25)
    exc = (items[:, None] == items[None, :]) & ~np.eye(b, dtype=bool)
    ref = brute_info_nce(emb @ kernel.T, teacher, np.eye(b, dtype=bool), exc, 0.25)
    assert float(got) == pytest.approx(ref, rel=1e-5)


def test_teacher_logits_and_similarity_kl_match_brute_force():
    rng = np.random.default_rng(5)
    n_items, b, d = 20, 6, 4
    sim = rng.normal(size=(n_items, n_items)).astype(np.float32)
    items = np.array([3, 7, 7, 11, 0, 19])
    emb = rng.normal(size=(b, d)).astype(np.float32)
    t_teacher, t = 0.5, 0.2
    logits_t = np.asarray(jax.jit(ob.teacher_logits)(sim, items, t_teacher))
    kl = float(jax.jit(ob.similarity_kl)(emb, logits_t, items, t))
    e = unit(emb)
    rows = []
    for i in range(b):
        others = [j for j in range(b) if items[j] != items[i]]
        v = np.array([sim[items[i], items[j]] for j in others], np.float64)
        z = (v - v.mean()) / v.std() / t_teacher
        np.testing.assert_allclose(logits_t[i, others], z, rtol=1e-4, atol=1e-5)
        lp = log_softmax(z)
        lq = log_softmax(np.array([e[i] @ e[j] for j in others]) / t)
        rows.append((np.exp(lp) * (lp - lq)).sum())
    assert kl == pytest.approx(np.mean(rows), rel=1e-5)
    assert kl > 0


def test_prior_loss_and_scores():
    rng = np.random.default_rng(6)
    pred, target = rng.normal(size=8).astype(np.float32), rng.normal(size=8).astype(np.float32)
    assert float(ob.prior_loss(pred, target)) == pytest.approx(np.mean((pred - target) ** 2), rel=1e-6)
    q, c = rng.normal(size=(3, 4)).astype(np.float32), rng.normal(size=(5, 4)).astype(np.float32)
    prior = rng.normal(size=5).astype(np.float32)
    got = np.asarray(jax.jit(ob.prior_scores)(q, c, prior, 0.3))
    np.testing.assert_allclose(got, unit(q) @ unit(c).T + 0.3 * prior[None, :], atol=1e-5)
