"""The item-to-item task as a value: its ranking of embeddings (with and without the prior) and
of raw features equals a numpy brute force over the same tie order."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from cinefuse.evaluate.baselines import itemknn_cbf
from cinefuse.evaluate.evalset import build_eval_set
from cinefuse.evaluate.tasks import TASKS
from cinefuse.evaluate.tasks.item_to_item import ITEM_TO_ITEM


def small_set(n=30, seed=0):
    rng = np.random.default_rng(seed)
    ids = np.array([str(3 * i + 1) for i in range(n)])
    users = np.repeat(np.arange(20), 6)
    items = ids[rng.integers(0, n, users.size)].astype(object)
    ratings = SimpleNamespace(user=users, item=items, rating=np.full(users.size, 5.0))
    return ids, build_eval_set(ratings, ids, ids, k_max=5, tie_seed=3)


def brute_force(scores: np.ndarray, self_index: np.ndarray, k: int) -> np.ndarray:
    """Best first, ties by the lower candidate position, the query itself left out."""
    out = []
    for q, row in enumerate(scores):
        order = sorted((c for c in range(len(row)) if c != self_index[q]), key=lambda c: (-row[c], c))
        out.append(order[:k])
    return np.array(out)


def test_the_tasks_are_registered_by_name():
    from cinefuse.evaluate.tasks.user_to_item import USER_TO_ITEM

    assert TASKS == {"item-to-item": ITEM_TO_ITEM, "user-to-item": USER_TO_ITEM}


def test_rank_with_and_without_prior_equals_brute_force():
    ids, es = small_set()
    rng = np.random.default_rng(1)
    emb = np.round(rng.standard_normal((len(ids), 4)), 1).astype(np.float32)
    prior = rng.standard_normal(len(ids)).astype(np.float32)
    rows = {i: r for r, i in enumerate(ids.tolist())}
    c = np.array([rows[i] for i in es.candidate_ids.tolist()])
    q = np.array([rows[i] for i in es.query_ids.tolist()])
    unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    cos = unit[q] @ unit[c].T
    assert np.array_equal(ITEM_TO_ITEM.rank(es, ids, emb, 5), brute_force(cos, es.self_index, 5))
    got = ITEM_TO_ITEM.rank(es, ids, emb, 5, prior=prior, weight=0.3)
    scores = cos + 0.3 * prior[c][None, :]
    assert np.array_equal(got, brute_force(scores.astype(np.float32), es.self_index, 5))


def test_rank_content_ranks_the_candidates_rows_as_queries():
    ids, es = small_set(seed=2)
    matrix = np.random.default_rng(4).standard_normal((len(es.candidate_ids), 3)).astype(np.float32)
    position = {c: i for i, c in enumerate(es.candidate_ids.tolist())}
    unit = matrix / np.linalg.norm(matrix, axis=1, keepdims=True)
    q = unit[[position[i] for i in es.query_ids.tolist()]]
    expected = brute_force(q @ unit.T, es.self_index, 5)
    shuffled = np.random.default_rng(5).permutation(len(ids))  # rows in any id order
    by_id = {c: matrix[i] for c, i in position.items()}
    table = np.stack([by_id[i] for i in es.candidate_ids[shuffled].tolist()])
    got = ITEM_TO_ITEM.rank_content(es, es.candidate_ids[shuffled], table, 5, itemknn_cbf)
    assert np.array_equal(got, expected)
