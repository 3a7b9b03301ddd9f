"""Stored files that live in a bucket and are fetched when first read (the cache of an s3:// archive).

A machine's cache of an ``s3://`` archive does not hold every object and pack: other machines'
are never downloaded until something reads them, and its own are dropped once they are in the
bucket (`remote.py`). The store's read paths call `fetch_missing(path)` before opening a file and
its cheap presence checks ask `remote_size(path)` when the file is not on disk; both return at
once (one truth test) when no remote session is open, so a folder archive is unaffected.
Every committed writing transaction calls `committed(root)`, so the session can upload it while
the job goes on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol


class Source(Protocol):
    def fetch(self, key: str, target: Path) -> bool: ...

    def remote_size(self, key: str) -> int | None: ...

    def committed(self) -> None: ...


_SOURCES: dict[Path, Source] = {}


def register(root: Path, source: Source) -> None:
    _SOURCES[root.absolute()] = source


def unregister(root: Path) -> None:
    _SOURCES.pop(root.absolute(), None)


def _find(path: Path) -> tuple[Source, str] | None:
    for root, source in _SOURCES.items():
        if path.is_relative_to(root):
            return source, path.relative_to(root).as_posix()
    return None


def fetch_missing(path: Path) -> None:
    """Download `path` from the bucket when it is not on disk and belongs to an open session."""
    if not _SOURCES or path.exists():
        return
    found = _find(path.absolute())
    if found is not None:
        found[0].fetch(found[1], path)


def remote_size(path: Path) -> int | None:
    """The size of `path`'s key in the bucket of an open session (None: no session, or not there)."""
    if not _SOURCES:
        return None
    found = _find(path.absolute())
    return None if found is None else found[0].remote_size(found[1])


def committed(root: Path) -> None:
    """A writing transaction of the archive at `root` committed (its record is on disk)."""
    if not _SOURCES:
        return
    source = _SOURCES.get(root.absolute())
    if source is not None:
        source.committed()
