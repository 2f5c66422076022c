"""Baselines: pooling of raw features, concatenation weights, the evaluator end to end on a
synthetic catalogue with known structure (cosine on the planted feature beats random)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from cinefuse.evaluate.baselines import concatenate_sets, itemknn_cbf, pooled_rows, popularity_baseline, random_baseline
from cinefuse.evaluate.evalset import build_eval_set, score_lists
from cinefuse.evaluate.results import parse_ks
from cinefuse.evaluate.tasks.item_to_item import evaluate_embeddings
from cinefuse.errors import CinefuseError


def test_pooled_rows_masks_padding_and_invalid_rows():
    data = np.zeros((3, 4, 2), np.float32)
    data[0, :2] = [[1, 2], [3, 4]]
    data[0, 2:] = 100.0  # padding past length 2 must not count
    data[1] = 1.0
    data[2] = 7.0
    out = pooled_rows(data, np.array([2, 4, 4]), np.array([True, True, False]))
    np.testing.assert_allclose(out, [[2, 3], [1, 1], [0, 0]])
    flat = pooled_rows(np.ones((2, 3), np.float32), None, np.array([False, True]))
    np.testing.assert_allclose(flat, [[0, 0, 0], [1, 1, 1]])


def test_concatenation_gives_each_set_equal_weight():
    wide = np.array([[1000.0, 0.0], [0.0, 1000.0]], np.float32)
    narrow = np.array([[0.001], [0.001]], np.float32)
    joined = concatenate_sets([wide, narrow])
    np.testing.assert_allclose(np.linalg.norm(joined, axis=1), [np.sqrt(2)] * 2, rtol=1e-6)
    # cosine of the two rows: (0 + 1) / 2
    assert joined[0] @ joined[1] / 2 == pytest.approx(0.5)


def synthetic_catalogue(seed=0, n_items=80, n_users=60, n_groups=4):
    """Items in groups; users like items of one group (rating 4-5) and dislike a few others.
    A feature that encodes the group makes cosine ranking near perfect."""
    rng = np.random.default_rng(seed)
    ids = np.array([str(i + 1) for i in range(n_items)])
    group = rng.integers(0, n_groups, n_items)
    users, items, values = [], [], []
    for u in range(n_users):
        g = u % n_groups
        mine = np.flatnonzero(group == g)
        liked = rng.choice(mine, size=min(8, mine.size), replace=False)
        other = rng.choice(np.flatnonzero(group != g), size=4, replace=False)
        for i in liked:
            users.append(u); items.append(ids[i]); values.append(float(rng.choice([4.0, 4.5, 5.0])))
        for i in other:
            users.append(u); items.append(ids[i]); values.append(float(rng.choice([1.0, 2.0])))
    ratings = SimpleNamespace(user=np.array(users), item=np.array(items, dtype=object), rating=np.array(values, np.float32))
    planted = np.eye(n_groups, dtype=np.float32)[group] + 0.05 * rng.standard_normal((n_items, n_groups)).astype(np.float32)
    noise = rng.standard_normal((n_items, 16)).astype(np.float32)
    genre_names = ["Action", "Drama", "Comedy", "Horror"]
    movies = SimpleNamespace(ids=ids, titles=[f"Movie {i}" for i in ids], genres=[[genre_names[g]] for g in group], years=np.full(n_items, np.nan))
    return ids, ratings, movies, planted, noise


def test_planted_feature_beats_noise_and_random_on_every_accuracy_metric():
    ids, ratings, movies, planted, noise = synthetic_catalogue()
    es = build_eval_set(ratings, ids, ids, k_max=10, movies=movies)
    ks = (1, 5, 10)
    good = evaluate_embeddings(ids, planted, es, ks)
    bad = evaluate_embeddings(ids, noise, es, ks)
    rand = score_lists(random_baseline(len(ids), len(ids), 10, es.self_index, seed=1), es, ks)
    for m in ("P", "R", "HR", "nDCG", "MRR", "gnDCG"):
        assert good[f"{m}@10"] > bad[f"{m}@10"] and good[f"{m}@10"] > rand[f"{m}@10"], m
    # a user likes 8 of the ~20 items of a group: a same-group neighbour is relevant ~7/19
    assert 0.3 < good["P@1"] < 0.45 and good["HR@10"] > 0.95
    # same-group lists have a single genre: no diversity; random lists mix genres
    assert good["Div@10"] < 0.05 < rand["Div@10"]
    assert good["queries_scored"] == bad["queries_scored"] == rand["queries_scored"]


def test_evaluate_embeddings_equals_itemknn_on_the_same_matrix():
    ids, ratings, movies, planted, _ = synthetic_catalogue(seed=3)
    es = build_eval_set(ratings, ids, ids, k_max=5, movies=movies)
    # build_eval_set orders queries by id and candidates in tie order, so rows must be looked up by id
    perm = np.random.default_rng(0).permutation(len(ids))
    direct = evaluate_embeddings(ids[perm], planted[perm], es, (5,))
    rows = {i: r for r, i in enumerate(ids.tolist())}
    matrix = planted[[rows[i] for i in es.candidate_ids.tolist()]]
    queries = planted[[rows[i] for i in es.query_ids.tolist()]]
    via_knn = score_lists(itemknn_cbf(queries, matrix, 5, es.self_index), es, (5,))
    assert direct == via_knn


def test_popularity_lists_are_the_most_rated_candidates():
    ids, ratings, movies, _, _ = synthetic_catalogue(seed=4)
    es = build_eval_set(ratings, ids, ids, k_max=3, movies=movies)
    topk = popularity_baseline(es.raters, len(ids), 3, es.self_index)
    top3 = np.lexsort((np.arange(len(ids)), -es.raters))[:4]
    for q, row in enumerate(topk):
        assert row.tolist() == [c for c in top3 if c != es.self_index[q]][:3]
    # raters counts distinct users per candidate
    counts = {}
    for u, i in zip(ratings.user, ratings.item):
        counts.setdefault(i, set()).add(u)
    assert es.raters.tolist() == [len(counts.get(c, ())) for c in es.candidate_ids]


def test_parse_ks():
    assert parse_ks("10,1, 5,3,3") == (1, 3, 5, 10)
    assert parse_ks((5, 1)) == (1, 5)
    with pytest.raises(CinefuseError, match=r"--k '1,x' must be comma-separated positive integers"):
        parse_ks("1,x")
    with pytest.raises(CinefuseError, match="positive"):
        parse_ks("0,5")
