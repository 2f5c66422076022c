"""A manifest from someone else: shard names that are paths are refused before anything is read or
written. Each hostile name points at a real, valid shard outside the store (its sha256 matches the
manifest), so a reader that followed the name would succeed: only the name check stops it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from cinefuse.cli import main as cli_main
from cinefuse.errors import StoreError
from cinefuse.store import open_store
from cinefuse.store.s3 import pull, push
from cinefuse.store.verify import verify_store
from fixtures import ok_block, write_store


def real_store(root: Path) -> Path:
    return write_store(root, {"hostile": True}, [(["a", "b"], {"visual/a": ok_block(np.ones((2, 3), np.float32))})])


def refusal(where: str, name: str) -> str:
    return (f"{where} names shard {name!r}, which is not a store shard name (shard-NNNNN.h5, no folders): the "
            "manifest is damaged or was not written by cinefuse; refusing to read or write any path it names")


def files_under(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def hostile_local(tmp_path: Path, kind: str) -> tuple[Path, str]:
    """A store at tmp_path/in/store whose manifest names a valid shard outside it."""
    store = real_store(tmp_path / "in" / "store")
    outside = tmp_path / "outside.h5"
    shutil.move(store / "shard-00000.h5", outside)
    name = {"relative": "../../outside.h5", "absolute": str(outside)}[kind]
    manifest = json.loads((store / "manifest.json").read_text())
    manifest["shards"][0]["name"] = name
    (store / "manifest.json").write_text(json.dumps(manifest))
    return store, name


@pytest.mark.parametrize("kind", ["relative", "absolute"])
def test_local_hostile_manifest_is_refused_by_open_and_verify(tmp_path, kind, capsys):
    store, name = hostile_local(tmp_path, kind)
    with pytest.raises(StoreError) as err:
        open_store(store)
    assert str(err.value) == refusal(str(store / "manifest.json"), name)
    report = verify_store(store)
    assert report.manifest_error == refusal(f"{store}/manifest.json", name) and report.shards == []
    assert cli_main(["store", "verify", str(store)]) == 1
    assert f"DAMAGED  manifest: {refusal(f'{store}/manifest.json', name)}" in capsys.readouterr().out
    assert cli_main(["store", "info", str(store)]) == 2


@pytest.mark.s3
@pytest.mark.parametrize("name", ["../../x.h5", "/abs/path/shard-00000.h5", "sub/shard-00000.h5", "shard-0.h5"])
def test_s3_hostile_manifest_is_refused_by_pull_open_verify(tmp_path, s3_server, name):
    local = real_store(tmp_path / "local")
    uri = f"s3://{s3_server.bucket}/stores/hostile"
    push(local, uri, s3_server.endpoint_url)
    client = s3_server.client()
    manifest = json.loads((local / "manifest.json").read_text())
    manifest["shards"][0]["name"] = name
    # the named object exists and is the real shard, so only the name check can stop a read
    client.put_object(Bucket=s3_server.bucket, Key=f"stores/hostile/{name}", Body=(local / "shard-00000.h5").read_bytes())
    client.put_object(Bucket=s3_server.bucket, Key="stores/hostile/manifest.json", Body=json.dumps(manifest).encode())

    work = tmp_path / "work"
    target = work / "a" / "b" / "pulled"
    work.mkdir()
    before = files_under(tmp_path)
    with pytest.raises(StoreError) as err:
        pull(uri, target, s3_server.endpoint_url)
    assert str(err.value) == refusal(uri, name)
    assert files_under(tmp_path) == before and not (work / "a").exists()
    assert not Path("/abs/path").exists()

    with pytest.raises(StoreError) as err:
        open_store(uri, endpoint_url=s3_server.endpoint_url)
    assert str(err.value) == refusal(uri, name)
    report = verify_store(uri, endpoint_url=s3_server.endpoint_url)
    assert report.manifest_error == refusal(f"{uri}/manifest.json", name) and report.shards == []
    assert files_under(tmp_path) == before


def test_repeated_shard_name_is_refused(tmp_path):
    store = real_store(tmp_path / "store")
    manifest = json.loads((store / "manifest.json").read_text())
    manifest["shards"].append(dict(manifest["shards"][0]))
    (store / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(StoreError) as err:
        open_store(store)
    assert str(err.value) == f"{store / 'manifest.json'} lists shard shard-00000.h5 more than once: the manifest is damaged"
