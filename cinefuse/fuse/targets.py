"""Co-preference training targets from the TRAINING ratings only, as fixed-shape arrays.

Everything here is numpy / scipy.sparse, vectorised, and the same inputs and seed give the same
arrays bit for bit. Rows and columns are the training items in the order given (``item_ids``).

- **likes** ``X`` (U, I): 1 where a user rated a training item >= ``like_threshold``
  (:func:`cinefuse.metrics.likes.like_matrix`; a repeated rating keeps the last one).
- **co-like partners** (:func:`co_like_partners`): with ``C = X^T X`` (co-like counts c_ij, the
  diagonal n_i = likes of i) and U users, the popularity-corrected association of i != j is
  ``jaccard`` c_ij / (n_i + n_j - c_ij) or ``pmi`` log(c_ij U / (n_i n_j)) (only positive PMI:
  pairs liked together more often than chance), over pairs with c_ij >= ``min_co_likes``. When
  sum_u likes_u^2 (the products X^T X takes) is over ``max_co_products``, each heavy user counts
  only their rarest likes (:mod:`cinefuse.fuse.cocounts`; ``Partners.co_cap``). Each
  item keeps its ``n_partners`` best partners (ties in a seeded random order, never by id) in
  ``idx`` / ``weight`` / ``mask`` arrays of shape (I, N); weights are the association values,
  so a sampler draws partners in proportion to them. Items with no partner fall back to the
  same association over co-*rated* pairs (users who rated both, any rating: they watched both)
  when ``rated`` is given, marked ``source == 1``; items still without one (nobody who rated
  them rated another training item) have an all-false mask, ``source == 2``, and are no anchor.
- **histories** (:func:`user_histories`): each user's liked items as sorted (U, H) rows padded
  with the sentinel I, and their lengths; users with more than ``cap`` likes keep a seeded random
  ``cap`` of them (counted), so membership tests on the device are one ``searchsorted``.
- **EASE teacher** (:func:`ease`, Steck 2019): P = (X^T X + lambda I)^-1, B = I - P / diag(P)
  (column j divided by P_jj), zero diagonal. A user's score for j is sum_i x_ui B_ij, so row i of
  B is how item i votes for the others: the teacher's similarity row of i. Dense (I, I) float32.
- **teacher item vectors** (:func:`teacher_vectors`): truncated SVD of X (PureSVD, Cremonesi et
  al. 2010) through ``scipy.sparse.linalg.svds``; item vectors V_k diag(s_k), components in
  descending singular value, each sign fixed so its largest-magnitude entry is positive. (The
  `implicit` ALS library would be the other choice; it is not a dependency of the project.)
- **item prior targets** (:func:`prior_targets`): log(1 + like count) of each training item,
  standardised over the training items (mean 0, std 1), with the mean and std to undo it.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import svds

from cinefuse.choices import ASSOCIATIONS  # noqa: F401 (checked here, named there)
from cinefuse.errors import CinefuseError
from cinefuse.fuse.cocounts import CO_PRODUCTS_BUDGET, co_count_cap, down_sample_rows, rank_in_runs, row_ranks
from cinefuse.metrics.likes import LikeMatrix, index_ratings

PARTNER_SOURCES = ("co-like", "co-rated", "none")


@dataclass
class TargetConfig:
    like_threshold: float = 4.0
    association: str = "jaccard"
    n_partners: int = 32
    min_co_likes: int = 1
    history_cap: int = 1024        # liked items kept per user (a seeded random subset above it)
    ease_lambda: float = 200.0
    teacher_dim: int = 64
    max_co_products: float = CO_PRODUCTS_BUDGET  # exact co-counts up to this; heavy users capped above

    def validate(self) -> None:
        if self.association not in ASSOCIATIONS:
            raise CinefuseError(f"targets: association {self.association!r} is unknown; use one of "
                                f"{', '.join(ASSOCIATIONS)}")
        if self.n_partners < 1 or self.min_co_likes < 1 or self.history_cap < 1 or self.teacher_dim < 1:
            raise CinefuseError("targets: n_partners, min_co_likes, history_cap and teacher_dim must be >= 1")
        if not self.max_co_products > 0:
            raise CinefuseError(f"targets: max_co_products must be > 0 (got {self.max_co_products})")
        if self.ease_lambda <= 0:
            raise CinefuseError(f"targets: ease_lambda must be > 0 (got {self.ease_lambda})")


@dataclass
class Partners:
    idx: np.ndarray       # (I, N) int32 partner rows, 0 where masked
    weight: np.ndarray    # (I, N) float32 association, 0 where masked
    mask: np.ndarray      # (I, N) bool
    source: np.ndarray    # (I,) int8 index into PARTNER_SOURCES
    co_cap: int | None = None        # likes per user counted (None: every like, exact co-counts)
    capped_users: int = 0            # users above co_cap, down-sampled
    rated_cap: int | None = None     # the same for the co-rated fallback

    @property
    def anchors(self) -> np.ndarray:
        """Rows with at least one partner: the items a co-like sampler may draw as anchors."""
        return np.flatnonzero(self.mask.any(axis=1)).astype(np.int32)


@dataclass
class Histories:
    items: np.ndarray     # (U, H) int32 liked item rows, ascending, padded with n_items
    lengths: np.ndarray   # (U,) int32
    truncated_users: int  # users with more than H likes (a random H kept)


@dataclass
class Targets:
    likes: LikeMatrix
    partners: Partners | None   # None: not asked for (``build_targets(parts=...)``)
    histories: Histories | None
    ease: np.ndarray | None     # (I, I) float32
    teacher: np.ndarray | None  # (I, k) float32
    prior: np.ndarray           # (I,) float32 standardised log(1 + likes)
    prior_mean: float
    prior_std: float
    seconds: dict = field(default_factory=dict)
    stats: dict = field(default_factory=dict)


CHUNK_PRODUCTS = 1 << 23     # co-count products per block of rows (memory: ~40 bytes each)
_SCORE_BITS = 31             # a positive float32's bit pattern, ascending with its value


def _scores(c: np.ndarray, ni: np.ndarray, nj: np.ndarray, n_users: int, kind: str) -> np.ndarray:
    if kind == "jaccard":
        return c / (ni + nj - c)
    if kind == "pmi":
        return np.log(c * n_users / (ni * nj))
    raise CinefuseError(f"targets: association {kind!r} is unknown; use one of {', '.join(ASSOCIATIONS)}")


def top_associated(X: sp.csr_matrix, rows: np.ndarray, n: int, kind: str, min_co: int = 1,
                   seed: int = 0, chunk_products: int = CHUNK_PRODUCTS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each column ``rows[k]`` of ``X`` (U, I), its ``n`` best associated columns j != i by
    :data:`ASSOCIATIONS` ``kind`` over co-counts c_ij >= ``min_co`` (pmi: only above chance), as
    (len(rows), n) idx / weight (float32) / mask, best first, ties in a seeded random order.

    The co-counts come a block of rows at a time (``chunk_products`` products each), so memory stays bounded
    whatever the catalogue; inside a block one ``np.sort`` of 64-bit keys (row, descending
    float32 score, the column under a seeded random permutation) orders every row at once.
    """
    X = sp.csr_matrix(X, dtype=np.float32)
    n_users, n_items = X.shape
    rows = np.asarray(rows, dtype=np.int64)
    col_bits = max(1, int(n_items - 1).bit_length())
    row_bits = 64 - _SCORE_BITS - col_bits
    if row_bits < 1:
        raise CinefuseError(f"targets: {n_items} items are more than co-like partners support (2^32)")
    perm = np.random.default_rng([seed, 11]).permutation(n_items).astype(np.uint64)
    unperm = np.argsort(perm).astype(np.int32)
    counts = np.asarray(X.sum(axis=0)).ravel().astype(np.float64)
    XT = X.T.tocsr()
    products = XT[rows] @ np.diff(X.indptr).astype(np.float64)  # the work of each row's co-counts
    idx = np.zeros((len(rows), n), np.int32)
    weight = np.zeros((len(rows), n), np.float32)
    mask = np.zeros((len(rows), n), bool)
    col_mask, score_shift = np.uint64((1 << col_bits) - 1), np.uint64(col_bits)
    row_shift = np.uint64(col_bits + _SCORE_BITS)
    max_rows, lo = 1 << row_bits, 0
    cum = np.concatenate([[0.0], np.cumsum(products)])
    while lo < len(rows):
        hi = int(np.searchsorted(cum, cum[lo] + chunk_products, side="right")) - 1
        hi = min(max(hi, lo + 1), lo + max_rows, len(rows))
        C = XT[rows[lo:hi]] @ X
        r = np.repeat(np.arange(hi - lo, dtype=np.int64), np.diff(C.indptr))
        i, j, c = rows[lo:hi][r], C.indices, C.data.astype(np.float64)
        score = _scores(c, counts[i], counts[j], n_users, kind).astype(np.float32)
        # one filter: self pairs, too few co-counts and (pmi) pairs at or below chance
        score[i == j] = 0.0
        if min_co > 1:
            score[c < min_co] = 0.0
        ok = score > 0
        r, j, score = r[ok], j[ok], score[ok]
        bits = np.uint64((1 << _SCORE_BITS) - 1) - score.view(np.uint32).astype(np.uint64)
        key = (r.astype(np.uint64) << row_shift) | (bits << score_shift) | perm[j]
        key.sort()
        kr = (key >> row_shift).astype(np.int64)
        rank = rank_in_runs(kr)
        top = rank < n
        key, kr, rank = key[top], kr[top], rank[top]
        out_rows = lo + kr
        idx[out_rows, rank] = unperm[(key & col_mask).astype(np.int64)]
        weight[out_rows, rank] = (np.uint64((1 << _SCORE_BITS) - 1) - ((key >> score_shift) & np.uint64(
            (1 << _SCORE_BITS) - 1))).astype(np.uint32).view(np.float32)
        mask[out_rows, rank] = True
        lo = hi
    return idx, weight, mask


def co_like_partners(X: sp.csr_matrix, n_partners: int = 32, kind: str = "jaccard", min_co_likes: int = 1,
                     seed: int = 0, rated: sp.csr_matrix | None = None,
                     budget: float = CO_PRODUCTS_BUDGET) -> Partners:
    """Top-``n_partners`` co-like partners of every column of the like matrix ``X`` (U, I);
    ``rated`` (U', I) marks any rating, for the co-rated fallback. Co-counts are exact while
    sum_u likes_u^2 <= ``budget``; above it each user counts ``co_cap`` of their likes, the rarest
    (:func:`cinefuse.fuse.cocounts.down_sample_rows`), and ``Partners.co_cap`` says which cap was
    used. The fallback is exact while the products of its rows alone fit the budget."""
    X = sp.csr_matrix(X, dtype=np.float32)
    n_items = X.shape[1]
    cap = co_count_cap(np.diff(X.indptr), budget)
    Xc = down_sample_rows(X, cap, seed)
    idx, weight, mask = top_associated(Xc, np.arange(n_items), n_partners, kind, min_co_likes, seed)
    source = np.where(mask.any(axis=1), 0, 2).astype(np.int8)
    lonely = np.flatnonzero(source == 2)
    rated_cap = None
    if rated is not None and len(lonely):
        # only the lonely rows of the (much denser) co-rated counts are ever needed
        R = sp.csr_matrix(rated, dtype=np.float32)
        # the work is only the lonely rows' co-counts: exact while those fit the budget
        lengths = np.diff(R.indptr)
        is_lonely = np.zeros(n_items, bool)
        is_lonely[lonely] = True
        # sum over the lonely items' raters of each rater's ratings, entry by entry (no transpose)
        lonely_products = float(np.repeat(lengths, lengths)[is_lonely[R.indices]].astype(np.float64).sum())
        rated_cap = None if lonely_products <= budget else co_count_cap(lengths, budget)
        Rc = down_sample_rows(R, rated_cap, seed + 1)
        f_idx, f_w, f_mask = top_associated(Rc, lonely, n_partners, kind, 1, seed + 1)
        idx[lonely], weight[lonely], mask[lonely] = f_idx, f_w, f_mask
        source[lonely[f_mask.any(axis=1)]] = 1
    capped = int((np.diff(X.indptr) > cap).sum()) if cap is not None else 0
    return Partners(idx, weight, mask, source, cap, capped, rated_cap)


def user_histories(X: sp.csr_matrix, cap: int, seed: int = 0) -> Histories:
    """Each row's nonzero columns, ascending, as a (U, min(cap, longest row)) padded array."""
    X = sp.csr_matrix(X)
    X.sort_indices()
    n_users, n_items = X.shape
    lengths = np.diff(X.indptr)
    width = int(min(cap, lengths.max())) if n_users else 0
    truncated = lengths > cap
    # a long row keeps a seeded random ``cap``; the kept entries stay in column order
    keep = row_ranks(X, truncated, [seed, 12]) < width
    row = np.repeat(np.arange(n_users), lengths)[keep]
    kept = np.minimum(lengths, width)
    pos = np.arange(len(row)) - np.concatenate([[0], np.cumsum(kept)])[row]
    items = np.full((n_users, width), n_items, np.int32)
    items[row, pos] = X.indices[keep]
    return Histories(items, kept.astype(np.int32), int(truncated.sum()))


def physical_memory_bytes() -> int:
    """This machine's RAM (``os.sysconf``); 0 where the platform does not say."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 0


def ease_bytes(n_items: int, n_liked: int) -> int:
    """Memory EASE takes: B (I, I) float32 and three (L, L) float64 work matrices over L liked items."""
    return 4 * n_items ** 2 + 3 * 8 * n_liked ** 2


def ease(X: sp.csr_matrix, lam: float, memory_bytes: int | None = None) -> np.ndarray:
    """EASE item-item weights B (I, I) float32, zero diagonal.

    Items nobody liked have a zero column in X: their block of P is I / lambda and their rows and
    columns of B are zero, so only the liked items enter the inverse. With fewer users than
    liked items, P comes from the Woodbury identity,
    P = (I - X^T (lambda I_U + X X^T)^-1 X) / lambda, an (U, U) solve instead of an (I, I)
    inverse (ml-latest-small: 608 users, 4407 liked training items).
    """
    X = sp.csc_matrix(X, dtype=np.float64)
    n_items = X.shape[1]
    liked = np.flatnonzero(np.diff(X.indptr) > 0)
    need = ease_bytes(n_items, len(liked))
    memory = physical_memory_bytes() if memory_bytes is None else memory_bytes
    if memory and need > 0.8 * memory:
        raise CinefuseError(
            f"distill: teacher = \"ease\" needs a dense {n_items} x {n_items} matrix ({need / 1e9:.1f} GB with its "
            f"float64 work), more than 80% of this machine's {memory / 1e9:.1f} GB; set [objective] teacher = "
            "\"svd\" (PureSVD vectors, no item x item matrix)")
    Xl = X[:, liked]
    n_users = Xl.shape[0]
    if n_users < len(liked):
        D = Xl.toarray()
        K = D @ D.T
        K[np.diag_indices_from(K)] += lam
        P = -(D.T @ np.linalg.solve(K, D))
        P[np.diag_indices_from(P)] += 1.0
        P /= lam
    else:
        G = (Xl.T @ Xl).toarray()
        G[np.diag_indices_from(G)] += lam
        P = np.linalg.inv(G)
    Bl = P / (-np.diag(P))[None, :]
    np.fill_diagonal(Bl, 0.0)
    B = np.zeros((n_items, n_items), np.float32)
    B[np.ix_(liked, liked)] = Bl
    return B


def teacher_vectors(X: sp.csr_matrix, dim: int, seed: int = 0) -> np.ndarray:
    """PureSVD item vectors V_k diag(s_k), k = min(dim, min(U, I) - 1), zero-padded to (I, dim) so
    the student's distill kernel has the configured shape even on a catalogue smaller than ``dim``
    (a zero column adds nothing to the InfoNCE logits)."""
    X = sp.csr_matrix(X, dtype=np.float64)
    k = int(min(dim, min(X.shape) - 1))
    if k < 1:
        raise CinefuseError(f"targets: the like matrix {X.shape} is too small for teacher vectors")
    _, s, vt = svds(X, k=k, random_state=np.random.default_rng([seed, 13]))
    order = np.argsort(-s, kind="stable")
    v = (vt[order].T * s[order][None, :])
    top = np.abs(v).argmax(axis=0)
    v *= np.sign(v[top, np.arange(k)])[None, :]
    return np.pad(v, ((0, 0), (0, dim - k))).astype(np.float32)


def prior_targets(like_counts: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Standardised log(1 + likes) per item, and the mean and std used."""
    z = np.log1p(np.asarray(like_counts, dtype=np.float64))
    mean, std = float(z.mean()), float(z.std())
    std = std if std > 1e-12 else 1.0
    return ((z - mean) / std).astype(np.float32), mean, std


TARGET_PARTS = ("partners", "histories", "ease", "teacher")


def build_targets(users, items, ratings, item_ids, cfg: TargetConfig, seed: int = 0,
                  parts=TARGET_PARTS) -> Targets:
    """Every target over the training items ``item_ids`` from ratings (users, items, ratings)
    that the caller has already restricted to what training may see. ``parts``: which of
    :data:`TARGET_PARTS` to build (the others are None; likes and the prior always are)."""
    cfg.validate()
    seconds = {}
    t0 = time.perf_counter()
    index = index_ratings(users, items, ratings, item_ids)
    likes = index.matrix(cfg.like_threshold)
    seconds["likes"] = time.perf_counter() - t0
    partners = histories = B = teacher = None
    if "partners" in parts:
        t0 = time.perf_counter()
        rated = index.matrix(-np.inf)
        partners = co_like_partners(likes.X, cfg.n_partners, cfg.association, cfg.min_co_likes, seed, rated.X,
                                    cfg.max_co_products)
        seconds["partners"] = time.perf_counter() - t0
    if "histories" in parts:
        t0 = time.perf_counter()
        histories = user_histories(likes.X, cfg.history_cap, seed)
        seconds["histories"] = time.perf_counter() - t0
    if "ease" in parts:
        t0 = time.perf_counter()
        B = ease(likes.X, cfg.ease_lambda)
        seconds["ease"] = time.perf_counter() - t0
    if "teacher" in parts:
        t0 = time.perf_counter()
        teacher = teacher_vectors(likes.X, cfg.teacher_dim, seed)
        seconds["teacher_vectors"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    counts = likes.like_counts
    prior, mean, std = prior_targets(counts)
    seconds["prior"] = time.perf_counter() - t0
    stats = {
        "users": int(likes.X.shape[0]), "items": int(len(item_ids)), "likes": int(likes.X.nnz),
        "items_without_likes": int((counts == 0).sum()),
    }
    if partners is not None:
        stats["partner_source"] = {name: int((partners.source == k).sum()) for k, name in enumerate(PARTNER_SOURCES)}
        stats["mean_partners"] = float(partners.mask.sum(axis=1).mean()) if len(item_ids) else 0.0
        stats["co_cap"] = partners.co_cap  # None: exact co-counts; else likes counted per user
        stats["co_capped_users"] = partners.capped_users
    if histories is not None:
        stats["history_width"] = int(histories.items.shape[1])
        stats["history_truncated_users"] = histories.truncated_users
    return Targets(likes, partners, histories, B, teacher, prior, mean, std, seconds, stats)
