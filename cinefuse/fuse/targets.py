"""Co-preference training targets from the TRAINING ratings only, as fixed-shape arrays.

Everything here is numpy / scipy.sparse, vectorised, and the same inputs and seed give the same
arrays bit for bit. Rows and columns are the training items in the order given (``item_ids``).

- **likes** ``X`` (U, I): 1 where a user rated a training item >= ``like_threshold``
  (:func:`cinefuse.metrics.likes.like_matrix`; a repeated rating keeps the last one).
- **co-like partners** (:func:`co_like_partners`): with ``C = X^T X`` (co-like counts c_ij, the
  diagonal n_i = likes of i) and U users, the popularity-corrected association of i != j is
  ``jaccard`` c_ij / (n_i + n_j - c_ij) or ``pmi`` log(c_ij U / (n_i n_j)) (only positive PMI:
  pairs liked together more often than chance), over pairs with c_ij >= ``min_co_likes``. Each
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

import time
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import svds

from cinefuse.errors import CinefuseError
from cinefuse.metrics.likes import LikeMatrix, like_matrix

ASSOCIATIONS = ("jaccard", "pmi")
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

    def validate(self) -> None:
        if self.association not in ASSOCIATIONS:
            raise CinefuseError(f"targets: association {self.association!r} is unknown; use one of "
                                f"{', '.join(ASSOCIATIONS)}")
        if self.n_partners < 1 or self.min_co_likes < 1 or self.history_cap < 1 or self.teacher_dim < 1:
            raise CinefuseError("targets: n_partners, min_co_likes, history_cap and teacher_dim must be >= 1")
        if self.ease_lambda <= 0:
            raise CinefuseError(f"targets: ease_lambda must be > 0 (got {self.ease_lambda})")


@dataclass
class Partners:
    idx: np.ndarray       # (I, N) int32 partner rows, 0 where masked
    weight: np.ndarray    # (I, N) float32 association, 0 where masked
    mask: np.ndarray      # (I, N) bool
    source: np.ndarray    # (I,) int8 index into PARTNER_SOURCES

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


def association(C: sp.spmatrix, row_items: np.ndarray, counts: np.ndarray, n_users: int, kind: str,
                min_co_likes: int = 1) -> sp.csr_matrix:
    """Popularity-corrected association of co-occurring pairs: ``C`` (R, I) holds the co-counts
    of the items ``row_items`` (R,) with every item, ``counts`` (I,) each item's own count.
    Self pairs, pairs below ``min_co_likes`` and (pmi) pairs at or below chance are dropped."""
    coo = sp.coo_matrix(C)
    c = coo.data.astype(np.float64)
    i, j = row_items[coo.row], coo.col
    off = (i != j) & (c >= min_co_likes)
    r, i, j, c = coo.row[off], i[off], j[off], c[off]
    n = np.asarray(counts, dtype=np.float64)
    if kind == "jaccard":
        score = c / (n[i] + n[j] - c)
    elif kind == "pmi":
        score = np.log(c * n_users / (n[i] * n[j]))
    else:
        raise CinefuseError(f"targets: association {kind!r} is unknown; use one of {', '.join(ASSOCIATIONS)}")
    keep = score > 0
    out = sp.csr_matrix((score[keep].astype(np.float32), (r[keep], j[keep])), shape=C.shape)
    out.sort_indices()
    return out


def top_per_row(S: sp.csr_matrix, n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ``n`` largest entries of each row of ``S`` as (rows, n) idx / value / mask, best first,
    ties in a seeded random order."""
    S = sp.csr_matrix(S)
    rows_n = S.shape[0]
    row = np.repeat(np.arange(rows_n), np.diff(S.indptr))
    tie = np.random.default_rng([seed, 11]).random(S.nnz)
    order = np.lexsort((tie, -S.data, row))
    rank = np.arange(S.nnz) - S.indptr[row[order]]
    keep = order[rank < n]
    r, k = row[keep], (rank[rank < n])
    idx = np.zeros((rows_n, n), np.int32)
    val = np.zeros((rows_n, n), np.float32)
    mask = np.zeros((rows_n, n), bool)
    idx[r, k] = S.indices[keep]
    val[r, k] = S.data[keep]
    mask[r, k] = True
    return idx, val, mask


def co_like_partners(X: sp.csr_matrix, n_partners: int = 32, kind: str = "jaccard", min_co_likes: int = 1,
                     seed: int = 0, rated: sp.csr_matrix | None = None) -> Partners:
    """Top-``n_partners`` co-like partners of every column of the like matrix ``X`` (U, I);
    ``rated`` (U', I) marks any rating, for the co-rated fallback."""
    X = sp.csr_matrix(X, dtype=np.float32)
    n_items = X.shape[1]
    counts = np.asarray(X.sum(axis=0)).ravel()
    scores = association(X.T @ X, np.arange(n_items), counts, X.shape[0], kind, min_co_likes)
    idx, weight, mask = top_per_row(scores, n_partners, seed)
    source = np.where(mask.any(axis=1), 0, 2).astype(np.int8)
    lonely = np.flatnonzero(source == 2)
    if rated is not None and len(lonely):
        # only the lonely rows of the (much denser) co-rated matrix are ever needed
        R = sp.csc_matrix(rated, dtype=np.float32)
        rated_counts = np.asarray(R.sum(axis=0)).ravel()
        block = association(R[:, lonely].T @ R, lonely, rated_counts, R.shape[0], kind, 1)
        f_idx, f_w, f_mask = top_per_row(block, n_partners, seed + 1)
        idx[lonely], weight[lonely], mask[lonely] = f_idx, f_w, f_mask
        source[lonely[f_mask.any(axis=1)]] = 1
    return Partners(idx, weight, mask, source)


def user_histories(X: sp.csr_matrix, cap: int, seed: int = 0) -> Histories:
    """Each row's nonzero columns, ascending, as a (U, min(cap, longest row)) padded array."""
    X = sp.csr_matrix(X)
    X.sort_indices()
    n_users, n_items = X.shape
    lengths = np.diff(X.indptr)
    width = int(min(cap, lengths.max())) if n_users else 0
    row = np.repeat(np.arange(n_users), lengths)
    rank = np.arange(X.nnz) - X.indptr[row]
    truncated = lengths > cap
    if truncated.any():
        # a seeded random ``cap`` of a long row: rank by a random key instead of by column
        key = np.random.default_rng([seed, 12]).random(X.nnz)
        order = np.lexsort((key, row))
        rank_random = np.empty(X.nnz, np.int64)
        rank_random[order] = np.arange(X.nnz) - X.indptr[row[order]]
        rank = np.where(truncated[row], rank_random, rank)
    keep = rank < width
    r, c = row[keep], X.indices[keep]
    order = np.lexsort((c, r))  # ascending columns within each row again
    r, c = r[order], c[order]
    pos = np.arange(len(r)) - np.searchsorted(r, r)
    items = np.full((n_users, width), n_items, np.int32)
    items[r, pos] = c
    return Histories(items, np.minimum(lengths, width).astype(np.int32), int(truncated.sum()))


def ease(X: sp.csr_matrix, lam: float) -> np.ndarray:
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
    likes = like_matrix(users, items, ratings, item_ids, cfg.like_threshold)
    seconds["likes"] = time.perf_counter() - t0
    partners = histories = B = teacher = None
    if "partners" in parts:
        t0 = time.perf_counter()
        rated = like_matrix(users, items, ratings, item_ids, -np.inf)
        partners = co_like_partners(likes.X, cfg.n_partners, cfg.association, cfg.min_co_likes, seed, rated.X)
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
    if histories is not None:
        stats["history_width"] = int(histories.items.shape[1])
        stats["history_truncated_users"] = histories.truncated_users
    return Targets(likes, partners, histories, B, teacher, prior, mean, std, seconds, stats)
