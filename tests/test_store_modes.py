"""Every file the store writes follows the umask, so a store shared by a group is readable by it."""

from __future__ import annotations

import contextlib
import os
import stat

import numpy as np
import pytest

from cinefuse.store.s3 import pull, push
import fixtures


@contextlib.contextmanager
def umask(mask: int):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def write_store(root):
    block = fixtures.ok_block(np.zeros((5, 3), np.float32))
    shards = [([f"{k}-{i}" for i in range(5)], {"visual/a": block}) for k in range(2)]
    return fixtures.write_store(root, {"modes": True}, shards)


def modes(root) -> dict[str, int]:
    return {p.name: stat.S_IMODE(p.stat().st_mode) for p in sorted(root.iterdir())}


@pytest.mark.parametrize("mask,expected", [(0o027, 0o640), (0o002, 0o664), (0o077, 0o600)])
def test_every_store_file_follows_the_umask(tmp_path, mask, expected):
    with umask(mask):
        root = write_store(tmp_path / "store")
    assert modes(root) == {
        ".manifest.lock": expected, "manifest.json": expected, "shard-00000.h5": expected, "shard-00001.h5": expected,
    }


@pytest.mark.s3
def test_pulled_store_follows_the_umask(tmp_path, s3_server):
    local = write_store(tmp_path / "local")
    uri = f"s3://{s3_server.bucket}/modes"
    push(local, uri, s3_server.endpoint_url)
    with umask(0o027):
        pull(uri, tmp_path / "pulled", s3_server.endpoint_url)
    assert modes(tmp_path / "pulled") == {".manifest.lock": 0o640, "manifest.json": 0o640, "shard-00000.h5": 0o640, "shard-00001.h5": 0o640}
