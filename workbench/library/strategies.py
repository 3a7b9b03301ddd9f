"""The strategy library: every strategy version with its origin, review status and key results.

A strategy is one row of ``aistock_strategies``: for RD-Agent loops its ``strategy_key`` is the
(task run, loop, workspace) triple; imported ones (:mod:`workbench.library.external_factors`, :mod:`workbench.library.external_strategies`) have an
``external/...`` key and no experiment. The agent's verdict arrives as ``rdagent_accept`` /
``rdagent_reject`` from ``feedback.json``; a person marks a strategy ``manual_review`` with a
note (:func:`set_recommendation`), and the archive job never overwrites that.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, get_args

import polars as pl

from workbench.archive.catalog import open_catalog, read_frame
from workbench.archive.db import fetch_frame, utc_now
from workbench.archive.journal import recorded
from workbench.archive.layout import ArchiveLayout
from workbench.archive.lock import archive_lock
from workbench.archive.storage_errors import storage_errors
from workbench.errors import ConfigError
from workbench.lake.read import source_connection, source_frame
from workbench.rdagent.request import StrategyConfig

__all__ = [
    "EXPERIMENT_METRICS_SQL",
    "KNOWN_STRATEGY_SOURCES",
    "RecommendationStatus",
    "STATUS_FILTERS",
    "StrategyRole",
    "StrategySort",
    "resolve_strategy_id",
    "set_recommendation",
    "strategy_config",
    "strategy_library",
]

RecommendationStatus = Literal["manual_review", "rdagent_accept", "rdagent_reject"]
StrategyRole = Literal["control", "treatment"]
STATUS_FILTERS: tuple[str, ...] = (*get_args(RecommendationStatus), "none")
"""Values of ``strategy_library(status=...)``: the recommendation statuses, and ``none`` for not judged yet."""
KNOWN_STRATEGY_SOURCES: tuple[str, ...] = ("rdagent", "external", "handcrafted")
"""Strategy sources workbench writes; ``strategy_library(source=...)`` also accepts any other source in the library."""
StrategySort = Literal[
    "information_ratio",
    "annualized_return",
    "max_drawdown",
    "ic",
    "rank_ic",
    "turnover",
    "name",
    "created_at",
    "task_run_id",
]

# Key results of an experiment: recomputed from the archived return series (excess return with
# cost, additive, 252 days) where there is one, else Qlib's own figures from qlib_res.csv.
_RECOMPUTED = "e.recomputed_metrics_json"
_QLIB = "e.metrics_json"


def _metric(recomputed_key: str, qlib_key: str) -> str:
    return (
        f"coalesce(TRY_CAST(json_extract_string({_RECOMPUTED}, '$.\"{recomputed_key}\"') AS DOUBLE), "
        f"TRY_CAST(json_extract_string({_QLIB}, '$.qlib.{qlib_key}') AS DOUBLE))"
    )


EXPERIMENT_METRICS_SQL: dict[str, str] = {
    "annualized_return": _metric(
        "excess_return_with_cost.additive.annualized_return", "excess_return_with_cost_annualized_return"
    ),
    "information_ratio": _metric(
        "excess_return_with_cost.additive.information_ratio", "excess_return_with_cost_information_ratio"
    ),
    "max_drawdown": _metric(
        "excess_return_with_cost.additive.max_drawdown", "excess_return_with_cost_max_drawdown"
    ),
    "ic": f"TRY_CAST(json_extract_string({_QLIB}, '$.qlib.ic') AS DOUBLE)",
    "rank_ic": f"TRY_CAST(json_extract_string({_QLIB}, '$.qlib.rank_ic') AS DOUBLE)",
    "turnover": f"TRY_CAST(json_extract_string({_RECOMPUTED}, '$.turnover_mean') AS DOUBLE)",
    "n_days": f"TRY_CAST(json_extract_string({_RECOMPUTED}, '$.n_days') AS BIGINT)",
}
"""SQL for an experiment's key results (table alias ``e``): the strategy library's metric columns."""


def strategy_library(
    archive: Path | str | None,
    *,
    status: str | Sequence[str] | None = None,
    source: str | Sequence[str] | None = None,
    task_run_id: str | None = None,
    request_name: str | None = None,
    role: StrategyRole | None = None,
    name_like: str | None = None,
    sort_by: StrategySort = "information_ratio",
    descending: bool = True,
    limit: int | None = None,
    lake: str | Path | None = None,
) -> pl.DataFrame:
    """Filter and sort the strategy library in one call: one row per strategy, with its experiment's results.

    Columns: the strategy (id, key, name, shape, output mode, source, type, factor combination and
    its size, recommendation status and note), its experiment (task run, loop, request, role,
    archiving level) and key results: ``annualized_return``, ``information_ratio``,
    ``max_drawdown`` (excess return with cost), ``ic``, ``rank_ic``, ``turnover``, ``n_days``;
    ``metrics_basis`` says whether they were recomputed from the archived series (252 days a
    year) or taken from Qlib's ``qlib_res.csv``. ``status`` also accepts ``"none"`` for
    strategies nobody has judged yet.

    A value no strategy could ever match is a :class:`ConfigError` listing the valid ones,
    never an empty result: ``status`` and ``role`` outside their documented values, a ``source``
    that is neither documented nor in the library, a ``task_run_id`` (id or prefix) or
    ``request_name`` that no archived experiment has.

    ``lake=URI`` reads the team's Delta tables instead of ``archive``'s catalog (same query).
    """
    if sort_by not in get_args(StrategySort):
        raise ConfigError(f"sort_by={sort_by!r} is not one of: {', '.join(get_args(StrategySort))}")
    if limit is not None and limit < 1:
        raise ConfigError(f"limit must be at least 1, got {limit}")
    statuses = _choices(status, STATUS_FILTERS, option="status")
    if role is not None and role not in get_args(StrategyRole):
        raise ConfigError(f"role={role!r} is not one of: {', '.join(get_args(StrategyRole))}")
    sources = [source] if isinstance(source, str) else list(source or [])
    task_run_id = task_run_id.strip() if task_run_id is not None else None
    if sources or task_run_id is not None or request_name is not None:
        _check_in_library(
            archive, sources=sources, task_run_id=task_run_id, request_name=request_name, lake=lake
        )
    params: dict[str, Any] = {}
    where = ["TRUE"]
    if statuses:
        where.append("(coalesce(s.recommendation_status, 'none') IN (SELECT unnest($statuses)))")
        params["statuses"] = statuses
    if sources:
        where.append("s.source IN (SELECT unnest($sources))")
        params["sources"] = sources
    if task_run_id is not None:
        where.append("starts_with(e.task_run_id, $task_run_id)")
        params["task_run_id"] = task_run_id
    if request_name is not None:
        where.append("e.request_name = $request_name")
        params["request_name"] = request_name
    if role is not None:
        where.append("e.strategy_role = $role")
        params["role"] = role
    if name_like:
        where.append("contains(lower(s.name), lower($name_like))")
        params["name_like"] = name_like
    metrics = ",\n           ".join(f"{sql} AS {name}" for name, sql in EXPERIMENT_METRICS_SQL.items())
    order = {"name": "s.name", "created_at": "s.created_at", "task_run_id": "e.task_run_id"}.get(
        sort_by, sort_by
    )
    sql = f"""
    WITH latest AS (
        SELECT * FROM aistock_experiments
        WHERE strategy_id IS NOT NULL
        QUALIFY row_number() OVER (PARTITION BY strategy_id ORDER BY imported_at DESC NULLS LAST, id) = 1
    )
    SELECT s.id AS strategy_id, s.strategy_key, s.name, s.shape, s.output_mode, s.source, s.strategy_type,
           s.factor_combination_id, len(CAST(c.factor_ids AS VARCHAR[])) AS n_factors,
           s.recommendation_status, s.review_note,
           e.id AS experiment_id, e.task_run_id, e.loop_id, e.request_name, e.strategy_role, e.archiving_level,
           {metrics},
           CASE WHEN e.recomputed_metrics_json IS NOT NULL THEN 'recomputed'
                WHEN e.metrics_json IS NOT NULL THEN 'qlib' END AS metrics_basis,
           s.created_at, s.updated_at
    FROM aistock_strategies s
    LEFT JOIN latest e ON e.strategy_id = s.id
    LEFT JOIN aistock_factor_combinations c ON c.id = s.factor_combination_id
    WHERE {" AND ".join(where)}
    ORDER BY {order} {"DESC" if descending else "ASC"} NULLS LAST, s.name, s.id
    {"LIMIT $limit" if limit is not None else ""}
    """
    if limit is not None:
        params["limit"] = int(limit)
    return source_frame(archive, lake, sql, params)


def _choices(value: str | Sequence[str] | None, choices: tuple[str, ...], *, option: str) -> list[str]:
    """A filter's values, each one of ``choices`` (else a ConfigError listing them)."""
    values = [value] if isinstance(value, str) else list(value or [])
    wrong = [v for v in values if v not in choices]
    if wrong:
        raise ConfigError(f"{option}={', '.join(map(repr, wrong))} is not one of: {', '.join(choices)}")
    return values


def _listed(values: Sequence[Any], *, at_most: int = 12) -> str:
    shown = ", ".join(str(v) for v in values[:at_most])
    more = f" and {len(values) - at_most} more" if len(values) > at_most else ""
    return (shown + more) or "(none yet)"


def _check_in_library(
    archive: Path | str | None,
    *,
    sources: list[str],
    task_run_id: str | None,
    request_name: str | None,
    lake: str | Path | None = None,
) -> None:
    """Refuse filter values the library does not hold, listing those it does (one small read)."""
    task_runs: list[str] = []
    requests: list[str] = []
    with source_connection(archive, lake, tables=["aistock_strategies", "aistock_experiments"]) as con:
        known_sources = [
            r[0]
            for r in con.execute(
                "SELECT DISTINCT source FROM aistock_strategies WHERE source IS NOT NULL ORDER BY source"
            ).fetchall()
        ]
        if task_run_id is not None:
            task_runs = [
                r[0]
                for r in con.execute(
                    "SELECT DISTINCT task_run_id FROM aistock_experiments WHERE strategy_id IS NOT NULL "
                    "AND task_run_id IS NOT NULL ORDER BY task_run_id"
                ).fetchall()
            ]
        if request_name is not None:
            requests = [
                r[0]
                for r in con.execute(
                    "SELECT DISTINCT request_name FROM aistock_experiments WHERE strategy_id IS NOT NULL "
                    "AND request_name IS NOT NULL ORDER BY request_name"
                ).fetchall()
            ]
    valid_sources = sorted(set(KNOWN_STRATEGY_SOURCES) | set(known_sources))
    wrong = [s for s in sources if s not in valid_sources]
    if wrong:
        raise ConfigError(f"source={', '.join(map(repr, wrong))} is not one of: {', '.join(valid_sources)}")
    if task_run_id is not None:
        if not task_run_id:
            raise ConfigError(
                "task run id is empty; give a task run id or its prefix (see `workbench status`)"
            )
        if not any(t.startswith(task_run_id) for t in task_runs):
            raise ConfigError(
                f"unknown task run {task_run_id!r}: no archived strategy belongs to a task run with "
                f"that id or prefix; task runs in the library: {_listed(task_runs)}"
            )
    if request_name is not None and request_name not in requests:
        raise ConfigError(
            f"unknown request {request_name!r}: no archived experiment was run under that request name; "
            f"request names in the library: {_listed(requests)}"
        )


def resolve_strategy_id(archive: Path | str | None, ref: str) -> str:
    """A strategy id from an id, a unique id prefix (≥ 6 characters), a strategy key or a unique name."""
    ref = ref.strip()
    hits = read_frame(
        archive,
        """
        SELECT id, name, strategy_key, source FROM aistock_strategies
        WHERE id = $ref OR strategy_key = $ref OR name = $ref OR (length($ref) >= 6 AND starts_with(id, $ref))
        """,
        {"ref": ref},
    )
    exact = hits.filter((pl.col("id") == ref) | (pl.col("strategy_key") == ref))
    if exact.height == 1:
        exact_id: str = exact["id"][0]
        return exact_id
    if hits.height == 0:
        short = " (an id prefix needs at least 6 characters)" if len(ref) < 6 else ""
        raise ConfigError(
            f"unknown strategy {ref!r}: no strategy has that id, id prefix, key or name{short} "
            "(see `workbench strategies`)"
        )
    if hits.height > 1:
        listed = ", ".join(
            f"{r['id'][:12]} ({r['name']}, {r['strategy_key']})" for r in hits.iter_rows(named=True)
        )
        raise ConfigError(f"strategy {ref!r} is ambiguous: {listed}; give the id")
    only_id: str = hits["id"][0]
    return only_id


@storage_errors("a strategy recommendation to the archive catalog")
def set_recommendation(
    archive: Path | str | None,
    strategy_id: str,
    status: RecommendationStatus,
    note: str | None = None,
    *,
    reviewer: str | None = None,
) -> dict[str, Any]:
    """Record a person's judgement of a strategy; returns the strategy's new state.

    ``manual_review`` survives re-archiving (the archive job keeps it); setting ``rdagent_accept``
    or ``rdagent_reject`` hands the strategy back to the agent's verdict, which the next archive
    run refreshes from ``feedback.json``. Every change is also appended to ``wb_strategy_reviews``
    (who, when, from what, why), so a review can be audited later.
    """
    if status not in get_args(RecommendationStatus):
        raise ConfigError(f"status={status!r} is not one of: {', '.join(get_args(RecommendationStatus))}")
    if status == "manual_review" and not (note and note.strip()):
        raise ConfigError("a manual review needs a note saying why (--note TEXT)")
    resolved = resolve_strategy_id(archive, strategy_id)
    now = utc_now()
    with archive_lock(archive, job="review"), open_catalog(archive) as con:
        with recorded(con, ArchiveLayout.at(archive), "review") as rec:
            previous = con.execute(
                "SELECT recommendation_status FROM aistock_strategies WHERE id = ?", [resolved]
            ).fetchall()[0][0]
            con.execute(
                "UPDATE aistock_strategies SET recommendation_status = ?, review_note = ?, updated_at = ? WHERE id = ?",
                [status, note, now, resolved],
            )
            con.execute(
                "INSERT INTO wb_strategy_reviews (strategy_id, status, previous_status, note, reviewer, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [resolved, status, previous, note, reviewer, now],
            )
            rec.capture("aistock_strategies", id=[resolved])
            rec.capture("wb_strategy_reviews", strategy_id=[resolved])
        row = fetch_frame(
            con,
            "SELECT id AS strategy_id, name, recommendation_status, review_note, updated_at "
            "FROM aistock_strategies WHERE id = $id",
            {"id": resolved},
        )
    out = row.to_dicts()[0]
    out["previous_status"] = previous
    out["updated_at"] = out["updated_at"].isoformat()
    return out


def strategy_config(archive: Path | str | None, strategy_id: str) -> StrategyConfig:
    """A library strategy as RD-Agent's StrategyConfig, ready to go into a new ExperimentRequest.

    Imported strategies stored their whole validated config; archived RD-Agent strategies keep
    the request entry's fields (trading rule, risk model, benchmark) or Qlib's portfolio config,
    which goes under ``extra``. The library id travels in ``extra.library_strategy_id``.
    """
    resolved = resolve_strategy_id(archive, strategy_id)
    row = read_frame(
        archive,
        "SELECT id, name, strategy_type, config_json FROM aistock_strategies WHERE id = $id",
        {"id": resolved},
    ).to_dicts()[0]
    stored = json.loads(row["config_json"] or "{}")
    fields = set(StrategyConfig.model_fields)
    config = {k: v for k, v in stored.items() if k in fields and v is not None}
    extra = dict(config.pop("extra", None) or {})
    extra.update({k: v for k, v in stored.items() if k not in fields and k != "factor_set"})
    extra["library_strategy_id"] = row["id"]
    config.setdefault("strategy_type", row["strategy_type"] or "topk")
    config.setdefault("name", row["name"])
    return StrategyConfig.model_validate({**config, "extra": extra})
