"""An S3-compatible object store on loopback for the tests: moto's server (`moto_server`, from
PyPI) in a process of its own, so Spark executors and spark-submit drivers reach it as they would a
real store. Credentials are test values, set in the environment only, and distinctive enough that a
test can search for them in tables and logs."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

BUCKET = "precis-lake"
# what the store accepts; never in a configuration, only in the environment
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "AKIAPRECISTESTKEY0001", "AWS_SECRET_ACCESS_KEY": "precis-test-secret-7f3a9c1e5b"}
REGION = "us-east-1"


@dataclass(frozen=True)
class Store:
    endpoint: str

    @property
    def storage_options(self) -> dict[str, str]:
        """What a configuration names: where the store is, not how to sign in."""
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ALLOW_HTTP": "true", "AWS_REGION": REGION}

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name=REGION,
                            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"])

    def objects(self) -> Iterator[tuple[str, bytes]]:
        """Every object in the bucket, with its bytes."""
        s3 = self.client()
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
            for obj in page.get("Contents", []):
                yield obj["Key"], s3.get_object(Bucket=BUCKET, Key=obj["Key"])["Body"].read()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def s3_server(log: Path) -> Iterator[Store]:
    """moto's S3 on 127.0.0.1:<free port> with the bucket created; stopped at the end."""
    port = free_port()
    server = Path(sys.executable).parent / "moto_server"
    proc = subprocess.Popen([str(server), "-H", "127.0.0.1", "-p", str(port)], stdout=log.open("w"),
                            stderr=subprocess.STDOUT, env={**os.environ, **CREDENTIALS})
    store = Store(f"http://127.0.0.1:{port}")
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                store.client().create_bucket(Bucket=BUCKET)
                break
            except Exception:
                assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-2000:]
                time.sleep(0.5)
        yield store
    finally:
        proc.terminate()
        proc.wait(timeout=30)
