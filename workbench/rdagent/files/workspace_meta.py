"""`workspace_meta.json`, `experiment_summary.json`, `manifest.json` (spec §5.4–5.6, §4.4).

The same three names have three shapes, told apart by keys (none carries a usable version):

* `head` — HEAD backfill: identity fields, `result_criteria`, `task_run`, `loop`, `pointers`
  (+ `files`, `artifacts: []` in the summary/manifest).
* `v1` — Dec-24 loop: additionally `step_name`, `best_workspace_id`, `registry`, `workspace_row`,
  `loop.key_metrics`, and in summary/manifest filled `artifacts`, `metrics`, `key_metrics`.
* `sidecar` — `tools/export_sota_to_aistock.py` under `<log_dir>/workspace/`: `"version": "1.0"`,
  `timestamp, experiment_id, scenario, total_loops, sota_*_count, best_metrics`, `experiments[]`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import polars as pl

from workbench.errors import InputFileError
from workbench.rdagent.files.jsonfile import (
    expect_object,
    get_bool,
    get_int,
    get_list,
    get_object,
    get_str_list,
    get_text,
    json_type,
    read_json_file,
    to_json_text,
)
from workbench.rdagent.files.limits import JSON_METADATA

Shape = Literal["head", "v1", "sidecar"]
Kind = Literal["workspace_meta", "experiment_summary", "manifest"]

ARTIFACT_SCHEMA: dict[str, Any] = {
    "artifact_id": pl.String,
    "artifact_type": pl.String,
    "name": pl.String,
    "status": pl.String,
    "entry_path": pl.String,
    "files": pl.List(pl.String),
}
EXPERIMENT_SCHEMA: dict[str, Any] = {
    "loop_id": pl.Int64,
    "action": pl.String,
    "hypothesis": pl.String,
    "decision": pl.Boolean,
    "reason": pl.String,
    "result_json": pl.String,
}
_V1_KEYS = ("step_name", "best_workspace_id", "registry", "workspace_row", "key_metrics")
_SIDECAR_KEYS = ("total_loops", "sota_factor_count", "sota_model_count", "best_metrics", "experiments")


@dataclass(frozen=True, eq=False)
class WorkspaceJson:
    """The fields of any of the three files in any shape; absent ones are None/empty."""

    kind: Kind
    shape: Shape
    task_run_id: str | None = None
    loop_id: int | None = None
    action: str | None = None
    workspace_id: str | None = None
    workspace_role: str | None = None
    experiment_type: str | None = None
    step_name: str | None = None
    workspace_path: str | None = None
    status: str | None = None
    has_result: bool | None = None
    best_workspace_id: str | None = None
    generated_at_utc: str | None = None
    scenario: str | None = None
    log_trace_path: str | None = None
    registry_db_path: str | None = None
    required_files: list[str] = field(default_factory=list)
    key_metrics: dict[str, Any] | None = None
    metrics: dict[str, Any] | None = None
    files: dict[str, str | None] | None = None
    artifacts: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=ARTIFACT_SCHEMA))
    # sidecar (§4.4) fields
    version: str | None = None
    timestamp: str | None = None
    experiment_id: str | None = None
    total_loops: int | None = None
    sota_factor_count: int | None = None
    sota_model_count: int | None = None
    best_metrics: dict[str, Any] | None = None
    experiments: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=EXPERIMENT_SCHEMA))
    raw: dict[str, Any] = field(default_factory=dict)


def read_workspace_meta(path: Path, *, max_bytes: int = JSON_METADATA.max_bytes) -> WorkspaceJson:
    """Read a workspace_meta.json of any shape."""
    return read_workspace_json(path, kind="workspace_meta", max_bytes=max_bytes)


def read_experiment_summary(path: Path, *, max_bytes: int = JSON_METADATA.max_bytes) -> WorkspaceJson:
    """Read an experiment_summary.json of any shape."""
    return read_workspace_json(path, kind="experiment_summary", max_bytes=max_bytes)


def read_workspace_manifest(path: Path, *, max_bytes: int = JSON_METADATA.max_bytes) -> WorkspaceJson:
    """Read a workspace-root manifest.json of any shape (not a bundle or template manifest)."""
    return read_workspace_json(path, kind="manifest", max_bytes=max_bytes)


def detect_shape(data: dict[str, Any]) -> Shape | None:
    """`sidecar`, `v1` or `head` by keys; None if it looks like none of them."""
    if data.get("version") == "1.0" or ("workspace_id" not in data and any(k in data for k in _SIDECAR_KEYS)):
        return "sidecar"
    raw_loop = data.get("loop")
    loop: dict[str, Any] = raw_loop if isinstance(raw_loop, dict) else {}
    if any(k in data for k in _V1_KEYS) or "key_metrics" in loop:
        return "v1"
    if "workspace_id" in data or "task_run_id" in data:
        return "head"
    return None


def read_workspace_json(path: Path, *, kind: Kind, max_bytes: int = JSON_METADATA.max_bytes) -> WorkspaceJson:
    """Read one of the three files; the shape is detected from its keys."""
    path = Path(path)
    data = expect_object(read_json_file(path, max_bytes=max_bytes), path)
    shape = detect_shape(data)
    if shape is None:
        raise InputFileError(
            path,
            f"not a {kind}.json: none of task_run_id/workspace_id (workspace shape) "
            "or version 1.0/experiments (log sidecar shape) present",
        )
    if shape == "sidecar":
        return _sidecar(data, path, kind)
    return _workspace(data, path, kind, shape)


def _workspace(data: dict[str, Any], path: Path, kind: Kind, shape: Shape) -> WorkspaceJson:
    loop = get_object(data, "loop", path) or {}
    task_run = get_object(data, "task_run", path) or {}
    criteria = get_object(data, "result_criteria", path) or {}
    registry = get_object(data, "registry", path) or {}
    has_result = get_bool(data, "has_result", path)
    if has_result is None:
        has_result = get_bool(criteria, "has_result", path, where="result_criteria")
    if has_result is None:
        has_result = get_bool(loop, "has_result", path, where="loop")
    key_metrics = get_object(data, "key_metrics", path) or get_object(loop, "key_metrics", path, where="loop")
    return WorkspaceJson(
        kind=kind,
        shape=shape,
        task_run_id=get_text(data, "task_run_id", path) or get_text(loop, "task_run_id", path, where="loop"),
        loop_id=_first_int(data, loop, "loop_id", path),
        action=get_text(data, "action", path) or get_text(loop, "action", path, where="loop"),
        workspace_id=get_text(data, "workspace_id", path),
        workspace_role=get_text(data, "workspace_role", path),
        experiment_type=get_text(data, "experiment_type", path),
        step_name=get_text(data, "step_name", path),
        workspace_path=get_text(data, "workspace_path", path),
        status=get_text(data, "status", path),
        has_result=has_result,
        best_workspace_id=get_text(data, "best_workspace_id", path)
        or get_text(loop, "best_workspace_id", path, where="loop"),
        generated_at_utc=get_text(data, "generated_at_utc", path),
        scenario=get_text(task_run, "scenario", path, where="task_run"),
        log_trace_path=get_text(task_run, "log_trace_path", path, where="task_run"),
        registry_db_path=get_text(registry, "db_path", path, where="registry"),
        required_files=get_str_list(criteria, "required_files", path, where="result_criteria"),
        key_metrics=key_metrics,
        metrics=get_object(data, "metrics", path),
        files=_files(data, path),
        artifacts=_artifacts(data, path),
        version=get_text(data, "version", path),
        raw=data,
    )


def _first_int(data: dict[str, Any], loop: dict[str, Any], key: str, path: Path) -> int | None:
    value = get_int(data, key, path)
    return value if value is not None else get_int(loop, key, path, where="loop")


def _files(data: dict[str, Any], path: Path) -> dict[str, str | None] | None:
    files = get_object(data, "files", path)
    if files is None:
        return None
    out: dict[str, str | None] = {}
    for name, value in files.items():
        if value is not None and not isinstance(value, str):
            raise InputFileError(
                path, f"files.{name} must be a path string or null, found {json_type(value)}"
            )
        out[name] = value
    return out


def _artifacts(data: dict[str, Any], path: Path) -> pl.DataFrame:
    rows = []
    for index, item in enumerate(get_list(data, "artifacts", path) or []):
        where = f"artifacts[{index}]"
        if not isinstance(item, dict):
            raise InputFileError(path, f"{where} must be an object, found {json_type(item)}")
        files = get_list(item, "files", path, where=where) or []
        if any(f is not None and not isinstance(f, str) for f in files):
            raise InputFileError(path, f"{where}.files must hold path strings or nulls")
        rows.append(
            [
                get_text(item, "artifact_id", path, where=where),
                get_text(item, "artifact_type", path, where=where),
                get_text(item, "name", path, where=where),
                get_text(item, "status", path, where=where),
                get_text(item, "entry_path", path, where=where),
                files,
            ]
        )
    return pl.DataFrame(rows, schema=ARTIFACT_SCHEMA, orient="row")


def _sidecar(data: dict[str, Any], path: Path, kind: Kind) -> WorkspaceJson:
    rows = []
    for index, item in enumerate(get_list(data, "experiments", path) or []):
        where = f"experiments[{index}]"
        if not isinstance(item, dict):
            raise InputFileError(path, f"{where} must be an object, found {json_type(item)}")
        rows.append(
            [
                get_int(item, "loop_id", path, where=where),
                get_text(item, "action", path, where=where),
                get_text(item, "hypothesis", path, where=where),
                get_bool(item, "decision", path, where=where),
                get_text(item, "reason", path, where=where),
                to_json_text(item.get("result")),
            ]
        )
    return WorkspaceJson(
        kind=kind,
        shape="sidecar",
        version=get_text(data, "version", path),
        timestamp=get_text(data, "timestamp", path),
        experiment_id=get_text(data, "experiment_id", path),
        scenario=get_text(data, "scenario", path),
        total_loops=get_int(data, "total_loops", path),
        sota_factor_count=get_int(data, "sota_factor_count", path),
        sota_model_count=get_int(data, "sota_model_count", path),
        best_metrics=get_object(data, "best_metrics", path),
        experiments=pl.DataFrame(rows, schema=EXPERIMENT_SCHEMA, orient="row"),
        raw=data,
    )
