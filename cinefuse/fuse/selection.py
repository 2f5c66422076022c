"""Model selection: early stopping and the kept parameters, as a small value and one rule.

Each evaluation hands :meth:`Selection.update` the members' selection metric at a step (the
validation metric of ``[selection] task``: item-to-item nDCG@10 or user-to-item Recall@20; the
field keeps its old name ``best_ndcg10`` for the checkpoints' JSON); a member
improves when it beats its best by more than 1e-6 (its first evaluation always does), else it
counts one more evaluation without improvement and stops after ``patience`` of them (0: never).
A stopped member is not evaluated again. :func:`keep` copies the improved members' parameters
into the kept ones. The value round-trips through the checkpoint's JSON (``meta`` / ``from_meta``),
in the layout checkpoints have always had.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

MIN_GAIN = 1e-6  # an improvement must beat the best by more than this


@dataclass(frozen=True)
class Selection:
    best_ndcg10: tuple = ()    # per member: the best selection metric so far (-1 before any)
    best_step: tuple = ()      # the step it was reached at (0: not yet evaluated)
    bad: tuple = ()            # evaluations since the last improvement
    stopped: tuple = ()        # stopped early
    patience: int = 0          # evaluations without improvement before stopping; 0: never stop

    @classmethod
    def start(cls, members: int, patience: int) -> Selection:
        return cls((-1.0,) * members, (0,) * members, (0,) * members, (False,) * members, patience)

    @property
    def all_stopped(self) -> bool:
        return all(self.stopped)

    def update(self, values, step: int) -> tuple[Selection, np.ndarray]:
        """(the selection after an evaluation at ``step``, the (G,) bool mask of improved members)."""
        best, best_step, bad, stopped = (list(x) for x in (self.best_ndcg10, self.best_step, self.bad, self.stopped))
        improved = np.zeros(len(best), bool)
        for k, value in enumerate(values):
            if stopped[k]:
                continue
            if value > best[k] + MIN_GAIN or best_step[k] == 0:
                improved[k] = True
                best[k], best_step[k], bad[k] = value, step, 0
            else:
                bad[k] += 1
                if self.patience and bad[k] >= self.patience:
                    stopped[k] = True
        return replace(self, best_ndcg10=tuple(best), best_step=tuple(best_step), bad=tuple(bad),
                       stopped=tuple(stopped)), improved

    def meta(self, elapsed: float, done: bool) -> dict:
        """The checkpoint's JSON record of the selection (with the training time and whether it ended)."""
        return {"best_ndcg10": list(self.best_ndcg10), "bad": list(self.bad), "best_step": list(self.best_step),
                "stopped": list(self.stopped), "elapsed": elapsed, "done": done}

    @classmethod
    def from_meta(cls, meta: dict, patience: int) -> Selection:
        return cls(tuple(meta["best_ndcg10"]), tuple(meta["best_step"]), tuple(meta["bad"]),
                   tuple(meta["stopped"]), patience)


def keep(kept, params, improved: np.ndarray):
    """The kept parameters (a host pytree, members stacked on axis 0) with the ``improved``
    members' rows taken from ``params``."""
    import jax

    if not improved.any():
        return kept
    g = len(improved)
    return jax.tree.map(lambda b, p: np.where(improved.reshape((g,) + (1,) * (p.ndim - 1)), np.asarray(p), b),
                        kept, params)
