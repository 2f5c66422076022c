"""Integrity on read: a committed shard is used only once its bytes match its manifest record.

Every open checks the size; the sha256 is checked the first time a process uses a shard and
remembered by (device, inode, size, mtime, ctime), so a shard rewritten in place (same size or
not; even with its mtime set back, which moves the ctime) since the last check is hashed again
before anything reads it.

Why a remembered sha256 rather than HDF5's per-chunk fletcher32: the sha256 is already in every
manifest, so stores written before this check are covered without a rewrite; it covers every
byte of the file (ids, status texts, attributes, HDF5 metadata), where fletcher32 covers only
the chunks of filtered datasets; and it keeps datasets contiguous, which is what makes a load as
fast as ``np.load``. Measured on the 2-core machine for 205 MB: a contiguous read 51 ms, the
same data chunked with fletcher32 123 ms on every read, sha256 133 ms once per process.
What it does not see: bytes that change under the filesystem without a write (bit rot) after
this process checked the shard, or a rewrite within the same tick of the filesystem's coarse
clock as the check; ``cinefuse store verify`` hashes every shard on each run.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Callable, Iterable

from cinefuse.errors import StoreError
from cinefuse.store.manifest import ShardRecord, sha256_file

# (device, inode, size, mtime_ns, ctime_ns) -> sha256 checked against the manifest in this process.
# Device and inode name the file whatever path reaches it; any write moves mtime and ctime.
_VERIFIED: dict[tuple, str] = {}


def _identity(stat: os.stat_result) -> tuple:
    return (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)


def remember_verified(path: Path, sha256: str) -> None:
    """Record that ``path`` as it is now holds ``sha256`` (a writer that just committed it)."""
    _VERIFIED[_identity(os.stat(path))] = sha256


def changed_message(name: str, location: str, digest: str, expected: str) -> str:
    return (
        f"shard {name} of store {location} has changed since it was committed (sha256 {digest[:12]}..., "
        f"the manifest says {expected[:12]}...); run `cinefuse store verify {location}` to check every shard"
    )


def check_local_shard(root: Path, record: ShardRecord) -> str:
    """The path of a committed shard whose size and sha256 match ``record``, or a StoreError
    naming the shard and pointing at ``store verify``. (A plain string: pathlib's parsing was
    half of a load's cost per shard.)"""
    path = os.path.join(root, record.name)
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        raise StoreError(f"shard {record.name} of store {root} is missing; run `cinefuse store verify {root}`") from None
    if stat.st_size != record.bytes:
        raise StoreError(
            f"shard {record.name} of store {root} is {stat.st_size} bytes but the manifest says "
            f"{record.bytes} (truncated or replaced); run `cinefuse store verify {root}`"
        )
    key = _identity(stat)
    if _VERIFIED.get(key) == record.sha256:
        return path
    digest = sha256_file(Path(path))
    if digest != record.sha256:
        raise StoreError(changed_message(record.name, str(root), digest, record.sha256))
    _VERIFIED[key] = digest
    return path


def check_shard_data(record: ShardRecord, data: bytes, location: str) -> bytes:
    """The bytes of a shard fetched whole (from S3), checked against ``record``."""
    if len(data) != record.bytes:
        raise StoreError(
            f"shard {record.name} of store {location} is {len(data)} bytes but the manifest says {record.bytes}; "
            f"run `cinefuse store verify {location}`"
        )
    digest = hashlib.sha256(data).hexdigest()
    if digest != record.sha256:
        raise StoreError(changed_message(record.name, location, digest, record.sha256))
    return data


def check_recorded_shapes(record: ShardRecord, location: str, shape_of: Callable[[str], tuple | None],
                          names: Iterable[str] | None = None) -> None:
    """Before anything is allocated from a manifest's numbers: the shard's ``ids`` must hold
    ``record.rows`` rows and each recorded feature set (or only ``names``) the recorded shape, as
    the shard itself says (``shape_of(dataset key)``: its shape, or None when absent). A manifest
    whose counts were inflated, or that belongs to other shards, stops here with one line instead
    of a gigantic allocation."""
    ids = shape_of("ids")
    if ids != (record.rows,):
        held = "no ids" if ids is None else f"{ids[0] if ids else 0} ids"
        raise StoreError(
            f"manifest of store {location} says shard {record.name} holds {record.rows} rows, the shard holds {held}; "
            f"the manifest is damaged: run `cinefuse store verify {location}`")
    for name in record.feature_sets if names is None else [n for n in names if n in record.feature_sets]:
        expected = (record.rows,) + tuple(int(x) for x in record.feature_sets[name]["shape"])
        shape = shape_of(f"features/{name}/data")
        if shape != expected:
            held = "no such data" if shape is None else f"data of shape {tuple(shape)}"
            raise StoreError(
                f"manifest of store {location} says feature set {name} of shard {record.name} is {expected}, the shard "
                f"holds {held}; the manifest is damaged: run `cinefuse store verify {location}`")
