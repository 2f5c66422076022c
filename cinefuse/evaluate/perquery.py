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


def per_query_frame(results, query_ids):
    """The long table of the module docstring for ``results``' rows (those with per-query
    values); ``query_ids``: the eval set's queries, in the order the rows' values follow."""
    import pandas as pd

    query_ids = np.asarray(query_ids, dtype=str)
    parts = []
    for row in results.rows:
        if row.per_query is None:
            continue
        scored = np.asarray(row.per_query.scored, bool)
        ids = query_ids[scored]
        for name in row.per_query.values:
            metric, _, k = name.partition("@")
            parts.append(pd.DataFrame({
                "task": results.task, "row": row.name, "kind": row.kind, "query_id": ids, "metric": metric,
                "k": np.full(len(ids), int(k), np.int64),
                "value": np.asarray(row.per_query.values[name], np.float64)[scored]}))
    if not parts:
        return pd.DataFrame({c: pd.Series(dtype=("int64" if c == "k" else "float64" if c == "value" else object))
                             for c in COLUMNS})
    return pd.concat(parts, ignore_index=True)[list(COLUMNS)]


def write_per_query(results, es, out_dir) -> dict[str, Path]:
    """``per_query.parquet`` and ``per_query.csv.gz`` of ``results`` (queries of ``es``) in
    ``out_dir``, each written atomically; returns their paths by output key."""
    frame = per_query_frame(results, es.query_ids)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {key: out_dir / name for key, name in FILES.items()}
    atomic_write(paths["per_query"], lambda handle: frame.to_parquet(handle, index=False))
    # mtime 0: the same values give the same bytes
    atomic_write(paths["per_query_csv"], lambda handle: frame.to_csv(
        handle, index=False, compression={"method": "gzip", "mtime": 0}))
    return paths
