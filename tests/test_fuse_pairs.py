"""Pair and triplet builder: exact pair sets on hand-made ratings, splits, and ml-latest-small."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cinefuse.datasets.movielens import Movies, Ratings, load_movies, load_ratings
from cinefuse.errors import CinefuseError
from cinefuse.fuse.pairs import SOURCES, PairConfig, build_pairs, genre_masks, jaccard, make_split

GENRES = {"1": ["A", "B"], "2": ["A", "B"], "3": ["A"], "4": ["C"], "5": ["D"], "6": ["C", "D"]}
RATINGS = [  # user, item, rating
    (1, "1", 5), (1, "2", 4), (1, "3", 4), (1, "4", 1),
    (2, "4", 5), (2, "6", 5), (2, "1", 2),
    (3, "5", 4), (3, "3", 1), (3, "2", 1),
]


def hand_made():
    r = Ratings(np.array([u for u, _, _ in RATINGS], np.int64), np.array([i for _, i, _ in RATINGS], object),
                np.array([x for _, _, x in RATINGS], np.float32), np.zeros(len(RATINGS), np.int64))
    m = Movies(np.array(list(GENRES), object), [f"m{i}" for i in GENRES], list(GENRES.values()),
               np.full(len(GENRES), np.nan))
    return r, m


def as_sets(ps):
    named = lambda rows: {tuple(ps.ids[list(p)]) for p in rows}  # noqa: E731
    return named(ps.pairs[ps.labels == 1]), named(ps.pairs[ps.labels == 0])


def test_exact_pairs_on_hand_made_ratings():
    r, m = hand_made()
    ps = build_pairs(r, m, None, PairConfig(negative_ratio=1.5, min_pairs_per_item=2), seed=0)
    pos, neg = as_sets(ps)
    # co-liked by user 1 (Jaccard 1, .5, .5) and user 2 (Jaccard .5)
    assert pos == {("1", "2"), ("1", "3"), ("2", "3"), ("4", "6")}
    # disagreements with Jaccard 0: (1,4) twice, the rest once; (2,3) both disliked scores only .5
    assert neg == {("1", "4"), ("2", "4"), ("3", "4"), ("1", "6"), ("2", "5"), ("3", "5")}
    assert ps.stats["by_source"] == {"co-like": 4, "disagree": 6, "random": 0, "coverage": 0}
    assert ps.stats["positive_candidates"] == 4 and ps.stats["negative_candidates"] == 6
    # triplets: each positive both ways, the negative one of the anchor's negative partners
    assert len(ps.triplets) == 8
    neg_idx = {tuple(sorted(p)) for p in ps.pairs[ps.labels == 0].tolist()}
    pos_idx = {tuple(sorted(p)) for p in ps.pairs[ps.labels == 1].tolist()}
    for a, p, n in ps.triplets.tolist():
        assert tuple(sorted((a, p))) in pos_idx and tuple(sorted((a, n))) in neg_idx
    again = build_pairs(r, m, None, PairConfig(negative_ratio=1.5, min_pairs_per_item=2), seed=0)
    assert np.array_equal(again.pairs, ps.pairs) and np.array_equal(again.triplets, ps.triplets)


def test_strongest_negatives_kept_and_coverage_top_up():
    r, m = hand_made()
    ps = build_pairs(r, m, None, PairConfig(negative_ratio=0.25, min_pairs_per_item=0), seed=0)
    assert as_sets(ps)[1] == {("1", "4")}  # one negative wanted: the pair two users disagreed on
    ps = build_pairs(r, m, None, PairConfig(negative_ratio=1.5, min_pairs_per_item=3), seed=0)
    pos, _ = as_sets(ps)
    # items 5 and 6 sit in 2 pairs; their only genre positive partner left is each other
    assert ("5", "6") in pos and ps.stats["by_source"]["coverage"] == 1
    assert ps.stats["uncovered_slots"] == 1


def test_random_top_up_balances_negatives():
    r, m = hand_made()
    ps = build_pairs(r, m, None, PairConfig(negative_ratio=2.0, min_pairs_per_item=0), seed=3)
    _, neg = as_sets(ps)
    assert ps.stats["by_source"]["random"] == 2 and len(neg) == 8
    masks = genre_masks(m.genres)
    j = jaccard(masks[ps.pairs[:, 0]], masks[ps.pairs[:, 1]])
    assert (j[ps.labels == 0] <= 0.1).all() and (j[ps.labels == 1] >= 0.25).all()


def test_config_errors():
    r, m = hand_made()
    with pytest.raises(CinefuseError, match="negative_max_jaccard < positive_min_jaccard"):
        build_pairs(r, m, None, PairConfig(negative_max_jaccard=0.5, positive_min_jaccard=0.25), 0)
    with pytest.raises(CinefuseError, match="item '99' is not in the movies file"):
        build_pairs(r, m, ["1", "99"], PairConfig(), 0)


def test_splits_cold_item_and_pair(tmp_path):
    import sys
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
    from fuse_fixtures import write_movielens

    clusters = np.arange(60) % 3
    ratings_path, movies_path = write_movielens(tmp_path, 60, clusters, 40, seed=1)
    r, m = load_ratings(ratings_path), load_movies(movies_path)
    split = make_split(r, m, None, PairConfig(), "cold-item", seed=5)
    items = {part: set(split.items[part].tolist()) for part in ("train", "val", "test")}
    assert [len(items[p]) for p in ("train", "val", "test")] == [42, 9, 9]
    assert not (items["train"] & items["val"]) and not (items["train"] & items["test"])
    assert not (items["val"] & items["test"])
    assert items["train"] | items["val"] | items["test"] == set(r.item.tolist())
    for part in ("train", "val", "test"):  # no pair crosses parts
        ps = split.parts[part]
        used = set(split.ids[ps.pairs.reshape(-1)].tolist()) | set(split.ids[ps.triplets.reshape(-1)].tolist())
        assert used <= items[part]
    pair_split = make_split(r, m, None, PairConfig(), "pair", seed=5)
    sizes = [len(pair_split.parts[p].pairs) for p in ("train", "val", "test")]
    total = sum(sizes)
    assert sizes[0] == round(0.7 * total) and sizes[1] == round(0.15 * total)
    assert set(pair_split.items["test"].tolist()) & set(pair_split.items["train"].tolist())  # items shared


def brute_force_candidates(folder) -> tuple[int, pd.DataFrame, pd.DataFrame, dict]:
    """pandas from the csv files, independent of cinefuse's loaders and sparse products: the item
    universe, the co-like candidates (co-likes per unordered pair, genre Jaccard >= 0.25), the
    disagreement candidates (score per pair, Jaccard <= 0.1) and each item's genre set."""
    ratings = pd.read_csv(folder / "ratings.csv")
    movies = pd.read_csv(folder / "movies.csv")
    genres = {str(m): frozenset() if g == "(no genres listed)" else frozenset(g.split("|"))
              for m, g in zip(movies.movieId, movies.genres)}
    ratings = ratings[ratings.movieId.astype(str).isin(genres)]
    universe = sorted(set(ratings.movieId.astype(str)))
    vocab = sorted(set().union(*genres.values()))
    hot = pd.DataFrame([[g in genres[m] for g in vocab] for m in universe], index=universe, columns=vocab)

    def jaccard(i: pd.Series, j: pd.Series) -> np.ndarray:
        a, b = hot.loc[i].to_numpy(), hot.loc[j].to_numpy()
        inter, union = (a & b).sum(1), (a | b).sum(1)
        return np.where(union > 0, inter / np.maximum(union, 1), 0.0)

    def by_pair(left: pd.DataFrame, right: pd.DataFrame, weight: float) -> pd.DataFrame:
        m = left.merge(right, on="userId")
        m = m[m.movieId_x != m.movieId_y]
        i, j = m.movieId_x.astype(str), m.movieId_y.astype(str)
        key = pd.DataFrame({"i": np.where(i < j, i, j), "j": np.where(i < j, j, i)})
        return key.groupby(["i", "j"]).size().mul(weight).rename("n").reset_index()

    likes = ratings.loc[ratings.rating >= 4.0, ["userId", "movieId"]]
    dislikes = ratings.loc[ratings.rating <= 2.0, ["userId", "movieId"]]
    co = by_pair(likes, likes, 0.5)                  # each unordered pair met twice per user
    co = co[jaccard(co.i, co.j) >= 0.25]
    score = pd.concat([by_pair(likes, dislikes, 1.0), by_pair(dislikes, dislikes, 0.5 * 0.5)])
    score = score.groupby(["i", "j"]).n.sum().reset_index()
    score = score[(score.n >= 1.0)]
    score = score[jaccard(score.i, score.j) <= 0.1]
    return len(universe), co, score, {m: genres[m] for m in universe}


@pytest.mark.slow  # ~17 s on the real ratings; make test-all runs it
def test_ml_latest_small_counts(movielens_small):
    """The builder's counts and choices on real MovieLens, against a pandas brute force."""
    r, m = load_ratings(movielens_small), load_movies(movielens_small)
    ps = build_pairs(r, m, None, PairConfig(), seed=0)
    n_items, co, score, genres = brute_force_candidates(movielens_small)
    assert ps.stats["items"] == n_items
    assert ps.stats["positive_candidates"] == len(co) and ps.stats["negative_candidates"] == len(score)
    ids = ps.ids.astype(str)
    frame = pd.DataFrame({"i": ids[ps.pairs[:, 0]], "j": ids[ps.pairs[:, 1]], "label": ps.labels,
                          "source": np.array(SOURCES)[ps.source]})
    swap = frame.i > frame.j
    frame.loc[swap, ["i", "j"]] = frame.loc[swap, ["j", "i"]].to_numpy()
    assert not frame.duplicated(["i", "j"]).any()
    # max_positives = 200,000 kept by most co-likes: every kept pair a candidate, none left out
    # with more co-likes than the fewest kept
    kept = frame[frame.source == "co-like"].merge(co, on=["i", "j"], how="left")
    assert len(kept) == 200_000 and kept.n.notna().all() and (kept.label == 1).all()
    left_out = co.merge(kept[["i", "j"]], on=["i", "j"], how="left", indicator=True)
    left_out = left_out[left_out._merge == "left_only"]
    assert len(left_out) == len(co) - 200_000 and left_out.n.max() <= kept.n.min()
    # negatives: as many as positives (negative_ratio 1), the highest disagreement scores
    kept = frame[frame.source == "disagree"].merge(score, on=["i", "j"], how="left")
    assert len(kept) == 200_000 and kept.n.notna().all() and (kept.label == 0).all()
    left_out = score.merge(kept[["i", "j"]], on=["i", "j"], how="left", indicator=True)
    left_out = left_out[left_out._merge == "left_only"]
    assert left_out.n.max() <= kept.n.min()
    assert ps.stats["by_source"] == {"co-like": 200_000, "disagree": 200_000, "random": 0,
                                     "coverage": len(frame) - 400_000}
    assert ps.stats["pairs"] == len(frame) and ps.stats["positives"] == int(frame.label.sum())

    def jac(a, b):
        return len(genres[a] & genres[b]) / len(genres[a] | genres[b]) if genres[a] | genres[b] else 0.0

    # coverage pairs keep the genre rules and touch an item short of min_pairs_per_item (2)
    before = pd.concat([frame[frame.source != "coverage"].i, frame[frame.source != "coverage"].j]).value_counts()
    short = {m for m in genres if before.get(m, 0) < 2}
    for i, j, label in frame.loc[frame.source == "coverage", ["i", "j", "label"]].itertuples(index=False):
        assert i in short or j in short
        assert jac(i, j) >= 0.25 if label == 1 else jac(i, j) <= 0.1
    # items still short are counted, not hidden (films without genres, for which no genre-positive
    # partner exists, and rare genre sets that 32 random draws missed)
    after = pd.concat([frame.i, frame.j]).value_counts()
    still_short = [m for m in genres if after.get(m, 0) < 2]
    assert ps.stats["items_below_min_pairs"] == len(still_short) > 0
    assert all(m in short for m in still_short)
