"""`sample_manifest.json`: the expected sets downstream tests check their results against.

Quirk lists are computed from the registry rows and the tree as finally written (after
deletions), so every entry holds by construction; tests re-check them on disk anyway.
"""

from __future__ import annotations

import re
from pathlib import Path

from workbench.sample.builder import BuildState, LoopRecord
from workbench.sample.plan import JsonObject, LoopPlan, SamplePlan
from workbench.sample.registry import Row
from workbench.sample.workspaces import WORKSPACE_ROOT

METRIC_COLUMNS = ("ic_mean", "rank_ic_mean", "ann_return", "mdd", "turnover", "multi_score", "metrics_json")
RESULT_PAIR = ("qlib_res.csv", "ret.pkl")


def dir_id_of(workspace_path: str) -> str:
    """Last component of a registry path in any spelling (`/` or `\\`)."""
    return re.split(r"[\\/]", workspace_path.rstrip("\\/"))[-1]


class ManifestBuilder:
    """Computes the manifest from the build state and the files on disk."""

    def __init__(self, out: Path, plan: SamplePlan, state: BuildState) -> None:
        self.out = out
        self.plan = plan
        self.state = state
        self.rows = state.rows
        self.task_run_ids = {row["task_run_id"] for row in self.rows.task_runs}
        self.workspace_rows = {row["workspace_id"]: row for row in self.rows.workspaces}
        self.loop_rows = {(row["task_run_id"], row["loop_id"]): row for row in self.rows.loops}

    def rel_dir(self, dir_id: str) -> str | None:
        rel = f"{WORKSPACE_ROOT}/{dir_id}"
        return rel if (self.out / rel).is_dir() else None

    def has_results(self, rel: str | None) -> bool:
        return rel is not None and all((self.out / rel / name).is_file() for name in RESULT_PAIR)

    # -- loops ---------------------------------------------------------------------------
    def _entry(
        self, record: LoopRecord, *, task_run_id: str, workspace_id: str | None, duplicate_of: str | None
    ) -> JsonObject:
        loop = record.loop
        dir_id = loop.experiment.dir_id if loop.experiment is not None else None
        rel = self.rel_dir(dir_id) if dir_id is not None else None
        row = self.loop_rows[(task_run_id, loop.loop_id)]
        return {
            "task_run_id": task_run_id,
            "loop_id": loop.loop_id,
            "action": loop.action,
            "status": row["status"],
            "generation": loop.generation,
            "flavor": record.run.flavor,
            "run_role": record.run.role,
            "has_result": row["has_result"],
            "workspace_id": workspace_id,
            "workspace_dir": rel,
            "has_results_on_disk": self.has_results(rel),
            "duplicate_of": duplicate_of,
            "strategy": loop.strategy["name"] if loop.strategy else None,
            "quirks": sorted(set(loop.tags) | set(self._row_tags(row, rel))),
        }

    def _row_tags(self, row: Row, rel: str | None) -> list[str]:
        tags = []
        if row["task_run_id"] not in self.task_run_ids:
            tags.append("no_task_run")
        if row["status"] == "success" and not row["has_result"] and self.has_results(rel):
            tags.append("success_without_has_result")
        if row["has_result"] and all(row.get(column) is None for column in METRIC_COLUMNS):
            tags.append("has_result_without_metrics")
        return tags

    def _registered_id(self, loop: LoopPlan) -> str | None:
        """The experiment's workspace id if a `workspaces` row registers it, else None."""
        experiment = loop.experiment
        if experiment is None or experiment.dir_id not in self.workspace_rows:
            return None
        return experiment.dir_id

    def loops(self) -> list[JsonObject]:
        entries = []
        for record in self.state.records:
            entries.append(
                self._entry(
                    record,
                    task_run_id=record.loop.task_run_id,
                    workspace_id=self._registered_id(record.loop),
                    duplicate_of=None,
                )
            )
        duplicate = self.plan.duplicate_of
        if duplicate is not None:
            by_dir = {entry["dir_id"]: entry["duplicate_workspace_id"] for entry in self.state.duplicates}
            for record in self.state.records:
                if record.run.task_run_id != duplicate.task_run_id:
                    continue
                loop = record.loop
                ws_id = by_dir.get(loop.experiment.dir_id) if loop.experiment is not None else None
                entry = self._entry(
                    record, task_run_id=duplicate.log_name, workspace_id=ws_id, duplicate_of=loop.key
                )
                entry["quirks"] = sorted(set(entry["quirks"]) | {"duplicate_run"})
                entries.append(entry)
        return entries

    # -- quirks --------------------------------------------------------------------------
    def _missing_workspace_rows(self) -> list[str]:
        return sorted(
            ws_id
            for ws_id, row in self.workspace_rows.items()
            if self.rel_dir(dir_id_of(row["workspace_path"])) is None
        )

    def _unregistered_dirs(self) -> list[str]:
        registered = {dir_id_of(row["workspace_path"]) for row in self.rows.workspaces}
        root = self.out / WORKSPACE_ROOT
        return sorted(path.name for path in root.iterdir() if path.is_dir() and path.name not in registered)

    def _orphan_experiments(self) -> list[str]:
        """Experiment directories with full results that no registry row points at."""
        record = self.state.orphan_record
        if record is None or record.written is None:
            return []
        return [record.written.rel_dir] if self.has_results(record.written.rel_dir) else []

    def _present_files_missing(self) -> list[JsonObject]:
        present = {row["artifact_id"] for row in self.rows.artifacts if row["status"] == "present"}
        missing = []
        for row in self.rows.artifact_files:
            if row["artifact_id"] not in present:
                continue
            if not (self.out / WORKSPACE_ROOT / row["workspace_id"] / row["path"]).exists():
                missing.append(
                    {
                        "artifact_id": row["artifact_id"],
                        "file_id": row["file_id"],
                        "workspace_id": row["workspace_id"],
                        "path": row["path"],
                    }
                )
        return missing

    def _nan_columns(self) -> list[JsonObject]:
        found = []
        for row in self.rows.loops:
            if row.get("metrics_json") and "NaN" in row["metrics_json"]:
                found.append(
                    {
                        "table": "loops",
                        "column": "metrics_json",
                        "key": f"{row['task_run_id']}/{row['loop_id']}",
                    }
                )
        for row in self.rows.factor_registry:
            if "NaN" in (row.get("performance_json") or ""):
                found.append(
                    {
                        "table": "factor_registry",
                        "column": "performance_json",
                        "key": f"{row['factor_name']}|{row['asset_bundle_id']}",
                    }
                )
        return found

    def _duplicate_workspaces(self) -> list[JsonObject]:
        found = []
        for entry in self.state.duplicates:
            original = self.workspace_rows.get(entry["dir_id"])
            if original is None:
                continue
            found.append(
                {
                    "dir_id": entry["dir_id"],
                    "workspace_dir": self.rel_dir(entry["dir_id"]),
                    "workspace_ids": [entry["dir_id"], entry["duplicate_workspace_id"]],
                    "paths": [original["workspace_path"], entry["duplicate_path"]],
                }
            )
        return found

    def _partial_results(self) -> list[JsonObject]:
        names = ("qlib_res.csv", "ret.pkl", "ret_schema.parquet", "signals.parquet")
        found = []
        for record in self.state.records:
            experiment = record.loop.experiment
            if experiment is None or experiment.results != "partial":
                continue
            rel = self.rel_dir(experiment.dir_id)
            present = [name for name in names if rel is not None and (self.out / rel / name).exists()]
            found.append(
                {
                    "loop_key": record.loop.key,
                    "workspace_dir": rel,
                    "present": present,
                    "missing": [n for n in names if n not in present],
                }
            )
        return found

    def _factor_meta_variants(self) -> dict[str, list[str]]:
        variants: dict[str, list[str]] = {}
        for record in self.state.records:
            if record.factor_meta_variant is not None and record.written is not None:
                variants.setdefault(record.factor_meta_variant, []).append(record.written.plan.dir_id)
        return variants

    def _path_styles(self) -> dict[str, list[str]]:
        styles: dict[str, list[str]] = {}
        for run in self.plan.runs:
            styles.setdefault(run.path_style, []).append(run.task_run_id)
        if self.plan.duplicate_of is not None:
            styles.setdefault("win_lower", []).append(self.plan.duplicate_of.log_name)
        return styles

    def quirks(self, loops: list[JsonObject]) -> JsonObject:
        by_tag: dict[str, list[str]] = {}
        for entry in loops:
            for tag in entry["quirks"]:
                by_tag.setdefault(tag, []).append(f"{entry['task_run_id']}/{entry['loop_id']}")
        variants = self._factor_meta_variants()
        multiple = [
            record.written.plan.dir_id
            for record in self.state.records
            if record.loop.multiple_mlruns
            and record.written is not None
            and record.written.plan.results != "none"
        ]
        return {
            "loops_without_task_run": by_tag.get("no_task_run", []),
            "success_without_has_result": by_tag.get("success_without_has_result", []),
            "has_result_without_metrics": by_tag.get("has_result_without_metrics", []),
            "workspace_rows_missing_dir": self._missing_workspace_rows(),
            "unregistered_workspace_dirs": self._unregistered_dirs(),
            "unregistered_experiments_with_results": self._orphan_experiments(),
            "duplicate_runs": (
                [
                    {
                        "task_run_id": self.plan.duplicate_of.task_run_id,
                        "duplicate_task_run_id": self.plan.duplicate_of.log_name,
                    }
                ]
                if self.plan.duplicate_of is not None
                else []
            ),
            "duplicate_workspaces": self._duplicate_workspaces(),
            "factor_registry_orphans": list(self.state.orphan_factor_rows),
            "artifact_present_file_missing": self._present_files_missing(),
            "nan_in_json_files": sorted(self.state.nan_json_files),
            "nan_in_json_columns": self._nan_columns(),
            "running_task_runs": [
                row["task_run_id"] for row in self.rows.task_runs if row["status"] == "running"
            ],
            "aborted_task_runs": [
                row["task_run_id"] for row in self.rows.task_runs if row["status"] == "aborted"
            ],
            "running_loops": [
                f"{row['task_run_id']}/{row['loop_id']}"
                for row in self.rows.loops
                if row["status"] == "running"
            ],
            "partial_results": self._partial_results(),
            "broken_files": list(self.state.broken_files),
            "path_styles": self._path_styles(),
            "relative_log_trace_paths": [
                row["task_run_id"]
                for row in self.rows.task_runs
                if (row["log_trace_path"] or "").startswith("log/")
            ],
            "sqlite_datetime_timestamps": self._sqlite_timestamps(),
            "factor_meta_variants": variants,
            "tuple_string_factor_names": sorted(variants.get("C", []) + self._tuple_name_workspaces()),
            "mlruns_multiple_runs": multiple,
        }

    def _sqlite_timestamps(self) -> list[JsonObject]:
        """Values in SQLite `datetime('now')` format (`2026-01-07 10:11:12`, no `T`, no zone)."""
        pattern = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")
        found = []
        for row in self.rows.loops:
            for column in ("materialization_updated_at_utc", "ended_at_utc", "updated_at_utc"):
                if row.get(column) and pattern.fullmatch(row[column]):
                    found.append(
                        {"table": "loops", "column": column, "key": f"{row['task_run_id']}/{row['loop_id']}"}
                    )
        return found

    def _tuple_name_workspaces(self) -> list[str]:
        return [
            record.written.plan.dir_id
            for record in self.state.records
            if record.written is not None
            and record.factor_meta_variant == "A"
            and record.loop.action == "model"
            and record.loop.factor_set
        ]

    # -- the rest ------------------------------------------------------------------------
    def experiments_expected(self, loops: list[JsonObject]) -> list[JsonObject]:
        broken: dict[str, list[str]] = {}
        for item in self.state.broken_files:
            broken.setdefault(item["workspace_id"], []).append(item["path"].rsplit("/", 1)[-1])
        expected = []
        for entry in loops:
            if not entry["has_results_on_disk"]:
                continue
            dir_id = entry["workspace_dir"].rsplit("/", 1)[-1]
            expected.append(
                {
                    "task_run_id": entry["task_run_id"],
                    "loop_id": entry["loop_id"],
                    "action": entry["action"],
                    "workspace_id": entry["workspace_id"],
                    "workspace_dir": entry["workspace_dir"],
                    "duplicate_of": entry["duplicate_of"],
                    "broken_files": sorted(broken.get(dir_id, [])),
                }
            )
        return expected

    def multi_strategy(self) -> tuple[dict[str, JsonObject], dict[str, list[JsonObject]]]:
        requests: dict[str, JsonObject] = {}
        loops: dict[str, list[JsonObject]] = {}
        for run in self.plan.runs:
            if run.role != "multi_strategy" or run.params is None:
                continue
            requests[run.task_run_id] = run.params["experiment_request"]
            loops[run.task_run_id] = [self._strategy_loop(loop) for loop in run.loops]
        return requests, loops

    def _strategy_loop(self, loop: LoopPlan) -> JsonObject:
        strategy, experiment = loop.strategy, loop.experiment
        assert strategy is not None and experiment is not None  # planned so for every multi-strategy loop
        return {
            "strategy": strategy["name"],
            "role": strategy["role"],
            "loop_id": loop.loop_id,
            "workspace_id": experiment.dir_id,
            "workspace_dir": self.rel_dir(experiment.dir_id),
        }

    def counts(self, *, task_runs: int, loops_per_run: int) -> JsonObject:
        extra: dict[str, int] = {}
        for run in self.plan.runs:
            if run.role != "regular":
                extra[run.role] = len(run.loops)
        if self.plan.duplicate_of is not None:
            extra["bootstrap_duplicate"] = len(self.plan.duplicate_of.loops)
        return {
            "regular_task_runs": task_runs,
            "regular_loops": task_runs * loops_per_run,
            "extra_loops": extra,
            "registry_loops": len(self.rows.loops),
            "registry_task_runs": len(self.rows.task_runs),
            "registry_workspaces": len(self.rows.workspaces),
            "registry_artifacts": len(self.rows.artifacts),
            "registry_artifact_files": len(self.rows.artifact_files),
            "registry_factor_registry": len(self.rows.factor_registry),
        }
