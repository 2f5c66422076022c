"""Read a store: list feature sets, load whole matrices, join shards and feature sets by id.

Cost per shard is a few system calls, cost per id is vectorised:
- each shard is opened once per load, for every feature set asked (not once per set);
- a contiguous, unfiltered dataset (every dataset cinefuse writes) is read with one ``preadv``
  straight into the slice of the output it belongs to (:mod:`cinefuse.store.shardfile`);
- repeated ids across shards are found by sorting 64-bit hashes of the ids (a string sort of
  100,000 ids costs about 35 ms, as much as loading the matrix); only then are strings compared;
- joins map ids to rows with one sort and ``searchsorted``, never a Python dict.
Every shard is checked against the manifest before use (``cinefuse.store.integrity``). Files are
opened per call and closed again, so a ``Store`` object can be handed to forked workers safely.
Any failure to read a shard becomes a ``StoreError`` that names the shard and the reason.
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
from cinefuse.store.integrity import check_local_shard, check_recorded_shapes, check_shard_data
from cinefuse.store.location import is_s3_uri, join_key, split_s3_uri
from cinefuse.store.manifest import MANIFEST_NAME, Manifest, ShardRecord
from cinefuse.store.shard import READ_ERRORS
from cinefuse.store.shardfile import ShardFile, open_shard_file


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


# The sha256s of the shards of one load, in order -> whether an id repeats across them: also a
# function of verified bytes, and the sort behind it costs more than reading 100 shards' ids.
_REPEATS: dict[tuple[str, ...], bool] = {}


class Store:
    """A committed store. Build it with :func:`open_store`."""

    def __init__(self, location: str, manifest: Manifest, open_shard: Callable[[ShardRecord], ShardFile]):
        self.location = location
        self.manifest = manifest
        self._open_shard = open_shard

    def __repr__(self) -> str:
        return f"Store({self.location!r}, shards={len(self.manifest.shards)}, rows={self.manifest.total_rows})"

    # -- shard access ---------------------------------------------------------------------------
    def _shard(self, record: ShardRecord) -> ShardFile:
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

    def _ids_of(self, shard: ShardFile, record: ShardRecord) -> np.ndarray:
        ids = shard.read_strings("ids", record.rows)
        if ids.shape != (record.rows,):
            raise ValueError(f"holds {ids.shape[0]} ids, manifest says {record.rows} rows")
        return ids

    def shard_ids(self, names: Iterable[str]) -> np.ndarray:
        """The ids of the named shards, in order, concatenated."""
        parts = []
        for name in names:
            record = self.manifest.shard(name)
            with self._shard(record) as shard:
                try:
                    parts.append(self._ids_of(shard, record))
                except READ_ERRORS as exc:
                    raise self._damaged(record, exc) from exc
        return np.concatenate(parts) if parts else np.zeros(0, dtype=str)

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
            with self._shard(record) as shard:
                try:
                    info.attrs = shard.group_attrs(info.name)
                except READ_ERRORS as exc:
                    raise self._damaged(record, exc) from exc
        return dict(sorted(infos.items()))

    def provenance(self, record: ShardRecord) -> dict[str, dict[str, Any]]:
        """The attributes of every feature set of one shard."""
        with self._shard(record) as shard:
            try:
                return {name: shard.group_attrs(name) for name in sorted(record.feature_sets)}
            except READ_ERRORS as exc:
                raise self._damaged(record, exc) from exc

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
        ids = self.shard_ids(r.name for r in records)
        return ids[first_occurrences(ids)] if len(records) > 1 else ids

    def count_valid(self, name: str) -> int:
        """Rows of ``name`` holding a real embedding, reading only the ``valid`` masks (an id
        repeated across shards counts in each)."""
        count = 0
        for record in self._require(name):
            with self._shard(record) as shard:
                try:
                    valid = np.empty(record.rows, dtype=np.uint8)
                    shard.read_into(f"features/{name}/valid", valid)
                    count += int(np.count_nonzero(valid))
                except READ_ERRORS as exc:
                    raise self._damaged(record, exc) from exc
        return count

    # -- loading --------------------------------------------------------------------------------
    def load_feature_set(self, name: str) -> FeatureArray:
        """Every row of one feature set across all shards; a later shard wins for a repeated id."""
        return self.read([name])[name]

    def read(self, names: Sequence[str], records: Sequence[ShardRecord] | None = None) -> dict[str, FeatureArray]:
        """Feature sets ``names`` from ``records`` (default: every shard), each shard opened once;
        for a repeated id the later shard wins."""
        pool = list(records) if records is not None else self.manifest.shards
        wanted = {name: [r for r in pool if name in r.feature_sets] for name in names}
        for name in names:
            if not wanted[name]:
                self._require(name)  # the "not in store" error when the store lacks it
                raise StoreError(f"feature set {name!r} is in none of the shards asked for")
        touched = [r for r in pool if any(name in r.feature_sets for name in names)]
        for record in touched:  # the manifest's counts, checked against each shard before any allocation
            with self._shard(record) as shard:
                try:
                    check_recorded_shapes(record, self.location, shard.shape, names)
                except READ_ERRORS as exc:
                    raise self._damaged(record, exc) from exc
        outputs = {name: _Output.allocate(name, wanted[name]) for name in names}
        for record in touched:
            with self._shard(record) as shard:
                try:
                    ids = self._ids_of(shard, record)
                    for name in names:
                        if name in record.feature_sets:
                            outputs[name].fill(shard, record, ids)
                except READ_ERRORS as exc:
                    raise self._damaged(record, exc) from exc
        return {name: outputs[name].finish() for name in names}

    def load(self, names: Sequence[str], ids: Sequence[str] | None = None) -> Table:
        """Feature sets joined by id. ``ids=None``: the sorted union of the sets' ids."""
        if isinstance(names, str):
            names = [names]
        if not names:
            raise StoreError("load() needs at least one feature set name")
        for name in names:
            self._require(name)
        arrays = self.read(list(names))
        every = np.concatenate([fa.ids for fa in arrays.values()])
        if ids is None:
            target = sorted_unique(every)
        else:
            target = np.array([str(i) for i in ids], dtype=str)
            unknown = target[~np.isin(target, every)]
            if len(unknown):
                raise StoreError(
                    f"id {str(unknown[0])!r} is in none of the feature sets {list(names)} of store "
                    f"{self.location}" + (f" ({len(unknown)} unknown ids in all)" if len(unknown) > 1 else "")
                )
        table = Table(ids=target, features={}, valid={}, status={}, lengths={}, attrs={})
        for name in names:
            _join_into(table, arrays[name])
        return table


class _Output:
    """The arrays one feature set is read into, filled shard by shard."""

    def __init__(self, name: str, records: list[ShardRecord], row_shape: tuple, dtype: np.dtype):
        self.name, self.last = name, records[-1].name
        self.several = len(records) > 1
        self.digests = tuple(r.sha256 for r in records)
        total = sum(r.rows for r in records)
        self.data = np.empty((total,) + row_shape, dtype=dtype)
        self.valid = np.empty(total, dtype=np.uint8)
        self.ids: list[np.ndarray] = []
        self.status: list[np.ndarray] = []
        self.lengths: list[np.ndarray] | None = []
        self.attrs: dict[str, Any] = {}
        self.start = 0

    @classmethod
    def allocate(cls, name: str, records: list[ShardRecord]) -> "_Output":
        shapes = {tuple(r.feature_sets[name]["shape"]) for r in records}
        if len(shapes) > 1:
            raise StoreError(
                f"feature set {name!r} has different row shapes across shards ({sorted(shapes)}); "
                "the store mixes extraction configs; re-extract it with --overwrite"
            )
        dtype = np.result_type(*[np.dtype(r.feature_sets[name]["dtype"]) for r in records])
        return cls(name, records, shapes.pop(), dtype)

    def fill(self, shard: ShardFile, record: ShardRecord, ids: np.ndarray) -> None:
        stop = self.start + record.rows
        key = f"features/{self.name}"
        shard.read_into(f"{key}/data", self.data[self.start:stop])
        shard.read_into(f"{key}/valid", self.valid[self.start:stop])
        self.status.append(shard.read_strings(f"{key}/status", record.rows))
        if self.lengths is not None and shard.has(f"{key}/lengths"):
            lengths = np.empty(record.rows, dtype=np.int32)
            shard.read_into(f"{key}/lengths", lengths)
            self.lengths.append(lengths)
        else:
            self.lengths = None
        if record.name == self.last:
            self.attrs = shard.group_attrs(self.name)
        self.ids.append(ids)
        self.start = stop

    def finish(self) -> FeatureArray:
        ids, status = _concat(self.ids), _concat(self.status)
        lengths = _concat(self.lengths) if self.lengths else None
        data, valid = self.data, self.valid.view(bool)
        if self.several and self.digests not in _REPEATS:
            _REPEATS[self.digests] = has_repeats(ids)
        if self.several and _REPEATS[self.digests]:
            keep = last_occurrences(ids)
            ids, data, valid, status = ids[keep], data[keep], valid[keep], status[keep]
            lengths = lengths[keep] if lengths is not None else None
        return FeatureArray(self.name, ids, data, valid, status, lengths, self.attrs)


def _concat(parts: list[np.ndarray]) -> np.ndarray:
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


# -- id arithmetic, vectorised --------------------------------------------------------------------
def id_hashes(ids: np.ndarray) -> np.ndarray:
    """A 64-bit FNV-style hash of each id, a few vector operations per 8 characters."""
    codes = np.ascontiguousarray(ids, dtype=ids.dtype if ids.dtype.kind == "U" else str)
    width = codes.dtype.itemsize // 4
    words = codes.view(np.uint32).reshape(len(codes), width) if len(codes) else np.zeros((0, width), np.uint32)
    if width % 2:
        words = np.concatenate([words, np.zeros((len(codes), 1), np.uint32)], axis=1)
    words = np.ascontiguousarray(words).view(np.uint64)
    hashes = np.full(len(codes), 0xCBF29CE484222325, dtype=np.uint64)
    prime = np.uint64(0x100000001B3)
    for column in words.T:
        hashes ^= column
        hashes *= prime
    return hashes


def has_repeats(ids: np.ndarray) -> bool:
    """Whether any id occurs twice: a sort of 64-bit hashes (about 8x cheaper than sorting the
    strings); only equal hashes, a repeat or a collision, lead to comparing the strings."""
    hashes = np.sort(id_hashes(ids))
    if not (hashes[1:] == hashes[:-1]).any():
        return False
    return len(sorted_unique(ids)) != len(ids)


def sorted_unique(ids: np.ndarray) -> np.ndarray:
    ordered = np.sort(ids, kind="stable")
    if len(ordered) < 2:
        return ordered
    return ordered[np.concatenate([[True], ordered[1:] != ordered[:-1]])]


def first_occurrences(ids: np.ndarray) -> np.ndarray:
    """Positions of each id's first occurrence, in order of position."""
    order = np.argsort(ids, kind="stable")
    ordered = ids[order]
    first = np.concatenate([[True], ordered[1:] != ordered[:-1]]) if len(ids) else np.zeros(0, bool)
    return np.sort(order[first])


def last_occurrences(ids: np.ndarray) -> np.ndarray:
    """A mask keeping each id's last occurrence (a later shard wins)."""
    n = len(ids)
    reverse_first = first_occurrences(ids[::-1])
    keep = np.zeros(n, dtype=bool)
    keep[n - 1 - reverse_first] = True
    return keep


def _join_into(table: Table, fa: FeatureArray) -> None:
    name = fa.name
    table.attrs[name] = fa.attrs
    if len(fa.ids) == len(table.ids) and np.array_equal(fa.ids, table.ids):
        table.features[name], table.valid[name], table.status[name] = fa.data, fa.valid, fa.status
        table.lengths[name] = fa.lengths
        return
    order = np.argsort(fa.ids, kind="stable")
    ordered = fa.ids[order]
    at = np.minimum(np.searchsorted(ordered, table.ids), max(len(ordered) - 1, 0))
    has = (ordered[at] == table.ids) if len(ordered) else np.zeros(len(table.ids), bool)
    src = order[at[has]]
    n = len(table.ids)
    data = np.zeros((n,) + fa.data.shape[1:], dtype=fa.data.dtype)
    data[has] = fa.data[src]
    valid = np.zeros(n, dtype=bool)
    valid[has] = fa.valid[src]
    status = np.full(n, "missing", dtype=object)
    status[has] = fa.status[src]
    table.features[name], table.valid[name], table.status[name] = data, valid, status
    if fa.lengths is not None:
        lengths = np.zeros(n, dtype=np.int32)
        lengths[has] = fa.lengths[src]
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

    def open_shard(record: ShardRecord) -> ShardFile:
        return open_shard_file(check_local_shard(root, record), record.sha256)

    return Store(str(root), manifest, open_shard)


def _open_s3(uri: str, endpoint_url: str | None) -> Store:
    from cinefuse.store.s3 import get_object_bytes, s3_client

    bucket, prefix = split_s3_uri(uri)
    client = s3_client(endpoint_url)
    manifest = Manifest.from_bytes(get_object_bytes(client, bucket, join_key(prefix, MANIFEST_NAME), uri), uri)
    cache: dict[str, bytes] = {}

    def open_shard(record: ShardRecord) -> ShardFile:
        data = cache.get(record.name)
        if data is None:
            data = get_object_bytes(client, bucket, join_key(prefix, record.name), uri)
            cache[record.name] = check_shard_data(record, data, uri)
        raw = memoryview(data)

        def pread(view: memoryview, offset: int) -> int:
            chunk = raw[offset:offset + len(view)]
            view[:len(chunk)] = chunk
            return len(chunk)

        return ShardFile(record.sha256, lambda: h5py.File(io.BytesIO(data), "r"), pread, lambda: None)

    return Store(uri, manifest, open_shard)


def open_store(location: str | os.PathLike, endpoint_url: str | None = None) -> Store:
    """Open a committed store: a local folder or ``s3://bucket/prefix``."""
    location = str(location)
    if is_s3_uri(location):
        return _open_s3(location, endpoint_url)
    return _open_local(Path(location))
