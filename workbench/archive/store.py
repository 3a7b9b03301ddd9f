"""Content-addressed object store: one file per distinct content, named by its SHA-256.

Write ordering (the rules that make an interruption harmless):
1. content is read once; the hash is computed from the very bytes that are stored;
2. the object is written to ``tmp/`` and renamed into ``objects/aa/<sha256>[.zst]``;
3. the caller makes the batch durable (`ObjectStore.sync`) before committing catalog rows that
   reference the objects; an object on disk that the catalog does not list yet is rewritten
   rather than trusted, because it may be the torn result of a crash before the sync.

Small objects (at most `INLINE_MAX` bytes: metric files, configs, most JSON) are not files at
all: their bytes travel with the batch and are written into the catalog table
``wb_inline_objects`` in the same transaction as the rows that reference them (storage key
``inline:<sha256>``). Creating tens of thousands of tiny files is what made archiving slow.

Objects are stored zstd-compressed when that saves at least 10 %, raw otherwise; Parquet is
always stored raw, so the stored object opens directly in polars, duckdb and pyarrow.
A compressed object starts with an 8-byte magic and the original size, so it can be restored
without the catalog.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import struct
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal

import pyarrow as pa

from workbench.archive import faults
from workbench.errors import VerificationError
from workbench.rdagent.files.jsonfile import open_regular_file

MAGIC = b"WBZSTD1\n"
HEADER = struct.Struct(">8sQ")
CHUNK = 4 * 1024 * 1024
COMPRESS_LIMIT = 256 * 1024 * 1024
MIN_SAVING = 0.90
INLINE_MAX = 4096
INLINE_PREFIX = "inline:"
Codec = Literal["raw", "zstd", "inline"]
InlineReader = Callable[[str], "bytes | None"]


@dataclass(frozen=True)
class StoredObject:
    sha256: str
    size_bytes: int
    stored_bytes: int
    storage_key: str
    codec: Codec
    written: bool
    inline_data: bytes | None = None


def sha256_file(path: Path) -> str:
    """Stream a regular file (never a link, FIFO or device: `InputFileError`) through SHA-256."""
    digest = hashlib.sha256()
    with os.fdopen(open_regular_file(path), "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


class ObjectStore:
    """The ``objects/`` folder of one archive."""

    def __init__(
        self, root: Path, *, tmp: Path | None = None, level: int = 1, inline: InlineReader | None = None
    ) -> None:
        self.root = root
        self._inline = inline
        self.tmp = tmp or root.parent / "tmp"
        self._codec = pa.Codec("zstd", compression_level=level)
        self._dirty: set[Path] = set()
        self._session: dict[str, str] = {}

    def key_for(self, sha256: str, codec: Codec) -> str:
        if codec == "inline":
            return INLINE_PREFIX + sha256
        suffix = ".zst" if codec == "zstd" else ""
        return f"{sha256[:2]}/{sha256}{suffix}"

    def path_for(self, storage_key: str) -> Path:
        return self.root / storage_key

    def find(self, sha256: str) -> Path | None:
        for codec in ("zstd", "raw"):
            candidate = self.path_for(self.key_for(sha256, codec))  # type: ignore[arg-type]
            if candidate.exists():
                return candidate
        return None

    def put_file(
        self,
        source: Path,
        *,
        known: dict[str, str] | None = None,
        verify: bool = True,
        expect: tuple[int, int] | None = None,
    ) -> StoredObject:
        """Store one regular file (never through a link); `known` maps sha256 → storage_key.

        `expect` is `(size, mtime_ns)` as the workspace scan saw it: a file that differs, or that
        changes while it is read, is refused (`VerificationError`) rather than stored half-new.
        """
        fd = open_regular_file(source)
        with os.fdopen(fd, "rb") as handle:
            before = os.fstat(handle.fileno())
            if expect is not None and (before.st_size, before.st_mtime_ns) != expect:
                raise VerificationError(f"{source} changed after the workspace was scanned "
                                        f"({expect[0]} → {before.st_size} bytes); rerun the archive")
            if before.st_size > COMPRESS_LIMIT:
                obj = self._put_large(handle, known=known)
                data = None
            else:
                data = handle.read()
            after = os.fstat(handle.fileno())
        read = obj.size_bytes if data is None else len(data)
        if (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns) or read != before.st_size:
            raise VerificationError(f"{source} changed while it was read; rerun the archive")
        return obj if data is None else self.put_bytes(data, known=known, verify=verify)

    def put_bytes(self, data: bytes, *, known: dict[str, str] | None = None, verify: bool = True) -> StoredObject:
        """Store bytes under their SHA-256.

        With `verify`, a compressed payload is decompressed again and re-hashed before it is
        written, so what lands on disk provably decodes to the hashed content.
        """
        sha = hashlib.sha256(data).hexdigest()
        key = self._session.get(sha) or (known or {}).get(sha)
        if key is not None:
            if key.startswith(INLINE_PREFIX):
                # carry the bytes again: the catalog write of the first copy may not happen
                # (its item can fail), and the insert ignores duplicates
                return StoredObject(sha, len(data), len(data), key, "inline", False, inline_data=data)
            codec: Codec = "zstd" if key.endswith(".zst") else "raw"
            stored = self.path_for(key)
            if stored.exists():
                return StoredObject(sha, len(data), stored.stat().st_size, key, codec, False)
        if len(data) <= INLINE_MAX:
            key = self.key_for(sha, "inline")
            self._session[sha] = key
            return StoredObject(sha, len(data), len(data), key, "inline", True, inline_data=data)
        payload, codec = self._encode(data)
        if verify and codec == "zstd":
            decoded = self._codec.decompress(payload[HEADER.size:], decompressed_size=len(data), asbytes=True)
            if hashlib.sha256(decoded).hexdigest() != sha:
                raise VerificationError(f"compressed object {sha} does not decode to its content")
        key = self.key_for(sha, codec)
        self._write_atomic(self.path_for(key), payload)
        self._session[sha] = key
        return StoredObject(sha, len(data), len(payload), key, codec, True)

    def _encode(self, data: bytes) -> tuple[bytes, Codec]:
        if len(data) < 64 or _is_parquet(data):
            return data, "raw"
        compressed = self._codec.compress(data, asbytes=True)
        if len(compressed) + HEADER.size <= len(data) * MIN_SAVING:
            return HEADER.pack(MAGIC, len(data)) + compressed, "zstd"
        return data, "raw"

    def _write_atomic(self, target: Path, payload: bytes) -> None:
        self.tmp.mkdir(parents=True, exist_ok=True)
        target.parent.mkdir(parents=True, exist_ok=True)
        temp = self.tmp / f"{uuid.uuid4().hex}.part"
        faults.check("objects", temp)
        with open(temp, "wb") as handle:
            handle.write(payload)
            if target.exists():
                # replacing an object that may already be listed: never expose unsynced bytes under its name
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(temp, target)
        self._dirty.add(target.parent)

    def _put_large(self, src: BinaryIO, *, known: dict[str, str] | None) -> StoredObject:
        """Stream a file too large to hold in memory: hash while copying, store raw."""
        self.tmp.mkdir(parents=True, exist_ok=True)
        temp = self.tmp / f"{uuid.uuid4().hex}.part"
        digest = hashlib.sha256()
        size = 0
        faults.check("objects", temp)
        with open(temp, "wb") as dst:
            for chunk in iter(lambda: src.read(CHUNK), b""):
                digest.update(chunk)
                dst.write(chunk)
                size += len(chunk)
        sha = digest.hexdigest()
        key = self.key_for(sha, "raw")
        target = self.path_for(key)
        trusted = self._session.get(sha) or (known or {}).get(sha)
        if trusted is not None and self.path_for(trusted).exists():
            temp.unlink()
            key = trusted
            return StoredObject(sha, size, self.path_for(key).stat().st_size, key,
                                "zstd" if key.endswith(".zst") else "raw", False)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(temp, target)
        self._dirty.add(target.parent)
        self._session[sha] = key
        return StoredObject(sha, size, size, key, "raw", True)

    def sync(self) -> None:
        """Make every object written since the last call durable (data and directory entries)."""
        if not self._dirty:
            return
        os.sync()
        for folder in self._dirty:
            _fsync_dir(folder)
        self._dirty.clear()

    def exists(self, storage_key: str) -> bool:
        if storage_key.startswith(INLINE_PREFIX):
            return self._read_inline(storage_key) is not None
        return self.path_for(storage_key).exists()

    def _read_inline(self, storage_key: str) -> bytes | None:
        if self._inline is None:
            raise VerificationError(f"object {storage_key} lives in the catalog; open the store with a catalog reader")
        return self._inline(storage_key[len(INLINE_PREFIX):])

    def open_content(self, storage_key: str) -> bytes:
        """The original bytes of an object (decompressed)."""
        if storage_key.startswith(INLINE_PREFIX):
            data = self._read_inline(storage_key)
            if data is None:
                raise VerificationError(f"object {storage_key} is missing from wb_inline_objects")
            return data
        raw = self.path_for(storage_key).read_bytes()
        if storage_key.endswith(".zst"):
            magic, size = HEADER.unpack_from(raw)
            if magic != MAGIC:
                raise VerificationError(f"object {storage_key} lacks the zstd header; it is damaged")
            return pa.Codec("zstd").decompress(raw[HEADER.size:], decompressed_size=size, asbytes=True)
        return raw

    def iter_content(self, storage_key: str) -> Iterator[bytes]:
        """Yield the original bytes in chunks (raw objects are streamed, zstd decoded whole)."""
        if storage_key.endswith(".zst") or storage_key.startswith(INLINE_PREFIX):
            yield self.open_content(storage_key)
            return
        with open(self.path_for(storage_key), "rb") as handle:
            yield from iter(lambda: handle.read(CHUNK), b"")

    def verify(self, storage_key: str, sha256: str) -> bool:
        """Re-hash a stored object; False when it is missing or its content differs."""
        if not self.exists(storage_key):
            return False
        digest = hashlib.sha256()
        try:
            for chunk in self.iter_content(storage_key):
                digest.update(chunk)
        except (OSError, VerificationError, pa.ArrowException, struct.error):
            return False
        return digest.hexdigest() == sha256

    def restore_to(self, storage_key: str, sha256: str, target: Path) -> None:
        """Write an object's original bytes to `target` atomically, checking the hash."""
        target.parent.mkdir(parents=True, exist_ok=True)
        temp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.part")
        digest = hashlib.sha256()
        with open(temp, "wb") as handle:
            for chunk in self.iter_content(storage_key):
                digest.update(chunk)
                handle.write(chunk)
        if digest.hexdigest() != sha256:
            temp.unlink()
            raise VerificationError(
                f"object {storage_key} does not hash to {sha256}; the archive copy is damaged "
                "(run `workbench verify` to list every damaged object)"
            )
        os.replace(temp, target)

    def clear_tmp(self) -> None:
        """Remove temporary files left by an interrupted run."""
        if self.tmp.exists():
            shutil.rmtree(self.tmp, ignore_errors=True)


def _is_parquet(data: bytes) -> bool:
    """Parquet stays raw so that polars, duckdb and pyarrow open the stored object directly."""
    return data[:4] == b"PAR1" and data[-4:] == b"PAR1"


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
