"""No write ever goes through a link planted in a store: temp files are created exclusively without
following links (a taken name is passed over), lock files at a link are refused, and renames
replace a link, never what it points at. Every planted link points at a file outside the store
(one that exists, one that does not) and the test checks neither changed."""

from __future__ import annotations

import os
import secrets
import socket

import numpy as np
import pytest

import cinefuse.atomic
from cinefuse.atomic import atomic_write
from cinefuse.errors import CinefuseError
from cinefuse.store import FeatureBlock, StoreWriter, open_store
from cinefuse.store.combine import compact_store, merge_stores
from cinefuse.store.verify import verify_store

PLANTED = "deadbeefdeadbeef"


def block(rows, value=0.0):
    return FeatureBlock(np.full((rows, 3), value, np.float32), np.ones(rows, bool), ["ok"] * rows)


@pytest.fixture
def outside(tmp_path):
    """An existing file with content and a name with no file, both outside any store."""
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "precious").write_bytes(b"precious bytes")
    return folder


def untouched(outside):
    return sorted(p.name for p in outside.iterdir()) == ["precious"] and (outside / "precious").read_bytes() == b"precious bytes"


@pytest.fixture
def planted_first(monkeypatch):
    """Every exclusive create tries the name PLANTED first, then a random one."""
    calls = {"n": 0}
    real = secrets.token_hex

    def token_hex(n=None):
        calls["n"] += 1
        return PLANTED if calls["n"] % 2 == 1 else real(n)

    monkeypatch.setattr(cinefuse.atomic.secrets, "token_hex", token_hex)
    return calls


def plant(root, outside):
    """Links at the next temp shard name and the next manifest temp name."""
    host, pid = socket.gethostname(), os.getpid()
    (root / f".tmp-{host}-{pid}-{PLANTED}.h5").symlink_to(outside / "precious")
    (root / f".manifest.json.tmp-{PLANTED}").symlink_to(outside / "absent")


def test_links_at_temp_names_are_passed_over(tmp_path, outside, planted_first):
    root = tmp_path / "store"
    writer = StoreWriter(root, {"links": 1})
    plant(root, outside)
    for k in range(3):
        writer.write_shard([f"{k}-{i}" for i in range(4)], {"text/t": block(4, k)})
        assert untouched(outside)
    assert compact_store(str(root), target_mb=1)["shards_after"] == 1  # a rewrite and a manifest, links in place
    assert untouched(outside)
    merge_stores([str(root)], str(tmp_path / "merged"))
    assert untouched(outside) and planted_first["n"] >= 10
    assert verify_store(root).ok and verify_store(tmp_path / "merged").ok
    assert open_store(root).load_feature_set("text/t").data.tolist() == [[float(k)] * 3 for k in range(3) for _ in range(4)]


def test_atomic_write_passes_over_a_planted_temp_name(tmp_path, outside, planted_first):
    (tmp_path / f".config.json.tmp-{PLANTED}").symlink_to(outside / "precious")
    atomic_write(tmp_path / "config.json", b"{}")
    atomic_write(tmp_path / "summary.json", lambda handle: handle.write(b"[]"))
    assert (tmp_path / "config.json").read_bytes() == b"{}" and (tmp_path / "summary.json").read_bytes() == b"[]"
    assert untouched(outside)


def test_atomic_write_replaces_a_link_at_the_target_not_its_file(tmp_path, outside):
    (tmp_path / "config.json").symlink_to(outside / "precious")
    atomic_write(tmp_path / "config.json", b"{}")
    assert not (tmp_path / "config.json").is_symlink() and (tmp_path / "config.json").read_bytes() == b"{}"
    assert untouched(outside)


@pytest.mark.parametrize("name", [".manifest.lock", ".cinefuse.lock"])
def test_a_link_at_a_lock_name_is_refused(tmp_path, outside, name):
    root = tmp_path / "store"
    StoreWriter(root, {"links": 1}).write_shard(["a"], {"text/t": block(1)})
    (root / name).unlink(missing_ok=True)
    (root / name).symlink_to(outside / "absent")
    with pytest.raises(CinefuseError, match=f"^{root / name} is a symbolic link"):
        compact_store(str(root), target_mb=1)
    if name == ".manifest.lock":
        with pytest.raises(CinefuseError, match=f"^{root / name} is a symbolic link"):
            StoreWriter(root, {"links": 1})
    assert untouched(outside)
