"""Questions across the whole team's lake, answered by daft: locally by default, on Ray when given.

daft reads the Delta tables itself (``read_deltalake``: partitions and file statistics pruned);
each function returns a small Polars frame for tables and charts. The same reads run on one
laptop (daft's native runner) or spread over a Ray cluster (``use_daft_runner("ray://...")``);
results do not depend on where they ran.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from workbench.lake.read import open_table
from workbench.lake.storage import daft_io_config, lake_root, table_uri
from workbench.lake.tables import lake_table
from workbench.metrics import expected_max_sharpe

__all__ = [
    "best_by_deflated_sharpe",
    "daft_table",
    "information_ratio_distribution",
    "recent_top_experiments",
    "return_moments",
    "top_return_correlations",
    "use_daft_runner",
]

PERIODS_PER_YEAR = 252


def use_daft_runner(ray_address: str | None = None) -> str:
    """Run daft on the Ray cluster at ``ray_address`` ("auto", "ray://host:10001"), else locally.

    daft chooses its runner once per process; asking again for the same one is harmless.
    """
    import daft

    if ray_address:
        daft.set_runner_ray(address=ray_address, noop_if_initialized=True)
        return "ray"
    if daft.get_or_infer_runner_type() != "native":
        raise RuntimeError(
            "daft already runs on Ray in this process; restart the kernel for the local runner"
        )
    try:
        daft.set_runner_native()
    except Exception as exc:  # daft refuses a second set_runner_* call, even for the same runner
        if "more than once" not in str(exc):
            raise
    return "native"


def daft_table(lake: str | Path, table: str) -> Any:
    """One lake table as a daft DataFrame (lazy)."""
    import daft

    root = lake_root(lake)
    open_table(root, table)  # a missing table is a LakeError saying to publish first
    return daft.read_deltalake(table_uri(root, lake_table(table).name), io_config=daft_io_config(root))


def _to_polars(frame: Any) -> pl.DataFrame:
    out = pl.from_arrow(frame.to_arrow())
    assert isinstance(out, pl.DataFrame)
    return out


def information_ratio_distribution(lake: str | Path) -> pl.DataFrame:
    """Per task run and month (of the experiment): how many experiments, and their information ratios'
    mean, standard deviation, minimum, quartiles and maximum (the strategy library's IR: excess return
    with cost, recomputed from the series, else Qlib's)."""
    from daft import col

    experiments = daft_table(lake, "aistock_experiments").where(col("information_ratio").not_null())
    grouped = experiments.groupby("task_run_id", "month").agg(
        col("information_ratio").count().alias("n_experiments"),
        col("information_ratio").mean().alias("mean"),
        col("information_ratio").stddev().alias("std"),
        col("information_ratio").min().alias("min"),
        col("information_ratio").approx_percentiles([0.25, 0.5, 0.75]).alias("quartiles"),
        col("information_ratio").max().alias("max"),
    )
    frame = _to_polars(grouped)
    return (
        frame.with_columns(
            pl.col("quartiles").arr.get(0).alias("q25"),
            pl.col("quartiles").arr.get(1).alias("median"),
            pl.col("quartiles").arr.get(2).alias("q75"),
        )
        .drop("quartiles")
        .sort("month", "task_run_id")
    )


def return_moments(lake: str | Path, experiment_ids: list[str] | None = None) -> pl.DataFrame:
    """Per experiment, from its daily excess return with cost: days, per-period Sharpe ratio,
    population skewness and Pearson kurtosis (the inputs of PSR/DSR, as ``metrics.sharpe_stats``)."""
    from daft import col

    series = daft_table(lake, "aistock_return_series")
    if experiment_ids is not None:
        series = series.where(col("experiment_id").is_in(experiment_ids))
    excess = (col("return") - col("bench") - col("cost")).alias("x")
    series = series.select(col("experiment_id"), excess).where(col("x").not_null() & ~col("x").is_nan())
    sums = series.groupby("experiment_id").agg(
        col("x").count().alias("n"),
        col("x").sum().alias("s1"),
        (col("x") * col("x")).sum().alias("s2"),
        (col("x") * col("x") * col("x")).sum().alias("s3"),
        (col("x") * col("x") * col("x") * col("x")).sum().alias("s4"),
    )
    frame = _to_polars(sums).with_columns(pl.col("n").cast(pl.Int64))
    n = pl.col("n").cast(pl.Float64)
    mean = pl.col("s1") / n
    m2 = pl.col("s2") / n - mean**2
    m3 = pl.col("s3") / n - 3 * mean * pl.col("s2") / n + 2 * mean**3
    m4 = pl.col("s4") / n - 4 * mean * pl.col("s3") / n + 6 * mean**2 * pl.col("s2") / n - 3 * mean**4
    flat = m2 <= 1e-30
    std = (m2 * n / (n - 1)).sqrt()
    return (
        frame.with_columns(
            pl.when(flat | (n < 2)).then(None).otherwise(mean / std).alias("sr"),
            pl.when(flat | (n < 2)).then(None).otherwise(m3 / m2**1.5).alias("skew"),
            pl.when(flat | (n < 2)).then(None).otherwise(m4 / m2**2).alias("kurtosis"),
        )
        .select("experiment_id", "n", "sr", "skew", "kurtosis")
        .sort("experiment_id")
    )


def _normal_cdf(z: np.ndarray) -> np.ndarray:
    return np.array([0.5 * math.erfc(-v / math.sqrt(2.0)) if math.isfinite(v) else math.nan for v in z])


def best_by_deflated_sharpe(lake: str | Path, *, limit: int = 20) -> pl.DataFrame:
    """The strategies with the highest deflated Sharpe ratio across all task runs.

    Every experiment with a return series is a trial: N is their number and V the variance of
    their annualised Sharpe ratios; each one's DSR is its PSR against the best Sharpe ratio N
    unskilled trials would reach (Bailey & López de Prado; ``metrics.deflated_sharpe_ratio``).
    """
    moments = return_moments(lake).drop_nulls("sr")
    if moments.is_empty():
        return moments
    annual = moments["sr"].to_numpy() * math.sqrt(PERIODS_PER_YEAR)
    n_trials = moments.height
    var_trials = float(np.var(annual, ddof=1)) if n_trials > 1 else 0.0
    sr_star = expected_max_sharpe(n_trials=n_trials, var_trials=var_trials / PERIODS_PER_YEAR)
    sr = moments["sr"].to_numpy()
    radicand = 1.0 - moments["skew"].to_numpy() * sr + (moments["kurtosis"].to_numpy() - 1.0) / 4.0 * sr**2
    with np.errstate(invalid="ignore", divide="ignore"):
        z = (
            (sr - sr_star)
            * np.sqrt(moments["n"].to_numpy() - 1.0)
            / np.sqrt(np.where(radicand > 0, radicand, np.nan))
        )
    scored = moments.with_columns(
        pl.Series("sharpe_annualized", annual),
        pl.Series("dsr", _normal_cdf(z)),
        pl.lit(n_trials).alias("n_trials"),
        pl.lit(var_trials).alias("var_trials"),
    )
    best = scored.sort("dsr", descending=True, nulls_last=True).head(limit)
    names = _experiments_with_strategies(lake, best["experiment_id"].to_list())
    return best.join(names, on="experiment_id", how="left").sort("dsr", descending=True, nulls_last=True)


def _experiments_with_strategies(lake: str | Path, ids: list[str]) -> pl.DataFrame:
    from daft import col

    experiments = (
        daft_table(lake, "aistock_experiments")
        .where(col("id").is_in(ids))
        .select(
            col("id").alias("experiment_id"), "task_run_id", "loop_id", "strategy_id", "information_ratio"
        )
    )
    strategies = daft_table(lake, "aistock_strategies").select(
        col("id").alias("strategy_id"), col("name").alias("strategy_name"), "recommendation_status"
    )
    return _to_polars(experiments.join(strategies, on="strategy_id", how="left"))


def recent_top_experiments(
    lake: str | Path, *, n: int = 100, days: int = 90, as_of: datetime | None = None
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The ``n`` experiments of the last ``days`` days (before ``as_of``; default: the newest experiment
    in the lake) with the highest information ratio, and their return series (one read, pruned by
    month and file statistics)."""
    from daft import col, lit

    experiments = daft_table(lake, "aistock_experiments")
    if as_of is None:
        newest = _to_polars(experiments.agg(col("created_at").max().alias("newest")))["newest"][0]
        as_of = newest if newest is not None else datetime.now(UTC)
    since = as_of - timedelta(days=days)
    top = _to_polars(
        experiments.where(
            (col("created_at") >= lit(since))
            & (col("created_at") <= lit(as_of))
            & col("information_ratio").not_null()
        )
        .select(col("id").alias("experiment_id"), "task_run_id", "month", "information_ratio", "created_at")
        .sort(["information_ratio", "experiment_id"], desc=[True, False])
        .limit(n)
    )
    if top.is_empty():
        return top, pl.DataFrame()
    months = top["month"].unique().to_list()
    series = _to_polars(
        daft_table(lake, "aistock_return_series")
        .where(col("month").is_in(months) & col("experiment_id").is_in(top["experiment_id"].to_list()))
        .select("experiment_id", "datetime", "return", "bench", "cost")
    ).sort("experiment_id", "datetime")
    return top, series


def top_return_correlations(series: pl.DataFrame, *, min_overlap: int = 20) -> pl.DataFrame:
    """Pairwise correlation of daily excess returns (with cost) of the given experiments, long form
    (``a``, ``b``, ``correlation``, ``days``): pairs with fewer than ``min_overlap`` common days are left out."""
    if series.is_empty():
        return pl.DataFrame(
            schema={"a": pl.String, "b": pl.String, "correlation": pl.Float64, "days": pl.Int64}
        )
    wide = (
        series.with_columns((pl.col("return") - pl.col("bench") - pl.col("cost")).alias("x"))
        .filter(pl.col("x").is_finite())
        .pivot(on="experiment_id", index="datetime", values="x")
        .sort("datetime")
    )
    ids = [c for c in wide.columns if c != "datetime"]
    x = wide.select(ids).to_numpy()
    rows = []
    for i, a in enumerate(ids):
        for j in range(i, len(ids)):
            both = np.isfinite(x[:, i]) & np.isfinite(x[:, j])
            u, v = x[both, i], x[both, j]
            if u.size < min_overlap or u.std() == 0 or v.std() == 0:
                continue
            r = 1.0 if i == j else float(np.corrcoef(u, v)[0, 1])
            rows.append({"a": a, "b": ids[j], "correlation": r, "days": int(u.size)})
            if i != j:
                rows.append({"a": ids[j], "b": a, "correlation": r, "days": int(u.size)})
    return pl.DataFrame(
        rows, schema={"a": pl.String, "b": pl.String, "correlation": pl.Float64, "days": pl.Int64}
    )
