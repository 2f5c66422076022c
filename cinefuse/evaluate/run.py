"""Score a fuse workdir: every trained model and every baseline, one table.

``run_evaluate(workdir)`` loads every trained model once (``job.load_models``: ids, embeddings
and prior), lets the task (``tasks``; item-to-item today) build the eval set and rank, makes the
rows (``rows.model_rows``, ``baselines.baseline_rows``), adds the verdict and strata
(``verdict``), writes the fused embeddings to a store as feature sets ``fused/<model>``
(``fused``) and the tables and plots (``report``).

Every row of one table ranks the same candidates: items a model cannot embed are dropped from
the candidate set for all rows and counted in ``notes``. Ties follow ``cinefuse.metrics.ties``
(``tie_break="random"``, seeded by ``tie_seed``, by default; ``"id"`` for comparison).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cinefuse.evaluate.baselines import baseline_rows
from cinefuse.evaluate.evalset import EvalSet
from cinefuse.evaluate.fused import safe_set_name, write_fused_embeddings
from cinefuse.evaluate.job import Job, load_models, open_job
from cinefuse.evaluate.results import DEFAULT_KS, Results
from cinefuse.evaluate.rows import model_rows
from cinefuse.evaluate.tasks.item_to_item import ITEM_TO_ITEM
from cinefuse.evaluate.verdict import finish_results
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
) -> Results:
    """Evaluate every trained model of ``workdir`` and every baseline; write the tables, plots
    and fused embeddings (unless ``write=False``) and return the results. ``seed`` seeds the
    random baseline; ``tie_break``/``tie_seed`` the order score ties follow (every row)."""
    ev = evaluate_run(workdir, ks, protocol, threshold, store, ratings, movies, endpoint_url, seed, progress,
                      tie_break, tie_seed)
    if write:
        write_results(ev, fused_store)
    return ev.results


def evaluate_run(workdir, ks=DEFAULT_KS, protocol: str = "cold-item", threshold=None, store=None, ratings=None,
                 movies=None, endpoint_url=None, seed: int = 0, progress: bool = True, tie_break: str = "random",
                 tie_seed: int = 0, task=ITEM_TO_ITEM) -> Evaluation:
    """The evaluation of :func:`run_evaluate`, nothing written: the job, the loaded models, the
    task's eval set and the finished results."""
    check_tie_break(tie_break)
    job = open_job(workdir, ks, protocol, threshold, store, ratings, movies, endpoint_url)
    bar = progress_bar(total=len(job.models) + 3, unit="step", enabled=progress, leave=False)
    bar.set_description("embedding")
    models, seconds = load_models(job, bar)
    es, counts, notes = task.eval_set(job, models, tie_break, tie_seed)
    bar.update(1)
    bar.set_description("ranking models")
    rows = model_rows(job, models, es, seconds, task)
    bar.update(1)
    bar.set_description("baselines")
    rows += baseline_rows(job, es, seed, notes, task)
    bar.update(1)
    bar.close()
    results = Results(job.protocol, job.ks, rows, {**counts, "like_threshold": job.threshold}, notes,
                      tie_break=tie_break, tie_seed=tie_seed)
    finish_results(results, es, task)
    return Evaluation(job, task, es, models, results)


def write_results(ev: Evaluation, fused_store=None) -> None:
    """The fused embeddings to a store, the tables and plots to ``W/evaluation/<protocol>/``."""
    from cinefuse.evaluate.report import write_report

    job, results = ev.job, ev.results
    embeddings = {name: (np.asarray(m.ids, dtype=str), m.emb) for name, m in ev.models.items()}
    location = write_fused_embeddings(job.wd.root, embeddings, fused_store)
    results.notes.append(f"fused embeddings written to {location} as {', '.join(safe_set_name(m) for m in job.models)}")
    written = write_report(results, job.wd.evaluation_dir(job.protocol), job.wd.root)
    results.outputs = {k: str(v) for k, v in written.items()}
