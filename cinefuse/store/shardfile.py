"""One verified shard, open: positional reads of its raw bytes, HDF5 parsed only on demand.

A contiguous, unfiltered dataset (every dataset cinefuse writes) is read with one ``preadv``
straight into the array it belongs to, at the offset HDF5 reports; anything else (chunked,
compressed, another byte order) goes through HDF5's own read. What a shard holds (its layout) is
remembered by sha256, so a load after the first reads a shard with no HDF5 parse. The store
reader (:mod:`cinefuse.store.reader`) opens a :class:`ShardFile` only once the shard's bytes are
checked against the manifest.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable

import h5py
import numpy as np

from cinefuse.store.shard import decode_attr, decode_fixed_strings, read_strings


@dataclass(frozen=True)
class _Dataset:
    dtype: np.dtype
    shape: tuple
    offset: int | None  # where its bytes start, when they can be read directly
    fixed_string: bool


# Verified sha256 -> what the shard holds: dataset key -> _Dataset (None: absent), and decoded
# group attributes. A layout is a function of the file's bytes, and a ShardFile exists only once
# those bytes hashed to that sha256, so a remembered layout is never stale; a load after the first
# reads a shard with a few positional reads and no HDF5 parse.
_LAYOUTS: dict[str, dict[Any, Any]] = {}


class ShardFile:
    """One verified shard, open: positional reads of its raw bytes, HDF5 parsed only on demand."""

    def __init__(self, sha256: str, open_h5: Callable[[], h5py.File], pread: Callable[[memoryview, int], int],
                 close: Callable[[], None]):
        self._open_h5 = open_h5
        self._h5: h5py.File | None = None
        self._pread = pread
        self._close = close
        self._layout = _LAYOUTS.setdefault(sha256, {})

    @property
    def h5(self) -> h5py.File:
        if self._h5 is None:
            self._h5 = self._open_h5()
        return self._h5

    def __enter__(self) -> "ShardFile":
        return self

    def __exit__(self, *exc) -> None:
        try:
            if self._h5 is not None:
                self._h5.close()
        finally:
            self._close()

    def _dataset(self, key: str) -> _Dataset | None:
        if key in self._layout:
            return self._layout[key]
        entry = None
        if key in self.h5 and isinstance(self.h5[key], h5py.Dataset):
            dsid = h5py.h5d.open(self.h5.id, key.encode())
            plist = dsid.get_create_plist()
            offset = dsid.get_offset()
            dtype = np.dtype(dsid.dtype.str)  # without h5py's metadata
            string = h5py.check_string_dtype(dsid.dtype)
            direct = (plist.get_layout() == h5py.h5d.CONTIGUOUS and plist.get_nfilters() == 0 and offset is not None
                      and dsid.get_storage_size() == dtype.itemsize * int(np.prod(dsid.shape)) and dtype.isnative)
            entry = _Dataset(dtype, tuple(dsid.shape), offset if direct else None,
                             string is not None and string.length is not None)
        self._layout[key] = entry
        return entry

    def shape(self, key: str) -> tuple | None:
        """Dataset ``key``'s shape as the shard records it, None when absent."""
        entry = self._dataset(key)
        return None if entry is None else entry.shape

    def has(self, key: str) -> bool:
        return self._dataset(key) is not None

    def read_into(self, key: str, out: np.ndarray) -> None:
        """Dataset ``key`` whole into the C-contiguous array ``out`` (same shape)."""
        entry = self._dataset(key)
        if entry is None:
            raise KeyError(f"no dataset {key}")
        if entry.shape != out.shape:
            raise ValueError(f"{key} has shape {entry.shape}, expected {out.shape}")
        if entry.offset is not None and entry.dtype == out.dtype:
            view = memoryview(out).cast("B")
            if self._pread(view, entry.offset) != out.nbytes:
                raise OSError(f"short read of {key}")
        elif entry.dtype == out.dtype:
            h5py.h5d.open(self.h5.id, key.encode()).read(h5py.h5s.ALL, h5py.h5s.ALL, out)
        else:
            out[...] = self.h5[key][()]

    def read_strings(self, key: str, rows: int) -> np.ndarray:
        entry = self._dataset(key)
        if entry is None:
            raise KeyError(f"no dataset {key}")
        if not entry.fixed_string or entry.shape != (rows,):
            return read_strings(self.h5[key])
        raw = np.empty(rows, dtype=entry.dtype)
        self.read_into(key, raw)
        return decode_fixed_strings(raw)

    def group_attrs(self, name: str) -> dict[str, Any]:
        key = ("attrs", name)
        if key not in self._layout:
            self._layout[key] = {k: decode_attr(v) for k, v in self.h5[f"features/{name}"].attrs.items()}
        return dict(self._layout[key])


def open_shard_file(path: str | os.PathLike, sha256: str) -> ShardFile:
    """A local shard file whose bytes the caller has checked hash to ``sha256``."""
    fd = os.open(path, os.O_RDONLY)
    return ShardFile(sha256, lambda: h5py.File(path, "r"), lambda view, offset: os.preadv(fd, [view], offset),
                     lambda: os.close(fd))

