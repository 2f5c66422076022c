"""Commit shards to a local store, atomically.

A shard is written whole to a temporary file inside the store folder (so the final rename stays
on one filesystem), fsynced, then, under the manifest lock, renamed to ``shard-NNNNN.h5`` and
recorded in the manifest. A process killed at any point leaves either nothing (a stale
temporary file that no reader looks at, removed by the next writer) or a fully committed shard.

:func:`commit_shards` is the one commit step: :class:`StoreWriter` commits one shard at a time,
``store merge`` and ``store compact`` (``cinefuse.store.combine``) commit many under one
manifest write.
"""

from __future__ import annotations

import contextlib
import os
import socket
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Collection

import h5py

from cinefuse.errors import StoreError
from cinefuse.store.faults import fault_point
from cinefuse.store.integrity import check_local_shard, remember_verified
from cinefuse.store.location import is_s3_uri
from cinefuse.store.manifest import (
    MANIFEST_NAME,
    SHARD_NAME,
    Manifest,
    ShardRecord,
    config_hash,
    fsync_dir,
    manifest_lock,
    now_iso,
    read_manifest,
    sha256_file,
    shard_name,
    write_manifest,
)
from cinefuse.store.shard import READ_ERRORS, FeatureBlock, read_ids, validate_block, write_shard_file

TEMP_PREFIX = ".tmp-"


def temp_shard_path(root: Path) -> Path:
    # host and pid in the name let a later writer tell a dead writer's leftovers from a live one's
    return Path(root) / f"{TEMP_PREFIX}{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}.h5"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class StagedShard:
    """A complete, fsynced shard file under a temporary name inside the store folder."""

    temp: Path
    rows: int
    config_hash: str
    feature_sets: dict[str, dict]
    sha256: str = ""
    bytes: int = 0
    committed: ShardRecord | None = None  # an already committed shard, listed again at this place

    def seal(self) -> "StagedShard":
        """fsync the file and record its size and sha256 (the digest the manifest keeps)."""
        with open(self.temp, "rb") as handle:
            os.fsync(handle.fileno())
        self.sha256 = sha256_file(self.temp)
        self.bytes = self.temp.stat().st_size
        return self


def keep_committed(record: ShardRecord) -> StagedShard:
    return StagedShard(Path(record.name), record.rows, record.config_hash, record.feature_sets,
                       record.sha256, record.bytes, committed=record)


def prepare_root(root: str | os.PathLike) -> Path:
    if is_s3_uri(str(root)):
        raise StoreError(
            f"cannot write directly to {root}: write to a local folder, then "
            f"`cinefuse store push LOCAL {root}`"
        )
    path = Path(root)
    if path.exists() and not path.is_dir():
        raise StoreError(f"store path {path} exists and is not a folder")
    path.mkdir(parents=True, exist_ok=True)
    return path


def commit_shards(root: Path, staged: list[StagedShard], configs: dict[str, dict],
                  replace: Collection[str] = ()) -> list[ShardRecord]:
    """Under the manifest lock, rename each staged file to the next free shard name and write the
    manifest once: all of ``staged`` becomes part of the store, or (killed before the manifest is
    written) none of it. Shards named in ``replace`` leave the manifest, the new ones taking the
    place of the first of them; their files are deleted once the new manifest is in place. A
    staged entry made by :func:`keep_committed` lists an existing shard again at its place."""
    records: list[ShardRecord] = []
    with manifest_lock(root):
        manifest = read_manifest(root)
        index = next_shard_index(root, manifest)
        for item in staged:
            if item.committed is not None:
                records.append(manifest.shard(item.committed.name))
                continue
            name = shard_name(index)
            index += 1
            os.rename(item.temp, root / name)
            remember_verified(root / name, item.sha256)
            records.append(ShardRecord(
                name=name, rows=item.rows, sha256=item.sha256, bytes=item.bytes,
                config_hash=item.config_hash, feature_sets=item.feature_sets, created=now_iso(),
            ))
        fsync_dir(root)
        fault_point("shard-renamed")
        for digest, config in configs.items():
            manifest.configs.setdefault(digest, config)
        replaced = set(replace)
        kept = [s for s in manifest.shards if s.name not in replaced]
        at = next((k for k, s in enumerate(manifest.shards) if s.name in replaced), len(manifest.shards))
        before = sum(1 for s in manifest.shards[:at] if s.name not in replaced)
        manifest.shards = kept[:before] + records + kept[before:]
        used = {s.config_hash for s in manifest.shards}
        manifest.configs = {h: c for h, c in manifest.configs.items() if h in used}
        write_manifest(root, manifest)
        for name in replaced - {r.name for r in records}:
            with contextlib.suppress(FileNotFoundError):
                (root / name).unlink()
    return records


def next_shard_index(root: Path, manifest: Manifest) -> int:
    used = [-1]
    for record in manifest.shards:
        if match := SHARD_NAME.match(record.name):
            used.append(int(match.group(1)))
    for path in root.iterdir():
        if match := SHARD_NAME.match(path.name):
            used.append(int(match.group(1)))
    return max(used) + 1


def discard(staged: list[StagedShard]) -> None:
    for item in staged:
        if item.committed is None:
            with contextlib.suppress(FileNotFoundError):
                item.temp.unlink()


def remove_leftovers(root: Path) -> None:
    """Under the lock: drop temp files of dead writers on this host, and shard files that no
    manifest entry names (a rename whose manifest update never happened). A live writer's temp
    file stays; a manifest temp file is only ever written under the lock, so none is live here."""
    manifest = read_manifest(root)
    known = {s.name for s in manifest.shards} | {MANIFEST_NAME}
    host = socket.gethostname()
    for path in root.iterdir():
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


class StoreWriter:
    """Writes shards for one config into a local store folder (created if needed)."""

    def __init__(self, root: str | os.PathLike, config: dict):
        self.root = prepare_root(root)
        self.config = config
        self.config_hash = config_hash(config)
        with manifest_lock(self.root):
            remove_leftovers(self.root)

    # -- resume -----------------------------------------------------------------------------
    def committed_ids(self) -> set[str]:
        """Ids already committed under this writer's config hash (resume skips them). Each shard
        is checked against the manifest first: a damaged shard stops the resume."""
        out: set[str] = set()
        for record in read_manifest(self.root).shards:
            if record.config_hash != self.config_hash:
                continue
            path = check_local_shard(self.root, record)
            try:
                with h5py.File(path, "r") as h5:
                    out.update(read_ids(h5).tolist())
            except READ_ERRORS as exc:
                raise StoreError(
                    f"shard {record.name} of store {self.root} cannot be read ({type(exc).__name__}: {exc}); "
                    f"run `cinefuse store verify {self.root}`"
                ) from exc
        return out

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

        staged = StagedShard(temp_shard_path(self.root), len(ids), self.config_hash, {})
        try:
            staged.feature_sets = write_shard_file(staged.temp, ids, features, self.config_hash)
            staged.seal()
            fault_point("shard-temp-written")
            (record,) = commit_shards(self.root, [staged], {self.config_hash: self.config})
        except BaseException:
            discard([staged])
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
            remove_leftovers(self.root)
