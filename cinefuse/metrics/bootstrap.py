"""95% bootstrap intervals over queries, the paired bootstrap of A minus B, and the bootstrap
over seeds and queries of a metric measured under several training seeds.

Both resample the queries (with replacement, as many as there are) through
``scipy.stats.bootstrap`` (vectorised, ``batch`` resamples per chunk) with a seeded
``numpy.random.Generator``; the interval is the percentile interval of the resampled means
(exactly 0 for a difference that is 0 on every query, where BCa is undefined).

- :func:`bootstrap_interval`: mean, low, high of a per-query metric vector.
- :func:`paired_bootstrap`: A - B over the same queries (the per-query differences are
  resampled together, so query difficulty cancels): mean difference, low, high, and the share of
  resamples in which A's mean beats B's (> 0).
- :func:`seed_query_bootstrap`: (seeds, queries) values, seeds then queries resampled.
Per-query values must be finite: a query that could not be scored is left out by the caller
(``per_query_ndcg_hr`` returns the mask), never passed as NaN.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from cinefuse.errors import CinefuseError

N_RESAMPLES = 2000
BATCH = 500  # resamples held at once: bounds memory at BATCH x queries


@dataclass(frozen=True)
class Interval:
    mean: float
    low: float
    high: float
    level: float
    n_queries: int
    share_above_zero: float | None = None  # paired: share of resamples with A > B

    def as_dict(self) -> dict:
        out = {"mean": self.mean, "low": self.low, "high": self.high, "level": self.level,
               "n_queries": self.n_queries}
        if self.share_above_zero is not None:
            out["share_a_beats_b"] = self.share_above_zero
        return out


def _checked(values, name: str) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64).ravel()
    if v.size < 2:
        raise CinefuseError(f"bootstrap: {name} holds {v.size} queries; an interval needs at least 2")
    if not np.isfinite(v).all():
        raise CinefuseError(f"bootstrap: {name} holds NaN or Inf; leave unscored queries out before the bootstrap")
    return v


def _resampled_means(v: np.ndarray, n_resamples: int, level: float, seed: int):
    res = stats.bootstrap((v,), np.mean, n_resamples=n_resamples, batch=BATCH, vectorized=True,
                          confidence_level=level, method="percentile", rng=np.random.default_rng(seed))
    return res.confidence_interval, res.bootstrap_distribution


def bootstrap_interval(values, level: float = 0.95, n_resamples: int = N_RESAMPLES, seed: int = 0) -> Interval:
    v = _checked(values, "values")
    ci, _ = _resampled_means(v, n_resamples, level, seed)
    return Interval(float(v.mean()), float(ci.low), float(ci.high), level, int(v.size))


def paired_bootstrap(a, b, level: float = 0.95, n_resamples: int = N_RESAMPLES, seed: int = 0) -> Interval:
    va, vb = _checked(a, "a"), _checked(b, "b")
    if va.shape != vb.shape:
        raise CinefuseError(f"paired bootstrap: a has {va.size} queries and b {vb.size}; pass the same queries")
    d = va - vb
    ci, dist = _resampled_means(d, n_resamples, level, seed)
    return Interval(float(d.mean()), float(ci.low), float(ci.high), level, int(d.size), float(np.mean(dist > 0)))


def seed_query_bootstrap(matrix, level: float = 0.95, n_resamples: int = N_RESAMPLES, seed: int = 0) -> Interval:
    """An interval that covers both sources of variance of a metric measured over several
    training seeds: ``matrix`` (S seeds, Q queries) of per-query values (the same queries under
    every seed). Each resample draws S seeds with replacement, then Q queries with replacement
    (one query draw shared by the drawn seeds, as the queries are shared), and takes the mean of
    the drawn cells; the interval is the percentile interval of those means. For a difference
    (A - B per query and seed) ``share_above_zero`` is the share of resamples above 0."""
    m = np.asarray(matrix, dtype=np.float64)
    if m.ndim != 2 or m.shape[1] < 2:
        raise CinefuseError(f"seed bootstrap: values must be (seeds, queries) with at least 2 queries, got {m.shape}")
    if not np.isfinite(m).all():
        raise CinefuseError("seed bootstrap: values hold NaN or Inf; leave unscored queries out before the bootstrap")
    n_s, n_q = m.shape
    rng = np.random.default_rng(seed)
    means = np.empty(n_resamples)
    for lo in range(0, n_resamples, BATCH):
        b = min(BATCH, n_resamples - lo)
        ws = np.stack([np.bincount(r, minlength=n_s) for r in rng.integers(0, n_s, (b, n_s))]).astype(np.float64)
        wq = np.stack([np.bincount(r, minlength=n_q) for r in rng.integers(0, n_q, (b, n_q))]).astype(np.float64)
        means[lo:lo + b] = ((ws @ m) * wq).sum(axis=1) / (n_s * n_q)
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return Interval(float(m.mean()), float(low), float(high), level, int(n_q), float(np.mean(means > 0)))
