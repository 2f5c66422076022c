"""The store's ``transforms/`` folder, carried wherever its shards go.

An extract run that starts a store fits its corpus-dependent transforms (TF-IDF) once and keeps
them as ``transforms/<kind>-<digest>.npz`` (:mod:`cinefuse.extract.transforms`); the store config
names the file, and a later run that grows the store loads it. So ``store merge``, ``compact``
(into a new folder), ``push`` and ``pull`` copy the folder with the shards: each ``.npz`` the
destination lacks, before the manifest that names it is written (a transform's name ends in the
digest of its arrays, so a file of the same name is the same transform and is left as it is).
Every file is written atomically (:func:`cinefuse.atomic.atomic_write`); names that are not a
plain ``*.npz`` file name are ignored.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from cinefuse.atomic import atomic_write
from cinefuse.errors import StoreError
from cinefuse.store.location import join_key, redact_url

FOLDER = "transforms"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*\.npz$")


def local_names(root: Path) -> list[str]:
    """The transform files of the local store at ``root``."""
    folder = Path(root) / FOLDER
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if NAME.match(p.name) and p.is_file())


def _s3(what: str, action):
    """``action()``, an S3 failure told in one line (the client retries on its own)."""
    from boto3.exceptions import S3UploadFailedError
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return action()
    except (BotoCoreError, ClientError, S3UploadFailedError) as exc:
        raise StoreError(f"{what} failed: {redact_url(f'{type(exc).__name__}: {exc}')}") from exc


def remote_names(client, bucket: str, prefix: str) -> list[str]:
    """The transform objects directly under ``prefix/transforms/``."""
    folder = join_key(prefix, FOLDER) + "/"

    def listing():
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=folder)
        return [obj["Key"][len(folder):] for page in pages for obj in page.get("Contents", [])]

    return sorted(k for k in _s3(f"listing s3://{bucket}/{folder}", listing) if NAME.match(k))


def _target(dest: Path, name: str) -> Path | None:
    """Where ``name`` goes in ``dest`` (its folder made), or None when it is there already."""
    folder = Path(dest) / FOLDER
    if folder.is_symlink():
        raise StoreError(f"{folder} is a symbolic link; a store's transforms/ must be a plain folder")
    path = folder / name
    if path.is_file():
        return None
    folder.mkdir(exist_ok=True)
    return path


def copy_local(src: Path, dest: Path) -> list[Path]:
    """Copy the transforms of the local store ``src`` that ``dest`` lacks; the files written."""
    written = []
    for name in local_names(src):
        target = _target(dest, name)
        if target is not None:
            with open(Path(src) / FOLDER / name, "rb") as source:
                atomic_write(target, lambda handle, source=source: shutil.copyfileobj(source, handle, 1 << 20))
            written.append(target)
    return written


def download(client, bucket: str, prefix: str, dest: Path) -> list[Path]:
    """Download the transforms of ``s3://bucket/prefix`` that ``dest`` lacks; the files written."""
    written = []
    for name in remote_names(client, bucket, prefix):
        target = _target(dest, name)
        if target is not None:
            key = join_key(join_key(prefix, FOLDER), name)
            _s3(f"download of s3://{bucket}/{key}",
                lambda key=key, target=target: atomic_write(target, lambda h: client.download_fileobj(bucket, key, h)))
            written.append(target)
    return written


def upload(client, bucket: str, prefix: str, root: Path) -> int:
    """Upload the transforms of the local store ``root`` that ``s3://bucket/prefix`` lacks; how many."""
    there = set(remote_names(client, bucket, prefix))
    sent = 0
    for name in local_names(root):
        if name not in there:
            key = join_key(join_key(prefix, FOLDER), name)
            _s3(f"upload of {name} to s3://{bucket}/{key}",
                lambda name=name, key=key: client.upload_file(str(Path(root) / FOLDER / name), bucket, key))
            sent += 1
    return sent


def remove_copies(paths: list[Path]) -> None:
    """Undo the copies of a run that failed before its manifest was written."""
    for path in paths:
        path.unlink(missing_ok=True)
        try:
            path.parent.rmdir()  # the folder too, once empty
        except OSError:
            pass
