"""The fused-embedding writer: each model's item embeddings as feature set ``fused/<model>`` of a
store (``W/embeddings`` by default), which ``recommend`` and the index read back."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from cinefuse.fuse.workdir import Workdir


def safe_set_name(model: str) -> str:
    """``fused/<model>`` with characters the store does not allow in names replaced by '-'."""
    return "fused/" + re.sub(r"[^A-Za-z0-9_.-]", "-", model)


def write_fused_embeddings(workdir: Path, embeddings: dict, fused_store=None) -> str:
    """One shard per model under ``fused/<model>`` (``embeddings``: model -> (ids, emb)). The
    default store ``W/embeddings`` belongs to this workdir and is rewritten whole each run; a
    store named with ``fused_store`` (for example the extraction store) only gains shards, the
    newest winning per id."""
    from cinefuse.store import FeatureBlock, StoreWriter

    workdir = Path(workdir)
    location = Path(fused_store) if fused_store else Workdir(workdir).embeddings_dir
    for model, (ids, emb) in embeddings.items():
        config = {"fused_embeddings": {"workdir": str(workdir.resolve()), "model": model}}
        writer = StoreWriter(location, config=config)
        if not fused_store and model == next(iter(embeddings)):
            writer.reset()
        n = len(ids)
        writer.write_shard(
            ids=list(ids),
            features={
                safe_set_name(model): FeatureBlock(
                    data=np.ascontiguousarray(emb, dtype=np.float32),
                    valid=np.ones(n, dtype=bool),
                    status=["ok"] * n,
                    lengths=None,
                    attrs={"model": model, "workdir": str(workdir.resolve()), "normalised": "l2"},
                )
            },
        )
    return str(location)
