"""Read a store: list feature sets, load whole matrices, join shards and feature sets by id.

Each dataset is read whole (``read_direct`` into the slice of the output it belongs to, never
h5py fancy indexing). Files are opened per call and closed again, so a ``Store`` object can be
handed to forked workers safely. Any failure to read a shard becomes a ``StoreError`` that names
the shard and the reason.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import h5py
import numpy as np

from cinefuse.errors import StoreError
from cinefuse.store.location import is_s3_uri, join_key, split_s3_uri
from cinefuse.store.integrity import check_local_shard, check_shard_data
from cinefuse.store.manifest import MANIFEST_NAME, Manifest, ShardRecord
from cinefuse.store.shard import READ_ERRORS, decode_attr, read_ids, read_strings


@dataclass
class FeatureSetInfo:
    name: str
    modality: str
    shape: tuple[int, ...]  # per row: (D,) or (T, D)
    dtype: str
    kind: str
    rows: int
    shards: list[str]
    attrs: dict[str, Any] = field(default_factory=dict)


@dataclass
class FeatureArray:
    name: str
    ids: np.ndarray
    data: np.ndarray
    valid: np.ndarray
    status: np.ndarray
    lengths: np.ndarray | None
    attrs: dict[str, Any]


@dataclass
class Table:
    ids: np.ndarray
    features: dict[str, np.ndarray]
    valid: dict[str, np.ndarray]
    status: dict[str, np.ndarray]
    lengths: dict[str, np.ndarray | None]
    attrs: dict[str, dict[str, Any]]


class Store:
    """A committed store. Build it with :func:`open_store`."""

    def __init__(self, location: str, manifest: Manifest, open_shard: Callable[[ShardRecord], h5py.File]):
        self.location = location
        self.manifest = manifest
        self._open_shard = open_shard

    def __repr__(self) -> str:
        return f"Store({self.location!r}, shards={len(self.manifest.shards)}, rows={self.manifest.total_rows})"

    # -- shard access ---------------------------------------------------------------------------
    def _shard(self, record: ShardRecord) -> h5py.File:
        try:
            return self._open_shard(record)
        except StoreError:
            raise
        except READ_ERRORS as exc:
            raise self._damaged(record, exc) from exc

    def _damaged(self, record: ShardRecord, exc: BaseException) -> StoreError:
        return StoreError(
            f"shard {record.name} of store {self.location} cannot be read ({type(exc).__name__}: {exc}); "
            f"run `cinefuse store verify {self.location}` to check every shard"
        )

    def shard_ids(self, names: Iterable[str]) -> list[str]:
        out: list[str] = []
        for name in names:
            record = self.manifest.shard(name)
            with self._shard(record) as h5:
                try:
                    out.extend(read_ids(h5).tolist())
                except READ_ERRORS as exc:
                    raise self._damaged(record, exc) from exc
        return out

    # -- catalogue ------------------------------------------------------------------------------
    def feature_sets(self) -> dict[str, FeatureSetInfo]:
        infos: dict[str, FeatureSetInfo] = {}
        for record in self.manifest.shards:
            for name, meta in record.feature_sets.items():
                shape = tuple(int(x) for x in meta["shape"])
                info = infos.get(name)
                if info is None:
                    infos[name] = FeatureSetInfo(
                        name=name,
                        modality=name.split("/", 1)[0],
                        shape=shape,
                        dtype=str(meta["dtype"]),
                        kind=str(meta.get("kind", "sequence" if len(shape) == 2 else "matrix")),
                        rows=record.rows,
                        shards=[record.name],
                    )
                else:
                    info.rows += record.rows
                    info.shards.append(record.name)
        for info in infos.values():  # provenance from the newest shard holding the set
            record = self.manifest.shard(info.shards[-1])
            with self._shard(record) as h5:
                try:
                    info.attrs = {k: decode_attr(v) for k, v in h5[f"features/{info.name}"].attrs.items()}
                except READ_ERRORS as exc:
                    raise self._damaged(record, exc) from exc
        return dict(sorted(infos.items()))

    def _require(self, name: str) -> list[ShardRecord]:
        records = [r for r in self.manifest.shards if name in r.feature_sets]
        if not records:
            have = sorted({n for r in self.manifest.shards for n in r.feature_sets})
            raise StoreError(
                f"feature set {name!r} is not in store {self.location}; it has: "
                + (", ".join(have) if have else "no feature sets (empty store)")
            )
        return records

    def ids(self, name: str | None = None) -> np.ndarray:
        """Ids holding feature set ``name`` (or any set), in manifest order, each once."""
        records = self._require(name) if name is not None else self.manifest.shards
        seen: dict[str, None] = {}
        for item in self.shard_ids(r.name for r in records):
            seen.setdefault(item, None)
        return np.array(list(seen), dtype=str)

    def count_valid(self, name: str) -> int:
        """Rows of ``name`` holding a real embedding, reading only the ``valid`` masks (an id
        repeated across shards counts in each)."""
        count = 0
        for record in self._require(name):
            with self._shard(record) as h5:
                try:
                    count += int(np.count_nonzero(h5[f"features/{name}/valid"][()]))
                except READ_ERRORS as exc:
                    raise self._damaged(record, exc) from exc
        return count

    # -- loading --------------------------------------------------------------------------------
    def load_feature_set(self, name: str) -> FeatureArray:
        """Every row of one feature set across all shards; a later shard wins for a repeated id."""
        records = self._require(name)
        shapes = {tuple(r.feature_sets[name]["shape"]) for r in records}
        if len(shapes) > 1:
            raise StoreError(
                f"feature set {name!r} has different row shapes across shards ({sorted(shapes)}); "
                "the store mixes extraction configs; re-extract it with --overwrite"
            )
        dtype = np.result_type(*[np.dtype(r.feature_sets[name]["dtype"]) for r in records])
        row_shape = shapes.pop()
        total = sum(r.rows for r in records)
        data = np.empty((total,) + row_shape, dtype=dtype)
        valid = np.empty(total, dtype=np.uint8)
        ids_parts, status_parts, length_parts = [], [], []
        has_lengths = True
        attrs: dict[str, Any] = {}
        start = 0
        for record in records:
            stop = start + record.rows
            with self._shard(record) as h5:
                try:
                    group = h5[f"features/{name}"]
                    ids = read_ids(h5)
                    dset = group["data"]
                    if ids.shape[0] != record.rows or dset.shape != (record.rows,) + row_shape:
                        raise ValueError(
                            f"holds {ids.shape[0]} ids and data of shape {dset.shape}; "
                            f"manifest says {record.rows} rows of {row_shape}"
                        )
                    if dset.dtype == dtype:
                        dset.read_direct(data, dest_sel=np.s_[start:stop])
                    else:
                        data[start:stop] = dset[()]
                    group["valid"].read_direct(valid, dest_sel=np.s_[start:stop])
                    status_parts.append(read_strings(group["status"]))
                    if "lengths" in group:
                        length_parts.append(group["lengths"][()])
                    else:
                        has_lengths = False
                    attrs = {k: decode_attr(v) for k, v in group.attrs.items()}
                except READ_ERRORS as exc:
                    raise self._damaged(record, exc) from exc
            ids_parts.append(ids)
            start = stop
        all_ids = np.concatenate(ids_parts) if len(ids_parts) > 1 else ids_parts[0]
        status = np.concatenate(status_parts) if len(status_parts) > 1 else status_parts[0]
        lengths = (np.concatenate(length_parts) if len(length_parts) > 1 else length_parts[0]) if has_lengths else None
        if len(records) > 1:
            keep = _last_occurrence_mask(all_ids)
            if not keep.all():
                all_ids, data, valid, status = all_ids[keep], data[keep], valid[keep], status[keep]
                lengths = lengths[keep] if lengths is not None else None
        return FeatureArray(name, all_ids, data, valid.view(bool), status, lengths, attrs)

    def load(self, names: Sequence[str], ids: Sequence[str] | None = None) -> Table:
        """Feature sets joined by id. ``ids=None``: the sorted union of the sets' ids."""
        if isinstance(names, str):
            names = [names]
        if not names:
            raise StoreError("load() needs at least one feature set name")
        for name in names:
            self._require(name)
        arrays = [self.load_feature_set(name) for name in names]
        if ids is None:
            union = set()
            for fa in arrays:
                union.update(fa.ids.tolist())
            target = np.array(sorted(union), dtype=str)
        else:
            target = np.array([str(i) for i in ids], dtype=str)
            known = set()
            for fa in arrays:
                known.update(fa.ids.tolist())
            unknown = [i for i in target.tolist() if i not in known]
            if unknown:
                raise StoreError(
                    f"id {unknown[0]!r} is in none of the feature sets {list(names)} of store "
                    f"{self.location}" + (f" ({len(unknown)} unknown ids in all)" if len(unknown) > 1 else "")
                )
        table = Table(ids=target, features={}, valid={}, status={}, lengths={}, attrs={})
        for fa in arrays:
            _join_into(table, fa)
        return table


def _last_occurrence_mask(ids: np.ndarray) -> np.ndarray:
    last: dict[str, int] = {}
    for position, item in enumerate(ids.tolist()):
        last[item] = position
    keep = np.zeros(len(ids), dtype=bool)
    keep[list(last.values())] = True
    return keep


def _join_into(table: Table, fa: FeatureArray) -> None:
    name = fa.name
    table.attrs[name] = fa.attrs
    if len(fa.ids) == len(table.ids) and np.array_equal(fa.ids, table.ids):
        table.features[name], table.valid[name], table.status[name] = fa.data, fa.valid, fa.status
        table.lengths[name] = fa.lengths
        return
    position = {item: row for row, item in enumerate(fa.ids.tolist())}
    src = np.array([position.get(item, -1) for item in table.ids.tolist()], dtype=np.int64)
    has = src >= 0
    n = len(table.ids)
    data = np.zeros((n,) + fa.data.shape[1:], dtype=fa.data.dtype)
    data[has] = fa.data[src[has]]
    valid = np.zeros(n, dtype=bool)
    valid[has] = fa.valid[src[has]]
    status = np.full(n, "missing", dtype=object)
    status[has] = fa.status[src[has]]
    table.features[name], table.valid[name], table.status[name] = data, valid, status
    if fa.lengths is not None:
        lengths = np.zeros(n, dtype=np.int32)
        lengths[has] = fa.lengths[src[has]]
        table.lengths[name] = lengths
    else:
        table.lengths[name] = None


# -- opening ------------------------------------------------------------------------------------
def _open_local(root: Path) -> Store:
    path = root / MANIFEST_NAME
    if not root.exists():
        raise StoreError(f"store {root} does not exist (expected a folder with {MANIFEST_NAME})")
    if not path.is_file():
        raise StoreError(f"{root} is not a cinefuse store: it has no {MANIFEST_NAME}")
    manifest = Manifest.from_bytes(path.read_bytes(), str(path))

    def open_shard(record: ShardRecord) -> h5py.File:
        return h5py.File(check_local_shard(root, record), "r")

    return Store(str(root), manifest, open_shard)


def _open_s3(uri: str, endpoint_url: str | None) -> Store:
    from cinefuse.store.s3 import get_object_bytes, s3_client

    bucket, prefix = split_s3_uri(uri)
    client = s3_client(endpoint_url)
    manifest = Manifest.from_bytes(get_object_bytes(client, bucket, join_key(prefix, MANIFEST_NAME), uri), uri)
    cache: dict[str, bytes] = {}

    def open_shard(record: ShardRecord) -> h5py.File:
        data = cache.get(record.name)
        if data is None:
            data = get_object_bytes(client, bucket, join_key(prefix, record.name), uri)
            cache[record.name] = check_shard_data(record, data, uri)
        return h5py.File(io.BytesIO(data), "r")

    return Store(uri, manifest, open_shard)


def open_store(location: str | os.PathLike, endpoint_url: str | None = None) -> Store:
    """Open a committed store: a local folder or ``s3://bucket/prefix``."""
    location = str(location)
    if is_s3_uri(location):
        return _open_s3(location, endpoint_url)
    return _open_local(Path(location))
