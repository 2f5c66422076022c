"""S3 sync against a real moto server on 127.0.0.1 (real HTTP from boto3)."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from cinefuse.cli import main as cli_main
from cinefuse.errors import StoreError
from cinefuse.store import open_store
from cinefuse.store.s3 import push
from cinefuse.store.verify import verify_store
from fixtures import make_store

pytestmark = pytest.mark.s3


def files_of(root):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.iterdir()) if not p.name.startswith(".")}


def test_push_pull_and_read_directly(tmp_path, s3_server):
    local = make_store(tmp_path / "local", {"s3": True}, (30, 20), dim=64, dtype=np.float16, running_ids=True, text_set=True)
    uri = f"s3://{s3_server.bucket}/stores/demo"
    assert cli_main(["store", "push", str(local), uri, "--endpoint-url", s3_server.endpoint_url]) == 0
    keys = sorted(o["Key"] for o in s3_server.client().list_objects_v2(Bucket=s3_server.bucket)["Contents"])
    assert keys == ["stores/demo/manifest.json", "stores/demo/shard-00000.h5", "stores/demo/shard-00001.h5"]

    # read straight from s3://, equal to the local store
    remote = open_store(uri, endpoint_url=s3_server.endpoint_url)
    here = open_store(local)
    for name in ("visual/a", "text/t"):
        a, b = remote.load_feature_set(name), here.load_feature_set(name)
        assert a.ids.tolist() == b.ids.tolist()
        assert a.data.tobytes() == b.data.tobytes() and a.valid.tolist() == b.valid.tolist()
    assert verify_store(uri, endpoint_url=s3_server.endpoint_url).ok

    # pull: byte for byte
    pulled = tmp_path / "pulled"
    assert cli_main(["store", "pull", uri, str(pulled), "--endpoint-url", s3_server.endpoint_url]) == 0
    assert files_of(pulled) == files_of(local)

    # a second push skips shards already there with the same sha256
    assert push(local, uri, s3_server.endpoint_url) == {"uploaded": 0, "skipped": 2, "bytes": 0, "shards": 2, "removed": 0}


def test_missing_remote_store_is_a_clear_error(s3_server):
    uri = f"s3://{s3_server.bucket}/nothing/here"
    with pytest.raises(StoreError) as err:
        open_store(uri, endpoint_url=s3_server.endpoint_url)
    assert str(err.value) == f"s3://{s3_server.bucket}/nothing/here/manifest.json does not exist (store {uri})"


def test_server_stopped_mid_upload_leaves_no_partial_object(tmp_path, s3_server):
    # one shard of about 12 MB, sent as 5 MB parts
    local = make_store(tmp_path / "big", {"s3": True}, (6000,), dim=1024, seed=1, dtype=np.float16, running_ids=True, text_set=True)
    shard = local / "shard-00000.h5"
    assert shard.stat().st_size > 11 << 20
    uri = f"s3://{s3_server.bucket}/big"
    sent = {"bytes": 0}

    def stop_after_first_part(n):
        sent["bytes"] += n
        if sent["bytes"] > (6 << 20) and sent.get("stopped") is None:
            sent["stopped"] = True
            s3_server.stop()

    message = f"upload of shard-00000.h5 to s3://{s3_server.bucket}/big/shard-00000.h5 failed after 2 attempts"
    with pytest.raises(StoreError, match=message):
        push(local, uri, s3_server.endpoint_url, multipart_bytes=5 << 20, attempts=2, progress=stop_after_first_part)
    assert sent.get("stopped")

    s3_server.start()
    client = s3_server.client()
    listed = client.list_objects_v2(Bucket=s3_server.bucket, Prefix="big/")
    assert listed.get("KeyCount", 0) == 0  # neither the shard nor the manifest is visible

    result = push(local, uri, s3_server.endpoint_url, multipart_bytes=5 << 20)
    assert result["uploaded"] == 1
    assert client.list_multipart_uploads(Bucket=s3_server.bucket).get("Uploads", []) == []
    pulled = tmp_path / "pulled"
    cli_main(["store", "pull", uri, str(pulled), "--endpoint-url", s3_server.endpoint_url])
    assert files_of(pulled) == files_of(local)
