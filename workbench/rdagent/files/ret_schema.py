"""`ret_schema.parquet` / `ret_schema.json` (spec §7.3): ret.pkl with the index as a UTC `datetime` column.

Returns the same frame as `read_returns` (`RETURNS_SCHEMA`), so either source can feed the series store.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import polars as pl

from workbench.errors import InputFileError
from workbench.rdagent.files.jsonfile import (
    as_date,
    as_float,
    expect_object,
    get_list,
    json_type,
    read_json_file,
)
from workbench.rdagent.files.limits import TABLE_JSON, TABLE_PARQUET
from workbench.rdagent.files.reading import read_file_bytes
from workbench.rdagent.files.returns import RETURN_COLUMNS, normalise_returns_frame


def read_ret_schema(path: Path, *, max_bytes: int | None = None) -> pl.DataFrame:
    """Read `ret_schema.parquet` or `ret_schema.json` (by suffix) into `RETURNS_SCHEMA`.

    `max_bytes` defaults to the limit of the file's kind (`TABLE_PARQUET` or `TABLE_JSON`).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return _from_parquet(path, max_bytes=TABLE_PARQUET.max_bytes if max_bytes is None else max_bytes)
    if suffix == ".json":
        return _from_table_json(path, max_bytes=TABLE_JSON.max_bytes if max_bytes is None else max_bytes)
    raise InputFileError(path, f"unknown ret_schema file type {suffix!r}; expected .parquet or .json")


def read_parquet_checked(path: Path, *, max_bytes: int) -> pl.DataFrame:
    """A size-checked parquet file; unreadable parquet becomes InputFileError."""
    data = read_file_bytes(path, max_bytes=max_bytes, kind=TABLE_PARQUET)
    try:
        return pl.read_parquet(io.BytesIO(data))
    except Exception as exc:  # polars/arrow raise many kinds for damaged files
        raise InputFileError(path, f"not a readable parquet file ({type(exc).__name__}: {exc})") from None


def read_table_records(path: Path, *, max_bytes: int) -> list[dict[str, Any]]:
    """The `data` records of a pandas `to_json(orient="table")` file."""
    data = expect_object(read_json_file(path, max_bytes=max_bytes, kind=TABLE_JSON), path)
    records = get_list(data, "data", path)
    if records is None:
        raise InputFileError(path, "no 'data' list: not a pandas orient='table' JSON file")
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            raise InputFileError(path, f"data[{index}] must be an object, found {json_type(record)}")
    return records


def _from_parquet(path: Path, *, max_bytes: int) -> pl.DataFrame:
    frame = read_parquet_checked(path, max_bytes=max_bytes)
    if "datetime" not in frame.columns:
        raise InputFileError(path, "no 'datetime' column")
    dates = _date_column(frame["datetime"], path)
    columns = {"datetime": dates}
    for name in RETURN_COLUMNS:
        if name in frame.columns:
            columns[name] = _numeric_column(frame[name], path)
    return normalise_returns_frame(pl.DataFrame(columns), path)


def _numeric_column(series: pl.Series, path: Path) -> pl.Series:
    """A number column as Float64; text, booleans, structs and lists are refused, not coerced."""
    if not (series.dtype.is_numeric() or series.dtype == pl.Null):
        raise InputFileError(path, f"column {series.name!r} is not numeric ({series.dtype})")
    return series.cast(pl.Float64)


def _date_column(series: pl.Series, path: Path) -> pl.Series:
    """Date from a Date, Datetime (UTC-converted, must be midnight) or string column."""
    dtype = series.dtype
    if dtype == pl.Date:
        return series
    if isinstance(dtype, pl.Datetime):
        stamps = series.dt.convert_time_zone("UTC") if dtype.time_zone else series
        if (stamps.dt.truncate("1d") != stamps).any():
            raise InputFileError(path, "'datetime' has times of day; expected daily dates")
        return stamps.dt.date().rename("datetime")
    if dtype == pl.String:
        return pl.Series(
            "datetime", [as_date(v, path, where="datetime") for v in series.to_list()], dtype=pl.Date
        )
    raise InputFileError(path, f"'datetime' column has type {dtype}, expected dates")


def _from_table_json(path: Path, *, max_bytes: int) -> pl.DataFrame:
    records = read_table_records(path, max_bytes=max_bytes)
    if records and not any("datetime" in r for r in records):
        raise InputFileError(path, "no 'datetime' field in data records")
    columns = {
        "datetime": pl.Series(
            "datetime",
            [as_date(r.get("datetime"), path, where=f"data[{i}].datetime") for i, r in enumerate(records)],
            dtype=pl.Date,
        )
    }
    for name in RETURN_COLUMNS:
        if any(name in r for r in records):
            values = [as_float(r.get(name), path, where=f"data[{i}].{name}") for i, r in enumerate(records)]
            columns[name] = pl.Series(name, values, dtype=pl.Float64, nan_to_null=False)
    return normalise_returns_frame(pl.DataFrame(columns), path)
