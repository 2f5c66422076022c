"""Names kept for files outside evaluate that still import ``cinefuse.evaluate.score`` (tests of
other rooms); evaluate's pieces live in ``results``, ``evalset``, ``tasks``, ``rows``,
``baselines``, ``verdict``, ``job``, ``fused`` and ``run``. New code imports from those."""

from cinefuse.evaluate.results import Results, Row
from cinefuse.evaluate.run import run_evaluate

__all__ = ["Results", "Row", "run_evaluate"]
