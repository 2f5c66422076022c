"""Integrity on read: a shard whose bytes changed after commit (same size) stops every reader (the
reader API, `store info`, a resume, `cinefuse fuse`) with an error naming the shard and pointing at
`store verify`. The flipped byte sits inside a float matrix, so without the check every one of
these would load changed numbers without a word."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import time
from pathlib import Path

import h5py
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from fixtures import make_store  # noqa: E402
from fuse_fixtures import write_synthetic_store  # noqa: E402

from cinefuse.cli import main as cli_main  # noqa: E402
from cinefuse.errors import StoreError  # noqa: E402
from cinefuse.store import StoreWriter, open_store  # noqa: E402
from cinefuse.store.manifest import read_manifest  # noqa: E402
from cinefuse.store.s3 import push  # noqa: E402

CONFIG = {"integrity": True}


def flip_data_byte(path: Path, dataset: str) -> None:
    """Flip one bit inside ``dataset``'s contiguous data block: same size, still valid HDF5."""
    with h5py.File(path, "r") as h5:
        offset = h5[dataset].id.get_offset()
    time.sleep(0.02)  # past the filesystem clock's tick, as any later change is
    raw = bytearray(path.read_bytes())
    raw[offset + 5] ^= 0x40
    path.write_bytes(bytes(raw))


def changed(store, name: str, digest: str, expected: str) -> str:
    return (f"shard {name} of store {store} has changed since it was committed (sha256 {digest[:12]}..., "
            f"the manifest says {expected[:12]}...); run `cinefuse store verify {store}` to check every shard")


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_changed_bytes_stop_reader_info_and_resume(tmp_path, capsys):
    root = make_store(tmp_path / "store", CONFIG, seed=3)
    before = open_store(root).load_feature_set("visual/a")  # verified and remembered in this process
    shard = root / "shard-00001.h5"
    expected = read_manifest(root).shard("shard-00001.h5").sha256
    flip_data_byte(shard, "features/visual/a/data")
    message = changed(root, "shard-00001.h5", digest(shard), expected)

    with pytest.raises(StoreError) as err:
        open_store(root).load_feature_set("visual/a")
    assert str(err.value) == message
    with pytest.raises(StoreError) as err:
        open_store(root).load(["visual/a"])
    assert str(err.value) == message
    assert cli_main(["store", "info", str(root)]) == 2
    assert capsys.readouterr().err.strip() == f"cinefuse store: error: {message}"
    with pytest.raises(StoreError) as err:
        StoreWriter(root, CONFIG).committed_ids()
    assert str(err.value) == message

    # the same bytes put back read as before (the check is on content, not on a flag)
    raw = bytearray(shard.read_bytes())
    with h5py.File(shard, "r") as h5:  # h5py ignores the checksum, so it can locate the byte
        offset = h5["features/visual/a/data"].id.get_offset()
    raw[offset + 5] ^= 0x40
    shard.write_bytes(bytes(raw))
    after = open_store(root).load_feature_set("visual/a")
    assert after.data.tobytes() == before.data.tobytes()


def test_fuse_stops_with_exit_2_on_a_changed_shard(tmp_path):
    env = write_synthetic_store(tmp_path, n_items=60, n_users=40)
    store = Path(env["store"])
    shard = store / "shard-00001.h5"
    expected = read_manifest(store).shard("shard-00001.h5").sha256
    flip_data_byte(shard, "features/visual/effnet/data")
    message = changed(store, "shard-00001.h5", digest(shard), expected)
    result = subprocess.run(
        [sys.executable, "-m", "cinefuse", "fuse", "--store", str(store), "--ratings", env["ratings"],
         "--movies", env["movies"], "--workdir", str(tmp_path / "w"), "--steps", "50"],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.strip().splitlines()[-1] == f"cinefuse fuse: error: {message}"
    assert "Traceback" not in result.stderr


@pytest.mark.s3
def test_changed_object_on_s3_stops_the_reader(tmp_path, s3_server):
    local = make_store(tmp_path / "store", CONFIG, seed=3)
    uri = f"s3://{s3_server.bucket}/integrity"
    push(local, uri, s3_server.endpoint_url)
    shard = local / "shard-00002.h5"
    expected = read_manifest(local).shard("shard-00002.h5").sha256
    flip_data_byte(shard, "features/visual/a/data")
    s3_server.client().put_object(Bucket=s3_server.bucket, Key="integrity/shard-00002.h5", Body=shard.read_bytes())
    with pytest.raises(StoreError) as err:
        open_store(uri, endpoint_url=s3_server.endpoint_url).load_feature_set("visual/a")
    assert str(err.value) == changed(uri, "shard-00002.h5", digest(shard), expected)
