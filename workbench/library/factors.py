"""The factor library: one row per distinct factor, its performance per window and its lineage.

A factor is one row of ``aistock_factors`` (same normalised expression, or same name and
version, is the same factor: :mod:`workbench.archive.ids`). Its results live in
``aistock_factor_performance`` (one row per factor, window and experiment; ``basis`` says whether
the figures are the factor's own or those of a combination it belonged to) and its uses in
``aistock_factor_usage`` and ``aistock_factor_combinations``.

:func:`factor_library` filters and sorts in one call over an in-memory copy of the library that is
refreshed whenever the catalog changes, so a library of 100,000 factors answers in milliseconds;
every other function here is a small read for one factor or a few.

The copy and its on-disk cache belong to the archive (:mod:`workbench.archive.library_cache`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, get_args

import polars as pl

from workbench.archive.catalog import open_catalog, read_frame
from workbench.archive.db import fetch_frame
from workbench.archive.library_cache import FACTOR_COLUMNS, LibrarySnapshot, library_snapshot
from workbench.errors import ConfigError
from workbench.lake.read import lake_library_snapshot
from workbench.library.strategies import EXPERIMENT_METRICS_SQL

__all__ = [
    "FACTOR_BASES",
    "FACTOR_SORTS",
    "FactorBasis",
    "FactorSort",
    "KNOWN_FACTOR_SOURCES",
    "PERFORMANCE_METRICS",
    "SUMMARY_STATS",
    "factor_library",
    "factor_lineage",
    "factor_performance",
    "resolve_factor_id",
    "resolve_factor_ids",
]

PerformanceMetric = Literal[
    "ic_ir", "ic_mean", "rank_ic", "rank_ic_ir", "sharpe", "annual_return", "max_drawdown", "coverage"
]
PERFORMANCE_METRICS: tuple[str, ...] = get_args(PerformanceMetric)
"""Performance columns; for each of them a higher value is better (drawdowns are negative)."""
SUMMARY_STATS: tuple[str, ...] = ("median", "best", "worst")
"""Beside each factor's mean: the median, best and worst figure of one metric (``median_ic_ir`` ...)."""
FactorBasis = Literal["auto", "factor", "combination"]
FACTOR_BASES: tuple[str, ...] = get_args(FactorBasis)
FACTOR_SORTS: tuple[str, ...] = (
    *PERFORMANCE_METRICS,
    *(f"{stat}_{metric}" for stat in SUMMARY_STATS for metric in PERFORMANCE_METRICS),
    "name",
    "source",
    "created_at",
    "n_experiments",
    "n_experiments_with_figures",
    "n_combinations",
    "n_windows",
)
"""What ``factor_library`` sorts by: a metric's mean (``ic_ir``), or by name its median, best or worst."""
_METRIC_SORTS = frozenset(FACTOR_SORTS[: len(PERFORMANCE_METRICS) * (1 + len(SUMMARY_STATS))])
FactorSort = str
KNOWN_FACTOR_SOURCES: tuple[str, ...] = (
    "rdagent_generated",
    "qlib_alpha158",
    "alpha_library",
    "external_manual",
)
"""Documented factor sources; ``factor_library(source=...)`` also accepts any other source the library holds."""


def _as_list(value: str | Sequence[str] | None, *, option: str) -> list[str] | None:
    """A single value or several; an empty list means 'no filter' rather than 'match nothing'."""
    if value is None:
        return None
    values = [value] if isinstance(value, str) else list(value)
    if not all(isinstance(v, str) and v for v in values):
        raise ConfigError(f"{option}: expected non-empty strings, got {values!r}")
    return values or None


def _check_choice(value: str, choices: tuple[str, ...], *, option: str) -> None:
    if value not in choices:
        raise ConfigError(f"{option}={value!r} is not one of: {', '.join(choices)}")


_COST_COLUMNS = ("annual_return_cost", "max_drawdown_cost", "sharpe_cost")


def _costs_seen(column: str) -> list[pl.Expr]:
    """Whether any summarised figure is without / with cost (booleans: cheap per group, unlike text)."""
    return [
        (pl.col(column) == "without_cost").any().alias(f"_{column}_without"),
        (pl.col(column) == "with_cost").any().alias(f"_{column}_with"),
    ]


def _cost_text(column: str) -> pl.Expr:
    """`without_cost`, `with_cost`, both comma-separated when the figures differ, or null."""
    without, with_ = pl.col(f"_{column}_without"), pl.col(f"_{column}_with")
    return (
        pl.when(without & with_)
        .then(pl.lit("with_cost,without_cost"))
        .when(without)
        .then(pl.lit("without_cost"))
        .when(with_)
        .then(pl.lit("with_cost"))
        .otherwise(None)
        .alias(column)
    )


def _summaries(snapshot: LibrarySnapshot, *, window: str | None, basis: str, metric: str) -> pl.DataFrame:
    """One row per factor summarising its figures of one basis: means, counts, and `metric`'s spread.

    ``basis='auto'`` takes a factor's own figures (``basis='factor'``) when it has any, else those
    of the combinations it was part of; the ``basis`` column says which.
    """
    key = (window, basis, metric)
    if key in snapshot.picks:
        return snapshot.picks[key]
    rows = snapshot.performance
    if window is not None:
        rows = rows.filter(pl.col("window_name") == window)
    if basis == "auto":
        own = pl.col("basis") == "factor"
        rows = rows.filter(own | ~own.any().over("factor_id"))
    else:
        rows = rows.filter(pl.col("basis") == basis)
    experiments = pl.col("perf_experiment_id")
    # within one window a factor has one row per experiment: counting is enough (and much cheaper)
    n_experiments = experiments.count() if window is not None else experiments.drop_nulls().n_unique()
    periods_low, periods_high = pl.col("periods_per_year").min(), pl.col("periods_per_year").max()
    summary = (
        rows.group_by("factor_id")
        .agg(
            pl.col("basis").first(),  # one basis per factor: the filter above keeps only one
            n_experiments.cast(pl.Int64).alias("n_experiments_with_figures"),
            pl.len().cast(pl.Int64).alias("n_figures"),
            pl.col("start_date").min(),
            pl.col("end_date").max(),
            *(pl.col(m).mean() for m in PERFORMANCE_METRICS),
            pl.col(metric).median().alias(f"median_{metric}"),
            pl.col(metric).max().alias(f"best_{metric}"),
            pl.col(metric).min().alias(f"worst_{metric}"),
            pl.col("combination_size").max(),
            *(e for c in _COST_COLUMNS for e in _costs_seen(c)),
            periods_low.alias("_periods_low"),
            periods_high.alias("_periods_high"),
        )
        .with_columns(
            pl.lit(window, dtype=pl.String).alias("window_name"),
            *(_cost_text(c) for c in _COST_COLUMNS),
            pl.when(pl.col("_periods_low") == pl.col("_periods_high"))
            .then(pl.col("_periods_low").cast(pl.String))
            .otherwise(pl.concat_str([pl.col("_periods_low"), pl.col("_periods_high")], separator=","))
            .alias("periods_per_year"),
        )
        .drop(pl.selectors.starts_with("_"))
    )
    snapshot.picks[key] = summary
    return summary


def _summary_metric(sort_by: str, metric: str | None) -> str:
    """The metric whose median/best/worst are shown: the one sorted by, else `metric`, else ic_ir."""
    if sort_by in PERFORMANCE_METRICS:
        return sort_by
    for stat in SUMMARY_STATS:
        if sort_by.startswith(f"{stat}_") and sort_by[len(stat) + 1 :] in PERFORMANCE_METRICS:
            return sort_by[len(stat) + 1 :]
    return metric or "ic_ir"


_IDENTITY = [
    "factor_id",
    "name",
    "version",
    "source",
    "tags",
    "description_cn",
    "expression",
    "formula_hint",
    "region",
    "freq",
    "first_experiment_id",
    "created_at",
]
_FIGURES = [
    "basis",
    "n_experiments_with_figures",
    "n_figures",
    "window_name",
    "start_date",
    "end_date",
    *PERFORMANCE_METRICS,
]
_PROVENANCE = [
    "combination_size",
    "annual_return_cost",
    "max_drawdown_cost",
    "sharpe_cost",
    "periods_per_year",
    "n_windows",
    "n_experiments",
    "n_combinations",
]


def factor_library(
    archive: Path | str | None,
    *,
    source: str | Sequence[str] | None = None,
    tags: str | Sequence[str] | None = None,
    name_like: str | None = None,
    min_ic: float | None = None,
    window: str | None = None,
    basis: FactorBasis = "auto",
    metric: PerformanceMetric | None = None,
    sort_by: FactorSort = "ic_ir",
    descending: bool = True,
    limit: int | None = None,
    lake: str | Path | None = None,
) -> pl.DataFrame:
    """Filter and sort the factor library in one call: one row per factor, a summary of its figures.

    Each factor's figures (one per window and experiment, within ``window`` if given: factors
    without a result in that window are left out) are summarised, never picked: the metric
    columns (``ic_ir``, ``ic_mean``, ``rank_ic``, ...) are **means**, and for one metric (the
    one sorted by, else ``metric``, else ``ic_ir``) ``median_<m>``, ``best_<m>`` and
    ``worst_<m>`` stand beside it, with ``n_experiments_with_figures`` and ``n_figures`` saying
    how much evidence there is. A best value favours the factor that was tried most often, so
    the library sorts by it only when asked by name (``sort_by='best_ic_ir'``).

    ``basis`` chooses whose figures: ``'factor'`` (the factor's own, e.g. its own IC),
    ``'combination'`` (those of a combination it was part of: the model's IC, shared by
    ``combination_size`` factors), or ``'auto'`` (default: its own when it has any, else its
    combinations', as the ``basis`` column says). With ``'auto'``, sorting by a metric ranks
    every factor with figures of its own before the factors that only have combination figures.
    ``annual_return_cost``/``max_drawdown_cost``/``sharpe_cost`` say whether those figures are
    with or without trading cost, ``periods_per_year`` how ``annual_return`` and ``sharpe`` were
    annualised (Qlib: 238); where the summarised figures differ, both values (smallest and
    largest), comma-separated. ``window_name`` is the ``window`` asked for (null: every window,
    ``n_windows`` of them).

    Filters: ``source`` (one or several), ``tags`` (the factor must carry every tag given),
    ``name_like`` (case-insensitive substring), ``min_ic`` (the mean ``ic_mean``).
    Nulls sort last in either direction; ties break by name, then id.

    A ``source`` that is neither documented (:data:`KNOWN_FACTOR_SOURCES`) nor held by any
    factor, or a ``window`` no factor has a result in, is a :class:`ConfigError` listing the
    valid values (a typo would otherwise look like an empty library).

    The library is read once into memory and filtered there with Polars; it is read again as
    soon as the catalog changes (any commit changes the catalog file or its write-ahead log).
    With ``lake=URI`` it is read from the team's Delta tables instead (``archive`` is ignored),
    again whenever one of them has a new version.
    """
    _check_choice(sort_by, FACTOR_SORTS, option="sort_by")
    _check_choice(basis, FACTOR_BASES, option="basis")
    if metric is not None:
        _check_choice(metric, PERFORMANCE_METRICS, option="metric")
    if limit is not None and limit < 1:
        raise ConfigError(f"limit must be at least 1, got {limit}")
    sources = _as_list(source, option="source")
    wanted_tags = _as_list(tags, option="tags")
    if window is not None and (not isinstance(window, str) or not window.strip()):
        raise ConfigError(f"window: expected a window name, got {window!r}")
    snapshot = library_snapshot(archive) if lake is None else lake_library_snapshot(lake)
    if sources:
        valid = sorted(set(KNOWN_FACTOR_SOURCES) | set(snapshot.sources))
        wrong = [s for s in sources if s not in valid]
        if wrong:
            raise ConfigError(f"source={', '.join(map(repr, wrong))} is not one of: {', '.join(valid)}")
    if window is not None and window not in snapshot.windows:
        listed = ", ".join(snapshot.windows[:20]) + (
            f" and {len(snapshot.windows) - 20} more" if len(snapshot.windows) > 20 else ""
        )
        raise ConfigError(
            f"window={window!r}: no factor has a result in that window; windows in the library: "
            f"{listed or '(none yet)'}"
        )
    chosen = snapshot.factors
    if sources:
        chosen = chosen.filter(pl.col("source").is_in(sources))
    if wanted_tags:
        chosen = chosen.filter(pl.all_horizontal([pl.col("tags").list.contains(t) for t in wanted_tags]))
    if name_like:
        chosen = chosen.filter(
            pl.col("name").str.to_lowercase().str.contains(name_like.lower(), literal=True)
        )
    shown = _summary_metric(sort_by, metric)
    summary = _summaries(snapshot, window=window, basis=basis, metric=shown)
    frame = chosen.join(summary, on="factor_id", how="inner" if window is not None else "left")
    if min_ic is not None:
        frame = frame.filter(pl.col("ic_mean") >= float(min_ic))
    keys: list[pl.Expr] = [pl.col(sort_by), pl.col("name"), pl.col("factor_id")]
    order = [descending, False, False]
    if basis == "auto" and sort_by in _METRIC_SORTS:
        own_first = pl.when(pl.col("basis") == "factor").then(0).when(pl.col("basis").is_null()).then(2)
        keys, order = [own_first.otherwise(1), *keys], [False, *order]
    frame = frame.sort(keys, descending=order, nulls_last=True)
    if limit is not None:
        frame = frame.head(limit)
    stats = [f"{stat}_{shown}" for stat in SUMMARY_STATS]
    return frame.select([*_IDENTITY, *_FIGURES, *stats, *_PROVENANCE])


def resolve_factor_ids(archive: Path | str | None, refs: Sequence[str]) -> list[str]:
    """Factor ids for ids, unique id prefixes (≥ 6 characters) or unique names, in the order given.

    Why: people copy names and short ids from tables; an ambiguous reference is an error that
    lists the candidates rather than a silent pick.
    """
    refs = [r.strip() for r in refs if r and r.strip()]
    if not refs:
        return []
    known = _lookup(archive, refs)
    resolved = []
    for ref in refs:
        hits = known.filter(
            (pl.col("id") == ref)
            | (pl.col("name") == ref)
            | (pl.lit(len(ref) >= 6) & pl.col("id").str.starts_with(ref))
        )
        exact = hits.filter(pl.col("id") == ref)
        if exact.height:
            hits = exact
        if hits.height == 0:
            short = " (an id prefix needs at least 6 characters)" if len(ref) < 6 else ""
            raise ConfigError(
                f"unknown factor {ref!r}: no factor has that id, id prefix or name{short} "
                "(see `workbench factors`)"
            )
        if hits.height > 1:
            listed = ", ".join(
                f"{r['id'][:12]} ({r['name']} v{r['version']}, {r['source']})"
                for r in hits.iter_rows(named=True)
            )
            raise ConfigError(f"factor {ref!r} is ambiguous: {listed}; give the id")
        resolved.append(hits["id"][0])
    return resolved


def resolve_factor_id(archive: Path | str | None, ref: str) -> str:
    """One factor id for an id, unique id prefix (≥ 6 characters) or unique name; an empty reference is an error."""
    if not isinstance(ref, str) or not ref.strip():
        raise ConfigError(
            "factor reference is empty; give a factor id, a unique id prefix or a name "
            "(see `workbench factors`)"
        )
    (resolved,) = resolve_factor_ids(archive, [ref])
    return resolved


def _lookup(archive: Path | str | None, refs: list[str]) -> pl.DataFrame:
    """Candidate factors for a list of references (ids, id prefixes, names)."""
    return read_frame(
        archive,
        """
        SELECT f.id, f.name, f.version, f.source FROM aistock_factors f
        WHERE f.id IN (SELECT unnest($refs)) OR f.name IN (SELECT unnest($refs))
           OR EXISTS (SELECT 1 FROM (SELECT unnest($refs) AS r) WHERE length(r) >= 6 AND starts_with(f.id, r))
        """,
        {"refs": refs},
    )


_PERFORMANCE_SQL = """
    SELECT p.factor_id, f.name, f.source, p.window_name, p.start_date, p.end_date, p.dates_from,
           p.ic_mean, p.ic_ir, p.rank_ic, p.rank_ic_ir, p.coverage, p.annual_return, p.max_drawdown, p.sharpe,
           p.basis, p.combination_size, p.annual_return_cost, p.max_drawdown_cost, p.sharpe_cost,
           p.periods_per_year, p.experiment_id,
           e.task_run_id, e.loop_id, e.request_name, e.strategy_role, e.created_at AS experiment_created_at
    FROM aistock_factor_performance p
    JOIN aistock_factors f ON f.id = p.factor_id
    LEFT JOIN aistock_experiments e ON e.id = p.experiment_id
    {where}
    ORDER BY f.name, p.factor_id, p.window_name, e.created_at NULLS LAST, p.experiment_id
"""


def factor_performance(archive: Path | str | None, factor_ids: Sequence[str] | None = None) -> pl.DataFrame:
    """Every performance row (factor × window × experiment) with the factor's name and the run it came from.

    Sorted by factor name, window and experiment time, so a factor's windows sit together.
    """
    if factor_ids is None:
        return read_frame(archive, _PERFORMANCE_SQL.format(where=""))
    return read_frame(
        archive,
        _PERFORMANCE_SQL.format(where="WHERE p.factor_id IN (SELECT unnest($ids))"),
        {"ids": list(factor_ids) or [""]},
    )


_LINEAGE_METRICS = ", ".join(
    f"{EXPERIMENT_METRICS_SQL[k]} AS {k}"
    for k in ("annualized_return", "information_ratio", "max_drawdown", "ic")
)
_LINEAGE_SQL = {
    "factor": f"SELECT {FACTOR_COLUMNS}, f.variables_json, f.updated_at FROM aistock_factors f WHERE f.id = $id",
    "experiments": f"""
        SELECT u.experiment_id, e.task_run_id, e.loop_id, e.request_name, e.strategy_role,
               e.strategy_id, s.name AS strategy_name, s.recommendation_status,
               nullif(u.combination_id, '') AS combination_id, e.archiving_level, e.created_at,
               {_LINEAGE_METRICS}
        FROM aistock_factor_usage u
        LEFT JOIN aistock_experiments e ON e.id = u.experiment_id
        LEFT JOIN aistock_strategies s ON s.id = e.strategy_id
        WHERE u.factor_id = $id
        ORDER BY e.created_at NULLS LAST, e.task_run_id, e.loop_id
    """,
    "combinations": """
        SELECT c.id AS combination_id, c.name, c.source, len(CAST(c.factor_ids AS VARCHAR[])) AS n_factors,
               c.experiment_id, c.created_at
        FROM aistock_factor_combinations c
        WHERE list_contains(CAST(c.factor_ids AS VARCHAR[]), $id)
        ORDER BY c.created_at NULLS LAST, c.name
    """,
    "performance": _PERFORMANCE_SQL.format(where="WHERE p.factor_id = $id"),
    "values": "SELECT count(*) AS n_rows, min(datetime) AS start, max(datetime) AS end, "
    "count(DISTINCT instrument) AS n_instruments FROM aistock_factor_values WHERE factor_id = $id",
}


def factor_lineage(archive: Path | str | None, factor_id: str) -> dict[str, Any]:
    """Where a factor came from and everything that used it, JSON-ready.

    Keys: ``factor`` (its library row), ``first_experiment``, ``experiments`` (every experiment
    that used it, oldest first, with its strategy, the combination it was part of and the
    experiment's key results: ``annualized_return``, ``information_ratio``, ``max_drawdown``, ``ic``),
    ``combinations`` (every named set containing it), ``performance`` (rows of
    :func:`factor_performance`), ``values`` (external factor values held: rows, dates, instruments).
    """
    resolved = resolve_factor_id(archive, factor_id)
    with open_catalog(archive, read_only=True) as con:
        parts = {
            key: _json_rows(fetch_frame(con, sql, {"id": resolved})) for key, sql in _LINEAGE_SQL.items()
        }
    row = parts["factor"][0]
    first_id = row.get("first_experiment_id")
    first = next((e for e in parts["experiments"] if e["experiment_id"] == first_id), None)
    if first is None and first_id:
        first = {"experiment_id": first_id}
    return {
        "factor": row,
        "first_experiment": first,
        "experiments": parts["experiments"],
        "combinations": parts["combinations"],
        "performance": parts["performance"],
        "values": parts["values"][0],
    }


def _json_rows(frame: pl.DataFrame) -> list[dict[str, Any]]:
    """Rows as plain dicts with dates and timestamps as ISO text (json.dumps-ready)."""
    out = []
    for row in frame.iter_rows(named=True):
        out.append({k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in row.items()})
    return out
