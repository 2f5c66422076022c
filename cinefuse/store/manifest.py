"""``manifest.json``: the list of committed shards. A shard that is not in it does not exist.

The manifest is rewritten whole and atomically (temp file created exclusively next to it, fsync,
rename, fsync of the folder: :func:`cinefuse.atomic.atomic_write`), under an exclusive ``flock``
of ``.manifest.lock`` so several writer processes on one machine can commit shards to the same
store. Readers never take the lock: they see the old manifest or the new one, never half.
The store as a whole is held by merge, compact, pull, import and ``--overwrite`` with
:func:`cinefuse.store.writer.store_lock`, whose guard is this same ``.manifest.lock``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from cinefuse.atomic import atomic_write
from cinefuse.errors import StoreError
from cinefuse.locks import guard
from cinefuse.faults import fault_point

FORMAT_NAME = "cinefuse-store"
FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
LOCK_NAME = ".manifest.lock"
# A manifest is input from whoever wrote the store, and its shard names become paths: only the
# store's own pattern (no separators, no "..") is accepted.
SHARD_NAME = re.compile(r"^shard-(\d{5,})\.h5$")


def shard_name(index: int) -> str:
    return f"shard-{index:05d}.h5"


def sha256_file(path: Path, chunk: int = 8 << 20) -> str:
    digest = hashlib.sha256()
    buffer = bytearray(chunk)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as handle:
        while size := handle.readinto(buffer):
            digest.update(view[:size])
    return digest.hexdigest()


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def config_hash(config: dict) -> str:
    """Stable identity of an extraction config: sha256 of its canonical JSON, 16 hex chars."""
    return hashlib.sha256(canonical_json(config).encode("utf-8")).hexdigest()[:16]


@dataclass
class ShardRecord:
    name: str
    rows: int
    sha256: str
    bytes: int
    config_hash: str
    feature_sets: dict[str, dict]  # name -> {"shape": [...], "dtype": "float16"}
    created: str = ""

    @classmethod
    def from_json(cls, raw: dict, where: str = "manifest") -> "ShardRecord":
        try:
            record = cls(
                name=str(raw["name"]),
                rows=int(raw["rows"]),
                sha256=str(raw["sha256"]),
                bytes=int(raw["bytes"]),
                config_hash=str(raw["config_hash"]),
                feature_sets=dict(raw["feature_sets"]),
                created=str(raw.get("created", "")),
            )
            for meta in record.feature_sets.values():
                shape = [int(x) for x in meta["shape"]]
                if min(shape, default=0) < 0 or np.dtype(str(meta["dtype"])).kind != "f":
                    raise ValueError(f"feature set shape {shape} or dtype {meta['dtype']!r} is not a store's")
            if record.rows < 0 or record.bytes < 0:
                raise ValueError("negative rows or bytes")
        except (KeyError, TypeError, ValueError) as exc:
            raise StoreError(f"manifest shard entry is malformed ({exc!r}): {raw!r}") from exc
        if not SHARD_NAME.match(record.name):
            raise StoreError(
                f"{where} names shard {record.name!r}, which is not a store shard name "
                "(shard-NNNNN.h5, no folders): the manifest is damaged or was not written by cinefuse; "
                "refusing to read or write any path it names"
            )
        return record


@dataclass
class Manifest:
    configs: dict[str, dict] = field(default_factory=dict)  # config hash -> config
    shards: list[ShardRecord] = field(default_factory=list)
    format: str = FORMAT_NAME
    format_version: int = FORMAT_VERSION
    updated: str = ""

    def to_json(self) -> dict:
        return {
            "format": self.format,
            "format_version": self.format_version,
            "updated": self.updated,
            "configs": self.configs,
            "shards": [asdict(s) for s in self.shards],
        }

    @classmethod
    def from_json(cls, raw: Any, where: str) -> "Manifest":
        if not isinstance(raw, dict) or raw.get("format") != FORMAT_NAME:
            raise StoreError(f"{where} is not a cinefuse store manifest (no 'format': '{FORMAT_NAME}')")
        version = raw.get("format_version")
        if version != FORMAT_VERSION:
            raise StoreError(
                f"{where} has store format version {version!r}; this cinefuse reads version "
                f"{FORMAT_VERSION}. Upgrade cinefuse or re-extract the store."
            )
        shards = [ShardRecord.from_json(s, where) for s in raw.get("shards", [])]
        names = [s.name for s in shards]
        if len(set(names)) != len(names):
            repeated = sorted({n for n in names if names.count(n) > 1})
            raise StoreError(f"{where} lists shard {repeated[0]} more than once: the manifest is damaged")
        return cls(configs=dict(raw.get("configs", {})), shards=shards, updated=str(raw.get("updated", "")))

    @classmethod
    def from_bytes(cls, data: bytes, where: str) -> "Manifest":
        try:
            raw = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise StoreError(f"{where} is not valid JSON ({exc}); the manifest is damaged") from exc
        return cls.from_json(raw, where)

    @property
    def total_rows(self) -> int:
        return sum(s.rows for s in self.shards)

    def shard(self, name: str) -> ShardRecord:
        for record in self.shards:
            if record.name == name:
                return record
        raise StoreError(f"shard {name} is not in the manifest")


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a reader sees either the old file or the new one (the
    crash point ``<name>-temp-written`` sits between the complete temp file and the rename)."""
    atomic_write(path, data, before_rename=lambda: fault_point(f"{path.name}-temp-written"))


def read_manifest(root: Path) -> Manifest:
    path = root / MANIFEST_NAME
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return Manifest()
    return Manifest.from_bytes(data, str(path))


def write_manifest(root: Path, manifest: Manifest) -> None:
    manifest.updated = now_iso()
    data = (json.dumps(manifest.to_json(), indent=1, sort_keys=False) + "\n").encode("utf-8")
    atomic_write_bytes(root / MANIFEST_NAME, data)


@contextlib.contextmanager
def manifest_lock(root: Path) -> Iterator[None]:
    """Exclusive lock for a read-modify-write of the manifest, across processes on one host (an
    ``flock`` of ``.manifest.lock``, never through a link). Never take :func:`store_lock` inside
    it (nor create a writer's temp shard): the store lock's guard is the same file, and a second
    ``flock`` of it from this process would wait forever."""
    with guard(Path(root) / LOCK_NAME):
        yield

