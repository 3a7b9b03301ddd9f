"""Read-only, one-snapshot reader of RD-Agent's `registry.sqlite` (spec §2).

Why it is careful:

* RD-Agent (and its offline tools) may be writing while we read, in WAL mode. All tables are read
  inside one read transaction, so a snapshot never mixes two commits.
* The reader must not change the installation, not even its `-shm`: an SQLite reader of a live
  WAL database records read marks there (and creates `-wal`/`-shm` when they are missing). So:
  a WAL database without a WAL file is quiescent and is read in place with `immutable=1` (no side
  files, no locks), then checked unchanged; a WAL database with a WAL file is read from a private
  copy of the main file and the WAL (SQLite recovers the copy the way it recovers after a crash:
  committed frames only). The copy is retried if the WAL was restarted or the main file was
  checkpointed while it was copied. A rollback-journal database is read in place with `mode=ro`,
  which only takes a shared lock.
* Columns differ between schema generations (§2.3): columns are selected by name, absent
  tables/columns come back as nulls of the canonical type, and SQLite's loose typing
  (`has_result = '1'`) is normalised.
"""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import polars as pl

from workbench.errors import RegistryError

TableName = Literal["task_runs", "loops", "workspaces", "artifacts", "artifact_files", "factor_registry"]

_S, _I, _F = pl.String, pl.Int64, pl.Float64

#: Canonical columns: all HEAD columns of spec §2.2, in HEAD order, with their Polars types.
SCHEMA: dict[str, tuple[tuple[str, Any], ...]] = {
    "task_runs": (
        ("task_run_id", _S),
        ("scenario", _S),
        ("status", _S),
        ("created_at_utc", _S),
        ("updated_at_utc", _S),
        ("git_sha", _S),
        ("rdagent_version", _S),
        ("log_trace_path", _S),
        ("params_json", _S),
    ),
    "loops": (
        ("task_run_id", _S),
        ("loop_id", _I),
        ("action", _S),
        ("status", _S),
        ("has_result", _I),
        ("best_workspace_id", _S),
        ("started_at_utc", _S),
        ("ended_at_utc", _S),
        ("error_type", _S),
        ("error_message", _S),
        ("ic_mean", _F),
        ("rank_ic_mean", _F),
        ("ann_return", _F),
        ("mdd", _F),
        ("turnover", _F),
        ("multi_score", _F),
        ("metrics_json", _S),
        ("log_dir", _S),
        ("materialization_status", _S),
        ("materialization_error", _S),
        ("materialization_updated_at_utc", _S),
        ("asset_bundle_id", _S),
        ("is_solidified", _I),
        ("sync_status", _S),
        ("updated_at_utc", _S),
    ),
    "workspaces": (
        ("workspace_id", _S),
        ("task_run_id", _S),
        ("loop_id", _I),
        ("workspace_role", _S),
        ("experiment_type", _S),
        ("step_name", _S),
        ("status", _S),
        ("workspace_path", _S),
        ("meta_path", _S),
        ("summary_path", _S),
        ("manifest_path", _S),
        ("created_at_utc", _S),
        ("updated_at_utc", _S),
    ),
    "artifacts": (
        ("artifact_id", _S),
        ("task_run_id", _S),
        ("loop_id", _I),
        ("workspace_id", _S),
        ("artifact_type", _S),
        ("name", _S),
        ("version", _S),
        ("status", _S),
        ("primary_flag", _I),
        ("summary_json", _S),
        ("entry_path", _S),
        ("model_type", _S),
        ("model_conf_json", _S),
        ("dataset_conf_json", _S),
        ("feature_schema_json", _S),
        ("created_at_utc", _S),
        ("updated_at_utc", _S),
    ),
    "artifact_files": (
        ("file_id", _S),
        ("artifact_id", _S),
        ("workspace_id", _S),
        ("path", _S),
        ("sha256", _S),
        ("size_bytes", _I),
        ("mtime_utc", _S),
        ("kind", _S),
    ),
    "factor_registry": (
        ("factor_name", _S),
        ("expression", _S),
        ("performance_json", _S),
        ("asset_bundle_id", _S),
        ("workspace_id", _S),
        ("task_run_id", _S),
        ("loop_id", _I),
        ("updated_at_utc", _S),
    ),
}
TABLES: tuple[str, ...] = tuple(SCHEMA)
#: Loop timestamps used by the incremental cursor, most specific first.
_LOOP_TIME_COLUMNS = ("updated_at_utc", "ended_at_utc", "started_at_utc")
_TRANSIENT_CODES = {sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_PROTOCOL}
_SQLITE_MAGIC = b"SQLite format 3\x00"


@dataclass(frozen=True, eq=False)
class RegistrySnapshot:
    """All registry tables as read in one transaction, with canonical columns.

    `source_columns` says which canonical columns the file really has per table (empty for a
    missing table), so callers can tell "NULL" from "column absent" (V1 vs HEAD).
    `max_rowid`/`max_updated_at` are the incremental cursor of the whole `loops` table in this
    same snapshot (max `rowid`, max `coalesce(updated_at_utc, ended_at_utc, started_at_utc)`).
    """

    task_runs: pl.DataFrame
    loops: pl.DataFrame
    workspaces: pl.DataFrame
    artifacts: pl.DataFrame
    artifact_files: pl.DataFrame
    factor_registry: pl.DataFrame
    source_columns: Mapping[str, tuple[str, ...]]
    max_rowid: int
    max_updated_at: str | None


@dataclass(frozen=True)
class _Since:
    rowid: int
    updated_at: str | None
    also: tuple[tuple[str, int], ...] = ()  # (task_run_id, loop_id) read whatever their rowid


class _Retry(Exception):
    """A transient condition: read again after a pause (message kept for the final error)."""

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.hint = hint


def read_registry(path: Path, *, timeout_s: float = 10.0) -> RegistrySnapshot:
    """Read every registry table in one consistent snapshot, never writing anything."""
    return _with_retry(Path(path), timeout_s, lambda con, cols: _read_all(con, cols, since=None))


#: at most this many `also` loops are named in one query (SQLite's bound-parameter limit is 32,766)
MAX_ALSO = 2000


def read_loops_changed_since(
    path: Path,
    *,
    rowid: int,
    updated_at: str | None,
    also: Iterable[tuple[str, int]] = (),
    timeout_s: float = 10.0,
) -> RegistrySnapshot:
    """Only loops with `rowid > rowid` or a newer timestamp (and the `also` loops, at most
    `MAX_ALSO`), plus the rows belonging to them.

    Workspaces, artifacts, factor_registry rows are those with the same `(task_run_id, loop_id)`;
    artifact_files those of the selected artifacts; task_runs those of the selected loops. The
    cursor fields of the result cover the whole loops table, for the next call.
    """
    keys = tuple(sorted(set(also)))
    if len(keys) > MAX_ALSO:
        raise ValueError(f"at most {MAX_ALSO} loops can be named; read the whole registry instead")
    since = _Since(int(rowid), updated_at, keys)
    return _with_retry(Path(path), timeout_s, lambda con, cols: _read_all(con, cols, since=since))


def registry_max_cursor(path: Path, *, timeout_s: float = 10.0) -> tuple[int, str | None]:
    """`(max loops rowid, max loop timestamp)` — the cursor a full read would end at."""

    def read(con: sqlite3.Connection, columns: dict[str, list[str]]) -> tuple[int, str | None]:
        return _cursor(con, columns)

    return _with_retry(Path(path), timeout_s, read)


# --------------------------------------------------------------------------- opening and retrying

_T = TypeVar("_T")
# What runs inside one read transaction: `body(con, columns)`, columns being each table's column names.
_Body = Callable[[sqlite3.Connection, dict[str, list[str]]], _T]


def _with_retry(path: Path, timeout_s: float, body: _Body[_T]) -> _T:
    """Run `body(con, columns)` in one read transaction; retry transient failures until timeout_s."""
    _check_file(path)
    deadline = time.monotonic() + max(0.0, timeout_s)
    delay = 0.02
    while True:
        try:
            return _attempt(path, body, deadline)
        except _Retry as exc:
            last: tuple[str, str] = (str(exc), exc.hint)
        except sqlite3.Error as exc:
            if not _is_transient(exc):
                raise _as_registry_error(path, exc) from exc
            last = (
                f"database busy ({exc})",
                "another program holds the registry; retry later or raise --timeout",
            )
        if time.monotonic() + delay > deadline:
            raise RegistryError(f"registry {path}: {last[0]} after {timeout_s:g} s of retries; {last[1]}")
        time.sleep(delay)
        delay = min(delay * 2, 0.5)


def _attempt(path: Path, body: _Body[_T], deadline: float) -> _T:
    mode = _open_mode(path)
    if mode == "copy":
        with tempfile.TemporaryDirectory(prefix="workbench-registry-") as scratch:
            copy = _copy_wal_database(path, Path(scratch))
            return _query(copy, "mode=rw", body, deadline)  # the private copy may be recovered in place
    before = _file_state(path) if mode == "immutable" else None
    result = _query(path, "mode=ro&immutable=1" if mode == "immutable" else "mode=ro", body, deadline)
    if before is not None and _file_state(path) != before:
        raise _Retry(
            "the registry changed while it was read without locks", "a writer started; reading again"
        )
    return result


def _query(path: Path, query: str, body: _Body[_T], deadline: float) -> _T:
    """`body(con, columns)` inside one read transaction on `path` opened with the URI `query`."""
    busy_wait = max(0.05, min(1.0, deadline - time.monotonic()))
    con = sqlite3.connect(
        f"{path.absolute().as_uri()}?{query}", uri=True, timeout=busy_wait, isolation_level=None
    )
    try:
        con.text_factory = _decode_text
        con.execute("BEGIN")
        columns = {table: _table_columns(con, table) for table in TABLES}
        result = body(con, columns)
        con.execute("COMMIT")
    finally:
        con.close()
    return result


def _open_mode(path: Path) -> Literal["ro", "immutable", "copy"]:
    """`ro` for rollback-journal files, `immutable` for a quiescent WAL database, else `copy`."""
    header = _read_header(path)
    if header[18] != 2 and header[19] != 2:
        return "ro"  # rollback-journal database: a read-only reader only takes a shared lock
    if not _side_file(path, "-wal").exists():
        return "immutable"  # everything committed is in the main file; no side file may be created
    return "copy"  # a live WAL: reading in place would write read marks into -shm


def _copy_wal_database(path: Path, into: Path) -> Path:
    """Copy the main file, then the WAL, into `into`; retry if they changed under the copy.

    Why this is a consistent snapshot: while the WAL header (its salts) stays the same, the WAL
    only grows, and SQLite's recovery of the copy keeps exactly the frames up to the last complete
    commit. The main file only changes when a checkpoint copies WAL frames into it, which we
    detect (and retry) although replaying the WAL copy would already repair such pages.
    """
    wal = _side_file(path, "-wal")
    copy = into / "registry.sqlite"
    try:
        before = _wal_pair_state(path)
        shutil.copyfile(path, copy)
        shutil.copyfile(wal, _side_file(copy, "-wal"))
        after = _wal_pair_state(path)
    except FileNotFoundError:
        raise _Retry("the WAL was removed while it was copied", "the writer closed; reading again") from None
    except OSError as exc:
        raise RegistryError(
            f"registry {path} cannot be copied for reading ({exc}); check free space in "
            f"{into.parent} (TMPDIR) and the file's permissions"
        ) from exc
    if after != before:
        raise _Retry("the registry was checkpointed while it was copied", "a writer is busy; reading again")
    return copy


def _wal_pair_state(path: Path) -> tuple[Any, ...]:
    """What must not change while main file and WAL are copied: the main file, the WAL's identity and header."""
    wal = _side_file(path, "-wal")
    st, wst = path.stat(), wal.stat()
    with wal.open("rb") as fh:
        wal_header = fh.read(32)
    return (st.st_ino, st.st_size, st.st_mtime_ns, _read_header(path), wst.st_ino, wal_header)


def _side_file(path: Path, suffix: str) -> Path:
    return path.with_name(path.name + suffix)


def _file_state(path: Path) -> tuple[int, int, int, int, bytes, bool]:
    """What must not change while we read without locks: identity, size, times, header, WAL presence."""
    st = path.stat()
    return (
        st.st_ino,
        st.st_size,
        st.st_mtime_ns,
        st.st_ctime_ns,
        _read_header(path),
        _side_file(path, "-wal").exists(),
    )


def _read_header(path: Path) -> bytes:
    with path.open("rb") as fh:
        return fh.read(100)


def _check_file(path: Path) -> None:
    """Fail early, with a hint, for a missing, empty or non-SQLite file."""
    if not path.exists():
        raise RegistryError(
            f"registry {path} does not exist; check the RD-Agent root or pass --registry PATH"
        )
    if not path.is_file():
        raise RegistryError(f"registry {path} is not a regular file; pass the path of registry.sqlite itself")
    try:
        header = _read_header(path)
    except OSError as exc:
        raise RegistryError(
            f"registry {path} cannot be read ({exc.strerror}); check its permissions"
        ) from exc
    if not header:
        raise RegistryError(
            f"registry {path} is empty (0 bytes); RD-Agent never wrote to it, nothing to read"
        )
    if not header.startswith(_SQLITE_MAGIC) or len(header) < 100:
        raise RegistryError(
            f"registry {path} is not a SQLite database (it starts with {header[:16]!r}); "
            "pass RDagentDB/registry.sqlite of an RD-Agent installation"
        )


def _is_transient(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return (code & 0xFF) in _TRANSIENT_CODES
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def _as_registry_error(path: Path, exc: sqlite3.Error) -> RegistryError:
    code = (getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF
    if code in (sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CORRUPT):
        hint = "the file is damaged or not a registry; restore RDagentDB/registry.sqlite from a backup"
    elif code == sqlite3.SQLITE_CANTOPEN:
        hint = "check that the file and its directory are readable"
    elif code == sqlite3.SQLITE_READONLY:
        hint = "the WAL needs recovery by a writer; open it once with RD-Agent or sqlite3, or read a .backup copy"
    else:
        hint = "copy it with `sqlite3 registry.sqlite '.backup copy.sqlite'` and pass --registry copy.sqlite"
    return RegistryError(f"registry {path} cannot be read: {exc}; {hint}")


def _decode_text(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace")


# --------------------------------------------------------------------------- reading tables


def _table_columns(con: sqlite3.Connection, table: str) -> list[str]:
    """Column names the file really has (empty list if the table is absent)."""
    return [row[1] for row in con.execute(f"PRAGMA table_info({_quote(table)})").fetchall()]


def _has_rowid(con: sqlite3.Connection, table: str) -> bool:
    """False for a WITHOUT ROWID table (no `rowid` to select by)."""
    try:
        con.execute(f"SELECT rowid FROM {_quote(table)} LIMIT 0")
    except sqlite3.OperationalError:
        return False
    return True


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _read_all(
    con: sqlite3.Connection, columns: dict[str, list[str]], *, since: _Since | None
) -> RegistrySnapshot:
    if not any(columns.values()):
        raise RegistryError(
            "the database has none of the registry tables (" + ", ".join(TABLES) + "); "
            "is this RD-Agent's RDagentDB/registry.sqlite?"
        )
    filters = _filters(con, columns, since) if since is not None else {}
    frames = {}
    for table in TABLES:
        where = filters.get(table, ("", []))
        frames[table] = _read_table(con, table, columns[table], where[0], where[1])
    max_rowid, max_updated_at = _cursor(con, columns)
    present = {
        t: tuple(c for c, _ in SCHEMA[t] if c.lower() in {x.lower() for x in columns[t]}) for t in TABLES
    }
    return RegistrySnapshot(
        **frames, source_columns=present, max_rowid=max_rowid, max_updated_at=max_updated_at
    )


def _loop_time_expr(loop_columns: Sequence[str]) -> str | None:
    have = {c.lower() for c in loop_columns}
    present = [c for c in _LOOP_TIME_COLUMNS if c in have]
    if not present:
        return None
    return present[0] if len(present) == 1 else f"coalesce({', '.join(present)})"


def _cursor(con: sqlite3.Connection, columns: dict[str, list[str]]) -> tuple[int, str | None]:
    if not columns["loops"]:
        return 0, None
    time_expr = _loop_time_expr(columns["loops"])
    select = f"max(rowid), max({time_expr})" if time_expr else "max(rowid), NULL"
    max_rowid, max_time = con.execute(f"SELECT {select} FROM loops").fetchone()
    return int(max_rowid or 0), (str(max_time) if max_time is not None else None)


def _filters(
    con: sqlite3.Connection, columns: dict[str, list[str]], since: _Since
) -> dict[str, tuple[str, list[Any]]]:
    """WHERE clauses selecting the changed loops and the rows that belong to them.

    The changed loops' keys are read first (one pass over `loops`); the other tables are then
    asked for those keys only, through their (task_run_id, loop_id) indexes, so a run with
    nothing new costs one pass over `loops` and nothing more.
    """
    never: tuple[str, list[Any]] = ("WHERE 0", [])
    if not columns["loops"]:
        return {t: never for t in TABLES}
    time_expr = _loop_time_expr(columns["loops"])
    if time_expr and since.updated_at is not None:
        changed = f"(rowid > ? OR {time_expr} > ?)"
        params: list[Any] = [since.rowid, since.updated_at]
    else:
        changed, params = "rowid > ?", [since.rowid]
    if since.also:
        also = ", ".join("(?, ?)" for _ in since.also)
        changed = f"({changed} OR (task_run_id, loop_id) IN (VALUES {also}))"
        params += [value for key in since.also for value in key]
    keys = con.execute(f"SELECT DISTINCT task_run_id, loop_id FROM loops WHERE {changed}", params).fetchall()
    if not keys:
        return {t: never for t in TABLES}
    named = len(keys) <= MAX_ALSO
    if named:
        values = f"(VALUES {', '.join('(?, ?)' for _ in keys)})"
        params = [value for key in keys for value in key]
        runs = sorted({str(k[0]) for k in keys if k[0] is not None})
        run_filter = (f"WHERE task_run_id IN ({', '.join('?' for _ in runs)})", list(runs))
        selected = values
    else:  # too many to name: select them again by the same condition
        selected = f"(SELECT task_run_id, loop_id FROM loops WHERE {changed})"
        run_filter = (f"WHERE task_run_id IN (SELECT task_run_id FROM loops WHERE {changed})", params)

    def by_key(table: str) -> str:
        """Rows of `table` with the selected keys; a join on named keys uses the table's index
        (a row-value IN list makes SQLite scan the whole table)."""
        if named and _has_rowid(con, table):
            return (
                f"WHERE rowid IN (SELECT t.rowid FROM {values} AS k JOIN {_quote(table)} AS t "
                "ON t.task_run_id = k.column1 AND t.loop_id = k.column2)"
            )
        return f"WHERE (task_run_id, loop_id) IN {selected}"

    out: dict[str, tuple[str, list[Any]]] = {"loops": (by_key("loops"), params)}

    def has(table: str, *names: str) -> bool:
        have = {c.lower() for c in columns[table]}
        return all(n in have for n in names)

    out["task_runs"] = run_filter if has("task_runs", "task_run_id") else never
    for table in ("workspaces", "artifacts", "factor_registry"):
        out[table] = (by_key(table), params) if has(table, "task_run_id", "loop_id") else never
    out["artifact_files"] = (
        (
            f"WHERE artifact_id IN (SELECT artifact_id FROM artifacts {by_key('artifacts')})",
            params,
        )
        if has("artifact_files", "artifact_id") and has("artifacts", "artifact_id", "task_run_id", "loop_id")
        else never
    )
    return out


def _read_table(
    con: sqlite3.Connection, table: str, present: list[str], where: str, params: list[Any]
) -> pl.DataFrame:
    """Select the canonical columns by name; absent ones become typed nulls."""
    schema = SCHEMA[table]
    by_lower = {c.lower(): c for c in present}
    wanted = [(name, dtype, by_lower.get(name.lower())) for name, dtype in schema]
    extra = [("_rowid", _I, "rowid")] if table == "loops" else []
    if not present:
        return pl.DataFrame(schema={name: dtype for name, dtype, _ in wanted + extra})
    selected = [(name, dtype, src) for name, dtype, src in wanted + extra if src is not None]
    sql = f"SELECT {', '.join(_select_expr(src) for _, _, src in selected)} FROM {_quote(table)} {where}"
    rows = con.execute(sql, params).fetchall()
    values = list(zip(*rows, strict=True)) if rows else [()] * len(selected)
    data = {
        name: _series(name, dtype, list(col)) for (name, dtype, _), col in zip(selected, values, strict=True)
    }
    height = len(rows)
    return pl.DataFrame(
        [
            data[name] if name in data else pl.Series(name, [None] * height, dtype=dtype)
            for name, dtype, _ in wanted + extra
        ]
    )


def _select_expr(source: str) -> str:
    return "rowid" if source == "rowid" else _quote(source)


def _series(name: str, dtype: Any, values: list[Any]) -> pl.Series:
    """Build a typed column; values that SQLite's loose typing let through are coerced one by one."""
    try:
        return pl.Series(name, values, dtype=dtype, strict=True)
    except (TypeError, ValueError, OverflowError, pl.exceptions.PolarsError):
        convert = {_I: _to_int, _F: _to_float, _S: _to_text}[dtype]
        return pl.Series(name, [convert(v) for v in values], dtype=dtype)


def _to_int(value: Any) -> int | None:
    if value is None or isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() and abs(value) < 2**63 else None
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    text = str(value).strip().lower()
    if text in ("true", "false"):
        return int(text == "true")
    try:
        number = float(text)
    except ValueError:
        return None
    return int(number) if number.is_integer() and abs(number) < 2**63 else None


def _to_float(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    try:
        return float(str(value).strip())
    except ValueError:
        return None


def _to_text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)
