"""The fused-embedding writer: each model's item embeddings as feature set ``fused/<model>`` of a
store (``W/embeddings`` by default), which ``recommend`` and the index read back; a model with a
prior head also gets ``fused/<model>.prior``, its (N, 1) item prior, whose attributes hold the
weight each task chose on validation, so a ``+prior`` score (``cos(e_q, e_c) + w * prior(c)``)
can be reproduced outside cinefuse (``cinefuse export`` carries both sets)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import NamedTuple

import numpy as np

from cinefuse.fuse.workdir import Workdir


PRIOR_SUFFIX = ".prior"


class FusedItems(NamedTuple):
    """One model's items for the store: ids, L2-normalised embeddings, the item prior (None
    without a prior head) and the prior weight each task chose (task -> w or None)."""

    ids: np.ndarray
    emb: np.ndarray
    prior: np.ndarray | None = None
    prior_weights: dict = {}


def safe_set_name(model: str) -> str:
    """``fused/<model>`` with characters the store does not allow in names replaced by '-'."""
    return "fused/" + re.sub(r"[^A-Za-z0-9_.-]", "-", model)


def write_fused_embeddings(workdir: Path, embeddings: dict, fused_store=None) -> str:
    """One shard per model under ``fused/<model>`` (``embeddings``: model -> :class:`FusedItems`
    or (ids, emb)) and, with a prior, ``fused/<model>.prior``. The
    default store ``W/embeddings`` belongs to this workdir and is rewritten whole each run; a
    store named with ``fused_store`` (for example the extraction store) only gains shards, the
    newest winning per id."""
    from cinefuse.store import StoreWriter

    workdir = Path(workdir)
    location = Path(fused_store) if fused_store else Workdir(workdir).embeddings_dir
    for model, items in embeddings.items():
        items = FusedItems(*items)
        config = {"fused_embeddings": {"workdir": str(workdir.resolve()), "model": model}}
        writer = StoreWriter(location, config=config)
        if not fused_store and model == next(iter(embeddings)):
            writer.reset()
        attrs = {"model": model, "workdir": str(workdir.resolve())}
        features = {safe_set_name(model): _block(items.emb, {**attrs, "normalised": "l2"})}
        if items.prior is not None:
            weights = {f"prior_weight_{task.replace('-', '_')}": float(w)
                       for task, w in sorted(items.prior_weights.items()) if w is not None}
            features[safe_set_name(model) + PRIOR_SUFFIX] = _block(
                np.reshape(items.prior, (-1, 1)),
                {**attrs, **weights, "score": f"cos(e_query, e_item) + w * prior(item), w: the task's "
                                              f"prior_weight_<task> (the {model}+prior row)"})
        writer.write_shard(ids=list(items.ids), features=features)
    return str(location)


def _block(data, attrs: dict):
    from cinefuse.store import FeatureBlock

    n = len(data)
    return FeatureBlock(data=np.ascontiguousarray(data, dtype=np.float32), valid=np.ones(n, dtype=bool),
                        status=["ok"] * n, lengths=None, attrs=attrs)
