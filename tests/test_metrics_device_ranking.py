"""On-device nDCG@K / HR@K equal the pinned host metrics for the same seeded tie order."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from cinefuse.metrics.metrics import accuracy_metrics, build_relevance
from cinefuse.metrics.ranking import top_k_cosine
from cinefuse.metrics.device_ranking import ndcg_hr_at_k, per_query_ndcg_hr, top_k_lists
from cinefuse.metrics.ties import device_tie_order as tie_order


def tied_case(seed=0, n=40, n_users=25, d=3):
    rng = np.random.default_rng(seed)
    # few distinct directions: most scores tie exactly, so the tie order decides the lists
    directions = rng.normal(size=(5, d))
    emb = directions[rng.integers(0, 5, n)].astype(np.float32)
    likes = rng.random((n_users, n)) < 0.2
    likes[0] = False
    likes[0, 3] = True  # a user with a single like: never scored
    return emb, likes


def ratings_of(likes):
    users, items = np.nonzero(likes)
    # non-likes rated low, so the host path sees ratings below the threshold too
    lu, li = np.nonzero(~likes)
    keep = np.random.default_rng(1).random(len(lu)) < 0.3
    users = np.concatenate([users, lu[keep]])
    items = np.concatenate([items, li[keep]])
    ratings = np.concatenate([np.full(likes.sum(), 4.5), np.full(keep.sum(), 2.0)]).astype(np.float32)
    return users, np.array([f"i{j}" for j in items], dtype=object), ratings


def host_reference(emb, likes, perm, k, prior=None, weight=0.0):
    """Lists by the host ranking over the permuted candidates, scored by the pinned metrics."""
    n = len(emb)
    ids = np.array([f"i{j}" for j in range(n)])
    inverse = np.argsort(perm)
    if prior is None:
        lists_perm, _ = top_k_cosine(emb, emb[perm], k, self_index=inverse)
    else:
        e = emb / np.linalg.norm(emb, axis=1, keepdims=True)
        scores = (e @ e.T + weight * prior[None, :])[:, perm]
        scores[np.arange(n), inverse] = -np.inf
        lists_perm = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    topk = np.where(lists_perm >= 0, perm[lists_perm], -1)   # -1: past the available candidates
    users, items, ratings = ratings_of(likes)
    rel = build_relevance(users, items, ratings, ids, ids, k_max=k)
    return topk, accuracy_metrics(topk, rel, [k])


@pytest.mark.parametrize("k", [1, 5, 10])
def test_device_metrics_equal_host_metrics_for_the_same_tie_order(k):
    emb, likes = tied_case()
    key = jax.random.PRNGKey(7)
    perm = np.asarray(tie_order(key, len(emb)))
    topk, ref = host_reference(emb, likes, perm, k)
    np.testing.assert_array_equal(np.asarray(top_k_lists(emb, k, key)), topk)
    got = ndcg_hr_at_k(emb, likes, key, k=k, block=16)
    assert float(got["nDCG"]) == pytest.approx(ref[f"nDCG@{k}"], rel=1e-5)
    assert float(got["HR"]) == pytest.approx(ref[f"HR@{k}"], rel=1e-5)
    assert int(got["queries_scored"]) == ref["queries_scored"]


def test_prior_weight_enters_the_score():
    emb, likes = tied_case(seed=2)
    prior = np.random.default_rng(3).normal(size=len(emb)).astype(np.float32)
    key = jax.random.PRNGKey(1)
    perm = np.asarray(tie_order(key, len(emb)))
    topk, ref = host_reference(emb, likes, perm, 10, prior, 0.4)
    np.testing.assert_array_equal(np.asarray(top_k_lists(emb, 10, key, prior, 0.4)), topk)
    got = ndcg_hr_at_k(emb, likes, key, k=10, prior=prior, weight=0.4)
    assert float(got["nDCG"]) == pytest.approx(ref["nDCG@10"], rel=1e-5)
    plain = ndcg_hr_at_k(emb, likes, key, k=10)
    assert float(plain["nDCG"]) != pytest.approx(float(got["nDCG"]))


def test_per_query_values_average_to_the_metric():
    emb, likes = tied_case(seed=4)
    key = jax.random.PRNGKey(0)
    ndcg, hr, scored = map(np.asarray, per_query_ndcg_hr(emb, likes, key, k=10, block=7))
    got = ndcg_hr_at_k(emb, likes, key, k=10)
    assert float(got["nDCG"]) == pytest.approx(ndcg[scored].mean(), rel=1e-6)
    assert float(got["HR"]) == pytest.approx(hr[scored].mean(), rel=1e-6)
    # a query is scored when some user liked it and one more of the items
    ok = ((likes & (likes.sum(axis=1, keepdims=True) >= 2)).any(axis=0))
    np.testing.assert_array_equal(scored, ok)


def test_tie_order_is_seeded():
    emb, likes = tied_case()
    a = np.asarray(top_k_lists(emb, 10, jax.random.PRNGKey(3)))
    b = np.asarray(top_k_lists(emb, 10, jax.random.PRNGKey(3)))
    c = np.asarray(top_k_lists(emb, 10, jax.random.PRNGKey(4)))
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    # ties are not broken by position: the lists differ from a stable sort by index
    e = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    s = e @ e.T
    np.fill_diagonal(s, -np.inf)
    by_index = np.argsort(-s, axis=1, kind="stable")[:, :10]
    assert not np.array_equal(a, by_index)
    # the multiset of scores in each list is the same whatever the tie order
    np.testing.assert_allclose(np.sort(np.take_along_axis(s, a, 1), 1), np.sort(np.take_along_axis(s, by_index, 1), 1),
                               atol=1e-6)


@pytest.mark.parametrize("n", [6, 10, 11])
def test_fewer_items_than_k_give_short_lists_that_never_count_the_query(n):
    """With N - 1 < K other items the lists end in -1 slots (as the host ranking's do), and the
    query itself (scored -inf) is never counted as a hit, also when N == K."""
    emb, likes = tied_case(seed=5, n=n, n_users=12)
    likes[:, :] = True                       # every user likes every item: any counted slot is a hit
    key = jax.random.PRNGKey(2)
    perm = np.asarray(tie_order(key, n))
    topk, ref = host_reference(emb, likes, perm, 10)
    lists = np.asarray(top_k_lists(emb, 10, key))
    np.testing.assert_array_equal(lists, topk)
    assert (lists[:, n - 1:] == -1).all() and not (lists == np.arange(n)[:, None]).any()
    got = ndcg_hr_at_k(emb, likes, key, k=10, block=4)
    assert float(got["nDCG"]) == pytest.approx(ref["nDCG@10"], rel=1e-5)
    assert float(got["nDCG"]) == pytest.approx(1.0, rel=1e-6)


# -- bounded memory (issue 20): the same values as the dense N x N version ---------------------
def dense_reference(emb, likes, key, k=10, prior=None, weight=0.0, block=128):
    """The validation metric as it was before blocking (a full N x N score matrix, dense likes),
    verbatim: the new code must give these values bit for bit where it samples nothing."""
    import jax.numpy as jnp

    e = emb * jax.lax.rsqrt(jnp.maximum(jnp.sum(emb * emb, axis=-1, keepdims=True), 1e-12))
    n = e.shape[0]
    scores = e @ e.T
    if prior is not None:
        scores = scores + weight * prior[None, :]
    scores = jnp.where(jnp.eye(n, dtype=bool), -jnp.inf, scores)
    perm = tie_order(key, n)
    values, where = jax.lax.top_k(scores[:, perm], min(k, n))
    lists = jnp.where(jnp.isfinite(values), perm[where], -1)
    lists = jnp.pad(lists, ((0, 0), (0, k - lists.shape[1])), constant_values=-1)
    likes = jnp.asarray(likes).astype(bool)
    n_rel = jnp.sum(likes, axis=1)[:, None] - 1
    disc = 1.0 / jnp.log2(jnp.arange(2, k + 2, dtype=jnp.float32))
    ideal = jnp.cumsum(disc)[jnp.clip(jnp.minimum(n_rel, k) - 1, 0, k - 1)]
    n_blocks = -(-n // block)
    queries = jnp.pad(jnp.arange(n), (0, n_blocks * block - n), constant_values=-1).reshape(n_blocks, block)

    def per_block(q):
        qc = jnp.maximum(q, 0)
        rows = lists[qc]
        hits = likes[:, jnp.maximum(rows, 0)] & (rows >= 0)[None]
        pair = (likes[:, qc] & (q >= 0)[None, :] & (n_rel > 0)).astype(jnp.float32)
        ndcg = jnp.sum(hits * disc, axis=-1) / ideal
        return jnp.sum(ndcg * pair, axis=0), jnp.sum(jnp.any(hits, axis=-1) * pair, axis=0), jnp.sum(pair, axis=0)

    s_ndcg, s_hr, count = (x.reshape(-1)[:n] for x in jax.lax.map(per_block, queries))
    scored = count > 0
    count = jnp.maximum(count, 1.0)
    ndcg, hr = jnp.where(scored, s_ndcg / count, 0.0), jnp.where(scored, s_hr / count, 0.0)
    denom = jnp.maximum(jnp.sum(scored), 1)
    return lists, {"nDCG": jnp.sum(ndcg) / denom, "HR": jnp.sum(hr) / denom, "queries_scored": jnp.sum(scored)}


def random_case(seed):
    rng = np.random.default_rng(seed)
    n, users = int(rng.integers(50, 600)), int(rng.integers(20, 700))
    emb = rng.normal(size=(n, 16)).astype(np.float32)
    likes = rng.random((users, n)) < rng.uniform(0.01, 0.2)
    return emb, likes, rng.normal(size=n).astype(np.float32)


@pytest.mark.parametrize("seed", range(6))
def test_blocked_validation_is_bit_identical_to_the_dense_version(seed):
    import scipy.sparse as sp

    from cinefuse.metrics.device_ranking import Likes

    emb, likes, prior = random_case(seed)
    key = jax.random.PRNGKey(seed)
    for p, w in ((None, 0.0), (prior, 0.4)):
        ref_lists, ref = dense_reference(emb, likes, key, prior=p, weight=w)
        # small query blocks: many blocks, each against every candidate
        np.testing.assert_array_equal(np.asarray(top_k_lists(emb, 10, key, p, w, block=7)), np.asarray(ref_lists))
        got = ndcg_hr_at_k(emb, likes, key, k=10, prior=p, weight=w)
        assert float(got["nDCG"]) == float(ref["nDCG"]) and float(got["HR"]) == float(ref["HR"])
        assert int(got["queries_scored"]) == int(ref["queries_scored"])
        # the sparse likes (above DENSE_LIKES cells): the same values up to summation order
        for sparse in (sp.csr_matrix(likes), Likes.of(likes)):
            s = ndcg_hr_at_k(emb, sparse, key, k=10, prior=p, weight=w)
            assert float(s["nDCG"]) == pytest.approx(float(ref["nDCG"]), rel=1e-6, abs=0)
            assert float(s["HR"]) == pytest.approx(float(ref["HR"]), rel=1e-6, abs=0)
            assert int(s["queries_scored"]) == int(ref["queries_scored"])


def test_sampled_queries_score_those_queries_against_every_candidate():
    from cinefuse.metrics.device_ranking import sample_rows

    emb, likes, _ = random_case(7)
    key = jax.random.PRNGKey(3)
    queries = sample_rows(len(emb), seed=5, limit=40)
    assert len(queries) == 40 and np.array_equal(queries, sample_rows(len(emb), seed=5, limit=40))
    assert sample_rows(len(emb), seed=5, limit=len(emb)) is None
    full = [np.asarray(x) for x in per_query_ndcg_hr(emb, likes, key, k=10)]
    part = [np.asarray(x) for x in per_query_ndcg_hr(emb, likes, key, k=10, queries=queries)]
    np.testing.assert_allclose(part[0], full[0][queries], rtol=1e-6)
    np.testing.assert_array_equal(part[2], full[2][queries])
    np.testing.assert_array_equal(np.asarray(top_k_lists(emb, 10, key, queries=queries)),
                                  np.asarray(top_k_lists(emb, 10, key))[queries])


def u2i_brute_force(cand, hist, histories, relevant, perm, prior=None, weight=0.0):
    """numpy: mean over each user's history of cos(e_h, e_c) (+ w * prior), seeded ties, then
    Recall@20 = hits / |relevant| and binary nDCG@10."""
    unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)  # noqa: E731
    c, h = unit(cand.astype(np.float64)), unit(hist.astype(np.float64))
    recall, ndcg = [], []
    for u in range(len(relevant)):
        scores = np.mean([c @ h[j] for j in np.flatnonzero(histories[u])], axis=0)
        if prior is not None:
            scores = scores + weight * prior
        order = perm[np.argsort(-scores[perm], kind="stable")]
        rel = set(np.flatnonzero(relevant[u]).tolist())
        hits = np.array([i in rel for i in order[:20]])
        recall.append(hits.sum() / len(rel))
        disc = 1 / np.log2(np.arange(2, 12))
        ndcg.append((hits[:10] * disc).sum() / disc[:min(len(rel), 10)].sum())
    return np.array(recall), np.array(ndcg)


@pytest.mark.parametrize("with_prior", [False, True])
def test_user_to_item_equals_a_numpy_brute_force(with_prior):
    from cinefuse.metrics.device_ranking import per_user_u2i, u2i_at_k

    rng = np.random.default_rng(11)
    n, h, users = 90, 60, 45
    cand = rng.normal(size=(n, 8)).astype(np.float32)
    hist = rng.normal(size=(h, 8)).astype(np.float32)
    histories = rng.random((users, h)) < 0.08
    histories[np.arange(users), rng.integers(0, h, users)] = True
    relevant = rng.random((users, n)) < 0.1
    relevant[np.arange(users), rng.integers(0, n, users)] = True
    prior = rng.normal(size=n).astype(np.float32) if with_prior else None
    key = jax.random.PRNGKey(9)
    perm = np.asarray(tie_order(key, n))
    ref_recall, ref_ndcg = u2i_brute_force(cand, hist, histories, relevant, perm, prior, 0.3)
    recall, ndcg, ok = map(np.asarray, per_user_u2i(cand, hist, histories, relevant, key, prior, 0.3, block=8))
    assert ok.all()
    np.testing.assert_allclose(recall, ref_recall, atol=1e-6)
    np.testing.assert_allclose(ndcg, ref_ndcg, atol=1e-5)
    got = u2i_at_k(cand, hist, histories, relevant, key, prior, 0.3)
    assert float(got["recall20"]) == pytest.approx(ref_recall.mean(), abs=1e-6)
    assert float(got["ndcg10"]) == pytest.approx(ref_ndcg.mean(), abs=1e-5)
    users_part = np.array([1, 5, 30], np.int32)
    part = np.asarray(per_user_u2i(cand, hist, histories, relevant, key, prior, 0.3, users=users_part)[0])
    np.testing.assert_allclose(part, ref_recall[users_part], atol=1e-6)
