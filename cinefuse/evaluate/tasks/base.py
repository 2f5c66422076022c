"""The interface of an evaluation task (item-to-item and user-to-item).

A task turns the loaded job and models into an :class:`~cinefuse.evaluate.evalset.EvalSet`
(its queries and candidates, every row ranking the same ones), ranks candidates for every query
from a model's embeddings (and prior) or from a raw feature matrix, scores the lists, and cuts
the strata. ``rows.model_rows``, ``baselines.baseline_rows`` and ``run.run_evaluate`` ask the
task and never look inside it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np

from cinefuse.evaluate.evalset import EvalSet
from cinefuse.metrics.metrics import PerQuery

Knn = Callable[[np.ndarray, np.ndarray, int, np.ndarray], np.ndarray]  # (queries, candidates, k, self_index) -> top-K


class Task(Protocol):
    name: str
    metric_names: tuple[str, ...]   # the accuracy metrics of its table
    selection_metric: str           # the validation metric that picks its headline model

    def ks(self, ks) -> tuple[int, ...]:
        """The cut-offs its table reports for the asked ``ks``."""

    def verdict_metric(self, ks) -> str:
        """The metric its verdict compares."""

    def interval_metrics(self, ks) -> tuple[str, ...]:
        """The metrics that carry a 95% bootstrap interval in its table."""

    def content_rows(self, matrix: np.ndarray, valid) -> np.ndarray:
        """A raw feature set's item rows as its content baselines use them."""

    def eval_set(self, job, models: dict, tie_break: str, tie_seed: int) -> tuple[EvalSet, dict, list[str]]:
        """(eval set, counts, notes) over the items every model in ``models`` embeds."""

    def rank(self, es: EvalSet, ids: np.ndarray, emb: np.ndarray, k: int, prior: np.ndarray | None = None,
             weight: float = 0.0) -> np.ndarray:
        """(Q, k) candidate rows of ``es`` for every query by a model's embeddings ``emb`` (rows
        in ``ids`` order), plus ``weight`` * ``prior`` of the candidate when a prior is given."""

    def rank_content(self, es: EvalSet, ids: np.ndarray, features: np.ndarray, k: int, knn: Knn) -> np.ndarray:
        """(Q, k) lists by raw features (rows in ``ids`` order: every item of the store table, so
        a task may score from items that are not candidates, such as a user's history), ranked
        by ``knn`` (cosine ItemKNN-CBF)."""

    def score(self, topk: np.ndarray, es: EvalSet, ks) -> tuple[dict[str, float], PerQuery]:
        """The metrics of the lists and the per-query values they average."""

    def strata(self, rows: list, es: EvalSet) -> tuple[dict, dict]:
        """Each row's metrics per stratum of the queries, and how they were cut."""
