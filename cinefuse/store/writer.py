"""Commit shards to a local store, atomically.

A shard is written whole to a temporary file inside the store folder (so the final rename stays
on one filesystem; created exclusively, never through a link: :mod:`cinefuse.atomic`), fsynced,
then, under the manifest lock, renamed to ``shard-NNNNN.h5`` and recorded in the manifest. A
process killed at any point leaves either nothing (a stale temporary file that no reader looks
at, removed by the next writer) or a fully committed shard. A full disk stops the write with one
line naming the folder and the bytes needed, and leaves no temporary or unrecorded file.

The store's lock (:func:`store_lock`, :mod:`cinefuse.locks`): merge, compaction, pull, import
and ``--overwrite`` hold it exclusively. Writers that add shards run side by side and keep no
lock file of their own: a writer is known by its temp shard, which it creates only after
checking, under the lock's guard, that nobody holds the store; an exclusive holder checks, under
the same guard, that no live writer has a temp shard. Either way the one that comes second stops
at once with one line naming the other.

:func:`commit_shards` is the one commit step: :class:`StoreWriter` commits one shard at a time,
``store merge`` and ``store compact`` (``cinefuse.store.combine``) commit many under one
manifest write.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Collection

import h5py

from cinefuse.atomic import (
    create_exclusive,
    disk_full,
    fd_path,
    fsync_dir,
    is_disk_full,
    require_free,
)
from cinefuse.errors import StoreError
from cinefuse.locks import LOCK_NAME as FOLDER_LOCK
from cinefuse.locks import FolderLock, Holder, hold, live_holder, locked_error
from cinefuse.faults import fault_point
from cinefuse.store.integrity import check_local_shard, remember_verified
from cinefuse.store.location import is_s3_uri
from cinefuse.store.manifest import (
    LOCK_NAME,
    MANIFEST_NAME,
    SHARD_NAME,
    Manifest,
    ShardRecord,
    config_hash,
    manifest_lock,
    now_iso,
    read_manifest,
    sha256_file,
    shard_name,
    write_manifest,
)
from cinefuse.store.shard import (
    READ_ERRORS,
    FeatureBlock,
    estimate_shard_bytes,
    read_ids,
    validate_block,
    write_shard_file,
)

TEMP_PREFIX = ".tmp-"
WRITER = "a cinefuse store writer"


def create_temp_shard(root: Path) -> tuple[Path, int]:
    """A new empty temp shard file in ``root``, created exclusively, and its open descriptor;
    refused (naming the holder) while another process holds the store's lock. Host and pid in
    the name let a later writer tell a dead writer's leftovers from a live one's."""
    with manifest_lock(root):
        holder = live_holder(root)
        if holder is not None:
            raise locked_error(root, holder, root / FOLDER_LOCK)
        return create_exclusive(root, f"{TEMP_PREFIX}{socket.gethostname()}-{os.getpid()}-", ".h5")


def _temp_owner(name: str) -> tuple[str, int] | None:
    parts = name[len(TEMP_PREFIX):].rsplit("-", 2)
    return (parts[0], int(parts[1])) if len(parts) == 3 and parts[1].isdigit() else None


def live_writer(root: Path) -> Holder | None:
    """A live writer on this host other than this process, known by its temp shard."""
    host = socket.gethostname()
    for path in sorted(root.glob(f"{TEMP_PREFIX}*")):
        owner = _temp_owner(path.name)
        if owner and owner[0] == host and owner[1] != os.getpid() and _pid_alive(owner[1]):
            with contextlib.suppress(OSError):
                since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(path.stat().st_mtime))
                return Holder(owner[1], host, since, f"a store writer (temp shard {path.name})")
    return None


def store_lock(root: Path, what: str) -> FolderLock:
    """The store's exclusive lock (``.cinefuse.lock``, guarded by ``.manifest.lock``): ``with
    store_lock(root, "cinefuse store merge"):``. Refused while another process holds it or a
    live writer on this host has a temp shard in the store."""
    return hold(root, what, guard_name=LOCK_NAME, others=lambda: live_writer(root))


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
    """A shard file under a temporary name inside the store folder: created by :meth:`create`
    (empty, open as ``fd``), complete and fsynced once :meth:`seal` has run."""

    temp: Path
    rows: int
    config_hash: str
    feature_sets: dict[str, dict]
    sha256: str = ""
    bytes: int = 0
    committed: ShardRecord | None = None  # an already committed shard, listed again at this place
    fd: int | None = None  # the temp file, open for writing, until sealed or discarded

    @classmethod
    def create(cls, root: Path, rows: int, config_hash: str, feature_sets: dict[str, dict] | None = None) -> "StagedShard":
        temp, fd = create_temp_shard(root)
        return cls(temp, rows, config_hash, dict(feature_sets or {}), fd=fd)

    @property
    def target(self) -> str:
        """The name to hand a library that writes by name (h5py): the file this shard created."""
        return fd_path(self.fd, self.temp) if self.fd is not None else str(self.temp)

    def seal(self) -> "StagedShard":
        """fsync the file and record its size and sha256 (the digest the manifest keeps), read
        through the descriptor it was created with."""
        if self.fd is None:
            raise StoreError(f"{self.temp} was not created by this writer")
        os.fsync(self.fd)
        self.sha256 = sha256_file(Path(fd_path(self.fd, self.temp)))
        self.bytes = os.fstat(self.fd).st_size
        self.close()
        return self

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


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


def is_leftover(name: str, listed: set[str]) -> bool:
    """A file a writer makes that is no part of the store: a temp file, a shard the manifest does
    not name, a manifest temp file, a lock."""
    return (name.startswith((TEMP_PREFIX, f".{MANIFEST_NAME}.tmp-", LOCK_NAME, FOLDER_LOCK))
            or (SHARD_NAME.match(name) is not None and name not in listed))


def require_no_store(root: Path, advice: str) -> None:
    """Refuse a folder holding a store with shards, or files that are not a killed writer's
    leftovers (a manifest listing no shard counts as none; nor does ``transforms/`` without
    shards, which a killed merge or pull copies first)."""
    try:
        listed = {s.name for s in read_manifest(root).shards}
    except StoreError:
        listed = {"?"}
    names = sorted(p.name for p in root.iterdir())
    if listed or any(n not in (MANIFEST_NAME, "transforms") and not is_leftover(n, listed) for n in names):
        raise StoreError(f"{root} already exists and is not empty; {advice}")


def unmake_root(root: Path) -> None:
    """Undo :func:`prepare_root` after a failed run that made the folder: when nothing but the
    lock's guard is in it (a run that got further, or another process's lock, keeps it), the
    guard and the folder go."""
    with contextlib.suppress(OSError):
        if [p.name for p in root.iterdir()] == [LOCK_NAME]:
            (root / LOCK_NAME).unlink()
        root.rmdir()


def commit_shards(root: Path, staged: list[StagedShard], configs: dict[str, dict],
                  replace: Collection[str] = ()) -> list[ShardRecord]:
    """Under the manifest lock, rename each staged file to the next free shard name and write the
    manifest once: all of ``staged`` becomes part of the store, or (killed before the manifest is
    written) none of it. Shards named in ``replace`` leave the manifest, the new ones taking the
    place of the first of them; their files are deleted once the new manifest is in place. A
    staged entry made by :func:`keep_committed` lists an existing shard again at its place."""
    records: list[ShardRecord] = []
    renamed: list[Path] = []
    with manifest_lock(root):
        manifest = read_manifest(root)
        index = next_shard_index(root, manifest)
        try:
            for item in staged:
                if item.committed is not None:
                    records.append(manifest.shard(item.committed.name))
                    continue
                name = shard_name(index)
                index += 1
                os.rename(item.temp, root / name)
                renamed.append(root / name)
                remember_verified(root / name, item.sha256)
                records.append(ShardRecord(
                    name=name, rows=item.rows, sha256=item.sha256, bytes=item.bytes,
                    config_hash=item.config_hash, feature_sets=item.feature_sets, created=now_iso(),
                ))
            fsync_dir(root)
            fault_point("shard-renamed")
            _write_with(root, manifest, records, configs, replace)
        except BaseException:
            _drop_unlisted(root, renamed)
            raise
        for name in set(replace) - {r.name for r in records}:
            with contextlib.suppress(FileNotFoundError):
                (root / name).unlink()
    return records


def _write_with(root: Path, manifest: Manifest, records: list[ShardRecord], configs: dict[str, dict],
                replace: Collection[str]) -> None:
    """The manifest with ``records`` in place of the shards named in ``replace`` (or appended)."""
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


def _drop_unlisted(root: Path, renamed: list[Path]) -> None:
    """After a failed commit: the files it renamed that the manifest does not name are no part of
    the store (a full disk stopped the manifest write, say), so they go now, not at the next run."""
    try:
        listed = {s.name for s in read_manifest(root).shards}
    except StoreError:
        return
    for path in renamed:
        if path.name not in listed:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


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
            item.close()
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
            owner = _temp_owner(path.name)
            if owner and owner[0] == host and _pid_alive(owner[1]):
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
    """Writes shards for one config into a local store folder (created if needed), side by side
    with other writers; a shard is refused while another process holds the store's lock, and
    :meth:`reset` takes that lock (``what`` names this writer to whoever it stops)."""

    def __init__(self, root: str | os.PathLike, config: dict, what: str = WRITER):
        self.root = prepare_root(root)
        self.config = config
        self.config_hash = config_hash(config)
        self.what = what
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

        needed = estimate_shard_bytes(ids, features)
        require_free(self.root, needed, f"a shard of {len(ids)} rows")
        staged = StagedShard.create(self.root, len(ids), self.config_hash)
        try:
            staged.feature_sets = write_shard_file(staged.target, ids, features, self.config_hash)
            staged.seal()
            fault_point("shard-temp-written")
            (record,) = commit_shards(self.root, [staged], {self.config_hash: self.config})
        except BaseException as exc:
            discard([staged])
            if is_disk_full(exc):
                raise disk_full(self.root, needed, f"a shard of {len(ids)} rows") from None
            raise
        return record

    def reset(self) -> None:
        """Forget every shard (``--overwrite``): the manifest first, then the files."""
        with store_lock(self.root, f"{self.what} (--overwrite)"), manifest_lock(self.root):
            manifest = read_manifest(self.root)
            names = [s.name for s in manifest.shards]
            manifest.shards = []
            manifest.configs = {}
            write_manifest(self.root, manifest)
            for name in names:
                with contextlib.suppress(FileNotFoundError):
                    (self.root / name).unlink()
            remove_leftovers(self.root)
