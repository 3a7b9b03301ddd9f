"""Control versus treatments within one task run: side-by-side results and an honest ranking.

Every figure is recomputed from the archived daily return series (``aistock_return_series``)
with :mod:`workbench.metrics`, on the dates all compared strategies share, so no strategy
looks better for having been measured over a kinder window; what that alignment drops from each
strategy, and why, is in ``alignment`` (:mod:`workbench.analysis.alignment`), and each strategy's
headline on its own full series sits beside the aligned one (``*_own`` columns). IC and rank IC
are not in a return series; they are Qlib's own figures (``qlib_res.csv``) for each loop's whole
test window.

Honest ranking (Bailey & López de Prado): an agent that tries many strategies will find a good
Sharpe ratio by luck alone. Each strategy therefore carries

* ``psr`` — the probability that its true Sharpe ratio is above 0, given its length, skewness
  and kurtosis;
* ``dsr`` — the same against the Sharpe ratio the best of N unskilled trials would reach, with N
  every loop of the search (:mod:`workbench.analysis.trials`); ``dsr_effective`` with the
  effective N of correlated trials;
* ``sharpe_diff_*`` — for each treatment, a paired block bootstrap of its annualised Sharpe ratio
  minus the control's (same resampled days on both sides): percentile and studentized intervals,
  a p-value, and that p-value Holm-adjusted across the treatments.

The control is the strategy the request marks ``control``; without a request (or when that
loop has no series) it is the first loop by ``loop_id`` — ``control_basis`` says which.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import duckdb
import numpy as np
import polars as pl

from workbench.analysis.alignment import AlignmentReport, alignment_report
from workbench.analysis.trials import Trials, count_trials, search_task_runs
from workbench.archive.catalog import read_frame
from workbench.archive.db import fetch_frame
from workbench.errors import ConfigError
from workbench.lake.read import source_connection, source_frame
from workbench.metrics import (
    BOOTSTRAP_METHODS,
    BootstrapMethod,
    SharpeDiffTest,
    compute_return_metrics,
    deflated_sharpe_ratio,
    excess_curves,
    excess_returns,
    holm_adjust,
    probabilistic_sharpe_ratio,
    sharpe_diff_tests,
    sharpe_stats,
    usable_rows,
)

__all__ = ["Comparison", "comparable_task_runs", "compare_task_run", "resolve_task_run_id"]

ControlBasis = Literal["request", "first_loop", "chosen"]
_DIFF_COLUMNS = ("annualized_excess_return", "information_ratio", "max_drawdown", "ic", "turnover")
_SERIES_COLUMNS = ("datetime", "return", "bench", "cost", "turnover")


@dataclass(frozen=True)
class Comparison:
    """One task run's strategies side by side; ``table`` has one row per strategy, control first.

    ``curves`` is long: ``strategy, datetime, cum_excess, drawdown`` (additive, as Qlib reports
    excess returns), over each strategy's own full series; ``start``..``end`` is the common
    window the figures are computed on (charts shade it).
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
    trials: Trials | None = None
    alignment: tuple[AlignmentReport, ...] = field(default_factory=tuple)
    warnings: tuple[str, ...] = field(default_factory=tuple)
    max_dropped_share: float = 0.1

    def strategies(self) -> list[dict[str, Any]]:
        """Table rows as JSON-ready dicts, with ``sharpe_diff_ci`` as ``[low, high]`` (None for the control)."""
        rows = []
        for row in self.table.iter_rows(named=True):
            low, high = row.pop("sharpe_diff_low"), row.pop("sharpe_diff_high")
            row["sharpe_diff_ci"] = None if low is None or high is None else [low, high]
            low, high = row.pop("sharpe_diff_studentized_low"), row.pop("sharpe_diff_studentized_high")
            row["sharpe_diff_ci_studentized"] = None if low is None or high is None else [low, high]
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
            "trials_basis": self.trials_basis,
            "trials": self.trials.to_dict() if self.trials else None,
            "bootstrap": self.bootstrap,
            "strategies": self.strategies(),
            "alignment": [a.to_dict() for a in self.alignment],
            "max_dropped_share": self.max_dropped_share,
            "warnings": list(self.warnings),
            "skipped": list(self.skipped),
            "notes": list(self.notes),
        }
        if curves:
            out["curves"] = [
                {**r, "datetime": r["datetime"].isoformat()} for r in self.curves.iter_rows(named=True)
            ]
        return out

    @property
    def trials_basis(self) -> str:
        """Where N and the variance of trial Sharpe ratios come from, in words."""
        if self.trials is None:
            return ""
        t = self.trials
        return (
            f"N = {t.n}: {t.source}; variance of the annualised Sharpe ratios of the {t.n_sharpe_known} trials "
            f"whose Sharpe ratio is known, on {t.window['start']} .. {t.window['end']} "
            f"({', '.join(f'{k}: {v}' for k, v in t.sharpe_sources.items())})"
        )

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
            f"  DSR trials: {self.trials_basis}",
            f"  var_trials {self.var_trials:.4g};  effective N {self._n_effective()} "
            "(from the average correlation of the trials' daily excess returns)",
            f"  bootstrap: {self.bootstrap['method']}, block {_fmt(self.bootstrap['block'], '.3g')} "
            f"({self.bootstrap['block_basis']}), {self.bootstrap['n_boot']} resamples, "
            f"{1 - self.bootstrap['alpha']:.0%} intervals;  p: studentized, Holm across treatments",
            "",
            f"  {'strategy':<22} {'role':<9} {'ann.exc':>8} {'Δ':>8} {'IR':>6} {'Δ':>6} {'maxDD':>7} {'IC':>7} "
            f"{'turn':>6} {'PSR':>5} {'DSR':>5} {'DSReff':>6}  Sharpe diff [pct CI] [stud. CI] p p_holm",
        ]
        for row in self.strategies():
            ci, stud = row["sharpe_diff_ci"], row["sharpe_diff_ci_studentized"]
            diff = (
                ""
                if ci is None
                else f"{_fmt(row['sharpe_diff'], '+.2f')} [{_fmt(ci[0], '+.2f')}, {_fmt(ci[1], '+.2f')}]"
                + ("" if stud is None else f" [{_fmt(stud[0], '+.2f')}, {_fmt(stud[1], '+.2f')}]")
                + f" {_fmt(row['sharpe_diff_p_value'], '.3f')} {_fmt(row['sharpe_diff_p_holm'], '.3f')}"
            )
            lines.append(
                f"  {str(row['strategy'])[:22]:<22} {row['role']:<9} {_fmt(row['annualized_excess_return'], '.2%'):>8} "
                f"{_fmt(row['annualized_excess_return_diff'], '+.2%'):>8} {_fmt(row['information_ratio'], '.2f'):>6} "
                f"{_fmt(row['information_ratio_diff'], '+.2f'):>6} {_fmt(row['max_drawdown'], '.2%'):>7} "
                f"{_fmt(row['ic'], '.4f'):>7} {_fmt(row['turnover'], '.3f'):>6} {_fmt(row['psr'], '.2f'):>5} "
                f"{_fmt(row['dsr'], '.2f'):>5} {_fmt(row['dsr_effective'], '.2f'):>6}  {diff}"
            )
        lines += ["", "  alignment (own series → common window):"]
        by_name = {row["strategy"]: row for row in self.strategies()}
        for a in self.alignment:
            row = by_name[a.strategy]
            lines.append(
                f"  {a.strategy[:22]:<22} own {a.own_days} days {a.own_start} .. {a.own_end}, kept {a.aligned_days} "
                f"(dropped: late start {a.late_start}, early end {a.early_end}, missing {a.missing_days}; "
                f"non-finite {a.non_finite});  IR own {_fmt(row['information_ratio_own'], '.2f')} vs aligned "
                f"{_fmt(row['information_ratio'], '.2f')}, DSR own {_fmt(row['dsr_own'], '.2f')}"
            )
        lines.extend(f"  WARNING: {w}" for w in self.warnings)
        for item in self.skipped:
            lines.append(f"  skipped: {item['strategy']} (loop {item['loop_id']}): {item['reason']}")
        lines.extend(f"  note: {note}" for note in self.notes)
        return "\n".join(lines)

    def _n_effective(self) -> str:
        return "" if self.trials is None else f"{self.trials.n_effective:.3g}"

    def chart(self) -> Any:
        """Cumulative excess return, drawdown and Sharpe differences (Altair, renders offline)."""
        from workbench.analysis import charts

        return charts.comparison_chart(
            self.curves,
            self.table,
            control=self.control,
            window=(self.start, self.end),
            level=1 - float(self.bootstrap["alpha"]),
        )


def _fmt(value: Any, spec: str) -> str:
    return "" if value is None else format(value, spec)


def _finite_or_none(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# --------------------------------------------------------------------------- reading


def resolve_task_run_id(archive: Path | str | None, ref: str, *, lake: str | Path | None = None) -> str:
    """A task run id from the full id or a unique prefix (≥ 6 characters)."""
    ref = (ref or "").strip()
    if not ref:
        raise ConfigError(
            "task run id is empty; give a task run id or a unique prefix of at least 6 characters "
            "(see `workbench status`)"
        )
    hits = source_frame(
        archive,
        lake,
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


@contextmanager
def _trials_connection(
    archive: Path | str | None,
    lake: str | Path | None,
    task_run_id: str,
    request_name: str | None,
    search: Sequence[str] | None,
) -> Iterator[duckdb.DuckDBPyConnection]:
    """Where the trials are counted: the catalog, or the lake with only the search's return series scanned."""
    if lake is None:
        with source_connection(archive, None) as con:
            yield con
        return
    with source_connection(archive, lake, tables=_SEARCH_TABLES) as con:
        runs, _ = search_task_runs(con, task_run_id, request_name, search)
    with source_connection(
        archive, lake, where={"aistock_return_series": pl.col("task_run_id").is_in(runs)}
    ) as con:
        yield con


_SEARCH_TABLES = ("aistock_experiments", "aistock_loops", "aistock_requests")


def _load(
    archive: Path | str | None, task_run_id: str, lake: str | Path | None = None
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The task run's experiments (with strategy names and Qlib IC) and all their return series, one read.

    On a lake only the task run's return series are scanned (its ``task_run_id`` column).
    """
    only_this_run = {"aistock_return_series": pl.col("task_run_id") == task_run_id}
    with source_connection(archive, lake, where=only_this_run) as con:
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


def _psr_dsr(
    excess: np.ndarray, *, trials: Trials, periods_per_year: int
) -> tuple[float | None, float | None, float | None, str | None]:
    """PSR, DSR over N trials and DSR over the effective N, or why they are undefined."""
    stats = sharpe_stats(excess)
    if stats["sr"] is None or stats["skew"] is None or stats["kurtosis"] is None:
        return None, None, None, "flat or too short a series: PSR and DSR undefined"
    sr, n, skew, kurt = float(stats["sr"]), int(stats["n"]), float(stats["skew"]), float(stats["kurtosis"])  # type: ignore[arg-type]
    try:
        psr = probabilistic_sharpe_ratio(sr, n=n, skew=skew, kurtosis=kurt)
        dsr = [
            deflated_sharpe_ratio(
                sr * math.sqrt(periods_per_year),
                n=n,
                skew=skew,
                kurtosis=kurt,
                n_trials=count,
                var_trials=trials.var,
                periods_per_year=periods_per_year,
            )
            for count in (trials.n, trials.n_effective)
        ]
    except ConfigError as exc:
        return None, None, None, str(exc)
    return psr, dsr[0], dsr[1], None


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
    block: float | None = None,
    method: BootstrapMethod = "stationary",
    periods_per_year: int = 252,
    search: Sequence[str] | None = None,
    n_trials: int | None = None,
    max_dropped_share: float = 0.1,
    lake: str | Path | None = None,
) -> Comparison:
    """Compare the strategies (loops) of one task run against its control.

    ``strategies`` picks some (by name, loop id, strategy or experiment id); the control is
    always included. ``control`` overrides the control. ``with_cost`` chooses excess return
    with or without transaction cost. ``n_boot``, ``seed``, ``alpha``, ``block`` (expected days
    per block; None = Politis–White from the data) and ``method`` (``stationary`` or
    ``circular``) set the Sharpe-difference bootstrap; the same seed gives the same result.
    ``search`` adds task runs to the search whose loops are the DSR's trials, ``n_trials``
    overrides their count. A warning is noted when alignment drops more than
    ``max_dropped_share`` of any strategy's days. ``lake=URI`` reads the team's Delta tables
    instead of ``archive``'s catalog, scanning only the return series of the search's task runs.
    """
    _check_settings(
        n_boot=n_boot,
        seed=seed,
        alpha=alpha,
        block=block,
        method=method,
        periods_per_year=periods_per_year,
        n_trials=n_trials,
        max_dropped_share=max_dropped_share,
    )
    resolved = resolve_task_run_id(archive, task_run_id, lake=lake)
    experiments, series = _load(archive, resolved, lake)
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
    dates = next(iter(frames.values()))["datetime"]
    window = (dates[0], dates[-1])
    request_name = next((r["request_name"] for r in rows if r["request_name"]), None)
    with _trials_connection(archive, lake, resolved, request_name, search) as con:
        trials = count_trials(
            con,
            resolved,
            request_name,
            search=search,
            n_trials=n_trials,
            window=window,
            with_cost=with_cost,
            periods_per_year=periods_per_year,
        )
    notes.extend(trials.notes)
    own_frames = _own_frames(series, chosen)
    alignment = alignment_report(
        {r["strategy"]: series.filter(pl.col("experiment_id") == r["experiment_id"]) for r in chosen},
        dates.to_list(),
    )
    warnings = [
        f"alignment drops {a.dropped} of {a.strategy}'s {a.own_days} days ({a.dropped_share:.0%} > "
        f"{max_dropped_share:.0%}); its own-series figures (*_own) differ: " + "; ".join(a.causes)
        for a in alignment
        if a.dropped_share > max_dropped_share
    ]
    excess = {r["strategy"]: excess_returns(frames[r["strategy"]], with_cost=with_cost) for r in chosen}
    tests = sharpe_diff_tests(
        excess[control_row["strategy"]],
        {r["strategy"]: excess[r["strategy"]] for r in chosen[1:]},
        n_boot=n_boot,
        alpha=alpha,
        block=block,
        seed=seed,
        periods_per_year=periods_per_year,
        method=method,
    )
    holm = dict(
        zip(
            tests,
            holm_adjust([None if isinstance(t, str) else t.p_value for t in tests.values()]),
            strict=True,
        )
    )
    table_rows = []
    for r in chosen:
        name = r["strategy"]
        row: dict[str, Any] = {
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
        ranking = _psr_dsr(excess[name], trials=trials, periods_per_year=periods_per_year)
        row["psr"], row["dsr"], row["dsr_effective"] = ranking[:3]
        if ranking[3]:
            notes.append(f"{name}: {ranking[3]}")
        own = own_frames[name]
        own_metrics = _metrics_row(own, with_cost=with_cost, periods_per_year=periods_per_year)
        own_ranking = _psr_dsr(
            excess_returns(own, with_cost=with_cost), trials=trials, periods_per_year=periods_per_year
        )
        row.update(
            {
                "n_days_own": own_metrics["n_days"],
                "annualized_excess_return_own": own_metrics["annualized_excess_return"],
                "information_ratio_own": own_metrics["information_ratio"],
                "max_drawdown_own": own_metrics["max_drawdown"],
                "psr_own": own_ranking[0],
                "dsr_own": own_ranking[1],
            }
        )
        row.update(_test_columns(tests.get(name), holm.get(name), name=name, notes=notes))
        table_rows.append(row)
    table = _with_differences(_typed_table(table_rows))
    return Comparison(
        task_run_id=resolved,
        request_name=request_name,
        control=control_row["strategy"],
        control_basis=basis,
        with_cost=with_cost,
        periods_per_year=periods_per_year,
        start=dates[0].isoformat(),
        end=dates[-1].isoformat(),
        n_days=dates.len(),
        n_trials=trials.n,
        var_trials=trials.var,
        bootstrap=_bootstrap_settings(
            tests, n_boot=n_boot, seed=seed, alpha=alpha, block=block, method=method
        ),
        table=table,
        curves=_curves(own_frames, with_cost=with_cost),
        skipped=skipped,
        notes=tuple(notes),
        trials=trials,
        alignment=tuple(alignment),
        warnings=tuple(warnings),
        max_dropped_share=max_dropped_share,
    )


def _test_columns(
    test: SharpeDiffTest | str | None, holm: float | None, *, name: str, notes: list[str]
) -> dict[str, Any]:
    """The Sharpe-difference columns of one table row (all None for the control or an undefined test)."""
    keys = (
        "sharpe_diff",
        "sharpe_diff_low",
        "sharpe_diff_high",
        "sharpe_diff_se",
        "sharpe_diff_studentized_low",
        "sharpe_diff_studentized_high",
        "sharpe_diff_p_value",
        "sharpe_diff_p_holm",
    )
    if isinstance(test, str):
        notes.append(f"{name}: Sharpe difference interval undefined: {test}")
    if not isinstance(test, SharpeDiffTest):
        return dict.fromkeys(keys)
    values = (
        test.point,
        test.low,
        test.high,
        test.se,
        test.studentized_low,
        test.studentized_high,
        test.p_value,
        holm,
    )
    return dict(zip(keys, values, strict=True))


def _bootstrap_settings(
    tests: dict[str, SharpeDiffTest | str],
    *,
    n_boot: int,
    seed: int,
    alpha: float,
    block: float | None,
    method: BootstrapMethod,
) -> dict[str, Any]:
    """The bootstrap's settings, with the block length each treatment got when it came from the data."""
    blocks = {name: t.block for name, t in tests.items() if isinstance(t, SharpeDiffTest)}
    return {
        "n_boot": n_boot,
        "seed": seed,
        "alpha": alpha,
        "block": block if block is not None else (max(blocks.values()) if blocks else None),
        "block_basis": "given"
        if block is not None
        else "Politis-White with Patton's correction, per treatment",
        "blocks": blocks,
        "method": method,
        "paired": True,
        "interval": "percentile; studentized (Ledoit-Wolf 2008) beside it",
        "p_value": "studentized bootstrap, two-sided, H0: equal Sharpe ratios",
        "adjustment": "Holm across the treatments compared with the control",
    }


def _check_settings(
    *,
    n_boot: object,
    seed: object,
    alpha: object,
    block: object,
    method: object,
    periods_per_year: object,
    n_trials: object,
    max_dropped_share: object,
) -> None:
    """Refuse bootstrap and annualisation settings that cannot work, before reading anything.

    The values come from notebooks as often as from the CLI, so their types are checked too.
    """

    def whole(value: object, minimum: int) -> bool:
        return isinstance(value, int | np.integer) and not isinstance(value, bool) and int(value) >= minimum

    def number(value: object) -> bool:
        return isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)

    problems = []
    if not whole(n_boot, 1):
        problems.append(f"n_boot (--n-boot) must be a whole number of at least 1, got {n_boot!r}")
    if not whole(seed, 0):
        problems.append(f"seed (--seed) must be a whole number of at least 0, got {seed!r}")
    if not (number(alpha) and 0 < float(alpha) < 1):  # type: ignore[arg-type]
        problems.append(f"alpha (--alpha) must be between 0 and 1 (0.05 for a 95% interval), got {alpha!r}")
    if block is not None and not (number(block) and float(block) >= 1):  # type: ignore[arg-type]
        problems.append(
            f"block (--block) must be a number of days, at least 1 (or None for automatic), got {block!r}"
        )
    if method not in BOOTSTRAP_METHODS:
        problems.append(f"method (--method) must be one of {', '.join(BOOTSTRAP_METHODS)}, got {method!r}")
    if not whole(periods_per_year, 1):
        problems.append(f"periods_per_year must be a whole number, at least 1, got {periods_per_year!r}")
    if n_trials is not None and not whole(n_trials, 1):
        problems.append(f"n_trials (--n-trials) must be a whole number of at least 1, got {n_trials!r}")
    if not (number(max_dropped_share) and 0 <= float(max_dropped_share) <= 1):  # type: ignore[arg-type]
        problems.append(
            f"max_dropped_share (--max-dropped-share) must be between 0 and 1, got {max_dropped_share!r}"
        )
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


def _own_frames(series: pl.DataFrame, chosen: list[dict[str, Any]]) -> dict[str, pl.DataFrame]:
    """Each chosen strategy's own usable rows, all of them (its headline before alignment)."""
    usable = _clean(series).sort("datetime")
    return {
        r["strategy"]: usable.filter(pl.col("experiment_id") == r["experiment_id"]).select(_SERIES_COLUMNS)
        for r in chosen
    }


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
    "dsr_effective",
    "sharpe_diff",
    "sharpe_diff_low",
    "sharpe_diff_high",
    "sharpe_diff_se",
    "sharpe_diff_studentized_low",
    "sharpe_diff_studentized_high",
    "sharpe_diff_p_value",
    "sharpe_diff_p_holm",
    "annualized_excess_return_own",
    "information_ratio_own",
    "max_drawdown_own",
    "psr_own",
    "dsr_own",
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
        "n_days_own": pl.Int64,
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
        "dsr_effective",
        "sharpe_diff",
        "sharpe_diff_low",
        "sharpe_diff_high",
        "sharpe_diff_se",
        "sharpe_diff_studentized_low",
        "sharpe_diff_studentized_high",
        "sharpe_diff_p_value",
        "sharpe_diff_p_holm",
        "n_days_own",
        "annualized_excess_return_own",
        "information_ratio_own",
        "max_drawdown_own",
        "psr_own",
        "dsr_own",
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
