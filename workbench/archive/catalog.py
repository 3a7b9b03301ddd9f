"""The DuckDB catalog: where it lives, how to open it briefly, how it is upgraded.

DuckDB lets one process write a database file (or several read it). A scheduled job and a
notebook must not break each other, so every connection here is short-lived and opening retries
with backoff; when it finally gives up, the message names the process holding the file.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from workbench.archive.schema import LATEST_VERSION, MIGRATIONS
from workbench.errors import ArchiveBusyError, ArchiveError, ConfigError

DEFAULT_ARCHIVE = Path("data/archive")
DURABLE_STEP = 6  # the schema step from which every change is also written to records/
CATALOG_FILE = "catalog.duckdb"


@dataclass(frozen=True)
class ArchiveLayout:
    """Every path inside one archive folder."""

    root: Path

    @property
    def catalog(self) -> Path:
        return self.root / CATALOG_FILE

    @property
    def objects(self) -> Path:
        return self.root / "objects"

    @property
    def packs(self) -> Path:
        return self.root / "packs"

    @property
    def manifests(self) -> Path:
        return self.root / "manifests"

    @property
    def records(self) -> Path:
        return self.root / "records"

    @property
    def snapshots(self) -> Path:
        return self.root / "snapshots"

    @property
    def damaged(self) -> Path:
        """Where `repair` keeps a damaged catalog it replaced (never deleted by workbench)."""
        return self.root / "damaged"

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    @property
    def lock(self) -> Path:
        return self.root / ".workbench.lock"

    @classmethod
    def at(cls, root: Path | str | None) -> ArchiveLayout:
        path = Path(root if root is not None else DEFAULT_ARCHIVE).absolute()
        if path.exists() and not path.is_dir():
            raise ConfigError(f"archive {path} is a file, not a folder; pass --archive DIR (created if missing)")
        return cls(path)


def new_archive_note(archive: Path | str | None) -> str | None:
    """A note for commands that may create an archive: None when one is already there.

    Why: a mistyped `--archive` would otherwise silently start a second, empty archive.
    """
    layout = ArchiveLayout.at(archive)
    if layout.catalog.exists():
        return None
    return f"no archive existed at {layout.root}: a new one was created there (check --archive if you meant another)"


def utc_now() -> datetime:
    return datetime.now(UTC)


_HOLDER_RE = re.compile(r"Conflicting lock is held in (?P<prog>.+?) \(PID (?P<pid>\d+)\)(?: by user (?P<user>\S+))?")


def describe_lock_holder(message: str) -> str:
    """Turn DuckDB's lock-conflict message into 'PID n (program)' for people."""
    match = _HOLDER_RE.search(message)
    if not match:
        return "another process"
    return f"PID {match['pid']} ({match['prog']})"


def _is_lock_conflict(exc: BaseException) -> bool:
    text = str(exc)
    return "Could not set lock" in text or "Conflicting lock" in text


def _connect_with_retry(path: Path, *, read_only: bool, timeout_s: float) -> duckdb.DuckDBPyConnection:
    deadline = time.monotonic() + timeout_s
    delay = 0.05
    while True:
        try:
            return duckdb.connect(str(path), read_only=read_only)
        except duckdb.IOException as exc:
            if not _is_lock_conflict(exc):
                raise ArchiveError(f"cannot open catalog {path}: {exc}") from exc
            if time.monotonic() + delay > deadline:
                holder = describe_lock_holder(str(exc))
                raise ArchiveBusyError(
                    f"catalog {path} is held by {holder} for more than {timeout_s:.0f} s; "
                    "close the notebook kernel or job that holds it, or retry later"
                ) from exc
            time.sleep(delay)
            delay = min(delay * 2, 1.0)


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
    con = _connect_with_retry(layout.catalog, read_only=read_only, timeout_s=timeout_s)
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
    finally:
        con.close()


def fetch_one(
    con: duckdb.DuckDBPyConnection, sql: str, params: Sequence[Any] | None = None
) -> tuple[Any, ...] | None:
    """The first row or None, with the result fully consumed (DuckDB refuses new work otherwise)."""
    result = con.execute(sql, params or []).fetchall()
    return result[0] if result else None


def inline_reader(con: duckdb.DuckDBPyConnection) -> Callable[[str], bytes | None]:
    """Read small objects kept in the catalog (see store.py) through an open connection."""

    def read(sha256: str) -> bytes | None:
        row = fetch_one(con, "SELECT data FROM wb_inline_objects WHERE sha256 = ?", [sha256])
        return bytes(row[0]) if row else None

    return read


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
            con.execute("ROLLBACK")
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


def fetch_frame(
    con: duckdb.DuckDBPyConnection, sql: str, params: Sequence[Any] | Mapping[str, Any] | None = None
) -> pl.DataFrame:
    """One query's result as a Polars frame (through Arrow, no pandas)."""
    relation = con.sql(sql, params=params) if params else con.sql(sql)
    frame = pl.from_arrow(relation.to_arrow_table())
    assert isinstance(frame, pl.DataFrame)
    return frame
