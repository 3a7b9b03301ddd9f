"""Which stored objects are missing: noticed by every archive run, so it can store them again.

A full run checks every object the catalog lists (one `stat` per object file, one per pack: a
missing or truncated file is damage). An incremental run must cost what is new, not what the
archive holds, so it compares the modification times of the fan-out folders of ``objects/`` and
``packs/`` with those seen by the previous check (kept in ``cache/object_folders.json``): a
deleted, added or renamed file changes its folder's time, so only changed folders are listed and
matched by name against the catalog. Bytes altered or truncated in place leave folder times alone;
`verify --read-data`, `repair` and the next full run find those.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

import duckdb

from workbench.archive import ondemand
from workbench.archive.layout import ArchiveLayout
from workbench.archive.packs import PACK_PREFIX, is_pack_key, pack_path, parse_pack_key
from workbench.archive.store import ObjectStore

STAMPS_FILE = "object_folders.json"
STAMPS_FORMAT = 1


def find_damaged_objects(
    con: duckdb.DuckDBPyConnection,
    layout: ArchiveLayout,
    *,
    suspect: Iterable[str] = (),
    quick: bool = False,
) -> set[str]:
    """Objects the catalog lists whose file (or pack) is missing or too short, plus `suspect`.

    `quick` (incremental runs) looks only into the folders changed since the previous check, by
    name; without a previous check, or without `quick`, every object is checked by size.
    """
    stamps = folder_stamps(layout)
    previous = _load_stamps(layout) if quick else None
    if previous is None:
        damaged = _check_every_object(con, layout)
    else:
        changed = {key for key in stamps.keys() | previous.keys() if stamps.get(key) != previous.get(key)}
        damaged = _check_changed_folders(con, layout, changed)
    # damage found: no shortcut next time, so it is looked for again until it is gone
    _save_stamps(layout, None if damaged else stamps)
    return damaged | set(suspect)


def folder_stamps(layout: ArchiveLayout) -> dict[str, int]:
    """`mtime_ns` of ``objects/``, ``packs/`` and each of their fan-out folders (`objects/ab`, ...)."""
    stamps: dict[str, int] = {}
    for base in (layout.objects, layout.packs):
        try:
            stamps[base.name] = os.stat(base).st_mtime_ns
            with os.scandir(base) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        stamps[f"{base.name}/{entry.name}"] = entry.stat(follow_symlinks=False).st_mtime_ns
        except FileNotFoundError:
            continue
    return stamps


def _check_every_object(con: duckdb.DuckDBPyConnection, layout: ArchiveLayout) -> set[str]:
    """One stat per object file and per pack: missing, or shorter than the catalog says."""
    damaged: set[str] = set()
    store = ObjectStore(layout.objects, tmp=layout.tmp, packs=layout.packs)
    pack_sizes: dict[str, int] = {}
    for sha, key, stored_bytes in con.execute(
        "SELECT sha256, storage_key, stored_bytes FROM wb_objects"
    ).fetchall():
        if is_pack_key(key):
            location = parse_pack_key(key)
            if location.pack_sha256 not in pack_sizes:
                pack_sizes[location.pack_sha256] = _size(store.path_for(key))
            if pack_sizes[location.pack_sha256] < location.offset + location.length:
                damaged.add(sha)
        elif _size(store.path_for(key)) != stored_bytes:
            damaged.add(sha)
    return damaged


def _check_changed_folders(
    con: duckdb.DuckDBPyConnection, layout: ArchiveLayout, changed: set[str]
) -> set[str]:
    """Objects listed in the changed fan-out folders whose file (or pack) is not there by name."""
    object_dirs = sorted(k.split("/", 1)[1] for k in changed if k.startswith(f"{layout.objects.name}/"))
    pack_dirs = sorted(k.split("/", 1)[1] for k in changed if k.startswith(f"{layout.packs.name}/"))
    if not object_dirs and not pack_dirs:
        return set()
    rows = con.execute(
        "SELECT sha256, storage_key FROM wb_objects WHERE "
        "(NOT starts_with(storage_key, ?) AND list_contains(?, substr(storage_key, 1, 2))) OR "
        "(starts_with(storage_key, ?) AND list_contains(?, substr(storage_key, ?, 2)))",
        [PACK_PREFIX, object_dirs, PACK_PREFIX, pack_dirs, len(PACK_PREFIX) + 1],
    ).fetchall()
    listings: dict[Path, set[str]] = {}
    damaged: set[str] = set()
    for sha, key in rows:
        path = (
            pack_path(layout.packs, parse_pack_key(key).pack_sha256)
            if is_pack_key(key)
            else layout.objects / key
        )
        if path.parent not in listings:
            listings[path.parent] = _names(path.parent)
        if path.name not in listings[path.parent] and ondemand.remote_size(path) is None:
            damaged.add(sha)
    return damaged


def _names(folder: Path) -> set[str]:
    try:
        return set(os.listdir(folder))
    except OSError:
        return set()


def _size(path: Path) -> int:
    """The size of a stored file here, else in the bucket of an s3:// archive (-1: nowhere)."""
    try:
        return path.stat().st_size
    except OSError:
        size = ondemand.remote_size(path)
        return -1 if size is None else size


def _stamps_path(layout: ArchiveLayout) -> Path:
    return layout.root / "cache" / STAMPS_FILE


def _load_stamps(layout: ArchiveLayout) -> dict[str, int] | None:
    """The folder times of the previous check; None when there is none or it cannot be read."""
    try:
        data = json.loads(_stamps_path(layout).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if (
        not isinstance(data, dict)
        or data.get("format") != STAMPS_FORMAT
        or not isinstance(data.get("folders"), dict)
    ):
        return None
    folders: dict[str, int] = data["folders"]
    if not all(isinstance(k, str) and isinstance(v, int) for k, v in folders.items()):
        return None
    return folders


def _save_stamps(layout: ArchiveLayout, stamps: dict[str, int] | None) -> None:
    """Keep the folder times this check started from (a cache: losing it only costs a full check)."""
    path = _stamps_path(layout)
    temp = path.with_name(f".{STAMPS_FILE}.{os.getpid()}.part")
    try:
        if stamps is None:
            path.unlink(missing_ok=True)
            return
        path.parent.mkdir(exist_ok=True)
        temp.write_text(json.dumps({"format": STAMPS_FORMAT, "folders": stamps}), encoding="utf-8")
        os.replace(temp, path)
    except OSError:
        for leftover in (temp, path):
            try:
                leftover.unlink(missing_ok=True)
            except OSError:
                pass
