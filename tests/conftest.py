"""Fixtures shared by every stage's tests.

- ``shared_data``: the real media and MovieLens files in ``../shared/data`` (or
  ``$CINEFUSE_SHARED_DATA``); tests that need them skip with a reason when absent.
- ``s3_server``: a real moto S3 server on 127.0.0.1 (threaded, real HTTP), with a bucket made.

Plain helpers every stage's tests share (a store written through the real writer, a random
store, MovieLens CSV files) live in ``fixtures.py``; stage-specific data in ``fuse_fixtures.py``
and ``media_fixtures.py``.
"""

from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    env = os.environ.get("CINEFUSE_SHARED_DATA")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = shared_data_dir()
    if not path.is_dir():
        pytest.skip(f"shared data not found at {path} (set CINEFUSE_SHARED_DATA)")
    return path


@pytest.fixture(scope="session")
def movielens_small(shared_data: Path) -> Path:
    path = shared_data / "movielens" / "ml-latest-small"
    if not (path / "ratings.csv").is_file():
        pytest.skip(f"MovieLens ml-latest-small not found at {path}")
    return path


@pytest.fixture(scope="session")
def shared_media(shared_data: Path) -> Path:
    path = shared_data / "media"
    if not path.is_dir():
        pytest.skip(f"shared media not found at {path}")
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class S3Server:
    """A running moto server: ``endpoint_url``, a ``client()``, ``bucket`` already created."""

    def __init__(self, server, port: int, bucket: str):
        self._server = server
        self.port = port
        self.endpoint_url = f"http://127.0.0.1:{port}"
        self.bucket = bucket

    def client(self):
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            config=Config(retries={"max_attempts": 2, "mode": "standard"}, connect_timeout=5, read_timeout=30),
        )

    def stop(self) -> None:
        self._server.stop()

    def start(self) -> None:
        self._server.start()


def start_s3_server(bucket: str | None = None, port: int | None = None) -> S3Server:
    from moto.server import ThreadedMotoServer

    # moto keeps its buckets in process-wide state that outlives a server: a fresh bucket name
    # per server keeps tests from seeing each other's objects.
    bucket = bucket or f"cinefuse-test-{uuid.uuid4().hex[:8]}"
    port = port or free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    s3 = S3Server(server, port, bucket)
    s3.client().create_bucket(Bucket=bucket)
    return s3


@pytest.fixture()
def s3_server(monkeypatch):
    # Credentials for boto3's default chain inside the code under test (moto accepts any).
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    s3 = start_s3_server()
    try:
        yield s3
    finally:
        s3.stop()
