"""The headline model chosen on validation, and models trained under several seeds.

Validation values come from each model's ``summary.json`` (the fuse side writes them):
item-to-item ``val_ndcg10`` / ``val_ndcg10_prior`` (weight ``prior_weight``), user-to-item
``val_u2i_recall20`` / ``val_u2i_recall20_prior`` (weight ``prior_weight_u2i``). A run whose
summary lacks the user-to-item keys is validated here (:func:`host_u2i_validation`: the same
scoring over the split's validation items as candidates, the prior weight the best of the run's
``objective.prior_weights`` by Recall@20, the smaller on ties), and the notes say so.

Rows are grouped by base model (``summary.json``'s ``base_model``; else the run name without a
trailing ``@seed<N>``), a ``+prior`` row in its own group ``<base>+prior``. A group's validation
value is the mean over its seeds; the verdict names the group with the highest one
(:func:`chosen_groups`), never the best test row, which is shown labelled "chosen on test".
"""

from __future__ import annotations

import re

import numpy as np

from cinefuse.errors import CinefuseError

SEED_SUFFIX = re.compile(r"@seed\d+$")
PRIOR = "+prior"
SUMMARY_KEYS = {
    "item-to-item": ("val_ndcg10", "val_ndcg10_prior", "prior_weight"),
    "user-to-item": ("val_u2i_recall20", "val_u2i_recall20_prior", "prior_weight_u2i"),
}


def run_of(row_name: str) -> tuple[str, bool]:
    """(the trained run a row comes from, whether it is the ``+prior`` row)."""
    return (row_name[: -len(PRIOR)], True) if row_name.endswith(PRIOR) else (row_name, False)


def base_model(run: str, summary: dict | None = None) -> str:
    """The model a run trains under every seed: ``summary["base_model"]``, else the run name
    without a trailing ``@seed<N>``."""
    if summary and summary.get("base_model"):
        return str(summary["base_model"])
    return SEED_SUFFIX.sub("", run)


def task_validation(job, models: dict, task, tie_break: str, tie_seed: int, notes: list[str]):
    """(prior weights to score ``+prior`` rows with, or None for the trained ones; run ->
    {"plain", "prior", "weight", "seed", "base_model", "source"}) for ``task``."""
    plain_key, prior_key, weight_key = SUMMARY_KEYS[task.name]
    out = {}
    for name in job.models:
        try:
            s = job.wd.summary(name)
        except CinefuseError:
            s = {}
        out[name] = {"plain": s.get(plain_key), "prior": s.get(prior_key), "weight": s.get(weight_key),
                     "seed": s.get("seed"), "base_model": base_model(name, s), "source": "summary.json"}
    if task.name == "item-to-item":
        return None, out
    lacking = [n for n in job.models if out[n]["plain"] is None
               or (models[n].prior is not None and (out[n]["prior"] is None or out[n]["weight"] is None))]
    if lacking:
        host = host_u2i_validation(job, {n: models[n] for n in lacking}, task, tie_break, tie_seed, notes)
        for n in lacking:
            out[n].update(host[n])
        notes.append(f"user-to-item validation values and prior weights of {len(lacking)} runs computed by evaluate "
                     f"on the validation items (their summary.json lacks {plain_key}/{prior_key}/{weight_key}); "
                     f"weights from objective.prior_weights by Recall@20")
    weights = {n: float(v["weight"]) for n, v in out.items() if v["weight"] is not None}
    return weights, out


def host_u2i_validation(job, models: dict, task, tie_break: str, tie_seed: int, notes: list[str]) -> dict:
    """Recall@20 of each model on the validation users (candidates: the validation items), plain
    and with each of its run's prior weights: run -> {"plain", "prior", "weight", "source"}."""
    metric = task.selection_metric
    k = int(metric.split("@")[1])
    es, _, _ = task.eval_set(job, models, tie_break, tie_seed, part="val")
    out = {}
    for name, m in models.items():
        value = task.score(task.rank(es, m.ids, m.emb, k), es, (k,))[0][metric]
        rec = {"plain": value, "prior": None, "weight": None, "source": "evaluate (validation items)"}
        if m.prior is not None:
            scan = {}
            for w in m.record.config.objective.prior_weights:
                scan[float(w)] = task.score(task.rank(es, m.ids, m.emb, k, prior=m.prior, weight=float(w)), es,
                                            (k,))[0][metric]
            best = max(scan, key=lambda w: (scan[w], -w))
            rec.update({"prior": scan[best], "weight": best})
        out[name] = rec
    return out


def row_validation(row_name: str, validation: dict) -> float | None:
    """The validation value of one row (its run's plain or ``+prior`` value), None if unknown."""
    run, prior = run_of(row_name)
    v = validation.get(run, {}).get("prior" if prior else "plain")
    return None if v is None else float(v)


def group_rows(rows, validation: dict) -> dict[str, list]:
    """Model rows by group (``<base>`` or ``<base>+prior``), each group's rows in seed order."""
    groups: dict[str, list] = {}
    for r in rows:
        if r.kind != "model" or r.per_query is None:
            continue
        run, prior = run_of(r.name)
        base = validation.get(run, {}).get("base_model") or base_model(run)
        groups.setdefault(base + (PRIOR if prior else ""), []).append(r)
    seed_of = lambda r: validation.get(run_of(r.name)[0], {}).get("seed") or 0  # noqa: E731
    return {g: sorted(rs, key=lambda r: (seed_of(r), r.name)) for g, rs in groups.items()}


def group_validation(group: str, rows, validation: dict) -> float | None:
    """The mean over the group's seeds of their validation values (None if any lacks one)."""
    values = []
    for r in rows:
        run, prior = run_of(r.name)
        v = validation.get(run, {}).get("prior" if prior else "plain")
        if v is None:
            return None
        values.append(float(v))
    return float(np.mean(values)) if values else None


def chosen_groups(groups: dict, validation: dict) -> dict[str, str | None]:
    """The group validation chose overall, among the plain groups, and among the ``+prior``
    groups (None where no group of that kind has validation values); ties: the first by name."""
    scored = {g: group_validation(g, rs, validation) for g, rs in groups.items()}
    out = {}
    for kind, keep in (("overall", lambda g: True), ("plain", lambda g: not g.endswith(PRIOR)),
                       ("prior", lambda g: g.endswith(PRIOR))):
        pool = sorted(g for g in scored if keep(g) and scored[g] is not None)
        out[kind] = max(pool, key=lambda g: scored[g]) if pool else None
    return out


def group_summary(group: str, rows, validation: dict, metric: str) -> dict:
    """One group's test values: mean over seeds, spread, coverage@10, validation value."""
    values = np.array([float(r.metrics[metric]) for r in rows])
    cov = [r.metrics.get("Cov@10") for r in rows]
    cov = [c for c in cov if c is not None and np.isfinite(c)]
    return {"model": group, "rows": [r.name for r in rows], "seeds": len(rows), "value": float(values.mean()),
            "min": float(values.min()), "max": float(values.max()),
            "sd": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
            "validation": group_validation(group, rows, validation),
            "coverage10": float(np.mean(cov)) if cov else None}
