"""Intervals, verdict and strata from the rows' per-query values: the paired bootstrap of the
model validation chose against the best raw-feature baseline (:func:`attach_verdict`), any two rows compared
the same way (:func:`paired_comparison`), and the table per popularity stratum of the queries
(:func:`popularity_strata`)."""

from __future__ import annotations

import numpy as np

from cinefuse.errors import CinefuseError
from cinefuse.evaluate.results import BOOTSTRAP_SEED, Results, Row, verdict_k
from cinefuse.evaluate.selection import chosen_groups, group_rows, group_summary
from cinefuse.metrics.bootstrap import N_RESAMPLES, paired_bootstrap, seed_query_bootstrap


def finish_results(results: Results, es, task=None, validation: dict | None = None) -> None:
    """The verdict (the model ``validation`` chose, see :func:`attach_verdict`), the strata
    (``task.strata``; default: :func:`popularity_strata`) and the bootstrap record, from the
    rows' per-query values."""
    results.bootstrap = {"level": 0.95, "resamples": N_RESAMPLES, "seed": BOOTSTRAP_SEED}
    results.validation = validation or {}
    attach_verdict(results, task.verdict_metric(results.ks) if task is not None else None, validation)
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


def attach_verdict(results: Results, metric: str | None = None, validation: dict | None = None) -> None:
    """The model validation chose (``selection.chosen_groups``: highest validation value of the
    task, mean over seeds) against the best raw-feature cosine row by ``metric`` (default
    nDCG@K; the popularity oracle is not a content baseline): ``results.verdict``, with the best
    test row shown as "chosen on test" and coverage@10 of both sides. Without validation values
    the best test row is named and labelled so. Groups of several seeds also fill
    ``results.seed_groups`` (mean, spread, interval over seeds and queries)."""
    metric = metric or f"nDCG@{verdict_k(results.ks)}"
    validation = validation or {}
    base = best_row(results.rows, "itemknn-cbf", metric)
    best_test = best_row(results.rows, "model", metric)
    groups = group_rows(results.rows, validation)
    chosen = chosen_groups(groups, validation)
    scored = int(best_test.per_query.scored.sum()) if best_test is not None else 0
    if best_test is None or base is None or scored < 2:
        results.verdict = None
        results.notes.append("no verdict: it needs a trained model, a raw-feature baseline and 2 scored queries")
        return
    name, on = chosen["overall"], "validation"
    if name is None:
        name, on = next(g for g, rs in groups.items() if best_test in rs), "test"
        results.notes.append("no validation values in the runs' summary.json: the verdict names the best test row "
                             "(chosen on test)")
    if any(len(rs) > 1 for rs in groups.values()):
        results.seed_groups = {g: seed_group(g, rs, validation, metric) for g, rs in groups.items()}
    c = compare_group(groups[name], base, metric)
    g = group_summary(name, groups[name], validation, metric)
    results.verdict = {"metric": metric, "best_model": name, "best_baseline": base.name,
                       "model_value": g["value"], "baseline_value": c["b_value"], "diff": c["diff"],
                       "ci_low": c["ci_low"], "ci_high": c["ci_high"], "p_better": c["p_better"],
                       "beats": c["beats"], "queries": scored, "chosen_on": on, "validation_value": g["validation"],
                       "seeds": g["seeds"], "interval": c["interval"],
                       "coverage10": {"model": g["coverage10"], "baseline": base.metrics.get("Cov@10")},
                       "best_on_test": {"model": best_test.name, "value": float(best_test.metrics[metric])},
                       "chosen": {kind: (group_summary(v, groups[v], validation, metric) if v else None)
                                  for kind, v in chosen.items()}}


def compare_group(rows: list[Row], base: Row, metric: str) -> dict:
    """A group's rows against ``base``: one seed, :func:`paired_comparison` (as before seeds);
    several, the per-query differences of every seed bootstrapped over seeds then queries."""
    if len(rows) == 1:
        return {**paired_comparison(rows[0], base, metric), "interval": "paired bootstrap over queries"}
    diff = np.stack([r.per_query.of(metric) - base.per_query.of(metric) for r in rows])
    iv = seed_query_bootstrap(diff, seed=BOOTSTRAP_SEED)
    return {"b_value": float(base.metrics[metric]), "diff": iv.mean, "ci_low": iv.low, "ci_high": iv.high,
            "p_better": iv.share_above_zero, "beats": iv.low > 0,
            "interval": f"paired bootstrap over {len(rows)} seeds then queries"}


def seed_group(group: str, rows: list[Row], validation: dict, metric: str) -> dict:
    """A group's mean over seeds, its spread and the 95% interval over seeds and queries."""
    out = group_summary(group, rows, validation, metric)
    out["metric"] = metric
    out["per_seed"] = [float(r.metrics[metric]) for r in rows]
    values = np.stack([r.per_query.of(metric) for r in rows])
    if values.shape[1] >= 2:
        iv = seed_query_bootstrap(values, seed=BOOTSTRAP_SEED)
        out["ci"] = [iv.low, iv.high]
    return out


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


def history_strata(rows: list[Row], es) -> tuple[dict, dict]:
    """User-to-item strata: Recall of each row over the relevant items in the head and in the
    tail of the candidates by held-out popularity (``row.per_query.item_strata``; users with no
    relevant item there left out), and every metric over the users with a short and a long
    history (cut at the median history length: short = length <= median)."""
    with_values = [r for r in rows if r.per_query is not None]
    if not with_values:
        return {}, {}
    lengths = np.asarray(es.history_len)
    median = float(np.median(lengths))
    masks = {"history short": lengths <= median, "history long": lengths > median}
    strata: dict = {}
    for r in with_values:
        for stratum, values in getattr(r.per_query, "item_strata", {}).items():
            strata.setdefault(stratum, {})[r.name] = {
                name: (float(np.nanmean(v)) if np.isfinite(v).any() else float("nan")) for name, v in values.items()}
        for stratum, mask in masks.items():
            strata.setdefault(stratum, {})[r.name] = {
                name: (float(v[mask].mean()) if mask.any() else float("nan")) for name, v in r.per_query.values.items()}
    item_median = float(np.median(es.raters)) if len(es.raters) else 0.0
    head = es.raters > item_median
    cut = {"lines": [
        f"items head/tail: the candidates split at the median of their held-out raters ({item_median:g}): head "
        f"{int(head.sum())} items with more raters, tail {int((~head).sum())}; Recall of each user's relevant items "
        f"in the stratum (users with none there left out)",
        f"history short/long: users split at the median history length ({median:g} liked training items): short "
        f"{int(masks['history short'].sum())} users, long {int(masks['history long'].sum())}"],
        "item_median_raters": item_median, "history_median": median,
        "head_items": int(head.sum()), "tail_items": int((~head).sum()),
        "short_users": int(masks["history short"].sum()), "long_users": int(masks["history long"].sum())}
    return strata, cut
