"""Bootstrap intervals over queries: coverage of a known mean, the paired difference, seeding,
and the message for unscored (NaN) queries."""

from __future__ import annotations

import numpy as np
import pytest

from cinefuse.errors import CinefuseError
from cinefuse.metrics.bootstrap import bootstrap_interval, paired_bootstrap


def test_interval_covers_the_true_mean_about_95_percent_of_draws():
    rng = np.random.default_rng(0)
    true_mean = 0.3  # per-query nDCG-like values: skewed, in [0, 1]
    covered = 0
    draws = 200
    for d in range(draws):
        values = rng.beta(0.6, 1.4, size=150)  # mean 0.6 / (0.6 + 1.4) = 0.3
        iv = bootstrap_interval(values, n_resamples=1000, seed=d)
        assert iv.low <= iv.mean <= iv.high and iv.n_queries == 150
        covered += iv.low <= true_mean <= iv.high
    assert 0.9 <= covered / draws <= 0.99


def test_interval_narrows_with_more_queries_and_follows_the_seed():
    rng = np.random.default_rng(1)
    small, large = rng.random(50), rng.random(5000)
    a = bootstrap_interval(small, seed=3)
    assert a == bootstrap_interval(small, seed=3)
    assert a != bootstrap_interval(small, seed=4)
    b = bootstrap_interval(large, seed=3)
    assert (b.high - b.low) < (a.high - a.low) / 5
    # close to the normal approximation 1.96 * sd / sqrt(n)
    assert (b.high - b.low) / 2 == pytest.approx(1.96 * large.std() / np.sqrt(large.size), rel=0.15)


def test_paired_bootstrap_of_identical_inputs_is_exactly_zero():
    values = np.random.default_rng(2).random(80)
    iv = paired_bootstrap(values, values.copy(), seed=0)
    assert (iv.mean, iv.low, iv.high, iv.share_above_zero) == (0.0, 0.0, 0.0, 0.0)
    shifted = paired_bootstrap(values + 1.0, values, seed=0)
    assert shifted.low == pytest.approx(1.0, abs=1e-12) and shifted.high == pytest.approx(1.0, abs=1e-12)
    assert shifted.share_above_zero == 1.0


def test_paired_bootstrap_cancels_query_difficulty():
    rng = np.random.default_rng(3)
    difficulty = rng.random(300)
    b = difficulty
    a = difficulty + 0.02 + rng.normal(0, 0.01, 300)
    paired = paired_bootstrap(a, b, seed=1)
    assert paired.low > 0 and paired.share_above_zero == 1.0
    assert paired.mean == pytest.approx(float(np.mean(a - b)))
    # unpaired intervals of the two overlap: only pairing shows the difference
    ia, ib = bootstrap_interval(a, seed=1), bootstrap_interval(b, seed=1)
    assert ia.low < ib.high
    worse = paired_bootstrap(b, a, seed=1)
    assert worse.high < 0 and worse.share_above_zero == 0.0
    noise = paired_bootstrap(rng.random(300), rng.random(300), seed=1)
    assert 0.0 < noise.share_above_zero < 1.0


def test_bad_inputs_name_the_fix():
    with pytest.raises(CinefuseError, match=r"^bootstrap: values holds NaN or Inf; leave unscored queries out "
                                            r"before the bootstrap$"):
        bootstrap_interval([0.1, np.nan, 0.3])
    with pytest.raises(CinefuseError, match=r"^bootstrap: values holds 1 queries; an interval needs at least 2$"):
        bootstrap_interval([0.1])
    with pytest.raises(CinefuseError, match=r"^paired bootstrap: a has 3 queries and b 2; pass the same queries$"):
        paired_bootstrap([0.1, 0.2, 0.3], [0.1, 0.2])
