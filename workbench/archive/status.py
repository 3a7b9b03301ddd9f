"""Archive status: what is archived at which level, per task run, and what failed."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl

from workbench.archive.catalog import open_catalog
from workbench.archive.db import fetch_frame, fetch_one
from workbench.archive.layout import ArchiveLayout
from workbench.archive.remote import accepts_s3
from workbench.errors import ConfigError


@dataclass(frozen=True)
class ArchiveStatus:
    """Frames a notebook can filter further; `format()` for the terminal."""

    experiments: pl.DataFrame
    by_level: pl.DataFrame
    by_task_run: pl.DataFrame
    runs: pl.DataFrame
    errors: pl.DataFrame
    storage: dict[str, int]
    list_experiments: bool = False

    def to_dict(self) -> dict[str, Any]:
        listing = {"experiments": self.experiments.to_dicts()} if self.list_experiments else {}
        return listing | {
            "by_level": self.by_level.to_dicts(),
            "by_task_run": self.by_task_run.to_dicts(),
            "runs": self.runs.to_dicts(),
            "errors": self.errors.to_dicts(),
            "storage": self.storage,
        }

    def format_errors(self, *, limit: int | None = None) -> str:
        """Every open error in full (which loop, its state, the whole message), one per line."""
        if not self.errors.height:
            return "no open errors"
        rows = self.errors.head(limit) if limit is not None else self.errors
        lines = [f"open errors ({self.errors.height}):"]
        lines.extend(
            f"  {r['task_run_id']}/{r['loop_id']} [{r['state']}]: {r['last_error']}"
            for r in rows.iter_rows(named=True)
        )
        if rows.height < self.errors.height:
            lines.append(f"  ... {self.errors.height - rows.height} more (`workbench status --errors`)")
        return "\n".join(lines)

    def format(self) -> str:
        lines = []
        if self.list_experiments:
            lines.append(f"experiments ({self.experiments.height}):")
            lines += [
                f"  {r['id']}  {r['task_run_id']}/{r['loop_id']}  workspace {r['workspace_id']}  "
                f"level {r['archiving_level']}  {r['workspace_state'] or 'present'}  {r['state'] or ''}"
                + (f"  {r['strategy_role']}" if r["strategy_role"] else "")
                for r in self.experiments.iter_rows(named=True)
            ]
        lines.append("experiments by level:")
        lines += [
            f"  level {r['archiving_level']}: {r['experiments']}" for r in self.by_level.iter_rows(named=True)
        ]
        lines.append("by task run:")
        for r in self.by_task_run.iter_rows(named=True):
            lines.append(
                f"  {r['task_run_id']}: {r['experiments']} experiments, level 2: {r['level2']}, "
                f"level 1: {r['level1']}"
            )
        s = self.storage
        lines.append(
            f"storage: {s['objects']} objects, {s['stored_bytes']:,} bytes stored for "
            f"{s['original_bytes']:,} bytes of kept files (whole archive); the experiments shown had "
            f"{s['workspace_bytes']:,} bytes in their workspaces"
        )
        lines.append("recent runs:")
        for r in self.runs.head(5).iter_rows(named=True):
            lines.append(
                f"  {r['started_at']} {r['mode']:<11} {r['status']:<8} level2={r['n_level2']} "
                f"errors={r['n_errors']} ({r['run_id']})"
            )
            if r.get("error"):
                lines.append(f"    failed: {r['error']}")
        if self.errors.height:
            lines.append(self.format_errors(limit=20))
        return "\n".join(lines)


@accepts_s3(writes=False)
def archive_status(
    archive: Path | str | None = None,
    *,
    level: int | None = None,
    task_run_id: str | None = None,
    errors_only: bool = False,
    since: str | None = None,
    list_experiments: bool = False,
) -> ArchiveStatus:
    """Read the catalog once (read-only, released at once) and summarise it.

    ``list_experiments`` adds one line (one JSON object) per experiment: the ids `restore`,
    `hold` and `compare` take.
    """
    if level is not None and level not in (0, 1, 2):
        raise ConfigError(f"--level {level} is not an archiving level; use 0, 1 or 2")
    where: list[str] = ["1=1"]
    params: list[int | str] = []
    if level is not None:
        where.append("e.archiving_level = ?")
        params.append(level)
    if task_run_id:
        where.append("e.task_run_id = ?")
        params.append(task_run_id)
    if since:
        where.append("e.created_at >= CAST(? AS TIMESTAMPTZ)")
        params.append(since)
    if errors_only:
        where.append("s.state = 'failed'")
    with open_catalog(archive, read_only=True) as con:
        if (
            task_run_id
            and fetch_one(
                con, "SELECT 1 FROM aistock_experiments WHERE task_run_id = ? LIMIT 1", [task_run_id]
            )
            is None
        ):
            raise ConfigError(
                f"no task run {task_run_id!r} in the archive; `workbench status` lists the task runs"
            )
        experiments = fetch_frame(
            con,
            f"""SELECT e.id, e.task_run_id, e.loop_id, e.workspace_id, e.action, e.archiving_level, e.workspace_state,
                       e.request_name, e.strategy_role, e.created_at, e.imported_at, s.state, s.last_error,
                       coalesce(k.kept_bytes, 0)::BIGINT AS kept_bytes,
                       coalesce(e.workspace_bytes, 0)::BIGINT AS workspace_bytes
                FROM aistock_experiments e LEFT JOIN wb_loop_state s ON s.experiment_id = e.id
                LEFT JOIN (SELECT experiment_id, sum(size_bytes) AS kept_bytes FROM wb_stored_files
                           GROUP BY experiment_id) k ON k.experiment_id = e.id
                WHERE {" AND ".join(where)} ORDER BY e.task_run_id, e.loop_id""",
            params,
        )
        runs = fetch_frame(
            con,
            "SELECT run_id, mode, status, started_at, ended_at, n_candidates, n_level1, n_level2, n_unchanged, "
            "n_errors, bytes_read, bytes_stored, json_extract_string(summary_json, '$.error') AS error "
            "FROM wb_archive_runs ORDER BY started_at DESC LIMIT 50",
        )
        errors = fetch_frame(
            con,
            "SELECT task_run_id, loop_id, experiment_id, state, last_error, updated_at FROM wb_loop_state "
            "WHERE state = 'failed' ORDER BY updated_at DESC",
        )
        objects, stored_bytes, original_bytes = fetch_one(
            con,
            "SELECT count(*), coalesce(sum(stored_bytes), 0), coalesce(sum(size_bytes), 0) FROM wb_objects",
        ) or (0, 0, 0)
    runs = _with_run_files(runs, ArchiveLayout.at(archive))
    by_level = (
        experiments.group_by("archiving_level").agg(pl.len().alias("experiments")).sort("archiving_level")
    )
    by_task_run = (
        experiments.group_by("task_run_id")
        .agg(
            pl.len().alias("experiments"),
            (pl.col("archiving_level") == 2).sum().alias("level2"),
            (pl.col("archiving_level") == 1).sum().alias("level1"),
            pl.col("kept_bytes").sum().alias("kept_bytes"),
            pl.col("workspace_bytes").sum().alias("workspace_bytes"),
        )
        .sort("task_run_id")
    )
    storage = {
        "objects": int(objects),
        "stored_bytes": int(stored_bytes),
        "original_bytes": int(original_bytes),
        "workspace_bytes": int(experiments["workspace_bytes"].sum() or 0),
    }
    return ArchiveStatus(experiments, by_level, by_task_run, runs, errors, storage, list_experiments)


def _with_run_files(runs: pl.DataFrame, layout: ArchiveLayout) -> pl.DataFrame:
    """Runs the catalog still calls 'running' but whose ``runs/<run_id>.json`` says they ended.

    A run that failed on a full disk may not have been able to update its catalog row; its run
    file (space reserved at the start) has the outcome and the reason. The next archive run
    writes it into the catalog (`runs.fix_ended_runs`).
    """
    from workbench.archive.runs import read_run_file

    if runs.is_empty() or not (runs["status"] == "running").any():
        return runs
    rows = runs.to_dicts()
    for row in rows:
        if row["status"] != "running":
            continue
        data = read_run_file(layout, row["run_id"])
        if not data or data.get("status") in (None, "running"):
            continue
        ended = data.get("ended_at")
        row.update(
            status=data["status"],
            ended_at=datetime.fromisoformat(ended) if ended else None,
            error=data.get("error"),
            n_candidates=data.get("candidates"),
            n_level1=data.get("level1"),
            n_level2=data.get("level2"),
            n_unchanged=data.get("unchanged"),
            n_errors=len(data.get("errors") or []),
            bytes_read=data.get("bytes_read"),
            bytes_stored=data.get("bytes_stored"),
        )
    return pl.DataFrame(rows, schema=runs.schema, strict=False)
