"""`signals.parquet` / `signals.json` (spec §7.4): top-k predictions per trade date, 25 columns."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import polars as pl

from workbench.errors import InputFileError
from workbench.rdagent.files.jsonfile import as_date, as_float, json_type
from workbench.rdagent.files.limits import TABLE_JSON, TABLE_PARQUET
from workbench.rdagent.files.ret_schema import read_parquet_checked, read_table_records

#: §7.4 columns in their documented order.
SIGNALS_SCHEMA: dict[str, Any] = {
    "trade_date": pl.Date,
    "instrument": pl.String,
    "signal": pl.Float64,
    "target_weight": pl.Float64,
    "target_position": pl.Float64,
    "price_ref": pl.Float64,
    "universe_flag": pl.Int64,
    "score": pl.Float64,
    "rank": pl.Int64,
    "pred_return": pl.Float64,
    "confidence": pl.Float64,
    "volatility_est": pl.Float64,
    "max_weight": pl.Float64,
    "min_weight": pl.Float64,
    "sector": pl.String,
    "industry": pl.String,
    "generated_at_utc": pl.String,
    "task_run_id": pl.String,
    "loop_id": pl.Int64,
    "workspace_id": pl.String,
    "model_version": pl.String,
    "weight_method": pl.String,
    "topk": pl.Int64,
    "n_drop": pl.Int64,
    "rebalance_freq": pl.String,
}


def read_signals(path: Path, *, max_bytes: int | None = None) -> pl.DataFrame:
    """Read `signals.parquet` or `signals.json` (by suffix) into `SIGNALS_SCHEMA`, absent columns null.

    `max_bytes` defaults to the limit of the file's kind (`TABLE_PARQUET` or `TABLE_JSON`).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        frame = _from_parquet(path, max_bytes=TABLE_PARQUET.max_bytes if max_bytes is None else max_bytes)
    elif suffix == ".json":
        frame = _from_table_json(path, max_bytes=TABLE_JSON.max_bytes if max_bytes is None else max_bytes)
    else:
        raise InputFileError(path, f"unknown signals file type {suffix!r}; expected .parquet or .json")
    if frame["trade_date"].null_count():
        raise InputFileError(path, "a row has no trade_date")
    return frame


_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def _from_parquet(path: Path, *, max_bytes: int) -> pl.DataFrame:
    raw = read_parquet_checked(path, max_bytes=max_bytes)
    if "trade_date" not in raw.columns:
        raise InputFileError(path, "no 'trade_date' column: not a signals file")
    columns = []
    for name, dtype in SIGNALS_SCHEMA.items():
        if name not in raw.columns:
            columns.append(pl.Series(name, [None] * raw.height, dtype=dtype))
        elif name == "trade_date":
            columns.append(_trade_dates(raw[name], path))
        else:
            columns.append(_cast(raw[name], dtype, path))
    return pl.DataFrame(columns)


def _trade_dates(series: pl.Series, path: Path) -> pl.Series:
    if series.dtype == pl.Date:
        return series
    if isinstance(series.dtype, pl.Datetime):
        stamps = series.dt.convert_time_zone("UTC") if series.dtype.time_zone else series
        timed = stamps.filter(stamps.dt.time() != dt.time(0, 0))
        if timed.len():
            raise InputFileError(path, f"trade_date has a time of day ({timed[0]}); expected trading dates")
        return stamps.dt.date().rename("trade_date")
    if series.dtype == pl.String:
        return pl.Series(
            "trade_date", [as_date(v, path, where="trade_date") for v in series.to_list()], dtype=pl.Date
        )
    raise InputFileError(path, f"'trade_date' has type {series.dtype}, expected dates")


def _cast(series: pl.Series, dtype: Any, path: Path) -> pl.Series:
    if dtype == pl.Int64 and series.dtype.is_float():
        series = series.fill_nan(None)
        if (series.drop_nulls() % 1 != 0).any():
            raise InputFileError(path, f"column {series.name!r} has non-integer values, expected integers")
    try:
        if dtype == pl.String and series.dtype != pl.String and series.dtype != pl.Null:
            raise pl.exceptions.InvalidOperationError("not text")
        return series.cast(dtype, strict=True)
    except pl.exceptions.PolarsError:
        raise InputFileError(
            path, f"column {series.name!r} has type {series.dtype}, expected {dtype}"
        ) from None


def _from_table_json(path: Path, *, max_bytes: int) -> pl.DataFrame:
    records = read_table_records(path, max_bytes=max_bytes)
    if records and not any("trade_date" in r for r in records):
        raise InputFileError(path, "no 'trade_date' field in data records: not a signals file")
    columns = []
    for name, dtype in SIGNALS_SCHEMA.items():
        values = [_json_value(r.get(name), dtype, path, f"data[{i}].{name}") for i, r in enumerate(records)]
        columns.append(pl.Series(name, values, dtype=dtype))
    return pl.DataFrame(columns)


def _json_value(value: Any, dtype: Any, path: Path, where: str) -> Any:
    if dtype == pl.Date:
        return as_date(value, path, where=where)
    if dtype == pl.Float64:
        return as_float(value, path, where=where)
    if value is None:
        return None
    if dtype == pl.Int64:
        if isinstance(value, bool):
            return int(value)
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, int):
            if not _INT64_MIN <= value <= _INT64_MAX:
                raise InputFileError(path, f"{where} = {value:.6g} is out of the 64-bit integer range")
            return value
        raise InputFileError(path, f"{where} must be an integer, found {json_type(value)} {value!r}")
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return str(value)
    raise InputFileError(path, f"{where} must be a string, found {json_type(value)}")
