"""Move stores between a local folder and S3 (or any S3-compatible server via ``endpoint_url``).

Push uploads the shards first (multipart above a threshold, with retries), then the manifest
last, so a reader of the bucket never sees a manifest naming a shard that is not there. S3 makes
an object visible only when its upload completes; a multipart upload that fails is aborted (and
any stale ones under the prefix are aborted by the next push), so no partial object remains.
Pull downloads each shard to a temporary name, checks its sha256 against the manifest, renames
it, and writes the manifest last.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Callable

from cinefuse.errors import StoreError
from cinefuse.store.location import join_key, split_s3_uri
from cinefuse.store.manifest import MANIFEST_NAME, Manifest, atomic_write_bytes, read_manifest, sha256_file

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
    return boto3.client("s3", endpoint_url=endpoint_url, config=config)


def _s3_errors():
    from botocore.exceptions import BotoCoreError, ClientError
    from boto3.exceptions import S3UploadFailedError

    return (BotoCoreError, ClientError, S3UploadFailedError, OSError)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def get_object_bytes(client, bucket: str, key: str, where: str) -> bytes:
    try:
        return client.get_object(Bucket=bucket, Key=key)["Body"].read()
    except _s3_errors() as exc:
        code = getattr(exc, "response", {}).get("Error", {}).get("Code", "")
        if code in ("NoSuchKey", "404", "NoSuchBucket"):
            raise StoreError(f"s3://{bucket}/{key} does not exist (store {where})") from exc
        raise StoreError(f"cannot read s3://{bucket}/{key}: {_describe(exc)}") from exc


def download_to(client, bucket: str, key: str, target: Path, *, attempts: int = DEFAULT_ATTEMPTS,
                progress: Callable[[int], None] | None = None) -> None:
    """Download one object to ``target`` (a temporary name the caller checks and renames)."""
    _with_retries(f"download of s3://{bucket}/{key}", attempts,
                  lambda: client.download_file(bucket, key, str(target), Callback=progress))


def _with_retries(what: str, attempts: int, action: Callable[[], None]) -> None:
    errors = _s3_errors()
    for attempt in range(1, attempts + 1):
        try:
            action()
            return
        except errors as exc:
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


def _remote_sha256(client, bucket: str, key: str) -> str | None:
    try:
        head = client.head_object(Bucket=bucket, Key=key)
    except _s3_errors():
        return None
    return head.get("Metadata", {}).get("sha256")


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
    """Upload a local store to ``s3://bucket/prefix``. Shards already there with the same
    sha256 are skipped. Returns counts: uploaded, skipped, bytes."""
    root = Path(local)
    if not (root / MANIFEST_NAME).is_file():
        raise StoreError(f"{root} is not a cinefuse store: it has no {MANIFEST_NAME}")
    manifest = read_manifest(root)
    bucket, prefix = split_s3_uri(uri)
    client = client or s3_client(endpoint_url)
    _abort_stale_uploads(client, bucket, prefix)
    config = _transfer_config(multipart_bytes)
    uploaded = skipped = sent = 0
    for record in manifest.shards:
        key = join_key(prefix, record.name)
        if _remote_sha256(client, bucket, key) == record.sha256:
            skipped += 1
            continue
        path = root / record.name
        if not path.is_file():
            raise StoreError(f"shard {record.name} is in the manifest of {root} but missing on disk")

        def upload(path=path, key=key, record=record):
            client.upload_file(
                str(path), bucket, key, ExtraArgs={"Metadata": {"sha256": record.sha256}},
                Config=config, Callback=progress,
            )

        _with_retries(f"upload of {record.name} to s3://{bucket}/{key}", attempts, upload)
        uploaded += 1
        sent += record.bytes
    manifest_bytes = (root / MANIFEST_NAME).read_bytes()
    _with_retries(
        f"upload of {MANIFEST_NAME} to {uri}",
        attempts,
        lambda: client.put_object(Bucket=bucket, Key=join_key(prefix, MANIFEST_NAME), Body=manifest_bytes),
    )
    return {"uploaded": uploaded, "skipped": skipped, "bytes": sent, "shards": len(manifest.shards)}


def pull(
    uri: str,
    local: str | os.PathLike,
    endpoint_url: str | None = None,
    *,
    attempts: int = DEFAULT_ATTEMPTS,
    progress: Callable[[int], None] | None = None,
    client=None,
) -> dict:
    """Download ``s3://bucket/prefix`` into a local folder; every shard is checked against the
    manifest's sha256 before it is renamed into place. The manifest is written last."""
    bucket, prefix = split_s3_uri(uri)
    client = client or s3_client(endpoint_url)
    manifest_bytes = get_object_bytes(client, bucket, join_key(prefix, MANIFEST_NAME), uri)
    manifest = Manifest.from_bytes(manifest_bytes, uri)
    root = Path(local)
    root.mkdir(parents=True, exist_ok=True)
    downloaded = skipped = received = 0
    for record in manifest.shards:
        target = root / record.name
        if target.is_file() and target.stat().st_size == record.bytes and sha256_file(target) == record.sha256:
            skipped += 1
            continue
        temp = root / f".tmp-pull-{os.getpid()}-{record.name}"
        key = join_key(prefix, record.name)

        try:
            download_to(client, bucket, key, temp, attempts=attempts, progress=progress)
            digest = sha256_file(temp)
            if digest != record.sha256:
                raise StoreError(
                    f"s3://{bucket}/{key} has sha256 {digest[:12]}..., the manifest says "
                    f"{record.sha256[:12]}...: the remote shard is damaged"
                )
            os.replace(temp, target)
        finally:
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()
        downloaded += 1
        received += record.bytes
    atomic_write_bytes(root / MANIFEST_NAME, manifest_bytes)
    return {"downloaded": downloaded, "skipped": skipped, "bytes": received, "shards": len(manifest.shards)}
