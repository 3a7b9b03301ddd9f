"""Which writer of a shared archive this process is: the part of the catalog that is its own.

A folder archive has one writer, so its incremental cursor is simply ``registry``. An archive in
a bucket (`remote.py`) has one writer per machine, each with its own RD-Agent registry and its
own cursor into it; the catalog that every machine rebuilds holds all of them. While a remote
session runs, `writer()` names this machine's cache (set by `remote.py`), and the cursor is
``registry@<writer>``: another machine's records never move this machine's cursor.
"""

from __future__ import annotations

_WRITER: list[str] = []


def writer() -> str | None:
    """The writer id of the innermost remote session, or None for a folder archive."""
    return _WRITER[-1] if _WRITER else None


def push_writer(name: str) -> None:
    _WRITER.append(name)


def pop_writer() -> None:
    if _WRITER:
        _WRITER.pop()


def scoped(name: str) -> str:
    """`name`, qualified by the current writer when there is one."""
    current = writer()
    return f"{name}@{current}" if current else name
