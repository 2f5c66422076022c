"""Where a store lives: a local folder or ``s3://bucket/prefix``."""

from __future__ import annotations

from cinefuse.errors import StoreError


def is_s3_uri(location: str) -> bool:
    return str(location).startswith("s3://")


def split_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/a/b`` -> (``bucket``, ``a/b``), no trailing slash on the prefix."""
    if not is_s3_uri(uri):
        raise StoreError(f"{uri!r} is not an s3:// URI (expected s3://bucket/prefix)")
    rest = uri[len("s3://"):]
    bucket, _, prefix = rest.partition("/")
    if not bucket:
        raise StoreError(f"{uri!r} names no bucket (expected s3://bucket/prefix)")
    return bucket, prefix.strip("/")


def join_key(prefix: str, name: str) -> str:
    return f"{prefix}/{name}" if prefix else name
