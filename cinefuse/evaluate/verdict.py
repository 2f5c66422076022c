"""Intervals, verdict and strata from the rows' per-query values: the paired bootstrap of the
best model against the best raw-feature baseline (:func:`attach_verdict`), any two rows compared
the same way (:func:`paired_comparison`), and the table per popularity stratum of the queries
(:func:`popularity_strata`)."""

from __future__ import annotations

import numpy as np

from cinefuse.errors import CinefuseError
from cinefuse.evaluate.results import BOOTSTRAP_SEED, Results, Row, verdict_k
from cinefuse.metrics.bootstrap import N_RESAMPLES, paired_bootstrap


def finish_results(results: Results, es, task=None) -> None:
    """The verdict, the strata (``task.strata``; default: :func:`popularity_strata`) and the
    bootstrap record, from the rows' per-query values."""
    results.bootstrap = {"level": 0.95, "resamples": N_RESAMPLES, "seed": BOOTSTRAP_SEED}
    attach_verdict(results)
    strata = task.strata if task is not None else popularity_strata
    results.strata, results.strata_cut = strata(results.rows, es)


def paired_comparison(a: Row, b: Row, metric: str) -> dict:
    """A's ``metric`` minus B's over the same queries: mean difference and its paired 95%
    bootstrap interval, and the share of resamples in which A beats B."""
    if a.per_query is None or b.per_query is None:
        raise CinefuseError(f"rows {a.name!r} and {b.name!r} must be made by score_row to be compared")
    iv = paired_bootstrap(a.per_query.of(metric), b.per_query.of(metric), seed=BOOTSTRAP_SEED)
    return {"metric": metric, "a": a.name, "b": b.name, "a_value": float(a.metrics[metric]),
            "b_value": float(b.metrics[metric]), "diff": iv.mean, "ci_low": iv.low, "ci_high": iv.high,
            "p_better": iv.share_above_zero, "beats": iv.low > 0}


def best_row(rows: list[Row], kind: str, metric: str) -> Row | None:
    """The row of ``kind`` with per-query values and the highest finite ``metric`` (None: none)."""
    key = lambda r: r.metrics.get(metric) if np.isfinite(r.metrics.get(metric, np.nan)) else -np.inf  # noqa: E731
    candidates = [r for r in rows if r.kind == kind and r.per_query is not None]
    return max(candidates, key=key) if candidates else None


def attach_verdict(results: Results) -> None:
    """Best model (kind "model", by nDCG@K) against the best raw-feature cosine row (the
    popularity oracle is not a content baseline): ``results.verdict`` and a note when either
    side is missing."""
    metric = f"nDCG@{verdict_k(results.ks)}"
    best, base = best_row(results.rows, "model", metric), best_row(results.rows, "itemknn-cbf", metric)
    scored = int(best.per_query.scored.sum()) if best is not None else 0
    if best is None or base is None or scored < 2:
        results.verdict = None
        results.notes.append("no verdict: it needs a trained model, a raw-feature baseline and 2 scored queries")
        return
    c = paired_comparison(best, base, metric)
    results.verdict = {"metric": metric, "best_model": best.name, "best_baseline": base.name,
                       "model_value": c["a_value"], "baseline_value": c["b_value"], "diff": c["diff"],
                       "ci_low": c["ci_low"], "ci_high": c["ci_high"], "p_better": c["p_better"],
                       "beats": c["beats"], "queries": scored}


def popularity_strata(rows: list[Row], es) -> tuple[dict, dict]:
    """Each row's accuracy metrics over the head and the tail of the queries by their rating
    count (for cold items: held-out ratings, which no model sees), cut at the median count of
    the scored queries: head = count > median, tail = count <= median."""
    with_values = [r for r in rows if r.per_query is not None]
    if not with_values or es.query_raters is None:
        return {}, {}
    scored = with_values[0].per_query.scored
    counts = np.asarray(es.query_raters, dtype=np.int64)
    if not scored.any():
        return {}, {}
    median = float(np.median(counts[scored]))
    masks = {"head": scored & (counts > median), "tail": scored & (counts <= median)}
    strata = {}
    for stratum, mask in masks.items():
        strata[stratum] = {}
        for r in with_values:
            strata[stratum][r.name] = {
                name: (float(v[mask].mean()) if mask.any() else float("nan"))
                for name, v in r.per_query.values.items()}
    cut = {"by": "the users who rated each query item (held-out ratings under cold-item, seen by no model)",
           "median": median,
           "head": f"raters > {median:g}", "tail": f"raters <= {median:g}",
           "head_queries": int(masks["head"].sum()), "tail_queries": int(masks["tail"].sum())}
    return strata, cut
