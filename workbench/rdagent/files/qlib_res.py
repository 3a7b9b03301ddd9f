"""`qlib_res.csv` (spec §6): a pandas Series written with `to_csv` — header `,0`, one metric per row.

Row order is undefined (MLflow directory order), names may carry stray whitespace, NaN may be
written as `nan` or as an empty cell (pandas' default `na_rep`). The frame is sorted by metric
name so the same metrics in another order give the same frame.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any, Literal

import polars as pl

from workbench.errors import InputFileError
from workbench.rdagent.files.jsonfile import DEFAULT_MAX_BYTES, parse_float_text, read_text_file

QLIB_RES_SCHEMA: dict[str, Any] = {"metric": pl.String, "value": pl.Float64}

#: Qlib metric name → column name of `qlib_metrics_by_name`.
NAMED_METRICS: dict[str, str] = {
    "IC": "ic",
    "ICIR": "icir",
    "Rank IC": "rank_ic",
    "Rank ICIR": "rank_icir",
    **{
        f"1day.excess_return_{cost}_cost.{stat}": f"excess_return_{cost}_cost_{stat}"
        for cost in ("without", "with")
        for stat in ("mean", "std", "annualized_return", "information_ratio", "max_drawdown")
    },
    "1day.ffr": "ffr",
    "1day.pa": "pa",
    "1day.pos": "pos",
}


def read_qlib_res(
    path: Path, *, on_duplicate: Literal["last", "error"] = "last", max_bytes: int = DEFAULT_MAX_BYTES
) -> pl.DataFrame:
    """`(metric, value)` rows sorted by metric; duplicate names keep the last value (or raise)."""
    path = Path(path)
    text = read_text_file(path, max_bytes=max_bytes)
    values: dict[str, float] = {}
    try:
        rows = list(csv.reader(io.StringIO(text)))
    except csv.Error as exc:
        raise InputFileError(path, f"not a readable CSV file ({exc})") from None
    first = _first_nonblank(rows)
    for line_no, row in enumerate(rows, start=1):
        if not row or all(not cell.strip() for cell in row):
            continue
        if line_no == first and _is_header(row):
            continue
        name, value = _parse_row(row, line_no, path)
        if name in values and on_duplicate == "error":
            raise InputFileError(path, f"metric {name!r} appears twice (line {line_no})")
        values[name] = value
    if not values:
        raise InputFileError(path, "no metric rows", hint="qlib_res.csv is written by read_exp_res.py after the backtest")
    metrics = sorted(values)
    return pl.DataFrame({"metric": metrics, "value": [values[m] for m in metrics]}, schema=QLIB_RES_SCHEMA)


def qlib_metrics_by_name(frame: pl.DataFrame) -> dict[str, Any]:
    """Named metric columns (None when absent, NaN kept) plus `extra`: every other metric."""
    out: dict[str, Any] = dict.fromkeys(NAMED_METRICS.values())
    extra: dict[str, float] = {}
    for metric, value in zip(frame["metric"].to_list(), frame["value"].to_list(), strict=True):
        column = NAMED_METRICS.get(metric)
        if column is None:
            extra[metric] = value
        else:
            out[column] = value
    out["extra"] = extra
    return out


def _first_nonblank(rows: list[list[str]]) -> int:
    for line_no, row in enumerate(rows, start=1):
        if row and any(cell.strip() for cell in row):
            return line_no
    return 0


def _is_header(row: list[str]) -> bool:
    """`,0` (pandas Series header: empty index name) or a `metric,value`-style label row."""
    first = row[0].strip().lower()
    return not first or first in _HEADER_LABELS


_HEADER_LABELS = frozenset({"metric", "metrics", "metric_name", "metric name", "name", "index", "key",
                            "unnamed: 0"})


def _parse_row(row: list[str], line_no: int, path: Path) -> tuple[str, float]:
    if len(row) != 2:
        raise InputFileError(path, f"line {line_no} has {len(row)} cells, expected 'metric,value'")
    name, raw = row[0].strip(), row[1]
    if not name:
        raise InputFileError(path, f"line {line_no} has no metric name")
    if not raw.strip():
        return name, math.nan  # pandas writes NaN as an empty cell
    value = parse_float_text(raw)
    if value is None:
        raise InputFileError(path, f"metric {name!r} on line {line_no} has non-numeric value {raw.strip()!r}")
    return name, value
