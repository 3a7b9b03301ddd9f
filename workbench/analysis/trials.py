"""How many strategies the agent tried before this one: the N and the variance the DSR deflates by.

The deflated Sharpe ratio is only as honest as its number of trials. Every loop the agent ran
in the search counts, read from the loop rows the archive keeps of the registry
(``wb_loop_state``: archived, partial, failed and result-less loops alike, joined with
``aistock_experiments`` for loops imported otherwise). The search is the compared task run, the
task runs that carry the same request name (a request run again is the same search), and any
task runs named with ``search``. A loop recorded twice (``duplicate``: the same run under two
task run ids) counts once.

The variance of trial Sharpe ratios uses every loop whose Sharpe ratio is known: from its
archived return series on the comparison's common window (its own full series when it has
fewer than 2 days there), else from Qlib's figure in ``qlib_res.csv`` (a level-1 loop), scaled
from Qlib's 238 days a year to ``periods_per_year``. Correlated trials are fewer independent
trials: the effective N is ρ̄ + (1 − ρ̄)·N with ρ̄ the average pairwise correlation of the
trials' daily excess returns on the common window.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import date
from typing import Any

import duckdb
import numpy as np
import polars as pl

from workbench.archive.db import fetch_frame
from workbench.errors import ConfigError
from workbench.metrics import QLIB_DAILY_PERIODS, effective_trials, excess_returns, sharpe_stats, usable_rows

__all__ = ["Trials", "count_trials", "search_task_runs"]

_MIN_OVERLAP = 10  # days two trials must share for their correlation to count


@dataclass(frozen=True)
class Trials:
    """N, its source, the variance of trial Sharpe ratios and the effective N (JSON-ready)."""

    n: int
    source: str
    task_runs: tuple[str, ...]
    n_loops: int
    by_state: dict[str, int]
    n_duplicates: int
    var: float
    n_sharpe_known: int
    sharpe_sources: dict[str, int]
    window: dict[str, str]
    mean_correlation: float | None
    n_correlated: int
    n_effective: float
    notes: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["task_runs"] = list(self.task_runs)
        out["notes"] = list(self.notes)
        return out


def _resolve_search_ref(con: duckdb.DuckDBPyConnection, ref: str) -> str:
    """A task run the archive knows (archived or only seen in its loop rows), by id or prefix ≥ 6."""
    text = ref.strip()
    hits = fetch_frame(
        con,
        "SELECT DISTINCT task_run_id FROM (SELECT task_run_id FROM wb_loop_state UNION "
        "SELECT task_run_id FROM aistock_experiments) "
        "WHERE task_run_id = $ref OR (length($ref) >= 6 AND starts_with(task_run_id, $ref))",
        {"ref": text},
    )["task_run_id"].to_list()
    if text in hits:
        return text
    if len(hits) != 1:
        problem = "matches no task run the archive knows" if not hits else f"is ambiguous: {', '.join(hits)}"
        raise ConfigError(
            f"search task run {ref!r} {problem}; give task run ids (or unique prefixes of at least 6 "
            "characters) from `workbench status`"
        )
    return str(hits[0])


def search_task_runs(
    con: duckdb.DuckDBPyConnection, task_run_id: str, request_name: str | None, search: Sequence[str] | None
) -> tuple[tuple[str, ...], str]:
    """The task runs of the search (the compared one first) and in words why they are grouped."""
    runs = [task_run_id]
    why = ["the task run"]
    if request_name:
        same = fetch_frame(
            con,
            "SELECT DISTINCT task_run_id FROM aistock_experiments WHERE request_name = $name "
            "UNION SELECT task_run_id FROM wb_attached_requests WHERE json_extract_string(request_json, '$.name') = $name "
            "ORDER BY 1",
            {"name": request_name},
        )["task_run_id"].to_list()
        others = [r for r in same if r not in runs]
        runs.extend(others)
        if others:
            why.append(f"{len(others)} more with request {request_name!r}")
    named = [r for r in (_resolve_search_ref(con, ref) for ref in search or ()) if r not in runs]
    runs.extend(dict.fromkeys(named))
    if named:
        why.append(f"{len(named)} named by --search")
    return tuple(runs), " + ".join(why)


def _search_loops(
    con: duckdb.DuckDBPyConnection, task_runs: Sequence[str], *, with_cost: bool
) -> pl.DataFrame:
    """Every loop row of the search: state, level, experiment and Qlib's information ratio."""
    series = "excess_return_with_cost" if with_cost else "excess_return_without_cost"
    return fetch_frame(
        con,
        f"""
        SELECT coalesce(s.task_run_id, e.task_run_id) AS task_run_id,
               coalesce(s.loop_id, e.loop_id) AS loop_id,
               coalesce(e.id, s.experiment_id) AS experiment_id,
               coalesce(s.state, 'imported') AS state,
               greatest(coalesce(s.archiving_level, 0), coalesce(e.archiving_level, 0)) AS archiving_level,
               TRY_CAST(json_extract_string(e.metrics_json, '$.qlib.{series}_information_ratio') AS DOUBLE)
                   AS qlib_ir
        FROM wb_loop_state s
        FULL OUTER JOIN aistock_experiments e ON e.task_run_id = s.task_run_id AND e.loop_id = s.loop_id
        WHERE list_contains($runs, coalesce(s.task_run_id, e.task_run_id))
        ORDER BY 1, 2
        """,
        {"runs": list(task_runs)},
    )


def _trial_sharpe(
    frame: pl.DataFrame | None,
    qlib_ir: float | None,
    *,
    window: tuple[date, date],
    with_cost: bool,
    periods: int,
) -> tuple[float | None, str]:
    """A trial's annualised Sharpe ratio and where it came from (see the module docstring)."""
    if frame is not None:
        rows = frame.filter(usable_rows())
        inside = rows.filter(pl.col("datetime").is_between(*window))
        for part, label in ((inside, "series_common_window"), (rows, "series_own_window")):
            if part.height >= 2:
                sr = sharpe_stats(excess_returns(part, with_cost=with_cost))["sr"]
                if sr is not None:
                    return float(sr) * math.sqrt(periods), label
    if qlib_ir is not None and math.isfinite(qlib_ir):
        return qlib_ir * math.sqrt(periods / QLIB_DAILY_PERIODS), "qlib_metrics"
    return None, "unknown"


def _mean_correlation(
    frames: dict[str, pl.DataFrame], *, window: tuple[date, date], with_cost: bool
) -> tuple[float | None, int]:
    """Average pairwise correlation of the trials' daily excess returns on the window, and how many trials."""
    columns = []
    for key, frame in frames.items():
        rows = frame.filter(usable_rows() & pl.col("datetime").is_between(*window))
        if rows.height >= _MIN_OVERLAP:
            columns.append(rows.select("datetime", pl.Series(key, excess_returns(rows, with_cost=with_cost))))
    if len(columns) < 2:
        return None, len(columns)
    wide = columns[0]
    for other in columns[1:]:
        wide = wide.join(other, on="datetime", how="full", coalesce=True)
    x = wide.drop("datetime").to_numpy()
    values = []
    for i in range(x.shape[1]):
        for j in range(i + 1, x.shape[1]):
            both = np.isfinite(x[:, i]) & np.isfinite(x[:, j])
            a, b = x[both, i], x[both, j]
            if a.size >= _MIN_OVERLAP and a.std() > 0 and b.std() > 0:
                values.append(float(np.corrcoef(a, b)[0, 1]))
    return (float(np.mean(values)) if values else None), len(columns)


def count_trials(
    con: duckdb.DuckDBPyConnection,
    task_run_id: str,
    request_name: str | None,
    *,
    search: Sequence[str] | None,
    n_trials: int | None,
    window: tuple[date, date],
    with_cost: bool,
    periods_per_year: int,
) -> Trials:
    """The trials of the search the compared task run belongs to (module docstring)."""
    runs, why = search_task_runs(con, task_run_id, request_name, search)
    loops = _search_loops(con, runs, with_cost=with_cost)
    duplicates = loops.filter(pl.col("state") == "duplicate").height
    loops = loops.filter(pl.col("state") != "duplicate")
    ids = [i for i in loops["experiment_id"].to_list() if i]
    series = fetch_frame(
        con,
        'SELECT experiment_id, datetime, "return", bench, cost FROM aistock_return_series '
        "WHERE list_contains($ids, experiment_id) ORDER BY experiment_id, datetime",
        {"ids": ids},
    )
    frames = {key[0]: frame for key, frame in series.group_by("experiment_id")}
    sharpes: list[float] = []
    sources: dict[str, int] = {}
    for row in loops.iter_rows(named=True):
        sr, label = _trial_sharpe(
            frames.get(row["experiment_id"]),
            row["qlib_ir"],
            window=window,
            with_cost=with_cost,
            periods=periods_per_year,
        )
        sources[label] = sources.get(label, 0) + 1
        if sr is not None:
            sharpes.append(sr)
    n_loops = loops.height
    notes = []
    if n_trials is not None:
        if n_trials < 1:
            raise ConfigError(f"n_trials (--n-trials) must be at least 1, got {n_trials}")
        n, source = n_trials, f"given (--n-trials); the archive counts {n_loops} loops in the search ({why})"
    else:
        n = max(n_loops, len(sharpes), 1)
        source = (
            f"every loop row the archive keeps of the search ({why}), failed and result-less loops included"
        )
        if duplicates:
            source += f"; {duplicates} duplicate loop row(s) counted once"
    var = float(np.var(sharpes, ddof=1)) if len(sharpes) >= 2 else 0.0
    if len(sharpes) < 2:
        notes.append("fewer than 2 trials with a known Sharpe ratio: var_trials = 0, so DSR equals PSR")
    rho, n_correlated = _mean_correlation(frames, window=window, with_cost=with_cost)
    n_effective = effective_trials(n, rho) if rho is not None else float(n)
    if rho is None:
        notes.append("fewer than 2 trials with a return series on the window: effective N = N")
    return Trials(
        n=n,
        source=source,
        task_runs=runs,
        n_loops=n_loops,
        by_state=dict(sorted(loops.group_by("state").len().iter_rows())),
        n_duplicates=duplicates,
        var=var,
        n_sharpe_known=len(sharpes),
        sharpe_sources=dict(sorted(sources.items())),
        window={"start": window[0].isoformat(), "end": window[1].isoformat()},
        mean_correlation=rho,
        n_correlated=n_correlated,
        n_effective=n_effective,
        notes=tuple(notes),
    )
