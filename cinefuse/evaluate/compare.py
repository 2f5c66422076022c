"""``cinefuse compare``: one table over several fuse workdirs, every model of every run re-ranked
on the cold items all of them share, with intervals and paired verdicts between named rows.

Each run keeps its own store, models, validation choice and raw-feature baselines; what they
share is the question: the same ratings (refused otherwise), the same like threshold (refused
otherwise), the same candidates and queries. The shared items are those cold (``test`` in
``split.json``) in every run that every run can rank (in its store, embedded by all its
models); an item cold in one run but training or validation in another is dropped and counted,
never scored as cold. User-to-item also keeps only the users every run scores (a user needs a
liked training item in each run's own split). Every run is then evaluated by the same machinery
as ``cinefuse evaluate`` (``run.evaluate_task`` with the shared items), so a row's figure is
exactly what evaluating that run alone over those items gives, and all rows' per-query values
line up query by query: the paired verdicts (``--pair A B``; by default each run's model chosen
on validation against the first run's, and each against the best raw-feature baseline) are
paired bootstraps over the same queries, as in ``verdict``.

Rows are named ``<run>/<row>``; random and popularity, the same in every run, appear once
unprefixed, and a raw-feature row identical to an earlier run's (same store and split) once.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from cinefuse.errors import CinefuseError
from cinefuse.evaluate.job import Job, load_models, open_job
from cinefuse.evaluate.results import BOOTSTRAP_SEED, DEFAULT_KS, Results, Row
from cinefuse.evaluate.run import Evaluation, evaluate_task, task_names
from cinefuse.evaluate.selection import chosen_groups, group_rows
from cinefuse.evaluate.tasks import TASKS
from cinefuse.evaluate.tasks.item_to_item import rankable_items
from cinefuse.evaluate.verdict import best_row, compare_group, paired_comparison
from cinefuse.metrics.bootstrap import paired_bootstrap
from cinefuse.metrics.ties import check_tie_break
from cinefuse.metrics.user_metrics import USER_METRIC_LABELS
from cinefuse.progress import progress_bar

DEFAULT_OUT = "cinefuse-compare"
SHARED_KINDS = ("random", "popularity")  # baselines that depend on the shared items only


@dataclass
class Run:
    """One compared workdir: its name in the table, its job and loaded models."""

    name: str
    job: Job
    models: dict
    seconds: dict


@dataclass
class Comparison:
    """One task's table across runs."""

    task: str
    results: Results                 # rows <run>/<row>, shared baselines once; verdict in ``pairs``
    es: object                       # the shared eval set (queries and candidates of every row)
    runs: dict[str, Evaluation]      # each run's own evaluation over the shared items
    chosen: dict[str, dict]          # run -> {"model": <run>/<group>, "on": "validation" | "test"}
    pairs: list[dict]
    shared: dict                     # items (and users) shared and dropped
    outputs: dict = field(default_factory=dict)


def compare_runs(workdirs, names=None, task: str = "both", ks=DEFAULT_KS, pairs=(), seed: int = 0,
                 tie_break: str = "random", tie_seed: int = 0, progress: bool = True) -> dict[str, Comparison]:
    """The comparison of ``workdirs`` (see the module docstring) in each task of ``task``
    ("item-to-item", "user-to-item" or "both"): task name -> :class:`Comparison`. ``names``:
    the runs' names in the table (default: each workdir's folder name); ``pairs``: (A, B) row or
    model names to compare (default: see the module docstring)."""
    check_tie_break(tie_break)
    tasks = task_names(task)
    names = run_names(workdirs, names)
    bar = progress_bar(total=len(workdirs) * (1 + 3 * len(tasks)), unit="step", enabled=progress, leave=False)
    runs = open_runs(workdirs, names, ks, bar)
    check_same_data(runs)
    items, shared = shared_items(runs)
    out = {}
    for name in tasks:
        out[name] = compare_task(runs, TASKS[name], items, dict(shared), seed, tie_break, tie_seed, pairs, bar)
    bar.close()
    return out


def run_names(workdirs, names=None) -> list[str]:
    """The runs' names: ``names`` (a comma-separated string or a list), else the folder names."""
    if not workdirs:
        raise CinefuseError("compare needs at least one fuse workdir")
    if names is None:
        chosen = [Path(w).resolve().name for w in workdirs]
    else:
        chosen = [n.strip() for n in names.split(",")] if isinstance(names, str) else [str(n) for n in names]
        if len(chosen) != len(workdirs):
            raise CinefuseError(f"--names gives {len(chosen)} names for {len(workdirs)} workdirs; give one per workdir")
    for n in chosen:
        if not n or "/" in n:
            raise CinefuseError(f"run name {n!r} must be non-empty and hold no '/' (rows are named <run>/<model>); "
                                f"pass --names")
    twice = sorted({n for n in chosen if chosen.count(n) > 1})
    if twice:
        raise CinefuseError(f"two runs are named {twice[0]!r}; pass --names with one name per workdir")
    return chosen


def open_runs(workdirs, names, ks, bar) -> list[Run]:
    """Each workdir's job (its own config's data, cold-item protocol) and models, loaded once."""
    runs = []
    for workdir, name in zip(workdirs, names):
        bar.set_description(f"loading {name}")
        job = open_job(workdir, ks, "cold-item", None, None, None, None, None)
        models, seconds = load_models(job, progress_bar(enabled=False))  # compare ticks per run, not per model
        runs.append(Run(name, job, models, seconds))
        bar.update(1)
    return runs


def check_same_data(runs: list[Run]) -> None:
    """One line naming the difference when two runs use different ratings or like thresholds."""
    first = runs[0]
    for run in runs[1:]:
        a, b = first.job, run.job
        if a.threshold != b.threshold:
            raise CinefuseError(f"runs {first.name} and {run.name} use different like thresholds ({a.threshold:g} "
                                f"and {b.threshold:g}, pairs.like_threshold of their config.json); compare needs "
                                f"the same")
        if not same_ratings(a.ratings, b.ratings):
            raise CinefuseError(f"runs {first.name} and {run.name} use different ratings ({a.config.data.ratings}: "
                                f"{len(a.ratings)} ratings; {b.config.data.ratings}: {len(b.ratings)}); compare "
                                f"needs runs over the same ratings")


def same_ratings(a, b) -> bool:
    """Whether two loaded ratings tables hold the same (user, item, rating) rows in the same order."""
    return len(a) == len(b) and all(
        np.array_equal(np.asarray(getattr(a, c)), np.asarray(getattr(b, c))) for c in ("user", "item", "rating"))


def shared_items(runs: list[Run]) -> tuple[set[str], dict]:
    """The items cold in every run that every run can rank, and the counts of those dropped: cold
    in some runs only (``seen`` of them training or validation items of another run), or cold
    everywhere but not rankable by some run (not in its store, or not embedded by a model)."""
    tests, seen, rankable = [], set(), []
    for run in runs:
        split = run.job.wd.split()
        tests.append({str(i) for i in split.get("test", [])})
        seen |= {str(i) for part in ("train", "val") for i in split.get(part, [])}
        rankable.append(rankable_items(run.job, run.models, []))
    union, cold = set().union(*tests), set.intersection(*tests)
    items = set.intersection(cold, *rankable)
    if len(items) < 2:
        raise CinefuseError(f"the runs share {len(items)} cold items they can all rank ({len(cold)} are cold in "
                            f"every run, {len(union)} in some); compare needs at least 2")
    counts = {"runs": len(runs), "cold_in_some_run": len(union), "cold_in_every_run": len(cold),
              "dropped_not_cold_in_every_run": len(union - cold),
              "dropped_seen_in_training_by_another_run": len((union - cold) & seen),
              "dropped_not_rankable": len(cold - items), "shared_items": len(items)}
    return items, counts


def shared_notes(shared: dict) -> list[str]:
    """The shared-item counts as the table's notes."""
    notes = [f"{shared['shared_items']} items are cold in every run and rankable by every run; "
             f"{shared['dropped_not_cold_in_every_run']} items cold in some runs only were dropped "
             f"({shared['dropped_seen_in_training_by_another_run']} of them training or validation items of another "
             f"run), and {shared['dropped_not_rankable']} cold in every run but not in a run's store or not embedded "
             f"by all its models"]
    if "shared_users" in shared:
        notes.append(f"user-to-item: {shared['shared_users']} users scored by every run; {shared['dropped_users']} "
                     f"users scored by some runs only were dropped")
    return notes


def shared_users(runs: list[Run], task, items: set[str], tie_break: str, tie_seed: int) -> tuple[set[str], dict]:
    """User-to-item: the users every run scores over ``items`` and the count of those dropped."""
    each = [set(task.eval_set(r.job, r.models, tie_break, tie_seed, items=items)[0].query_ids.tolist())
            for r in runs]
    users = set.intersection(*each)
    if not users:
        raise CinefuseError("no user is scored by every run (a liked training item in each run's split and a liked "
                            "shared cold item); user-to-item cannot be compared")
    return users, {"shared_users": len(users), "dropped_users": len(set().union(*each) - users)}


def compare_task(runs: list[Run], task, items: set[str], shared: dict, seed: int, tie_break: str, tie_seed: int,
                 pairs, bar) -> Comparison:
    """Every run evaluated over the shared items (and users), their rows in one table, the pairs."""
    users = None
    if task.name == "user-to-item":
        users, counts = shared_users(runs, task, items, tie_break, tie_seed)
        shared.update(counts)
    evs = {}
    for r in runs:
        bar.set_description(f"{r.name} ({task.name})")
        evs[r.name] = evaluate_task(r.job, r.models, r.seconds, task, seed, tie_break, tie_seed, bar,
                                    items=items, users=users)
    first = next(iter(evs.values()))
    for name, ev in evs.items():
        if not (np.array_equal(ev.es.query_ids, first.es.query_ids)
                and np.array_equal(ev.es.candidate_ids, first.es.candidate_ids)):
            raise CinefuseError(f"run {name} ranks other queries or candidates than run {runs[0].name} over the shared "
                                f"items; compare cannot pair them")
    rows, groups, notes = table_rows(evs)
    results = Results(first.results.protocol, first.results.ks, rows, {**first.results.counts, **shared},
                      shared_notes(shared) + notes, tie_break=tie_break, tie_seed=tie_seed, task=task.name,
                      metric_names=task.metric_names, bootstrap=dict(first.results.bootstrap))
    if task.name != "item-to-item":
        results.labels.update(USER_METRIC_LABELS)
    chosen = {name: chosen_model(name, ev.results, task) for name, ev in evs.items()}
    metric = task.verdict_metric(results.ks)
    asked = list(pairs) or default_pairs(chosen, rows, metric)
    done = [paired_rows(a, b, resolve(a, rows, groups), resolve(b, rows, groups), metric, results.notes)
            for a, b in asked]
    return Comparison(task.name, results, first.es, evs, chosen, [p for p in done if p], shared)


def table_rows(evs: dict[str, Evaluation]) -> tuple[list[Row], dict[str, list[Row]], list[str]]:
    """The table's rows: every run's model rows, the shared baselines once, every run's raw-feature
    rows (one identical to an earlier run's kept once); and ``<run>/<group>`` -> its seed rows."""
    models, shared, raw, groups, notes = [], [], [], {}, []
    kept_raw: dict[str, Row] = {}
    for name, ev in evs.items():
        renamed = {}
        for row in ev.results.rows:
            if row.kind in SHARED_KINDS:
                if name == next(iter(evs)):
                    shared.append(row)
                continue
            new = replace(row, name=f"{name}/{row.name}")
            renamed[row.name] = new
            if row.kind == "model":
                models.append(new)
            elif row.name in kept_raw and same_values(kept_raw[row.name], row):
                notes.append(f"{new.name} equals {kept_raw[row.name].name} query for query; shown once")
            else:
                kept_raw.setdefault(row.name, new)
                raw.append(new)
        for group, rows in group_rows(ev.results.rows, ev.results.validation).items():
            groups[f"{name}/{group}"] = [renamed[r.name] for r in rows]
    return models + shared + raw, groups, notes


def same_values(a: Row, b: Row) -> bool:
    """Whether two rows hold the same per-query values for every metric."""
    va, vb = a.per_query.values, b.per_query.values
    return set(va) == set(vb) and all(np.array_equal(va[m], vb[m]) for m in va)


def chosen_model(run: str, results: Results, task) -> dict:
    """The run's model validation chose over the shared items (its verdict's model; without a
    verdict, ``selection.chosen_groups``; without validation values, the best test row,
    labelled so)."""
    if results.verdict is not None:
        return {"model": f"{run}/{results.verdict['best_model']}", "on": results.verdict["chosen_on"]}
    groups = group_rows(results.rows, results.validation)
    name = chosen_groups(groups, results.validation)["overall"]
    if name is not None:
        return {"model": f"{run}/{name}", "on": "validation"}
    best = best_row(results.rows, "model", task.verdict_metric(results.ks))
    if best is None:
        return {"model": None, "on": None}
    return {"model": f"{run}/{next(g for g, rs in groups.items() if best in rs)}", "on": "test"}


def default_pairs(chosen: dict[str, dict], rows: list[Row], metric: str) -> list[tuple[str, str]]:
    """Each run's chosen model against the first run's, then each against the best raw baseline."""
    models = [c["model"] for c in chosen.values() if c["model"] is not None]
    out = [(m, models[0]) for m in models[1:]]
    base = best_row(rows, "itemknn-cbf", metric)
    if base is not None:
        out += [(m, base.name) for m in models]
    return list(dict.fromkeys(out))


def resolve(name: str, rows: list[Row], groups: dict[str, list[Row]]) -> list[Row]:
    """A row of the table by name, or a model trained under several seeds (its seed rows)."""
    for row in rows:
        if row.name == name:
            return [row]
    if name in groups:
        return groups[name]
    raise CinefuseError(f"--pair {name!r}: no row or model of that name in the table; rows: "
                        f"{', '.join(r.name for r in rows)}")


def paired_rows(a: str, b: str, a_rows: list[Row], b_rows: list[Row], metric: str, notes: list[str]) -> dict | None:
    """A minus B on ``metric`` over the shared queries, a paired bootstrap (``verdict``): one row
    each, :func:`~cinefuse.evaluate.verdict.paired_comparison`; A under several seeds against one
    row, seeds then queries resampled (``compare_group``); both under several seeds, each side's
    mean over its seeds per query. None (and a note) when fewer than 2 queries are scored."""
    try:
        if len(a_rows) == 1 and len(b_rows) == 1:
            out = {**paired_comparison(a_rows[0], b_rows[0], metric), "interval": "paired bootstrap over queries"}
        elif len(b_rows) == 1:
            out = compare_group(a_rows, b_rows[0], metric)
        else:
            mean = lambda rs: np.mean([r.per_query.of(metric) for r in rs], axis=0)  # noqa: E731
            iv = paired_bootstrap(mean(a_rows), mean(b_rows), seed=BOOTSTRAP_SEED)
            out = {"diff": iv.mean, "ci_low": iv.low, "ci_high": iv.high, "p_better": iv.share_above_zero,
                   "beats": iv.low > 0, "interval": "paired bootstrap over queries of each side's mean over seeds"}
    except CinefuseError as exc:
        notes.append(f"no verdict {a} vs {b}: {exc}")
        return None
    value = lambda rs: float(np.mean([r.metrics[metric] for r in rs]))  # noqa: E731
    return {**out, "metric": metric, "a": a, "b": b, "a_value": value(a_rows), "b_value": value(b_rows),
            "queries": int(a_rows[0].per_query.scored.sum()), "worse": out["ci_high"] < 0}
