"""Verify an archive: named checks (parts), each with its own verdict and exit code.

* ``catalog``: the catalog opens, its file is as long as its blocks, its schema version is known,
  and every column of every row of every table reads back (DuckDB checks the checksum of every
  block a query reads, so a flipped bit in table data fails here rather than in the next job).
* ``objects``: every object the catalog lists exists (its file or its pack, with the size the
  catalog recorded); with `read_data`, it also hashes to its name. When the catalog cannot list
  them, the files under ``objects/`` are re-hashed against their names instead.
* ``manifests``: every experiment at level 1 or 2 has a manifest that reads back, hashes to its
  name and holds the experiment's own catalog rows (`integrity.check_manifests`); with
  `read_data`, each return-series object is re-hashed too.
* ``records``: every record parses, so a rebuild would apply it.
* ``packs`` (with `read_data` only): every pack hashes to its name and each blob to its own.

`verify_archive` runs every part; a part that fails never stops the next one. The report's
`exit_code` is that of the first failing part in `PART_ORDER` (0 when all pass). New parts are a
class with ``name``, ``ok``, ``exit_code``, ``to_dict()`` and ``format()`` added to `PART_ORDER`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import duckdb

from workbench.archive import ondemand
from workbench.archive.catalog import (
    DUCKDB_HEADER_BYTES,
    connect_catalog_file,
    corrupt_catalog_error,
    describe_damage,
    open_catalog,
    schema_version,
)
from workbench.archive.db import fetch_one
from workbench.archive.integrity import PartReport, check_manifests, check_packs, check_records
from workbench.archive.layout import CATALOG_FILE, ArchiveLayout
from workbench.archive.packs import is_pack_key
from workbench.archive.remote import accepts_s3, bound_remote
from workbench.archive.store import ObjectStore
from workbench.errors import ArchiveBusyError, ArchiveError, CatalogCorruptError, VerificationError

PART_ORDER: tuple[str, ...] = ("catalog", "objects", "manifests", "records", "packs")
"""Parts in the order they run; the first failing one gives the exit code."""


class VerifyPart(Protocol):
    name: str

    @property
    def ok(self) -> bool: ...

    @property
    def exit_code(self) -> int: ...

    def to_dict(self) -> dict[str, Any]: ...

    def format(self) -> str: ...


@dataclass
class CatalogCheck:
    """The ``catalog`` part: can every row of the catalog be read back?"""

    path: str = ""
    error: str | None = None
    schema_version: int | None = None
    tables: dict[str, int] = field(default_factory=dict)
    wal_bytes: int = 0
    notes: list[str] = field(default_factory=list)
    name: str = "catalog"

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else CatalogCorruptError.exit_code

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "error": self.error,
            "path": self.path,
            "schema_version": self.schema_version,
            "tables": dict(self.tables),
            "wal_bytes": self.wal_bytes,
            "notes": list(self.notes),
        }

    def format(self) -> str:
        rows = sum(self.tables.values())
        head = (
            f"catalog: ok ({len(self.tables)} tables, {rows:,} rows read back)"
            if self.ok
            else f"catalog: FAILED: {self.error}"
        )
        return "\n".join([head, *(f"  note: {n}" for n in self.notes)])


@dataclass
class VerifyReport:
    """The ``objects`` part (also what `verify_objects` returns)."""

    checked: int = 0
    missing: list[str] = field(default_factory=list)
    damaged: list[str] = field(default_factory=list)
    error: str | None = None
    source: str = "catalog"
    notes: list[str] = field(default_factory=list)
    read_data: bool = True
    name: str = "objects"

    @property
    def ok(self) -> bool:
        return self.error is None and not self.missing and not self.damaged

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else VerificationError.exit_code

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("name")
        return {"ok": self.ok, **data}

    def format(self) -> str:
        how = "re-hashed" if self.read_data else "present with their size (re-hash them with --read-data)"
        lines = [
            f"checked {self.checked} objects, {how}: {len(self.missing)} missing, {len(self.damaged)} damaged"
        ]
        if self.error:
            lines.append(f"  error: {self.error}")
        lines += [f"  note: {n}" for n in self.notes]
        lines += [f"  missing: {s}" for s in self.missing[:50]]
        lines += [f"  damaged: {s}" for s in self.damaged[:50]]
        return "\n".join(lines)


@dataclass
class ArchiveVerifyReport:
    """Every part of `verify_archive`, in `PART_ORDER`."""

    parts: dict[str, VerifyPart] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(p.ok for p in self.parts.values())

    @property
    def exit_code(self) -> int:
        return next((p.exit_code for p in self.parts.values() if not p.ok), 0)

    @property
    def failed(self) -> list[str]:
        return [name for name, p in self.parts.items() if not p.ok]

    @property
    def catalog(self) -> CatalogCheck:
        return _part(self.parts, "catalog", CatalogCheck)

    @property
    def objects(self) -> VerifyReport:
        return _part(self.parts, "objects", VerifyReport)

    # the object counts, as `verify_archive` returned them before it had parts
    @property
    def checked(self) -> int:
        return self.objects.checked

    @property
    def missing(self) -> list[str]:
        return self.objects.missing

    @property
    def damaged(self) -> list[str]:
        return self.objects.damaged

    def to_dict(self) -> dict[str, Any]:
        return {**{name: p.to_dict() for name, p in self.parts.items()}, "ok": self.ok, "failed": self.failed}

    def format(self) -> str:
        lines = [
            p.format() if name != "objects" else f"objects: {p.format()}" for name, p in self.parts.items()
        ]
        lines.append("verify: ok" if self.ok else f"verify: FAILED ({', '.join(self.failed)})")
        return "\n".join(lines)


def verify_catalog(archive: Path | str | None) -> CatalogCheck:
    """Read the whole catalog back; damage is reported in the result, never raised.

    A missing archive raises `ArchiveError` and a held one `ArchiveBusyError`: there is nothing to
    verify, or it cannot be verified now.
    """
    layout = ArchiveLayout.at(archive)
    check = CatalogCheck(path=str(layout.catalog))
    if not layout.catalog.exists():
        raise ArchiveError(f"no archive at {layout.root} (missing {CATALOG_FILE}); pass the right --archive")
    wal = layout.catalog.with_name(layout.catalog.name + ".wal")
    check.wal_bytes = wal.stat().st_size if wal.exists() else 0
    if check.wal_bytes:
        check.notes.append(
            f"{wal.name} holds {check.wal_bytes:,} bytes no writer checkpointed (a crash, or a "
            "checkpoint DuckDB refused); it was read back with the catalog"
        )
    try:
        with open_catalog(layout.root, read_only=True) as con:
            _read_back(con, check)
    except ArchiveBusyError:
        raise
    except CatalogCorruptError as exc:
        check.error = str(exc)
    except ArchiveError as exc:  # unknown schema version (a missing catalog was ruled out above)
        check.error = str(exc)
    return check


def _read_back(con: duckdb.DuckDBPyConnection, check: CatalogCheck) -> None:
    """Every column of every row of every table, plus the block map's sanity (errors propagate)."""
    check.schema_version = schema_version(con)  # open_catalog refused an unknown one already
    size = fetch_one(
        con, "SELECT block_size FROM pragma_database_size() WHERE database_name = current_database()"
    )
    block_size = int(size[0]) if size and size[0] else None
    on_disk = (Path(check.path).stat().st_size - DUCKDB_HEADER_BYTES) // block_size if block_size else None
    tables = [
        r[0]
        for r in con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database() AND NOT temporary "
            "ORDER BY table_name"
        ).fetchall()
    ]
    for table in tables:
        quoted = '"' + table.replace('"', '""') + '"'
        if on_disk is not None:  # a block the table's data lives in must lie inside the file
            last = fetch_one(
                con, f"SELECT max(block_id) FROM pragma_storage_info('{table}') WHERE persistent"
            )
            if last and last[0] is not None and int(last[0]) >= on_disk:
                raise corrupt_catalog_error(
                    Path(check.path),
                    f"file truncated (table {table} lives in block "
                    f"{last[0]}, the file holds {on_disk} blocks)",
                )
        # hash() of the whole row makes DuckDB read (and checksum) every column segment and validity mask
        row = fetch_one(con, f"SELECT count(*), bit_xor(hash(t)) FROM {quoted} AS t")
        check.tables[table] = int(row[0]) if row else 0
        _probe_keys(con, table, quoted)


def read_back_problem(path: Path, *, timeout_s: float | None = None) -> str | None:
    """None when the DuckDB file at `path` opens and reads back whole (the catalog part's checks),
    else what is wrong with it. For a catalog, a snapshot or a rebuilt file alike.

    A file another process holds is not damaged: that raises `ArchiveBusyError`, as does any
    error that is not damage, so that nothing is rebuilt or set aside for the wrong reason.
    """
    if not path.exists():
        return "missing"
    try:
        wait = (
            timeout_s
            if timeout_s is not None
            else float(os.environ.get("WORKBENCH_CATALOG_TIMEOUT_S") or 60.0)
        )
        con = connect_catalog_file(path, read_only=True, timeout_s=wait)
    except CatalogCorruptError as exc:
        return describe_damage(exc.__cause__) if exc.__cause__ is not None else str(exc)
    try:
        _read_back(con, CatalogCheck(path=str(path)))
        return None
    except CatalogCorruptError as exc:
        return str(exc)
    except duckdb.Error as exc:
        what = describe_damage(exc)
        if what is None:
            raise
        return what
    finally:
        con.close()


def _sql_text(value: Any) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def _probe_keys(con: duckdb.DuckDBPyConnection, table: str, quoted: str) -> None:
    """Look one row up by each primary key or unique constraint, with constants, so DuckDB loads the index.

    Why: index blocks are read only through the index; a plain scan never touches them. A point
    lookup reads the index's top (all of it for small tables); deeper damage in a large index shows
    at the next write, which then fails with `CatalogCorruptError` too.
    """
    keys = con.execute(
        "SELECT constraint_column_names FROM duckdb_constraints() WHERE database_name = current_database() "
        "AND table_name = ? AND constraint_type IN ('PRIMARY KEY', 'UNIQUE')",
        [table],
    ).fetchall()
    for (columns,) in keys:
        cols = ['"' + c.replace('"', '""') + '"' for c in columns]
        first = fetch_one(
            con, f"SELECT {', '.join(f'CAST({c} AS VARCHAR)' for c in cols)} FROM {quoted} LIMIT 1"
        )
        if first is None or any(v is None for v in first):
            continue
        where = " AND ".join(f"{c} = {_sql_text(v)}" for c, v in zip(cols, first, strict=True))
        fetch_one(con, f"SELECT count(*) FROM {quoted} WHERE {where}")


def verify_objects(
    archive: Path | str | None, sha256s: list[str] | None = None, *, read_data: bool = True
) -> VerifyReport:
    """Check the given objects (all when None); a read-only pass over the catalog.

    `read_data` re-hashes every object; without it, each object's file (or pack) must exist with
    the size the catalog recorded (a deleted or truncated object is found, altered bytes are not).
    """
    layout = ArchiveLayout.at(archive)
    with open_catalog(layout.root, read_only=True) as con:
        rows = con.execute(
            "SELECT sha256, storage_key, stored_bytes FROM wb_objects ORDER BY sha256"
        ).fetchall()
    if sha256s is not None:
        wanted = set(sha256s)
        rows = [r for r in rows if r[0] in wanted]
        listed = {r[0] for r in rows}
        missing_rows = sorted(wanted - listed)
    else:
        missing_rows = []
    store = ObjectStore(layout.objects, tmp=layout.tmp, packs=layout.packs)
    report = VerifyReport(missing=list(missing_rows), read_data=read_data)
    for sha, key, stored_bytes in rows:
        report.checked += 1
        if not store.exists(key):
            report.missing.append(sha)
        elif read_data:
            if not store.verify(key, sha):
                report.damaged.append(sha)
        elif not is_pack_key(key) and _stored_size(store.path_for(key)) != stored_bytes:
            report.damaged.append(sha)
    return report


def verify_object_files(archive: Path | str | None) -> VerifyReport:
    """Without the catalog: re-hash every file under ``objects/`` against the hash in its name."""
    layout = ArchiveLayout.at(archive)
    store = ObjectStore(layout.objects, tmp=layout.tmp)
    report = VerifyReport(source="files")
    if not layout.objects.is_dir():
        return report
    for path in sorted(p for p in layout.objects.glob("??/*") if p.is_file()):
        sha = path.name.removesuffix(".zst")
        if len(sha) != 64 or path.parent.name != sha[:2]:
            report.notes.append(f"not an object name: {path.relative_to(layout.root)}")
            continue
        report.checked += 1
        if not store.verify(f"{sha[:2]}/{path.name}", sha):
            report.damaged.append(sha)
    return report


def _verify_objects_part(
    archive: Path | str | None, catalog: CatalogCheck, *, read_data: bool
) -> VerifyReport:
    """The ``objects`` part: from the catalog's list, else from the files themselves."""
    try:
        return verify_objects(archive, read_data=read_data)
    except ArchiveBusyError:
        raise
    except (ArchiveError, duckdb.Error) as exc:
        what = describe_damage(exc) if isinstance(exc, duckdb.Error) else None
        reason = str(corrupt_catalog_error(ArchiveLayout.at(archive).catalog, what)) if what else str(exc)
    report = verify_object_files(archive)
    report.notes.insert(
        0,
        "the catalog could not list the objects, so the files under objects/ were re-hashed "
        "against their names (missing objects and objects kept inside the catalog were not checked)"
        + ("" if catalog.ok else "; see the catalog part"),
    )
    if catalog.ok:  # the catalog read back but its object list did not: that is a failure of this part
        report.error = reason
    return report


def _manifests_part(archive: Path | str | None, catalog: CatalogCheck, *, read_data: bool) -> PartReport:
    if not catalog.ok:
        return PartReport("manifests", skipped="the catalog is damaged; see the catalog part")
    layout = ArchiveLayout.at(archive)
    with open_catalog(layout.root, read_only=True) as con:
        return check_manifests(con, layout, read_data=read_data)


def _stored_size(path: Path) -> int | None:
    """The file's size, or its size in the bucket when an s3:// archive's cache does not hold it."""
    try:
        return path.stat().st_size
    except OSError:
        return ondemand.remote_size(path)


_P = TypeVar("_P", bound=VerifyPart)


def _part(parts: dict[str, VerifyPart], name: str, kind: type[_P]) -> _P:
    """The part called `name`, which `_parts` always builds as a `kind`."""
    part = parts[name]
    if not isinstance(part, kind):
        raise TypeError(f"verify part {name!r} is a {type(part).__name__}, not a {kind.__name__}")
    return part


def _parts(read_data: bool) -> dict[str, Callable[[Path | str | None, dict[str, VerifyPart]], VerifyPart]]:
    return {
        "catalog": lambda archive, _done: verify_catalog(archive),
        "objects": lambda archive, done: _verify_objects_part(
            archive, _part(done, "catalog", CatalogCheck), read_data=read_data
        ),
        "manifests": lambda archive, done: _manifests_part(
            archive, _part(done, "catalog", CatalogCheck), read_data=read_data
        ),
        "records": lambda archive, _done: check_records(ArchiveLayout.at(archive)),
        "packs": lambda archive, _done: (
            check_packs(ArchiveLayout.at(archive))
            if read_data
            else PartReport("packs", skipped="packs are re-hashed with --read-data")
        ),
    }


@accepts_s3(writes=False)
def verify_archive(archive: Path | str | None = None, *, read_data: bool = False) -> ArchiveVerifyReport:
    """Every part in `PART_ORDER`; see the module docstring. `read_data` reads every stored byte."""
    report = ArchiveVerifyReport()
    parts = _parts(read_data)
    for name in PART_ORDER:
        report.parts[name] = parts[name](archive, report.parts)
    remote = bound_remote(ArchiveLayout.at(archive).root)
    if remote is not None:  # an s3:// archive: its cache was checked above, now the bucket
        checked, problems = remote.bucket_problems(read_data=read_data)
        report.parts["bucket"] = PartReport("bucket", checked, problems)
    return report
