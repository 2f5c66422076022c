"""Which model a workdir serves, and the errors that name the real cause when it cannot.

A served model is a trained model (a folder under ``W/runs``), with or without its
content-predicted popularity prior: ``NAME+prior`` scores a candidate ``c`` for the query ``q``
as ``cos(q, c) + w * prior(c)``, ``w`` the ``prior_weight`` validation chose (the model's
``summary.json``), the row evaluate reports as ``NAME+prior``. Without ``--model``,
``recommend`` and ``index build`` serve what validation chose: the highest validation nDCG@10
over every model, with (``val_ndcg10_prior``) and without (``val_ndcg10``) its prior, and say
which. Validation, not the test items of the last evaluate: a served choice never peeks at the
figures it is judged by.

The errors: a folder that is a feature store, not a workdir; a workdir whose fuse was stopped
before any model was final (its checkpoints resume); an item the model left out because one of
the feature sets it needs is invalid for it (the set and its status are named).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cinefuse.errors import CinefuseError
from cinefuse.evaluate.selection import SUMMARY_KEYS
from cinefuse.fuse.workdir import Workdir

PRIOR = "+prior"


@dataclass(frozen=True)
class Served:
    """The model that answers: ``model`` (under ``W/runs``), ``prior`` weight or None, and why."""

    model: str
    prior_weight: float | None
    why: str

    @property
    def name(self) -> str:
        return self.model + (PRIOR if self.prior_weight is not None else "")


def check_workdir(wd: Workdir) -> None:
    """``Workdir.check`` with the one case it misreads: a feature store passed as a workdir."""
    if (wd.root / "manifest.json").is_file() and not (wd.root / "config.json").is_file():
        raise CinefuseError(
            f"{wd.root} is a feature store, not a fuse workdir: pass the --workdir that "
            f"`cinefuse fuse --store {wd.root} --workdir W` trained into")
    wd.check()


def untrained_error(wd: Workdir) -> CinefuseError:
    """No final model: a stopped fuse (checkpoints present) resumes; otherwise train first."""
    stopped = sorted(d.name for d in [*(wd.root / "runs").glob("*"), *(wd.root / "grid").glob("*")]
                     if (d / "checkpoints").is_dir() and any((d / "checkpoints").iterdir()))
    if stopped:
        return CinefuseError(
            f"{wd.root} holds no finished model yet, but checkpoints exist ({', '.join(stopped[:3])}): fuse was "
            "stopped before it finished; rerun the same `cinefuse fuse` command to resume")
    return CinefuseError(f"{wd.root} holds no trained model under runs/; train first with `cinefuse fuse`")


def _prior_weight(wd: Workdir, model: str) -> float | None:
    summary = wd.summary(model)
    weight = summary.get("prior_weight")
    return None if weight is None else float(weight)


def choose_served(wd: Workdir, asked: str | None = None) -> Served:
    """The model ``asked`` for (``NAME`` or ``NAME+prior``), else validation's choice."""
    check_workdir(wd)
    models = wd.models()
    if not models:
        raise untrained_error(wd)
    if asked:
        base = asked[:-len(PRIOR)] if asked.endswith(PRIOR) else asked
        if base not in models:
            raise CinefuseError(f"model {base!r} is not in {wd.root}/runs; choose one of {', '.join(models)}"
                                + (" (each also as NAME+prior where trained with a prior head)"
                                   if asked.endswith(PRIOR) else ""))
        if not asked.endswith(PRIOR):
            return Served(base, None, "asked for")
        weight = _prior_weight(wd, base)
        if weight is None:
            raise CinefuseError(f"model {base} has no prior head (trained without objective.prior): "
                                f"serve --model {base}")
        return Served(base, weight, "asked for")
    scored = validation_candidates(wd, models, SUMMARY_KEYS["item-to-item"])
    if not scored:
        return Served(models[0], None, "the first model (no validation figure in any summary.json)")
    value, _, _, model, weight = max(scored)  # ties: without the prior, then the first model by name
    what = "" if weight is None else f" with its prior at weight {weight:g}"
    return Served(model, weight, f"chosen by validation: nDCG@10 {value:.4f}{what}, the best of "
                                 f"{len(scored)} candidate(s) in {wd.root}/runs")


def validation_candidates(wd: Workdir, models: list[str], keys: tuple[str, str, str]) -> list[tuple]:
    """(value, 1 plain / 0 with prior, -order, model, prior weight or None) for every model and
    every prior weight its summary.json records a validation figure for; ``keys``: the summary's
    (plain figure, figure with the prior, prior weight) of one task (``selection.SUMMARY_KEYS``).
    ``max`` of them is validation's choice: ties go to the model without its prior, then to the
    first model by name; NaN never wins."""
    plain_key, prior_key, weight_key = keys
    scored = []
    for order, model in enumerate(models):
        summary = wd.summary(model)
        if summary.get(plain_key) is not None:
            scored.append((float(summary[plain_key]), 1, -order, model, None))
        if summary.get(weight_key) is not None and summary.get(prior_key) is not None:
            scored.append((float(summary[prior_key]), 0, -order, model, float(summary[weight_key])))
    return [s for s in scored if s[0] == s[0]]


def dropped_reason(wd: Workdir, model: str, item: str) -> str | None:
    """Why a model left ``item`` out although the feature store holds it (an invalid row of a set
    the model needs, with its status), or None when the store does not hold it."""
    from cinefuse.store import open_store

    record = wd.run_record(model)
    data = record.config.data
    try:
        store = open_store(data.store, endpoint_url=data.endpoint_url)
        if item not in set(store.ids().tolist()):
            return None
        present = [n for n in record.feature_sets if n in store.feature_sets()]
        table = store.load(present, ids=[item]) if present else None
    except (CinefuseError, OSError):
        return None
    bad = [f"{n} ({table.status[n][0] if table is not None and n in table.status else 'missing'})"
           for n in record.feature_sets if table is None or n not in table.valid or not bool(table.valid[n][0])]
    if not bad:
        return None
    return (f"item {item!r} is in store {data.store}, but model {model} leaves it out: it needs a valid row of "
            f"every one of its feature sets ({', '.join(record.feature_sets)}) and this item's "
            f"{', '.join(bad)} is not; fix the item's data and extract it again, or serve a model trained "
            "without that set (`cinefuse fuse --modalities ...`)")


def feature_store_mtime(wd: Workdir) -> float:
    """When the workdir's (local) feature store last changed (0: unknown, s3://): embeddings and
    indexes older than it miss items added since."""
    try:
        store = wd.config().data.store
    except CinefuseError:
        return 0.0
    path = Path(str(store)) / "manifest.json" if store and not str(store).startswith("s3://") else None
    return path.stat().st_mtime if path is not None and path.is_file() else 0.0


def with_prior(emb: np.ndarray, prior: np.ndarray | None, weight: float | None) -> tuple[np.ndarray, np.ndarray]:
    """(candidates, query tail): L2-normalised embeddings, and for a prior the prior as one extra
    column, so that the inner product with ``[query, weight]`` is ``cos + weight * prior``
    exactly (the exact scan and a flat index compute the same)."""
    from cinefuse.metrics.ranking import l2_normalise

    unit = l2_normalise(np.asarray(emb, np.float32))
    if weight is None:
        return unit, np.zeros(0, np.float32)
    if prior is None:
        raise CinefuseError("the model has no prior head: serve it without +prior")
    column = np.asarray(prior, np.float32)[:, None]
    return np.ascontiguousarray(np.hstack([unit, column])), np.array([weight], np.float32)
