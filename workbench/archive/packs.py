"""Pack files: many small objects in one self-describing file (restic's packs are the model).

A kept file of at most `INLINE_MAX` bytes (metric CSVs, JSON metadata, `params.pkl`, mlruns
metric files) is not worth a file of its own, and it must not live only in the catalog either. The
small objects of one loop are written together into one pack (version 2, written since packs
compress; version 1 packs are still read)::

    b"WBPACK2\\n"                      8-byte magic (b"WBPACK1\\n": version 1)
    blob 0 | blob 1 | ...             the objects, back to back; in version 2 each is b"R" + its
                                        bytes, or b"Z" + original size (8 bytes, big-endian) + one
                                        zstd frame when that saves at least 10 %; in version 1
                                        each is its bytes
    index                             UTF-8 JSON: {"format": "workbench.pack", "version": 2,
                                        "blobs": [{"sha256", "offset", "length", "size"}, ...]}
                                        (offset and length of the blob as stored; size: original)
    index length (8 bytes, big-endian) + b"WBPKEND\\n"

The file is named by the SHA-256 of its whole content (``packs/<aa>/<sha256>.pack``) and written
under a temporary name, then renamed. A blob's storage key carries its location,
``pack:<pack sha256>:<offset>:<length>``, so reading one needs neither the catalog nor the index;
the index lets `repair` and `verify --read-data` rebuild and check every blob from the pack alone.
A blob's name is the SHA-256 of its original bytes, whatever its encoding.
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from workbench.archive import ondemand
from workbench.archive.durable import write_atomic
from workbench.errors import VerificationError

PACK_MAGIC = b"WBPACK2\n"
PACK_MAGIC_V1 = b"WBPACK1\n"
PACK_END = b"WBPKEND\n"
TRAILER = struct.Struct(">Q8s")
PACK_PREFIX = "pack:"
PACK_FORMAT = "workbench.pack"
PACK_VERSION = 2
MAX_INDEX_BYTES = 64 * 1024 * 1024
RAW_BLOB = b"R"
ZSTD_BLOB = b"Z"
BLOB_SIZE = struct.Struct(">Q")
#: a compressed blob is kept only when it is at most this share of the original (as for objects)
MIN_SAVING = 0.90
_ZSTD = pa.Codec("zstd", compression_level=1)


@dataclass(frozen=True)
class BlobLocation:
    pack_sha256: str
    offset: int
    length: int

    @property
    def storage_key(self) -> str:
        return f"{PACK_PREFIX}{self.pack_sha256}:{self.offset}:{self.length}"


def is_pack_key(storage_key: str) -> bool:
    return storage_key.startswith(PACK_PREFIX)


def parse_pack_key(storage_key: str) -> BlobLocation:
    """`pack:<sha>:<offset>:<length>` → its location; anything else is a damaged key."""
    try:
        sha, offset, length = storage_key[len(PACK_PREFIX) :].split(":")
        location = BlobLocation(sha, int(offset), int(length))
    except ValueError:
        raise VerificationError(
            f"storage key {storage_key!r} is not a pack location; the catalog row is damaged"
        ) from None
    if len(sha) != 64 or location.offset < len(PACK_MAGIC) or location.length < 0:
        raise VerificationError(
            f"storage key {storage_key!r} is not a pack location; the catalog row is damaged"
        )
    return location


def pack_path(packs_root: Path, pack_sha256: str) -> Path:
    return packs_root / pack_sha256[:2] / f"{pack_sha256}.pack"


def encode_blob(data: bytes) -> bytes:
    """One blob as a version 2 pack stores it: zstd when that saves 10 %, raw otherwise."""
    if len(data) >= 64:
        compressed: bytes = _ZSTD.compress(data, asbytes=True)  # pyarrow is untyped
        if len(compressed) + 1 + BLOB_SIZE.size <= len(data) * MIN_SAVING:
            encoded = ZSTD_BLOB + BLOB_SIZE.pack(len(data)) + compressed
            if decode_blob(encoded, label="a blob just compressed") != data:
                raise VerificationError("a compressed pack blob does not decode to its content")
            return encoded
    return RAW_BLOB + data


def decode_blob(encoded: bytes, *, label: str) -> bytes:
    """The original bytes of a version 2 blob; damage (unknown tag, bad frame) → VerificationError."""
    tag = encoded[:1]
    if tag == RAW_BLOB:
        return encoded[1:]
    if tag == ZSTD_BLOB and len(encoded) >= 1 + BLOB_SIZE.size:
        (size,) = BLOB_SIZE.unpack_from(encoded, 1)
        if size <= MAX_BLOB_BYTES:
            try:
                decoded: bytes = _ZSTD.decompress(
                    encoded[1 + BLOB_SIZE.size :], decompressed_size=size, asbytes=True
                )
            except (pa.ArrowException, OSError, ValueError) as exc:
                raise VerificationError(f"{label} does not decode ({exc}); it is damaged") from exc
            if len(decoded) == size:
                return decoded
    raise VerificationError(f"{label} is not a valid pack blob; it is damaged")


MAX_BLOB_BYTES = 64 * 1024 * 1024
"""No blob claims more than this (packs hold small objects), so a damaged size cannot exhaust memory."""


def encode_pack(blobs: dict[str, bytes]) -> tuple[bytes, dict[str, tuple[int, int]]]:
    """The bytes of a pack holding `blobs` (sha256 → content) and each blob's stored (offset, length)."""
    parts = [PACK_MAGIC]
    offset = len(PACK_MAGIC)
    where: dict[str, tuple[int, int]] = {}
    sizes: dict[str, int] = {}
    for sha in sorted(blobs):
        data = encode_blob(blobs[sha])
        where[sha] = (offset, len(data))
        sizes[sha] = len(blobs[sha])
        parts.append(data)
        offset += len(data)
    index = json.dumps(
        {
            "format": PACK_FORMAT,
            "version": PACK_VERSION,
            "blobs": [
                {"sha256": s, "offset": o, "length": n, "size": sizes[s]} for s, (o, n) in where.items()
            ],
        },
        separators=(",", ":"),
    ).encode()
    parts += [index, TRAILER.pack(len(index), PACK_END)]
    return b"".join(parts), where


def write_pack(packs_root: Path, tmp: Path, blobs: dict[str, bytes]) -> tuple[Path, dict[str, BlobLocation]]:
    """Write one pack atomically (temporary name, rename); the caller makes it durable (`ObjectStore.sync`)
    before any catalog row refers to it, as for every other object."""
    payload, where = encode_pack(blobs)
    pack_sha = hashlib.sha256(payload).hexdigest()
    target = pack_path(packs_root, pack_sha)
    locations = {sha: BlobLocation(pack_sha, o, n) for sha, (o, n) in where.items()}
    write_atomic(target, payload, tmp, fsync=False)  # replacing an existing pack fsyncs first
    return target, locations


def read_blob(packs_root: Path, storage_key: str) -> bytes:
    """One blob's original bytes by its storage key (not hash-checked here: callers hash what they read)."""
    location = parse_pack_key(storage_key)
    path = pack_path(packs_root, location.pack_sha256)
    ondemand.fetch_missing(path)
    with open(path, "rb") as handle:
        magic = handle.read(len(PACK_MAGIC))
        handle.seek(location.offset)
        data = handle.read(location.length)
    if len(data) != location.length:
        raise VerificationError(
            f"pack {path.name} is shorter than the blob at {location.offset} needs; it is damaged"
        )
    if magic == PACK_MAGIC_V1:
        return data
    if magic != PACK_MAGIC:
        raise VerificationError(f"pack {path.name} lacks its header; it is damaged")
    return decode_blob(data, label=f"blob at {location.offset} of pack {path.name}")


def blob_present(packs_root: Path, storage_key: str) -> bool:
    """The pack exists and is long enough to hold the blob (a cheap check, no hashing)."""
    try:
        location = parse_pack_key(storage_key)
    except VerificationError:
        return False
    path = pack_path(packs_root, location.pack_sha256)
    try:
        size = path.stat().st_size
    except OSError:
        remote = ondemand.remote_size(path)  # in the bucket of an s3:// archive, not on disk
        if remote is None:
            return False
        size = remote
    return size >= location.offset + location.length + TRAILER.size


@dataclass(frozen=True)
class PackIndex:
    path: Path
    pack_sha256: str
    blobs: dict[str, BlobLocation]


def read_pack_index(path: Path) -> PackIndex:
    """Parse a pack's own index (the trailer, then the JSON before it); damage → VerificationError."""
    data = path.read_bytes()
    pack_sha = hashlib.sha256(data).hexdigest()
    name = path.name.removesuffix(".pack")
    if name != pack_sha:
        raise VerificationError(f"pack {path} hashes to {pack_sha}, not to its name; it is damaged")
    version1 = data.startswith(PACK_MAGIC_V1)
    if not (version1 or data.startswith(PACK_MAGIC)) or len(data) < len(PACK_MAGIC) + TRAILER.size:
        raise VerificationError(f"pack {path} lacks its header or trailer; it is damaged")
    length, end = TRAILER.unpack_from(data, len(data) - TRAILER.size)
    start = len(data) - TRAILER.size - length
    if end != PACK_END or length > MAX_INDEX_BYTES or start < len(PACK_MAGIC):
        raise VerificationError(f"pack {path} has a damaged trailer")
    try:
        index = json.loads(data[start : len(data) - TRAILER.size])
        blobs = {
            b["sha256"]: BlobLocation(pack_sha, int(b["offset"]), int(b["length"])) for b in index["blobs"]
        }
    except (ValueError, KeyError, TypeError) as exc:
        raise VerificationError(f"pack {path} has an unreadable index ({exc})") from exc
    for sha, loc in blobs.items():
        if loc.offset < len(PACK_MAGIC) or loc.offset + loc.length > start:
            raise VerificationError(f"pack {path}: blob {sha} lies outside the pack; it is damaged")
        stored = data[loc.offset : loc.offset + loc.length]
        content = stored if version1 else decode_blob(stored, label=f"pack {path}: blob {sha}")
        if hashlib.sha256(content).hexdigest() != sha:
            raise VerificationError(f"pack {path}: blob {sha} does not hash to its name; it is damaged")
    return PackIndex(path, pack_sha, blobs)


def iter_pack_files(packs_root: Path) -> list[Path]:
    """Every pack file, sorted (temporary files of an interrupted write are not packs)."""
    if not packs_root.exists():
        return []
    return sorted(p for p in packs_root.glob("*/*.pack") if p.is_file())
