"""Rows of the table: :func:`score_row` is the one way a row is made (models, their ``+prior``
variants, baselines), and :func:`model_rows` makes one per trained model through the task.

A row keeps its per-query accuracy values (``row.per_query``) and the 95% bootstrap interval over
queries of nDCG and HR at the verdict K (``row.ci``). A model row carries its model's modality
set and objective from the run record.
"""

from __future__ import annotations

import time

from cinefuse.evaluate.results import BOOTSTRAP_SEED, Row
from cinefuse.evaluate.tasks.item_to_item import ITEM_TO_ITEM
from cinefuse.metrics.bootstrap import bootstrap_interval


def score_row(name: str, kind: str, topk, es, ks, train_seconds, start: float, note: str = "",
              task=ITEM_TO_ITEM) -> Row:
    """The metrics of ``topk`` (ranked in ``es``'s tie order, scored by ``task``), its per-query
    values and its 95% bootstrap intervals; ``start`` is the ``perf_counter`` at which its
    evaluation began."""
    metrics, per_query = task.score(topk, es, ks)
    ci = {}
    if int(per_query.scored.sum()) >= 2:
        for metric in task.interval_metrics(ks):
            iv = bootstrap_interval(per_query.of(metric), seed=BOOTSTRAP_SEED)
            ci[metric] = [iv.low, iv.high]
    return Row(name, kind, metrics, train_seconds, time.perf_counter() - start, note=note, ci=ci,
               per_query=per_query)


def model_rows(job, models: dict, es, seconds: dict[str, float], task=ITEM_TO_ITEM,
               prior_weights: dict[str, float] | None = None) -> list[Row]:
    """One row per trained model (``models``: name -> ``fuse.embed.EmbeddedModel``): the task's
    ranking by its embeddings; for a model with a prior head also ``<model>+prior``, cos + w *
    prior with the weight w chosen on validation (``prior_weights[model]`` when given, the task's
    own choice; else the one its training recorded). ``seconds[model]``: its loading time,
    charged to both rows."""
    rows = []
    for name in job.models:
        m = models[name]
        train_seconds = job.wd.train_seconds(name)
        start = time.perf_counter() - seconds[name]
        topk = task.rank(es, m.ids, m.emb, max(job.ks))
        rows.append(tagged(score_row(name, "model", topk, es, job.ks, train_seconds, start, task=task), m))
        if m.prior is not None:
            weight = float((prior_weights or {}).get(name, m.prior_weight) or 0.0)
            start = time.perf_counter() - seconds[name]
            topk = task.rank(es, m.ids, m.emb, max(job.ks), prior=m.prior, weight=weight)
            note = f"cosine + {weight:g} x item prior (weight chosen on the validation items)"
            rows.append(tagged(score_row(f"{name}+prior", "model", topk, es, job.ks, train_seconds, start,
                                         note=note, task=task), m))
    return rows


def tagged(row: Row, model) -> Row:
    """``row`` with the modality set and objective of ``model``'s run record."""
    config = model.record.config
    row.modalities = config.model.modalities
    row.objective = config.objective.kind
    return row
