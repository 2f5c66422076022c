"""Score a fuse workdir: every trained model and every baseline, one table per task.

``run_evaluate(workdir, task=...)`` loads every trained model once (``job.load_models``: ids,
embeddings and prior), lets each task (``tasks``: item-to-item, user-to-item, or both) build
its eval set and rank, makes the rows (``rows.model_rows``, ``baselines.baseline_rows``), adds the verdict and strata
(``verdict``), writes the fused embeddings to a store as feature sets ``fused/<model>``
(``fused``) and the tables and plots (``report``), and every row's per-query values beside them
(``perquery``: ``per_query.parquet`` and ``per_query.csv.gz``).

Every row of one table ranks the same candidates: items a model cannot embed are dropped from
the candidate set for all rows and counted in ``notes``. Ties follow ``cinefuse.metrics.ties``
(``tie_break="random"``, seeded by ``tie_seed``, by default; ``"id"`` for comparison).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from cinefuse.evaluate.baselines import baseline_rows
from cinefuse.evaluate.evalset import EvalSet
from cinefuse.evaluate.fused import FusedItems, safe_set_name, write_fused_embeddings
from cinefuse.evaluate.job import Job, load_models, open_job
from cinefuse.evaluate.perquery import write_per_query
from cinefuse.evaluate.results import DEFAULT_KS, Results
from cinefuse.evaluate.rows import model_rows
from cinefuse.errors import CinefuseError
from cinefuse.evaluate.selection import task_validation
from cinefuse.evaluate.tasks import TASKS
from cinefuse.evaluate.tasks.item_to_item import ITEM_TO_ITEM
from cinefuse.evaluate.verdict import finish_results
from cinefuse.metrics.user_metrics import USER_METRIC_LABELS
from cinefuse.metrics.ties import check_tie_break
from cinefuse.progress import progress_bar


@dataclass
class Evaluation:
    """Everything one evaluation computed: its job, task, eval set, loaded models and results."""

    job: Job
    task: object
    es: EvalSet
    models: dict            # name -> fuse.embed.EmbeddedModel
    results: Results


def run_evaluate(
    workdir,
    ks=DEFAULT_KS,
    protocol: str = "cold-item",
    threshold: float | None = None,
    store=None,
    ratings=None,
    movies=None,
    fused_store=None,
    endpoint_url: str | None = None,
    seed: int = 0,
    write: bool = True,
    progress: bool = True,
    tie_break: str = "random",
    tie_seed: int = 0,
    task: str = "item-to-item",
):
    """Evaluate every trained model of ``workdir`` and every baseline in ``task`` ("item-to-item",
    "user-to-item" or "both"); write the tables, plots and fused embeddings (unless
    ``write=False``) and return the results: one task's :class:`Results`, or for "both" a dict
    task name -> Results. ``seed`` seeds the random baseline; ``tie_break``/``tie_seed`` the order
    score ties follow (every row)."""
    names = task_names(task, protocol)
    evs = evaluate_runs(workdir, ks, protocol, threshold, store, ratings, movies, endpoint_url, seed, progress,
                        tie_break, tie_seed, names)
    if write:
        write_all(evs, fused_store)
    if task == "both":
        return {name: ev.results for name, ev in evs.items()}
    return evs[names[0]].results


def task_names(task: str, protocol: str = "cold-item") -> list[str]:
    """The tasks ``--task`` names: one, or both (item-to-item alone under the thesis protocol,
    which has no cold split to draw users' histories from)."""
    if task == "both":
        return ["item-to-item", "user-to-item"] if protocol == "cold-item" else ["item-to-item"]
    if task not in TASKS:
        raise CinefuseError(f"unknown task {task!r}; choose one of {', '.join([*TASKS, 'both'])}")
    return [task]


def evaluate_run(workdir, ks=DEFAULT_KS, protocol: str = "cold-item", threshold=None, store=None, ratings=None,
                 movies=None, endpoint_url=None, seed: int = 0, progress: bool = True, tie_break: str = "random",
                 tie_seed: int = 0, task=ITEM_TO_ITEM) -> Evaluation:
    """The evaluation of :func:`run_evaluate` in one task, nothing written: the job, the loaded
    models, the task's eval set and the finished results."""
    name = task if isinstance(task, str) else task.name
    return evaluate_runs(workdir, ks, protocol, threshold, store, ratings, movies, endpoint_url, seed, progress,
                         tie_break, tie_seed, [name])[name]


def evaluate_runs(workdir, ks=DEFAULT_KS, protocol: str = "cold-item", threshold=None, store=None, ratings=None,
                  movies=None, endpoint_url=None, seed: int = 0, progress: bool = True, tie_break: str = "random",
                  tie_seed: int = 0, tasks=("item-to-item",)) -> dict[str, Evaluation]:
    """Every task of ``tasks`` over the same job and models (loaded once): task name -> Evaluation."""
    check_tie_break(tie_break)
    job = open_job(workdir, ks, protocol, threshold, store, ratings, movies, endpoint_url)
    bar = progress_bar(total=len(job.models) + 3 * len(tasks), unit="step", enabled=progress, leave=False)
    bar.set_description("embedding")
    models, seconds = load_models(job, bar)
    out = {}
    for name in tasks:
        out[name] = evaluate_task(job, models, seconds, TASKS[name], seed, tie_break, tie_seed, bar)
    bar.close()
    return out


def evaluate_task(job: Job, models: dict, seconds: dict, task, seed: int, tie_break: str, tie_seed: int,
                  bar, items=None, users=None) -> Evaluation:
    """One task's table: its eval set, the model rows (the prior weight the task chose on
    validation), the baselines, the verdict and strata. ``items`` (and for user-to-item
    ``users``): score only those test items (users), as ``cinefuse compare`` does over the ones
    every compared run shares; validation is untouched by them."""
    job = replace(job, ks=task.ks(job.ks))
    restrict = {key: value for key, value in (("items", items), ("users", users)) if value is not None}
    es, counts, notes = task.eval_set(job, models, tie_break, tie_seed, **restrict)
    bar.update(1)
    bar.set_description(f"ranking models ({task.name})")
    weights, validation = task_validation(job, models, task, tie_break, tie_seed, notes)
    rows = model_rows(job, models, es, seconds, task, prior_weights=weights)
    bar.update(1)
    bar.set_description(f"baselines ({task.name})")
    rows += baseline_rows(job, es, seed, notes, task)
    bar.update(1)
    results = Results(job.protocol, job.ks, rows, {**counts, "like_threshold": job.threshold}, notes,
                      tie_break=tie_break, tie_seed=tie_seed, task=task.name, metric_names=task.metric_names)
    if task.name != "item-to-item":
        results.labels.update(USER_METRIC_LABELS)
    finish_results(results, es, task, validation)
    return Evaluation(job, task, es, models, results)


def write_all(evs: dict[str, Evaluation], fused_store=None) -> None:
    """The fused embeddings once, then each task's tables and plots: item-to-item in
    ``W/evaluation/<protocol>/`` (as before), user-to-item in its ``user-to-item/`` folder; with
    both, the item-to-item ``results.json`` also holds the user-to-item results under the key
    ``"user-to-item"``."""
    first = next(iter(evs.values()))
    weights = {model: {name: (ev.results.validation.get(model) or {}).get("weight") for name, ev in evs.items()}
               for model in first.models}
    write_results(first, fused_store, prior_weights=weights)
    for name, ev in evs.items():
        if ev is not first:
            ev.results.notes.append(first.results.notes[-1])
            write_results(ev, fused_store=None, embeddings=False)
    if len(evs) > 1:
        i2i, u2i = evs["item-to-item"].results, evs["user-to-item"].results
        path = Path(i2i.outputs["json"])
        path.write_text(json.dumps({**i2i.to_json(), "user-to-item": u2i.to_json()}, indent=2, default=float))


def write_results(ev: Evaluation, fused_store=None, embeddings: bool = True, prior_weights: dict | None = None) -> None:
    """The fused embeddings (and each prior head's item prior, with the weight each task chose:
    ``prior_weights`` model -> task -> w) to a store, the tables and plots to
    ``W/evaluation/<protocol>/`` (user-to-item: its ``user-to-item/`` folder)."""
    from cinefuse.evaluate.report import write_report

    job, results = ev.job, ev.results
    if embeddings:
        if prior_weights is None:
            prior_weights = {m: {ev.task.name: (ev.results.validation.get(m) or {}).get("weight")} for m in ev.models}
        embeddings_of = {name: FusedItems(np.asarray(m.ids, dtype=str), m.emb, m.prior, prior_weights.get(name, {}))
                         for name, m in ev.models.items()}
        location = write_fused_embeddings(job.wd.root, embeddings_of, fused_store)
        results.notes.append(f"fused embeddings written to {location} as "
                             f"{', '.join(safe_set_name(m) for m in job.models)}")
    out = job.wd.evaluation_dir(job.protocol)
    if results.task != "item-to-item":
        out = out / results.task
    per_query = write_per_query(results, ev.es, out)  # first: a note it adds reaches the report
    written = {**write_report(results, out, job.wd.root), **per_query}
    results.outputs = {k: str(v) for k, v in written.items()}
