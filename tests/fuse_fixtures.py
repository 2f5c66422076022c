"""Synthetic data for fuse tests: a store whose features carry a planted genre signal, plus
MovieLens-format ratings and movies that make genre-cluster pairs.

Items fall into ``n_clusters`` genre clusters with disjoint genres (Jaccard 1 inside a cluster,
0 across). Each user likes (5 stars) items of one cluster and dislikes (1 star) items of another,
so positives are same-cluster pairs and negatives cross-cluster pairs. ``visual/effnet`` holds the
cluster's centroid plus noise (the signal); the other sets hold weaker signal or pure noise.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from fixtures import write_movielens_csv, write_store

CLUSTER_GENRES = [["Action", "Adventure"], ["Comedy", "Romance"], ["Horror", "Thriller"], ["Documentary", "War"]]


def write_movielens(root: Path, n_items: int, clusters: np.ndarray, n_users: int, seed: int) -> tuple[Path, Path]:
    rng = np.random.default_rng(seed)
    n_clusters = int(clusters.max()) + 1
    movies = [(i + 1, f"Film {i + 1} ({1980 + i % 40})", CLUSTER_GENRES[clusters[i] % 4]) for i in range(n_items)]
    rows = []
    for u in range(n_users):
        fav = u % n_clusters
        hate = (fav + 1 + (u // n_clusters) % (n_clusters - 1)) % n_clusters
        liked = rng.choice(np.flatnonzero(clusters == fav), size=min(8, int((clusters == fav).sum())), replace=False)
        hated = rng.choice(np.flatnonzero(clusters == hate), size=min(5, int((clusters == hate).sum())), replace=False)
        rows += [(u + 1, i + 1, 5.0, 1000 + u) for i in liked] + [(u + 1, i + 1, 1.0, 1000 + u) for i in hated]
    return write_movielens_csv(root, movies, rows)


def write_synthetic_store(root: Path, n_items: int = 160, n_users: int = 120, seed: int = 0,
                          dims: dict | None = None, signal: float = 1.0, n_clusters: int = 4,
                          sequences: bool = False, bad_rows: dict | None = None, shards: int = 2) -> dict:
    """Writes ``root/store`` and ``root/ml`` (ratings.csv, movies.csv); returns their paths and truths.

    ``bad_rows``: {feature set: {"invalid": [rows], "nan": [rows]}} rows written invalid or with NaN.
    """
    from cinefuse.store import FeatureBlock

    rng = np.random.default_rng(seed)
    dims = dims or {"visual/effnet": 24, "visual/lowlevel": 6, "audio/logmel_stats": 8, "text/minilm": 12}
    clusters = np.arange(n_items) % n_clusters
    rng.shuffle(clusters)
    ids = [str(i + 1) for i in range(n_items)]
    data = {}
    for k, (name, dim) in enumerate(dims.items()):
        centroids = rng.normal(size=(n_clusters, dim)).astype(np.float32)
        strength = signal if name == "visual/effnet" else signal * 0.3
        x = strength * centroids[clusters] + rng.normal(scale=0.7, size=(n_items, dim)).astype(np.float32)
        data[name] = x.astype(np.float32)
    if sequences:
        t = 6
        base = data["visual/effnet"]
        seq = base[:, None, :] + rng.normal(scale=0.5, size=(n_items, t, base.shape[1])).astype(np.float32)
        data["visual/effnet_frames"] = seq.astype(np.float16)
        # the log-mel sequence carries the cluster as a pattern over time in two bands (weaker than
        # the visual signal), so a conv encoder trained on it alone has something to find
        mel = rng.normal(size=(n_items, 10, 8)).astype(np.float32)
        pattern = rng.normal(size=(n_clusters, 10, 2)).astype(np.float32)
        mel[:, :, :2] += signal * pattern[clusters]
        data["audio/logmel_seq"] = mel
    parts = []
    bounds = np.linspace(0, n_items, shards + 1).astype(int)
    bad_rows = bad_rows or {}
    for s in range(shards):
        lo, hi = bounds[s], bounds[s + 1]
        blocks = {}
        for name, x in data.items():
            part = x[lo:hi].copy()
            valid = np.ones(hi - lo, bool)
            status = ["ok"] * (hi - lo)
            for r in bad_rows.get(name, {}).get("invalid", []):
                if lo <= r < hi:
                    valid[r - lo] = False
                    part[r - lo] = 0
                    status[r - lo] = "decode error: synthetic"
            for r in bad_rows.get(name, {}).get("nan", []):
                if lo <= r < hi:
                    part[r - lo] = np.nan
            lengths = None
            if part.ndim == 3:
                lengths = np.full(hi - lo, part.shape[1], np.int32)
                lengths[::3] = part.shape[1] // 2
            blocks[name] = FeatureBlock(part, valid, status, lengths, {"backbone": "synthetic"})
        parts.append((ids[lo:hi], blocks))
    write_store(root / "store", {"synthetic": True, "seed": seed}, parts)
    ratings, movies = write_movielens(root / "ml", n_items, clusters, n_users, seed)
    return {"store": str(root / "store"), "ratings": str(ratings), "movies": str(movies), "clusters": clusters,
            "ids": ids}


def small_config(env: dict, **sections) -> dict:
    """A fast config dict for tests (tiny tower, few steps) over ``env`` from write_synthetic_store."""
    config = {
        "data": {"store": env["store"], "ratings": env["ratings"], "movies": env["movies"]},
        "model": {"token_dim": 16, "hidden": 32, "embed_dim": 16},
        "train": {"batch_size": 32, "steps": 200, "steps_per_call": 20, "eval_every": 40, "checkpoint_every": 40,
                  "learning_rate": 3e-3, "warmup_steps": 20, "patience": 0},
        "pairs": {"min_pairs_per_item": 2},
        # the fixture plants a genre signal, which the thesis objective's pairs teach
        "objective": {"kind": "thesis"},
    }
    for section, values in sections.items():
        config.setdefault(section, {}).update(values)
    return config
