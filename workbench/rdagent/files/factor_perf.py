"""`factor_perf.json` (spec §5.2): per-factor windows and per-combination windows.

Each figure is read together with what it is: a combination window's ``annual_return``,
``max_drawdown`` and ``sharpe`` are Qlib's excess-return figures *without* cost, except where
the producer fell back to the *with*-cost value (the without-cost one missing or exactly 0), so
the cost basis of each is checked against the window's Qlib metrics (``*_cost`` columns:
``without_cost``, ``with_cost``, or null when the file does not say). Qlib annualises them with
238 trading days (``periods_per_year``). Rank IC and rank ICIR are read beside IC and ICIR.

Quirks handled: the backfill's header-based CSV parse leaves two bogus metric keys `""` → first
metric name and `"0"` → its value (HEAD); gap-era files have `"Unnamed: 0"` → name, `"0"` → value,
often as the only content. The bogus keys are dropped and the pair is recovered as
`{name: value}` when that metric is not otherwise present. NaN values stay NaN.
"""

from __future__ import annotations

import math
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
    "rank_ic": pl.Float64,
    "rank_ic_ir": pl.Float64,
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
    "rank_ic": pl.Float64,
    "rank_ic_ir": pl.Float64,
    "annual_return_cost": pl.String,
    "max_drawdown_cost": pl.String,
    "sharpe_cost": pl.String,
    "periods_per_year": pl.Int64,
    "metrics_json": pl.String,
}
BOGUS_METRIC_KEYS = ("", "0", "Unnamed: 0")
QLIB_PERIODS_PER_YEAR = 238
"""Trading days per year Qlib's ``risk_analysis(freq="day")`` annualises with (spec §6)."""
#: window figure → (derived key in `metrics`, Qlib statistic behind it)
QLIB_WINDOW_FIGURES: dict[str, tuple[str, str]] = {
    "annual_return": ("annualized_return", "annualized_return"),
    "max_drawdown": ("max_drawdown", "max_drawdown"),
    "sharpe": ("sharpe", "information_ratio"),
}
COSTS = ("without_cost", "with_cost")


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
    stats = [
        _metric(entry, metrics, keys, path, where)
        for keys in (
            ("ic_mean", "ic", "IC"),
            ("ic_ir", "ICIR"),
            ("rank_ic", "rank_ic_mean", "Rank IC"),
            ("rank_ic_ir", "Rank ICIR"),
            ("coverage",),
        )
    ]
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


def _metric(
    entry: dict[str, Any], metrics: dict[str, Any], keys: tuple[str, ...], path: Path, where: str
) -> float | None:
    """A statistic from `metrics` under the first of its names present, else from the entry itself."""
    for key in keys:
        if metrics.get(key) is not None:
            return as_float(metrics[key], path, where=f"{where}.metrics.{key}")
    for key in keys:
        if entry.get(key) is not None:
            return get_float(entry, key, path, where=where)
    return None


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

        figures = {key: _window_figure(key, window, metrics, path, w_where) for key in QLIB_WINDOW_FIGURES}
        known = any(value is not None and cost is not None for value, cost in figures.values())
        rows.append(
            [
                name,
                factor_names,
                get_text(window, "name", path, where=w_where),
                get_text(window, "start", path, where=w_where),
                get_text(window, "end", path, where=w_where),
                figures["annual_return"][0],
                figures["max_drawdown"][0],
                figures["sharpe"][0],
                pick("ic", "ic", "IC"),
                pick("ic_ir", "ic_ir", "ICIR"),
                pick("rank_ic", "rank_ic", "Rank IC"),
                pick("rank_ic_ir", "rank_ic_ir", "Rank ICIR"),
                figures["annual_return"][1],
                figures["max_drawdown"][1],
                figures["sharpe"][1],
                QLIB_PERIODS_PER_YEAR if known else None,
                to_json_text(metrics) if window.get("metrics") is not None else None,
            ]
        )
    return rows


def _window_figure(
    key: str, window: dict[str, Any], metrics: dict[str, Any], path: Path, where: str
) -> tuple[float | None, str | None]:
    """A combination window's return figure and its cost basis (`without_cost`, `with_cost`, None).

    The value is the window's own, else the derived key in `metrics`, else Qlib's without-cost
    figure (with-cost when that is missing or exactly 0, as the backfill does). Its cost basis is
    the Qlib figure it equals; None when the window's metrics do not hold the Qlib figures.
    """
    derived, stat = QLIB_WINDOW_FIGURES[key]
    qlib = {
        cost: _number(metrics.get(f"1day.excess_return_{cost}.{stat}"), path, f"{where}.metrics")
        for cost in COSTS
    }
    value = get_float(window, key, path, where=where) if window.get(key) is not None else None
    if value is None and metrics.get(derived) is not None:
        value = as_float(metrics[derived], path, where=f"{where}.metrics.{derived}")
    if value is None:
        without = qlib["without_cost"]
        cost = "without_cost" if without is not None and without != 0 else "with_cost"
        value = qlib[cost]
        return value, (cost if value is not None else None)
    for cost in COSTS:
        figure = qlib[cost]
        if figure is not None and (figure == value or (math.isnan(figure) and math.isnan(value))):
            return value, cost
    return value, None


def _number(value: Any, path: Path, where: str) -> float | None:
    return None if value is None else as_float(value, path, where=where)
