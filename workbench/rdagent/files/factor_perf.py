"""`factor_perf.json` (spec §5.2): per-factor windows and per-combination windows.

Quirks handled: the backfill's header-based CSV parse leaves two bogus metric keys `""` → first
metric name and `"0"` → its value (HEAD); gap-era files have `"Unnamed: 0"` → name, `"0"` → value,
often as the only content. The bogus keys are dropped and the pair is recovered as
`{name: value}` when that metric is not otherwise present. NaN values stay NaN.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from workbench.errors import InputFileError
from workbench.rdagent.files.factor_meta import normalise_factor_name
from workbench.rdagent.files.jsonfile import (
    as_float,
    expect_object,
    get_float,
    get_int,
    get_list,
    get_object,
    get_str_list,
    get_text,
    json_type,
    parse_float_text,
    read_json_file,
    to_json_text,
)
from workbench.rdagent.files.limits import JSON_METADATA

FACTOR_SCHEMA: dict[str, Any] = {
    "name": pl.String,
    "window_name": pl.String,
    "start": pl.String,
    "end": pl.String,
    "ic_mean": pl.Float64,
    "ic_ir": pl.Float64,
    "coverage": pl.Float64,
    "annual_return": pl.Float64,
    "max_drawdown": pl.Float64,
    "sharpe": pl.Float64,
}
COMBINATION_SCHEMA: dict[str, Any] = {
    "combination_name": pl.String,
    "factor_names": pl.List(pl.String),
    "window_name": pl.String,
    "start": pl.String,
    "end": pl.String,
    "annual_return": pl.Float64,
    "max_drawdown": pl.Float64,
    "sharpe": pl.Float64,
    "ic": pl.Float64,
    "ic_ir": pl.Float64,
    "metrics_json": pl.String,
}
BOGUS_METRIC_KEYS = ("", "0", "Unnamed: 0")


@dataclass(frozen=True, eq=False)
class FactorPerf:
    """The envelope plus two frames: `factors` (FACTOR_SCHEMA), `combinations` (COMBINATION_SCHEMA)."""

    version: str | None
    task_run_id: str | None
    loop_id: int | None
    generated_at_utc: str | None
    factors: pl.DataFrame
    combinations: pl.DataFrame


def read_factor_perf(path: Path, *, max_bytes: int = JSON_METADATA.max_bytes) -> FactorPerf:
    """Read a factor_perf.json; one row per (factor, window) and per (combination, window)."""
    path = Path(path)
    data = expect_object(read_json_file(path, max_bytes=max_bytes), path)
    factors = get_list(data, "factors", path) or []
    combinations = get_list(data, "combinations", path) or []
    factor_rows = [
        row for i, entry in enumerate(factors) for row in _factor_rows(entry, f"factors[{i}]", path)
    ]
    combo_rows = [
        row for i, entry in enumerate(combinations) for row in _combo_rows(entry, f"combinations[{i}]", path)
    ]
    return FactorPerf(
        version=get_text(data, "version", path),
        task_run_id=get_text(data, "task_run_id", path),
        loop_id=get_int(data, "loop_id", path),
        generated_at_utc=get_text(data, "generated_at_utc", path),
        factors=pl.DataFrame(factor_rows, schema=FACTOR_SCHEMA, orient="row"),
        combinations=pl.DataFrame(combo_rows, schema=COMBINATION_SCHEMA, orient="row"),
    )


def clean_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    """Drop the bogus CSV-header keys; recover `{name: value}` from the pair if it is not present."""
    cleaned = {k: v for k, v in metrics.items() if k not in BOGUS_METRIC_KEYS}
    name = metrics.get("", metrics.get("Unnamed: 0"))
    if isinstance(name, str) and name.strip() and "0" in metrics:
        key = name.strip()
        if key not in cleaned:
            value = metrics["0"]
            parsed = parse_float_text(value) if isinstance(value, str) else None
            cleaned[key] = parsed if parsed is not None else value
    return cleaned


def _entry(entry: Any, where: str, path: Path) -> dict[str, Any]:
    if not isinstance(entry, dict):
        raise InputFileError(path, f"{where} must be an object, found {json_type(entry)}")
    return entry


def _windows(entry: dict[str, Any], where: str, path: Path) -> list[tuple[str, dict[str, Any]]]:
    windows = get_list(entry, "windows", path, where=where) or []
    return [
        (f"{where}.windows[{i}]", _entry(w, f"{where}.windows[{i}]", path)) for i, w in enumerate(windows)
    ]


def _factor_rows(entry: Any, where: str, path: Path) -> list[list[Any]]:
    entry = _entry(entry, where, path)
    raw_name = get_text(entry, "name", path, where=where)
    if raw_name is None:
        raise InputFileError(path, f"{where}.name is missing")
    metrics = get_object(entry, "metrics", path, where=where) or {}
    stats = [_metric(entry, metrics, key, path, where) for key in ("ic_mean", "ic_ir", "coverage")]
    windows = _windows(entry, where, path) or [(where, {})]
    rows = []
    for w_where, window in windows:
        rows.append(
            [
                normalise_factor_name(raw_name),
                get_text(window, "name", path, where=w_where),
                get_text(window, "start", path, where=w_where),
                get_text(window, "end", path, where=w_where),
                *stats,
                get_float(window, "annual_return", path, where=w_where),
                get_float(window, "max_drawdown", path, where=w_where),
                get_float(window, "sharpe", path, where=w_where),
            ]
        )
    return rows


def _metric(entry: dict[str, Any], metrics: dict[str, Any], key: str, path: Path, where: str) -> float | None:
    """A statistic from `metrics`, else from the entry itself."""
    if metrics.get(key) is not None:
        return as_float(metrics[key], path, where=f"{where}.metrics.{key}")
    return get_float(entry, key, path, where=where)


def _combo_rows(entry: Any, where: str, path: Path) -> list[list[Any]]:
    entry = _entry(entry, where, path)
    name = get_text(entry, "name", path, where=where)
    factor_names = [normalise_factor_name(n) for n in get_str_list(entry, "factor_names", path, where=where)]
    rows = []
    for w_where, window in _windows(entry, where, path) or [(where, {})]:
        raw_metrics = get_object(window, "metrics", path, where=w_where) or {}
        metrics = clean_metrics(raw_metrics)

        def pick(
            key: str,
            *fallbacks: str,
            w_where: str = w_where,
            window: dict[str, Any] = window,
            metrics: dict[str, Any] = metrics,
        ) -> float | None:
            if window.get(key) is not None:
                return get_float(window, key, path, where=w_where)
            for fallback in fallbacks:
                if metrics.get(fallback) is not None:
                    return as_float(metrics[fallback], path, where=f"{w_where}.metrics.{fallback}")
            return None

        rows.append(
            [
                name,
                factor_names,
                get_text(window, "name", path, where=w_where),
                get_text(window, "start", path, where=w_where),
                get_text(window, "end", path, where=w_where),
                pick("annual_return", "annualized_return"),
                pick("max_drawdown", "max_drawdown"),
                pick("sharpe", "sharpe"),
                pick("ic", "ic", "IC"),
                pick("ic_ir", "ic_ir", "ICIR"),
                to_json_text(metrics) if window.get("metrics") is not None else None,
            ]
        )
    return rows
