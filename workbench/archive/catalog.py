"""The DuckDB catalog: where it lives, how to open it briefly, how it is upgraded.

DuckDB lets one process write a database file (or several read it). A scheduled job and a
notebook must not break each other, so every connection here is short-lived and opening retries
with backoff; when it finally gives up, the message names the process holding the file.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from workbench.archive.db import fetch_frame, fetch_one, rollback_quietly
from workbench.archive.layout import CATALOG_FILE, ArchiveLayout
from workbench.archive.schema import LATEST_VERSION, MIGRATIONS
from workbench.errors import ArchiveBusyError, ArchiveError, CatalogCorruptError

DURABLE_STEP = 6  # the schema step from which every change is also written to records/
_HOLDER_RE = re.compile(
    r"Conflicting lock is held in (?P<prog>.+?) \(PID (?P<pid>\d+)\)(?: by user (?P<user>\S+))?"
)


def describe_lock_holder(message: str) -> str:
    """Turn DuckDB's lock-conflict message into 'PID n (program)' for people."""
    match = _HOLDER_RE.search(message)
    if not match:
        return "another process"
    return f"PID {match['pid']} ({match['prog']})"


def _is_lock_conflict(exc: BaseException) -> bool:
    text = str(exc)
    return "Could not set lock" in text or "Conflicting lock" in text


# What DuckDB 2.0.1 raises for a damaged file (found by damaging real catalogs, see
# tests/test_catalog_damage.py):
# * header overwritten, not a DuckDB file, empty file: IOException "... exists, but it is not a
#   valid DuckDB database file!" at connect;
# * a changed byte in a database header or a block in use: plain duckdb.Error "Corrupt database
#   file: computed checksum X does not match stored checksum Y in block at location N", at connect
#   (headers, catalog metadata) or when a query reads the block;
# * file cut short: IOException "Could not read enough bytes from file ...: attempted to read N
#   bytes from location M" (at connect when the headers are gone, else when the block is read);
# * a damaged block met by a checkpoint: FatalException "Failed to create checkpoint because of
#   error: <one of the above>"; every later use of that database instance: FatalException
#   "database has been invalidated ... Original error: \"<the fatal error>\"".
_UNWRAP_RES = (
    re.compile(r'Original error: "(?P<inner>.*)"\s*$', re.S),
    re.compile(r"because of error: (?P<inner>.*)$", re.S),
)
_CHECKSUM_RE = re.compile(
    r"computed checksum \d+ does not match stored checksum \d+ in block at location (?P<at>\d+)"
)
_SHORT_READ_RE = re.compile(
    r"Could not read enough bytes from file .*attempted to read \d+ bytes from location (?P<at>\d+)"
)
_DAMAGE_WORDS = (
    "checksum",
    "corrupt",
    "not a valid duckdb database",
    "truncated",
    "file size",
    "could not read enough bytes",
    "deserializ",
    "invalid block",
    "serialization error",
)
_NOT_DAMAGE_WORDS = (
    "no space left",
    "disk quota",
    "permission denied",
    "read-only file system",
    "input/output error",
    "out of memory",
    "could not set lock",
    "conflicting lock",
)
_DAMAGE_TYPES: tuple[type[BaseException], ...] = tuple(
    t
    for t in (
        getattr(duckdb, n, None)
        for n in ("InternalException", "FatalException", "SerializationException", "CorruptionError")
    )
    if isinstance(t, type)
)
_QUERY_ERRORS = (duckdb.ProgrammingError, duckdb.IntegrityError, duckdb.DataError)
"""Binder, parser, catalog, constraint and conversion errors: the query's fault, whatever their text says."""
DUCKDB_HEADER_BYTES = 3 * 4096
"""DuckDB 1.x/2.x files start with a main header and two database headers of 4 KiB each."""
REPAIR_COMMAND = "workbench repair --archive"


def _innermost(text: str) -> str:
    """DuckDB wraps the cause of a fatal error (and of an invalidated database) in its message."""
    for _ in range(4):
        for pattern in _UNWRAP_RES:
            match = pattern.search(text)
            if match:
                text = match["inner"]
                break
        else:
            return text
    return text


def first_line(text: str, limit: int = 160) -> str:
    line = next((part.strip() for part in text.splitlines() if part.strip()), "").rstrip("!.")
    return line if len(line) <= limit else line[: limit - 3] + "..."


def describe_damage(exc: BaseException) -> str | None:
    """A short description of what is wrong when `exc` says the catalog file is damaged, else None.

    Lock conflicts, full disks, permissions and ordinary SQL errors are not damage (None).
    """
    if not isinstance(exc, duckdb.Error) or isinstance(exc, _QUERY_ERRORS):
        return None
    inner = _innermost(str(exc))
    low = inner.lower()
    if any(word in low for word in _NOT_DAMAGE_WORDS):
        return None
    if "not a valid duckdb database" in low:
        return "not a DuckDB database file"
    match = _CHECKSUM_RE.search(inner)
    if match:
        at = int(match["at"])
        where = "a file header" if at < DUCKDB_HEADER_BYTES else f"byte {at:,}"
        return f"block checksum mismatch at {where}"
    match = _SHORT_READ_RE.search(inner)
    if match:
        return f"file truncated (a block at byte {int(match['at']):,} lies past its end)"
    if any(word in low for word in _DAMAGE_WORDS) or isinstance(exc, _DAMAGE_TYPES):
        return f"DuckDB: {first_line(inner)}"
    return None


def damage_in_chain(exc: BaseException) -> str | None:
    """`describe_damage` of `exc` or of an error it was raised while handling.

    Why: after a statement meets a bad block, cleanup code (ROLLBACK, unregister) on the same
    connection fails with "Current transaction is aborted"; the damage is the earlier error.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        what = describe_damage(current)
        if what is not None:
            return what
        current = current.__cause__ or current.__context__
    return None


def corrupt_catalog_error(catalog: Path, what: str) -> CatalogCorruptError:
    """The one-line error for a damaged catalog: the file, what is wrong, the command that repairs it."""
    what = " ".join(what.split())
    return CatalogCorruptError(
        f"catalog {catalog} is damaged: {what}; run `{REPAIR_COMMAND} {catalog.parent}` to rebuild it"
    )


def connect_catalog_file(path: Path, *, read_only: bool, timeout_s: float) -> duckdb.DuckDBPyConnection:
    """Connect to a DuckDB file, retrying while another process holds it; damage → `CatalogCorruptError`."""
    deadline = time.monotonic() + timeout_s
    delay = 0.05
    while True:
        try:
            con = duckdb.connect(str(path), read_only=read_only)
        except duckdb.Error as exc:
            if not _is_lock_conflict(exc):
                what = describe_damage(exc)
                if what is not None:
                    raise corrupt_catalog_error(path, what) from exc
                raise ArchiveError(f"cannot open catalog {path}: {first_line(str(exc), 300)}") from exc
            if time.monotonic() + delay > deadline:
                holder = describe_lock_holder(str(exc))
                raise ArchiveBusyError(
                    f"catalog {path} is held by {holder} for more than {timeout_s:.0f} s; "
                    "close the notebook kernel or job that holds it, or retry later"
                ) from exc
            time.sleep(delay)
            delay = min(delay * 2, 1.0)
            continue
        con.execute(
            "SET enable_progress_bar = false"
        )  # a long query would draw one into cron logs and notebooks
        return con


@contextmanager
def open_catalog(
    archive: Path | str | None = None,
    *,
    read_only: bool = False,
    timeout_s: float | None = None,
    create: bool = False,
) -> Iterator[duckdb.DuckDBPyConnection]:
    """Open the catalog briefly; upgrade its schema when opened for writing.

    `timeout_s` is how long to retry while another process holds the file: by default
    ``WORKBENCH_CATALOG_TIMEOUT_S`` seconds when set, else 60.

    `create=True` makes a new archive folder and catalog if none exists; otherwise a missing
    catalog is an error that says how to make one.
    """
    layout = ArchiveLayout.at(archive)
    if not layout.catalog.exists():
        if not create:
            raise ArchiveError(
                f"no archive at {layout.root} (missing {CATALOG_FILE}); "
                "run `workbench archive --archive DIR ...` first, or pass the right --archive"
            )
        layout.root.mkdir(parents=True, exist_ok=True)
        read_only = False
    if timeout_s is None:
        timeout_s = float(os.environ.get("WORKBENCH_CATALOG_TIMEOUT_S") or 60.0)
    con = connect_catalog_file(layout.catalog, read_only=read_only, timeout_s=timeout_s)
    try:
        if read_only:
            check_schema_version(con, layout.catalog)
        else:
            applied = migrate(con)
            if DURABLE_STEP in applied and 1 not in applied:
                # an archive written before records: make it self-describing once (journal.py)
                from workbench.archive.journal import write_baseline

                write_baseline(con, layout)
        yield con
    except duckdb.Error as exc:  # also what the caller's block raised: damage met mid-query is damage too
        what = damage_in_chain(exc)
        if what is None:
            raise
        raise corrupt_catalog_error(layout.catalog, what) from exc
    finally:
        try:
            con.close()
        except duckdb.Error:  # an invalidated database may refuse; the error that got us here matters
            pass


def schema_version(con: duckdb.DuckDBPyConnection) -> int:
    """The version a catalog was brought to, 0 for an empty file."""
    has_meta = fetch_one(con, "SELECT count(*) FROM information_schema.tables WHERE table_name = 'wb_meta'")
    if not has_meta or has_meta[0] == 0:
        return 0
    row = fetch_one(con, "SELECT value FROM wb_meta WHERE key = 'schema_version'")
    return int(row[0]) if row else 0


def check_schema_version(con: duckdb.DuckDBPyConnection, path: Path) -> None:
    version = schema_version(con)
    if version > LATEST_VERSION:
        raise ArchiveError(
            f"catalog {path} has schema version {version}, newer than this workbench "
            f"({LATEST_VERSION}); upgrade workbench"
        )
    if version < LATEST_VERSION:
        raise ArchiveError(
            f"catalog {path} has schema version {version}, older than {LATEST_VERSION}; "
            "run any writing command (e.g. `workbench archive --mode incremental`) to upgrade it"
        )


def migrate(con: duckdb.DuckDBPyConnection, *, target: int = LATEST_VERSION) -> list[int]:
    """Apply the missing migration steps in order; return the steps applied."""
    current = schema_version(con)
    if current > LATEST_VERSION:
        raise ArchiveError(
            f"catalog has schema version {current}, newer than this workbench ({LATEST_VERSION})"
        )
    applied: list[int] = []
    for step in sorted(v for v in MIGRATIONS if current < v <= target):
        con.execute("BEGIN TRANSACTION")
        try:
            con.execute(MIGRATIONS[step])
            con.execute(
                "INSERT INTO wb_meta VALUES ('schema_version', ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                [str(step)],
            )
            con.execute("COMMIT")
        except Exception:
            rollback_quietly(con)
            raise
        applied.append(step)
    return applied


def read_frame(
    archive: Path | str | None,
    sql: str,
    params: Sequence[Any] | Mapping[str, Any] | None = None,
    *,
    timeout_s: float = 30.0,
) -> pl.DataFrame:
    """Run one query on a read-only connection and return a Polars frame; the file is released."""
    with open_catalog(archive, read_only=True, timeout_s=timeout_s) as con:
        return fetch_frame(con, sql, params)
