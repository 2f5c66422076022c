"""Build a store out of stores: ``store merge`` copies the shards of several stores into one,
``store compact`` rewrites many small shards into few.

Both stage every new shard file in the destination folder, check it (a copied shard against its
recorded sha256, a rewritten shard by reading it back and comparing every row), and then commit
all of them with one manifest write (:func:`cinefuse.store.writer.commit_shards`): killed at any
point, the destination is as it was, and leftovers are removed by the next writer. Both hold the
destination exclusively (:func:`cinefuse.store.manifest.store_lock`): a second merge, compaction,
pull or writer on it stops at once naming the first. A destination holding only what a killed
merge or compaction left (temp files, shards no manifest names, its stale lock) counts as empty:
the rerun removes those files and starts again.

Both carry the sources' fitted transforms (``transforms/``, :mod:`cinefuse.store.transforms`) into
the destination before its manifest, so a merged or compacted store can be grown by extract.

Repeated ids follow the store's one rule: for a feature set, the later shard in manifest order
wins. A merge lists the shards of SRC1, then SRC2, ...: an id in several sources is read from the
last source named. A compaction keeps the manifest order, so it never changes what a reader sees.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable

import numpy as np

from cinefuse.atomic import disk_full, is_disk_full, require_free
from cinefuse.errors import StoreError
from cinefuse.store.integrity import changed_message
from cinefuse.store.location import is_s3_uri, join_key, split_s3_uri
from cinefuse.store.manifest import (
    MANIFEST_NAME,
    Manifest,
    ShardRecord,
    manifest_lock,
    read_manifest,
)
from cinefuse.store.reader import FeatureArray, Store, open_shard_file, open_store
from cinefuse.store.shard import FeatureBlock, write_shard_file
from cinefuse.store.transforms import copy_local, download, remove_copies
from cinefuse.store.writer import (
    StagedShard,
    commit_shards,
    discard,
    keep_committed,
    prepare_root,
    remove_leftovers,
    require_no_store,
    store_lock,
    unmake_root,
)

DEFAULT_COMPACT_MB = 512


@dataclass
class Source:
    """A store to copy shards from: its manifest, a way to fetch a shard's bytes to a file, and
    one to copy its fitted transforms into a local store folder."""

    location: str
    manifest: Manifest
    fetch: Callable[[ShardRecord, BinaryIO], None]  # writes the shard's bytes into an open file
    copy_transforms: Callable[[Path], list[Path]]   # into the store folder given; the files written


def open_source(location: str, endpoint_url: str | None = None) -> Source:
    if is_s3_uri(location):
        from cinefuse.store.s3 import download_to, get_object_bytes, s3_client

        bucket, prefix = split_s3_uri(location)
        client = s3_client(endpoint_url)
        manifest = Manifest.from_bytes(
            get_object_bytes(client, bucket, join_key(prefix, MANIFEST_NAME), location), f"{location}/{MANIFEST_NAME}")

        def fetch(record: ShardRecord, target: BinaryIO) -> None:
            download_to(client, bucket, join_key(prefix, record.name), target)

        return Source(location, manifest, fetch, lambda dest: download(client, bucket, prefix, dest))
    root = Path(location)
    if not (root / MANIFEST_NAME).is_file():
        raise StoreError(f"{root} is not a cinefuse store: it has no {MANIFEST_NAME}")
    manifest = read_manifest(root)

    def copy(record: ShardRecord, target: BinaryIO) -> None:
        try:
            with open(root / record.name, "rb") as source:
                shutil.copyfileobj(source, target, 16 << 20)
        except FileNotFoundError:
            raise StoreError(f"shard {record.name} of store {root} is missing; run `cinefuse store verify {root}`") from None

    return Source(location, manifest, copy, lambda dest: copy_local(root, dest))


def check_configs(sources: list[Source]) -> None:
    """Refuse stores whose configs conflict for the same feature set: rows of one set must come
    from one extraction config, or their values do not mean the same thing."""
    seen: dict[str, tuple[str, str]] = {}  # feature set -> (config hash, first source holding it)
    for source in sources:
        for record in source.manifest.shards:
            for name in record.feature_sets:
                first = seen.setdefault(name, (record.config_hash, source.location))
                if first[0] != record.config_hash:
                    raise StoreError(
                        f"feature set {name} was extracted with config {first[0]} in {first[1]} and with config "
                        f"{record.config_hash} in {source.location}; merge only stores extracted with the same "
                        f"config for a feature set (`cinefuse store info --json` lists each store's configs), "
                        "or re-extract one of them"
                    )


def stage_copy(source: Source, record: ShardRecord, dest: Path) -> StagedShard:
    """Copy one shard into ``dest`` under a temporary name; its bytes must hash to the recorded
    sha256, which the merged manifest then keeps."""
    what = f"copying shard {record.name} of {source.location}"
    require_free(dest, record.bytes, what)
    staged = StagedShard.create(dest, record.rows, record.config_hash, record.feature_sets)
    try:
        with os.fdopen(os.dup(staged.fd), "wb") as handle:  # the staged descriptor stays open to seal
            source.fetch(record, handle)
        staged.seal()
    except BaseException as exc:
        discard([staged])
        if is_disk_full(exc) or is_disk_full(exc.__cause__):
            raise disk_full(dest, record.bytes, what) from None
        raise
    if staged.bytes != record.bytes or staged.sha256 != record.sha256:
        discard([staged])
        raise StoreError(changed_message(record.name, source.location, staged.sha256, record.sha256))
    return staged


def empty_destination(dest: str, sources: list[str]) -> Path:
    """The destination's path, once it is known not to be S3, a source, or a used folder (a
    folder holding only a killed run's leftovers is not used: see :func:`require_no_store`)."""
    if is_s3_uri(dest):
        raise StoreError(f"cannot write directly to {dest}: write to a local folder, then `cinefuse store push LOCAL {dest}`")
    path = Path(dest)
    for source in sources:
        if not is_s3_uri(source) and Path(source).resolve() == path.resolve():
            raise StoreError(f"{dest} is both a source and the destination; merge into a new folder")
    if path.exists() and not path.is_dir():
        raise StoreError(f"{dest} already exists and is not empty; merge or compact into a new folder")
    if path.is_dir():
        require_no_store(path, "merge or compact into a new folder")
    return path


def merge_stores(sources: list[str], dest: str, endpoint_url: str | None = None) -> dict:
    """Copy every shard of ``sources`` (local folders or s3:// prefixes, in this order) into the new
    store ``dest``; one manifest lists them all, each shard keeping its sha256."""
    if not sources:
        raise StoreError("merge needs at least one source store")
    root = empty_destination(dest, sources)
    opened = [open_source(location, endpoint_url) for location in sources]
    check_configs(opened)  # before the destination is made: a refused merge leaves no trace
    created = not root.exists()
    prepare_root(root)
    staged: list[StagedShard] = []
    configs: dict[str, dict] = {}
    carried: list[Path] = []
    try:
        with store_lock(root, "cinefuse store merge"):
            with manifest_lock(root):
                require_no_store(root, "merge or compact into a new folder")
                remove_leftovers(root)
            for source in opened:
                for record in source.manifest.shards:
                    staged.append(stage_copy(source, record, root))
                configs.update({h: c for h, c in source.manifest.configs.items()
                                if any(r.config_hash == h for r in source.manifest.shards)})
            for source in opened:  # before the manifest that names them
                carried += source.copy_transforms(root)
            commit_shards(root, staged, configs)
    except BaseException:
        discard(staged)
        remove_copies(carried)
        if created:
            unmake_root(root)
        raise
    store = open_store(root)
    repeated = {name: int(info.rows - len(store.ids(name))) for name, info in store.feature_sets().items()}
    return {"shards": len(staged), "rows": store.manifest.total_rows, "sources": len(opened),
            "repeated_rows": {k: v for k, v in repeated.items() if v}}


# -- compaction -------------------------------------------------------------------------------------
def plan_groups(store: Store, target_bytes: int) -> list[list[ShardRecord]]:
    """Consecutive shards of one config, the same feature sets and the same provenance, up to
    ``target_bytes`` a group (one shard at least). Only consecutive shards are joined, so the
    manifest order, and with it which shard wins a repeated id, stays as it was."""
    groups: list[list[ShardRecord]] = []
    key_of_last = None
    size = 0
    for record in store.manifest.shards:
        key = (record.config_hash, json.dumps(record.feature_sets, sort_keys=True), json.dumps(
            store.provenance(record), sort_keys=True, default=str))
        if groups and key == key_of_last and size + record.bytes <= target_bytes:
            groups[-1].append(record)
            size += record.bytes
        else:
            groups.append([record])
            size = record.bytes
        key_of_last = key
    return groups


def rows_of_group(store: Store, group: list[ShardRecord]) -> tuple[list[str], dict[str, FeatureBlock]]:
    names = sorted(group[0].feature_sets)
    arrays: dict[str, FeatureArray] = store.read(names, group)
    ids = arrays[names[0]].ids
    blocks = {}
    for name in names:
        fa = arrays[name]
        if not np.array_equal(fa.ids, ids):
            raise StoreError(f"shards {group[0].name}..{group[-1].name} do not hold the same ids for every feature set")
        blocks[name] = FeatureBlock(fa.data, fa.valid, fa.status, fa.lengths, fa.attrs)
    return ids.tolist(), blocks


def stage_rewrite(root: Path, store: Store, group: list[ShardRecord]) -> StagedShard:
    """Write the rows of ``group`` as one shard under a temporary name in ``root``, read it back
    and compare every dataset with the rows it was written from."""
    ids, blocks = rows_of_group(store, group)
    record = group[0]
    staged = StagedShard.create(root, len(ids), record.config_hash)
    try:
        staged.feature_sets = write_shard_file(staged.target, ids, blocks, record.config_hash)
        staged.seal()
        check = ShardRecord(name="staged", rows=len(ids), sha256=staged.sha256, bytes=staged.bytes,
                            config_hash=record.config_hash, feature_sets=staged.feature_sets)
        back = Store(str(root), Manifest(shards=[check]), lambda r: open_shard_file(staged.temp, staged.sha256))
        again = back.read(sorted(blocks), [check])
        for name, block in blocks.items():
            fa = again[name]
            same = (fa.ids.tolist() == ids and fa.data.tobytes() == block.data.tobytes()
                    and np.array_equal(fa.valid, block.valid) and np.array_equal(fa.status, block.status)
                    and (block.lengths is None or np.array_equal(fa.lengths, block.lengths)))
            if not same:
                raise StoreError(f"compacted shard for {group[0].name}..{group[-1].name} did not read back equal "
                                 f"({name}); nothing was changed")
    except BaseException as exc:
        discard([staged])
        if is_disk_full(exc):
            raise disk_full(root, sum(r.bytes for r in group), f"compacting {group[0].name}..{group[-1].name}") from None
        raise
    return staged


def compact_store(src: str, dest: str | None = None, *, target_mb: float = DEFAULT_COMPACT_MB,
                  endpoint_url: str | None = None) -> dict:
    """Rewrite runs of small shards of ``src`` into shards of up to ``target_mb`` MiB, in place or
    into the new store ``dest``. A shard alone in its group is copied byte for byte. A row whose id
    a later shard of the same group repeats is dropped: no reader could see it."""
    if target_mb <= 0:
        raise StoreError(f"--shard-mb must be positive, got {target_mb}")
    in_place = dest is None
    if in_place and is_s3_uri(src):
        raise StoreError(f"cannot compact {src} in place: compact into a local folder (DEST), then push it")
    if in_place:
        root = Path(src)
        if not (root / MANIFEST_NAME).is_file():
            raise StoreError(f"{root} is not a cinefuse store: it has no {MANIFEST_NAME}")
        created = False
    else:
        root = empty_destination(dest, [src])
        created = not root.exists()
    store = None if in_place else open_store(src, endpoint_url=endpoint_url)
    prepare_root(root)
    try:
        with store_lock(root, "cinefuse store compact"):
            with manifest_lock(root):
                if not in_place:
                    require_no_store(root, "merge or compact into a new folder")
                remove_leftovers(root)
            store = store or open_store(src, endpoint_url=endpoint_url)  # in place: as it is now, held
            return _compact(store, src, root, in_place, target_mb, endpoint_url)
    except BaseException:
        if created:
            unmake_root(root)
        raise


def _compact(store: Store, src: str, root: Path, in_place: bool, target_mb: float, endpoint_url: str | None) -> dict:
    source = open_source(src, endpoint_url)
    groups = plan_groups(store, int(target_mb * (1 << 20)))
    staged: list[StagedShard] = []
    carried: list[Path] = []
    try:
        for group in groups:
            if len(group) > 1:
                staged.append(stage_rewrite(root, store, group))
            elif in_place:  # listed again at its place, so the manifest order stays whole
                staged.append(keep_committed(group[0]))
            else:
                staged.append(stage_copy(source, group[0], root))
        if in_place and all(len(g) == 1 for g in groups):
            return {"shards_before": len(store.manifest.shards), "shards_after": len(store.manifest.shards),
                    "rows_before": store.manifest.total_rows, "rows": store.manifest.total_rows}
        replaced = [r.name for r in store.manifest.shards] if in_place else []
        if not in_place:  # before the manifest that names them
            carried = source.copy_transforms(root)
        commit_shards(root, staged, dict(store.manifest.configs), replace=replaced)
    except BaseException:
        discard(staged)
        remove_copies(carried)
        raise
    after = open_store(root)
    return {"shards_before": len(store.manifest.shards), "shards_after": len(after.manifest.shards),
            "rows_before": store.manifest.total_rows, "rows": after.manifest.total_rows}
