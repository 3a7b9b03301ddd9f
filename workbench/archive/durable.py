"""Writing a file so that it is whole under its name: temporary name, optional fsync, rename.

Every file of the archive is written this way (objects, packs, manifests, records), through the
fault-injection seam (`faults.py`), so an interruption never leaves a torn file under a real name.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

from workbench.archive import faults


def write_atomic(target: Path, data: bytes, tmp: Path, *, fsync: bool, op: str = "objects") -> None:
    """Write `data` to `target` via a temporary file in `tmp` (same file system), then rename.

    With `fsync` the bytes are on disk before the rename; they are also whenever `target` already
    exists, because a name that may already be listed must never show unsynced bytes. Without it
    the caller syncs later (one `os.sync` per batch) before anything refers to the file.
    """
    tmp.mkdir(parents=True, exist_ok=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = tmp / f"{uuid.uuid4().hex}.part"
    faults.check(op, temp)
    with open(temp, "wb") as handle:
        handle.write(data)
        if fsync or target.exists():
            handle.flush()
            os.fsync(handle.fileno())
    os.replace(temp, target)


def copy_synced(source: Path, target: Path) -> None:
    """Copy a file in 4 MiB chunks and fsync the copy (catalog snapshots and their restore)."""
    with open(source, "rb") as src, open(target, "wb") as dst:
        shutil.copyfileobj(src, dst, 4 * 1024 * 1024)
        dst.flush()
        os.fsync(dst.fileno())


def fsync_file(path: Path) -> None:
    """Make a file's bytes (or, for a folder, its entries: a rename into it) durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


fsync_dir = fsync_file


def durable_write_bytes(target: Path, data: bytes, tmp: Path) -> None:
    """Write `data` to `target` whole and durably (file and folder entry synced) before returning."""
    write_atomic(target, data, tmp, fsync=True, op="records")
    fsync_dir(target.parent)
