"""Read the lake lazily with Polars ``scan_delta``, and with the catalog's own SQL.

``lake_connection`` gives an in-memory DuckDB connection whose tables have the catalog's names
and columns but are Polars LazyFrames over the Delta tables: DuckDB hands each query's filters
and columns to Polars, which prunes partitions and files by their statistics and reads only
those columns. So the library and analysis functions run their catalog queries on a lake
unchanged (``lake=URI``) and get the same answers.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import polars as pl

from workbench.archive.catalog import open_catalog, read_frame
from workbench.archive.db import fetch_frame
from workbench.archive.library_cache import (  # the catalog's own library queries
    LibrarySnapshot,
    read_library_frames,
)
from workbench.errors import LakeError
from workbench.lake.storage import lake_root, storage_options, table_uri
from workbench.lake.tables import LAKE_TABLES, LakeTable, lake_table

if TYPE_CHECKING:  # deltalake loads only when a lake is read: the library reads catalogs through here too
    from deltalake import DeltaTable

__all__ = [
    "lake_connection",
    "lake_library_snapshot",
    "lake_version",
    "open_table",
    "read_lake_frame",
    "scan_table",
    "source_connection",
    "source_frame",
]


def _missing(lake: str, table: str) -> LakeError:
    return LakeError(
        f"lake {lake} has no table {table}: publish an archive to it first "
        f"(`workbench publish --archive ARCHIVE --lake {lake}`)"
    )


def open_table(lake: str | Path, table: str, *, version: int | None = None) -> DeltaTable:
    """One lake table's Delta log, read now (a missing table is a LakeError saying to publish first)."""
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    root = lake_root(lake)
    name = lake_table(table).name
    try:
        return DeltaTable(table_uri(root, name), version=version, storage_options=storage_options(root))
    except (TableNotFoundError, FileNotFoundError) as exc:
        raise _missing(root, name) from exc


def scan_table(lake: str | Path, table: str, *, version: int | None = None) -> pl.LazyFrame:
    """One lake table as a Polars LazyFrame (filters and column choices are pushed into the scan)."""
    return pl.scan_delta(open_table(lake, table, version=version))


def lake_version(lake: str | Path, table: str) -> int | None:
    """A lake table's current version (None when it does not exist yet)."""
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    root = lake_root(lake)
    try:
        return DeltaTable(
            table_uri(root, lake_table(table).name), storage_options=storage_options(root)
        ).version()
    except TableNotFoundError:
        return None


def _view_sql(table: LakeTable, source: str, columns: Sequence[str]) -> str:
    keep = [c for c in columns if c not in table.lake_columns]
    shown = [f"CAST({c} AS JSON) AS {c}" if c in table.json_columns else c for c in keep]
    return f"CREATE VIEW {table.catalog_table} AS SELECT {', '.join(shown)} FROM {source}"


@contextmanager
def lake_connection(
    lake: str | Path,
    *,
    tables: Sequence[str] | None = None,
    where: Mapping[str, pl.Expr] | None = None,
) -> Iterator[duckdb.DuckDBPyConnection]:
    """An in-memory DuckDB connection reading the lake under the catalog's table names.

    ``tables`` limits it to some tables (default: all); ``where`` restricts a table before any
    query sees it (e.g. the return series to some task runs), again pushed into the scan. Each
    lake table is also there under its own name with the lake's extra columns, as ``lake_<name>``.
    """
    root = lake_root(lake)
    con = duckdb.connect()
    try:
        for table in LAKE_TABLES:
            if tables is not None and table.name not in tables and table.catalog_table not in tables:
                continue
            frame = scan_table(root, table.name)
            if where and table.name in where:
                frame = frame.filter(where[table.name])
            source = f"lake_{table.name}"
            con.register(source, frame)
            con.execute(_view_sql(table, source, frame.collect_schema().names()))
        yield con
    finally:
        con.close()


def read_lake_frame(
    lake: str | Path,
    sql: str,
    params: Sequence[Any] | Mapping[str, Any] | None = None,
    *,
    tables: Sequence[str] | None = None,
) -> pl.DataFrame:
    """Run one catalog query on the lake and return a Polars frame (``read_frame`` for lakes)."""
    with lake_connection(lake, tables=tables) as con:
        return fetch_frame(con, sql, params)


@contextmanager
def source_connection(
    archive: Path | str | None,
    lake: str | Path | None,
    *,
    tables: Sequence[str] | None = None,
    where: Mapping[str, pl.Expr] | None = None,
) -> Iterator[duckdb.DuckDBPyConnection]:
    """The archive's catalog (read-only, briefly), or the lake when ``lake`` is given: same tables, same SQL."""
    if lake is None:
        with open_catalog(archive, read_only=True) as con:
            yield con
    else:
        with lake_connection(lake, tables=tables, where=where) as con:
            yield con


def source_frame(
    archive: Path | str | None,
    lake: str | Path | None,
    sql: str,
    params: Sequence[Any] | Mapping[str, Any] | None = None,
) -> pl.DataFrame:
    """``read_frame`` on the archive's catalog, or on the lake when ``lake`` is given."""
    if lake is None:
        return read_frame(archive, sql, params)
    return read_lake_frame(lake, sql, params)


_SNAPSHOTS: dict[str, LibrarySnapshot] = {}
_LIBRARY_TABLES = (
    "aistock_factors",
    "aistock_factor_performance",
    "aistock_factor_combinations",
    "aistock_factor_usage",
)


def lake_library_snapshot(lake: str | Path) -> LibrarySnapshot:
    """The factor library read from the lake (the catalog's snapshot queries), kept while its tables' versions hold."""
    root = lake_root(lake)
    state = (root, *(lake_version(root, t) for t in _LIBRARY_TABLES))
    cached = _SNAPSHOTS.get(root)
    if cached is not None and cached.state == state:
        return cached
    with lake_connection(root, tables=_LIBRARY_TABLES) as con:
        factors, performance = read_library_frames(con)
    snapshot = LibrarySnapshot(state, factors, performance)
    _SNAPSHOTS[root] = snapshot
    return snapshot
