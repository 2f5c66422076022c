"""Damaged shards: verify names each with its reason, the reader raises a clear StoreError and
never crashes or hangs."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cinefuse.cli import main as cli_main
from cinefuse.errors import StoreError
from cinefuse.store import open_store
from cinefuse.store.manifest import read_manifest
from cinefuse.store.verify import check_shard_bytes, verify_store
from fixtures import make_store


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("pristine") / "store", {"damage": True}, (40,) * 5, dim=256)


def damage(store: Path) -> dict[str, str]:
    """Damage four shards four ways; return the expected start of each verify reason."""
    s1, s2, s3, s4 = (store / f"shard-0000{i}.h5" for i in (1, 2, 3, 4))
    size = s1.stat().st_size
    s1.write_bytes(s1.read_bytes()[: size // 2])  # truncated
    s2.write_bytes(b"")  # zero bytes
    raw = bytearray(s3.read_bytes())
    raw[len(raw) // 2] ^= 0x10  # one bit flipped inside the data
    s3.write_bytes(bytes(raw))
    s4.write_bytes(b"<html><body>404 Not Found</body></html>".ljust(s4.stat().st_size, b" "))  # not HDF5
    return {
        "shard-00000.h5": "ok",
        "shard-00001.h5": f"truncated: {size // 2} bytes, manifest says {size}",
        "shard-00002.h5": "zero-byte file",
        "shard-00003.h5": "checksum mismatch: sha256 ",
        "shard-00004.h5": "not an HDF5 file (no HDF5 signature)",
    }


def test_verify_names_each_damaged_shard_and_why(tmp_path, pristine, capsys):
    store = tmp_path / "store"
    shutil.copytree(pristine, store)
    assert verify_store(store).ok
    expected = damage(store)
    report = verify_store(store)
    assert not report.ok
    got = {s.name: s.reason for s in report.shards}
    for name, reason in expected.items():
        assert got[name].startswith(reason), (name, got[name])
    assert [s.name for s in report.damaged] == ["shard-00001.h5", "shard-00002.h5", "shard-00003.h5", "shard-00004.h5"]

    assert cli_main(["store", "verify", str(store), "--json"]) == 1
    printed = json.loads(capsys.readouterr().out)
    assert printed["ok"] is False and printed["damaged"] == [s.name for s in report.damaged]
    (store / "shard-00001.h5").unlink()
    assert verify_store(store).shards[1].reason == "missing: in the manifest but not in the store"


def test_reader_raises_a_clear_error_for_each_kind(tmp_path, pristine):
    for victim, mutate, message in [
        ("shard-00001.h5", lambda b: b[: len(b) // 3], "is {n} bytes but the manifest says"),
        ("shard-00002.h5", lambda b: b"", "is 0 bytes but the manifest says"),
        ("shard-00004.h5", lambda b: b"\x00" * len(b), "has changed since it was committed (sha256 "),
    ]:
        store = tmp_path / victim
        shutil.copytree(pristine, store)
        path = store / victim
        path.write_bytes(mutate(path.read_bytes()))
        with pytest.raises(StoreError) as err:
            open_store(store).load_feature_set("visual/a")
        text = str(err.value)
        assert text.startswith(f"shard {victim} of store {store} ")
        assert message.format(n=path.stat().st_size) in text
        assert f"cinefuse store verify {store}" in text


def test_damaged_manifest_is_reported(tmp_path, pristine):
    store = tmp_path / "store"
    shutil.copytree(pristine, store)
    (store / "manifest.json").write_text("{not json")
    report = verify_store(store)
    assert not report.ok and "is not valid JSON" in report.manifest_error
    with pytest.raises(StoreError, match="manifest.json is not valid JSON"):
        open_store(store)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payload=st.binary(min_size=0, max_size=4096), keep_signature=st.booleans())
def test_random_bytes_never_crash_the_reader(tmp_path_factory, pristine, payload, keep_signature):
    """Any bytes in place of a shard: a StoreError naming the shard, never a crash."""
    store = tmp_path_factory.mktemp("fuzz") / "store"
    shutil.copytree(pristine, store)
    path = store / "shard-00002.h5"
    original = path.read_bytes()
    data = (original[:8] + payload) if keep_signature else payload
    data = data[: len(original)].ljust(len(original), b"\x00")  # same size, so h5py must parse it
    path.write_bytes(data)
    record = read_manifest(store).shard("shard-00002.h5")
    assert check_shard_bytes(record, data) != "ok"
    try:
        loaded = open_store(store).load_feature_set("visual/a")
    except StoreError as exc:
        assert str(exc).startswith(f"shard shard-00002.h5 of store {store} "), str(exc)
        assert f"run `cinefuse store verify {store}`" in str(exc)
    else:  # a load that succeeds must hand back exactly what was committed
        assert data == original
        assert loaded.data.tobytes() == pristine_data(pristine)


def pristine_data(pristine) -> bytes:
    return open_store(pristine).load_feature_set("visual/a").data.tobytes()


CHILD = """
import hashlib, sys
from cinefuse.errors import StoreError
from cinefuse.store import open_store
try:
    fa = open_store(sys.argv[1]).load_feature_set("visual/a")
    print("loaded", len(fa.ids), hashlib.sha256(fa.data.tobytes()).hexdigest())
except StoreError as exc:
    print("StoreError", exc)
"""


def test_bit_flips_everywhere_never_segfault_or_hang(tmp_path, pristine):
    """Flip bits at many offsets (headers, B-trees, data) and read in a child process with a
    timeout: it must exit normally, never die by a signal, and either refuse the shard by name or
    hand back exactly the committed data."""
    store = tmp_path / "store"
    shutil.copytree(pristine, store)
    path = store / "shard-00000.h5"
    original = path.read_bytes()
    pristine_digest = hashlib.sha256(pristine_data(pristine)).hexdigest()
    rng = np.random.default_rng(7)
    offsets = sorted(set(rng.integers(0, 4096, 12).tolist() + rng.integers(0, len(original), 8).tolist()))
    for offset in offsets:
        raw = bytearray(original)
        raw[offset] ^= 1 << int(rng.integers(0, 8))
        path.write_bytes(bytes(raw))
        result = subprocess.run([sys.executable, "-c", CHILD, str(store)], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, (offset, result.returncode, result.stderr[-500:])
        assert result.stdout.strip() == f"loaded 200 {pristine_digest}" or result.stdout.startswith(
            f"StoreError shard shard-00000.h5 of store {store} "), (offset, result.stdout)
        assert not verify_store(store).ok
