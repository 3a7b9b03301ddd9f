"""Helpers of the lake tests: catalog rows as the lake holds them, and lake tables as the catalog holds them."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from workbench.lake.read import scan_table
from workbench.lake.tables import LAKE_TABLES, LakeTable


def catalog_rows(archive: Path, table: LakeTable, *, with_version: bool = False) -> pl.DataFrame:
    """The catalog's rows of one lake table (JSON as text), sorted by its keys; ``with_version`` adds
    the time stamp that decides which of two archives' versions of a row the lake keeps."""
    con = duckdb.connect(str(archive / "catalog.duckdb"), read_only=True)
    try:
        frame = con.sql(table.select_sql).pl()
    finally:
        con.close()
    if with_version:
        stamp = pl.col(table.newest_by) if table.newest_by else pl.lit(None)
        frame = frame.with_columns(stamp.alias("_stamp"))
    return _comparable(frame).sort(list(table.keys))


def lake_rows(lake: str | Path, table: LakeTable) -> pl.DataFrame:
    """The lake's rows of one table, the lake's own bookkeeping columns left out, sorted by its keys."""
    frame = scan_table(lake, table.name).collect()
    return _comparable(frame.drop("row_version", strict=False)).sort(list(table.keys))


def _comparable(frame: pl.DataFrame) -> pl.DataFrame:
    """Timestamps in UTC (the lake stores UTC; the catalog returns the session's zone)."""
    return frame.with_columns(
        pl.col(n).dt.convert_time_zone("UTC")
        for n, t in frame.schema.items()
        if isinstance(t, pl.Datetime) and t.time_zone is not None
    )


def assert_lake_equals_catalogs(lake: str | Path, archives: list[Path]) -> None:
    """Every lake table holds exactly the rows of the given archives' catalogs (union by key; of two
    versions of a row the newer)."""
    for table in LAKE_TABLES:
        expected = pl.concat(
            [catalog_rows(a, table, with_version=True) for a in archives], how="vertical_relaxed"
        )
        expected = (
            expected.sort("_stamp", nulls_last=False)
            .unique(subset=list(table.keys), keep="last")
            .drop("_stamp")
            .sort(list(table.keys))
        )
        got = lake_rows(lake, table).select(expected.columns)
        assert got.height == expected.height, (table.name, got.height, expected.height)
        assert got.equals(expected.cast(got.schema)), table.name  # type: ignore[arg-type]


def assert_close(a: Any, b: Any, path: str = "") -> None:
    """Nested results equal, floats to 1e-12 relative (a sum's last bit may depend on row order)."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), path
        for k in a:
            assert_close(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list | tuple):
        assert isinstance(b, list | tuple) and len(a) == len(b), path
        for i, (u, v) in enumerate(zip(a, b, strict=True)):
            assert_close(u, v, f"{path}[{i}]")
    elif isinstance(a, float) and isinstance(b, float) and not (math.isnan(a) and math.isnan(b)):
        assert math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-15), (path, a, b)
    elif isinstance(a, float) and isinstance(b, float):
        pass
    else:
        assert a == b, (path, a, b)
