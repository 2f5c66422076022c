"""Parquet and NPZ: every item of the export with a validity mask, for any other consumer.

Parquet (pyarrow): ``features.parquet`` has ``id`` (string), ``part`` (the item's split part,
with a run) and one ``fixed_size_list<float32>[D]`` column per set, null where the item has no
valid row; ``interactions.parquet`` has ``user``, ``item``, ``rating``, ``timestamp`` (when the
ratings have one) and ``part``.

NPZ (numpy): ``features.npz`` holds ``ids``, ``part`` (with a run) and per set ``<set>``
(float32, N x D or N x T x D, NaN rows where invalid), ``<set>/valid`` (bool) and
``<set>/lengths`` for a sequence set; ``interactions.npz`` holds ``<part>/user``,
``<part>/item``, ``<part>/rating`` and ``<part>/timestamp``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cinefuse.export.driver import export_with
from cinefuse.export.folder import ExportResult, put, put_npz
from cinefuse.export.source import PARTS, ExportInput


def export_parquet(out, sets, *, store=None, workdir=None, ratings=None, endpoint_url=None) -> ExportResult:
    """Write ``sets`` as ``out/features.parquet`` (one row per item, a nullable vector column per
    set; null = no valid row) and, with ``workdir``, that fuse run's ratings with their split part
    as ``out/interactions.parquet``, into the new folder ``out``. ``store``: default the run's
    store; ``ratings``: default the run's ratings file. Returns an :class:`ExportResult`."""
    return export_with("parquet", write_parquet, out, sets, store=store, workdir=workdir, ratings=ratings,
                       endpoint_url=endpoint_url, align=False)


def export_npz(out, sets, *, store=None, workdir=None, ratings=None, endpoint_url=None) -> ExportResult:
    """Write ``sets`` as ``out/features.npz`` (every item; per set its rows, NaN where invalid, a
    ``valid`` mask and, for sequences, ``lengths``) and, with ``workdir``, that fuse run's ratings
    per split part as ``out/interactions.npz``, into the new folder ``out``. ``store``: default
    the run's store; ``ratings``: default the run's ratings file. Returns an :class:`ExportResult`."""
    return export_with("npz", write_npz, out, sets, store=store, workdir=workdir, ratings=ratings,
                       endpoint_url=endpoint_url, align=False)


def _parquet_bytes(table) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue().to_pybytes()


def write_parquet(inp: ExportInput, folder: Path, out: Path) -> tuple[str, dict]:
    import pyarrow as pa

    inp.require_matrices("parquet")
    columns = {"id": pa.array(inp.ids.astype(str).tolist(), pa.string())}
    if inp.part is not None:
        columns["part"] = pa.array(inp.part.astype(str).tolist(), pa.string())
    for s in inp.sets.values():
        width = s.data.shape[1]
        values = pa.array(np.ascontiguousarray(s.data, dtype=np.float32).reshape(-1), pa.float32())
        columns[s.name] = pa.FixedSizeListArray.from_arrays(values, width, mask=pa.array(~s.valid))
    put(folder / "features.parquet", _parquet_bytes(pa.table(columns)))
    if inp.interactions is not None:
        rows = {"user": [], "item": [], "rating": [], "timestamp": [], "part": []}
        for part in PARTS:
            r = inp.interactions[part]
            rows["user"].append(r.user)
            rows["item"].append(r.item.astype(str))
            rows["rating"].append(r.rating)
            rows["timestamp"].append(r.timestamp)
            rows["part"].append(np.full(len(r), part))
        table = {"user": pa.array(np.concatenate(rows["user"]), pa.int64()),
                 "item": pa.array(np.concatenate(rows["item"]).tolist(), pa.string()),
                 "rating": pa.array(np.concatenate(rows["rating"]), pa.float32())}
        if inp.interactions["train"].timestamp is not None:
            table["timestamp"] = pa.array(np.concatenate(rows["timestamp"]), pa.int64())
        table["part"] = pa.array(np.concatenate(rows["part"]).tolist(), pa.string())
        put(folder / "interactions.parquet", _parquet_bytes(pa.table(table)))
    readme = ("import pyarrow.parquet as pq, numpy as np\n"
              f"table = pq.read_table({str(Path(out).resolve() / 'features.parquet')!r})\n"
              "ids = table['id'].to_numpy(zero_copy_only=False)\n"
              "# one fixed-size-list column per feature set; null where the item has no valid row:\n"
              + "".join(f"#   {name!r}\n" for name in inp.sets)
              + "valid = table[SET].is_valid().to_numpy(zero_copy_only=False)\n"
              "matrix = table[SET].combine_chunks().flatten().to_numpy().reshape(-1, table[SET].type.list_size)\n")
    return readme, {}


def write_npz(inp: ExportInput, folder: Path, out: Path) -> tuple[str, dict]:
    arrays = {"ids": inp.ids.astype(str)}
    if inp.part is not None:
        arrays["part"] = inp.part.astype(str)
    for s in inp.sets.values():
        arrays[s.name] = s.data
        arrays[f"{s.name}/valid"] = s.valid
        if s.lengths is not None:
            arrays[f"{s.name}/lengths"] = s.lengths
    put_npz(folder / "features.npz", arrays)
    if inp.interactions is not None:
        rows = {}
        for part in PARTS:
            r = inp.interactions[part]
            rows.update({f"{part}/user": r.user, f"{part}/item": r.item.astype(str), f"{part}/rating": r.rating})
            if r.timestamp is not None:
                rows[f"{part}/timestamp"] = r.timestamp
        put_npz(folder / "interactions.npz", rows)
    readme = ("import numpy as np\n"
              f"z = np.load({str(Path(out).resolve() / 'features.npz')!r})\n"
              "ids = z['ids']\n"
              "# per feature set: z[SET] (NaN rows where invalid), z[SET + '/valid'], z[SET + '/lengths'] for sequences:\n"
              + "".join(f"#   {name!r}\n" for name in inp.sets))
    return readme, {}
