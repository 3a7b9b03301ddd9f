"""Drives the writers over a plan: workspaces, metadata JSON, registry rows, logs, bundles.

Write order per loop mirrors reality: result files first, then the JSON an offline backfill
writes, then the registry rows that describe those files (so sizes and mtimes agree), then the
V1 loop's own JSON (which lists the artifacts), and deletions only after registration.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypedDict

from workbench.rdagent.installation import LOG_RELPATH, REGISTRY_RELPATH
from workbench.sample import metadata as meta
from workbench.sample import registry_rows
from workbench.sample.logs import LogWriter
from workbench.sample.plan import JsonObject, Knobs, LoopPlan, RunPlan, SamplePlan
from workbench.sample.registry import RegistryRows, Row
from workbench.sample.registry_rows import DuplicateWorkspace
from workbench.sample.templates import ALPHA158_SUBSET, FACTOR_ENTRY_ALPHA158, SELF_CHECK_PY
from workbench.sample.workspaces import (
    Disk,
    WorkspaceWriter,
    WrittenWorkspace,
    iso,
    registry_path,
    workspace_registry_path,
)

SOURCE_DATA_TIME = datetime(2025, 12, 20, 8, 0, tzinfo=UTC)
BUNDLE_ROOT = "RDagentDB/production_bundles"


class LogDir(TypedDict):
    """One `log/<run>` folder: the task runs it holds and the registry's path to it."""

    log_dir: str
    task_run_ids: list[str]
    status: str | None
    has_abort_reason: bool
    registry_log_trace_path: str | None


class BrokenFile(TypedDict):
    """A file damaged on purpose (`kind`: truncated_json, non_utf8, truncated_pickle)."""

    path: str
    kind: str
    workspace_id: str
    loop_key: str


class Bundle(TypedDict):
    """A solidified bundle folder and the loop it was made from."""

    asset_bundle_id: str
    loop_key: str
    bundle_dir: str
    workspace_id: str


class OrphanFactorRow(TypedDict):
    """A `factor_registry` row whose bundle no longer exists."""

    factor_name: str
    asset_bundle_id: str


@dataclass
class LoopRecord:
    """What the manifest needs to know about one planned loop after writing."""

    run: RunPlan
    loop: LoopPlan
    written: WrittenWorkspace | None
    subs: list[WrittenWorkspace]
    factor_meta_variant: str | None = None

    def experiment(self) -> WrittenWorkspace:
        """The written experiment workspace; JSON and artifacts are only asked of loops with one."""
        if self.written is None:
            raise ValueError(f"loop {self.loop.key} wrote no experiment workspace")
        return self.written


@dataclass
class BuildState:
    """Everything collected while writing; the manifest is computed from it afterwards."""

    rows: RegistryRows = field(default_factory=RegistryRows)
    records: list[LoopRecord] = field(default_factory=list)
    log_dirs: list[LogDir] = field(default_factory=list)
    nan_json_files: list[str] = field(default_factory=list)
    broken_files: list[BrokenFile] = field(default_factory=list)
    duplicates: list[DuplicateWorkspace] = field(default_factory=list)
    bundles: list[Bundle] = field(default_factory=list)
    orphan_factor_rows: list[OrphanFactorRow] = field(default_factory=list)
    deletions: list[str] = field(default_factory=list)
    perf_by_loop: dict[str, JsonObject] = field(default_factory=dict)  # factor_perf.json by loop key
    factor_names_by_loop: dict[str, list[JsonObject]] = field(default_factory=dict)  # factor_meta entries
    orphan_record: LoopRecord | None = None

    def merge(self, other: BuildState) -> None:
        """Append another state's collections (one run built elsewhere), keeping run order."""
        for table, table_rows in other.rows.tables().items():
            self.rows.tables()[table].extend(table_rows)
        for name in ("records", "log_dirs", "nan_json_files", "broken_files", "bundles", "deletions"):
            getattr(self, name).extend(getattr(other, name))
        self.perf_by_loop.update(other.perf_by_loop)
        self.factor_names_by_loop.update(other.factor_names_by_loop)


_WORKER: InstallationBuilder | None = None


def _init_worker(out: Path, plan: SamplePlan, knobs: Knobs) -> None:
    """Process-pool initializer: each worker owns its writers (caches are per process)."""
    global _WORKER
    _WORKER = InstallationBuilder.create(out, plan, knobs)


def _build_run_in_worker(index: int) -> BuildState:
    assert _WORKER is not None
    return _WORKER.build_run(index)


class InstallationBuilder:
    """Writes one planned installation under `out` and collects the registry rows."""

    def __init__(self, out: Path, plan: SamplePlan, writer: WorkspaceWriter, logs: LogWriter) -> None:
        self.out = out
        self.plan = plan
        self.writer = writer
        self.logs = logs
        self.state = BuildState()

    @classmethod
    def create(cls, out: Path, plan: SamplePlan, knobs: Knobs) -> InstallationBuilder:
        disk = Disk(out)
        return cls(
            out, plan, WorkspaceWriter(disk, seed=plan.seed, knobs=knobs), LogWriter(disk, seed=plan.seed)
        )

    # -- runs ----------------------------------------------------------------------------
    def build(self, *, knobs: Knobs, workers: int) -> BuildState:
        """Write everything; runs go to `workers` processes, merged back in plan order.

        Every file is a function of the plan alone, so the result does not depend on `workers`.
        """
        self.writer.write_source_data(SOURCE_DATA_TIME)
        indexes = range(len(self.plan.runs))
        if workers <= 1 or len(self.plan.runs) <= 1:
            states = [self.build_run(index) for index in indexes]
        else:
            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(
                max_workers=workers,
                mp_context=context,
                initializer=_init_worker,
                initargs=(self.out, self.plan, knobs),
            ) as pool:
                states = list(pool.map(_build_run_in_worker, indexes))
        self.state = BuildState()
        for state in states:
            self.state.merge(state)
        if self.plan.orphan_loop is not None:
            self._add_orphan(self.plan.orphan_loop)
        if self.plan.duplicate_of is not None:
            self._add_duplicate(self.plan.duplicate_of)
        self._add_orphan_factor_rows()
        self._write_catalog()
        return self.state

    def build_run(self, index: int) -> BuildState:
        """Write one run (workspaces, JSON, logs) into a fresh state and return that state."""
        self.state = BuildState()
        self._add_run(self.plan.runs[index])
        return self.state

    def _add_run(self, run: RunPlan) -> None:
        results: dict[int, dict[str, float] | None] = {}
        loop_rows = []
        for loop in run.loops:
            record = self._write_loop(run, loop)
            self.state.records.append(record)
            results[loop.loop_id] = record.written.metrics if record.written is not None else None
            loop_rows.append(self._register_loop(record))
        task_row = registry_rows.task_run_row(run)
        if task_row is not None:
            self.state.rows.task_runs.append(task_row)
        self.state.rows.loops.extend(loop_rows)
        rel = self.logs.write_run(run, results)
        self.state.log_dirs.append(
            {
                "log_dir": rel,
                "task_run_ids": [run.task_run_id],
                "status": run.status,
                "has_abort_reason": run.abort is not None,
                "registry_log_trace_path": registry_rows.log_trace_path(run)
                if run.status is not None
                else None,
            }
        )

    def _write_loop(self, run: RunPlan, loop: LoopPlan) -> LoopRecord:
        subs = [self.writer.write_sub_workspace(loop, sub) for sub in loop.subs]
        written = None
        if loop.experiment is not None:
            written = self.writer.write_experiment(run, loop, loop.experiment, sha=run.generation == "v1")
            if not loop.experiment.exists:
                self.state.deletions.append(written.rel_dir)
        record = LoopRecord(run, loop, written, subs)
        if written is not None and loop.broken.get("ret.pkl") and "ret.pkl" in written.files:
            self.state.broken_files.append(
                {
                    "path": f"{written.rel_dir}/ret.pkl",
                    "kind": loop.broken["ret.pkl"],
                    "workspace_id": written.plan.dir_id,
                    "loop_key": loop.key,
                }
            )
        if written is not None and written.plan.results == "full":
            if run.backfill_time is not None and run.generation == "head":
                self._write_backfill_json(record, run.backfill_time)
            elif run.generation == "gap":
                self._write_gap_json(record)
        for name in loop.delete_after_register:
            if written is not None and name in written.files:
                self.state.deletions.append(f"{written.rel_dir}/{name}")
        return record

    def _register_loop(self, record: LoopRecord) -> Row:
        """Loop, workspace and artifact rows; V1 JSON (which lists the artifacts) in between."""
        run, loop, written = record.run, record.loop, record.written
        row = registry_rows.loop_row(run, loop, written)
        if written is not None and written.plan.results == "full" and loop.status == "success":
            self._register_results(record, row)
        self.state.rows.workspaces.extend(registry_rows.workspace_rows(run, loop, written, record.subs))
        return row

    def _register_results(self, record: LoopRecord, row: Row) -> None:
        run, loop, written = record.run, record.loop, record.experiment()
        mlruns_size = registry_rows.directory_size(str(self.out / written.rel_dir / "mlruns"))
        if run.generation == "v1":
            listing = registry_rows.v1_artifacts(
                run, loop, written, mlruns_size=mlruns_size, rows=self.state.rows, seed=self.plan.seed
            )
            self._write_v1_json(record, listing)
        elif run.backfill_time is not None and run.generation == "head":
            registry_rows.head_artifacts(
                loop, written, backfilled=run.backfill_time, mlruns_size=mlruns_size, rows=self.state.rows
            )
            if loop.bundle_id is not None:  # the plan solidifies one backfilled HEAD factor loop
                self._solidify(record, row, bundle_id=loop.bundle_id, backfilled=run.backfill_time)

    # -- JSON metadata -------------------------------------------------------------------
    def _put_json(self, record: LoopRecord, name: str, obj: object, at: datetime) -> None:
        written = record.experiment()
        text = meta.dump_json(obj)
        broken = record.loop.broken.get(name)
        self.writer.put_json(written, name, text, at, broken=broken)
        rel = f"{written.rel_dir}/{name}"
        if broken is None and meta.has_nan_token(text):
            self.state.nan_json_files.append(rel)
        if broken is not None:
            self.state.broken_files.append(
                {
                    "path": rel,
                    "kind": broken,
                    "workspace_id": written.plan.dir_id,
                    "loop_key": record.loop.key,
                }
            )

    def _write_backfill_json(self, record: LoopRecord, backfilled: datetime) -> None:
        """HEAD backfill: factor_meta (A/+D), factor_perf, feedback, model/strategy meta, ws meta."""
        run, loop, written = record.run, record.loop, record.experiment()
        at_time = backfilled + timedelta(seconds=loop.loop_id)
        at = iso(at_time)
        ws_id = written.plan.dir_id
        ws_path = workspace_registry_path(run.path_style, ws_id)
        factor_meta, variant = meta.factor_meta_head(loop, at=at)
        record.factor_meta_variant = variant
        self._put_json(record, "factor_meta.json", factor_meta, at_time)
        names = [entry["name"] for entry in factor_meta["factors"]]
        metrics, first_metric = written.result_metrics()
        perf = meta.factor_perf_head(loop, metrics, first_metric, at=at, names=names)
        self._put_json(record, "factor_perf.json", perf, at_time)
        self.state.perf_by_loop[loop.key] = perf
        self.state.factor_names_by_loop[loop.key] = factor_meta["factors"]
        self._put_json(
            record, "feedback.json", meta.feedback(loop, at=at, log_driven=bool(loop.decision)), at_time
        )
        if loop.action == "model":
            self._put_json(record, "model_meta.json", meta.model_meta(loop, workspace_id=ws_id), at_time)
        self._put_json(
            record,
            "strategy_meta.json",
            meta.strategy_meta(workspace_id=ws_id, has_strategy_yaml=loop.action == "factor"),
            at_time,
        )
        if loop.action == "factor":
            ws_meta = meta.workspace_meta_head(loop, workspace_id=ws_id, workspace_path=ws_path, at=at)
            present = set(written.files) | {"mlruns"}
            self._put_json(record, "workspace_meta.json", ws_meta, at_time)
            self._put_json(
                record, "experiment_summary.json", meta.experiment_summary_head(ws_meta, present), at_time
            )
            self._put_json(record, "manifest.json", meta.manifest_head(ws_meta), at_time)

    def _write_gap_json(self, record: LoopRecord) -> None:
        """Gap era (online writer): factor_meta B, header-quirk factor_perf, feedback."""
        loop = record.loop
        metrics, first_metric = record.experiment().result_metrics()
        at_time = loop.ended
        at = iso(at_time)
        record.factor_meta_variant = "B"
        self._put_json(record, "factor_meta.json", meta.factor_meta_gap(loop, at=at), at_time)
        self._put_json(
            record,
            "factor_perf.json",
            meta.factor_perf_gap(loop, metrics, first_metric, at=at),
            at_time,
        )
        self._put_json(record, "feedback.json", meta.feedback(loop, at=at, log_driven=True), at_time)

    def _write_v1_json(self, record: LoopRecord, listing: list[JsonObject]) -> None:
        """Dec-24 loop JSON (lists the artifacts), then the scan tool's variant C factor_meta."""
        run, loop, written = record.run, record.loop, record.experiment()
        metrics, _first_metric = written.result_metrics()
        ws_id = written.plan.dir_id
        ws_path = workspace_registry_path(run.path_style, ws_id)
        ws_meta = meta.workspace_meta_v1(
            run,
            loop,
            workspace_id=ws_id,
            workspace_path=ws_path,
            log_trace_path=registry_rows.log_trace_path(run),
            db_path=registry_path(run.path_style, *REGISTRY_RELPATH.parts),
            at=iso(loop.ended),
            metrics=metrics,
        )
        present = set(written.files) | {"mlruns"}
        self._put_json(record, "workspace_meta.json", ws_meta, loop.ended)
        self._put_json(
            record,
            "experiment_summary.json",
            meta.experiment_summary_v1(ws_meta, present, listing, metrics),
            loop.ended,
        )
        self._put_json(record, "manifest.json", meta.manifest_v1(ws_meta, listing, metrics), loop.ended)
        if loop.action == "factor" and loop.factor_set:
            record.factor_meta_variant = "C"
            scan_time = datetime(2026, 1, 3, 9, 30, tzinfo=UTC) + timedelta(seconds=loop.loop_id)
            self._put_json(
                record, "factor_meta.json", meta.factor_meta_scan(loop, workspace_path=ws_path), scan_time
            )

    # -- bundles, factor registry, catalog -------------------------------------------------
    def _solidify(self, record: LoopRecord, row: Row, *, bundle_id: str, backfilled: datetime) -> None:
        """Variant-A bundle directory, `factor_registry` rows and the solidified loop row."""
        run, loop, written = record.run, record.loop, record.experiment()
        at = backfilled + timedelta(days=1, minutes=loop.loop_id)
        ws_id = written.plan.dir_id
        ws_path = workspace_registry_path(run.path_style, ws_id)
        registry_rows.solidify(row, bundle_id=bundle_id, at=at)
        root = f"{BUNDLE_ROOT}/{bundle_id}"
        disk = self.writer.disk
        manifest = meta.bundle_manifest(
            bundle_id=bundle_id, loop=loop, workspace_id=ws_id, workspace_path=ws_path, at=at
        )
        disk.put(f"{root}/manifest.json", meta.dump_json(manifest).encode(), at)
        disk.put(f"{root}/self_check.py", SELF_CHECK_PY, at)
        for name in sorted(written.files):
            if "/" not in name and name.endswith((".yaml", ".yml")):
                disk.put(
                    f"{root}/workspaces/{ws_id}/{name}", (self.out / written.rel_dir / name).read_bytes(), at
                )
        disk.put(f"{root}/workspaces/{ws_id}/factor_entry.py", FACTOR_ENTRY_ALPHA158, at)
        disk.put(f"{root}/workspaces/{ws_id}/model.pkl", written.params_pkl or b"", at)
        perf = self.state.perf_by_loop.get(loop.key, {})
        combos = perf.get("combinations") or [{}]
        performance = meta.dump_json({"_combo_metrics": combos[0]}) if perf else "{}"
        expressions = dict(ALPHA158_SUBSET)
        for entry in self.state.factor_names_by_loop.get(loop.key, []):
            name = entry["name"]
            expression = entry.get("expression") or entry.get("formula_hint") or expressions.get(name, "")
            self.state.rows.factor_registry.append(
                {
                    "factor_name": name,
                    "expression": expression,
                    "performance_json": performance,
                    "asset_bundle_id": bundle_id,
                    "workspace_id": ws_id,
                    "task_run_id": loop.task_run_id,
                    "loop_id": loop.loop_id,
                    "updated_at_utc": iso(at),
                }
            )
        self.state.bundles.append(
            {
                "asset_bundle_id": bundle_id,
                "loop_key": loop.key,
                "bundle_dir": root,
                "workspace_id": ws_id,
            }
        )

    def _add_orphan_factor_rows(self) -> None:
        """Rows of an earlier solidification whose bundle was rejected and deleted (§2.2)."""
        if self.plan.orphan_bundle_id is None:
            return
        for row in list(self.state.rows.factor_registry)[:3]:
            earlier = datetime.fromisoformat(row["updated_at_utc"]) - timedelta(hours=6)
            orphan = {
                **row,
                "asset_bundle_id": self.plan.orphan_bundle_id,
                "performance_json": "{}",
                "updated_at_utc": iso(earlier),
            }
            self.state.rows.factor_registry.append(orphan)
            self.state.orphan_factor_rows.append(
                {"factor_name": row["factor_name"], "asset_bundle_id": self.plan.orphan_bundle_id}
            )

    def _write_catalog(self) -> None:
        generated: dict[str, tuple[str, float | None, float | None]] = {}
        for key, perf in self.state.perf_by_loop.items():
            window = perf["combinations"][0]["windows"][0]
            for entry in self.state.factor_names_by_loop.get(key, []):
                if entry.get("source") == "rdagent_generated" and not entry["name"].startswith("("):
                    generated.setdefault(
                        entry["name"], (entry["name"], window["sharpe"], window["annual_return"])
                    )
        chosen = [generated[name] for name in sorted(generated)[:10]]
        at = datetime(2026, 2, 12, 7, 0, tzinfo=UTC)
        catalog = meta.factor_catalog(chosen, at=iso(at))
        self.writer.disk.put("RDagentDB/aistock/factor_catalog.json", meta.dump_json(catalog).encode(), at)

    # -- quirk runs ----------------------------------------------------------------------
    def _add_orphan(self, loop: LoopPlan) -> None:
        """A finished experiment directory that no registry row points at."""
        run = RunPlan(
            task_run_id=loop.task_run_id,
            generation="head",
            flavor="head_live",
            role="regular",
            status=None,
            log_name="",
            started=loop.started,
            ended=loop.ended,
            path_style="wsl",
            pid=0,
        )
        experiment = loop.experiment
        assert experiment is not None  # planned as a successful factor loop, which always has one
        subs = [self.writer.write_sub_workspace(loop, sub) for sub in loop.subs]
        written = self.writer.write_experiment(run, loop, experiment, sha=False)
        self.state.orphan_record = LoopRecord(run, loop, written, subs)

    def _add_duplicate(self, run: RunPlan) -> None:
        exists = {}
        has_results = {}
        for record in self.state.records:
            if record.run.task_run_id != run.task_run_id:
                continue
            for ws in [record.written, *record.subs]:
                if ws is None:
                    continue
                exists[ws.plan.dir_id] = ws.rel_dir not in self.state.deletions
                has_results[ws.plan.dir_id] = "qlib_res.csv" in ws.files and "ret.pkl" in ws.files
        self.state.duplicates = registry_rows.duplicate_rows(
            run, run.loops, exists=exists, has_results=has_results, rows=self.state.rows
        )
        for entry in self.state.log_dirs:
            if entry["log_dir"] == (LOG_RELPATH / run.log_name).as_posix():
                entry["task_run_ids"].append(run.log_name)

    def apply_deletions(self) -> None:
        """Files and directories removed after they were registered (cleanup, manual deletion)."""
        for rel in self.state.deletions:
            path = self.out / rel
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                os.remove(path)
