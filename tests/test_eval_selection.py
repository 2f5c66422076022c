"""The headline is the model validation chose, never the best test row; models trained under
several seeds are reported as their mean, spread and an interval over seeds and queries."""

from __future__ import annotations

import numpy as np
import pytest

from cinefuse.evaluate.report import format_table, verdict_line
from cinefuse.evaluate.results import Results, Row
from cinefuse.evaluate.selection import base_model, chosen_groups, group_rows
from cinefuse.evaluate.verdict import attach_verdict, paired_comparison
from cinefuse.metrics.bootstrap import seed_query_bootstrap
from cinefuse.metrics.metrics import PerQuery

METRIC = "nDCG@10"
N_QUERIES = 40


def row(name, kind, level, seed, coverage=0.5):
    """A row whose per-query nDCG@10 is ``level`` plus seeded noise (values in [0, 1])."""
    v = np.clip(level + 0.1 * np.random.default_rng(seed).standard_normal(N_QUERIES), 0, 1)
    pq = PerQuery({METRIC: v, "HR@10": (v > 0.3).astype(float)}, np.ones(N_QUERIES, bool))
    return Row(name, kind, {METRIC: float(v.mean()), "HR@10": float((v > 0.3).mean()), "Cov@10": coverage},
               1.0, 0.1, per_query=pq)


def validation(**values):
    """run -> validation record as selection.task_validation returns it."""
    return {run: {"plain": p, "prior": q, "weight": 0.1, "seed": None, "base_model": base_model(run)}
            for run, (p, q) in values.items()}


def test_the_headline_is_the_validation_winner_even_when_another_row_is_better_on_test():
    rows = [row("a", "model", 0.6, 1, 0.9), row("a+prior", "model", 0.7, 2, 0.15),
            row("b", "model", 0.4, 3, 0.95), row("b+prior", "model", 0.45, 4, 0.2),
            row("cosine x", "itemknn-cbf", 0.3, 5, 0.98), row("cosine y", "itemknn-cbf", 0.2, 6)]
    results = Results("cold-item", (10,), rows)
    val = validation(a=(0.10, 0.11), b=(0.20, 0.19))     # b wins validation, a+prior wins test
    attach_verdict(results, METRIC, val)
    v = results.verdict
    assert v["best_model"] == "b" and v["chosen_on"] == "validation" and v["validation_value"] == 0.20
    assert v["best_on_test"] == {"model": "a+prior", "value": rows[1].metrics[METRIC]}
    assert v["best_baseline"] == "cosine x"
    assert v["coverage10"] == {"model": 0.95, "baseline": 0.98}
    assert v["chosen"]["plain"]["model"] == "b" and v["chosen"]["prior"]["model"] == "b+prior"
    c = paired_comparison(rows[2], rows[4], METRIC)  # one seed: the paired bootstrap as before seeds
    assert (v["diff"], v["ci_low"], v["ci_high"], v["p_better"]) == (c["diff"], c["ci_low"], c["ci_high"],
                                                                     c["p_better"])
    line = verdict_line(v)
    assert line.startswith("verdict: model chosen on validation b ")
    assert "coverage@10 95.0% vs 98.0%" in line and "best test row a+prior" in line and "(chosen on test)" in line
    # the +prior variant is named when its validation value is the higher one
    results = Results("cold-item", (10,), rows)
    attach_verdict(results, METRIC, validation(a=(0.10, 0.11), b=(0.20, 0.25)))
    assert results.verdict["best_model"] == "b+prior"


def test_without_validation_values_the_best_test_row_is_named_and_labelled():
    rows = [row("a", "model", 0.6, 1), row("b", "model", 0.4, 3), row("cosine x", "itemknn-cbf", 0.3, 5)]
    results = Results("cold-item", (10,), rows)
    attach_verdict(results, METRIC, {})
    assert results.verdict["best_model"] == "a" and results.verdict["chosen_on"] == "test"
    assert "verdict: model chosen on test a " in verdict_line(results.verdict)
    assert results.notes == ["no validation values in the runs' summary.json: the verdict names the best test row "
                             "(chosen on test)"]


def test_seeds_are_grouped_by_base_model_with_mean_spread_and_a_seed_and_query_interval():
    rows = [row(f"{m}@seed{s}{p}", "model", level + 0.05 * s, 10 * s + i, 0.5)
            for i, (m, level) in enumerate((("m", 0.5), ("n", 0.6))) for s in range(3) for p in ("", "+prior")]
    rows.append(row("cosine x", "itemknn-cbf", 0.3, 99))
    val = validation(**{f"m@seed{s}": (0.3 + 0.01 * s, 0.1) for s in range(3)},
                     **{f"n@seed{s}": (0.2, 0.1) for s in range(3)})
    groups = group_rows(rows, val)
    assert sorted(groups) == ["m", "m+prior", "n", "n+prior"]
    assert [r.name for r in groups["m"]] == ["m@seed0", "m@seed1", "m@seed2"]
    assert chosen_groups(groups, val) == {"overall": "m", "plain": "m", "prior": "m+prior"}
    results = Results("cold-item", (10,), rows)
    attach_verdict(results, METRIC, val)
    v, g = results.verdict, results.seed_groups["m"]
    values = [r.metrics[METRIC] for r in groups["m"]]
    assert v["best_model"] == "m" and v["seeds"] == 3 and v["model_value"] == pytest.approx(np.mean(values))
    assert (g["min"], g["max"]) == (min(values), max(values)) and g["sd"] == pytest.approx(np.std(values, ddof=1))
    assert g["per_seed"] == values and g["validation"] == pytest.approx(0.31)
    matrix = np.stack([r.per_query.of(METRIC) for r in groups["m"]])
    iv = seed_query_bootstrap(matrix, seed=0)
    assert g["ci"] == [iv.low, iv.high]
    diff = seed_query_bootstrap(matrix - rows[-1].per_query.of(METRIC), seed=0)
    assert (v["ci_low"], v["ci_high"]) == (diff.low, diff.high) and "seeds then queries" in v["interval"]
    # the interval over seeds and queries is wider than one over the queries of the mean alone
    assert iv.high - iv.low > 0
    text = format_table(results)
    assert "OVER SEEDS" in text and "m+prior" in text and "mean of 3 seeds" in text


def test_seed_query_bootstrap_covers_the_spread_between_seeds():
    rng = np.random.default_rng(0)
    queries = rng.random(200)
    tight = np.stack([queries, queries, queries])            # seeds agree: only query noise
    spread = np.stack([queries - 0.2, queries, queries + 0.2])  # seeds disagree by far more
    a, b = seed_query_bootstrap(tight, seed=1), seed_query_bootstrap(spread, seed=1)
    assert a.mean == pytest.approx(b.mean)
    assert (b.high - b.low) > 3 * (a.high - a.low)
    with pytest.raises(Exception, match="at least 2 queries"):
        seed_query_bootstrap(np.ones((3, 1)))


def test_base_model_strips_the_seed_suffix_unless_the_summary_names_it():
    assert base_model("distill-full@seed2") == "distill-full"
    assert base_model("distill-full") == "distill-full"
    assert base_model("x@seed1", {"base_model": "y"}) == "y"
