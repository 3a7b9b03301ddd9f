"""Storage errors: a full, over-quota or failing disk turned into the project's own one-line errors.

`storage_error` recognises ``OSError`` with errno ENOSPC, EDQUOT or EIO, and DuckDB (or any other)
errors whose text says "No space left on device", "Disk quota exceeded" or "Input/output error",
also when they are the cause of another error; it returns `StorageFullError` (exit 10) or
`StorageIOError` (exit 11) with a message that says what was being written, where, and how much
space the file system has left (and how much the write needed, when known).

`storage_errors(...)` is the context manager (also usable as a decorator) that writing jobs wrap
around their work, so any such error anywhere inside ends the job with that message.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from workbench.errors import RemoteArchiveError, StorageFullError, StorageIOError, WorkbenchError

FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
IO_ERRNOS = frozenset({errno.EIO})
_TEXTS = (
    ("No space left on device", errno.ENOSPC),
    ("Disk quota exceeded", errno.EDQUOT),
    ("Input/output error", errno.EIO),
)
_QUOTED_PATH = re.compile(r"\"(/[^\"]+)\"|'(/[^']+)'")
_WANTED = re.compile(r"wanted[= ](\d+)")


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """`exc` and what caused it (`__cause__`; also `__context__` of errors that are not ours)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen and len(seen) < 12:
        seen.add(id(current))
        yield current
        following = current.__cause__
        if following is None and not isinstance(current, WorkbenchError) and not current.__suppress_context__:
            following = current.__context__
        current = following


def storage_errno(exc: BaseException) -> int | None:
    """ENOSPC, EDQUOT or EIO when `exc` (or its cause) is a full, over-quota or failing disk, else None."""
    for item in _chain(exc):
        if isinstance(item, StorageFullError):
            return errno.ENOSPC
        if isinstance(item, StorageIOError):
            return errno.EIO
        if isinstance(item, OSError) and item.errno in FULL_ERRNOS | IO_ERRNOS:
            return item.errno
        text = str(item)
        for phrase, code in _TEXTS:
            if phrase in text:
                return code
    return None


def format_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"  # pragma: no cover


def free_space(path: Path | str | None) -> tuple[int, int] | None:
    """(free, total) bytes of the file system holding `path` (its nearest existing parent), if known."""
    if path is None:
        return None
    current = Path(path)
    while not current.exists() and current != current.parent:
        current = current.parent
    try:
        usage = shutil.disk_usage(current)
    except OSError:
        return None
    return usage.free, usage.total


def _path_of(exc: BaseException) -> str | None:
    for item in _chain(exc):
        if isinstance(item, OSError) and item.filename:
            return os.fsdecode(item.filename)
        match = _QUOTED_PATH.search(str(item))
        if match:
            return match.group(1) or match.group(2)
    return None


def _needed_of(exc: BaseException) -> int | None:
    for item in _chain(exc):
        match = _WANTED.search(str(item))
        if match:
            return int(match.group(1))
    return None


def storage_error(
    exc: BaseException,
    *,
    writing: str = "data",
    path: Path | str | None = None,
    archive: Path | str | None = None,
    needed: int | None = None,
    hint: str = "",
) -> StorageFullError | StorageIOError | None:
    """The project error for `exc` when it is a storage fault, else None (an existing one is returned as is).

    `writing` says what was being written, `path` where (the error's own file name wins), `archive`
    which folder's file system to report the free space of, `needed` how many bytes the write
    needed; `hint` is appended (e.g. how to recover).
    """
    if isinstance(exc, StorageFullError | StorageIOError):
        return exc
    if isinstance(exc, RemoteArchiveError):  # the bucket's trouble, not this machine's disk
        return None
    code = storage_errno(exc)
    if code is None:
        return None
    where = (
        _path_of(exc)
        or (os.fspath(path) if path is not None else None)
        or (os.fspath(archive) if archive is not None else None)
    )  # a failed write() names no file
    needed = needed if needed is not None else _needed_of(exc)
    target = f" to {where}" if where else ""
    tail = f"; {hint}" if hint else ""
    if code == errno.EIO:
        return StorageIOError(
            f"I/O error (EIO) writing {writing}{target}: the disk or file system reported a hardware or "
            f"driver error; check it (dmesg, fsck), then run `workbench verify` and rerun{tail}"
        )
    usage = free_space(archive if archive is not None else where)
    space = f", {format_size(usage[0])} free of {format_size(usage[1])}" if usage else ""
    need = f", {format_size(needed)} needed" if needed else ""
    what = "disk quota exceeded (EDQUOT)" if code == errno.EDQUOT else "no space left on device (ENOSPC)"
    action = "raise the quota or free space" if code == errno.EDQUOT else "free space"
    return StorageFullError(f"{what} writing {writing}{target}{need}{space}; {action} and rerun{tail}")


@contextmanager
def storage_errors(
    writing: str,
    *,
    path: Path | str | None = None,
    archive: Path | str | None = None,
    needed: int | None = None,
    hint: str = "",
) -> Iterator[None]:
    """Turn any storage fault raised inside the block into `StorageFullError` / `StorageIOError`."""
    try:
        yield
    except (StorageFullError, StorageIOError):
        raise
    except Exception as exc:
        error = storage_error(exc, writing=writing, path=path, archive=archive, needed=needed, hint=hint)
        if error is None:
            raise
        raise error from exc


def one_line(message: str) -> str:
    """A message on one line (DuckDB's texts span several)."""
    return " ".join(message.split())
