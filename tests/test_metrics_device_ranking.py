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
