"""The bucket of an ``s3://BUCKET/PREFIX`` archive: list, upload and download its files, safely.

Everything an archive keeps in the bucket is immutable and named by its content (objects, packs,
manifests, records), so an upload never needs to replace anything: every put is conditional
(``If-None-Match: *``) and a key that is already there (``PreconditionFailed``, another machine
or an earlier run uploaded it) is checked by size and SHA-256 checksum instead. Every put also
sends its SHA-256 checksum (``ChecksumAlgorithm``), so the server refuses bytes that changed on
the way, and every download asks for the checksum back (botocore checks it while reading).

Credentials, region and endpoint come from boto3's standard chain (``AWS_*`` variables,
``~/.aws/config`` and ``credentials``, including ``AWS_ENDPOINT_URL``), or an explicit endpoint
(``--endpoint-url``). botocore retries throttling and connection errors with backoff
(`RETRIES`); `put_many` retries what still failed, in rounds. Faults are injected at one seam,
`faults.check("s3", key)` before each upload (``WORKBENCH_FAULTS=eio:s3:after=N``).
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workbench.archive import faults
from workbench.errors import RemoteArchiveError

S3_SCHEME = "s3://"
THREADS = 16
RETRIES = {"max_attempts": 6, "mode": "standard"}
ROUNDS = 3
"""Rounds of `put_many` over the uploads that still failed after botocore's own retries."""
_CHUNK = 4 * 1024 * 1024


def is_s3_uri(archive: object) -> bool:
    return isinstance(archive, str) and archive.startswith(S3_SCHEME)


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """(bucket, prefix without slashes at either end) of ``s3://BUCKET[/PREFIX]``."""
    rest = uri[len(S3_SCHEME) :] if uri.startswith(S3_SCHEME) else ""
    bucket, _, prefix = rest.partition("/")
    if not bucket:
        from workbench.errors import ConfigError

        raise ConfigError(f"{uri!r} is not s3://BUCKET/PREFIX")
    return bucket, prefix.strip("/")


@dataclass(frozen=True)
class RemoteFile:
    key: str  # relative to the prefix, e.g. "objects/aa/<sha256>"
    size: int


def _sha256(path: Path) -> bytes:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.digest()


def sha256_b64(path: Path) -> str:
    return base64.b64encode(_sha256(path)).decode()


_NAMED = re.compile(r"^(?:objects|manifests|packs)/[0-9a-f]{2}/([0-9a-f]{64})(?:\.pack)?$")


def _content_name(key: str) -> str | None:
    """The SHA-256 a stored file's bytes must have: its name (raw objects, manifests, packs); None
    for zstd files (named by their decoded content) and records."""
    match = _NAMED.match(key)
    return match[1] if match else None


class Bucket:
    """One bucket and prefix, through one thread-safe boto3 client."""

    def __init__(self, uri: str, *, endpoint_url: str | None = None) -> None:
        import boto3
        from botocore.config import Config

        self.uri = uri.rstrip("/")
        self.name, self.prefix = parse_s3_uri(uri)
        config = Config(
            retries=RETRIES,
            max_pool_connections=THREADS * 2,
            connect_timeout=10,
            read_timeout=60,
            request_checksum_calculation="when_supported",
            response_checksum_validation="when_supported",
        )
        with self.errors("connecting"):
            self.client = boto3.session.Session().client("s3", endpoint_url=endpoint_url, config=config)
        self.endpoint = str(self.client.meta.endpoint_url)

    def full_key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def where(self, key: str | None = None) -> str:
        return f"s3://{self.name}/{self.full_key(key)}" if key else self.uri

    # ------------------------------------------------------------ errors

    @contextmanager
    def errors(self, doing: str, key: str | None = None) -> Iterator[None]:
        """Turn boto3's errors into `RemoteArchiveError` naming the bucket, key and what to do."""
        from botocore import exceptions as bx

        try:
            yield
        except RemoteArchiveError:
            raise
        except (bx.NoCredentialsError, bx.PartialCredentialsError) as exc:
            raise RemoteArchiveError(
                f"{doing} {self.where(key)}: no AWS credentials found ({exc}); set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY, or AWS_PROFILE with a profile in ~/.aws/credentials"
            ) from exc
        except (bx.EndpointConnectionError, bx.ConnectTimeoutError, bx.ReadTimeoutError) as exc:
            raise RemoteArchiveError(
                f"{doing} {self.where(key)}: the endpoint {getattr(self, 'endpoint', '?')} cannot be "
                f"reached ({exc}); check --endpoint-url / AWS_ENDPOINT_URL and that the server runs"
            ) from exc
        except bx.ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in ("NoSuchBucket", "404") and key is None:
                raise RemoteArchiveError(
                    f"{doing} {self.where()}: bucket {self.name!r} does not exist at {self.endpoint}; "
                    f"create it (aws s3 mb s3://{self.name}) or fix --archive / --endpoint-url"
                ) from exc
            if code in ("AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
                raise RemoteArchiveError(
                    f"{doing} {self.where(key)}: access refused ({code}); check the credentials "
                    "(AWS_ACCESS_KEY_ID / AWS_PROFILE) and that they may read, write and list this bucket"
                ) from exc
            raise RemoteArchiveError(f"{doing} {self.where(key)}: {code or exc} ({exc})") from exc
        except bx.BotoCoreError as exc:
            raise RemoteArchiveError(f"{doing} {self.where(key)}: {exc}") from exc

    # ------------------------------------------------------------ reading

    def check(self) -> None:
        """Fail early, with a message that says what to do, when the bucket cannot be used."""
        with self.errors("opening"):
            self.client.head_bucket(Bucket=self.name)

    def listing(self, folder: str) -> dict[str, RemoteFile]:
        """Every file under ``PREFIX/folder`` (key relative to the prefix → file)."""
        found: dict[str, RemoteFile] = {}
        start = len(self.prefix) + 1 if self.prefix else 0
        with self.errors("listing", folder):
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.name, Prefix=self.full_key(folder.rstrip("/") + "/")
            )
            for page in pages:
                for item in page.get("Contents", []):
                    key = str(item["Key"])[start:]
                    found[key] = RemoteFile(key, int(item["Size"]))
        return found

    def get_bytes(self, key: str) -> bytes:
        with self.errors("downloading", key):
            body = self.client.get_object(Bucket=self.name, Key=self.full_key(key), ChecksumMode="ENABLED")
            data: bytes = body["Body"].read()
            return data

    def get_file(self, key: str, target: Path, tmp: Path, *, missing_ok: bool = False) -> bool:
        """Download to `tmp`, checked (checksum, length), then rename to `target`.

        False when the key is not there and `missing_ok` (else `RemoteArchiveError`).
        """
        from botocore.exceptions import ClientError

        tmp.mkdir(parents=True, exist_ok=True)
        target.parent.mkdir(parents=True, exist_ok=True)
        temp = tmp / f"{uuid.uuid4().hex}.download"
        try:
            with self.errors("downloading", key), open(temp, "wb") as out:
                try:
                    body = self.client.get_object(
                        Bucket=self.name, Key=self.full_key(key), ChecksumMode="ENABLED"
                    )
                except ClientError as exc:
                    code = str(exc.response.get("Error", {}).get("Code"))
                    if missing_ok and code in ("NoSuchKey", "404", "NotFound"):
                        return False
                    raise
                expected = int(body["ContentLength"])
                for chunk in body["Body"].iter_chunks(_CHUNK):
                    out.write(chunk)
            if temp.stat().st_size != expected:
                raise RemoteArchiveError(
                    f"downloading {self.where(key)}: got {temp.stat().st_size} of {expected} bytes; run again"
                )
            os.replace(temp, target)
            return True
        finally:
            temp.unlink(missing_ok=True)

    def head(self, key: str) -> dict[str, Any] | None:
        """Size and SHA-256 checksum of a key, or None when it is not there."""
        from botocore.exceptions import ClientError

        try:
            with self.errors("checking", key):
                try:
                    head = self.client.head_object(
                        Bucket=self.name, Key=self.full_key(key), ChecksumMode="ENABLED"
                    )
                except ClientError as exc:
                    if str(exc.response.get("Error", {}).get("Code")) in ("404", "NoSuchKey", "NotFound"):
                        return None
                    raise
        except RemoteArchiveError:
            raise
        return {"size": int(head["ContentLength"]), "sha256": head.get("ChecksumSHA256")}

    def holds(self, key: str, local: Path) -> bool:
        """Whether the bucket holds `key` with exactly the bytes of the local file (size and SHA-256)."""
        head = self.head(key)
        if head is None or head["size"] != local.stat().st_size:
            return False
        if head["sha256"]:
            return bool(head["sha256"] == sha256_b64(local))
        digest = hashlib.sha256(self.get_bytes(key)).digest()  # a server that keeps no checksum
        return base64.b64encode(digest).decode() == sha256_b64(local)

    # ------------------------------------------------------------ writing

    def put_file(self, key: str, path: Path, *, overwrite: bool = False) -> str:
        """Upload one file; 'uploaded', or 'present' when the same bytes were already there.

        Without `overwrite` the put is conditional; a key already holding other bytes is an error
        (content-addressed names: the bucket's or this copy is damaged).
        """
        from botocore.exceptions import ClientError

        faults.check("s3", self.where(key))
        digest = _sha256(path)
        named = _content_name(key)
        if named is not None and digest.hex() != named:
            raise RemoteArchiveError(
                f"uploading {self.where(key)}: this machine's copy {path} does not hash to its name "
                "(damaged, e.g. torn by a crash); it was not uploaded: run `workbench repair`"
            )
        extra: dict[str, Any] = {} if overwrite else {"IfNoneMatch": "*"}
        with self.errors("uploading", key):
            try:
                with open(path, "rb") as body:
                    self.client.put_object(
                        Bucket=self.name,
                        Key=self.full_key(key),
                        Body=body,
                        ChecksumSHA256=base64.b64encode(digest).decode(),
                        **extra,
                    )
                return "uploaded"
            except ClientError as exc:
                code = str(exc.response.get("Error", {}).get("Code", ""))
                if overwrite or code not in ("PreconditionFailed", "412"):
                    raise
        if not self.holds(key, path):
            raise RemoteArchiveError(
                f"uploading {self.where(key)}: the bucket already holds other bytes under this "
                "content-addressed name; run `workbench verify --read-data` on both copies"
            )
        return "present"

    def put_many(
        self,
        files: Iterable[tuple[str, Path]],
        *,
        overwrite: bool = False,
        done: Callable[[str, str], None] | None = None,
        threads: int = THREADS,
    ) -> dict[str, int]:
        """Upload concurrently; retry failures in rounds with backoff; raise if any still fails.

        `done(key, outcome)` is called (in this thread) for each file that is in the bucket.
        """
        pending = list(files)
        counts = {"uploaded": 0, "present": 0}
        for attempt in range(ROUNDS):
            failed: list[tuple[str, Path, BaseException]] = []
            with ThreadPoolExecutor(max_workers=threads) as pool:
                futures = [
                    (key, path, pool.submit(self.put_file, key, path, overwrite=overwrite))
                    for key, path in pending
                ]
                for key, path, future in futures:
                    try:
                        outcome = future.result()
                    except (RemoteArchiveError, OSError) as exc:
                        failed.append((key, path, exc))
                        continue
                    counts[outcome] += 1
                    if done is not None:
                        done(key, outcome)
            if not failed:
                return counts
            pending = [(k, p) for k, p, _ in failed]
            if attempt + 1 < ROUNDS:
                time.sleep(0.5 * 2**attempt)
        first_key, _, first_error = failed[0]
        raise RemoteArchiveError(
            f"{len(failed)} uploads to {self.where()} failed after {ROUNDS} rounds of retries, e.g. "
            f"{first_key}: {first_error}; nothing that refers to them was uploaded: run the command again"
        ) from None  # not an error of this machine's disk, whatever the cause says

    def get_many(
        self, keys: Iterable[str], root: Path, tmp: Path, *, threads: int = THREADS, missing_ok: bool = False
    ) -> list[str]:
        """Download keys to ``root/<key>`` concurrently; returns the keys downloaded."""
        todo = list(keys)
        with ThreadPoolExecutor(max_workers=threads) as pool:
            futures = [(k, pool.submit(self.get_file, k, root / k, tmp, missing_ok=missing_ok)) for k in todo]
            return [k for k, future in futures if future.result()]
