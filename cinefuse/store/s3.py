"""Move stores between a local folder and S3 (or any S3-compatible server via ``endpoint_url``).

Push never overwrites a shard object in place. Each local shard whose bytes the remote store
already holds (same sha256, kept as object metadata ``sha256``, and size) is kept under its
remote name; every other one is uploaded (multipart above a threshold, with retries) under a
name no manifest of that prefix has used: above the highest shard number among the objects there
and the ``next-shard`` metadata each push leaves on ``manifest.json``. The new manifest, naming
the remote names, goes last, in one PUT (the swap); only then are the shard objects it does not
name deleted (the previous store's, and any a killed push left). A push killed at any point
leaves the remote store as it was (its manifest and every object it names untouched); the next
push reuses what the killed one uploaded. One push at a time per prefix: S3 has no lock.
A multipart upload that fails is aborted (and stale ones under the prefix by the next push).

Pull writes into an empty folder, or into the same store (sharing at least one shard, by
sha256): there it checks every local shard and adds the remote shards it lacks with one
manifest write. Any other non-empty folder is refused. Each download goes to an exclusive temp
file, is checked against the manifest's sha256, and is renamed into place; the manifest comes
last. A killed pull leaves temp files the next pull (or writer) removes.

Both carry the store's fitted transforms (``transforms/*.npz``, :mod:`cinefuse.store.transforms`):
the ones the other side lacks go before the manifest that names them (push never deletes one).

Messages never print an endpoint URL's user and password (:func:`redact_url`).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import BinaryIO, Callable

from cinefuse.atomic import disk_full, is_disk_full, require_free
from cinefuse.errors import StoreError
from cinefuse.store.integrity import check_local_shard
from cinefuse.store.location import join_key, redact_url, split_s3_uri
from cinefuse.store.manifest import (
    MANIFEST_NAME,
    SHARD_NAME,
    Manifest,
    ShardRecord,
    atomic_write_bytes,
    manifest_lock,
    read_manifest,
    shard_name,
)
from cinefuse.store.transforms import download as download_transforms
from cinefuse.store.transforms import remove_copies
from cinefuse.store.transforms import upload as upload_transforms
from cinefuse.store.writer import (
    StagedShard,
    commit_shards,
    discard,
    prepare_root,
    remove_leftovers,
    require_no_store,
    store_lock,
    unmake_root,
)

DEFAULT_MULTIPART_BYTES = 64 << 20
DEFAULT_ATTEMPTS = 3


def s3_client(endpoint_url: str | None = None, *, connect_timeout: float = 10, read_timeout: float = 60):
    import boto3
    from botocore.config import Config

    endpoint_url = endpoint_url or os.environ.get("CINEFUSE_S3_ENDPOINT_URL") or None
    config = Config(
        retries={"max_attempts": 3, "mode": "standard"},
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
    )
    try:
        return boto3.client("s3", endpoint_url=endpoint_url, config=config)
    except ValueError:  # botocore: "Invalid endpoint: URL"
        shown = redact_url(endpoint_url or "")
        if "@" in shown and "://" not in shown:  # user:password@host, no scheme
            shown = "***@" + shown.rsplit("@", 1)[1]
        raise StoreError(f"cannot use the S3 endpoint {shown}: not a URL like http://127.0.0.1:9000") from None


def _s3_errors():
    from boto3.exceptions import S3UploadFailedError
    from botocore.exceptions import BotoCoreError, ClientError

    return (BotoCoreError, ClientError, S3UploadFailedError, OSError)


def _describe(exc: BaseException) -> str:
    return redact_url(f"{type(exc).__name__}: {exc}")


def get_object_bytes(client, bucket: str, key: str, where: str) -> bytes:
    try:
        return client.get_object(Bucket=bucket, Key=key)["Body"].read()
    except _s3_errors() as exc:
        code = getattr(exc, "response", {}).get("Error", {}).get("Code", "")
        if code in ("NoSuchKey", "404", "NoSuchBucket"):
            raise StoreError(f"s3://{bucket}/{key} does not exist (store {where})") from exc
        raise StoreError(f"cannot read s3://{bucket}/{key}: {_describe(exc)}") from exc


def download_to(client, bucket: str, key: str, target: BinaryIO, *, attempts: int = DEFAULT_ATTEMPTS,
                progress: Callable[[int], None] | None = None) -> None:
    """Download one object into the open file ``target`` (a temp file the caller created, checks
    and renames); each try starts the file again."""

    def attempt() -> None:
        target.seek(0)
        target.truncate()
        client.download_fileobj(bucket, key, target, Callback=progress)
        target.flush()

    _with_retries(f"download of s3://{bucket}/{key}", attempts, attempt)


def _with_retries(what: str, attempts: int, action: Callable[[], None]) -> None:
    errors = _s3_errors()
    for attempt in range(1, attempts + 1):
        try:
            action()
            return
        except errors as exc:
            if is_disk_full(exc):
                raise
            if attempt == attempts:
                raise StoreError(f"{what} failed after {attempts} attempts: {_describe(exc)}") from exc
            time.sleep(min(2.0 ** (attempt - 1), 8.0))


def _transfer_config(multipart_bytes: int):
    from boto3.s3.transfer import TransferConfig

    return TransferConfig(multipart_threshold=multipart_bytes, multipart_chunksize=multipart_bytes, use_threads=False)


def _abort_stale_uploads(client, bucket: str, prefix: str) -> int:
    aborted = 0
    with contextlib.suppress(*_s3_errors()):
        response = client.list_multipart_uploads(Bucket=bucket, Prefix=join_key(prefix, ""))
        for upload in response.get("Uploads", []):
            client.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
            aborted += 1
    return aborted


def _head(client, bucket: str, key: str) -> dict | None:
    try:
        return client.head_object(Bucket=bucket, Key=key)
    except _s3_errors():
        return None


def _shard_objects(client, bucket: str, prefix: str) -> dict[str, int]:
    """Shard-named objects directly under ``prefix``: name -> size."""
    out: dict[str, int] = {}
    try:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=join_key(prefix, "")):
            for item in page.get("Contents", []):
                name = item["Key"][len(join_key(prefix, "")):]
                if SHARD_NAME.match(name):
                    out[name] = int(item["Size"])
    except _s3_errors() as exc:
        raise StoreError(f"cannot list s3://{bucket}/{join_key(prefix, '')}: {_describe(exc)}") from exc
    return out


def _remote_state(client, bucket: str, prefix: str, uri: str) -> tuple[dict[str, str], int, dict[str, int]]:
    """What the remote store holds now: sha256 -> the name of a shard object holding those bytes
    (checked by its metadata and size), the first shard number no manifest of the prefix has
    used, and every shard object (name -> size)."""
    objects = _shard_objects(client, bucket, prefix)
    head = _head(client, bucket, join_key(prefix, MANIFEST_NAME))
    used = [-1] + [int(SHARD_NAME.match(n).group(1)) for n in objects]
    if head is not None:
        with contextlib.suppress(ValueError):
            used.append(int(head.get("Metadata", {}).get("next-shard", "0")) - 1)
        with contextlib.suppress(StoreError):  # a damaged remote manifest is what a push replaces
            manifest = Manifest.from_bytes(get_object_bytes(client, bucket, join_key(prefix, MANIFEST_NAME), uri),
                                           f"{uri}/{MANIFEST_NAME}")
            used += [int(SHARD_NAME.match(r.name).group(1)) for r in manifest.shards]
    holding: dict[str, str] = {}
    for name, size in sorted(objects.items()):
        meta = _head(client, bucket, join_key(prefix, name))
        digest = (meta or {}).get("Metadata", {}).get("sha256")
        if digest and (meta or {}).get("ContentLength", size) == size:
            holding.setdefault(f"{digest}:{size}", name)
    return holding, max(used) + 1, objects


def push(
    local: str | os.PathLike,
    uri: str,
    endpoint_url: str | None = None,
    *,
    multipart_bytes: int = DEFAULT_MULTIPART_BYTES,
    attempts: int = DEFAULT_ATTEMPTS,
    progress: Callable[[int], None] | None = None,
    client=None,
) -> dict:
    """Upload a local store to ``s3://bucket/prefix``, replacing the store there (if any) in one
    manifest swap. Shards the remote holds already (same sha256 and size) are not sent again.
    Returns counts: uploaded, skipped, bytes, shards, removed (old shard objects deleted)."""
    root = Path(local)
    if not (root / MANIFEST_NAME).is_file():
        raise StoreError(f"{root} is not a cinefuse store: it has no {MANIFEST_NAME}")
    manifest = read_manifest(root)
    bucket, prefix = split_s3_uri(uri)
    client = client or s3_client(endpoint_url)
    _abort_stale_uploads(client, bucket, prefix)
    holding, next_index, objects = _remote_state(client, bucket, prefix, uri)
    config = _transfer_config(multipart_bytes)
    uploaded = skipped = sent = 0
    remote: list[ShardRecord] = []
    for record in manifest.shards:
        name = holding.get(f"{record.sha256}:{record.bytes}")
        if name is not None:
            skipped += 1
            remote.append(replace(record, name=name))
            continue
        path = check_local_shard(root, record)  # the bytes sent are the bytes the manifest names
        name, next_index = shard_name(next_index), next_index + 1
        key = join_key(prefix, name)

        def upload(path=path, key=key, record=record):
            client.upload_file(
                str(path), bucket, key, ExtraArgs={"Metadata": {"sha256": record.sha256}},
                Config=config, Callback=progress,
            )

        _with_retries(f"upload of {record.name} to s3://{bucket}/{key}", attempts, upload)
        holding[f"{record.sha256}:{record.bytes}"] = name
        remote.append(replace(record, name=name))
        uploaded += 1
        sent += record.bytes
    upload_transforms(client, bucket, prefix, root)  # before the manifest that names them
    body = (json.dumps(Manifest(manifest.configs, remote, updated=manifest.updated).to_json(), indent=1)
            + "\n").encode("utf-8")
    _with_retries(
        f"upload of {MANIFEST_NAME} to {uri}",
        attempts,
        lambda: client.put_object(Bucket=bucket, Key=join_key(prefix, MANIFEST_NAME), Body=body,
                                  Metadata={"next-shard": str(next_index)}),
    )
    keep = {r.name for r in remote}
    removed = 0
    for name in sorted(set(objects) - keep):  # after the swap: no manifest names them any more
        with contextlib.suppress(*_s3_errors()):
            client.delete_object(Bucket=bucket, Key=join_key(prefix, name))
            removed += 1
    return {"uploaded": uploaded, "skipped": skipped, "bytes": sent, "shards": len(manifest.shards), "removed": removed}


def pull(
    uri: str,
    local: str | os.PathLike,
    endpoint_url: str | None = None,
    *,
    attempts: int = DEFAULT_ATTEMPTS,
    progress: Callable[[int], None] | None = None,
    client=None,
) -> dict:
    """Download ``s3://bucket/prefix`` into a local folder: an empty one (or one holding only a
    killed pull's leftovers), or a copy of the same store, which gets the shards it lacks. Every
    shard is checked against the manifest's sha256 before it is renamed into place; the manifest
    is written last. Returns counts: downloaded, skipped, bytes, shards."""
    bucket, prefix = split_s3_uri(uri)
    client = client or s3_client(endpoint_url)
    manifest_bytes = get_object_bytes(client, bucket, join_key(prefix, MANIFEST_NAME), uri)
    manifest = Manifest.from_bytes(manifest_bytes, uri)
    root = Path(local)
    created = not root.exists()
    prepare_root(root)
    fetch = _fetcher(client, bucket, prefix, uri, attempts, progress)
    try:
        with store_lock(root, "cinefuse store pull"):
            with manifest_lock(root):
                here = read_manifest(root)
            carry = partial(download_transforms, client, bucket, prefix, root)
            if here.shards:
                return _pull_into_copy(root, uri, manifest, here, fetch, carry)
            return _pull_fresh(root, uri, manifest, manifest_bytes, fetch, carry)
    except BaseException:
        if created:
            unmake_root(root)
        raise


def _fetcher(client, bucket: str, prefix: str, uri: str, attempts: int, progress):
    def fetch(record: ShardRecord, root: Path) -> StagedShard:
        """One remote shard in an exclusive temp file in ``root``, its sha256 checked."""
        key = join_key(prefix, record.name)
        what = f"shard {record.name} of {uri}"
        require_free(root, record.bytes, what)
        staged = StagedShard.create(root, record.rows, record.config_hash, record.feature_sets)
        try:
            with os.fdopen(os.dup(staged.fd), "wb") as handle:
                download_to(client, bucket, key, handle, attempts=attempts, progress=progress)
            staged.seal()
            if staged.sha256 != record.sha256 or staged.bytes != record.bytes:
                raise StoreError(
                    f"s3://{bucket}/{key} has sha256 {staged.sha256[:12]}..., the manifest says "
                    f"{record.sha256[:12]}...: the remote shard is damaged"
                )
        except BaseException as exc:
            discard([staged])
            if is_disk_full(exc):
                raise disk_full(root, record.bytes, what) from None
            raise
        return staged

    return fetch


def _pull_fresh(root: Path, uri: str, manifest: Manifest, manifest_bytes: bytes, fetch, carry) -> dict:
    """Into a folder with no store: each shard under its remote name (one already there from a
    killed pull, with the right bytes, is kept), the transforms (``carry``), then the manifest,
    then leftovers go."""
    with manifest_lock(root):
        require_no_store(root, f"pull {uri} into an empty folder, or into a copy of the same store")
    downloaded = skipped = received = 0
    for record in manifest.shards:
        target = root / record.name
        with contextlib.suppress(StoreError):
            check_local_shard(root, record)
            skipped += 1
            continue
        staged = fetch(record, root)
        os.replace(staged.temp, target)
        downloaded += 1
        received += record.bytes
    carry()
    with manifest_lock(root):
        atomic_write_bytes(root / MANIFEST_NAME, manifest_bytes)
        remove_leftovers(root)
    return {"downloaded": downloaded, "skipped": skipped, "bytes": received, "shards": len(manifest.shards)}


def _pull_into_copy(root: Path, uri: str, manifest: Manifest, here: Manifest, fetch, carry) -> dict:
    """Into a local copy of the same store: every local shard checked, the remote shards it lacks
    (by sha256) and transforms (``carry``) added, the shards after the local ones with one
    manifest write."""
    local_digests = {r.sha256 for r in here.shards}
    if not local_digests & {r.sha256 for r in manifest.shards}:
        raise StoreError(
            f"{root} already holds another store ({len(here.shards)} shards, none of them in {uri}); "
            f"pull into an empty folder, or `cinefuse store merge {root} {uri} NEW` to combine them")
    for record in here.shards:
        check_local_shard(root, record)
    missing = [r for r in manifest.shards if r.sha256 not in local_digests]
    staged: list[StagedShard] = []
    carried: list[Path] = []
    try:
        for record in missing:
            staged.append(fetch(record, root))
        carried = carry()
        if staged:
            commit_shards(root, staged, dict(manifest.configs))
    except BaseException:
        discard(staged)
        remove_copies(carried)
        raise
    return {"downloaded": len(missing), "skipped": len(manifest.shards) - len(missing),
            "bytes": sum(r.bytes for r in missing), "shards": len(manifest.shards)}
