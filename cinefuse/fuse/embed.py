"""A trained model, loaded once: its items' embeddings and prior, for evaluate, recommend and the demo.

``list_models(workdir)`` names the trained models. ``load_embedded(workdir, model, table=None)``
restores the model's parameters once and returns an :class:`EmbeddedModel`: the ids (N,), the
L2-normalised embeddings (N, E) float32, the per-item prior (N,) float32 of a model trained with
``objective.prior`` (standardised log like counts as its head predicts them; None without the
head) with ``prior_weight``, the weight to score it with (chosen on the validation items, from the
model's summary.json), and ``counts`` of the items embedded and left out. ``table`` is a
``cinefuse.store.Table`` (or None: the feature sets are loaded from the store named in the run's
config). An item is embedded from whichever of the model's feature sets it holds (a valid, finite
row) when the model was trained with ``[data] require = "any"``; items holding none of them are
left out (with ``"all"``: items lacking any of them). ``present`` (N, S) bool says which of the
model's sets (columns in ``record.feature_sets`` order) each embedded item holds. The rows go
through the trainer's one chunked embedding (``trainer.embed_in_chunks``).
``embed_items`` and ``item_priors`` are the two halves of it for the callers that want one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cinefuse.errors import CinefuseError
from cinefuse.fuse.workdir import RunRecord, Workdir


@dataclass
class EmbeddedModel:
    name: str
    ids: np.ndarray                   # (N,) object: the embedded items' ids, as str
    emb: np.ndarray                   # (N, E) float32, L2-normalised
    prior: np.ndarray | None          # (N,) float32 item prior, None for a model without the head
    prior_weight: float | None        # the prior's weight (summary.json), None without the head
    counts: dict                      # {"items", "embedded", "left_out"}
    record: RunRecord
    present: np.ndarray = None        # (N, S) bool: the model's sets (record.feature_sets order) each item holds


def list_models(workdir) -> list[str]:
    return Workdir(workdir).models()


def load_model(workdir, model: str) -> tuple[RunRecord, dict, dict, object]:
    """(record, params, stats, model config) of a trained model; the parameters are checked
    against their sha256 manifest and for finite values (one line naming the file otherwise)."""
    from cinefuse.fuse.checksums import load_params

    wd = Workdir(workdir)
    if not wd.params_dir(model).is_dir():
        have = wd.models()
        raise CinefuseError(f"model {model!r} is not trained in {workdir}; trained: {', '.join(have) or 'none'}")
    record = wd.run_record(model)
    stats = wd.feature_stats(model, record.feature_sets)
    params = load_params(wd.params_dir(model))
    return record, params, stats, record.config.model


def load_embedded(workdir, model: str, table=None, batch: int = 4096) -> EmbeddedModel:
    """The model's embeddings and prior of every item it can embed (one checkpoint restore)."""
    import jax
    import jax.numpy as jnp

    from cinefuse.fuse.features import FeatureTable, apply_standardization
    from cinefuse.fuse.models import build_tower, set_specs
    from cinefuse.fuse.trainer import embed_in_chunks

    record, params, stats, model_cfg = load_model(workdir, model)
    names = record.feature_sets
    ft = _feature_table(record, model, names, table)
    counts = {"items": ft.counts["items"], "embedded": ft.counts["kept"],
              "left_out": ft.counts["excluded_missing_modality"]}
    present = np.stack([ft.present(n) for n in names], axis=1) if names else np.zeros((len(ft.ids), 0), bool)
    feats = apply_standardization(FeatureTable(ft.ids, ft.data, ft.lengths), stats)
    shapes = {n: feats[n].shape[1:] for n in names}
    with_prior = bool(record.config.objective.prior)
    tower = build_tower(model_cfg, set_specs(names, shapes, model_cfg.conv_sets), record.config.objective)
    mask = jnp.asarray(np.array(record.token_mask, np.float32))
    apply = jax.jit(lambda p, f, l: tower.apply(p, f, l, mask, with_prior=with_prior))

    def rows(idx):
        out = apply(params, {n: jnp.asarray(feats[n][idx]) for n in names},
                    {n: jnp.asarray(ft.lengths[n][idx]) for n in names if ft.lengths[n] is not None})
        return out[0], (out[2] if with_prior else None)

    emb, prior = embed_in_chunks(rows, np.arange(len(ft.ids)), batch, pad=False) or (None, None)
    emb = np.zeros((0, model_cfg.embed_dim), np.float32) if emb is None else emb.astype(np.float32)
    if with_prior:
        prior = np.zeros(0, np.float32) if prior is None else prior.astype(np.float32)
    weight = _prior_weight(Workdir(workdir), model) if with_prior else None
    return EmbeddedModel(model, ft.ids.astype(str).astype(object), emb, prior,
                         None if weight is None else float(weight), counts, record, present)


def _prior_weight(wd: Workdir, model: str) -> float | None:
    summary = wd.run_dir(model) / "summary.json"
    return wd.summary(model).get("prior_weight") if summary.is_file() else None


def _feature_table(record: RunRecord, model: str, names: list[str], table):
    from cinefuse.fuse.features import clean_table, load_features

    require = record.config.data.require
    if table is None:
        data = record.config.data
        return load_features(data.store, names, endpoint_url=data.endpoint_url, require=require)
    missing = [n for n in names if n not in table.features]
    if missing:
        raise CinefuseError(f"model {model} needs feature set {missing[0]!r}, which the table lacks; "
                            f"load it with store.load({names!r})")
    return clean_table(table.ids, {n: table.features[n] for n in names}, {n: table.valid[n] for n in names},
                       {n: table.lengths.get(n) for n in names}, require)


def embed_items(workdir, model: str, table=None, batch: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """(ids (N,) str, emb (N, E) float32) of ``load_embedded``."""
    m = load_embedded(workdir, model, table, batch)
    return m.ids.astype(str), m.emb


def item_priors(workdir, model: str, table=None, batch: int = 4096) -> np.ndarray | None:
    """(N,) float32 prior of every item ``embed_items`` embeds (same order), or None when the
    model has no prior head."""
    if not Workdir(workdir).run_record(model).config.objective.prior:
        return None
    return load_embedded(workdir, model, table, batch).prior
