"""Where a store lives: a local folder or ``s3://bucket/prefix``."""

from __future__ import annotations

import re

from cinefuse.errors import StoreError

# scheme://user:password@host... : everything between "//" and "@" is a secret
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/\s\"']*@")


def redact_url(text: str) -> str:
    """``text`` with the user and password of every URL in it replaced by ``***``
    (``http://user:pw@host:9000/b`` -> ``http://***@host:9000/b``): what any message that may
    quote an endpoint URL prints."""
    return _USERINFO.sub(r"\g<scheme>***@", str(text))


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
