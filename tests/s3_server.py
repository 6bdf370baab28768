"""An S3 API server for tests: moto's server mode, in a thread, on 127.0.0.1 on a free port.

Its state lives in this process (moto's backends), so the server can be stopped and started
again on the same port with every bucket and object still there: that is how tests play an
S3 outage.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import boto3
from moto.server import ThreadedMotoServer

from flywheel.local import free_ports

HOST = "127.0.0.1"
#: Credentials moto accepts; real-looking enough for botocore to sign with.
ACCESS_KEY_ID = "AKIAFLYWHEELTESTKEY1"
SECRET_ACCESS_KEY = "flywheel-test-secret-0123456789abcdefghij"
REGION = "us-east-1"


class S3Server:
    """One moto S3 server that can be stopped and started again (same port, same state)."""

    def __init__(self) -> None:
        self.port = free_ports(1, HOST)[0]
        self.endpoint_url = f"http://{HOST}:{self.port}"
        self._server = ThreadedMotoServer(ip_address=HOST, port=self.port, verbose=False)
        self.running = False
        self._client: object | None = None

    def start(self) -> None:
        self._server.start()
        self.running = True

    def stop(self) -> None:
        if self.running:
            self._server.stop()
            self.running = False

    def env(self, max_attempts: int) -> dict[str, str]:
        """The standard AWS variables that point a client at this server."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_MAX_ATTEMPTS": str(max_attempts),
        }

    def client(self) -> object:
        """A plain boto3 S3 client on this server (for setting up and inspecting buckets)."""
        if self._client is None:
            self._client = boto3.client(
                "s3",
                endpoint_url=self.endpoint_url,
                aws_access_key_id=ACCESS_KEY_ID,
                aws_secret_access_key=SECRET_ACCESS_KEY,
                region_name=REGION,
            )
        return self._client

    def new_bucket(self) -> str:
        name = f"fw-{uuid.uuid4().hex[:16]}"
        self.client().create_bucket(Bucket=name)  # type: ignore[attr-defined]
        return name

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        """Every key in ``bucket`` under ``prefix``, sorted."""
        paginator = self.client().get_paginator("list_objects_v2")  # type: ignore[attr-defined]
        return sorted(
            item["Key"]
            for page in paginator.paginate(Bucket=bucket, Prefix=prefix)
            for item in page.get("Contents", [])
        )

    def delete_bucket(self, bucket: str) -> None:
        client = self.client()
        for key in self.keys(bucket):
            client.delete_object(Bucket=bucket, Key=key)  # type: ignore[attr-defined]
        client.delete_bucket(Bucket=bucket)  # type: ignore[attr-defined]


@contextmanager
def running_s3_server() -> Iterator[S3Server]:
    """A started server, always stopped after."""
    server = S3Server()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables for a block, then restore them."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
