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
from typing import Any

import duckdb
import polars as pl
from deltalake import DeltaTable
from deltalake.exceptions import TableNotFoundError

from workbench.archive.db import fetch_frame
from workbench.errors import LakeError
from workbench.lake.storage import lake_root, storage_options, table_uri
from workbench.lake.tables import LAKE_TABLES, LakeTable, lake_table

__all__ = ["LAKE_ONLY_COLUMNS", "lake_connection", "lake_version", "read_lake_frame", "scan_table"]

LAKE_ONLY_COLUMNS = (
    "row_hash",
    "publish_hash",
    "manifest_sha256",
    "month",
    "information_ratio",
    "annualized_return",
    "max_drawdown",
    "n_days",
)
"""Columns the lake adds to the catalog's (dropped where a table stands in for the catalog's)."""


def _missing(lake: str, table: str) -> LakeError:
    return LakeError(
        f"lake {lake} has no table {table}: publish an archive to it first "
        f"(`workbench publish --archive ARCHIVE --lake {lake}`)"
    )


def scan_table(lake: str | Path, table: str, *, version: int | None = None) -> pl.LazyFrame:
    """One lake table as a Polars LazyFrame (filters and column choices are pushed into the scan)."""
    root = lake_root(lake)
    uri = table_uri(root, lake_table(table).name)
    try:
        return pl.scan_delta(uri, version=version, storage_options=storage_options(root))
    except (TableNotFoundError, FileNotFoundError) as exc:
        raise _missing(root, lake_table(table).name) from exc
    except Exception as exc:  # Polars wraps deltalake's "no table here" in its own error types
        if "not a delta table" in str(exc).lower() or "no files in log" in str(exc).lower():
            raise _missing(root, lake_table(table).name) from exc
        raise


def lake_version(lake: str | Path, table: str) -> int | None:
    """A lake table's current version (None when it does not exist yet)."""
    root = lake_root(lake)
    try:
        return DeltaTable(table_uri(root, lake_table(table).name), storage_options=storage_options(root)).version()
    except TableNotFoundError:
        return None


def _view_sql(table: LakeTable, source: str, columns: Sequence[str]) -> str:
    keep = [c for c in columns if c not in LAKE_ONLY_COLUMNS]
    if table.catalog_table == "aistock_return_series":
        keep = [c for c in keep if c != "task_run_id"]
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
        con.execute("SET TimeZone = 'UTC'")
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
