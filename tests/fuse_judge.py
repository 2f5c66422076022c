"""How fuse tests judge a trained model: cosine distances of a split part's pairs over the
embeddings ``embed_items`` returns, scored by scikit-learn (not the product's own AUC)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def pair_distances(workdir: Path, model: str, part: str = "test") -> tuple[np.ndarray, np.ndarray]:
    """(cosine distance, label) of every ``part`` pair in ``workdir/pairs.npz``."""
    from cinefuse.fuse.embed import embed_items

    ids, emb = embed_items(workdir, model)
    with np.load(Path(workdir) / "pairs.npz") as z:
        split_ids, pairs, labels = z["ids"], z[f"{part}_pairs"], z[f"{part}_labels"]
    row = {i: k for k, i in enumerate(ids.tolist())}
    a = emb[[row[i] for i in split_ids[pairs[:, 0]]]]
    b = emb[[row[i] for i in split_ids[pairs[:, 1]]]]
    return 1.0 - np.sum(a * b, axis=1), labels


def held_out(workdir: Path, model: str, part: str = "test") -> tuple[float, float]:
    """(mean d(neg) - mean d(pos), ROC AUC of -d) on ``part``'s pairs; AUC by scikit-learn."""
    from sklearn.metrics import roc_auc_score

    d, labels = pair_distances(workdir, model, part)
    assert (labels == 1).sum() >= 20 and (labels == 0).sum() >= 20, "too few pairs to judge"
    return float(d[labels == 0].mean() - d[labels == 1].mean()), float(roc_auc_score(labels, -d))
