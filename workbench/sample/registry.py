"""The sample `registry.sqlite`: HEAD or V1-created-then-migrated schema (spec §2.2, §2.3).

Rows are collected as dicts keyed by HEAD column names; columns a generation does not have are
dropped when writing (HEAD writes to them fail silently in real V1-migrated databases).
"""

from __future__ import annotations

import sqlite3
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from workbench.rdagent.registry import SCHEMA, TableName

RegistryGeneration = Literal["head", "v1_migrated"]
#: One row of a registry table, keyed by HEAD column name (None for NULL).
Row = dict[str, Any]

WORKSPACE_NAMESPACE = uuid.UUID("5b9b5f74-0f3e-4e3c-8f86-6d8a9c7d0f11")
ARTIFACT_NAMESPACE = uuid.UUID("3e36bb8a-2a9b-4c56-8f50-6312f0d89c42")


def _head_columns(table: TableName) -> tuple[str, ...]:
    """HEAD column names of one table, in order, as the reader defines them (spec §2.2)."""
    return tuple(name for name, _dtype in SCHEMA[table])


TASK_RUNS_COLUMNS = _head_columns("task_runs")
LOOPS_HEAD_COLUMNS = _head_columns("loops")
#: Added to V1's `loops` by HEAD's migration (`ALTER TABLE ... ADD COLUMN`, appended at the end).
LOOPS_MIGRATED_COLUMNS = (
    "materialization_status",
    "materialization_error",
    "materialization_updated_at_utc",
    "asset_bundle_id",
    "is_solidified",
    "sync_status",
    "updated_at_utc",
)
LOOPS_V1_COLUMNS = tuple(
    name for name in LOOPS_HEAD_COLUMNS if name not in ("log_dir", *LOOPS_MIGRATED_COLUMNS)
)
WORKSPACES_COLUMNS = _head_columns("workspaces")
#: HEAD-only `artifacts` columns: V1-created databases never get them (no migration adds them).
ARTIFACTS_MODEL_COLUMNS = ("model_type", "model_conf_json", "dataset_conf_json", "feature_schema_json")
ARTIFACTS_HEAD_COLUMNS = _head_columns("artifacts")
ARTIFACTS_V1_COLUMNS = tuple(name for name in ARTIFACTS_HEAD_COLUMNS if name not in ARTIFACTS_MODEL_COLUMNS)
ARTIFACT_FILES_COLUMNS = _head_columns("artifact_files")
FACTOR_REGISTRY_COLUMNS = _head_columns("factor_registry")

_TASK_RUNS_SQL = """CREATE TABLE IF NOT EXISTS task_runs (
    task_run_id TEXT PRIMARY KEY,
    scenario TEXT,
    status TEXT,
    created_at_utc TEXT,
    updated_at_utc TEXT,
    git_sha TEXT,
    rdagent_version TEXT,
    log_trace_path TEXT,
    params_json TEXT
);"""
_LOOPS_V1_BODY = """    task_run_id TEXT NOT NULL,
    loop_id INTEGER NOT NULL,
    action TEXT,
    status TEXT,
    has_result INTEGER DEFAULT 0,
    best_workspace_id TEXT,
    started_at_utc TEXT,
    ended_at_utc TEXT,
    error_type TEXT,
    error_message TEXT,
    ic_mean REAL,
    rank_ic_mean REAL,
    ann_return REAL,
    mdd REAL,
    turnover REAL,
    multi_score REAL,
    metrics_json TEXT,"""
_LOOPS_HEAD_SQL = f"""CREATE TABLE IF NOT EXISTS loops (
{_LOOPS_V1_BODY}
    log_dir TEXT,
    materialization_status TEXT,
    materialization_error TEXT,
    materialization_updated_at_utc TEXT,
    asset_bundle_id TEXT,
    is_solidified INTEGER DEFAULT 0,
    sync_status TEXT DEFAULT 'pending',
    updated_at_utc TEXT,
    PRIMARY KEY (task_run_id, loop_id)
);"""
_LOOPS_V1_SQL = f"""CREATE TABLE IF NOT EXISTS loops (
{_LOOPS_V1_BODY}
    PRIMARY KEY (task_run_id, loop_id)
);"""
_LOOPS_MIGRATIONS = (
    "ALTER TABLE loops ADD COLUMN materialization_status TEXT;",
    "ALTER TABLE loops ADD COLUMN materialization_error TEXT;",
    "ALTER TABLE loops ADD COLUMN materialization_updated_at_utc TEXT;",
    "ALTER TABLE loops ADD COLUMN asset_bundle_id TEXT;",
    "ALTER TABLE loops ADD COLUMN is_solidified INTEGER DEFAULT 0;",
    "ALTER TABLE loops ADD COLUMN sync_status TEXT DEFAULT 'pending';",
    "ALTER TABLE loops ADD COLUMN updated_at_utc TEXT;",
)
_WORKSPACES_SQL = """CREATE TABLE IF NOT EXISTS workspaces (
    workspace_id TEXT PRIMARY KEY,
    task_run_id TEXT NOT NULL,
    loop_id INTEGER,
    workspace_role TEXT,
    experiment_type TEXT,
    step_name TEXT,
    status TEXT,
    workspace_path TEXT NOT NULL,
    meta_path TEXT,
    summary_path TEXT,
    manifest_path TEXT,
    created_at_utc TEXT,
    updated_at_utc TEXT
);"""
_ARTIFACTS_HEAD_BODY = """    artifact_id TEXT PRIMARY KEY,
    task_run_id TEXT NOT NULL,
    loop_id INTEGER,
    workspace_id TEXT NOT NULL,
    artifact_type TEXT,
    name TEXT,
    version TEXT,
    status TEXT,
    primary_flag INTEGER DEFAULT 0,
    summary_json TEXT,
    entry_path TEXT,"""
_ARTIFACTS_HEAD_SQL = f"""CREATE TABLE IF NOT EXISTS artifacts (
{_ARTIFACTS_HEAD_BODY}
    model_type TEXT,
    model_conf_json TEXT,
    dataset_conf_json TEXT,
    feature_schema_json TEXT,
    created_at_utc TEXT,
    updated_at_utc TEXT
);"""
_ARTIFACTS_V1_SQL = f"""CREATE TABLE IF NOT EXISTS artifacts (
{_ARTIFACTS_HEAD_BODY}
    created_at_utc TEXT,
    updated_at_utc TEXT
);"""
_ARTIFACT_FILES_SQL = """CREATE TABLE IF NOT EXISTS artifact_files (
    file_id TEXT PRIMARY KEY,
    artifact_id TEXT NOT NULL,
    workspace_id TEXT NOT NULL,
    path TEXT NOT NULL,
    sha256 TEXT,
    size_bytes INTEGER,
    mtime_utc TEXT,
    kind TEXT
);"""
_FACTOR_REGISTRY_SQL = """CREATE TABLE IF NOT EXISTS factor_registry (
    factor_name TEXT NOT NULL,
    expression TEXT,
    performance_json TEXT,
    asset_bundle_id TEXT NOT NULL,
    workspace_id TEXT,
    task_run_id TEXT,
    loop_id INTEGER,
    updated_at_utc TEXT,
    PRIMARY KEY (factor_name, asset_bundle_id)
);"""
_INDEXES_SQL = (
    "CREATE INDEX IF NOT EXISTS idx_workspaces_task_loop ON workspaces(task_run_id, loop_id);",
    "CREATE INDEX IF NOT EXISTS idx_workspaces_role ON workspaces(workspace_role);",
    "CREATE INDEX IF NOT EXISTS idx_artifacts_task_loop ON artifacts(task_run_id, loop_id);",
    "CREATE INDEX IF NOT EXISTS idx_artifacts_workspace ON artifacts(workspace_id);",
    "CREATE INDEX IF NOT EXISTS idx_artifact_files_artifact ON artifact_files(artifact_id);",
)


def schema_statements(generation: RegistryGeneration) -> list[str]:
    """DDL in the order the real code paths ran it (V1 create, later HEAD migration)."""
    if generation == "head":
        return [
            _TASK_RUNS_SQL,
            _LOOPS_HEAD_SQL,
            _WORKSPACES_SQL,
            _ARTIFACTS_HEAD_SQL,
            _ARTIFACT_FILES_SQL,
            _FACTOR_REGISTRY_SQL,
            *_INDEXES_SQL,
        ]
    v1 = [
        _TASK_RUNS_SQL,
        _LOOPS_V1_SQL,
        _WORKSPACES_SQL,
        _ARTIFACTS_V1_SQL,
        _ARTIFACT_FILES_SQL,
        *_INDEXES_SQL,
    ]
    return v1 + list(_LOOPS_MIGRATIONS) + [_FACTOR_REGISTRY_SQL]


def table_columns(generation: RegistryGeneration) -> dict[TableName, tuple[str, ...]]:
    """Column names, in order, of every table of one schema generation."""
    head = generation == "head"
    return {
        "task_runs": TASK_RUNS_COLUMNS,
        "loops": LOOPS_HEAD_COLUMNS if head else LOOPS_V1_COLUMNS + LOOPS_MIGRATED_COLUMNS,
        "workspaces": WORKSPACES_COLUMNS,
        "artifacts": ARTIFACTS_HEAD_COLUMNS if head else ARTIFACTS_V1_COLUMNS,
        "artifact_files": ARTIFACT_FILES_COLUMNS,
        "factor_registry": FACTOR_REGISTRY_COLUMNS,
    }


@dataclass
class RegistryRows:
    """Rows of every table, in insertion order (rowid order matters to readers)."""

    task_runs: list[Row] = field(default_factory=list)
    loops: list[Row] = field(default_factory=list)
    workspaces: list[Row] = field(default_factory=list)
    artifacts: list[Row] = field(default_factory=list)
    artifact_files: list[Row] = field(default_factory=list)
    factor_registry: list[Row] = field(default_factory=list)

    def tables(self) -> dict[TableName, list[Row]]:
        return {
            "task_runs": self.task_runs,
            "loops": self.loops,
            "workspaces": self.workspaces,
            "artifacts": self.artifacts,
            "artifact_files": self.artifact_files,
            "factor_registry": self.factor_registry,
        }


def empty_loop_row(task_run_id: str, loop_id: int) -> Row:
    """A loops row with every HEAD column, defaults as SQLite would fill them."""
    row: Row = dict.fromkeys(LOOPS_HEAD_COLUMNS)
    row.update(
        {
            "task_run_id": task_run_id,
            "loop_id": loop_id,
            "has_result": 0,
            "is_solidified": 0,
            "sync_status": "pending",
        }
    )
    return row


def bootstrap_workspace_id(task_run_id: str, loop_id: int, workspace_path: str) -> str:
    """Workspace id of the log-based tools: uuid5 of `run|loop|path`, not the directory name."""
    return uuid.uuid5(WORKSPACE_NAMESPACE, f"{task_run_id}|{loop_id}|{workspace_path}").hex


def head_artifact_id(task_run_id: str, workspace_id: str, artifact_type: str, name: str) -> str:
    return uuid.uuid5(ARTIFACT_NAMESPACE, f"{task_run_id}|{workspace_id}|{artifact_type}|{name}").hex


def head_file_id(artifact_id: str, workspace_id: str, kind: str, path: str) -> str:
    return uuid.uuid5(ARTIFACT_NAMESPACE, f"{artifact_id}|{workspace_id}|{kind}|{path}").hex


def write_registry(path: Path, rows: RegistryRows, *, generation: RegistryGeneration) -> None:
    """Create the database in WAL mode, insert every row in one transaction, close cleanly.

    Closing the last connection checkpoints and removes `-wal`/`-shm`, but the WAL journal mode
    stays recorded in the file header, as in a real installation at rest.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = table_columns(generation)
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
        for statement in schema_statements(generation):
            connection.execute(statement)
        connection.execute("BEGIN IMMEDIATE")
        for table, table_rows in rows.tables().items():
            names = columns[table]
            sql = f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})"
            connection.executemany(sql, [tuple(row.get(name) for name in names) for row in table_rows])
        connection.execute("COMMIT")
    finally:
        connection.close()
