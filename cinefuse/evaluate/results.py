"""The results of one evaluation: a :class:`Row` per model or baseline, the :class:`Results`
table that holds them with its counts, notes, verdict and strata, and its plain JSON form.

A row keeps its per-query accuracy values (``row.per_query``, in memory only) so that intervals,
the paired verdict and the strata are computed from the same numbers the table averages.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from cinefuse.errors import CinefuseError
from cinefuse.metrics.metrics import ACCURACY_METRICS, METRIC_LABELS, PerQuery

DEFAULT_KS = (1, 3, 5, 10)
VERDICT_K = 10          # nDCG@10 and HR@10 carry intervals (the largest K when 10 is not asked)
BOOTSTRAP_SEED = 0      # resampling seed of every interval, recorded in results.json
IN_MEMORY = ("per_query", "modalities", "objective")  # Row fields results.json does not hold


@dataclass
class Row:
    name: str
    kind: str  # "model" | "random" | "popularity" | "itemknn-cbf"
    metrics: dict[str, float]
    train_seconds: float | None  # None: nothing is trained (baselines)
    eval_seconds: float
    note: str = ""
    ci: dict[str, list[float]] = field(default_factory=dict)  # {"nDCG@10": [lo, hi], "HR@10": [lo, hi]}
    per_query: PerQuery | None = field(default=None, repr=False, compare=False)  # in memory only
    # a model row's modality set (its run's [model].modalities: "text+meta", "full" or a list of
    # sets) and objective kind, from the run record; None for baselines; in memory only
    modalities: Any = field(default=None, compare=False)
    objective: str | None = field(default=None, compare=False)


@dataclass
class Results:
    protocol: str
    ks: tuple[int, ...]
    rows: list[Row]
    counts: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=lambda: dict(METRIC_LABELS))
    outputs: dict[str, str] = field(default_factory=dict)  # files written: markdown, csv, json, plots
    tie_break: str = "random"
    tie_seed: int = 0
    verdict: dict | None = None      # paired bootstrap, best model vs best raw baseline (attach_verdict)
    strata: dict = field(default_factory=dict)      # {"head": {row: {metric: value}}, "tail": {...}}
    strata_cut: dict = field(default_factory=dict)  # how the strata were cut (median, sizes)
    bootstrap: dict = field(default_factory=lambda: {"level": 0.95, "resamples": 0, "seed": BOOTSTRAP_SEED})
    task: str = "item-to-item"
    metric_names: tuple[str, ...] = ACCURACY_METRICS  # the accuracy metrics of the table
    seed_groups: dict = field(default_factory=dict)   # model -> mean, spread, interval over seeds (several seeds)
    # run -> its validation values in this task (selection.task_validation); in memory only
    validation: dict = field(default_factory=dict, repr=False)

    def to_json(self) -> dict:
        """Plain JSON: NaN (a metric undefined here, e.g. Div@1) becomes null."""
        out = {
            "protocol": self.protocol,
            "ks": list(self.ks),
            "tie_break": self.tie_break,
            "tie_seed": self.tie_seed,
            "counts": self.counts,
            "notes": self.notes,
            "labels": self.labels,
            "rows": [{f.name: getattr(r, f.name) for f in fields(r) if f.name not in IN_MEMORY} for r in self.rows],
            "verdict": self.verdict,
            "strata": self.strata,
            "strata_cut": self.strata_cut,
            "bootstrap": self.bootstrap,
        }
        if self.task != "item-to-item":  # the item-to-item layout is kept as it was
            out = {"task": self.task, **out}
        if self.seed_groups:
            out["seed_groups"] = self.seed_groups
        return finite_or_none(out)

    def row(self, name: str) -> Row:
        for r in self.rows:
            if r.name == name:
                return r
        raise KeyError(name)


def finite_or_none(obj):
    if isinstance(obj, float):
        return obj if np.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_or_none(v) for v in obj]
    return obj


def parse_ks(text: str | tuple | list) -> tuple[int, ...]:
    if isinstance(text, (tuple, list)):
        parts = [str(x) for x in text]
    else:
        parts = [p.strip() for p in str(text).split(",") if p.strip()]
    try:
        ks = tuple(sorted({int(p) for p in parts}))
    except ValueError:
        raise CinefuseError(f"--k {text!r} must be comma-separated positive integers, e.g. 1,3,5,10") from None
    if not ks or ks[0] < 1:
        raise CinefuseError(f"--k {text!r} must be comma-separated positive integers, e.g. 1,3,5,10")
    return ks


def verdict_k(ks) -> int:
    return VERDICT_K if VERDICT_K in ks else max(ks)


def headline_k(results: Results) -> int:
    """The K of the compact table: the K of the nDCG that carries an interval, else 10 or the
    largest K under it (the smallest asked when every K is over 10)."""
    for row in results.rows:
        for metric in row.ci:
            name, _, k = metric.partition("@")
            if name == "nDCG" and k.isdigit():
                return int(k)
    under = [k for k in results.ks if k <= VERDICT_K]
    return max(under) if under else min(results.ks)


def headline_metrics(results: Results) -> list[str]:
    """The accuracy columns of the compact table: nDCG and HitRate at :func:`headline_k`, then
    the verdict's metric and every metric with an interval (user-to-item: Recall@20), in that
    order, each once, those no row holds left out."""
    k = headline_k(results)
    names = [f"nDCG@{k}", f"HR@{k}"]
    wanted = [(results.verdict or {}).get("metric")] + [m for row in results.rows for m in row.ci]
    names += [m for m in wanted if m and m not in names]
    held = set().union(*(row.metrics for row in results.rows)) if results.rows else set()
    return [m for m in dict.fromkeys(names) if m in held]
