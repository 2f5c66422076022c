"""Every row's per-query values, saved for paired tests in other tools (``per_query.parquet`` and
its CSV twin ``per_query.csv.gz`` beside ``results.json``; ``cinefuse compare`` writes the same
beside ``compare.json``).

The file is long ("tidy"): one line per (row, query, metric, K), columns

- ``task``: ``item-to-item`` or ``user-to-item``;
- ``row``: the table row (a model, ``<model>+prior``, a baseline; under compare ``<run>/<model>``);
- ``kind``: ``model``, ``random``, ``popularity`` or ``itemknn-cbf``;
- ``query_id``: the query, as a string: the query item's id (item-to-item) or the user's id
  (user-to-item) (read the CSV with ``dtype={"query_id": str}`` to keep ids such as ``007``);
- ``metric`` (``P``, ``R``, ``HR``, ``nDCG``, ``MRR``, ``gnDCG``; user-to-item ``cR`` instead of
  ``gnDCG``) and ``k`` (int), the cut-off;
- ``value`` (float64): that query's value, the (query, user) mean for item-to-item.

Only the queries a metric is averaged over are there (item-to-item: those with a relevant
candidate), so the mean of ``value`` over a (row, metric, k) is the table's figure, and the
values are the very numbers its intervals and paired verdicts resample. Within a (row, metric,
k) the queries follow the table's query order (the order the bootstrap resamples). Beyond-accuracy
metrics (coverage, diversity, novelty) are properties of all lists together and are not here.
The text columns are categorical (Parquet dictionary columns: pandas categories, R factors), so a
table of many users stays small in memory and on disk; the CSV twin is left out past
``CSV_MAX_LINES`` lines (the notes say so), the Parquet file always written.

A paired test in pandas: ``df[(df.metric == "nDCG") & (df.k == 10)].pivot(index="query_id",
columns="row", values="value")`` gives one column per row over the same queries; in R,
``tidyr::pivot_wider(names_from = row, values_from = value)`` does the same.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cinefuse.atomic import atomic_write

COLUMNS = ("task", "row", "kind", "query_id", "metric", "k", "value")
FILES = {"per_query": "per_query.parquet", "per_query_csv": "per_query.csv.gz"}
CSV_MAX_LINES = 2_000_000  # ~1 minute of gzip text; past it the Parquet file alone


def per_query_frame(results, query_ids):
    """The long table of the module docstring for ``results``' rows (those with per-query
    values); ``query_ids``: the eval set's queries, in the order the rows' values follow."""
    import pandas as pd

    rows = [r for r in results.rows if r.per_query is not None]
    kinds = list(dict.fromkeys(r.kind for r in rows))
    metrics: list[str] = []
    parts: dict[str, list[np.ndarray]] = {"row": [], "metric": [], "k": [], "query": [], "value": []}
    for i, row in enumerate(rows):
        scored = np.flatnonzero(np.asarray(row.per_query.scored, bool))
        for name, values in row.per_query.values.items():
            metric, _, k = name.partition("@")
            metrics += [metric] if metric not in metrics else []
            parts["row"].append(np.full(len(scored), i, np.int32))
            parts["metric"].append(np.full(len(scored), metrics.index(metric), np.int32))
            parts["k"].append(np.full(len(scored), int(k), np.int64))
            parts["query"].append(scored)
            parts["value"].append(np.asarray(values, np.float64)[scored])
    col = {key: (np.concatenate(v) if v else np.zeros(0, np.int64 if key == "query" else np.int32))
           for key, v in parts.items()}
    kind_of = np.array([kinds.index(r.kind) for r in rows], np.int32)
    return pd.DataFrame({
        "task": pd.Categorical.from_codes(np.zeros(len(col["row"]), np.int32), [results.task]),
        "row": pd.Categorical.from_codes(col["row"], [r.name for r in rows]),
        "kind": pd.Categorical.from_codes(kind_of[col["row"]], kinds),
        "query_id": pd.Categorical.from_codes(col["query"], np.asarray(query_ids, dtype=str).tolist()),
        "metric": pd.Categorical.from_codes(col["metric"], metrics),
        "k": col["k"].astype(np.int64),
        "value": col["value"].astype(np.float64),
    })


def write_per_query(results, es, out_dir) -> dict[str, Path]:
    """``per_query.parquet`` and ``per_query.csv.gz`` of ``results`` (queries of ``es``) in
    ``out_dir``, each written atomically; returns their paths by output key (the CSV's left out,
    and a note added to ``results.notes``, past ``CSV_MAX_LINES`` lines)."""
    frame = per_query_frame(results, es.query_ids)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {key: out_dir / name for key, name in FILES.items()}
    atomic_write(paths["per_query"], lambda handle: frame.to_parquet(handle, index=False))
    if len(frame) > CSV_MAX_LINES:
        results.notes.append(f"per-query values: {len(frame):,} lines, in {FILES['per_query']} only (the CSV twin "
                             f"is written up to {CSV_MAX_LINES:,} lines)")
        paths["per_query_csv"].unlink(missing_ok=True)  # an older twin would no longer match
        del paths["per_query_csv"]
        return paths
    # mtime 0: the same values give the same bytes
    atomic_write(paths["per_query_csv"], lambda handle: frame.to_csv(
        handle, index=False, compression={"method": "gzip", "mtime": 0}))
    return paths
