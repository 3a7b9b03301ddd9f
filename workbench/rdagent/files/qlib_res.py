"""`qlib_res.csv` (spec §6): a pandas Series written with `to_csv` — header `,0`, one metric per row.

Row order is undefined (MLflow directory order), names may carry stray whitespace, NaN may be
written as `nan` or as an empty cell (pandas' default `na_rep`). The frame is sorted by metric
name so the same metrics in another order give the same frame.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import polars as pl

from workbench.errors import InputFileError
from workbench.rdagent.files.jsonfile import parse_float_text
from workbench.rdagent.files.limits import MAX_METRIC_NAME, MAX_METRIC_ROWS, METRIC_CSV
from workbench.rdagent.files.reading import read_text_file

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
    path: Path, *, on_duplicate: Literal["last", "error"] = "last", max_bytes: int = METRIC_CSV.max_bytes
) -> pl.DataFrame:
    """`(metric, value)` rows sorted by metric; duplicate names keep the last value (or raise).

    At most `MAX_METRIC_ROWS` rows with names of at most `MAX_METRIC_NAME` characters: Qlib writes
    about 20, and the metrics end up in one catalog JSON value, which must stay small.
    """
    path = Path(path)
    text = read_text_file(path, max_bytes=max_bytes, kind=METRIC_CSV)
    values: dict[str, float] = {}
    seen_first = False
    for line_no, row in _csv_rows(text, path):
        if not row or all(not cell.strip() for cell in row):
            continue
        first, seen_first = not seen_first, True
        if first and _is_header(row):
            continue
        name, value = _parse_row(row, line_no, path)
        if name in values and on_duplicate == "error":
            raise InputFileError(path, f"metric {name!r} appears twice (line {line_no})")
        values[name] = value
        _check_bounds(values, name, line_no, path)
    if not values:
        raise InputFileError(
            path, "no metric rows", hint="qlib_res.csv is written by read_exp_res.py after the backtest"
        )
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


def _csv_rows(text: str, path: Path) -> Iterator[tuple[int, list[str]]]:
    """`(line number, cells)` one at a time, so a huge file is refused before it is all split."""
    reader = csv.reader(io.StringIO(text))
    try:
        yield from enumerate(reader, start=1)
    except csv.Error as exc:
        raise InputFileError(path, f"not a readable CSV file ({exc})") from None


def _check_bounds(values: dict[str, float], name: str, line_no: int, path: Path) -> None:
    """Too many metrics, or a metric name too long, is not a Qlib metrics file."""
    hint = "Qlib's qlib_res.csv has about 20 short metric names; check what wrote this file"
    if len(values) > MAX_METRIC_ROWS:
        raise InputFileError(
            path,
            f"more than {MAX_METRIC_ROWS} metric rows (line {line_no}): not a qlib metrics file",
            hint=hint,
        )
    if len(name) > MAX_METRIC_NAME:
        raise InputFileError(
            path,
            f"metric name on line {line_no} is {len(name)} characters long, more than "
            f"{MAX_METRIC_NAME}: not a qlib metrics file",
            hint=hint,
        )


def _is_header(row: list[str]) -> bool:
    """`,0` (pandas Series header: empty index name) or a `metric,value`-style label row."""
    first = row[0].strip().lower()
    return not first or first in _HEADER_LABELS


_HEADER_LABELS = frozenset(
    {"metric", "metrics", "metric_name", "metric name", "name", "index", "key", "unnamed: 0"}
)


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
