"""Writes workspace directories of the sample installation (spec §3).

Template files come from caches (identical bytes everywhere, as in reality); result files are
built per workspace from a numpy generator seeded by (seed, workspace ordinal), so the output
does not depend on the order in which workspaces are written.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal

import numpy as np

from workbench.rdagent.installation import WORKSPACE_RELPATH
from workbench.sample import results
from workbench.sample.plan import Knobs, LoopPlan, PathStyle, RunPlan, WorkspacePlan
from workbench.sample.tables import TableWriter
from workbench.sample.templates import (
    SOURCE_DATA_README,
    Era,
    factor_code,
    factor_template_files,
    model_code,
    model_template_files,
    pycache_bytes,
)

WORKSPACE_ROOT = WORKSPACE_RELPATH.as_posix()
SOURCE_DATA_DIR = "git_ignore_folder/factor_implementation_source_data"
REGISTRY_ROOTS: dict[PathStyle, str] = {
    "wsl": "/mnt/f/Dev/RD-Agent-main",
    "win": "F:\\Dev\\RD-Agent-main",
    "win_lower": "f:\\Dev\\RD-Agent-main",
    "win_fwd": "F:/Dev/RD-Agent-main",
}
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
# A 1x1 transparent PNG: the gap-era backfill wrote ret/dd curve images; content is irrelevant.
TINY_PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
)


def registry_path(style: PathStyle, *parts: str) -> str:
    """An absolute path spelled the way a writer on that OS stored it (§2.8)."""
    separator = "/" if style in ("wsl", "win_fwd") else "\\"
    return separator.join([REGISTRY_ROOTS[style], *parts])


def workspace_registry_path(style: PathStyle, dir_id: str) -> str:
    return registry_path(style, *WORKSPACE_RELPATH.parts, dir_id)


def iso(moment: datetime) -> str:
    return moment.isoformat()


@dataclass
class FileRecord:
    """What a registry writer would have seen for one file."""

    size: int
    mtime: datetime
    sha256: str | None = None


@dataclass
class WrittenWorkspace:
    """A workspace as written: its files (relative, `/`-separated) and result values."""

    plan: WorkspacePlan
    rel_dir: str
    files: dict[str, FileRecord] = field(default_factory=dict)
    metrics: dict[str, float] | None = None
    first_metric: str | None = None
    mlruns_pickles: list[str] = field(default_factory=list)
    params_pkl: bytes | None = None

    def result_metrics(self) -> tuple[dict[str, float], str]:
        """`metrics` and `first_metric`; only asked of a workspace that wrote `qlib_res.csv`."""
        if self.metrics is None or self.first_metric is None:
            raise ValueError(f"{self.rel_dir}: no qlib_res.csv was written")
        return self.metrics, self.first_metric


class Disk:
    """Writes bytes under `out` with fixed mtimes, creating each directory once."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self._dirs: set[str] = set()

    def ensure_dir(self, rel_dir: str) -> None:
        if rel_dir not in self._dirs:
            os.makedirs(self.out / rel_dir, exist_ok=True)
            self._dirs.add(rel_dir)

    def put(self, rel: str, payload: bytes, mtime: datetime) -> int:
        self.ensure_dir(rel.rpartition("/")[0])
        path = self.out / rel
        with open(path, "wb") as handle:
            handle.write(payload)
        stamp = int(mtime.timestamp() * 1_000_000) * 1000
        os.utime(path, ns=(stamp, stamp))
        return len(payload)


class WorkspaceWriter:
    """Everything shared between workspaces of one installation, plus the write methods."""

    def __init__(self, disk: Disk, *, seed: int, knobs: Knobs) -> None:
        self.disk = disk
        self.seed = seed
        self.knobs = knobs
        self.days = results.trading_days(knobs.trading_days)
        self.instruments = results.instrument_codes(knobs.instruments)
        self.bench = results.benchmark_returns(seed, knobs.trading_days)
        self.tables = TableWriter(
            seed=seed,
            days=self.days,
            instruments=self.instruments,
            topk=min(knobs.signals_topk, knobs.instruments),
        )
        self._templates: dict[tuple[str, str], dict[str, bytes]] = {}
        self._combined: dict[tuple[str, ...], bytes] = {}
        self._code_diff: dict[str, bytes] = {}
        self.source_files = [f"{SOURCE_DATA_DIR}/daily_pv.h5", f"{SOURCE_DATA_DIR}/README.md"]
        pred_days = max(1, knobs.heavy_bytes // (10 * max(1, knobs.instruments)))
        self.pred_index = results.pred_index(self.days, self.instruments, rows=pred_days)

    # -- shared pieces -------------------------------------------------------------------
    def templates(self, kind: Literal["factor", "model"], era: Era) -> dict[str, bytes]:
        key = (kind, era)
        if key not in self._templates:
            builder = factor_template_files if kind == "factor" else model_template_files
            self._templates[key] = builder(era)
        return self._templates[key]

    def combined_parquet(self, names: tuple[str, ...]) -> bytes:
        """Cached per factor set: the same factors give the same file, as a SOTA set does."""
        if names not in self._combined:
            per_day = 8 * len(names) * max(1, self.knobs.instruments)
            count = max(1, min(len(self.days), self.knobs.heavy_bytes // max(1, per_day)))
            self._combined[names] = self.tables.combined_parquet(names, days=count)
        return self._combined[names]

    def code_diff(self, run: RunPlan) -> bytes:
        """`git diff` of the RD-Agent repo at run time: one text per run, ~heavy_bytes."""
        if run.task_run_id not in self._code_diff:
            block = (
                "diff --git a/rdagent/scenarios/qlib/experiment/factor_template/conf_baseline.yaml "
                "b/rdagent/scenarios/qlib/experiment/factor_template/conf_baseline.yaml\n"
                f"index {run.task_run_id[:7]}..{run.task_run_id[7:14]} 100644\n"
                "--- a/conf_baseline.yaml\n+++ b/conf_baseline.yaml\n@@ -1,4 +1,4 @@\n"
                "-            topk: 30\n+            topk: 50\n"
            )
            repeats = max(1, self.knobs.heavy_bytes // len(block))
            self._code_diff[run.task_run_id] = (block * repeats).encode()
        return self._code_diff[run.task_run_id]

    def write_source_data(self, at: datetime) -> None:
        """`factor_implementation_source_data[_debug]/`, the files sub-workspaces hard-link."""
        rng = np.random.default_rng([self.seed, 7_000_001])
        # h5py/pytables are not installed: the HDF5 files are opaque bytes behind the HDF5 signature.
        pv = results.opaque_bytes(rng, self.knobs.heavy_bytes, prefix=HDF5_SIGNATURE)
        for folder, payload in (
            (SOURCE_DATA_DIR, pv),
            (SOURCE_DATA_DIR + "_debug", pv[: max(16, len(pv) // 8)]),
        ):
            self.disk.put(f"{folder}/daily_pv.h5", payload, at)
            self.disk.put(f"{folder}/README.md", SOURCE_DATA_README, at)

    # -- sub-workspaces ------------------------------------------------------------------
    def write_sub_workspace(self, loop: LoopPlan, ws: WorkspacePlan) -> WrittenWorkspace:
        """Factor sub-workspace (`factor.py`, `result.h5`, hard links) or model sub-workspace."""
        rel_dir = f"{WORKSPACE_ROOT}/{ws.dir_id}"
        written = WrittenWorkspace(ws, rel_dir)
        at = loop.step_times[min(1, len(loop.step_times) - 1)][2]
        if ws.kind == "model_sub":
            self._record(
                written,
                "model.py",
                model_code(
                    hidden=loop.model_shape[0], layers=loop.model_shape[1], dropout=loop.model_shape[2]
                ),
                at,
            )
            return written
        name = ws.factor_name or "factor"
        self._record(written, "factor.py", factor_code(name, window=ws.factor_window, variant=ws.ordinal), at)
        self._record(written, "execution.lock", b"", at)
        if ws.results == "full":
            rng = np.random.default_rng([self.seed, ws.ordinal, 1])
            # Real result.h5 is HDF5 (pandas key "data"); without h5py we write opaque bytes.
            self._record(
                written,
                "result.h5",
                results.opaque_bytes(rng, self.knobs.heavy_bytes, prefix=HDF5_SIGNATURE),
                at,
            )
        for source in self.source_files:
            target = f"{rel_dir}/{source.rpartition('/')[2]}"
            os.link(self.disk.out / source, self.disk.out / target)
        return written

    def _record(
        self, written: WrittenWorkspace, rel: str, payload: bytes, at: datetime, *, sha: bool = False
    ) -> None:
        size = self.disk.put(f"{written.rel_dir}/{rel}", payload, at)
        digest = hashlib.sha256(payload).hexdigest() if sha else None
        written.files[rel] = FileRecord(size, at, digest)

    # -- experiment workspaces -----------------------------------------------------------
    def write_experiment(
        self, run: RunPlan, loop: LoopPlan, ws: WorkspacePlan, *, sha: bool
    ) -> WrittenWorkspace:
        """Templates, injected code, `mlruns/`, result files (§3.2/§3.3) of one experiment."""
        rel_dir = f"{WORKSPACE_ROOT}/{ws.dir_id}"
        written = WrittenWorkspace(ws, rel_dir)
        created = loop.step_times[0][1]
        for name, payload in self.templates(loop.action, loop.generation).items():
            self._record(written, name, payload, created, sha=sha)
        coded = loop.step_times[min(1, len(loop.step_times) - 1)][2]
        if loop.action == "model":
            shape = loop.model_shape
            self._record(
                written,
                "model.py",
                model_code(hidden=shape[0], layers=shape[1], dropout=shape[2]),
                coded,
                sha=sha,
            )
        elif loop.sota_model:
            self._record(written, "model.py", model_code(hidden=64, layers=2, dropout=0.1), coded, sha=sha)
        started_running = loop.step_times[min(2, len(loop.step_times) - 1)][1]
        if loop.factor_set and (ws.results != "none" or loop.status == "running"):
            self._record(
                written,
                "combined_factors_df.parquet",
                self.combined_parquet(loop.factor_set),
                started_running,
                sha=sha,
            )
        if ws.results == "none":
            return written
        finished = loop.step_times[2][2]
        self._write_results(run, loop, written, started_running, finished, sha=sha)
        if run.generation == "gap":
            self._record(written, "ret_curve.png", TINY_PNG, finished)
            self._record(written, "dd_curve.png", TINY_PNG, finished)
        return written

    def _write_results(
        self,
        run: RunPlan,
        loop: LoopPlan,
        written: WrittenWorkspace,
        started: datetime,
        finished: datetime,
        *,
        sha: bool,
    ) -> None:
        rng = np.random.default_rng([self.seed, written.plan.ordinal])
        ret = results.build_ret_frame(rng, days=self.days, bench=self.bench, alpha=loop.alpha)
        metrics = results.qlib_metrics(rng, ret, action=loop.action, nan_metric=loop.nan_metric)
        order = [int(i) for i in rng.permutation(len(metrics))]
        written.metrics = metrics
        written.first_metric = list(metrics)[order[0]]
        scores = rng.normal(0.0, 0.02, (len(self.days), len(self.instruments)))
        ret_pickle = results.frame_pickle(ret)
        pyc = "model" if loop.action == "model" else "custom_strategy"
        self._record(written, f"__pycache__/{pyc}.cpython-311.pyc", pycache_bytes(pyc), started)
        self._write_mlruns(run, loop, written, rng, metrics, scores, ret_pickle, started, finished, sha=sha)
        self._record(written, "qlib_res.csv", results.qlib_res_csv(metrics, order), finished, sha=sha)
        if written.plan.results == "partial":
            return
        payload = ret_pickle
        if loop.broken.get("ret.pkl") == "truncated_pickle":
            payload = ret_pickle[: len(ret_pickle) // 2]
        self._record(written, "ret.pkl", payload, finished, sha=sha)
        schema_parquet, schema_json = self.tables.ret_schema_files(ret)
        self._record(written, "ret_schema.parquet", schema_parquet, finished)
        self._record(written, "ret_schema.json", schema_json, finished)
        n_drop = 5 if loop.action == "factor" else 0
        signals_parquet, signals_json = self.tables.signals_files(
            scores, n_drop=n_drop, generated_at=iso(finished)
        )
        self._record(written, "signals.parquet", signals_parquet, finished)
        self._record(written, "signals.json", signals_json, finished)

    def _write_mlruns(
        self,
        run: RunPlan,
        loop: LoopPlan,
        written: WrittenWorkspace,
        rng: np.random.Generator,
        metrics: dict[str, float],
        scores: np.ndarray,
        ret_pickle: bytes,
        started: datetime,
        finished: datetime,
        *,
        sha: bool,
    ) -> None:
        """MLflow file store: one complete run, plus an earlier failed one for some model loops."""
        exp_id = str(int(rng.integers(10**17, 10**18)))
        ws_path = workspace_registry_path("wsl", written.plan.dir_id)
        exp_meta = (
            f"artifact_location: file://{ws_path}/mlruns/{exp_id}\n"
            f"creation_time: {int(started.timestamp() * 1000)}\n"
            f"experiment_id: '{exp_id}'\n"
            f"last_update_time: {int(started.timestamp() * 1000)}\n"
            "lifecycle_stage: active\nname: workflow\n"
        )
        self._record(written, f"mlruns/{exp_id}/meta.yaml", exp_meta.encode(), started)
        self.disk.ensure_dir(f"{written.rel_dir}/mlruns/.trash")
        if loop.multiple_mlruns:
            failed_run = rng.bytes(16).hex()
            self._mlflow_run_meta(
                written, exp_id, failed_run, started, started + timedelta(minutes=1), status=4
            )
            self._record(
                written, f"mlruns/{exp_id}/{failed_run}/artifacts/code_diff.txt", self.code_diff(run), started
            )
        run_id = rng.bytes(16).hex()
        base = f"mlruns/{exp_id}/{run_id}"
        self._mlflow_run_meta(written, exp_id, run_id, started, finished, status=3)
        stamp = int(finished.timestamp() * 1000)
        for name, value in metrics.items():
            self._record(
                written, f"{base}/metrics/{name}", f"{stamp} {float(value)!r} 0\n".encode(), finished
            )
        model_class = "LGBModel" if loop.action == "factor" else "GeneralPTNN"
        self._record(written, f"{base}/params/model.class", model_class.encode(), started)
        self._record(
            written, f"{base}/params/dataset.kwargs.segments.test", b"['2024-07-01', '2025-12-31']", started
        )
        self._record(written, f"{base}/tags/mlflow.runName", b"mlflow_recorder", started)
        params_pkl = results.small_pickle({"model_class": model_class, "weights": rng.bytes(1024)})
        written.params_pkl = params_pkl
        pickles = {
            f"{base}/artifacts/params.pkl": params_pkl,
            f"{base}/artifacts/pred.pkl": results.pred_pickle(scores, self.pred_index),
            f"{base}/artifacts/portfolio_analysis/report_normal_1day.pkl": ret_pickle,
        }
        for rel, payload in pickles.items():
            self._record(written, rel, payload, finished, sha=sha)
            written.mlruns_pickles.append(rel)
        self._record(written, f"{base}/artifacts/code_diff.txt", self.code_diff(run), started)
        self._record(
            written, f"{base}/artifacts/code_status.txt", b" M rdagent/app/qlib_rd_loop/quant.py\n", started
        )

    def _mlflow_run_meta(
        self,
        written: WrittenWorkspace,
        exp_id: str,
        run_id: str,
        started: datetime,
        finished: datetime,
        *,
        status: int,
    ) -> None:
        ws_path = workspace_registry_path("wsl", written.plan.dir_id)
        text = (
            f"artifact_uri: file://{ws_path}/mlruns/{exp_id}/{run_id}/artifacts\n"
            f"end_time: {int(finished.timestamp() * 1000)}\n"
            "entry_point_name: ''\n"
            f"experiment_id: '{exp_id}'\n"
            "lifecycle_stage: active\n"
            f"run_id: {run_id}\n"
            "run_name: mlflow_recorder\n"
            f"run_uuid: {run_id}\n"
            "source_name: ''\nsource_type: 4\nsource_version: ''\n"
            f"start_time: {int(started.timestamp() * 1000)}\n"
            f"status: {status}\n"
            "tags: []\nuser_id: root\n"
        )
        self._record(written, f"mlruns/{exp_id}/{run_id}/meta.yaml", text.encode(), started)

    def put_json(
        self, written: WrittenWorkspace, name: str, text: str, at: datetime, *, broken: str | None = None
    ) -> None:
        """Write one metadata JSON, applying the broken-file quirk assigned to it, if any."""
        payload = text.encode("utf-8")
        if broken == "truncated_json":
            payload = payload[: max(1, len(payload) // 2)]
        elif broken == "non_utf8":
            payload = text.encode("gbk", errors="replace")
        self._record(written, name, payload, at)
