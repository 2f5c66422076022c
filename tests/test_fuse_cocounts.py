"""The heavy-user cap on co-counts (cinefuse.fuse.cocounts) and the blocked top-N partners built
on it, against brute force: the cap is the largest within the budget, a capped row keeps a seeded
random subset of itself, partners over a capped matrix are the brute-force partners of exactly
that matrix, and cutting the co-counts into blocks changes nothing."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from cinefuse.errors import CinefuseError
from cinefuse.fuse.cocounts import co_count_cap, down_sample_rows, random_ranks
from cinefuse.fuse.pairs import PairConfig, build_pairs
from cinefuse.fuse.targets import co_like_partners, top_associated


def random_likes(seed=0, n_users=40, n_items=30, density=0.25, heavy=4):
    rng = np.random.default_rng(seed)
    dense = rng.random((n_users, n_items)) < density
    dense[:heavy] = rng.random((heavy, n_items)) < 0.9  # a few users who like almost everything
    return sp.csr_matrix(dense.astype(np.float32))


def brute_scores(dense: np.ndarray) -> dict:
    """Jaccard of every co-liked pair (a, b), a != b, brute force over the columns' user sets."""
    sets = [set(np.flatnonzero(dense[:, i])) for i in range(dense.shape[1])]
    return {(a, b): len(sets[a] & sets[b]) / len(sets[a] | sets[b])
            for a in range(len(sets)) for b in range(len(sets)) if a != b and sets[a] & sets[b]}


@pytest.mark.parametrize("budget", [50.0, 400.0, 3000.0, 1e9])
def test_co_count_cap_is_the_largest_within_the_budget(budget):
    lengths = np.array([1, 2, 3, 5, 8, 13, 21, 34, 55, 89])
    cap = co_count_cap(lengths, budget)
    total = lambda m: float((np.minimum(lengths, m) ** 2).sum())  # noqa: E731
    if total(lengths.max()) <= budget:
        assert cap is None
    else:
        assert cap is not None
        # the floor of 8 may overshoot a tiny budget; otherwise m fits and m + 1 does not
        assert cap == 8 if total(8) > budget else (total(cap) <= budget < total(cap + 1))
    assert co_count_cap(np.zeros(0), budget) is None


def test_random_ranks_are_a_seeded_permutation_within_each_group():
    group = np.array([3, 1, 3, 3, 1, 7, 3, 1, 3])
    ranks = random_ranks(group, [0, 1])
    for g in np.unique(group):
        assert sorted(ranks[group == g].tolist()) == list(range(int((group == g).sum())))
    assert np.array_equal(ranks, random_ranks(group, [0, 1]))
    # every member of a group of 5 is kept (rank < 2) about 2/5 of the time over many seeds
    kept = np.mean([random_ranks(group, [s, 1])[group == 3] < 2 for s in range(2000)], axis=0)
    np.testing.assert_allclose(kept, 0.4, atol=0.04)


def test_down_sample_rows_keeps_the_rarest_entries_of_each_long_row():
    X = random_likes()
    lengths = np.diff(X.indptr)
    counts = np.bincount(X.indices, minlength=X.shape[1])
    Xc = down_sample_rows(X, 10, seed=0)
    assert np.array_equal(np.diff(Xc.indptr), np.minimum(lengths, 10))
    assert (X.multiply(Xc) != Xc).nnz == 0  # a subset, entry by entry
    short = lengths <= 10
    assert (X[short] != Xc[short]).nnz == 0  # rows within the cap are untouched
    assert Xc.has_sorted_indices and all(np.all(np.diff(Xc.indices[a:b]) > 0) for a, b in zip(Xc.indptr, Xc.indptr[1:]))
    for u in np.flatnonzero(~short):
        kept = set(Xc[u].indices.tolist())
        dropped = set(X[u].indices.tolist()) - kept
        assert max(counts[list(kept)]) <= min(counts[list(dropped)])  # the rarest items stay
    # the seed only orders equally rare items: other seeds keep other items among the ties
    assert any((down_sample_rows(X, 10, seed=s) != Xc).nnz > 0 for s in range(1, 6))
    assert (down_sample_rows(X, 10, seed=0) != Xc).nnz == 0
    assert (down_sample_rows(X, None, 0) != X).nnz == 0


def test_random_ranks_follow_the_priority_then_the_seed():
    group = np.array([0, 0, 0, 0, 1, 1])
    priority = np.array([5, 1, 5, 3, 2, 2])
    ranks = random_ranks(group, [0, 1], priority)
    assert ranks[1] == 0 and ranks[3] == 1 and {ranks[0], ranks[2]} == {2, 3} and {ranks[4], ranks[5]} == {0, 1}
    orders = {tuple(random_ranks(group, [s, 1], priority)) for s in range(20)}
    assert len(orders) == 4  # the two ties of each group fall both ways
    # group ids too wide for one 64-bit key take the lexsort path: the same rule
    wide = random_ranks(group + 2 ** 45, [0, 1], priority)
    assert wide[1] == 0 and wide[3] == 1 and {wide[0], wide[2]} == {2, 3}


def test_partners_over_budget_are_the_brute_force_partners_of_the_capped_likes():
    X = random_likes()
    exact_products = float((np.diff(X.indptr).astype(float) ** 2).sum())
    budget = exact_products / 4
    p = co_like_partners(X, 5, "jaccard", 1, seed=2, budget=budget)
    cap = co_count_cap(np.diff(X.indptr), budget)
    assert p.co_cap == cap is not None and p.capped_users == int((np.diff(X.indptr) > cap).sum()) > 0
    ref = brute_scores(down_sample_rows(X, cap, 2).toarray() > 0)
    for a in range(X.shape[1]):
        best = sorted((s for (x, _), s in ref.items() if x == a), reverse=True)[:5]
        np.testing.assert_allclose(p.weight[a][p.mask[a]], best, rtol=1e-6)
        for w, b in zip(p.weight[a][p.mask[a]], p.idx[a][p.mask[a]]):
            assert ref[(a, int(b))] == pytest.approx(float(w), rel=1e-6)
    exact = co_like_partners(X, 5, "jaccard", 1, seed=2)
    assert exact.co_cap is None and exact.capped_users == 0
    assert not np.array_equal(exact.weight, p.weight)


@pytest.mark.parametrize("kind", ["jaccard", "pmi"])
def test_blocks_of_any_size_give_the_same_partners(kind):
    X = random_likes(seed=4)
    rows = np.arange(X.shape[1])
    whole = top_associated(X, rows, 6, kind, 1, seed=3, chunk_products=1 << 40)
    for chunk in (1, 50, 700):
        parts = top_associated(X, rows, 6, kind, 1, seed=3, chunk_products=chunk)
        for a, b in zip(whole, parts):
            assert np.array_equal(a, b)
    # a subset of rows: the same rows of the whole
    sub = np.array([7, 2, 19])
    for a, b in zip(whole, top_associated(X, sub, 6, kind, 1, seed=3, chunk_products=1)):
        assert np.array_equal(a[sub], b)


def test_pairs_cap_heavy_raters_over_the_budget():
    from cinefuse.datasets.movielens import Movies, Ratings

    rng = np.random.default_rng(0)
    n_users, n_items = 30, 40
    users = np.repeat(np.arange(n_users), 25)
    items = np.concatenate([rng.choice(n_items, 25, replace=False) for _ in range(n_users)])
    rating = rng.choice([1.0, 2.0, 4.0, 5.0], len(users)).astype(np.float32)
    ids = np.array([str(i) for i in range(n_items)], dtype=object)
    genres = [["Drama"] if i % 2 else ["Drama", "Comedy"] for i in range(n_items)]
    ratings = Ratings(users, ids[items], rating, np.zeros(len(users), np.int64))
    movies = Movies(ids, [f"F{i}" for i in ids], genres, np.full(n_items, np.nan))
    exact = build_pairs(ratings, movies, None, PairConfig(), seed=0)
    assert exact.stats["co_cap"] is None
    capped = build_pairs(ratings, movies, None, PairConfig(max_co_products=30 * 12 ** 2), seed=0)
    assert capped.stats["co_cap"] == 12
    assert capped.stats["positive_candidates"] < exact.stats["positive_candidates"]
    # a capped co-count only drops votes: every capped positive candidate is a true co-like
    df = pd.DataFrame({"u": users, "i": items, "r": rating})
    liked = df[df.r >= 4.0]
    co = liked.merge(liked, on="u")
    true_pairs = set(zip(co.i_x, co.i_y))
    pos = capped.pairs[(capped.labels == 1) & (capped.source == 0)]
    assert len(pos) and all((int(capped.ids[a]), int(capped.ids[b])) in true_pairs for a, b in pos)
    with pytest.raises(CinefuseError, match="max_co_products must be > 0"):
        PairConfig(max_co_products=0).validate()


def test_the_co_rated_fallback_stays_exact_while_its_own_rows_fit_the_budget():
    X = random_likes(seed=5)
    X = X.tolil()
    X[:, 3] = 0  # an item nobody liked ...
    X = X.tocsr()
    X.eliminate_zeros()
    rated = X.tolil()
    rated[[10, 11], 3] = 1  # ... that two users rated
    rated = rated.tocsr()
    like_products = float((np.diff(X.indptr).astype(float) ** 2).sum())
    lonely_products = float(np.diff(rated.indptr)[[10, 11]].sum())
    assert lonely_products < like_products / 4
    p = co_like_partners(X, 5, "jaccard", 1, seed=0, rated=rated, budget=like_products / 4)
    assert p.co_cap is not None and p.rated_cap is None and p.source[3] == 1
    exact = co_like_partners(X, 5, "jaccard", 1, seed=0, rated=rated)
    np.testing.assert_array_equal(p.weight[3], exact.weight[3])
    tight = co_like_partners(X, 5, "jaccard", 1, seed=0, rated=rated, budget=lonely_products / 2)
    assert tight.rated_cap is not None
