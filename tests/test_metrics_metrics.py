"""Golden tests for the pinned evaluate metrics: hand-made rankings with exact values, and the
vectorised evaluator against a brute-force per-(query, user) loop on random data."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cinefuse.metrics.metrics import (
    accuracy_metrics,
    beyond_accuracy_metrics,
    build_relevance,
    coverage,
    genre_diversity,
    novelty,
)

L3 = 1.0 / math.log2(3)  # discount at rank 2
L4 = 0.5  # discount at rank 3

CANDS = np.array(["a", "b", "c", "d", "e"])
#                 user, item, rating
RATINGS = [
    (1, "a", 5.0), (1, "b", 4.0), (1, "c", 3.0), (1, "d", 4.0),
    (2, "a", 4.0), (2, "e", 5.0),
    (3, "b", 2.0),
]


def golden_relevance(k_max=4):
    users = np.array([r[0] for r in RATINGS])
    items = np.array([r[1] for r in RATINGS])
    values = np.array([r[2] for r in RATINGS])
    return build_relevance(users, items, values, CANDS, CANDS, k_max=k_max)


def lists(*rows):
    index = {c: i for i, c in enumerate(CANDS)}
    return np.array([[index[x] for x in row] for row in rows])


# a: liked by u1 (R = {b, d}) and u2 (R = {e});   list c b e d
# b: liked by u1 (R = {a:5, d:4});                list d a c e
# c: liked by nobody (u1 gave 3) -> not scored;   list a b d e
# d: liked by u1 (R = {a:5, b:4});                list e c a b
# e: liked by u2 (R = {a:4});                     list a b c d
TOPK = lists("cbed", "dace", "abde", "ecab", "abcd")


def test_relevance_pairs_and_sizes():
    rel = golden_relevance()
    pairs = sorted(zip(CANDS[rel.pair_query], rel.pair_user, rel.n_relevant))
    # users are coded 0, 1, 2 in sorted order of the liked ratings' users (1, 2)
    assert pairs == [("a", 0, 2), ("a", 1, 1), ("b", 0, 2), ("d", 0, 2), ("e", 1, 1)]
    assert rel.pairs_without_relevant == 0


def test_golden_metrics_at_1_and_3():
    got = accuracy_metrics(TOPK, golden_relevance(), ks=(1, 3))
    assert got["queries_scored"] == 4
    # per query values at K=1: a -> 0 (both users), b -> d is a hit, d -> 0, e -> hit
    g_b1 = 15 / 31  # graded: hit d (rating 4) against ideal a (rating 5)
    expected1 = {
        "P@1": (0 + 1 + 0 + 1) / 4,
        "R@1": (0 + 0.5 + 0 + 1) / 4,
        "HR@1": (0 + 1 + 0 + 1) / 4,
        "MRR@1": (0 + 1 + 0 + 1) / 4,
        "nDCG@1": (0 + 1 + 0 + 1) / 4,
        "gnDCG@1": (0 + g_b1 + 0 + 1) / 4,
    }
    # K=3: a/u1 hit b at 2; a/u2 hit e at 3; b hits d@1 a@2; d hits a@3; e hits a@1
    ndcg_a1 = L3 / (1 + L3)
    q_a = {"P": 1 / 3, "R": (0.5 + 1) / 2, "HR": 1, "MRR": (1 / 2 + 1 / 3) / 2,
           "nDCG": (ndcg_a1 + L4) / 2, "gnDCG": (15 * L3 / (15 + 15 * L3) + 31 * L4 / 31) / 2}
    q_b = {"P": 2 / 3, "R": 1, "HR": 1, "MRR": 1, "nDCG": 1,
           "gnDCG": (15 + 31 * L3) / (31 + 15 * L3)}
    q_d = {"P": 1 / 3, "R": 0.5, "HR": 1, "MRR": 1 / 3, "nDCG": L4 / (1 + L3),
           "gnDCG": 31 * L4 / (31 + 15 * L3)}
    q_e = {"P": 1 / 3, "R": 1, "HR": 1, "MRR": 1, "nDCG": 1, "gnDCG": 1}
    expected3 = {f"{m}@3": (q_a[m] + q_b[m] + q_d[m] + q_e[m]) / 4 for m in q_a}
    for name, value in {**expected1, **expected3}.items():
        assert got[name] == pytest.approx(value, abs=1e-12), name


def test_empty_slots_count_as_misses_and_precision_divides_by_k():
    rel = golden_relevance()
    short = TOPK.copy()
    short[:, 1:] = -1  # only one item per list
    got = accuracy_metrics(short, rel, ks=(3,))
    # hits only at rank 1: b (d) and e (a)
    assert got["P@3"] == pytest.approx((0 + 1 / 3 + 0 + 1 / 3) / 4)
    assert got["nDCG@3"] == pytest.approx((0 + 1 / (1 + L3) + 0 + 1) / 4)


def test_query_outside_candidates_keeps_its_relevant_set_whole():
    users = np.array([1, 1, 1])
    items = np.array(["q", "x", "y"])
    values = np.array([4.0, 5.0, 4.0])
    rel = build_relevance(users, items, values, ["q"], ["x", "y"], k_max=2)
    assert rel.n_relevant.tolist() == [2]
    got = accuracy_metrics(np.array([[1, 0]]), rel, ks=(2,))
    assert got["R@2"] == 1.0
    assert got["gnDCG@2"] == pytest.approx((15 + 31 * L3) / (31 + 15 * L3))


def test_user_with_no_other_liked_candidate_is_not_scored():
    users = np.array([1, 2, 2])
    items = np.array(["a", "a", "b"])
    rel = build_relevance(users, items, np.array([5.0, 4.0, 4.0]), ["a", "b"], ["a", "b"], k_max=1)
    # u1 liked only a: R(a, u1) is empty, the pair is left out; u2 liked a and b: both scored
    assert rel.pairs_without_relevant == 1
    assert sorted(zip(rel.pair_query.tolist(), rel.pair_user.tolist())) == [(0, 1), (1, 1)]
    got = accuracy_metrics(np.array([[1], [0]]), rel, ks=(1,))
    assert got["P@1"] == 1.0 and got["queries_scored"] == 2


def test_threshold_is_configurable():
    rel = build_relevance(np.array([1, 1]), np.array(["a", "b"]), np.array([3.0, 3.0]), ["a", "b"], ["a", "b"], k_max=1, threshold=3.0)
    assert rel.pair_query.size == 2


# ---- brute force -------------------------------------------------------------------------

def brute_force(topk, users, items, values, queries, cands, ks, threshold=4.0):
    """Per (query, user) loop straight from the DESIGN.md definitions."""
    per_query = brute_force_per_query(topk, users, items, values, queries, cands, ks, threshold)
    names = per_query[next(iter(per_query))].keys()
    return {m: sum(v[m] for v in per_query.values()) / len(per_query) for m in names}, len(per_query)


def brute_force_per_query(topk, users, items, values, queries, cands, ks, threshold=4.0):
    """{query: {metric: the mean over its scored (query, user) pairs}} for scored queries only."""
    rating = {}
    for u, i, r in zip(users, items, values):
        rating[(u, i)] = r
    liked = {}
    for (u, i), r in rating.items():
        if r >= threshold:
            liked.setdefault(u, set()).add(i)
    cset = set(cands)
    per_query = {}
    for qi, q in enumerate(queries):
        rows = []
        for u in sorted(liked):
            if q not in liked[u]:
                continue
            R = (liked[u] & cset) - {q}
            if not R:
                continue
            ranked = [cands[c] if c >= 0 else None for c in topk[qi]]
            row = {}
            for k in ks:
                top = ranked[:k]
                hit = [x in R for x in top]
                hits = sum(hit)
                row[f"P@{k}"] = hits / k
                row[f"R@{k}"] = hits / len(R)
                row[f"HR@{k}"] = float(hits > 0)
                row[f"MRR@{k}"] = next((1 / (j + 1) for j, h in enumerate(hit) if h), 0.0)
                dcg = sum(1 / math.log2(j + 2) for j, h in enumerate(hit) if h)
                idcg = sum(1 / math.log2(j + 2) for j in range(min(len(R), k)))
                row[f"nDCG@{k}"] = dcg / idcg
                gd = sum((2 ** rating[(u, x)] - 1) / math.log2(j + 2) for j, x in enumerate(top) if x in R)
                best = sorted((rating[(u, x)] for x in R), reverse=True)[:k]
                gi = sum((2 ** r - 1) / math.log2(j + 2) for j, r in enumerate(best))
                row[f"gnDCG@{k}"] = gd / gi
            rows.append(row)
        if rows:
            per_query[q] = {m: sum(r[m] for r in rows) / len(rows) for m in rows[0]}
    return per_query


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_vectorised_equals_brute_force_on_random_data(seed):
    rng = np.random.default_rng(seed)
    n_items, n_users, n_ratings = 60, 25, 600
    ids = np.array([f"m{i}" for i in range(n_items)])
    users = rng.integers(0, n_users, n_ratings) * 7 + 3  # non-contiguous user ids
    items = ids[rng.integers(0, n_items, n_ratings)]
    values = rng.choice([1.0, 2.0, 3.0, 3.5, 4.0, 4.5, 5.0], n_ratings)
    # deduplicate (user, item) so the brute force's dict and the evaluator agree trivially
    _, keep = np.unique(np.char.add(users.astype(str), np.char.add("|", items)), return_index=True)
    users, items, values = users[keep], items[keep], values[keep]
    queries = ids[rng.permutation(n_items)[:30]]
    cands = ids[np.sort(rng.permutation(n_items)[:40])]  # overlaps the queries partly
    ks = (1, 3, 5, 10)
    topk = np.stack([rng.permutation(len(cands))[:10] for _ in queries])
    topk[rng.random(topk.shape) < 0.05] = -1  # a few empty slots
    rel = build_relevance(users, items, values, queries, cands, k_max=10)
    got = accuracy_metrics(topk, rel, ks)
    want, n_scored = brute_force(topk, users, items, values, list(queries), list(cands), ks)
    assert got["queries_scored"] == n_scored
    for name, value in want.items():
        assert got[name] == pytest.approx(value, rel=1e-9, abs=1e-12), name


def test_pair_chunks_give_the_same_answer(monkeypatch):
    import cinefuse.metrics.metrics as metrics

    rng = np.random.default_rng(5)
    ids = np.array([str(i) for i in range(50)])
    users = rng.integers(0, 30, 700)
    items = ids[rng.integers(0, 50, 700)]
    values = rng.choice([3.0, 4.0, 5.0], 700)
    topk = np.stack([rng.permutation(50)[:5] for _ in range(50)])
    rel = build_relevance(users, items, values, ids, ids, k_max=5)
    whole = accuracy_metrics(topk, rel, (1, 5))
    monkeypatch.setattr(metrics, "PAIR_CHUNK", 7)
    assert accuracy_metrics(topk, rel, (1, 5)) == pytest.approx(whole)


# ---- beyond accuracy -------------------------------------------------------------------------

def test_coverage_diversity_novelty_golden():
    topk = np.array([[0, 1, 2], [0, 1, -1]])
    assert coverage(topk, 4, 1) == 0.25
    assert coverage(topk, 4, 3) == 0.75
    genres = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 1], [1, 1, 1]])
    # list 1: d(0,1)=1-1/2, d(0,2)=1, d(1,2)=1 -> mean 5/6; list 2: d(0,1) = 1/2
    assert genre_diversity(topk, genres, 3) == pytest.approx((5 / 6 + 1 / 2) / 2)
    assert genre_diversity(topk, genres, 2) == pytest.approx((1 / 2 + 1 / 2) / 2)
    assert math.isnan(genre_diversity(topk, genres, 1))
    no_genres = np.zeros((4, 3))
    assert genre_diversity(topk, no_genres, 3) == 0.0
    raters = np.array([7, 3, 0, 1])  # 7 users in all
    info = -np.log2((raters + 1) / 8)
    assert novelty(topk, raters, 7, 3) == pytest.approx(((info[0] + info[1] + info[2]) / 3 + (info[0] + info[1]) / 2) / 2)
    out = beyond_accuracy_metrics(topk, (1, 3), 4, genres, raters, 7)
    assert set(out) == {"Cov@1", "Div@1", "Nov@1", "Cov@3", "Div@3", "Nov@3"}
    assert out["Nov@1"] == pytest.approx(info[0])
