"""Small helpers over an open DuckDB connection, and the clock that stamps every row.

Kept apart from `catalog` (which opens and upgrades the catalog) so that the modules the upgrade
itself needs (the journal of records) can use them without an import cycle.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import duckdb
import polars as pl


def utc_now() -> datetime:
    return datetime.now(UTC)


def fetch_one(
    con: duckdb.DuckDBPyConnection, sql: str, params: Sequence[Any] | None = None
) -> tuple[Any, ...] | None:
    """The first row or None, with the result fully consumed (DuckDB refuses new work otherwise)."""
    result = con.execute(sql, params or []).fetchall()
    return result[0] if result else None


def rollback_quietly(con: duckdb.DuckDBPyConnection) -> None:
    """Roll back after a failure without hiding it: a damaged or invalidated database refuses ROLLBACK too."""
    try:
        con.execute("ROLLBACK")
    except duckdb.Error:
        pass


def fetch_frame(
    con: duckdb.DuckDBPyConnection, sql: str, params: Sequence[Any] | Mapping[str, Any] | None = None
) -> pl.DataFrame:
    """One query's result as a Polars frame (through Arrow, no pandas)."""
    relation = con.sql(sql, params=params) if params else con.sql(sql)
    frame = pl.from_arrow(relation.to_arrow_table())
    assert isinstance(frame, pl.DataFrame)
    return frame
