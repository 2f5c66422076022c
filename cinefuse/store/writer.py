"""Commit shards to a local store, atomically.

A shard is written whole to a temporary file inside the store folder (so the final rename stays
on one filesystem), fsynced, then, under the manifest lock, renamed to ``shard-NNNNN.h5`` and
recorded in the manifest. A process killed at any point leaves either nothing (a stale
temporary file that no reader looks at, removed by the next writer) or a fully committed shard.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import socket
import uuid
from pathlib import Path

from cinefuse.errors import StoreError
from cinefuse.store.location import is_s3_uri
from cinefuse.store.manifest import (
    MANIFEST_NAME,
    ShardRecord,
    config_hash,
    fsync_dir,
    manifest_lock,
    now_iso,
    read_manifest,
    write_manifest,
)
from cinefuse.store.shard import FeatureBlock, validate_block, write_shard_file

SHARD_NAME = re.compile(r"^shard-(\d{5,})\.h5$")
TEMP_PREFIX = ".tmp-"


def shard_name(index: int) -> str:
    return f"shard-{index:05d}.h5"


def sha256_file(path: Path, chunk: int = 8 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _temp_name() -> str:
    # host and pid in the name let a later writer tell a dead writer's leftovers from a live one's
    return f"{TEMP_PREFIX}{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}.h5"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class StoreWriter:
    """Writes shards for one config into a local store folder (created if needed)."""

    def __init__(self, root: str | os.PathLike, config: dict):
        if is_s3_uri(str(root)):
            raise StoreError(
                f"cannot write directly to {root}: write to a local folder, then "
                f"`cinefuse store push LOCAL {root}`"
            )
        self.root = Path(root)
        if self.root.exists() and not self.root.is_dir():
            raise StoreError(f"store path {self.root} exists and is not a folder")
        self.root.mkdir(parents=True, exist_ok=True)
        self.config = config
        self.config_hash = config_hash(config)
        with manifest_lock(self.root):
            self._remove_leftovers()

    # -- resume -----------------------------------------------------------------------------
    def committed_ids(self) -> set[str]:
        """Ids already committed under this writer's config hash (resume skips them)."""
        from cinefuse.store.reader import open_store

        manifest = read_manifest(self.root)
        names = [s.name for s in manifest.shards if s.config_hash == self.config_hash]
        if not names:
            return set()
        store = open_store(self.root)
        return set(store.shard_ids(names))

    # -- writing ----------------------------------------------------------------------------
    def write_shard(self, ids: list[str], features: dict[str, FeatureBlock]) -> ShardRecord:
        ids = [str(i) for i in ids]
        if not ids:
            raise StoreError("a shard needs at least one id")
        if len(set(ids)) != len(ids):
            dup = sorted({i for i in ids if ids.count(i) > 1})[:5]
            raise StoreError(f"ids must be unique within a shard; repeated: {dup}")
        if not features:
            raise StoreError("a shard needs at least one feature set")
        for name, block in features.items():
            validate_block(name, block, len(ids))

        temp = self.root / _temp_name()
        try:
            summary = write_shard_file(temp, ids, features, self.config_hash)
            with open(temp, "rb") as handle:
                os.fsync(handle.fileno())
            digest = sha256_file(temp)
            size = temp.stat().st_size
            with manifest_lock(self.root):
                manifest = read_manifest(self.root)
                name = shard_name(self._next_index(manifest))
                os.rename(temp, self.root / name)
                fsync_dir(self.root)
                record = ShardRecord(
                    name=name,
                    rows=len(ids),
                    sha256=digest,
                    bytes=size,
                    config_hash=self.config_hash,
                    feature_sets=summary,
                    created=now_iso(),
                )
                manifest.configs.setdefault(self.config_hash, self.config)
                manifest.shards.append(record)
                write_manifest(self.root, manifest)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()
            raise
        return record

    def reset(self) -> None:
        """Forget every shard (``--overwrite``): the manifest first, then the files."""
        with manifest_lock(self.root):
            manifest = read_manifest(self.root)
            names = [s.name for s in manifest.shards]
            manifest.shards = []
            manifest.configs = {}
            write_manifest(self.root, manifest)
            for name in names:
                with contextlib.suppress(FileNotFoundError):
                    (self.root / name).unlink()
            self._remove_leftovers()

    # -- internals --------------------------------------------------------------------------
    def _next_index(self, manifest) -> int:
        used = [-1]
        for record in manifest.shards:
            if match := SHARD_NAME.match(record.name):
                used.append(int(match.group(1)))
        for path in self.root.iterdir():
            if match := SHARD_NAME.match(path.name):
                used.append(int(match.group(1)))
        return max(used) + 1

    def _remove_leftovers(self) -> None:
        """Under the lock: drop temp files of dead writers on this host, and shard files that
        no manifest entry names (a rename whose manifest update never happened)."""
        manifest = read_manifest(self.root)
        known = {s.name for s in manifest.shards} | {MANIFEST_NAME}
        host = socket.gethostname()
        for path in self.root.iterdir():
            if path.name.startswith(TEMP_PREFIX):
                parts = path.name[len(TEMP_PREFIX):].rsplit("-", 2)
                if len(parts) == 3 and parts[0] == host and parts[1].isdigit() and _pid_alive(int(parts[1])):
                    continue
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
            elif SHARD_NAME.match(path.name) and path.name not in known:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
            elif path.name.startswith(f".{MANIFEST_NAME}.tmp-"):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()

