"""Co-preference targets against brute force on a tiny rating table: likes, co-like partners
(Jaccard and PMI, the co-rated fallback), user histories, EASE, teacher vectors, prior targets."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest

from cinefuse.errors import CinefuseError
from cinefuse.fuse.targets import (
    TargetConfig,
    build_targets,
    co_like_partners,
    ease,
    prior_targets,
    teacher_vectors,
    user_histories,
)
from cinefuse.metrics.likes import like_matrix


def tiny_ratings(seed=0, n_users=30, n_items=14, n=220):
    rng = np.random.default_rng(seed)
    users = rng.integers(0, n_users, n) * 7 + 3          # raw user ids not 0..U-1
    items = np.array([f"m{i}" for i in rng.integers(0, n_items, n)], dtype=object)
    ratings = rng.choice(np.arange(1, 11) / 2.0, n).astype(np.float32)
    # two items only ever rated low (no likes): the co-rated fallback
    low = np.isin(items, ["m12", "m13"])
    ratings[low] = np.minimum(ratings[low], 3.0)
    item_ids = np.array([f"m{i}" for i in range(n_items)] + ["never_rated"], dtype=object)
    return users, items, ratings, item_ids


def brute_sets(users, items, ratings, item_ids, threshold):
    df = pd.DataFrame({"u": users, "i": items, "r": ratings}).drop_duplicates(["u", "i"], keep="last")
    df = df[df.i.isin(set(item_ids)) & (df.r >= threshold)]
    return {i: set(df.u[df.i == i]) for i in item_ids}, sorted(set(df.u))


def brute_association(sets, n_users, kind, min_co):
    ids = list(sets)
    out = {}
    for a, b in itertools.permutations(range(len(ids)), 2):
        sa, sb = sets[ids[a]], sets[ids[b]]
        c = len(sa & sb)
        if c < min_co or c == 0:
            continue
        score = c / len(sa | sb) if kind == "jaccard" else math.log(c * n_users / (len(sa) * len(sb)))
        if score > 0:
            out[(a, b)] = score
    return out


def test_like_matrix_matches_pandas():
    users, items, ratings, item_ids = tiny_ratings()
    # a repeated rating: the last one counts (a like turned into a dislike)
    users = np.concatenate([users, [users[0]]])
    items = np.concatenate([items, [items[0]]])
    ratings = np.concatenate([ratings, [1.0]]).astype(np.float32)
    L = like_matrix(users, items, ratings, item_ids, 4.0)
    sets, liked_users = brute_sets(users, items, ratings, item_ids, 4.0)
    assert L.user_ids.tolist() == liked_users
    got = {i: set(L.user_ids[L.X[:, c].nonzero()[0]].tolist()) for c, i in enumerate(item_ids)}
    assert got == sets
    assert users[0] not in got[items[0]]
    assert L.like_counts.tolist() == [len(sets[i]) for i in item_ids]


@pytest.mark.parametrize("kind", ["jaccard", "pmi"])
@pytest.mark.parametrize("min_co", [1, 2])
def test_co_like_partners_match_brute_force(kind, min_co):
    users, items, ratings, item_ids = tiny_ratings()
    L = like_matrix(users, items, ratings, item_ids, 4.0)
    sets, liked_users = brute_sets(users, items, ratings, item_ids, 4.0)
    ref = brute_association(sets, len(liked_users), kind, min_co)
    n_partners = 4
    p = co_like_partners(L.X, n_partners, kind, min_co, seed=3)
    assert p.idx.shape == p.weight.shape == p.mask.shape == (len(item_ids), n_partners)
    for a in range(len(item_ids)):
        row = sorted(((s, b) for (x, b), s in ref.items() if x == a), reverse=True)
        got = [(float(w), int(b)) for b, w, m in zip(p.idx[a], p.weight[a], p.mask[a]) if m]
        assert len(got) == min(n_partners, len(row))
        # best first; the chosen scores are the top scores, each the brute-force score of its pair
        assert [w for w, _ in got] == sorted((w for w, _ in got), reverse=True)
        np.testing.assert_allclose([w for w, _ in got], [s for s, _ in row[:len(got)]], rtol=1e-6)
        for w, b in got:
            assert ref[(a, b)] == pytest.approx(w, rel=1e-6)
        assert p.source[a] == (0 if row else 2)
    assert not p.mask[p.source == 2].any()
    assert (p.idx[~p.mask] == 0).all() and (p.weight[~p.mask] == 0).all()


def test_co_rated_fallback_for_items_nobody_liked():
    users, items, ratings, item_ids = tiny_ratings()
    L = like_matrix(users, items, ratings, item_ids, 4.0)
    R = like_matrix(users, items, ratings, item_ids, -np.inf)
    p = co_like_partners(L.X, 4, "jaccard", 1, seed=0, rated=R.X)
    rated_sets, rated_users = brute_sets(users, items, ratings, item_ids, -np.inf)
    ref = brute_association(rated_sets, len(rated_users), "jaccard", 1)
    col = {i: k for k, i in enumerate(item_ids)}
    for name in ("m12", "m13"):
        a = col[name]
        assert p.source[a] == 1
        row = sorted((s for (x, _), s in ref.items() if x == a), reverse=True)
        np.testing.assert_allclose(p.weight[a][p.mask[a]], row[:4], rtol=1e-6)
    assert p.source[col["never_rated"]] == 2 and not p.mask[col["never_rated"]].any()
    assert col["never_rated"] not in p.anchors and set(p.anchors) == set(np.flatnonzero(p.source < 2))


def test_partner_ties_follow_the_seed_not_the_id():
    # every pair of items is co-liked by exactly the same two users: all scores tie
    users = np.repeat([1, 2], 12)
    items = np.array([f"m{i}" for i in range(12)] * 2, dtype=object)
    ratings = np.full(24, 5.0, np.float32)
    L = like_matrix(users, items, ratings, np.array([f"m{i}" for i in range(12)], dtype=object))
    a = co_like_partners(L.X, 3, "jaccard", 1, seed=0)
    b = co_like_partners(L.X, 3, "jaccard", 1, seed=0)
    c = co_like_partners(L.X, 3, "jaccard", 1, seed=1)
    assert np.array_equal(a.idx, b.idx)
    assert not np.array_equal(a.idx, c.idx)
    # not the lowest ids first (what a sort by id would give)
    lowest = np.array([[j for j in range(12) if j != i][:3] for i in range(12)])
    assert not np.array_equal(a.idx, lowest)


def test_user_histories_sorted_padded_and_capped():
    users, items, ratings, item_ids = tiny_ratings()
    L = like_matrix(users, items, ratings, item_ids, 4.0)
    n_items = len(item_ids)
    h = user_histories(L.X, cap=100, seed=0)
    for u in range(L.X.shape[0]):
        liked = sorted(L.X[u].nonzero()[1].tolist())
        assert h.lengths[u] == len(liked)
        assert h.items[u, :len(liked)].tolist() == liked
        assert (h.items[u, len(liked):] == n_items).all()
    assert h.items.shape[1] == max(np.diff(L.X.indptr)) and h.truncated_users == 0
    cap = 3
    hc = user_histories(L.X, cap=cap, seed=0)
    assert hc.items.shape[1] == cap
    assert hc.truncated_users == int((np.diff(L.X.indptr) > cap).sum()) > 0
    for u in range(L.X.shape[0]):
        liked = set(L.X[u].nonzero()[1].tolist())
        row = hc.items[u, :hc.lengths[u]].tolist()
        assert row == sorted(row) and set(row) <= liked and len(row) == min(cap, len(liked))
    assert np.array_equal(user_histories(L.X, cap=cap, seed=0).items, hc.items)
    # one truncated row of 4 likes here: a single other seed may keep the same 3 (1 in 4)
    assert any(not np.array_equal(user_histories(L.X, cap=cap, seed=s).items, hc.items) for s in range(1, 6))


@pytest.mark.parametrize("n_users", [8, 60])  # fewer users than items (Woodbury) and more
def test_ease_matches_the_closed_form(n_users):
    rng = np.random.default_rng(n_users)
    dense = (rng.random((n_users, 20)) < 0.3).astype(np.float64)
    dense[:, 5] = 0.0  # an item nobody liked
    import scipy.sparse as sp

    lam = 3.0
    B = ease(sp.csr_matrix(dense), lam)
    P = np.linalg.inv(dense.T @ dense + lam * np.eye(20))
    ref = np.eye(20) - P / np.diag(P)[None, :]
    np.fill_diagonal(ref, 0.0)
    np.testing.assert_allclose(B, ref, atol=1e-6)
    assert (B[5] == 0).all() and (B[:, 5] == 0).all() and (np.diag(B) == 0).all()


def test_teacher_vectors_are_the_top_singular_directions():
    import scipy.sparse as sp

    rng = np.random.default_rng(0)
    dense = (rng.random((40, 25)) < 0.3).astype(np.float64)
    v = teacher_vectors(sp.csr_matrix(dense), dim=5, seed=0)
    _, s, vt = np.linalg.svd(dense)
    ref = vt[:5].T * s[:5]
    ref *= np.sign(ref[np.abs(ref).argmax(axis=0), np.arange(5)])
    np.testing.assert_allclose(v, ref, atol=1e-4)
    np.testing.assert_array_equal(v, teacher_vectors(sp.csr_matrix(dense), dim=5, seed=0))


def test_prior_targets_standardise_log_counts():
    counts = np.array([0, 1, 3, 10, 100])
    z, mean, std = prior_targets(counts)
    ref = np.log1p(counts)
    assert mean == pytest.approx(ref.mean()) and std == pytest.approx(ref.std())
    np.testing.assert_allclose(z, (ref - ref.mean()) / ref.std(), rtol=1e-6)


def test_build_targets_bundle_and_bad_config():
    users, items, ratings, item_ids = tiny_ratings()
    t = build_targets(users, items, ratings, item_ids, TargetConfig(n_partners=4, teacher_dim=3, ease_lambda=2.0))
    assert t.ease.shape == (len(item_ids),) * 2 and t.teacher.shape == (len(item_ids), 3)
    assert t.stats["partner_source"] == {"co-like": 12, "co-rated": 2, "none": 1}
    assert t.stats["items_without_likes"] == 3
    assert set(t.seconds) == {"likes", "partners", "histories", "ease", "teacher_vectors", "prior"}
    with pytest.raises(CinefuseError, match=r"^targets: association 'cosine' is unknown; use one of jaccard, pmi$"):
        build_targets(users, items, ratings, item_ids, TargetConfig(association="cosine"))


def test_teacher_vectors_on_a_catalogue_smaller_than_dim_are_zero_padded():
    """12 items, dim 64: the 11 singular directions there are, then zero columns, so the distill
    kernel keeps its configured (dim, embed) shape on any catalogue."""
    import scipy.sparse as sp

    rng = np.random.default_rng(1)
    dense = (rng.random((30, 12)) < 0.4).astype(np.float64)
    v = teacher_vectors(sp.csr_matrix(dense), dim=64, seed=0)
    assert v.shape == (12, 64)
    _, s, vt = np.linalg.svd(dense)
    ref = vt[:11].T * s[:11]
    ref *= np.sign(ref[np.abs(ref).argmax(axis=0), np.arange(11)])
    np.testing.assert_allclose(v[:, :11], ref, atol=1e-4)
    assert not v[:, 11:].any()


def test_ease_refuses_a_matrix_the_machine_cannot_hold():
    import scipy.sparse as sp

    from cinefuse.fuse.targets import ease_bytes

    X = sp.csr_matrix((np.random.default_rng(0).random((10, 50)) < 0.3).astype(np.float32))
    liked = int((np.asarray(X.sum(axis=0)).ravel() > 0).sum())
    need = ease_bytes(50, liked)
    assert need == 4 * 50 ** 2 + 24 * liked ** 2
    with pytest.raises(CinefuseError, match=r'teacher = "ease" needs a dense 50 x 50 matrix .* set \[objective\] '
                                            r'teacher = "svd"'):
        ease(X, 10.0, memory_bytes=need)  # 80% of it is not enough
    assert ease(X, 10.0, memory_bytes=2 * need).shape == (50, 50)


def test_one_rating_index_serves_every_threshold():
    from cinefuse.metrics.likes import index_ratings

    users, items, ratings, item_ids = tiny_ratings()
    # an id the catalogue lacks and a missing id: neither becomes a column
    users = np.concatenate([users, [3, 10]])
    items = np.concatenate([items, ["not_in_catalogue", None]]).astype(object)
    ratings = np.concatenate([ratings, [5.0, 5.0]]).astype(np.float32)
    index = index_ratings(users, items, ratings, item_ids)
    for threshold in (4.0, -np.inf, 2.5):
        got = index.matrix(threshold)
        sets, row_users = brute_sets(users[:-2], items[:-2], ratings[:-2], item_ids, threshold)
        assert got.user_ids.tolist() == row_users
        assert {i: set(got.user_ids[got.X[:, c].nonzero()[0]].tolist()) for c, i in enumerate(item_ids)} == sets
        assert got.X.has_canonical_format and got.X.dtype == np.float32
