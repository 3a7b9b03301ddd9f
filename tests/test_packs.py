"""Pack files: version 2 compresses its blobs, version 1 packs (written before) are still read,
and a flipped byte in either is found by the checks that `verify --read-data` and `repair` run."""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

import pytest

from workbench.archive.packs import (
    PACK_END,
    PACK_MAGIC_V1,
    pack_path,
    read_blob,
    read_pack_index,
    write_pack,
)
from workbench.archive.store import ObjectStore
from workbench.errors import VerificationError

TEXT = b'{"metric": "IC", "value": 0.0123, "window": "main_window"}\n' * 40  # compresses well
TINY = b"0.5\n"  # too small to gain: stored raw


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _version1_pack(packs: Path, blobs: dict[str, bytes]) -> tuple[Path, dict[str, str]]:
    """A pack exactly as workbench wrote it before packs compressed (format version 1)."""
    parts, offset, index = [PACK_MAGIC_V1], len(PACK_MAGIC_V1), []
    for sha in sorted(blobs):
        index.append({"sha256": sha, "offset": offset, "length": len(blobs[sha])})
        parts.append(blobs[sha])
        offset += len(blobs[sha])
    text = json.dumps({"format": "workbench.pack", "version": 1, "blobs": index}).encode()
    payload = b"".join([*parts, text, struct.pack(">Q8s", len(text), PACK_END)])
    path = pack_path(packs, _sha(payload))
    path.parent.mkdir(parents=True)
    path.write_bytes(payload)
    keys = {b["sha256"]: f"pack:{_sha(payload)}:{b['offset']}:{b['length']}" for b in index}
    return path, keys


def test_version2_blobs_are_compressed_when_it_pays_and_read_back_by_key_and_index(tmp_path: Path) -> None:
    blobs = {_sha(TEXT): TEXT, _sha(TINY): TINY}
    path, locations = write_pack(tmp_path / "packs", tmp_path / "tmp", blobs)
    assert path.stat().st_size < len(TEXT)  # the repeated text shrank
    assert locations[_sha(TEXT)].length < len(TEXT) // 4
    assert locations[_sha(TINY)].length == len(TINY) + 1  # tag + raw bytes
    for sha, data in blobs.items():
        assert read_blob(tmp_path / "packs", locations[sha].storage_key) == data
    index = read_pack_index(path)
    assert index.blobs == locations


def test_the_store_counts_a_packed_object_at_its_stored_size(tmp_path: Path) -> None:
    store = ObjectStore(tmp_path / "objects", tmp=tmp_path / "tmp")
    obj = store.finalise(store.put_bytes(TEXT), store.flush_pack())
    assert obj.codec == "pack" and obj.size_bytes == len(TEXT) and obj.stored_bytes < len(TEXT) // 4
    assert store.open_content(obj.storage_key) == TEXT and store.verify(obj.storage_key, obj.sha256)
    again = ObjectStore(tmp_path / "objects", tmp=tmp_path / "tmp").put_bytes(
        TEXT, known={obj.sha256: obj.storage_key}
    )
    assert not again.written and again.stored_bytes == obj.stored_bytes


def test_version1_packs_are_still_read_and_checked(tmp_path: Path) -> None:
    blobs = {_sha(TEXT): TEXT, _sha(TINY): TINY}
    path, keys = _version1_pack(tmp_path / "packs", blobs)
    store = ObjectStore(tmp_path / "objects", tmp=tmp_path / "tmp")
    for sha, data in blobs.items():
        assert read_blob(tmp_path / "packs", keys[sha]) == data
        assert store.verify(keys[sha], sha)
    assert set(read_pack_index(path).blobs) == set(blobs)
    data = bytearray(path.read_bytes())
    data[int(keys[_sha(TEXT)].split(":")[2]) + 5] ^= 0x01
    path.write_bytes(bytes(data))
    assert not store.verify(keys[_sha(TEXT)], _sha(TEXT))
    with pytest.raises(VerificationError, match="damaged"):
        read_pack_index(path)


@pytest.mark.parametrize("where", ["tag", "size", "frame"])
def test_a_flipped_byte_in_a_compressed_blob_is_found(tmp_path: Path, where: str) -> None:
    store = ObjectStore(tmp_path / "objects", tmp=tmp_path / "tmp")
    obj = store.finalise(store.put_bytes(TEXT), store.flush_pack())
    path = store.path_for(obj.storage_key)
    offset = int(obj.storage_key.split(":")[2])
    data = bytearray(path.read_bytes())
    data[offset + {"tag": 0, "size": 8, "frame": obj.stored_bytes // 2}[where]] ^= 0x01
    path.write_bytes(bytes(data))
    assert not store.verify(obj.storage_key, obj.sha256)  # what `verify --read-data` runs per object
    with pytest.raises(VerificationError, match="damaged"):
        read_pack_index(path)  # what `verify --read-data` runs per pack, and `repair` before salvaging
    with pytest.raises(VerificationError):
        store.restore_to(obj.storage_key, obj.sha256, tmp_path / "back" / "metrics.json")
