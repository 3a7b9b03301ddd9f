"""Content-addressed object store: one file per distinct content, named by its SHA-256.

Write ordering (the rules that make an interruption harmless):
1. content is read once; the hash is computed from the very bytes that are stored;
2. the object is written to ``tmp/`` and renamed into ``objects/aa/<sha256>[.zst]``;
3. the caller makes the batch durable (`ObjectStore.sync`) before committing catalog rows that
   reference the objects; an object on disk that the catalog does not list yet is rewritten
   rather than trusted, because it may be the torn result of a crash before the sync.

Small objects (at most `INLINE_MAX` bytes: metric files, configs, most JSON) are not files of
their own: `put_bytes` holds them until `flush_pack` writes them together into one pack file
(`packs.py`; storage key ``pack:<pack sha256>:<offset>:<length>``), one pack per loop. Creating
tens of thousands of tiny files is what made archiving slow; keeping them only in the catalog is
what made a damaged catalog lose them. Archives written before packs kept them in the catalog
table ``wb_inline_objects``; the upgrade to schema 6 moves them into a pack (`journal.py`), so
every object of a current catalog is a file or a pack blob.

Objects are stored zstd-compressed when that saves at least 10 %, raw otherwise, whatever their
kind (Parquet too: RD-Agent's Snappy `signals.parquet` shrinks to about a third; Parquet objects
are read through `open_content`/`restore_to`, never opened where they lie).
A compressed object starts with an 8-byte magic and the original size, so it can be restored
without the catalog; one zstd frame follows. Pack blobs are compressed the same way (`packs.py`).

Memory stays bounded whatever the file size: a file above `STREAM_ABOVE` (16 MiB) is never read
whole but streamed in `CHUNK`s — hashed, copied and compressed in one pass through temp files —
and verifying or restoring an object streams it back the same way (`iter_content`). The streamed
zstd frame (Arrow's default level, 1, the store's own) decodes exactly like a one-shot one.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import struct
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO, Literal

import pyarrow as pa

from workbench.archive import faults, ondemand
from workbench.archive.durable import fsync_dir, fsync_file, write_atomic
from workbench.archive.packs import (
    PACK_PREFIX,
    blob_present,
    is_pack_key,
    pack_path,
    parse_pack_key,
    read_blob,
    write_pack,
)
from workbench.errors import VerificationError
from workbench.rdagent.files.reading import open_regular_file

MAGIC = b"WBZSTD1\n"
HEADER = struct.Struct(">8sQ")
CHUNK = 4 * 1024 * 1024
#: Files larger than this are streamed in chunks (hashed, copied, compressed) instead of read whole.
STREAM_ABOVE = 16 * 1024 * 1024
MIN_SAVING = 0.90
INLINE_MAX = 4096
PENDING_PREFIX = "pending:"
Codec = Literal["raw", "zstd", "pack"]


@dataclass(frozen=True)
class StoredObject:
    sha256: str
    size_bytes: int
    stored_bytes: int
    storage_key: str
    codec: Codec
    written: bool


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
        self,
        root: Path,
        *,
        tmp: Path | None = None,
        level: int = 1,
        packs: Path | None = None,
        pack_small: bool = True,
    ) -> None:
        self.root = root
        self.tmp = tmp or root.parent / "tmp"
        self.packs = packs or root.parent / "packs"
        self._pack_small = pack_small
        self._codec = pa.Codec("zstd", compression_level=level)
        self._dirty: set[Path] = set()
        self._session: dict[str, str] = {}
        self._pending: dict[str, bytes] = {}

    def key_for(self, sha256: str, codec: Codec) -> str:
        suffix = ".zst" if codec == "zstd" else ""
        return f"{sha256[:2]}/{sha256}{suffix}"

    def path_for(self, storage_key: str) -> Path:
        if is_pack_key(storage_key):
            return pack_path(self.packs, parse_pack_key(storage_key).pack_sha256)
        return self.root / storage_key

    def find(self, sha256: str) -> Path | None:
        for codec in ("zstd", "raw"):
            candidate = self.path_for(self.key_for(sha256, codec))
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
        Files above `STREAM_ABOVE` are streamed (`_put_large`), never held in memory whole.
        """
        fd = open_regular_file(source)
        with os.fdopen(fd, "rb") as handle:
            before = os.fstat(handle.fileno())
            if expect is not None and (before.st_size, before.st_mtime_ns) != expect:
                raise VerificationError(
                    f"{source} changed after the workspace was scanned "
                    f"({expect[0]} → {before.st_size} bytes); rerun the archive"
                )
            if before.st_size > STREAM_ABOVE:
                return self._put_large(handle, source, before, known=known, verify=verify)
            data = handle.read()
            _check_unchanged(handle, source, before, read=len(data))
        return self.put_bytes(data, known=known, verify=verify)

    def put_bytes(
        self, data: bytes, *, known: dict[str, str] | None = None, verify: bool = True
    ) -> StoredObject:
        """Store bytes under their SHA-256.

        With `verify`, a compressed payload is decompressed again and re-hashed before it is
        written, so what lands on disk provably decodes to the hashed content.
        """
        sha = hashlib.sha256(data).hexdigest()
        key = self._session.get(sha) or (known or {}).get(sha)
        if key is not None and key.startswith(PENDING_PREFIX):
            return StoredObject(sha, len(data), len(data), key, "pack", False)
        if key is not None and is_pack_key(key):
            if blob_present(self.packs, key):
                return StoredObject(sha, len(data), parse_pack_key(key).length, key, "pack", False)
        elif key is not None:
            codec: Codec = "zstd" if key.endswith(".zst") else "raw"
            stored = self.path_for(key)
            if stored.exists():
                return StoredObject(sha, len(data), stored.stat().st_size, key, codec, False)
        if len(data) <= INLINE_MAX and self._pack_small:
            key = PENDING_PREFIX + sha
            self._pending[sha] = data
            self._session[sha] = key
            return StoredObject(sha, len(data), len(data), key, "pack", True)
        payload, codec = self._encode(data)
        if verify and codec == "zstd":
            decoded = self._codec.decompress(
                payload[HEADER.size :], decompressed_size=len(data), asbytes=True
            )
            if hashlib.sha256(decoded).hexdigest() != sha:
                raise VerificationError(f"compressed object {sha} does not decode to its content")
        key = self.key_for(sha, codec)
        self._write_atomic(self.path_for(key), payload)
        self._session[sha] = key
        return StoredObject(sha, len(data), len(payload), key, codec, True)

    def _encode(self, data: bytes) -> tuple[bytes, Codec]:
        if len(data) < 64:
            return data, "raw"
        compressed = self._codec.compress(data, asbytes=True)
        if len(compressed) + HEADER.size <= len(data) * MIN_SAVING:
            return HEADER.pack(MAGIC, len(data)) + compressed, "zstd"
        return data, "raw"

    def _write_atomic(self, target: Path, payload: bytes) -> None:
        write_atomic(target, payload, self.tmp, fsync=False)
        self._dirty.add(target.parent)

    def _put_large(
        self,
        src: BinaryIO,
        source: Path,
        before: os.stat_result,
        *,
        known: dict[str, str] | None,
        verify: bool,
    ) -> StoredObject:
        """Stream a file too large to hold in memory: hash while copying, zstd where it saves 10 %.

        One read of the source feeds the hash, a raw copy and (Parquet aside) a zstd copy, each a
        temp file in `tmp/`; the smaller acceptable one is renamed into place, the other removed.
        Memory stays at a few chunks whatever the size.
        """
        size = before.st_size
        self.tmp.mkdir(parents=True, exist_ok=True)
        raw_tmp = self._temp_path()
        zst_tmp = self._temp_path()
        try:
            faults.check("objects", raw_tmp)
            sha = _stream_copy(src, size, raw_tmp, zst_tmp, source)
            _check_unchanged(src, source, before, read=size)
            reused = self._reuse(sha, size, known)
            if reused is not None:
                return reused
            codec: Codec = "zstd" if zst_tmp.stat().st_size <= size * MIN_SAVING else "raw"
            chosen = zst_tmp if codec == "zstd" else raw_tmp
            if codec == "zstd" and verify:
                self._verify_file(chosen, sha, f"compressed object {sha}")
            key = self.key_for(sha, codec)
            stored = chosen.stat().st_size
            self._commit_temp(chosen, self.path_for(key))
            self._session[sha] = key
            return StoredObject(sha, size, stored, key, codec, True)
        finally:
            for temp in (raw_tmp, zst_tmp):
                temp.unlink(missing_ok=True)

    def _temp_path(self) -> Path:
        return self.tmp / f"{uuid.uuid4().hex}.part"

    def _reuse(self, sha: str, size: int, known: dict[str, str] | None) -> StoredObject | None:
        """The object already stored this session or listed by the catalog, if its file is there."""
        trusted = self._session.get(sha) or (known or {}).get(sha)
        if trusted is None or not self.path_for(trusted).exists():
            return None
        codec: Codec = "zstd" if trusted.endswith(".zst") else "raw"
        return StoredObject(sha, size, self.path_for(trusted).stat().st_size, trusted, codec, False)

    def _verify_file(self, path: Path, sha: str, label: str) -> None:
        """Decode a compressed temp file again, streaming, and check it hashes to `sha`."""
        digest = hashlib.sha256()
        try:
            for chunk in _iter_zstd(path, label):
                digest.update(chunk)
        except (OSError, pa.ArrowException) as exc:
            raise VerificationError(f"{label} does not decode ({exc})") from exc
        if digest.hexdigest() != sha:
            raise VerificationError(f"{label} does not decode to its content")

    def _commit_temp(self, temp: Path, target: Path) -> None:
        """Rename a finished temp file into place (made durable first if it replaces a file)."""
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            # replacing an object that may already be listed: never expose unsynced bytes under its name
            fsync_file(temp)
        os.replace(temp, target)
        self._dirty.add(target.parent)

    def flush_pack(self) -> dict[str, str]:
        """Write the small objects held since the last call into one pack; sha256 → storage key.

        Objects returned with a ``pending:`` key get their final key from this mapping
        (`finalise`). The pack is fsynced; its folder is synced by `sync`.
        """
        if not self._pending:
            return {}
        target, locations = write_pack(self.packs, self.tmp, self._pending)
        self._dirty.add(target.parent)
        keys = {sha: loc.storage_key for sha, loc in locations.items()}
        self._session.update(keys)
        self._pending.clear()
        return keys

    def finalise(self, obj: StoredObject, keys: dict[str, str]) -> StoredObject:
        """The object with its pack key (and its size as stored) once `flush_pack` has written it."""
        if not obj.storage_key.startswith(PENDING_PREFIX):
            return obj
        key = keys.get(obj.sha256) or self._session.get(obj.sha256)
        if key is None or key.startswith(PENDING_PREFIX):
            raise VerificationError(f"object {obj.sha256} was never written to a pack")
        return replace(obj, storage_key=key, stored_bytes=parse_pack_key(key).length)

    def sync(self) -> None:
        """Make every object written since the last call durable (data and directory entries)."""
        if not self._dirty:
            return
        os.sync()
        for folder in self._dirty:
            fsync_dir(folder)
        self._dirty.clear()

    def exists(self, storage_key: str) -> bool:
        if is_pack_key(storage_key):
            return blob_present(self.packs, storage_key)
        path = self.path_for(storage_key)
        return path.exists() or ondemand.remote_size(path) is not None

    def open_content(self, storage_key: str) -> bytes:
        """The original bytes of an object (decompressed)."""
        if is_pack_key(storage_key):
            return read_blob(self.packs, storage_key)
        ondemand.fetch_missing(self.path_for(storage_key))
        raw = self.path_for(storage_key).read_bytes()
        if storage_key.endswith(".zst"):
            magic, size = HEADER.unpack_from(raw)
            if magic != MAGIC:
                raise VerificationError(f"object {storage_key} lacks the zstd header; it is damaged")
            decompressed: bytes = pa.Codec("zstd").decompress(
                raw[HEADER.size :], decompressed_size=size, asbytes=True
            )  # pyarrow is untyped; asbytes=True returns bytes
            return decompressed
        return raw

    def iter_content(self, storage_key: str) -> Iterator[bytes]:
        """Yield the original bytes in chunks; raw and zstd objects are both streamed."""
        if storage_key.startswith(PACK_PREFIX):
            yield self.open_content(storage_key)
            return
        path = self.path_for(storage_key)
        ondemand.fetch_missing(path)
        if storage_key.endswith(".zst"):
            yield from _iter_zstd(path, f"object {storage_key}")
            return
        with open(path, "rb") as handle:
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
        try:
            with open(temp, "wb") as handle:
                for chunk in self.iter_content(storage_key):
                    digest.update(chunk)
                    handle.write(chunk)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
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


def _check_unchanged(handle: BinaryIO, source: Path, before: os.stat_result, *, read: int) -> None:
    """Refuse a file whose size or mtime moved while it was read, or that gave other than its size."""
    after = os.fstat(handle.fileno())
    if (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns) or read != before.st_size:
        raise VerificationError(f"{source} changed while it was read; rerun the archive")


def _stream_copy(src: BinaryIO, size: int, raw_tmp: Path, zst_tmp: Path | None, source: Path) -> str:
    """Copy `src` chunk by chunk to a raw temp file and, when given, a zstd one; return the SHA-256.

    The zstd file gets the usual header (magic + `size`, the size seen by fstat) and one zstd
    frame, exactly what `_encode` writes, so `open_content` and `iter_content` read it alike.
    """
    digest = hashlib.sha256()
    read = 0
    with ExitStack() as stack:
        raw = stack.enter_context(open(raw_tmp, "wb"))
        packed = None
        if zst_tmp is not None:
            sink = stack.enter_context(pa.OSFile(str(zst_tmp), "wb"))
            sink.write(HEADER.pack(MAGIC, size))
            packed = stack.enter_context(pa.CompressedOutputStream(sink, "zstd"))
        for chunk in iter(lambda: src.read(CHUNK), b""):
            read += len(chunk)
            if read > size:
                break
            digest.update(chunk)
            raw.write(chunk)
            if packed is not None:
                packed.write(chunk)
    if read != size:
        raise VerificationError(f"{source} changed while it was read; rerun the archive")
    return digest.hexdigest()


def _iter_zstd(path: Path, label: str) -> Iterator[bytes]:
    """The decoded chunks of a zstd object (header + zstd stream), checked against the header's size."""
    with open(path, "rb") as handle:
        header = handle.read(HEADER.size)
        if len(header) < HEADER.size or header[: len(MAGIC)] != MAGIC:
            raise VerificationError(f"{label} lacks the zstd header; it is damaged")
        _, size = HEADER.unpack(header)
        stream = pa.CompressedInputStream(handle, "zstd")
        total = 0
        for chunk in iter(lambda: stream.read(CHUNK), b""):
            total += len(chunk)
            if total > size:
                break
            yield chunk
    if total != size:
        raise VerificationError(
            f"{label} decodes to {total:,} bytes, not the {size:,} its header says; it is damaged"
        )
