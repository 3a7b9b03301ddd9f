"""Control versus treatments within one task run: side-by-side results and an honest ranking.

Every figure is recomputed from the archived daily return series (``aistock_return_series``)
with :mod:`workbench.metrics`, on the dates all compared strategies share, so no strategy
looks better for having been measured over a kinder window. IC and rank IC are not in a return
series; they are Qlib's own figures (``qlib_res.csv``) for each loop's whole test window.

Honest ranking (Bailey & López de Prado): an agent that tries many strategies will find a good
Sharpe ratio by luck alone. Each strategy therefore carries

* ``psr`` — the probability that its true Sharpe ratio is above 0, given its length, skewness
  and kurtosis;
* ``dsr`` — the same against the Sharpe ratio the best of N unskilled trials would reach, with N
  = the loops of the task run that have a return series (every loop is a trial, compared or
  not) and the variance of their annualised Sharpe ratios (each over its own series);
* ``sharpe_diff_ci`` — for each treatment, a paired block-bootstrap confidence interval of its
  annualised Sharpe ratio minus the control's (same resampled days on both sides).

The control is the strategy the request marks ``control``; without a request (or when that
loop has no series) it is the first loop by ``loop_id`` — ``control_basis`` says which.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl

from workbench.archive.catalog import open_catalog, read_frame
from workbench.archive.db import fetch_frame
from workbench.errors import ConfigError
from workbench.metrics import (
    bootstrap_sharpe_diff_cis,
    compute_return_metrics,
    deflated_sharpe_ratio,
    excess_curves,
    excess_returns,
    probabilistic_sharpe_ratio,
    sharpe_stats,
    usable_rows,
)

__all__ = ["Comparison", "comparable_task_runs", "compare_task_run", "resolve_task_run_id"]

ControlBasis = Literal["request", "first_loop", "chosen"]
TRIALS_BASIS = "loops of the task run with a return series; variance of their annualised Sharpe ratios"
_DIFF_COLUMNS = ("annualized_excess_return", "information_ratio", "max_drawdown", "ic", "turnover")
_SERIES_COLUMNS = ("datetime", "return", "bench", "cost", "turnover")


@dataclass(frozen=True)
class Comparison:
    """One task run's strategies side by side; ``table`` has one row per strategy, control first.

    ``curves`` is long: ``strategy, datetime, cum_excess, drawdown`` (additive, as Qlib reports
    excess returns), on the common dates.
    """

    task_run_id: str
    request_name: str | None
    control: str
    control_basis: ControlBasis
    with_cost: bool
    periods_per_year: int
    start: str
    end: str
    n_days: int
    n_trials: int
    var_trials: float
    bootstrap: dict[str, Any]
    table: pl.DataFrame
    curves: pl.DataFrame
    skipped: tuple[dict[str, Any], ...] = field(default_factory=tuple)
    notes: tuple[str, ...] = field(default_factory=tuple)

    def strategies(self) -> list[dict[str, Any]]:
        """Table rows as JSON-ready dicts, with ``sharpe_diff_ci`` as ``[low, high]`` (None for the control)."""
        rows = []
        for row in self.table.iter_rows(named=True):
            low, high = row.pop("sharpe_diff_low"), row.pop("sharpe_diff_high")
            row["sharpe_diff_ci"] = None if low is None or high is None else [low, high]
            rows.append({k: _finite_or_none(v) for k, v in row.items()})
        return rows

    def to_dict(self, *, curves: bool = False) -> dict[str, Any]:
        """Everything as plain JSON types; ``curves=True`` adds the curve points."""
        out: dict[str, Any] = {
            "task_run_id": self.task_run_id,
            "request_name": self.request_name,
            "control": self.control,
            "control_basis": self.control_basis,
            "with_cost": self.with_cost,
            "periods_per_year": self.periods_per_year,
            "window": {"start": self.start, "end": self.end, "n_days": self.n_days},
            "n_trials": self.n_trials,
            "var_trials": self.var_trials,
            "trials_basis": TRIALS_BASIS,
            "bootstrap": self.bootstrap,
            "strategies": self.strategies(),
            "skipped": list(self.skipped),
            "notes": list(self.notes),
        }
        if curves:
            out["curves"] = [
                {**r, "datetime": r["datetime"].isoformat()} for r in self.curves.iter_rows(named=True)
            ]
        return out

    def format(self) -> str:
        """A terminal table: results, differences from the control, PSR/DSR and the Sharpe-difference CI."""
        basis = {
            "request": "the request's control",
            "first_loop": "first loop (no control in a request)",
            "chosen": "chosen",
        }[self.control_basis]
        lines = [
            f"task run {self.task_run_id}" + (f"  request {self.request_name}" if self.request_name else ""),
            f"  control: {self.control} ({basis});  {self.n_days} common days {self.start} .. {self.end};  "
            f"excess return {'with' if self.with_cost else 'without'} cost",
            f"  DSR trials: {self.n_trials} ({TRIALS_BASIS}: {self.var_trials:.4g})",
            "",
            f"  {'strategy':<22} {'role':<9} {'ann.exc':>8} {'Δ':>8} {'IR':>6} {'Δ':>6} {'maxDD':>7} {'IC':>7} "
            f"{'turn':>6} {'PSR':>5} {'DSR':>5}  Sharpe diff [95% CI]",
        ]
        for row in self.strategies():
            ci = row["sharpe_diff_ci"]
            diff = (
                ""
                if ci is None
                else f"{_fmt(row['sharpe_diff'], '+.2f')} [{_fmt(ci[0], '+.2f')}, {_fmt(ci[1], '+.2f')}]"
            )
            lines.append(
                f"  {str(row['strategy'])[:22]:<22} {row['role']:<9} {_fmt(row['annualized_excess_return'], '.2%'):>8} "
                f"{_fmt(row['annualized_excess_return_diff'], '+.2%'):>8} {_fmt(row['information_ratio'], '.2f'):>6} "
                f"{_fmt(row['information_ratio_diff'], '+.2f'):>6} {_fmt(row['max_drawdown'], '.2%'):>7} "
                f"{_fmt(row['ic'], '.4f'):>7} {_fmt(row['turnover'], '.3f'):>6} {_fmt(row['psr'], '.2f'):>5} "
                f"{_fmt(row['dsr'], '.2f'):>5}  {diff}"
            )
        for item in self.skipped:
            lines.append(f"  skipped: {item['strategy']} (loop {item['loop_id']}): {item['reason']}")
        lines.extend(f"  note: {note}" for note in self.notes)
        return "\n".join(lines)

    def chart(self) -> Any:
        """Cumulative excess return, drawdown and Sharpe differences (Altair, renders offline)."""
        from workbench.analysis import charts

        return charts.comparison_chart(self.curves, self.table, control=self.control)


def _fmt(value: Any, spec: str) -> str:
    return "" if value is None else format(value, spec)


def _finite_or_none(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# --------------------------------------------------------------------------- reading


def resolve_task_run_id(archive: Path | str | None, ref: str) -> str:
    """A task run id from the full id or a unique prefix (≥ 6 characters)."""
    ref = (ref or "").strip()
    if not ref:
        raise ConfigError(
            "task run id is empty; give a task run id or a unique prefix of at least 6 characters "
            "(see `workbench status`)"
        )
    hits = read_frame(
        archive,
        "SELECT DISTINCT task_run_id FROM aistock_experiments "
        "WHERE task_run_id = $ref OR (length($ref) >= 6 AND starts_with(task_run_id, $ref))",
        {"ref": ref},
    )["task_run_id"].to_list()
    if ref in hits:
        return ref
    if not hits:
        short = " (a prefix needs at least 6 characters)" if len(ref) < 6 else ""
        raise ConfigError(
            f"unknown task run {ref!r}: no archived experiment belongs to it{short} "
            "(see `workbench status` or comparable_task_runs())"
        )
    if len(hits) > 1:
        raise ConfigError(f"task run {ref!r} is ambiguous: {', '.join(sorted(hits))}")
    return str(hits[0])


def comparable_task_runs(archive: Path | str | None) -> pl.DataFrame:
    """Task runs with at least one archived return series: loops, loops with series, request and control."""
    return read_frame(
        archive,
        """
        WITH series AS (SELECT DISTINCT experiment_id FROM aistock_return_series)
        SELECT e.task_run_id, any_value(e.request_name) AS request_name, count(*) AS n_loops,
               count(s.experiment_id) AS n_with_series,
               any_value(st.name) FILTER (WHERE e.strategy_role = 'control') AS control,
               min(e.created_at) AS first_loop_at
        FROM aistock_experiments e
        LEFT JOIN series s ON s.experiment_id = e.id
        LEFT JOIN aistock_strategies st ON st.id = e.strategy_id
        GROUP BY e.task_run_id
        HAVING count(s.experiment_id) >= 1
        ORDER BY (any_value(e.request_name) IS NULL), n_with_series DESC, first_loop_at DESC NULLS LAST, e.task_run_id
        """,
    )


def _load(archive: Path | str | None, task_run_id: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The task run's experiments (with strategy names and Qlib IC) and all their return series, one read."""
    with open_catalog(archive, read_only=True) as con:
        experiments = fetch_frame(
            con,
            """
            SELECT e.id AS experiment_id, e.loop_id, e.strategy_id, s.name AS strategy_name, e.strategy_role,
                   e.request_name, s.source, s.recommendation_status,
                   TRY_CAST(json_extract_string(e.metrics_json, '$.qlib.ic') AS DOUBLE) AS ic,
                   TRY_CAST(json_extract_string(e.metrics_json, '$.qlib.rank_ic') AS DOUBLE) AS rank_ic
            FROM aistock_experiments e LEFT JOIN aistock_strategies s ON s.id = e.strategy_id
            WHERE e.task_run_id = $id ORDER BY e.loop_id
            """,
            {"id": task_run_id},
        )
        series = fetch_frame(
            con,
            """
            SELECT r.experiment_id, r.datetime, r."return", r.bench, r.cost, r.turnover
            FROM aistock_return_series r JOIN aistock_experiments e ON e.id = r.experiment_id
            WHERE e.task_run_id = $id ORDER BY r.experiment_id, r.datetime
            """,
            {"id": task_run_id},
        )
    return experiments, series


def _display_names(experiments: pl.DataFrame) -> pl.DataFrame:
    """A unique label per loop: the strategy name, suffixed with the loop when two loops share one."""
    named = experiments.with_columns(
        pl.coalesce("strategy_name", pl.format("loop {}", "loop_id")).alias("strategy")
    )
    return named.with_columns(
        pl.when(pl.col("strategy").is_duplicated())
        .then(pl.format("{}#{}", "strategy", "loop_id"))
        .otherwise(pl.col("strategy"))
        .alias("strategy")
    )


def _matches(row: dict[str, Any], ref: str | int) -> bool:
    text = str(ref).strip()
    return text in (
        row["strategy"],
        row["strategy_name"],
        str(row["loop_id"]),
        row["experiment_id"],
        row["strategy_id"],
    ) or (
        len(text) >= 6 and any(str(row[k] or "").startswith(text) for k in ("strategy_id", "experiment_id"))
    )


def _pick(rows: list[dict[str, Any]], ref: str | int, *, what: str) -> dict[str, Any]:
    hits = [r for r in rows if _matches(r, ref)]
    if len(hits) != 1:
        available = ", ".join(f"{r['strategy']} (loop {r['loop_id']})" for r in rows)
        problem = "matches no strategy" if not hits else "matches several strategies"
        raise ConfigError(
            f"{what} {ref!r} {problem} of this task run with a return series; available: {available}"
        )
    return hits[0]


# --------------------------------------------------------------------------- computing


def _clean(series: pl.DataFrame) -> pl.DataFrame:
    """Rows usable for metrics (the rule of :func:`workbench.metrics.usable_rows`)."""
    return series.filter(usable_rows())


def _trial_sharpes(series: pl.DataFrame, *, with_cost: bool, periods_per_year: int) -> list[float]:
    """Annualised Sharpe ratio of every trial, each over its own full series (None-SR trials left out)."""
    out = []
    for _, frame in _clean(series).group_by("experiment_id", maintain_order=True):
        sr = sharpe_stats(excess_returns(frame, with_cost=with_cost))["sr"]
        if sr is not None:
            out.append(float(sr) * math.sqrt(periods_per_year))
    return out


def _psr_dsr(
    excess: np.ndarray, *, n_trials: int, var_trials: float, periods_per_year: int
) -> tuple[float | None, float | None, str | None]:
    stats = sharpe_stats(excess)
    if stats["sr"] is None or stats["skew"] is None or stats["kurtosis"] is None:
        return None, None, "flat or too short a series: PSR and DSR undefined"
    sr, n, skew, kurt = float(stats["sr"]), int(stats["n"]), float(stats["skew"]), float(stats["kurtosis"])  # type: ignore[arg-type]
    try:
        psr = probabilistic_sharpe_ratio(sr, n=n, skew=skew, kurtosis=kurt)
        dsr = deflated_sharpe_ratio(
            sr * math.sqrt(periods_per_year),
            n=n,
            skew=skew,
            kurtosis=kurt,
            n_trials=n_trials,
            var_trials=var_trials,
            periods_per_year=periods_per_year,
        )
    except ConfigError as exc:
        return None, None, str(exc)
    return psr, dsr, None


def _metrics_row(frame: pl.DataFrame, *, with_cost: bool, periods_per_year: int) -> dict[str, Any]:
    metrics = compute_return_metrics(frame, periods_per_year=periods_per_year)
    series = "excess_return_with_cost" if with_cost else "excess_return_without_cost"
    return {
        "n_days": metrics["n_days"],
        "annualized_excess_return": metrics[f"{series}.additive.annualized_return"],
        "information_ratio": metrics[f"{series}.additive.information_ratio"],
        "max_drawdown": metrics[f"{series}.additive.max_drawdown"],
        "total_excess_return": metrics[f"{series}.compounded.total_return"],
        "turnover": metrics["turnover_mean"],
    }


def _curves(frames: dict[str, pl.DataFrame], *, with_cost: bool) -> pl.DataFrame:
    parts = []
    for name, frame in frames.items():
        source = frame if with_cost else frame.with_columns(pl.lit(0.0).alias("cost"))
        parts.append(
            excess_curves(source).select(
                pl.lit(name).alias("strategy"),
                "datetime",
                pl.col("cum_excess_additive").alias("cum_excess"),
                pl.col("drawdown_additive").alias("drawdown"),
            )
        )
    if not parts:
        return pl.DataFrame(
            schema={
                "strategy": pl.String,
                "datetime": pl.Date,
                "cum_excess": pl.Float64,
                "drawdown": pl.Float64,
            }
        )
    return pl.concat(parts)


def compare_task_run(
    archive: Path | str | None,
    task_run_id: str,
    *,
    strategies: Sequence[str | int] | None = None,
    control: str | int | None = None,
    with_cost: bool = True,
    n_boot: int = 2000,
    seed: int = 0,
    alpha: float = 0.05,
    block: int = 5,
    periods_per_year: int = 252,
) -> Comparison:
    """Compare the strategies (loops) of one task run against its control.

    ``strategies`` picks some (by name, loop id, strategy or experiment id); the control is
    always included. ``control`` overrides the control. ``with_cost`` chooses excess return
    with or without transaction cost. ``n_boot``, ``seed``, ``alpha`` and ``block`` (days per
    bootstrap block) set the Sharpe-difference interval; the same seed gives the same result.
    """
    _check_settings(n_boot=n_boot, seed=seed, alpha=alpha, block=block, periods_per_year=periods_per_year)
    resolved = resolve_task_run_id(archive, task_run_id)
    experiments, series = _load(archive, resolved)
    experiments = _display_names(experiments)
    with_series = set(
        _clean(series).group_by("experiment_id").len().filter(pl.col("len") >= 2)["experiment_id"].to_list()
    )
    rows = experiments.to_dicts()
    usable = [r for r in rows if r["experiment_id"] in with_series]
    skipped = tuple(
        {
            "strategy": r["strategy"],
            "loop_id": r["loop_id"],
            "experiment_id": r["experiment_id"],
            "reason": "no archived return series (archived at level 1, or its ret.pkl was unreadable)",
        }
        for r in rows
        if r["experiment_id"] not in with_series
    )
    if not usable:
        raise ConfigError(
            f"task run {resolved} has no loop with an archived return series; nothing to compare"
        )
    notes: list[str] = []
    control_row, basis = _choose_control(rows, usable, control, notes)
    chosen = usable if strategies is None else _select(usable, strategies, control_row)
    chosen = [control_row] + [r for r in chosen if r is not control_row]
    frames = _aligned_frames(series, chosen)
    n_days = next(iter(frames.values())).height
    trial_srs = _trial_sharpes(
        series.filter(pl.col("experiment_id").is_in(list(with_series))),
        with_cost=with_cost,
        periods_per_year=periods_per_year,
    )
    # every archived loop of the task run was a trial, with a series or not: counting only those with a
    # series would make the deflation too generous; the variance uses the trials whose Sharpe is defined
    n_trials = max(len(rows), len(trial_srs))
    if n_trials > len(trial_srs):
        notes.append(
            f"n_trials = {n_trials} archived loops of the task run; the variance of trial Sharpe ratios "
            f"uses the {len(trial_srs)} with a usable return series"
        )
    var_trials = float(np.var(trial_srs, ddof=1)) if len(trial_srs) >= 2 else 0.0
    if len(trial_srs) < 2:
        notes.append("fewer than 2 trials with a defined Sharpe ratio: var_trials = 0, so DSR equals PSR")
    excess = {r["strategy"]: excess_returns(frames[r["strategy"]], with_cost=with_cost) for r in chosen}
    cis = bootstrap_sharpe_diff_cis(
        excess[control_row["strategy"]],
        {r["strategy"]: excess[r["strategy"]] for r in chosen[1:]},
        n_boot=n_boot,
        alpha=alpha,
        block=block,
        seed=seed,
        periods_per_year=periods_per_year,
    )
    table_rows = []
    for r in chosen:
        name = r["strategy"]
        row = {
            "strategy": name,
            "role": "control" if r is control_row else "treatment",
            "loop_id": r["loop_id"],
            "strategy_id": r["strategy_id"],
            "experiment_id": r["experiment_id"],
            "source": r["source"],
            "recommendation_status": r["recommendation_status"],
            **_metrics_row(frames[name], with_cost=with_cost, periods_per_year=periods_per_year),
            "ic": r["ic"],
            "rank_ic": r["rank_ic"],
        }
        row["psr"], row["dsr"], problem = _psr_dsr(
            excess[name], n_trials=n_trials, var_trials=var_trials, periods_per_year=periods_per_year
        )
        if problem:
            notes.append(f"{name}: {problem}")
        ci = cis.get(name)
        if isinstance(ci, str):
            notes.append(f"{name}: Sharpe difference interval undefined: {ci}")
        point, low, high = ci if isinstance(ci, tuple) else (None, None, None)
        row.update({"sharpe_diff": point, "sharpe_diff_low": low, "sharpe_diff_high": high})
        table_rows.append(row)
    table = _with_differences(_typed_table(table_rows))
    dates = next(iter(frames.values()))["datetime"]
    return Comparison(
        task_run_id=resolved,
        request_name=next((r["request_name"] for r in rows if r["request_name"]), None),
        control=control_row["strategy"],
        control_basis=basis,
        with_cost=with_cost,
        periods_per_year=periods_per_year,
        start=dates[0].isoformat(),
        end=dates[-1].isoformat(),
        n_days=n_days,
        n_trials=n_trials,
        var_trials=var_trials,
        bootstrap={
            "n_boot": n_boot,
            "seed": seed,
            "alpha": alpha,
            "block": block,
            "method": "circular",
            "paired": True,
        },
        table=table,
        curves=_curves(frames, with_cost=with_cost),
        skipped=skipped,
        notes=tuple(notes),
    )


def _check_settings(
    *, n_boot: object, seed: object, alpha: object, block: object, periods_per_year: object
) -> None:
    """Refuse bootstrap and annualisation settings that cannot work, before reading anything.

    The values come from notebooks as often as from the CLI, so their types are checked too.
    """

    def whole(value: object, minimum: int) -> bool:
        return isinstance(value, int | np.integer) and not isinstance(value, bool) and int(value) >= minimum

    problems = []
    if not whole(n_boot, 1):
        problems.append(f"n_boot (--n-boot) must be a whole number of at least 1, got {n_boot!r}")
    if not whole(seed, 0):
        problems.append(f"seed (--seed) must be a whole number of at least 0, got {seed!r}")
    if not (isinstance(alpha, int | float | np.floating) and 0 < float(alpha) < 1):
        problems.append(f"alpha must be between 0 and 1 (0.05 for a 95% interval), got {alpha!r}")
    if not whole(block, 1):
        problems.append(f"block must be a whole number of days, at least 1, got {block!r}")
    if not whole(periods_per_year, 1):
        problems.append(f"periods_per_year must be a whole number, at least 1, got {periods_per_year!r}")
    if problems:
        raise ConfigError("; ".join(problems))


def _choose_control(
    rows: list[dict[str, Any]], usable: list[dict[str, Any]], control: str | int | None, notes: list[str]
) -> tuple[dict[str, Any], ControlBasis]:
    """The chosen control, else the request's control, else the first loop (with a note saying why)."""
    if control is not None:
        return _pick(usable, control, what="control"), "chosen"
    marked = [r for r in usable if r["strategy_role"] == "control"]
    if marked:
        return marked[0], "request"
    first = min(usable, key=lambda r: r["loop_id"])
    if any(r["strategy_role"] == "control" for r in rows):
        notes.append(
            f"the request's control has no archived return series; the first loop ({first['strategy']}) "
            "is the control"
        )
    return first, "first_loop"


def _select(
    usable: list[dict[str, Any]], refs: Sequence[str | int], control_row: dict[str, Any]
) -> list[dict[str, Any]]:
    picked = [_pick(usable, ref, what="strategy") for ref in refs]
    seen: set[str] = set()
    ordered = []
    for row in sorted([control_row, *picked], key=lambda r: r["loop_id"]):
        if row["experiment_id"] not in seen:
            seen.add(row["experiment_id"])
            ordered.append(row)
    return ordered


def _aligned_frames(series: pl.DataFrame, chosen: list[dict[str, Any]]) -> dict[str, pl.DataFrame]:
    """Each chosen strategy's usable rows on the dates every chosen strategy has."""
    ids = [r["experiment_id"] for r in chosen]
    usable = _clean(series.filter(pl.col("experiment_id").is_in(ids)))
    common = (
        usable.group_by("datetime")
        .agg(pl.col("experiment_id").n_unique().alias("n"))
        .filter(pl.col("n") == len(ids))
    )
    if common.height < 2:
        spans = usable.group_by("experiment_id").agg(
            pl.col("datetime").min().alias("start"), pl.col("datetime").max().alias("end")
        )
        raise ConfigError(
            f"the chosen strategies share {common.height} trading day(s); their series span "
            f"{spans.sort('start').rows()}; choose strategies tested over the same window"
        )
    aligned = usable.join(common.select("datetime"), on="datetime", how="semi").sort("datetime")
    by_id = {key[0]: frame for key, frame in aligned.group_by("experiment_id")}
    return {r["strategy"]: by_id[r["experiment_id"]].select(_SERIES_COLUMNS) for r in chosen}


_FLOAT_COLUMNS = (
    "annualized_excess_return",
    "information_ratio",
    "max_drawdown",
    "total_excess_return",
    "turnover",
    "ic",
    "rank_ic",
    "psr",
    "dsr",
    "sharpe_diff",
    "sharpe_diff_low",
    "sharpe_diff_high",
)


def _typed_table(rows: list[dict[str, Any]]) -> pl.DataFrame:
    """The table with fixed types, so a column that happens to be all null is still Float64/String."""
    schema: dict[str, Any] = {
        "strategy": pl.String,
        "role": pl.String,
        "loop_id": pl.Int64,
        "strategy_id": pl.String,
        "experiment_id": pl.String,
        "source": pl.String,
        "recommendation_status": pl.String,
        "n_days": pl.Int64,
        **dict.fromkeys(_FLOAT_COLUMNS, pl.Float64),
    }
    return pl.DataFrame(rows, schema=schema).select(
        "strategy",
        "role",
        "loop_id",
        "strategy_id",
        "experiment_id",
        "source",
        "recommendation_status",
        "n_days",
        "annualized_excess_return",
        "information_ratio",
        "max_drawdown",
        "total_excess_return",
        "ic",
        "rank_ic",
        "turnover",
        "psr",
        "dsr",
        "sharpe_diff",
        "sharpe_diff_low",
        "sharpe_diff_high",
    )


def _with_differences(table: pl.DataFrame) -> pl.DataFrame:
    """``<metric>_diff`` = treatment − control for the headline metrics (null on the control row)."""
    is_control = pl.col("role") == "control"
    return table.with_columns(
        [
            pl.when(is_control)
            .then(None)
            .otherwise(pl.col(c) - pl.col(c).filter(is_control).first())
            .alias(f"{c}_diff")
            for c in _DIFF_COLUMNS
        ]
    )
