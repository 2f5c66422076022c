"""Training pairs and triplets from ratings, and the item / pair splits.

Definitions (every threshold is a :class:`PairConfig` field):

- *liked*: rating >= ``like_threshold`` (4.0); *disliked*: rating <= ``dislike_threshold`` (2.0).
- *genre Jaccard* of two items: |G_i & G_j| / |G_i | G_j| over their MovieLens genres (0 when
  both have none).
- **positive** (label 1, source ``co-like``): at least ``min_co_likes`` users liked both, and
  Jaccard >= ``positive_min_jaccard``. When there are more than ``max_positives`` the pairs with the
  most co-likes are kept (ties broken at random for the seed).
- **negative** (label 0, source ``disagree``): score = (#users who liked one and disliked the
  other) + ``both_disliked_weight`` x (#users who disliked both) >= ``min_negative_score``, and
  Jaccard <= ``negative_max_jaccard``. The highest scores are kept, up to ``negative_ratio`` x the
  number of positives; when there are fewer, random pairs with Jaccard <= ``negative_max_jaccard``
  top them up (source ``random``).
- **coverage**: an item in fewer than ``min_pairs_per_item`` pairs gets random partners, alternately
  a genre positive (Jaccard >= ``positive_min_jaccard``) and a negative, until it has enough
  (source ``coverage``); slots no partner can fill are counted in ``stats["uncovered_slots"]``.
- **triplets**: each positive (a, p), in both orientations, with a negative n of a (one of a's
  negative partners at random, else a random item with Jaccard <= ``negative_max_jaccard``).

Everything is vectorised: co-like and disagreement counts are sparse products of the user x item
like/dislike matrices (``L.T @ L``), genres are 64-bit masks compared with popcount. The same
inputs and seed give the same pairs, bit for bit. Those products cost sum_u (likes_u +
dislikes_u)^2; above ``max_co_products`` each heavy user keeps only their rarest liked and
disliked items for the counts (:func:`cinefuse.fuse.cocounts.keep_rarest`, ``stats["co_cap"]``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp

from cinefuse.errors import CinefuseError
from cinefuse.fuse.cocounts import CO_PRODUCTS_BUDGET, co_count_cap, keep_rarest
from cinefuse.genres import genre_vocabulary, jaccard, pack_genre_bits
from cinefuse.metrics.likes import factorize_items, item_columns
from cinefuse.metrics.ranking import sort_ids
from cinefuse.choices import SPLIT_PROTOCOLS

SOURCES = ("co-like", "disagree", "random", "coverage")
PARTS = ("train", "val", "test")
FRACTIONS = (0.7, 0.15, 0.15)  # the default cut of the items into PARTS (:func:`cut_in_three`)


@dataclass
class PairConfig:
    like_threshold: float = 4.0
    dislike_threshold: float = 2.0
    positive_min_jaccard: float = 0.25
    negative_max_jaccard: float = 0.1
    min_co_likes: int = 1
    both_disliked_weight: float = 0.5
    min_negative_score: float = 1.0
    negative_ratio: float = 1.0
    max_positives: int = 200_000  # 0: keep every positive
    min_pairs_per_item: int = 2
    sampling_rounds: int = 32  # rejection-sampling rounds for random partners
    # co-count products (sum over users of (likes + dislikes)^2) counted exactly; above it each
    # heavy user keeps only their rarest rated items (cinefuse.fuse.cocounts.keep_rarest)
    max_co_products: float = CO_PRODUCTS_BUDGET

    def validate(self) -> None:
        if not 0.0 <= self.negative_max_jaccard < self.positive_min_jaccard <= 1.0:
            raise CinefuseError(
                "pairs: need 0 <= negative_max_jaccard < positive_min_jaccard <= 1 "
                f"(got {self.negative_max_jaccard} and {self.positive_min_jaccard}); fix [pairs] in the config"
            )
        if self.dislike_threshold >= self.like_threshold:
            raise CinefuseError(
                f"pairs: dislike_threshold {self.dislike_threshold} must be below like_threshold "
                f"{self.like_threshold}; fix [pairs] in the config"
            )
        if self.negative_ratio < 0 or self.min_pairs_per_item < 0 or self.max_positives < 0:
            raise CinefuseError("pairs: negative_ratio, min_pairs_per_item and max_positives must be >= 0")
        if not self.max_co_products > 0:
            raise CinefuseError(f"pairs: max_co_products must be > 0 (got {self.max_co_products})")


@dataclass
class PairSet:
    """Pairs over ``ids``: ``pairs`` (P, 2) int32 rows into ``ids`` with i < j, ``labels`` 1/0,
    ``source`` an index into :data:`SOURCES`, ``triplets`` (Q, 3) (anchor, positive, negative)."""

    ids: np.ndarray
    pairs: np.ndarray
    labels: np.ndarray
    source: np.ndarray
    triplets: np.ndarray
    stats: dict = field(default_factory=dict)


# -- genres -------------------------------------------------------------------------------------
def genre_masks(genres: Sequence[Sequence[str]]) -> np.ndarray:
    """Each item's genres as one uint64 mask (:func:`cinefuse.genres.pack_genre_bits`)."""
    n_genres = len(genre_vocabulary(genres))
    if n_genres > 64:
        raise CinefuseError(f"pairs: {n_genres} distinct genres; at most 64 are supported")
    return pack_genre_bits(genres, np.uint64)[:, 0]


# -- the builder --------------------------------------------------------------------------------
def _user_item(users: np.ndarray, cols: np.ndarray, n_users: int, n_items: int) -> sp.csr_matrix:
    m = sp.csr_matrix((np.ones(len(users), np.float32), (users, cols)), shape=(n_users, n_items))
    m.sum_duplicates()
    m.data[:] = 1.0
    return m


def _upper(m: sp.spmatrix) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    coo = sp.triu(m, k=1, format="coo")
    return coo.row.astype(np.int64), coo.col.astype(np.int64), coo.data


def _top(order_key: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """Indices (ascending) of the ``count`` largest keys, ties broken at random for the seed:
    every key above the count-th largest value, and a random draw among those equal to it
    (O(n) through ``np.partition``; 47M candidate pairs at 20M ratings)."""
    if count >= len(order_key):
        return np.arange(len(order_key))
    if count <= 0:
        return np.zeros(0, np.int64)
    cut = np.partition(order_key, len(order_key) - count)[len(order_key) - count]
    above = np.flatnonzero(order_key > cut)
    tied = np.flatnonzero(order_key == cut)
    chosen = rng.choice(tied, count - len(above), replace=False)
    return np.sort(np.concatenate([above, chosen]))


def _sample_partners(anchors: np.ndarray, want_positive: np.ndarray, masks: np.ndarray, taken: set,
                     n: int, cfg: PairConfig, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random partner per slot meeting its genre condition; (i, j, filled) with i < j."""
    partner = np.full(len(anchors), -1, dtype=np.int64)
    open_slots = np.arange(len(anchors))
    for _ in range(cfg.sampling_rounds):
        if len(open_slots) == 0 or n < 2:
            break
        cand = rng.integers(0, n, size=len(open_slots))
        a = anchors[open_slots]
        j = jaccard(masks[a], masks[cand])
        ok = np.where(want_positive[open_slots], j >= cfg.positive_min_jaccard, j <= cfg.negative_max_jaccard)
        ok &= cand != a
        for slot, c, good in zip(open_slots.tolist(), cand.tolist(), ok.tolist()):
            if not good:
                continue
            key = (min(anchors[slot], c), max(anchors[slot], c))
            if key in taken:
                continue
            taken.add(key)
            partner[slot] = c
        open_slots = open_slots[partner[open_slots] < 0]
    filled = partner >= 0
    i = np.minimum(anchors, partner)
    j = np.maximum(anchors, partner)
    return i[filled], j[filled], filled


def build_pairs(ratings, movies, items: Sequence[str] | None, cfg: PairConfig, seed: int) -> PairSet:
    """Pairs and triplets among ``items`` (default: every rated movie that ``movies`` lists).

    Steps, in the order they draw from the seeded generator: the items and their genre masks
    (:func:`_pair_universe`), the like / dislike matrices (:func:`_vote_matrices`), positives
    (:func:`_positive_pairs`), negatives and their random top-up (:func:`_negative_pairs`),
    coverage partners (:func:`_coverage_pairs`), then the pairs in (i, j) order with triplets."""
    cfg.validate()
    rng = np.random.default_rng(seed)
    universe, item_codes, distinct, masks = _pair_universe(ratings, movies, items)
    n = len(universe)
    L, D, co_cap = _vote_matrices(ratings, item_codes, distinct, universe, cfg, seed)
    LT, DT = L.T.tocsr(), D.T.tocsr()
    pi, pj, n_positive_candidates = _positive_pairs(L, LT, masks, cfg, rng)
    ni, nj, n_negative_candidates, want_negatives = _negative_pairs(LT, D, DT, masks, len(pi), cfg, rng)

    taken = set(zip(pi.tolist(), pj.tolist())) | set(zip(ni.tolist(), nj.tolist()))
    ri = rj = np.zeros(0, np.int64)
    if len(ni) < want_negatives and n >= 2:
        short = want_negatives - len(ni)
        anchors = rng.integers(0, n, size=short)
        ri, rj, _ = _sample_partners(anchors, np.zeros(short, bool), masks, taken, n, cfg, rng)

    parts_i = [pi, ni, ri]
    parts_j = [pj, nj, rj]
    labels = [np.ones(len(pi), np.int8), np.zeros(len(ni), np.int8), np.zeros(len(ri), np.int8)]
    sources = [np.full(len(pi), 0, np.int8), np.full(len(ni), 1, np.int8), np.full(len(ri), 2, np.int8)]
    uncovered = _coverage_pairs(parts_i, parts_j, labels, sources, masks, taken, n, cfg, rng)

    i = np.concatenate(parts_i).astype(np.int32)
    j = np.concatenate(parts_j).astype(np.int32)
    label = np.concatenate(labels)
    source = np.concatenate(sources)
    order = np.lexsort((j, i))
    pairs = np.stack([i[order], j[order]], axis=1) if len(i) else np.zeros((0, 2), np.int32)
    label, source = label[order], source[order]
    triplets = make_triplets(pairs, label, masks, cfg, rng)
    final_counts = np.bincount(pairs.reshape(-1), minlength=n) if len(pairs) else np.zeros(n, np.int64)
    stats = {
        "items": n,
        "pairs": int(len(pairs)),
        "positives": int(label.sum()),
        "negatives": int(len(label) - label.sum()),
        "by_source": {name: int((source == k).sum()) for k, name in enumerate(SOURCES)},
        "positive_candidates": int(n_positive_candidates),
        "negative_candidates": int(n_negative_candidates),
        "triplets": int(len(triplets)),
        "uncovered_slots": uncovered,
        "items_below_min_pairs": int((final_counts < cfg.min_pairs_per_item).sum()),
        "co_cap": co_cap,  # None: exact co-counts; else rated items counted per user
    }
    return PairSet(universe, pairs, label, source, triplets, stats)


def _pair_universe(ratings, movies, items: Sequence[str] | None):
    """``(items in column order, each rating's item code, the distinct rated ids, genre masks)``;
    an item the movies file does not list is a one-line error."""
    movie_index = pd.Index(movies.ids)
    item_codes, distinct = factorize_items(ratings.item)  # each rating's id hashed once
    if items is None:
        universe = sort_ids(list(set(distinct.tolist()) & set(movies.ids.tolist()))).astype(object)
    else:
        universe = np.array([str(i) for i in items], dtype=object)
        unknown = movie_index.get_indexer(universe) < 0
        if unknown.any():
            raise CinefuseError(
                f"pairs: item {universe[unknown][0]!r} is not in the movies file ({int(unknown.sum())} such items); "
                "pass the movies file that matches the ratings"
            )
    n = len(universe)
    masks = genre_masks(movies.genres)[movie_index.get_indexer(universe)] if n else np.zeros(0, np.uint64)
    return universe, item_codes, distinct, masks


def _vote_matrices(ratings, item_codes, distinct, universe, cfg: PairConfig, seed: int):
    """The user x item like and dislike matrices ``(L, D, co_cap)``; every co-count is a product of
    them, so above ``cfg.max_co_products`` a capped user keeps their rarest rated items only."""
    n = len(universe)
    col = item_columns(item_codes, distinct, universe)
    keep = col >= 0
    users_codes, _ = pd.factorize(ratings.user[keep])
    cols, rating = col[keep], ratings.rating[keep]
    n_users = int(users_codes.max()) + 1 if len(users_codes) else 0
    liked = rating >= cfg.like_threshold
    disliked = rating <= cfg.dislike_threshold
    voting = np.flatnonzero(liked | disliked)
    co_cap = co_count_cap(np.bincount(users_codes[voting], minlength=n_users), cfg.max_co_products)
    if co_cap is not None:  # a capped user keeps their rarest rated items
        dropped = voting[~keep_rarest(users_codes[voting], cols[voting], co_cap, [seed, 15])]
        liked[dropped] = disliked[dropped] = False
    L = _user_item(users_codes[liked], cols[liked], n_users, n)
    D = _user_item(users_codes[disliked], cols[disliked], n_users, n)
    return L, D, co_cap


def _positive_pairs(L, LT, masks, cfg: PairConfig, rng: np.random.Generator):
    """Co-liked and genre-similar pairs ``(i, j, candidates before the max_positives cap)``."""
    pi, pj, co = _upper(LT @ L)
    ok = co >= cfg.min_co_likes
    pi, pj, co = pi[ok], pj[ok], co[ok]
    ok = jaccard(masks[pi], masks[pj]) >= cfg.positive_min_jaccard
    pi, pj, co = pi[ok], pj[ok], co[ok]
    n_candidates = len(pi)
    if cfg.max_positives and len(pi) > cfg.max_positives:
        sel = _top(co, cfg.max_positives, rng)
        pi, pj = pi[sel], pj[sel]
    return pi, pj, n_candidates


def _negative_pairs(LT, D, DT, masks, n_positives: int, cfg: PairConfig, rng: np.random.Generator):
    """Disagreement, genre-dissimilar pairs, the highest scores up to ``negative_ratio`` x the
    positives: ``(i, j, candidates, how many were wanted)``."""
    cross = LT @ D
    score_m = (cross + cross.T).tocsr()
    if cfg.both_disliked_weight:
        score_m = score_m + cfg.both_disliked_weight * (DT @ D)
    ni, nj, score = _upper(score_m)
    ok = (score >= cfg.min_negative_score) & (jaccard(masks[ni], masks[nj]) <= cfg.negative_max_jaccard)
    ni, nj, score = ni[ok], nj[ok], score[ok]
    n_candidates = len(ni)
    want_negatives = int(round(cfg.negative_ratio * n_positives))
    sel = _top(score, want_negatives, rng)
    return ni[sel], nj[sel], n_candidates, want_negatives


def _coverage_pairs(parts_i: list, parts_j: list, labels: list, sources: list, masks, taken: set, n: int,
                    cfg: PairConfig, rng: np.random.Generator) -> int:
    """Every item in at least ``min_pairs_per_item`` pairs: random partners, alternately a genre
    positive and a negative, appended to the parts; returns the slots no partner could fill."""
    counts = np.bincount(np.concatenate(parts_i + parts_j).astype(np.int64), minlength=n)
    deficit = np.maximum(cfg.min_pairs_per_item - counts, 0)
    if deficit.any() and n >= 2:
        anchors = np.repeat(np.arange(n), deficit)
        slot = np.concatenate([np.arange(d) for d in deficit[deficit > 0]])
        want_positive = (slot % 2) == 0
        ci, cj, filled = _sample_partners(anchors, want_positive, masks, taken, n, cfg, rng)
        parts_i.append(ci)
        parts_j.append(cj)
        labels.append(want_positive[filled].astype(np.int8))
        sources.append(np.full(len(ci), 3, np.int8))
        return int((~filled).sum())
    if deficit.any():
        return int(deficit.sum())
    return 0


def make_triplets(pairs: np.ndarray, labels: np.ndarray, masks: np.ndarray, cfg: PairConfig,
                  rng: np.random.Generator) -> np.ndarray:
    n = len(masks)
    pos = pairs[labels == 1]
    if len(pos) == 0 or n < 3:
        return np.zeros((0, 3), np.int32)
    anchors = np.concatenate([pos[:, 0], pos[:, 1]]).astype(np.int64)
    positives = np.concatenate([pos[:, 1], pos[:, 0]]).astype(np.int64)
    neg = pairs[labels == 0].astype(np.int64)
    # negative partners of each item as CSR rows, in pair order
    a = np.concatenate([neg[:, 0], neg[:, 1]])
    b = np.concatenate([neg[:, 1], neg[:, 0]])
    order = np.argsort(a, kind="stable")
    a, b = a[order], b[order]
    indptr = np.searchsorted(a, np.arange(n + 1))
    degree = indptr[anchors + 1] - indptr[anchors]
    pick = indptr[anchors] + np.floor(rng.random(len(anchors)) * np.maximum(degree, 1)).astype(np.int64)
    negatives = np.where(degree > 0, b[np.minimum(pick, max(len(b) - 1, 0))] if len(b) else -1, -1)
    missing = np.flatnonzero(negatives < 0)
    for _ in range(cfg.sampling_rounds):
        if len(missing) == 0:
            break
        cand = rng.integers(0, n, size=len(missing))
        ok = (jaccard(masks[anchors[missing]], masks[cand]) <= cfg.negative_max_jaccard)
        ok &= (cand != anchors[missing]) & (cand != positives[missing])
        negatives[missing[ok]] = cand[ok]
        missing = missing[~ok]
    keep = negatives >= 0
    return np.stack([anchors[keep], positives[keep], negatives[keep]], axis=1).astype(np.int32)


# -- splits ------------------------------------------------------------------------------------
@dataclass
class Split:
    protocol: str
    seed: int
    ids: np.ndarray                # every item the split covers (pairs index into this)
    items: dict[str, np.ndarray]   # part -> item ids
    parts: dict[str, PairSet]      # part -> pairs over ``ids`` (remapped)
    cut: int | None = None         # cold-item-time: training sees only ratings with timestamp < cut

    def split_json(self) -> dict:
        out = {"protocol": self.protocol, "seed": self.seed, **{part: self.items[part].tolist() for part in PARTS}}
        if self.cut is not None:
            out["cut_timestamp"] = int(self.cut)
        return out

    def stats(self) -> dict:
        return {part: self.parts[part].stats for part in PARTS}


def cut_in_three(order: np.ndarray, fractions: Sequence[float]) -> dict[str, np.ndarray]:
    """The one train / val / test cut (70/15/15 by default, ``[split].fractions``): the first
    ``round(fractions[0] * n)`` positions of ``order`` train, the next ``round(fractions[1] * n)``
    validate, the rest test."""
    n_train = int(round(fractions[0] * len(order)))
    n_val = int(round(fractions[1] * len(order)))
    return {"train": order[:n_train], "val": order[n_train:n_train + n_val], "test": order[n_train + n_val:]}


def split_items(ids: np.ndarray, fractions: Sequence[float], seed: int) -> dict[str, np.ndarray]:
    """``cold-item``: the items in a seeded random order, cut by ``fractions`` (:func:`cut_in_three`)."""
    rng = np.random.default_rng([seed, 1])
    order = rng.permutation(len(ids))
    return {part: sort_ids(ids[idx]).astype(object) for part, idx in cut_in_three(order, fractions).items()}


def split_items_by_time(ratings, ids: np.ndarray, fractions: Sequence[float], seed: int) -> tuple[dict, int]:
    """``cold-item-time``: items ordered by their first rating (ties in a seeded random order,
    never by id); the oldest ``fractions[0]`` train, the next ``fractions[1]`` validate, the
    newest test. Returns (part -> ids, cut) where cut is the first rating time of the first cold
    item: training may see only ratings given before it."""
    ratings.require_timestamp()
    first = pd.Series(np.asarray(ratings.timestamp, dtype=np.int64)).groupby(
        pd.Index(np.asarray(ratings.item, dtype=object))).min()
    when = first.reindex(pd.Index(ids)).to_numpy()
    if np.isnan(when.astype(np.float64)).any():
        raise CinefuseError("cold-item-time: every item of the split needs at least one rating")
    tie = np.random.default_rng([seed, 4]).random(len(ids))
    order = np.lexsort((tie, when.astype(np.int64)))
    cuts = cut_in_three(order, fractions)
    n_train = len(cuts["train"])
    cut = int(when[order[n_train]]) if n_train < len(ids) else int(when.max()) + 1
    return {part: sort_ids(ids[idx]).astype(object) for part, idx in cuts.items()}, cut


def training_ratings(ratings, train_items, cut: int | None = None):
    """The ratings training may see: those of ``train_items``, and under ``cold-item-time`` only
    those given before ``cut`` (a ``Ratings`` of the same type)."""
    keep = np.isin(np.asarray(ratings.item, dtype=object), np.asarray(train_items, dtype=object))
    if cut is not None:
        keep &= np.asarray(ratings.timestamp) < cut
    ts = ratings.timestamp
    return type(ratings)(ratings.user[keep], ratings.item[keep], ratings.rating[keep], None if ts is None else ts[keep])


def _remap(ps: PairSet, index: pd.Index) -> PairSet:
    to_global = index.get_indexer(ps.ids).astype(np.int32)
    return PairSet(ps.ids, to_global[ps.pairs] if len(ps.pairs) else ps.pairs, ps.labels, ps.source,
                   to_global[ps.triplets] if len(ps.triplets) else ps.triplets, ps.stats)


def make_split(ratings, movies, items: Sequence[str] | None, cfg: PairConfig, protocol: str, seed: int,
               fractions: Sequence[float] = FRACTIONS) -> Split:
    """``cold-item``: items split 70/15/15 and pairs built within each part (no pair crosses parts);
    ``cold-item-time``: the same with the newest items cold and the training pairs built from the
    ratings before the cut only (:func:`split_items_by_time`).
    ``pair``: pairs built over all items, then the pairs split 70/15/15 at random (items shared)."""
    if protocol not in SPLIT_PROTOCOLS:
        raise CinefuseError(f"split protocol {protocol!r} is unknown; use one of {', '.join(SPLIT_PROTOCOLS)}")
    everything = build_pairs(ratings, movies, items, cfg, seed) if protocol == "pair" else None
    if protocol == "pair":
        ids = everything.ids
        rng = np.random.default_rng([seed, 2])
        order = rng.permutation(len(everything.pairs))
        n_train = int(round(fractions[0] * len(order)))
        n_val = int(round(fractions[1] * len(order)))
        chunks = {"train": order[:n_train], "val": order[n_train:n_train + n_val], "test": order[n_train + n_val:]}
        parts, part_items = {}, {}
        masks = genre_masks(movies.genres)[pd.Index(movies.ids).get_indexer(ids)]
        for k, (part, idx) in enumerate(chunks.items()):
            idx = np.sort(idx)
            pairs, labels = everything.pairs[idx], everything.labels[idx]
            trip = make_triplets(pairs, labels, masks, cfg, np.random.default_rng([seed, 3, k]))
            stats = {"pairs": int(len(pairs)), "positives": int(labels.sum()), "triplets": int(len(trip))}
            parts[part] = PairSet(ids, pairs, labels, everything.source[idx], trip, stats)
            used = np.unique(pairs.reshape(-1)) if len(pairs) else np.zeros(0, np.int64)
            part_items[part] = ids[used]
        return Split(protocol, seed, ids, part_items, parts)

    if items is None:
        rated = pd.unique(ratings.item)
        items = sort_ids(list(set(rated.tolist()) & set(movies.ids.tolist()))).tolist()
    ids = np.array([str(i) for i in items], dtype=object)
    cut = None
    if protocol == "cold-item-time":
        part_items, cut = split_items_by_time(ratings, ids, fractions, seed)
    else:
        part_items = split_items(ids, fractions, seed)
    index = pd.Index(ids)
    # training pairs from the ratings training may see (before the cut); validation and test
    # pairs from all ratings of their items (they are only ever scored)
    seen = {"train": training_ratings(ratings, part_items["train"], cut) if cut is not None else ratings}
    parts = {part: _remap(build_pairs(seen.get(part, ratings), movies, part_items[part], cfg, seed + k), index)
             for k, part in enumerate(PARTS)}
    return Split(protocol, seed, ids, part_items, parts, cut)


def split_arrays(split: Split) -> dict[str, np.ndarray]:
    """The arrays of ``pairs.npz`` for ``split`` (the workdir writes them atomically)."""
    arrays = {"ids": split.ids.astype(str)}
    for part in PARTS:
        ps = split.parts[part]
        arrays.update({f"{part}_pairs": ps.pairs, f"{part}_labels": ps.labels, f"{part}_source": ps.source,
                       f"{part}_triplets": ps.triplets})
    return arrays


def load_split_arrays(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}

