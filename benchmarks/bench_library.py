"""Asset-pool speed: factor-library filter-and-sort, and a 20-strategy comparison, measured in one run.

    .venv/bin/python benchmarks/bench_library.py [--factors 100000 --windows 3 --strategies 20 --days 2500]

Steps:
1. a catalog with N factors × W windows (plus 1,000 combinations and usage rows) is written
   straight into a fresh archive (`open_catalog(create=True)`, one INSERT per table from a
   generated Polars frame);
2. `factor_library(...)` — the one-call filter and sort — for three typical questions: the median
   of 7 repeated calls (the library held in memory, filtered and sorted with Polars), the median
   of 3 first calls in a fresh kernel (the library copy on disk that jobs refresh, `cache/`) and
   the median of 3 first calls after a change nobody refreshed (each re-reads DuckDB);
3. a task run of S strategies × D days of return series is written the same way;
   `compare_task_run(...)` (metrics, PSR/DSR, 2,000-resample bootstrap for every treatment) plus
   the chart specification (`Comparison.chart().to_dict()`), median of 5 runs after one warm-up;
   rendering the SVG is timed separately (not part of the budget).
Prints a Markdown table (paste into BENCHMARKS.md) and writes `results_library.json`.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import time
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import polars as pl

from workbench.analysis import charts
from workbench.analysis.compare import compare_task_run
from workbench.archive.catalog import open_catalog
from workbench.archive.library_cache import clear_library_cache
from workbench.library.factors import factor_library

SOURCES = ["rdagent_generated", "qlib_alpha158", "alpha_library", "external_manual"]
TAGS = ["momentum", "value", "quality", "volatility", "moneyflow", "alpha158"]
TASK_RUN = "bench0000000000000000000000000000"


def timed(call: Callable[[], Any], *, runs: int) -> tuple[float, Any]:
    """Median seconds of `runs` calls after one warm-up, and the last result."""
    result = call()
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        result = call()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples), result


def insert(con: duckdb.DuckDBPyConnection, table: str, frame: pl.DataFrame) -> None:
    con.register("_frame", frame.to_arrow())
    try:
        columns = ", ".join(f'"{c}"' for c in frame.columns)
        con.execute(f"INSERT INTO {table} ({columns}) SELECT {columns} FROM _frame")
    finally:
        con.unregister("_frame")


def build_factor_catalog(archive: Path, *, n_factors: int, n_windows: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    ids = [f"{i:032x}" for i in range(n_factors)]
    tag_sets = [
        json.dumps(sorted(set(rng.choice(TAGS, size=rng.integers(0, 3), replace=False).tolist())))
        for _ in range(n_factors)
    ]
    factors = pl.DataFrame(
        {
            "id": ids,
            "name": [f"factor_{i:06d}" for i in range(n_factors)],
            "version": "1",
            "source": rng.choice(SOURCES, size=n_factors),
            "expression": [f"Mean($close, {i % 250 + 2})/$close" for i in range(n_factors)],
            "tags": tag_sets,
            "region": "cn",
            "freq": "1d",
        }
    )
    windows = [f"window_{w}" for w in range(n_windows)]
    n_perf = n_factors * n_windows
    ic = rng.normal(0.02, 0.02, n_perf)
    performance = (
        pl.DataFrame(
            {
                "id": [f"p{i:031x}" for i in range(n_perf)],
                "factor_id": np.repeat(ids, n_windows),
                "window_name": windows * n_factors,
                "ic_mean": ic,
                "ic_ir": ic / rng.uniform(0.05, 0.2, n_perf),
                "annual_return": rng.normal(0.05, 0.1, n_perf),
                "max_drawdown": -rng.uniform(0.01, 0.4, n_perf),
                "sharpe": rng.normal(0.5, 1.0, n_perf),
                "rank_ic": ic + rng.normal(0.0, 0.005, n_perf),
                "basis": rng.choice(["factor", "combination"], size=n_perf),
                "experiment_id": [f"e{i:031x}" for i in rng.integers(0, 5000, size=n_perf)],
            }
        )
        .with_columns(
            pl.when(pl.col("basis") == "factor").then(1).otherwise(10).alias("combination_size"),
            pl.lit("without_cost").alias("sharpe_cost"),
            pl.lit(238).alias("periods_per_year"),
        )
        .with_columns(
            pl.when(pl.int_range(pl.len()) % 17 == 0).then(None).otherwise(pl.col("ic_ir")).alias("ic_ir")
        )
    )
    members = rng.integers(0, n_factors, size=(1000, 10))
    combos = pl.DataFrame(
        {
            "id": [f"c{i:031x}" for i in range(1000)],
            "name": [f"combo_{i}" for i in range(1000)],
            "factor_ids": [json.dumps([ids[j] for j in row]) for row in members],
            "experiment_id": [f"e{i:031x}" for i in range(1000)],
            "source": "rdagent",
        }
    )
    usage = pl.DataFrame(
        {
            "factor_id": [ids[j] for row in members for j in row],
            "experiment_id": [f"e{i:031x}" for i, row in enumerate(members) for _ in row],
            "combination_id": [f"c{i:031x}" for i, row in enumerate(members) for _ in row],
        }
    ).unique()
    with open_catalog(archive, create=True) as con:
        insert(con, "aistock_factors", factors)
        insert(con, "aistock_factor_performance", performance)
        insert(con, "aistock_factor_combinations", combos)
        insert(con, "aistock_factor_usage", usage)


def build_task_run(archive: Path, *, n_strategies: int, n_days: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    dates = [date(2015, 1, 5) + timedelta(days=i) for i in range(n_days)]
    experiments, strategies, series = [], [], []
    for loop in range(n_strategies):
        experiment, strategy = f"x{loop:031x}", f"s{loop:031x}"
        experiments.append(
            {
                "id": experiment,
                "task_run_id": TASK_RUN,
                "loop_id": loop,
                "strategy_id": strategy,
                "archiving_level": 2,
                "request_name": "bench_ab",
                "strategy_role": "control" if loop == 0 else "treatment",
                "metrics_json": json.dumps({"qlib": {"ic": float(rng.normal(0.03, 0.01)), "rank_ic": 0.03}}),
            }
        )
        strategies.append(
            {
                "id": strategy,
                "strategy_key": f"{TASK_RUN}/{loop}/",
                "name": f"strategy_{loop:02d}",
                "source": "rdagent",
            }
        )
        bench = rng.normal(0.0003, 0.012, n_days)
        series.append(
            pl.DataFrame(
                {
                    "experiment_id": experiment,
                    "datetime": dates,
                    "return": bench + rng.normal(0.0002 * loop / n_strategies, 0.006, n_days),
                    "bench": bench,
                    "cost": np.full(n_days, 0.0002),
                    "turnover": rng.uniform(0.1, 0.3, n_days),
                }
            )
        )
    with open_catalog(archive, create=True) as con:
        insert(con, "aistock_experiments", pl.DataFrame(experiments))
        insert(con, "aistock_strategies", pl.DataFrame(strategies))
        insert(con, "aistock_return_series", pl.concat(series))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--work", type=Path, default=Path("benchmarks/_work"))
    parser.add_argument("--factors", type=int, default=100_000)
    parser.add_argument("--windows", type=int, default=3)
    parser.add_argument("--strategies", type=int, default=20)
    parser.add_argument("--days", type=int, default=2500)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    archive = args.work / "library_archive"
    shutil.rmtree(archive, ignore_errors=True)
    start = time.perf_counter()
    build_factor_catalog(archive, n_factors=args.factors, n_windows=args.windows, seed=args.seed)
    build_s = time.perf_counter() - start

    queries = {
        "source + min IC + window, by IC IR, top 100": dict(
            source="alpha_library", min_ic=0.02, window="window_2", sort_by="ic_ir", limit=100
        ),
        "tag + name part, by Sharpe, top 100": dict(
            tags=["momentum"], name_like="factor_01", sort_by="sharpe", limit=100
        ),
        "everything, by IC IR (all rows returned)": dict(sort_by="ic_ir", limit=None),
    }
    factor_results = {}
    for label, options in queries.items():

        def cold(options: dict[str, Any] = options) -> pl.DataFrame:
            clear_library_cache()  # and no copy on disk: as after a write nobody refreshed the library for
            shutil.rmtree(archive / "cache", ignore_errors=True)
            return factor_library(archive, **options)

        def new_kernel(options: dict[str, Any] = options) -> pl.DataFrame:
            clear_library_cache()  # the copy on disk, as after a job refreshed it or in a fresh kernel
            return factor_library(archive, **options)

        cold_s, _ = timed(cold, runs=3)
        kernel_s, _ = timed(new_kernel, runs=3)
        seconds, frame = timed(lambda options=options: factor_library(archive, **options), runs=7)
        factor_results[label] = {
            "median_ms": seconds * 1000,
            "first_call_ms": cold_s * 1000,
            "from_disk_copy_ms": kernel_s * 1000,
            "rows": frame.height,
        }

    build_task_run(archive, n_strategies=args.strategies, n_days=args.days, seed=args.seed)
    compare_s, comparison = timed(lambda: compare_task_run(archive, TASK_RUN), runs=5)
    spec_s, _ = timed(lambda: comparison.chart().to_dict(), runs=5)
    both_s, _ = timed(lambda: compare_task_run(archive, TASK_RUN).chart().to_dict(), runs=5)
    render_s, _ = timed(lambda: charts.render(comparison.chart()), runs=3)

    results = {
        "machine": f"{platform.machine()} {platform.processor() or ''} Python {platform.python_version()}".strip(),
        "factors": args.factors,
        "windows": args.windows,
        "catalog_build_s": build_s,
        "factor_library": factor_results,
        "strategies": args.strategies,
        "days": args.days,
        "compare_ms": compare_s * 1000,
        "chart_spec_ms": spec_s * 1000,
        "compare_plus_chart_ms": both_s * 1000,
        "svg_render_ms": render_s * 1000,
    }
    (args.work / "results_library.json").write_text(json.dumps(results, indent=2), encoding="utf-8")
    print(
        f"Factor library: {args.factors:,} factors × {args.windows} windows (catalog written in {build_s:.1f} s). "
        "Repeated call = median of 7 calls on an unchanged catalog (the library is held in memory and filtered "
        "with Polars); fresh kernel = median of 3 first calls reading the library copy on disk (as after a job "
        "that refreshed it); unrefreshed change = median of 3 first calls that re-read the library from DuckDB:\n"
    )
    print(
        "| query | rows returned | repeated call | first call, fresh kernel | first call after an unrefreshed "
        "change | budget |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for label, item in factor_results.items():
        print(
            f"| {label} | {item['rows']:,} | {item['median_ms']:.0f} ms | {item['from_disk_copy_ms']:.0f} ms | "
            f"{item['first_call_ms']:.0f} ms | 100 ms |"
        )
    print(
        f"\nComparison: {args.strategies} strategies × {args.days:,} days (2,000 bootstrap resamples per treatment); "
        "median of 5:\n"
    )
    print("| step | median | budget |")
    print("|---|---:|---:|")
    print(
        f"| compare_task_run (read series, metrics, PSR/DSR, bootstrap CIs) | {compare_s * 1000:.0f} ms | |"
    )
    print(f"| chart specification (Comparison.chart().to_dict()) | {spec_s * 1000:.0f} ms | |")
    print(f"| **table + chart specification** | **{both_s * 1000:.0f} ms** | 1,000 ms |")
    print(f"| SVG rendering with vl-convert (outside the budget) | {render_s * 1000:.0f} ms | |")


if __name__ == "__main__":
    main()
