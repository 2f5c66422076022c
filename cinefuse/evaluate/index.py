"""A faiss nearest-neighbour index over fused item embeddings, for item-to-item recommendations
past what an exact scan answers quickly.

Vectors are L2-normalised and searched by inner product, so scores are cosines as in
``cinefuse.metrics.ranking.top_k_cosine``. Rows are the items in the tie order the caller
holds them in (``recommend``: ``cinefuse.metrics.ties`` rule ``"id"``), and results are re-sorted by (score, row) on the host, so the exact (flat)
index gives the same lists, ties included, as the exact ranking. The kind follows the catalogue's
size (``choose_kind``):

- ``flat`` below ``FLAT_BELOW`` items: ``IndexFlatIP``, exact. At 10k 64-d items a single-item
  query took 0.2 ms (benchmarks/bench_scale.py); at 100k it is a 25 MB scan per query.
- ``hnsw`` from ``FLAT_BELOW`` items: ``IndexHNSWFlat`` (inner product), ``M`` = 32 links per
  node, ``efConstruction`` = 40, ``efSearch`` = 128; no training pass. Its recall@10 against the
  exact top-10 and its query time at 1M items are in benchmarks/results/scale.json.
- ``ivf`` on request: ``IndexIVFFlat`` with ``nlist`` = 4 sqrt(N) k-means cells (trained on at
  most 256 points per cell) and ``nprobe`` = 32. In one probe on the loaded 2 cores (100k 64-d
  items, HNSW at efConstruction 80) it built in 17 s against HNSW's 50 s and answered in 0.29 ms
  against 0.81 ms, with lower recall (0.983 against 0.9997 on a 20k catalogue).

Evaluation never uses the index: the exact ranking stays the truth an index is measured against.
``index.json`` records the kind, every parameter, the size, the build seconds and the faiss
version. On a GPU machine ``pip install faiss-gpu`` (in place of faiss-cpu) gives the same API;
``faiss.index_cpu_to_all_gpus`` moves a flat or IVF index onto the GPUs.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cinefuse.choices import INDEX_KINDS
from cinefuse.errors import CinefuseError
from cinefuse.fuse.workdir import read_json, write_json
from cinefuse.metrics.ranking import l2_normalise

FLAT_BELOW = 100_000
HNSW_DEFAULTS = {"M": 32, "efConstruction": 40, "efSearch": 128}
IVF_NPROBE = 32
IVF_TRAIN_PER_CELL = 256
# extra neighbours fetched so that the query item itself and ties at the k-th score can be
# re-sorted by row on the host (a tie group longer than this at the cut-off may still differ)
TIE_SLACK = 8
FEW_QUERIES = 16
INDEX_FILE, IDS_FILE, RECORD_FILE = "index.faiss", "ids.npy", "index.json"


def _faiss():
    try:
        import faiss
    except ImportError as exc:  # an install without the dependency
        raise CinefuseError("the index needs faiss: pip install faiss-cpu (or faiss-gpu on a CUDA machine)") from exc
    return faiss


def choose_kind(n_items: int) -> str:
    """Exact below ``FLAT_BELOW`` items, HNSW from there."""
    return "flat" if n_items < FLAT_BELOW else "hnsw"


def ivf_cells(n_items: int) -> int:
    return max(1, min(n_items // 39, int(round(4 * math.sqrt(n_items)))))


def build_index(embeddings: np.ndarray, kind: str = "auto", seed: int = 0, normalise: bool = True):
    """(faiss index, record) over ``embeddings`` (N, D) rows, L2-normalised first unless
    ``normalise`` is False (rows the caller prepared: normalised embeddings with the prior as an
    extra column, ``cinefuse.evaluate.serving.with_prior``; queries are then taken as given)."""
    faiss = _faiss()
    if kind not in INDEX_KINDS:
        raise CinefuseError(f"index kind {kind!r} is unknown; choose one of {', '.join(INDEX_KINDS)}")
    x = np.asarray(embeddings, np.float32)
    x = np.ascontiguousarray(l2_normalise(x) if normalise else x)
    n, dim = x.shape
    if n == 0:
        raise CinefuseError("no embeddings to index; evaluate or train a model first")
    kind = choose_kind(n) if kind == "auto" else kind
    t0 = time.perf_counter()
    if kind == "flat":
        index, params = faiss.IndexFlatIP(dim), {}
        index.add(x)
    elif kind == "hnsw":
        params = dict(HNSW_DEFAULTS)
        index = faiss.IndexHNSWFlat(dim, params["M"], faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = params["efConstruction"]
        index.hnsw.efSearch = params["efSearch"]
        index.add(x)
    else:
        nlist = ivf_cells(n)
        params = {"nlist": nlist, "nprobe": min(IVF_NPROBE, nlist), "train_points": min(n, nlist * IVF_TRAIN_PER_CELL)}
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
        sample = np.random.default_rng(seed).choice(n, params["train_points"], replace=False)
        index.train(x[np.sort(sample)])
        index.add(x)
        index.nprobe = params["nprobe"]
        index.make_direct_map()  # so that an item's own vector can be read back as its query
    record = {"kind": kind, "exact": kind == "flat", "metric": "inner product of L2-normalised vectors (cosine)",
              "params": params, "n_items": int(n), "dim": int(dim), "build_seconds": round(time.perf_counter() - t0, 3),
              "faiss_version": faiss.__version__, "seed": seed, "normalised_queries": normalise}
    return index, record


@dataclass
class ItemIndex:
    """An index with the item ids of its rows (in id order) and its record."""

    index: object
    ids: np.ndarray
    record: dict

    def search(self, queries: np.ndarray, k: int, self_rows: np.ndarray | None = None):
        """(rows (Q, k) int64, scores (Q, k) float32) best first, ties by lower row; ``self_rows[q]``
        (or -1) is left out of query q's list. Missing slots hold -1 and -inf. Queries are
        L2-normalised unless the index was built from prepared rows (``normalise=False``)."""
        q = np.asarray(queries, np.float32)
        q = np.ascontiguousarray(l2_normalise(q) if self.record.get("normalised_queries", True) else q)
        n = len(self.ids)
        fetch = min(n, k + 1 + TIE_SLACK)
        if len(q) < FEW_QUERIES:
            # a few queries run on one thread: on 2 loaded cores one flat query over 10k items took
            # 44 ms with 2 OpenMP threads (waiting for the busy core) and 0.13 ms with one
            faiss = _faiss()
            threads = faiss.omp_get_max_threads()
            faiss.omp_set_num_threads(1)
            try:
                scores, rows = self.index.search(q, fetch)
            finally:
                faiss.omp_set_num_threads(threads)
        else:
            scores, rows = self.index.search(q, fetch)
        self_rows = np.full(len(q), -1, np.int64) if self_rows is None else np.asarray(self_rows, np.int64)
        drop = (rows < 0) | (rows == self_rows[:, None])
        scores = np.where(drop, -np.inf, scores).astype(np.float32)
        rows = np.where(drop, np.iinfo(np.int64).max, rows)
        order = np.lexsort((rows, -scores), axis=1)[:, :k]
        rows, scores = np.take_along_axis(rows, order, 1), np.take_along_axis(scores, order, 1)
        rows = np.where(np.isinf(scores), -1, rows)
        if rows.shape[1] < k:
            pad = k - rows.shape[1]
            rows = np.pad(rows, ((0, 0), (0, pad)), constant_values=-1)
            scores = np.pad(scores, ((0, 0), (0, pad)), constant_values=-np.inf)
        return rows.astype(np.int64), scores

    def vectors(self, rows: np.ndarray) -> np.ndarray:
        """The stored (normalised) vectors of ``rows``."""
        return np.stack([self.index.reconstruct(int(r)) for r in rows])



def describe_record(record: dict) -> str:
    """``hnsw (approximate, M=32, efConstruction=40, efSearch=128)``: the kind and its parameters."""
    params = ", ".join(f"{k}={v}" for k, v in record["params"].items())
    exact = "exact" if record["exact"] else "approximate"
    return f"{record['kind']} ({exact}{', ' + params if params else ''})"


def write_index(directory: Path, index, ids: np.ndarray, record: dict) -> None:
    """``index.faiss``, ``ids.npy`` and ``index.json`` (written last: its presence marks a whole index)."""
    faiss = _faiss()
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / RECORD_FILE).unlink(missing_ok=True)
    faiss.write_index(index, str(directory / (INDEX_FILE + ".tmp")))
    (directory / (INDEX_FILE + ".tmp")).replace(directory / INDEX_FILE)
    with open(directory / (IDS_FILE + ".tmp"), "wb") as f:
        np.save(f, np.asarray(ids, dtype=str), allow_pickle=False)
    (directory / (IDS_FILE + ".tmp")).replace(directory / IDS_FILE)
    write_json(directory / RECORD_FILE, record)


def open_index(directory: Path) -> ItemIndex | None:
    """The index in ``directory``, or None when none was built there."""
    directory = Path(directory)
    if not (directory / RECORD_FILE).is_file():
        return None
    faiss = _faiss()
    record = read_json(directory / RECORD_FILE, "rebuild it with `cinefuse index build`")
    index = faiss.read_index(str(directory / INDEX_FILE))
    ids = np.load(directory / IDS_FILE, allow_pickle=False)
    if index.ntotal != len(ids) or index.ntotal != record.get("n_items"):
        raise CinefuseError(f"index {directory} holds {index.ntotal} vectors for {len(ids)} ids; "
                            "rebuild it with `cinefuse index build`")
    if record["kind"] == "hnsw":
        index.hnsw.efSearch = record["params"]["efSearch"]
    elif record["kind"] == "ivf":
        index.nprobe = record["params"]["nprobe"]
    return ItemIndex(index, ids, record)
