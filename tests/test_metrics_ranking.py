"""Blocked device ranking equals a full numpy ranking, ties broken by id, query excluded."""

from __future__ import annotations

import numpy as np
import pytest

from cinefuse.metrics.ranking import id_sort_key, random_top_k, sort_ids, top_k_by_score, top_k_cosine


def numpy_full_ranking(queries, candidates, k, self_index):
    """The whole Q x C score matrix at once, lexsort by (-score, candidate index)."""
    qn = queries / np.maximum(np.linalg.norm(queries, axis=1, keepdims=True), 1e-12)
    cn = candidates / np.maximum(np.linalg.norm(candidates, axis=1, keepdims=True), 1e-12)
    scores = qn.astype(np.float64) @ cn.T.astype(np.float64)
    out = np.full((len(queries), k), -1)
    for q in range(len(queries)):
        order = [c for c in np.lexsort((np.arange(len(candidates)), -scores[q])) if c != self_index[q]]
        out[q, : min(k, len(order))] = order[:k]
    return out, scores


@pytest.mark.parametrize("block_size", [1, 7, 64, 4096])
def test_blocked_equals_full_numpy_with_exact_ties(block_size):
    # entries +-1 in 16 dims: every cosine is a multiple of 1/16, exact in float32, so ties are
    # real ties (many of them) and the order among them must follow the candidate index
    rng = np.random.default_rng(0)
    cands = rng.choice([-1.0, 1.0], size=(50, 16)).astype(np.float32)
    cands[10] = cands[3]  # duplicates: identical scores everywhere
    cands[40] = cands[3]
    queries = np.concatenate([cands[:30], rng.choice([-1.0, 1.0], size=(9, 16)).astype(np.float32)])
    self_index = np.concatenate([np.arange(30), np.full(9, -1)])
    got, scores = top_k_cosine(queries, cands, 10, self_index=self_index, block_size=block_size)
    want, full = numpy_full_ranking(queries, cands, 10, self_index)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_allclose(scores, np.take_along_axis(full, want, axis=1), atol=1e-6)
    assert not (got == self_index[:, None]).any()
    # the duplicates of 3 (rows 10, 40) rank as 10 then 40 for query 3
    assert list(got[3][:2]) == [10, 40]


def test_blocked_equals_full_numpy_on_random_vectors():
    rng = np.random.default_rng(1)
    cands = rng.standard_normal((300, 24)).astype(np.float32)
    queries = cands[:120]
    got, _ = top_k_cosine(queries, cands, 10, self_index=np.arange(120), block_size=32)
    want, _ = numpy_full_ranking(queries, cands, 10, np.arange(120))
    np.testing.assert_array_equal(got, want)


def test_fewer_candidates_than_k_leaves_empty_slots():
    cands = np.eye(3, dtype=np.float32)
    got, scores = top_k_cosine(cands, cands, 5, self_index=np.arange(3))
    assert got.shape == (3, 5)
    assert (got[:, 2:] == -1).all() and np.isneginf(scores[:, 2:]).all()
    # all other scores tie at 0: lower index first
    assert got[:, :2].tolist() == [[1, 2], [0, 2], [0, 1]]


def test_zero_vectors_score_zero_not_nan():
    cands = np.array([[0, 0], [1, 0], [0, 1]], dtype=np.float32)
    got, scores = top_k_cosine(np.array([[1, 1]], np.float32), cands, 3)
    assert got.tolist() == [[1, 2, 0]]
    assert np.isfinite(scores).all()


def test_id_order_is_numeric_for_numeric_ids_else_lexicographic():
    assert sort_ids(["10", "2", "1"]).tolist() == ["1", "2", "10"]
    assert sort_ids(["b10", "b2", "a"]).tolist() == ["a", "b10", "b2"]
    assert id_sort_key([]).tolist() == []


def test_popularity_lists_skip_the_query_and_break_ties_by_index():
    score = np.array([5, 9, 9, 1, 5])
    got = top_k_by_score(score, 3, 3, self_index=np.array([1, 3, -1]))
    assert got.tolist() == [[2, 0, 4], [1, 2, 0], [1, 2, 0]]


def test_random_lists_are_distinct_exclude_self_and_are_seeded():
    a = random_top_k(40, 30, 10, self_index=np.arange(40) % 30, seed=3, block_size=16)
    b = random_top_k(40, 30, 10, self_index=np.arange(40) % 30, seed=3, block_size=16)
    np.testing.assert_array_equal(a, b)
    assert all(len(set(row)) == 10 for row in a.tolist())
    assert not (a == (np.arange(40) % 30)[:, None]).any()
    small = random_top_k(2, 3, 5, self_index=np.array([0, -1]))
    assert sorted(small[0][:2]) == [1, 2] and (small[0][2:] == -1).all()
    assert sorted(small[1][:3]) == [0, 1, 2] and (small[1][3:] == -1).all()


@pytest.mark.parametrize("k", [1, 3, 10])
def test_chunked_selection_is_exact_with_many_chunks_and_ties(k):
    # 1000 candidates = 16 chunks of 64 (the last one padded), far more than k + 1: the two-stage
    # selection really discards chunks; +-1 entries in 16 dims (norm 4, exact) make every cosine
    # an exact multiple of 1/16, so ties are real; every 37th row is one same vector (duplicates:
    # identical scores that must come out in index order)
    rng = np.random.default_rng(2)
    cands = rng.choice([-1.0, 1.0], size=(1000, 16)).astype(np.float32)
    cands[::37] = rng.choice([-1.0, 1.0], size=16)
    queries = np.concatenate([cands[::5], rng.choice([-1.0, 1.0], size=(20, 16)).astype(np.float32)])
    self_index = np.concatenate([np.arange(0, 1000, 5), np.full(20, -1)])
    got, _ = top_k_cosine(queries, cands, k, self_index=self_index, block_size=64)
    want, _ = numpy_full_ranking(queries, cands, k, self_index)
    np.testing.assert_array_equal(got, want)
