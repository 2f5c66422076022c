"""The reference rows of every results table: random, popularity and raw-feature cosine
(ItemKNN-CBF) per feature set and over all of them concatenated (:func:`baseline_rows`).

Each baseline turns the evaluation's queries and candidates into top-K lists of candidate
indices, the same shape a trained model's cosine ranking produces, so one metric pass scores
them all. The raw-feature rows rank through the task (``task.rank_content``).
"""

from __future__ import annotations

import time

import numpy as np

from cinefuse.evaluate.results import Row
from cinefuse.evaluate.rows import score_row
from cinefuse.evaluate.tasks.item_to_item import ITEM_TO_ITEM
from cinefuse.fuse.config import FuseConfig, as_config
from cinefuse.metrics.ranking import (
    l2_normalise,
    random_top_k,
    top_k_by_score,
    top_k_cosine,
)


def pooled_rows(data: np.ndarray, lengths: np.ndarray | None, valid: np.ndarray) -> np.ndarray:
    """One vector per item: the row itself for (N, D) sets, the mean over valid timesteps for
    (N, T, D) sequences; rows that are not valid become zeros (cosine 0 with everything)."""
    data = np.asarray(data, dtype=np.float32)
    if data.ndim == 3:
        steps = data.shape[1]
        if lengths is None:
            lengths = np.full(data.shape[0], steps)
        mask = (np.arange(steps)[None, :] < np.asarray(lengths)[:, None]).astype(np.float32)
        data = (data * mask[..., None]).sum(axis=1) / np.maximum(mask.sum(axis=1), 1.0)[:, None]
    elif data.ndim != 2:
        raise ValueError(f"feature data must be (N, D) or (N, T, D), got {data.shape}")
    return np.where(np.asarray(valid, bool)[:, None], data, 0.0).astype(np.float32)


def concatenate_sets(matrices: list[np.ndarray]) -> np.ndarray:
    """Each set scaled to unit length before joining, so a wide set (1280-d) does not drown a
    narrow one (10-d) in the concatenated cosine."""
    return np.concatenate([l2_normalise(m) for m in matrices], axis=1)


def random_baseline(n_queries: int, n_candidates: int, k: int, self_index: np.ndarray, seed: int = 0) -> np.ndarray:
    return random_top_k(n_queries, n_candidates, k, self_index=self_index, seed=seed)


def popularity_baseline(raters: np.ndarray, n_queries: int, k: int, self_index: np.ndarray) -> np.ndarray:
    """The most-rated candidates for every query. It reads the candidates' own rating counts,
    which a truly new item would not have: a non-content reference, not a fair cold-start rival."""
    return top_k_by_score(raters, n_queries, k, self_index=self_index)


def itemknn_cbf(
    query_features: np.ndarray, candidate_features: np.ndarray, k: int, self_index: np.ndarray
) -> np.ndarray:
    """Cosine over raw features (ItemKNN content-based filtering)."""
    topk, _ = top_k_cosine(query_features, candidate_features, k, self_index=self_index)
    return topk


def baseline_rows(job, es, seed: int, notes: list[str] | None = None, task=ITEM_TO_ITEM) -> list[Row]:
    """random, popularity, cosine over each raw feature set and over all of them concatenated.
    A raw set with no valid row among the candidates would rank by zeros (every score tied):
    it gets no row, and ``notes`` says so."""
    ks, k = job.ks, max(job.ks)
    start = time.perf_counter()
    topk = random_baseline(len(es.query_ids), len(es.candidate_ids), k, es.self_index, seed=seed)
    rows = [score_row("random", "random", topk, es, ks, None, start, task=task)]
    start = time.perf_counter()
    topk = popularity_baseline(es.raters, len(es.query_ids), k, es.self_index)
    rows.append(
        # Under cold-item the candidates' rating counts are exactly what a new item lacks, so the
        # row is an oracle reference, and its name says so wherever the table is read.
        score_row("popularity (oracle)" if job.protocol == "cold-item" else "popularity", "popularity",
                  topk, es, ks, None, start, task=task,
                  note="uses the candidates' own rating counts (unknown for truly new items)")
    )
    return rows + raw_feature_rows(job, es, notes, task)


def raw_feature_rows(job, es, notes: list[str] | None, task=ITEM_TO_ITEM) -> list[Row]:
    """ItemKNN-CBF rows: cosine over each raw set with a valid candidate row, and over all of them
    concatenated when there are two or more."""
    raw_sets = raw_feature_sets(job.store, job.config)
    if not raw_sets:
        return []
    table = job.store.load(raw_sets)  # the union of their ids; a candidate lacking a set gets zeros
    table_row = {i: r for r, i in enumerate(table.ids.tolist())}
    take = np.array([table_row.get(i, -1) for i in es.candidate_ids.tolist()], dtype=np.int64)
    empty = [n for n in raw_sets if not np.asarray(table.valid[n], bool)[take[take >= 0]].any()]
    if empty and notes is not None:
        notes.append(f"no raw-feature baseline for {', '.join(empty)}: none of the {len(take)} candidates "
                     f"has a valid row there")
    raw_sets = [n for n in raw_sets if n not in empty]
    rows, matrices = [], []
    for name in raw_sets:
        start = time.perf_counter()
        pooled = pooled_rows(table.features[name], table.lengths.get(name), table.valid[name])
        matrices.append(task.content_rows(pooled, table.valid[name]))
        topk = task.rank_content(es, table.ids, matrices[-1], max(job.ks), itemknn_cbf)
        rows.append(score_row(f"cosine {name}", "itemknn-cbf", topk, es, job.ks, None, start, task=task))
    if len(matrices) > 1:
        start = time.perf_counter()
        topk = task.rank_content(es, table.ids, concatenate_sets(matrices), max(job.ks), itemknn_cbf)
        rows.append(score_row("cosine all concatenated", "itemknn-cbf", topk, es, job.ks, None, start,
                              note=" + ".join(raw_sets), task=task))
    return rows


def raw_feature_sets(store, config: FuseConfig | dict | None = None) -> list[str]:
    """The raw sets the baselines rank by: those the fuse config's modalities name that the
    store holds (what the models could see); else every per-item vector set (N, D) of the
    store, fused embeddings and sequence sets left out (their pooled versions are there)."""
    sets = store.feature_sets()
    named = []
    modality_sets = as_config(config).data.modality_sets if config else {}
    for names in modality_sets.values():
        named += [n for n in names if n in sets and n not in named]
    if named:
        return sorted(named)
    return sorted(n for n, info in sets.items() if not n.startswith("fused/") and len(info.shape) == 1)
