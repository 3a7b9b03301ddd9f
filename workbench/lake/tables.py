"""The lake's tables: which catalog rows each holds, its keys, partitions and JSON columns.

A lake table is the catalog table of the same name, plus what engines other than DuckDB need to
query it without our code: JSON as text, timestamps in UTC, the experiment's task run and month
on the big tables (partitions and file statistics prune on them), and the strategy library's
key results as plain columns on ``aistock_experiments``. ``row_version`` (the row's time stamp,
then a hash of its content) lets a publisher write only what differs, so publishing again commits
nothing, and decides which of two machines' copies of a shared row (a factor both found) stays:
the newer, whichever was published last.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["EXPERIMENTS", "LAKE_TABLES", "RETURN_SERIES", "LakeTable", "lake_table"]


@dataclass(frozen=True)
class LakeTable:
    """One Delta table of the lake and how it is published."""

    name: str
    """The Delta table's name (its folder under the lake URI)."""
    catalog_table: str
    """The catalog table it copies; readers register the lake table under this name."""
    keys: tuple[str, ...]
    """The stable ids a publisher merges by."""
    select_sql: str
    """The catalog query giving the table's rows (before ``row_version``)."""
    json_columns: tuple[str, ...] = ()
    """Columns that are JSON in the catalog and text in the lake."""
    partition_by: tuple[str, ...] = ()
    by_experiment: bool = False
    """Rows belong to one experiment (``experiment_id``): a changed experiment's rows are replaced."""
    newest_by: str | None = None
    """The row's time stamp: of two versions of a row the newer wins (ties: the larger hash)."""
    lake_columns: tuple[str, ...] = ("row_version",)
    """Columns the lake adds to the catalog's (left out where the table stands in for the catalog's)."""


def _as_text(columns: tuple[str, ...]) -> str:
    return ", ".join(f"CAST({c} AS VARCHAR) AS {c}" for c in columns)


def _select(table: str, json_columns: tuple[str, ...] = (), extra: str = "") -> str:
    replace = f" REPLACE ({_as_text(json_columns)})" if json_columns else ""
    return f"SELECT t.*{replace}{extra} FROM {table} t"


# The strategy library's key results (library/strategies.py EXPERIMENT_METRICS_SQL, with cost,
# recomputed from the archived series where there is one, else Qlib's): repeated here because the
# lake sits below the library; a test checks both give the same numbers.
def _metric(recomputed_key: str, qlib_key: str) -> str:
    return (
        f"coalesce(TRY_CAST(json_extract_string(t.recomputed_metrics_json, '$.\"{recomputed_key}\"') AS DOUBLE), "
        f"TRY_CAST(json_extract_string(t.metrics_json, '$.qlib.{qlib_key}') AS DOUBLE))"
    )


_EXPERIMENT_METRICS = {
    "information_ratio": _metric(
        "excess_return_with_cost.additive.information_ratio", "excess_return_with_cost_information_ratio"
    ),
    "annualized_return": _metric(
        "excess_return_with_cost.additive.annualized_return", "excess_return_with_cost_annualized_return"
    ),
    "max_drawdown": _metric(
        "excess_return_with_cost.additive.max_drawdown", "excess_return_with_cost_max_drawdown"
    ),
    "n_days": "TRY_CAST(json_extract_string(t.recomputed_metrics_json, '$.n_days') AS BIGINT)",
}
_MONTH = "strftime(coalesce(t.created_at, t.imported_at) AT TIME ZONE 'UTC', '%Y-%m')"
_EXPERIMENT_JSON = ("metrics_json", "recomputed_metrics_json", "feedback_json", "file_refs_json")

EXPERIMENTS = LakeTable(
    name="aistock_experiments",
    catalog_table="aistock_experiments",
    keys=("id",),
    select_sql=(
        # workspace_bytes (schema 8) is derived from file_refs_json and left out, so lakes published
        # before it keep their table schema
        "SELECT t.* EXCLUDE (workspace_bytes) REPLACE ("
        + _as_text(_EXPERIMENT_JSON)
        + "), "
        + ", ".join(f"{sql} AS {name}" for name, sql in _EXPERIMENT_METRICS.items())
        + f", {_MONTH} AS month, m.sha256 AS manifest_sha256, m.written_at AS manifest_written_at"
        " FROM aistock_experiments t LEFT JOIN wb_manifests m ON m.experiment_id = t.id"
    ),
    json_columns=_EXPERIMENT_JSON,
    newest_by="manifest_written_at",  # a re-archived experiment gets a new manifest (imported_at stays)
    lake_columns=("row_version", "manifest_sha256", "manifest_written_at", "month", *_EXPERIMENT_METRICS),
)
RETURN_SERIES = LakeTable(
    name="aistock_return_series",
    catalog_table="aistock_return_series",
    keys=("experiment_id", "datetime"),
    select_sql=(
        "SELECT e.task_run_id, "
        + _MONTH.replace("t.", "e.")
        + " AS month, r.* FROM aistock_return_series r JOIN aistock_experiments e ON e.id = r.experiment_id"
    ),
    partition_by=("month",),
    by_experiment=True,
    lake_columns=("task_run_id", "month"),
)

LAKE_TABLES: tuple[LakeTable, ...] = (
    LakeTable(
        "aistock_factors",
        "aistock_factors",
        ("id",),
        _select("aistock_factors", ("tags", "variables_json")),
        ("tags", "variables_json"),
        newest_by="updated_at",
    ),
    LakeTable(
        "aistock_factor_performance",
        "aistock_factor_performance",
        ("id",),
        _select("aistock_factor_performance"),
        by_experiment=True,
        newest_by="updated_at",
    ),
    LakeTable(
        "aistock_factor_combinations",
        "aistock_factor_combinations",
        ("id",),
        _select("aistock_factor_combinations", ("factor_ids",)),
        ("factor_ids",),
        newest_by="created_at",
    ),
    LakeTable(
        "aistock_factor_usage",
        "aistock_factor_usage",
        ("factor_id", "experiment_id", "combination_id"),
        _select("aistock_factor_usage"),
        by_experiment=True,
    ),
    LakeTable(
        "aistock_strategies",
        "aistock_strategies",
        ("id",),
        _select("aistock_strategies", ("config_json",)),
        ("config_json",),
        newest_by="updated_at",
    ),
    LakeTable(
        "aistock_loops",
        "wb_loop_state",
        ("task_run_id", "loop_id"),
        "SELECT t.task_run_id, t.loop_id, t.experiment_id, t.state, t.archiving_level, t.fingerprint, "
        "t.last_error, t.updated_at FROM wb_loop_state t",
        newest_by="updated_at",
    ),
    LakeTable(
        "aistock_requests",
        "wb_attached_requests",
        ("task_run_id",),
        _select("wb_attached_requests", ("request_json",)),
        ("request_json",),
        newest_by="attached_at",
    ),
    RETURN_SERIES,
    EXPERIMENTS,  # last: an experiment's row_version says its rows in every other table are written
)
"""Every lake table, in the order a publisher writes them."""


def lake_table(name: str) -> LakeTable:
    """The lake table called ``name`` (or copying the catalog table ``name``)."""
    for table in LAKE_TABLES:
        if name in (table.name, table.catalog_table):
            return table
    raise KeyError(name)
