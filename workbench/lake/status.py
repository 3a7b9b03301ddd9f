"""What a lake holds: its tables' versions and sizes, experiments by level and by task run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from workbench.archive.db import fetch_frame
from workbench.lake.read import lake_connection, lake_version, scan_table
from workbench.lake.storage import lake_root
from workbench.lake.tables import LAKE_TABLES

__all__ = ["LakeStatus", "lake_status"]


@dataclass(frozen=True)
class LakeStatus:
    """Frames like `archive_status`'s, read from the lake (no storage figures: those are the archives')."""

    lake: str
    tables: pl.DataFrame
    by_level: pl.DataFrame
    by_task_run: pl.DataFrame
    errors: pl.DataFrame

    def to_dict(self) -> dict[str, Any]:
        return {
            "lake": self.lake,
            "tables": self.tables.to_dicts(),
            "by_level": self.by_level.to_dicts(),
            "by_task_run": self.by_task_run.to_dicts(),
            "errors": self.errors.to_dicts(),
        }

    def format(self) -> str:
        lines = [f"lake {self.lake}:"]
        lines += [
            f"  {r['table']}: version {r['version']}, {r['rows']:,} rows"
            for r in self.tables.iter_rows(named=True)
        ]
        lines.append("experiments by level:")
        lines += [
            f"  level {r['archiving_level']}: {r['experiments']}" for r in self.by_level.iter_rows(named=True)
        ]
        lines.append("by task run:")
        lines += [
            f"  {r['task_run_id']}: {r['experiments']} experiments, level 2: {r['level2']}, level 1: {r['level1']}"
            for r in self.by_task_run.iter_rows(named=True)
        ]
        if self.errors.height:
            lines.append(f"open errors ({self.errors.height}):")
            lines += [
                f"  {r['task_run_id']}/{r['loop_id']} [{r['state']}]: {r['last_error']}"
                for r in self.errors.head(20).iter_rows(named=True)
            ]
        return "\n".join(lines)


def lake_status(lake: str | Path) -> LakeStatus:
    """Summarise the lake at ``lake`` (``workbench status --lake URI``)."""
    root = lake_root(lake)
    tables = pl.DataFrame(
        [
            {
                "table": t.name,
                "version": lake_version(root, t.name),
                "rows": int(scan_table(root, t.name).select(pl.len()).collect().item()),
            }
            for t in LAKE_TABLES
        ],
        schema={"table": pl.String, "version": pl.Int64, "rows": pl.Int64},
    )
    with lake_connection(root, tables=["aistock_experiments", "aistock_loops"]) as con:
        by_level = fetch_frame(
            con,
            "SELECT archiving_level, count(*) AS experiments FROM aistock_experiments "
            "GROUP BY archiving_level ORDER BY archiving_level",
        )
        by_task_run = fetch_frame(
            con,
            "SELECT task_run_id, count(*) AS experiments, count(*) FILTER (archiving_level = 2) AS level2, "
            "count(*) FILTER (archiving_level = 1) AS level1 FROM aistock_experiments "
            "GROUP BY task_run_id ORDER BY task_run_id",
        )
        errors = fetch_frame(
            con,
            "SELECT task_run_id, loop_id, experiment_id, state, last_error, updated_at FROM wb_loop_state "
            "WHERE state = 'failed' ORDER BY updated_at DESC",
        )
    return LakeStatus(root, tables, by_level, by_task_run, errors)
