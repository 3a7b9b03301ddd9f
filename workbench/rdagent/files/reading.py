"""Safe reading of untrusted files: regular files only, links refused, sizes bounded, reads recorded.

Every reader of an RD-Agent file, and the archive's store when it copies a kept file, opens it
through `open_regular_file`: an installation is untrusted input, and a FIFO, a device, a link
out of the workspace or a file bigger than its kind's limit must never hang, escape or exhaust
memory. `recording_reads` lets the archive prove that the rows it writes describe the bytes it keeps.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

from workbench.errors import InputFileError
from workbench.rdagent.files.limits import TABLE_PARQUET, FileKind, MiB, too_big_hint

#: Limit of `read_file_bytes` when no kind is given: the largest per-kind limit (`limits.py`).
#: Every reader passes its own kind's, smaller limit.
DEFAULT_MAX_BYTES = TABLE_PARQUET.max_bytes


def open_regular_file(path: Path, *, follow_links: bool = False) -> int:
    """A file descriptor of `path`, which must be a regular file (never a FIFO, device or socket).

    Why: opening a FIFO blocks forever and a device can be endless; a workspace file that is a
    symbolic link may point anywhere on the machine. So the open is non-blocking, refuses a link
    as the last component (unless `follow_links`, for files a user names on the command line),
    and the kind of file is checked on the open descriptor, not on the name.
    """
    path = Path(path)
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    if not follow_links:
        flags |= getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise InputFileError(path, "file does not exist") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP or (not follow_links and path.is_symlink()):
            raise InputFileError(
                path,
                "is a symbolic link; links in a workspace are never followed",
                hint="replace the link by the file itself if it belongs to the workspace",
            ) from None
        raise InputFileError(path, f"cannot open file: {exc.strerror}") from exc
    try:
        mode = os.fstat(fd).st_mode
    except OSError as exc:
        os.close(fd)
        raise InputFileError(path, f"cannot stat file: {exc.strerror}") from exc
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise InputFileError(path, f"not a regular file ({_file_kind(mode)}); it is never read")
    return fd


def _file_kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def read_file_bytes(
    path: Path,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    follow_links: bool = False,
    kind: FileKind | None = None,
) -> bytes:
    """The bytes of a regular file no bigger than `max_bytes` (links refused unless `follow_links`).

    The size is checked on the open descriptor before anything is read, and at most
    `max_bytes + 1` bytes are read, so a huge (or growing) file never reaches memory. `kind`
    names the file kind in the refusal (`limits.py`).
    """
    path = Path(path)
    fd = open_regular_file(path, follow_links=follow_links)
    with os.fdopen(fd, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        if size > max_bytes:
            raise _too_big(path, size, max_bytes, kind)
        try:
            data = fh.read(max_bytes + 1)
        except OSError as exc:
            raise InputFileError(path, f"cannot read file: {exc.strerror}") from exc
    if len(data) > max_bytes:
        raise InputFileError(path, f"file grew beyond the limit of {max_bytes} bytes while being read")
    _record_read(path, data)
    return data


def _too_big(path: Path, size: int, max_bytes: int, kind: FileKind | None) -> InputFileError:
    what = f" for a {kind.label}" if kind else ""
    hint = too_big_hint(kind) if kind else "raise max_bytes to read it"
    return InputFileError(
        path, f"file is {format_size(size)}, more than the limit of {format_size(max_bytes)}{what}", hint=hint
    )


def format_size(n: int) -> str:
    """`812 bytes`, `4 MiB (4,194,304 bytes)`: readable, and exact for comparing with `ls -l`."""
    if n < MiB:
        return f"{n:,} bytes"
    mib = f"{n // MiB}" if n % MiB == 0 else f"{n / MiB:.1f}"
    return f"{mib} MiB ({n:,} bytes)"


# --------------------------------------------------------------------------- what a reader saw

_READS: ContextVar[tuple[dict[str, str], ...]] = ContextVar("workbench_reads", default=())


@contextmanager
def recording_reads() -> Iterator[dict[str, str]]:
    """Collect `{absolute path: sha256 of the bytes read}` for every file read inside the block.

    Why: the archive parses a file once and stores it later; comparing the stored hash with the
    parsed one proves the catalog rows describe the very bytes that were kept.
    """
    seen: dict[str, str] = {}
    token = _READS.set((*_READS.get(), seen))  # nested blocks: the outer ones see the reads too
    try:
        yield seen
    finally:
        _READS.reset(token)


def _record_read(path: Path, data: bytes) -> None:
    recorders = _READS.get()
    if recorders:
        digest = hashlib.sha256(data).hexdigest()
        for seen in recorders:
            seen[os.path.abspath(path)] = digest


def decode_utf8(data: bytes, path: Path) -> str:
    """UTF-8 text (a leading BOM is dropped), else an error naming the first bad byte offset."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputFileError(
            path, f"not UTF-8 text at byte {exc.start}", hint="RD-Agent writes UTF-8; the file may be damaged"
        ) from None
    return text[1:] if text.startswith("\ufeff") else text


def read_text_file(path: Path, *, max_bytes: int = DEFAULT_MAX_BYTES, kind: FileKind | None = None) -> str:
    """A size-checked UTF-8 text file."""
    return decode_utf8(read_file_bytes(path, max_bytes=max_bytes, kind=kind), Path(path))
