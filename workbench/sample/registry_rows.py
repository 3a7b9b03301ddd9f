"""Registry rows of the sample installation, per writer generation (spec §2.4–§2.7).

V1 rows carry metrics, sub-workspaces and uuid4 artifacts with sha256; gap-era rows say
`has_result=1` with no metrics; HEAD live rows are status markers only; HEAD backfilled rows add
`has_result`, materialization and uuid5 artifacts without sha256.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import uuid
from datetime import datetime, timedelta
from typing import NamedTuple, TypedDict

from workbench.rdagent.installation import LOG_RELPATH
from workbench.sample.metadata import RESULT_FILES
from workbench.sample.plan import JsonObject, LoopPlan, RunPlan
from workbench.sample.registry import (
    RegistryRows,
    Row,
    bootstrap_workspace_id,
    empty_loop_row,
    head_artifact_id,
    head_file_id,
)
from workbench.sample.workspaces import (
    FileRecord,
    WrittenWorkspace,
    iso,
    registry_path,
    workspace_registry_path,
)

REPORT_FILES = RESULT_FILES[:6]
_GIT_SHAS = {
    "v1": "5b2467f" + hashlib.sha1(b"v1").hexdigest()[:33],
    "gap": "9c41d0e" + hashlib.sha1(b"gap").hexdigest()[:33],
    "head": "f1f821c" + hashlib.sha1(b"head").hexdigest()[:33],
}


class DuplicateWorkspace(TypedDict):
    """A workspace the bootstrap tool registered again: its folder, new id and path, the loop."""

    dir_id: str
    duplicate_workspace_id: str
    duplicate_path: str
    loop_key: str


def log_trace_path(run: RunPlan) -> str:
    return registry_path(run.path_style, *LOG_RELPATH.parts, run.log_name)


def log_root_path(run: RunPlan) -> str:
    return registry_path(run.path_style, *LOG_RELPATH.parts)


def task_run_row(run: RunPlan) -> Row | None:
    """The run's `task_runs` row; None for a run killed before HEAD wrote it (at run end)."""
    if run.status is None:
        return None
    early_writer = run.generation != "head" or run.status == "running"
    created = run.loops[0].step_times[0][2] if early_writer and run.loops else run.ended
    if run.generation == "head" and run.params is None:
        params = "{}"
    else:
        params = json.dumps(run.params, ensure_ascii=False)
    return {
        "task_run_id": run.task_run_id,
        "scenario": "QuantRDLoop",
        "status": run.status,
        "created_at_utc": iso(created),
        "updated_at_utc": iso(run.loops[-1].ended if run.status == "running" else run.ended),
        "git_sha": _GIT_SHAS[run.generation],
        "rdagent_version": "0.8.0",
        "log_trace_path": log_trace_path(run),
        "params_json": params,
    }


def _metric_columns(metrics: dict[str, float]) -> Row:
    """V1 `update_loop_metrics`: two lookups hit, the others use keys Qlib never writes."""
    return {
        "ic_mean": metrics.get("IC"),
        "rank_ic_mean": metrics.get("Rank IC"),
        "ann_return": metrics.get("1day.excess_return_with_cost.annualized_return "),
        "mdd": metrics.get("1day.excess_return_with_cost.max_drawdown"),
        "turnover": metrics.get("1day.excess_return_with_cost.turnover"),
        "multi_score": metrics.get("multi_score"),
        "metrics_json": json.dumps(metrics),
    }


def loop_row(run: RunPlan, loop: LoopPlan, written: WrittenWorkspace | None) -> Row:
    """One `loops` row as the generation's writers would have left it."""
    row = empty_loop_row(loop.task_run_id, loop.loop_id)
    with_results = _with_results(loop, written)
    row.update(
        {
            "action": loop.action,
            "status": loop.status,
            "error_type": loop.error_type,
            "error_message": loop.error_message,
            "ended_at_utc": iso(loop.ended),
        }
    )
    if run.generation in ("v1", "gap"):
        row["started_at_utc"] = iso(loop.step_times[0][1])
        if with_results is not None:
            row["has_result"] = 1
            row["best_workspace_id"] = with_results.plan.dir_id
            if run.generation == "v1" and with_results.metrics is not None:
                row.update(_metric_columns(with_results.metrics))
        return row
    row["started_at_utc"] = iso(loop.step_times[0][2])
    row["updated_at_utc"] = iso(loop.ended)
    if loop.status == "success" and loop.experiment is not None:
        row["log_dir"] = log_root_path(run)
    if run.backfill_time is not None:
        _apply_backfill(run, loop, row, has_files=with_results is not None, at=run.backfill_time)
    return row


def _with_results(loop: LoopPlan, written: WrittenWorkspace | None) -> WrittenWorkspace | None:
    """The experiment workspace if the loop succeeded and wrote `qlib_res.csv`, else None."""
    if written is not None and "qlib_res.csv" in written.files and loop.status == "success":
        return written
    return None


def _apply_backfill(run: RunPlan, loop: LoopPlan, row: Row, *, has_files: bool, at: datetime) -> None:
    """Offline backfill (run at `at`): has_result, log_dir if empty, materialization status."""
    if row["log_dir"] is None:
        row["log_dir"] = log_trace_path(run)
    if not has_files:
        return
    row["has_result"] = 1
    row["materialization_updated_at_utc"] = iso(at)
    if loop.action == "factor":
        row["materialization_status"] = "done"
    else:
        row["materialization_status"] = "failed"
        row["materialization_error"] = (
            "RuntimeError: missing_model_weights (no model.pkl at the workspace root)"
        )


def solidify(row: Row, *, bundle_id: str, at: datetime) -> None:
    """`solidify_loop_assets` upsert via `batch_solidify.sh` (SQLite `datetime('now')` format)."""
    row.update(
        {
            "status": "success",
            "asset_bundle_id": bundle_id,
            "is_solidified": 1,
            "sync_status": "pending",
            "ended_at_utc": iso(at),
            "updated_at_utc": iso(at),
            "error_type": None,
            "error_message": None,
            "materialization_updated_at_utc": at.strftime("%Y-%m-%d %H:%M:%S"),
        }
    )


def workspace_rows(
    run: RunPlan, loop: LoopPlan, written: WrittenWorkspace | None, subs: list[WrittenWorkspace]
) -> list[Row]:
    """`workspaces` rows: V1 experiment + sub-workspaces; others only successful experiments."""
    rows: list[Row] = []
    experiment = loop.experiment
    if experiment is not None and loop.status == "success":
        rows.append(_workspace_row(run, loop, experiment.dir_id, written))
    if run.generation == "v1":
        for sub in subs:
            rows.append(
                {
                    **_workspace_row(run, loop, sub.plan.dir_id, None),
                    "workspace_role": "sub_workspace",
                    "step_name": "coding",
                    "status": "success" if loop.status == "success" else "failed",
                    "updated_at_utc": iso(loop.step_times[min(1, len(loop.step_times) - 1)][2]),
                }
            )
    return rows


def _workspace_row(run: RunPlan, loop: LoopPlan, dir_id: str, written: WrittenWorkspace | None) -> Row:
    files = written.files if written is not None else {}
    updated = loop.ended
    if run.backfill_time is not None and "workspace_meta.json" in files:
        updated = run.backfill_time
    return {
        "workspace_id": dir_id,
        "task_run_id": loop.task_run_id,
        "loop_id": loop.loop_id,
        "workspace_role": "experiment_workspace",
        "experiment_type": loop.action,
        "step_name": "feedback",
        "status": "success",
        "workspace_path": workspace_registry_path(run.path_style, dir_id),
        "meta_path": "workspace_meta.json" if "workspace_meta.json" in files else None,
        "summary_path": "experiment_summary.json" if "experiment_summary.json" in files else None,
        "manifest_path": "manifest.json" if "manifest.json" in files else None,
        "created_at_utc": iso(loop.ended),
        "updated_at_utc": iso(updated),
    }


class ArtifactSpec(NamedTuple):
    """One artifact row to write and the `(path, kind)` of its file rows."""

    artifact_type: str
    name: str
    primary: int
    summary: dict[str, object]
    entry: str
    files: list[tuple[str, str]]


def _file_row(
    file_id: str, artifact_id: str, workspace_id: str, path: str, record: FileRecord | None, kind: str
) -> Row:
    return {
        "file_id": file_id,
        "artifact_id": artifact_id,
        "workspace_id": workspace_id,
        "path": path,
        "sha256": record.sha256 if record is not None else None,
        "size_bytes": record.size if record is not None else None,
        "mtime_utc": iso(record.mtime) if record is not None else None,
        "kind": kind,
    }


def _head_specs(written: WrittenWorkspace) -> list[ArtifactSpec]:
    """One spec per HEAD backfill artifact (§2.2 table)."""
    files = written.files
    present = [name for name in REPORT_FILES if name in files]
    signals = [name for name in ("signals.parquet", "signals.json") if name in files]
    schema = [name for name in ("ret_schema.parquet", "ret_schema.json") if name in files]
    configs = sorted(name for name in files if "/" not in name and name.endswith((".yaml", ".yml")))

    def entry(name: str) -> str:
        return name if name in files else "."

    specs = [
        ArtifactSpec(
            "report",
            "qlib_report",
            1,
            {"files": list(REPORT_FILES)},
            entry("qlib_res.csv"),
            [(n, "report") for n in present],
        ),
        ArtifactSpec(
            "backtest_metrics",
            "qlib_res.csv",
            1,
            {"file": "qlib_res.csv"},
            entry("qlib_res.csv"),
            [("qlib_res.csv", "backtest_metrics")] if "qlib_res.csv" in files else [],
        ),
        ArtifactSpec(
            "backtest_curve",
            "ret.pkl",
            1,
            {"file": "ret.pkl"},
            entry("ret.pkl"),
            [("ret.pkl", "backtest_curve")] if "ret.pkl" in files else [],
        ),
        ArtifactSpec(
            "signals",
            "signals",
            0,
            {"files": signals},
            signals[0] if signals else ".",
            [(signals[0], "signals")] if signals else [],
        ),
        ArtifactSpec(
            "ret_schema",
            "ret_schema",
            0,
            {"files": schema},
            schema[0] if schema else ".",
            [(schema[0], "ret_schema")] if schema else [],
        ),
        ArtifactSpec("model", "mlruns", 0, {"path": "mlruns"}, "mlruns", [("mlruns", "model")]),
        ArtifactSpec(
            "config_snapshot",
            "workspace_configs",
            0,
            {"count": len(configs)},
            ".",
            [(n, "config_snapshot") for n in configs],
        ),
        ArtifactSpec(
            "factor_data",
            "combined_factors",
            1,
            {"files": ["combined_factors_df.parquet"]},
            entry("combined_factors_df.parquet"),
            [("combined_factors_df.parquet", "factor_data")]
            if "combined_factors_df.parquet" in files
            else [],
        ),
    ]
    for kind in ("factor_meta", "factor_perf", "feedback"):
        name = f"{kind}.json"
        if name in files:
            specs.append(ArtifactSpec(kind, name, 0, {"file": name}, name, [(name, kind)]))
    for kind in ("model_meta", "strategy_meta"):
        name = f"{kind}.json"
        if name in files:
            specs.append(ArtifactSpec(kind, name, 0, {"file": name}, name, []))
    return specs


def head_artifacts(
    loop: LoopPlan, written: WrittenWorkspace, *, backfilled: datetime, mlruns_size: int, rows: RegistryRows
) -> None:
    """HEAD backfill artifacts, stamped `backfilled`: uuid5 ids, sha256 NULL, model columns on `report`."""
    ws_id = written.plan.dir_id
    at = iso(backfilled)
    for artifact_type, name, primary, summary, entry, file_specs in _head_specs(written):
        artifact_id = head_artifact_id(loop.task_run_id, ws_id, artifact_type, name)
        present = bool(file_specs) or artifact_type in ("model_meta", "strategy_meta")
        row = {
            "artifact_id": artifact_id,
            "task_run_id": loop.task_run_id,
            "loop_id": loop.loop_id,
            "workspace_id": ws_id,
            "artifact_type": artifact_type,
            "name": name,
            "version": "v1",
            "status": "present" if present else "missing",
            "primary_flag": primary,
            "summary_json": json.dumps(summary),
            "entry_path": entry,
            "model_type": "Net" if artifact_type == "report" and loop.action == "model" else None,
            "created_at_utc": at,
            "updated_at_utc": at,
        }
        rows.artifacts.append(row)
        for path, kind in file_specs:
            record = written.files.get(path)
            file_row = _file_row(
                head_file_id(artifact_id, ws_id, kind, path), artifact_id, ws_id, path, record, kind
            )
            file_row["sha256"] = None
            if path == "mlruns":
                file_row.update({"size_bytes": mlruns_size, "mtime_utc": iso(loop.step_times[2][2])})
            rows.artifact_files.append(file_row)


def _uuid4(rng: random.Random) -> str:
    return uuid.UUID(int=rng.getrandbits(128), version=4).hex


def v1_artifacts(
    run: RunPlan,
    loop: LoopPlan,
    written: WrittenWorkspace,
    *,
    mlruns_size: int,
    rows: RegistryRows,
    seed: int,
) -> list[JsonObject]:
    """V1 live artifacts (uuid4 ids, sha256 for files); returns the JSON `artifacts` list."""
    rng = random.Random(f"{seed}|v1-artifacts|{written.plan.dir_id}")
    ws_id = written.plan.dir_id
    ws_path = workspace_registry_path(run.path_style, ws_id)
    at = iso(loop.ended)
    files = written.files
    configs = sorted(name for name in files if "/" not in name and name.endswith((".yaml", ".yml")))
    specs: list[ArtifactSpec] = [
        ArtifactSpec(
            "report",
            "qlib_report",
            1,
            {"files": ["qlib_res.csv", "ret.pkl"]},
            "qlib_res.csv",
            [(n, "report") for n in ("qlib_res.csv", "ret.pkl") if n in files],
        ),
        ArtifactSpec(
            "model",
            "mlruns",
            0,
            {"path": "mlruns"},
            "mlruns",
            [("mlruns", "model")] + [(p, "model") for p in written.mlruns_pickles],
        ),
        ArtifactSpec(
            "config_snapshot",
            "workspace_configs",
            0,
            {"count": len(configs)},
            ws_path,
            [(n, "config") for n in configs[:50]],
        ),
    ]
    if "combined_factors_df.parquet" in files:
        specs.append(
            ArtifactSpec(
                "feature_set",
                "combined_factors_df",
                1,
                {"file": "combined_factors_df.parquet"},
                "combined_factors_df.parquet",
                [("combined_factors_df.parquet", "data")],
            )
        )
    listing: list[JsonObject] = []
    for artifact_type, name, primary, summary, entry, file_specs in specs:
        artifact_id = _uuid4(rng)
        rows.artifacts.append(
            {
                "artifact_id": artifact_id,
                "task_run_id": loop.task_run_id,
                "loop_id": loop.loop_id,
                "workspace_id": ws_id,
                "artifact_type": artifact_type,
                "name": name,
                "version": None,
                "status": "present",
                "primary_flag": primary,
                "summary_json": json.dumps(summary),
                "entry_path": entry,
                "created_at_utc": at,
                "updated_at_utc": at,
            }
        )
        for path, kind in file_specs:
            file_row = _file_row(_uuid4(rng), artifact_id, ws_id, path, files.get(path), kind)
            if path == "mlruns":
                file_row.update(
                    {"sha256": None, "size_bytes": mlruns_size, "mtime_utc": iso(loop.step_times[2][2])}
                )
            rows.artifact_files.append(file_row)
        listing.append(
            {
                "artifact_id": artifact_id,
                "artifact_type": artifact_type,
                "name": name,
                "status": "present",
                "entry_path": entry,
                "files": [path for path, _ in file_specs],
            }
        )
    return listing


def directory_size(path: str) -> int:
    """`stat().st_size` of a directory, which is what the registry tools store for `mlruns`."""
    return os.stat(path).st_size


def duplicate_rows(
    run: RunPlan,
    loops: list[LoopPlan],
    *,
    exists: dict[str, bool],
    has_results: dict[str, bool],
    rows: RegistryRows,
) -> list[DuplicateWorkspace]:
    """`tools/bootstrap_registry_from_logs.py`: the same run again under its log-dir name.

    Every workspace path found in the logs (sub-workspaces included) becomes an
    `experiment_workspace` row with a uuid5 id and the Windows spelling of the tool's machine.
    Returns the duplicate workspace descriptions for the manifest.
    """
    dup_id = run.log_name
    at = run.ended + timedelta(days=1, hours=3, microseconds=123457)
    rows.task_runs.append(
        {
            "task_run_id": dup_id,
            "scenario": None,
            "status": "unknown",
            "created_at_utc": iso(at),
            "updated_at_utc": iso(at),
            "git_sha": None,
            "rdagent_version": None,
            "log_trace_path": (LOG_RELPATH / run.log_name).as_posix(),
            "params_json": None,
        }
    )
    duplicates: list[DuplicateWorkspace] = []
    for loop in loops:
        row = empty_loop_row(dup_id, loop.loop_id)
        experiment = loop.experiment
        found = [experiment] if experiment is not None else []
        found += loop.subs
        with_results = experiment is not None and has_results.get(experiment.dir_id, False)
        row.update(
            {
                "action": loop.action,
                "status": "unknown",
                "has_result": 1 if with_results else 0,
                "started_at_utc": iso(loop.step_times[0][1]),
                "updated_at_utc": iso(at),
            }
        )
        rows.loops.append(row)
        for ws in found:
            path = workspace_registry_path("win_lower", ws.dir_id)
            ws_id = bootstrap_workspace_id(dup_id, loop.loop_id, path)
            rows.workspaces.append(
                {
                    "workspace_id": ws_id,
                    "task_run_id": dup_id,
                    "loop_id": loop.loop_id,
                    "workspace_role": "experiment_workspace",
                    "experiment_type": loop.action,
                    "step_name": None,
                    "status": "finished" if exists.get(ws.dir_id, False) else "missing_path",
                    "workspace_path": path,
                    "meta_path": None,
                    "summary_path": None,
                    "manifest_path": None,
                    "created_at_utc": iso(at),
                    "updated_at_utc": iso(at),
                }
            )
            duplicates.append(
                {
                    "dir_id": ws.dir_id,
                    "duplicate_workspace_id": ws_id,
                    "duplicate_path": path,
                    "loop_key": f"{dup_id}/{loop.loop_id}",
                }
            )
    return duplicates
