"""Check every shard of a store against its manifest and say which is damaged and why.

Per shard: present, size and sha256 as recorded, opens as HDF5, ``ids`` count equals the
recorded rows and no id repeats within the shard, each recorded feature set has readable
``data``/``valid``/``status`` (and ``lengths``) of consistent shapes. Files the manifest does not name are reported as leftovers
(they do not belong to the store and no reader looks at them), not as damage; lock files are not
reported.
"""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from cinefuse.errors import StoreError
from cinefuse.locks import LOCK_NAME as FOLDER_LOCK
from cinefuse.store.location import is_s3_uri, join_key, split_s3_uri
from cinefuse.store.manifest import LOCK_NAME, MANIFEST_NAME, Manifest, ShardRecord
from cinefuse.store.shard import READ_ERRORS, read_ids


@dataclass
class ShardCheck:
    name: str
    ok: bool
    reason: str = "ok"


@dataclass
class VerifyReport:
    location: str
    shards: list[ShardCheck] = field(default_factory=list)
    leftovers: list[str] = field(default_factory=list)
    manifest_error: str | None = None

    @property
    def ok(self) -> bool:
        return self.manifest_error is None and all(s.ok for s in self.shards)

    @property
    def damaged(self) -> list[ShardCheck]:
        return [s for s in self.shards if not s.ok]

    def to_json(self) -> dict:
        return {
            "location": self.location,
            "ok": self.ok,
            "manifest_error": self.manifest_error,
            "shards": [{"name": s.name, "ok": s.ok, "reason": s.reason} for s in self.shards],
            "damaged": [s.name for s in self.damaged],
            "leftovers": self.leftovers,
        }


def check_shard_bytes(record: ShardRecord, data: bytes) -> str:
    """Return "ok" or the reason the shard's bytes do not match the manifest."""
    if len(data) == 0:
        return "zero-byte file"
    if len(data) != record.bytes:
        kind = "truncated" if len(data) < record.bytes else "longer than recorded"
        return f"{kind}: {len(data)} bytes, manifest says {record.bytes}"
    if not data.startswith(b"\x89HDF\r\n\x1a\n"):
        return "not an HDF5 file (no HDF5 signature)"
    digest = hashlib.sha256(data).hexdigest()
    if digest != record.sha256:
        return f"checksum mismatch: sha256 {digest[:12]}..., manifest says {record.sha256[:12]}... (bit rot or overwritten)"
    return check_shard_contents(record, data)


def check_shard_contents(record: ShardRecord, data: bytes) -> str:
    try:
        with h5py.File(io.BytesIO(data), "r") as h5:
            ids = read_ids(h5)
            if ids.shape != (record.rows,):
                return f"holds {ids.shape[0]} ids, manifest says {record.rows} rows"
            unique, counts = np.unique(ids, return_counts=True)
            if len(unique) != len(ids):
                repeated = unique[counts > 1]
                return (f"id {str(repeated[0])!r} appears {int(counts.max())} times in the shard"
                        + (f" ({len(repeated)} ids repeated)" if len(repeated) > 1 else "")
                        + "; ids must be unique within a shard")
            for name, meta in record.feature_sets.items():
                if f"features/{name}" not in h5:
                    return f"feature set {name} is recorded in the manifest but absent"
                group = h5[f"features/{name}"]
                expected = (record.rows,) + tuple(meta["shape"])
                array = group["data"][()]
                if array.shape != expected:
                    return f"feature set {name}: data shape {array.shape}, expected {expected}"
                if group["valid"][()].shape != (record.rows,) or group["status"][()].shape != (record.rows,):
                    return f"feature set {name}: valid/status do not have {record.rows} rows"
                if "lengths" in group and group["lengths"][()].shape != (record.rows,):
                    return f"feature set {name}: lengths do not have {record.rows} rows"
                if not np.isfinite(array[np.asarray(group["valid"][()], dtype=bool)]).all():
                    return f"feature set {name}: valid rows hold NaN or Inf"
    except READ_ERRORS as exc:
        return f"unreadable HDF5 ({type(exc).__name__}: {exc})"
    return "ok"


def verify_store(location: str | os.PathLike, endpoint_url: str | None = None) -> VerifyReport:
    location = str(location)
    report = VerifyReport(location)
    if is_s3_uri(location):
        from cinefuse.store.s3 import get_object_bytes, s3_client

        bucket, prefix = split_s3_uri(location)
        client = s3_client(endpoint_url)

        def manifest_bytes() -> bytes:
            return get_object_bytes(client, bucket, join_key(prefix, MANIFEST_NAME), location)

        def shard_bytes(name: str) -> bytes | None:
            try:
                return get_object_bytes(client, bucket, join_key(prefix, name), location)
            except StoreError:
                return None

        present: list[str] = []
    else:
        root = Path(location)
        if not (root / MANIFEST_NAME).is_file():
            raise StoreError(f"{root} is not a cinefuse store: it has no {MANIFEST_NAME}")

        def manifest_bytes() -> bytes:
            return (root / MANIFEST_NAME).read_bytes()

        def shard_bytes(name: str) -> bytes | None:
            try:
                return (root / name).read_bytes()
            except FileNotFoundError:
                return None

        present = sorted(p.name for p in root.iterdir() if p.is_file())

    try:
        manifest = Manifest.from_bytes(manifest_bytes(), f"{location}/{MANIFEST_NAME}")
    except StoreError as exc:
        report.manifest_error = str(exc)
        return report

    for record in manifest.shards:
        data = shard_bytes(record.name)
        if data is None:
            report.shards.append(ShardCheck(record.name, False, "missing: in the manifest but not in the store"))
            continue
        reason = check_shard_bytes(record, data)
        report.shards.append(ShardCheck(record.name, reason == "ok", reason))
    known = {r.name for r in manifest.shards} | {MANIFEST_NAME, LOCK_NAME}
    report.leftovers = [name for name in present if name not in known and not name.startswith(FOLDER_LOCK)]
    return report
