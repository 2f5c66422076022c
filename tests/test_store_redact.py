"""An endpoint URL with ``user:password@`` is never printed whole: every message that quotes it
shows ``***`` in their place."""

from __future__ import annotations

import numpy as np
import pytest

from cinefuse.cli import main as cli_main
from cinefuse.errors import StoreError
from cinefuse.store import FeatureBlock, StoreWriter, open_store
from cinefuse.store.location import redact_url
from cinefuse.store.s3 import pull, push
from cinefuse.store.verify import verify_store

SECRET = "s3cr3t-p@ss"
ENDPOINT = f"http://alice:{SECRET}@127.0.0.1:1"  # nothing listens on port 1: every call fails and says why


def test_redact_url_hides_user_and_password_only():
    assert redact_url(f'Could not connect to the endpoint URL: "{ENDPOINT}/bucket/key"') == (
        'Could not connect to the endpoint URL: "http://***@127.0.0.1:1/bucket/key"')
    assert redact_url("https://token@minio.local:9000/b and s3://bucket/prefix, http://h:1/a@b") == (
        "https://***@minio.local:9000/b and s3://bucket/prefix, http://h:1/a@b")


@pytest.fixture
def credentials(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")


def test_no_message_prints_the_password(tmp_path, credentials, capsys):
    local = tmp_path / "store"
    StoreWriter(local, {"redact": 1}).write_shard(["a"], {"text/t": FeatureBlock(np.ones((1, 2), np.float32),
                                                                                 np.ones(1, bool), ["ok"])})
    uri = "s3://bucket/prefix"
    messages = [verify_store(uri, endpoint_url=ENDPOINT).manifest_error]
    for action in (lambda: open_store(uri, endpoint_url=ENDPOINT), lambda: push(local, uri, ENDPOINT, attempts=1),
                   lambda: pull(uri, tmp_path / "pulled", ENDPOINT)):
        with pytest.raises(StoreError) as err:
            action()
        messages.append(str(err.value))
    for argv in (["store", "info", uri], ["store", "verify", uri], ["store", "pull", uri, str(tmp_path / "p2")], ["store", "push", str(local), uri]):
        assert cli_main([*argv, "--endpoint-url", ENDPOINT]) in (1, 2)
        captured = capsys.readouterr()
        messages.append(captured.out + captured.err)
    with pytest.raises(StoreError) as err:
        open_store(uri, endpoint_url=f"alice:{SECRET}@127.0.0.1:1")  # no scheme: botocore's "Invalid endpoint"
    messages.append(str(err.value))
    for message in messages:
        assert SECRET not in message and "alice" not in message, message
        assert "***@127.0.0.1:1" in message, message
