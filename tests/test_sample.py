"""The sample installation generator: determinism, spec shapes, and every listed quirk."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import sqlite3
import uuid
from contextlib import closing
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from workbench.errors import ConfigError
from workbench.rdagent.files.qlib_res import NAMED_METRICS
from workbench.rdagent.files.returns import RETURN_COLUMNS
from workbench.sample import results
from workbench.sample.generate import SampleInfo, generate_sample, main, read_manifest
from workbench.sample.plan import STEPS
from workbench.sample.registry import (
    ARTIFACTS_HEAD_COLUMNS,
    ARTIFACTS_V1_COLUMNS,
    LOOPS_HEAD_COLUMNS,
    LOOPS_MIGRATED_COLUMNS,
    LOOPS_V1_COLUMNS,
    WORKSPACES_COLUMNS,
)
from workbench.sample.tables import TableWriter

WS_ROOT = "git_ignore_folder/RD-Agent_workspace"
SOURCE = "git_ignore_folder/factor_implementation_source_data"
METRIC_COLUMNS = ("ic_mean", "rank_ic_mean", "ann_return", "mdd", "turnover", "multi_score", "metrics_json")


# -- helpers ------------------------------------------------------------------------------
def tree_digest(root: Path) -> dict[str, str]:
    return {
        path.relative_to(root).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file() and not path.name.endswith(("-wal", "-shm"))  # created by readers, not by us
    }


def connect(root: Path) -> sqlite3.Connection:
    connection = sqlite3.connect(f"file:{root / 'RDagentDB/registry.sqlite'}?mode=ro", uri=True)
    connection.row_factory = sqlite3.Row
    return connection


def rows(root: Path, table: str) -> list[dict]:
    with closing(connect(root)) as connection:
        return [dict(row) for row in connection.execute(f"SELECT * FROM {table} ORDER BY rowid")]


def columns(root: Path, table: str) -> list[str]:
    with closing(connect(root)) as connection:
        return [row[1] for row in connection.execute(f"PRAGMA table_info({table})")]


def dir_name(path: str) -> str:
    return re.split(r"[\\/]", path)[-1]


def key(row: dict) -> str:
    return f"{row['task_run_id']}/{row['loop_id']}"


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SampleInfo]:
    root = tmp_path_factory.mktemp("sample") / "rdagent"
    return root, generate_sample(root, seed=7)


# -- determinism --------------------------------------------------------------------------
def test_same_seed_gives_byte_identical_tree_and_registry(
    tmp_path: Path, sample: tuple[Path, SampleInfo]
) -> None:
    first, info = sample
    second = tmp_path / "again"
    again = generate_sample(second, seed=7)
    assert not (second / "RDagentDB/registry.sqlite-wal").exists()  # closed cleanly, WAL kept in the header
    assert tree_digest(first) == tree_digest(second)
    for table in ("task_runs", "loops", "workspaces", "artifacts", "artifact_files", "factor_registry"):
        assert rows(first, table) == rows(second, table), table
    assert again.to_dict() == info.to_dict()


def test_different_seed_gives_different_ids(tmp_path: Path, sample: tuple[Path, SampleInfo]) -> None:
    _, info = sample
    other = generate_sample(tmp_path / "other", seed=8, loops_per_run=2, trading_days=10, heavy_bytes=1024)
    assert set(info.loop_keys()).isdisjoint(other.loop_keys())


def test_parallel_workers_write_the_same_tree(tmp_path: Path) -> None:
    knobs = {"seed": 11, "task_runs": 2, "loops_per_run": 2, "trading_days": 10, "heavy_bytes": 1024}
    one = generate_sample(tmp_path / "one", workers=1, **knobs)
    two = generate_sample(tmp_path / "two", workers=2, **knobs)
    assert tree_digest(tmp_path / "one") == tree_digest(tmp_path / "two")
    assert one.to_dict() == two.to_dict()
    with pytest.raises(ConfigError, match="workers"):
        generate_sample(tmp_path / "three", workers=0)


def test_manifest_file_equals_returned_info(sample: tuple[Path, SampleInfo]) -> None:
    root, info = sample
    assert read_manifest(root) == json.loads(json.dumps(info.to_dict()))
    assert info.knobs["task_runs"] == 3 and info.seed == 7


def test_output_directory_must_be_new_or_empty(tmp_path: Path) -> None:
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "x.txt").write_text("x")
    with pytest.raises(ConfigError, match="not empty"):
        generate_sample(busy)
    with pytest.raises(ConfigError, match="not a directory"):
        generate_sample(busy / "x.txt")
    with pytest.raises(ConfigError, match="loops_per_run"):
        generate_sample(tmp_path / "bad", loops_per_run=0)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert generate_sample(empty, task_runs=1, loops_per_run=1, quirks=False, multi_strategy=False).loops


# -- registry -------------------------------------------------------------------------------
def test_registry_is_wal_with_head_schema(sample: tuple[Path, SampleInfo]) -> None:
    root, _ = sample
    with closing(connect(root)) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        indexes = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    assert columns(root, "loops") == list(LOOPS_HEAD_COLUMNS)
    assert columns(root, "artifacts") == list(ARTIFACTS_HEAD_COLUMNS)
    assert columns(root, "workspaces") == list(WORKSPACES_COLUMNS)
    assert len(columns(root, "artifacts")) == 17 and len(columns(root, "artifact_files")) == 8
    assert columns(root, "factor_registry")[:2] == ["factor_name", "expression"]
    assert {
        "idx_workspaces_task_loop",
        "idx_workspaces_role",
        "idx_artifacts_task_loop",
        "idx_artifacts_workspace",
        "idx_artifact_files_artifact",
    } <= indexes


def test_v1_migrated_registry_has_appended_columns_and_no_log_dir(tmp_path: Path) -> None:
    root = tmp_path / "v1"
    generate_sample(root, seed=3, registry_generation="v1_migrated", trading_days=10, heavy_bytes=1024)
    loops = columns(root, "loops")
    assert loops == list(LOOPS_V1_COLUMNS) + list(LOOPS_MIGRATED_COLUMNS)
    assert "log_dir" not in loops
    assert columns(root, "artifacts") == list(ARTIFACTS_V1_COLUMNS)
    assert "model_type" not in columns(root, "artifacts")
    assert columns(root, "factor_registry")
    with closing(connect(root)) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert (
            connection.execute("SELECT count(*) FROM loops WHERE sync_status = 'pending'").fetchone()[0] > 0
        )


def test_generations_write_their_own_row_shapes(sample: tuple[Path, SampleInfo]) -> None:
    root, info = sample
    generation = {entry["task_run_id"]: entry["generation"] for entry in info.loops}
    flavor = {entry["task_run_id"]: entry["flavor"] for entry in info.loops}
    loops = rows(root, "loops")
    v1 = [row for row in loops if generation[row["task_run_id"]] == "v1" and row["has_result"]]
    assert v1 and all(row["ic_mean"] is not None and row["best_workspace_id"] for row in v1)
    assert any("NaN" in row["metrics_json"] for row in v1)
    live = [row for row in loops if flavor[row["task_run_id"]] == "head_live" and row["status"] == "success"]
    assert live and all(row["has_result"] == 0 and row["ic_mean"] is None for row in live)
    assert all(row["log_dir"].endswith("log") for row in live)
    workspaces = rows(root, "workspaces")
    assert {row["workspace_role"] for row in workspaces} == {"experiment_workspace", "sub_workspace"}
    v1_experiments = [
        row
        for row in workspaces
        if generation.get(row["task_run_id"]) == "v1" and row["workspace_role"] == "experiment_workspace"
    ]
    assert v1_experiments and all(row["meta_path"] == "workspace_meta.json" for row in v1_experiments)
    for row in workspaces:
        folder = root / WS_ROOT / dir_name(row["workspace_path"])
        if row["meta_path"] and folder.exists():
            meta = json.loads((folder / row["meta_path"]).read_text(encoding="utf-8"))
            assert meta["workspace_id"] == row["workspace_id"] and meta["loop_id"] == row["loop_id"]
    for row in loops + rows(root, "task_runs"):
        for column in ("started_at_utc", "created_at_utc"):
            if row.get(column):
                assert row[column].endswith("+00:00")


def test_artifact_ids_and_hashes_follow_generation(sample: tuple[Path, SampleInfo]) -> None:
    root, _ = sample
    artifacts = {row["artifact_id"]: row for row in rows(root, "artifacts")}
    ns = uuid.UUID("3e36bb8a-2a9b-4c56-8f50-6312f0d89c42")
    v1_files = head_files = 0
    for file_row in rows(root, "artifact_files"):
        artifact = artifacts[file_row["artifact_id"]]
        version = uuid.UUID(artifact["artifact_id"]).version
        path = root / WS_ROOT / file_row["workspace_id"] / file_row["path"]
        if artifact["version"] == "v1":
            head_files += 1
            assert version == 5 and file_row["sha256"] is None
            expected = uuid.uuid5(
                ns,
                f"{artifact['task_run_id']}|{artifact['workspace_id']}|{artifact['artifact_type']}|{artifact['name']}",
            )
            assert artifact["artifact_id"] == expected.hex
        else:
            v1_files += 1
            assert version == 4
            if path.is_file():
                assert file_row["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        if path.is_file():
            assert file_row["size_bytes"] == path.stat().st_size
    assert v1_files and head_files


# -- files ----------------------------------------------------------------------------------
def test_qlib_res_csv_shape_and_metrics_match_ret(sample: tuple[Path, SampleInfo]) -> None:
    root, info = sample
    orders = set()
    for entry in info.experiments_expected:
        folder = root / entry["workspace_dir"]
        lines = (folder / "qlib_res.csv").read_text().splitlines()
        assert lines[0] == ",0"
        metrics = {name: float(value) for name, value in (line.rsplit(",", 1) for line in lines[1:])}
        assert {"IC", "Rank IC", "1day.excess_return_with_cost.max_drawdown", "1day.ffr"} <= set(metrics)
        orders.add(tuple(line.split(",")[0] for line in lines[1:6]))
        if "ret.pkl" in entry["broken_files"]:
            continue
        ret = pd.read_pickle(folder / "ret.pkl")
        excess = ret["return"] - ret["bench"]
        assert metrics["1day.excess_return_without_cost.annualized_return"] == pytest.approx(
            excess.mean() * 238
        )
        cumulative = (excess - ret["cost"]).cumsum()
        assert metrics["1day.excess_return_with_cost.max_drawdown"] == pytest.approx(
            (cumulative - cumulative.cummax()).min()
        )
    assert len(orders) > 1


def test_qlib_metrics_are_the_ones_the_reader_names() -> None:
    days = results.trading_days(10)
    ret = results.build_ret_frame(
        np.random.default_rng(0), days=days, bench=results.benchmark_returns(0, 10), alpha=0.0005
    )
    model = results.qlib_metrics(np.random.default_rng(1), ret, action="model")
    assert list(model) == list(NAMED_METRICS)
    factor = results.qlib_metrics(np.random.default_rng(1), ret, action="factor")
    assert set(factor) - set(NAMED_METRICS) == {"l2.train", "l2.valid"}


def test_ret_pkl_is_a_qlib_report_frame(sample: tuple[Path, SampleInfo]) -> None:
    root, info = sample
    entry = next(e for e in info.experiments_expected if not e["broken_files"])
    ret = pd.read_pickle(root / entry["workspace_dir"] / "ret.pkl")
    assert list(ret.columns) == list(RETURN_COLUMNS)
    assert all(dtype == np.float64 for dtype in ret.dtypes)
    assert isinstance(ret.index, pd.DatetimeIndex) and ret.index.name == "datetime" and ret.index.tz is None
    assert len(ret) == 60
    expected = 1e8 * np.cumprod(1 + ret["return"] - ret["cost"])
    assert np.allclose(ret["account"], expected)
    schema = pd.read_parquet(root / entry["workspace_dir"] / "ret_schema.parquet")
    assert str(schema["datetime"].dt.tz) == "UTC" and len(schema) == len(ret)
    table = json.loads((root / entry["workspace_dir"] / "ret_schema.json").read_text())
    assert table["schema"]["primaryKey"] == ["index"] and table["data"][0]["datetime"].endswith("Z")


def test_signals_hold_top_k_rows_per_day(sample: tuple[Path, SampleInfo]) -> None:
    root, info = sample
    entry = next(e for e in info.experiments_expected if not e["broken_files"])
    signals = pd.read_parquet(root / entry["workspace_dir"] / "signals.parquet")
    assert list(signals.columns[:3]) == ["trade_date", "instrument", "signal"]
    assert list(signals.columns[-4:]) == ["weight_method", "topk", "n_drop", "rebalance_freq"]
    per_day = signals.groupby("trade_date").size()
    assert (per_day == 3).all() and len(per_day) == 60
    first_day = signals[signals["trade_date"] == signals["trade_date"].iloc[0]]
    assert list(first_day["rank"]) == [1, 2, 3] and first_day["score"].is_monotonic_decreasing
    assert signals["target_position"].isna().all()


def test_combined_factors_parquet_has_tuple_string_columns(sample: tuple[Path, SampleInfo]) -> None:
    root, _ = sample
    paths = sorted((root / WS_ROOT).glob("*/combined_factors_df.parquet"))
    assert paths
    names = pq.read_schema(paths[0]).names
    assert names[-2:] == ["datetime", "instrument"]
    assert all(re.fullmatch(r"\('feature', '[A-Za-z0-9_]+'\)", name) for name in names[:-2])
    frame = pd.read_parquet(paths[0])
    assert isinstance(frame.columns, pd.MultiIndex) and frame.columns[0][0] == "feature"
    assert list(frame.index.names) == ["datetime", "instrument"]


def test_fast_table_writers_match_pandas_bytes() -> None:
    days, instruments = results.trading_days(20), results.instrument_codes(7)
    writer = TableWriter(seed=1, days=days, instruments=instruments, topk=3)
    rng = np.random.default_rng(0)
    for _ in range(2):
        ret = results.build_ret_frame(rng, days=days, bench=results.benchmark_returns(1, 20), alpha=0.0005)
        assert writer.ret_schema_files(ret) == results.ret_schema_files(ret)
        scores = rng.normal(0, 0.02, (20, 7))
        fast = writer.signals_files(scores, n_drop=5, generated_at="2026-01-02T03:04:05.000006+00:00")
        slow = results.signals_files(
            scores, shape=writer.shape, n_drop=5, generated_at="2026-01-02T03:04:05.000006+00:00"
        )
        assert fast == slow
    for names in (("A_5D",), ("Momentum_20D", "PB_Zscore_5D_v2")):
        expected = results.combined_factors_parquet(1, names, days=days[:4], instruments=instruments)
        assert writer.combined_parquet(names, days=4) == expected


def test_templates_are_shared_and_model_yaml_stays_jinja(sample: tuple[Path, SampleInfo]) -> None:
    root, _ = sample
    readmes = {hashlib.sha256(p.read_bytes()).hexdigest() for p in (root / WS_ROOT).glob("*/read_exp_res.py")}
    assert len(readmes) == 1
    model_yaml = next((root / WS_ROOT).glob("*/conf_baseline_factors_model.yaml")).read_text()
    assert "{{ n_epochs }}" in model_yaml
    factor_py = next((root / WS_ROOT).glob("*/factor.py")).read_text()
    assert re.search(r"^def calculate_\w+\(\):", factor_py, re.MULTILINE)
    assert list((root / WS_ROOT).glob("*/__pycache__/*.cpython-311.pyc"))


def test_factor_sub_workspaces_hard_link_the_source_data(sample: tuple[Path, SampleInfo]) -> None:
    root, _ = sample
    source = root / SOURCE / "daily_pv.h5"
    links = list((root / WS_ROOT).glob("*/daily_pv.h5"))
    assert links
    assert all(link.stat().st_ino == source.stat().st_ino for link in links)
    assert source.stat().st_nlink == 1 + len(links)
    assert all(
        (link.parent / "factor.py").is_file() and (link.parent / "README.md").stat().st_nlink > 1
        for link in links
    )


def test_log_trees_follow_the_file_storage_layout(sample: tuple[Path, SampleInfo]) -> None:
    root, info = sample
    task_runs = {row["task_run_id"]: row for row in rows(root, "task_runs")}
    for entry in info.log_dirs:
        folder = root / entry["log_dir"]
        pickles = list(folder.glob("Loop_*/**/*.pkl"))
        assert pickles
        for path in pickles:
            loop_dir, step, tag, pid, name = path.relative_to(folder).parts
            assert re.fullmatch(r"Loop_\d+", loop_dir) and step in STEPS and tag
            assert re.fullmatch(r"\d+(-\d+)?", pid)
            assert re.fullmatch(r"\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d-\d{6}\.pkl", name)
            assert isinstance(pickle.loads(path.read_bytes()), dict | list | str)
        tags = {path.relative_to(folder).parts[2] for path in pickles}
        assert {"hypothesis generation", "experiment generation", "coder result", "runner result"} <= tags
        assert (folder / "__session__/0/0_direct_exp_gen").is_file()
        assert (folder / "abort_reason.json").exists() == entry["has_abort_reason"]
        for task_run_id in entry["task_run_ids"]:
            if task_run_id in task_runs:
                assert dir_name(task_runs[task_run_id]["log_trace_path"]) == folder.name
    aborted = next(e for e in info.log_dirs if e["has_abort_reason"])
    reason = json.loads((root / aborted["log_dir"] / "abort_reason.json").read_text())
    assert reason["reason"] == "Timer timeout" and isinstance(reason["step_idx"], dict)


def test_bundle_and_catalog(sample: tuple[Path, SampleInfo]) -> None:
    root, info = sample
    (bundle,) = info.bundles
    manifest = json.loads((root / bundle["bundle_dir"] / "manifest.json").read_text())
    assert manifest["schema_version"] == 1 and len(manifest["asset_bundle_id"]) == 36
    assert (root / bundle["bundle_dir"] / manifest["primary_assets"]["model_weight_relpath"]).is_file()
    loop = next(row for row in rows(root, "loops") if key(row) == bundle["loop_key"])
    assert loop["asset_bundle_id"] == bundle["asset_bundle_id"] and loop["is_solidified"] == 1
    catalog = json.loads((root / "RDagentDB/aistock/factor_catalog.json").read_text())
    assert catalog["version"] == "v1" and catalog["factors"]


# -- manifest expectations --------------------------------------------------------------------
def test_experiments_expected_are_exactly_the_loops_with_results(sample: tuple[Path, SampleInfo]) -> None:
    root, info = sample
    expected = {(e["task_run_id"], e["loop_id"]) for e in info.experiments_expected}
    for entry in info.loops:
        folder = root / entry["workspace_dir"] if entry["workspace_dir"] else None
        on_disk = (
            folder is not None and (folder / "qlib_res.csv").is_file() and (folder / "ret.pkl").is_file()
        )
        assert on_disk == ((entry["task_run_id"], entry["loop_id"]) in expected)
    registry_keys = {key(row) for row in rows(root, "loops")}
    assert set(info.loop_keys()) == registry_keys


def test_loop_counts_scale_with_knobs(tmp_path: Path) -> None:
    plain = generate_sample(
        tmp_path / "plain", task_runs=2, loops_per_run=3, quirks=False, multi_strategy=False
    )
    assert len(rows(tmp_path / "plain", "loops")) == 2 * 3 == plain.counts["registry_loops"]
    assert all(
        not value
        for name, value in plain.quirks.items()
        if name in ("broken_files", "loops_without_task_run")
    )
    big = generate_sample(tmp_path / "big", task_runs=4, loops_per_run=5, heavy_bytes=4096, trading_days=30)
    extra = big.counts["extra_loops"]
    assert extra == {"multi_strategy": 4, "killed": 2, "running": 3, "bootstrap_duplicate": 5}
    assert len(rows(tmp_path / "big", "loops")) == 4 * 5 + sum(extra.values())
    h5 = next((tmp_path / "big" / WS_ROOT).glob("*/result.h5"))
    assert 4096 <= h5.stat().st_size < 8192
    entry = next(e for e in big.experiments_expected if not e["broken_files"])
    assert len(pd.read_pickle(tmp_path / "big" / entry["workspace_dir"] / "ret.pkl")) == 30


def test_multi_strategy_run_has_one_loop_per_strategy(sample: tuple[Path, SampleInfo]) -> None:
    root, info = sample
    ((task_run_id, request),) = info.multi_strategy_task_runs.items()
    row = next(r for r in rows(root, "task_runs") if r["task_run_id"] == task_run_id)
    assert json.loads(row["params_json"]) == {"experiment_request": request}
    assert row["scenario"] == "QuantRDLoop" and row["status"] == "success"
    strategies = {s["loop_id"]: s for s in request["strategies"]}
    assert [s["role"] for s in request["strategies"]].count("control") == 1
    expected = {(e["task_run_id"], e["loop_id"]) for e in info.experiments_expected}
    returns = {}
    for item in info.multi_strategy_loops[task_run_id]:
        assert strategies[item["loop_id"]]["name"] == item["strategy"]
        assert (task_run_id, item["loop_id"]) in expected
        ret = pd.read_pickle(root / item["workspace_dir"] / "ret.pkl")
        returns[item["role"], item["strategy"]] = (ret["return"] - ret["bench"]).mean()
    control = next(v for (role, _), v in returns.items() if role == "control")
    assert all(v != control for (role, _), v in returns.items() if role == "treatment")


# -- quirks ---------------------------------------------------------------------------------
def test_quirks_about_loops_hold(sample: tuple[Path, SampleInfo]) -> None:
    root, info = sample
    quirks = info.quirks
    loops = {key(row): row for row in rows(root, "loops")}
    task_runs = {row["task_run_id"]: row for row in rows(root, "task_runs")}
    entries = {f"{e['task_run_id']}/{e['loop_id']}": e for e in info.loops}
    assert quirks["loops_without_task_run"]
    for loop_key in quirks["loops_without_task_run"]:
        assert loop_key in loops and loops[loop_key]["task_run_id"] not in task_runs
    assert quirks["success_without_has_result"]
    for loop_key in quirks["success_without_has_result"]:
        row, folder = loops[loop_key], root / entries[loop_key]["workspace_dir"]
        assert row["status"] == "success" and row["has_result"] == 0
        assert (folder / "qlib_res.csv").is_file() and (folder / "ret.pkl").is_file()
    assert quirks["has_result_without_metrics"]
    for loop_key in quirks["has_result_without_metrics"]:
        assert loops[loop_key]["has_result"] == 1 and all(loops[loop_key][c] is None for c in METRIC_COLUMNS)
    (running,) = quirks["running_task_runs"]
    assert task_runs[running]["status"] == "running"
    assert any(loop_key.startswith(running) for loop_key in quirks["running_loops"])
    for loop_key in quirks["running_loops"]:
        assert loops[loop_key]["status"] == "running"
    (partial,) = quirks["partial_results"]
    assert partial["present"] == ["qlib_res.csv"] and "ret.pkl" in partial["missing"]
    assert (root / partial["workspace_dir"] / "qlib_res.csv").is_file()
    assert not (root / partial["workspace_dir"] / "ret.pkl").exists()
    assert all(task_runs[t]["status"] == "aborted" for t in quirks["aborted_task_runs"])


def test_quirks_about_workspaces_hold(sample: tuple[Path, SampleInfo]) -> None:
    root, info = sample
    quirks = info.quirks
    workspaces = {row["workspace_id"]: row for row in rows(root, "workspaces")}
    registered_dirs = {dir_name(row["workspace_path"]) for row in workspaces.values()}
    assert quirks["workspace_rows_missing_dir"]
    for workspace_id in quirks["workspace_rows_missing_dir"]:
        assert not (root / WS_ROOT / dir_name(workspaces[workspace_id]["workspace_path"])).exists()
    assert quirks["unregistered_workspace_dirs"]
    for name in quirks["unregistered_workspace_dirs"]:
        assert (root / WS_ROOT / name).is_dir() and name not in registered_dirs
    (orphan,) = quirks["unregistered_experiments_with_results"]
    assert dir_name(orphan) in quirks["unregistered_workspace_dirs"]
    assert (root / orphan / "qlib_res.csv").is_file() and (root / orphan / "ret.pkl").is_file()
    namespace = uuid.UUID("5b9b5f74-0f3e-4e3c-8f86-6d8a9c7d0f11")
    assert quirks["duplicate_workspaces"]
    for item in quirks["duplicate_workspaces"]:
        original, duplicate = (workspaces[w] for w in item["workspace_ids"])
        assert original["workspace_id"] == item["dir_id"] == dir_name(duplicate["workspace_path"])
        assert original["workspace_path"] != duplicate["workspace_path"]
        expected = uuid.uuid5(
            namespace, f"{duplicate['task_run_id']}|{duplicate['loop_id']}|{duplicate['workspace_path']}"
        )
        assert duplicate["workspace_id"] == expected.hex
    ((pair),) = quirks["duplicate_runs"]
    task_runs = {row["task_run_id"]: row for row in rows(root, "task_runs")}
    assert task_runs[pair["duplicate_task_run_id"]]["status"] == "unknown"
    assert dir_name(task_runs[pair["task_run_id"]]["log_trace_path"]) == pair["duplicate_task_run_id"]
    styles = {style: quirks["path_styles"][style] for style in ("wsl", "win", "win_lower", "win_fwd")}
    assert all(styles.values())
    paths = [row["workspace_path"] for row in workspaces.values()]
    assert any(p.startswith("/mnt/f/Dev/") for p in paths) and any(p.startswith("F:\\Dev\\") for p in paths)
    assert any(p.startswith("f:\\Dev\\") for p in paths) and any(p.startswith("F:/Dev/") for p in paths)


def test_quirks_about_artifacts_and_files_hold(sample: tuple[Path, SampleInfo]) -> None:
    root, info = sample
    quirks = info.quirks
    artifacts = {row["artifact_id"]: row for row in rows(root, "artifacts")}
    assert quirks["artifact_present_file_missing"]
    for item in quirks["artifact_present_file_missing"]:
        assert artifacts[item["artifact_id"]]["status"] == "present"
        assert not (root / WS_ROOT / item["workspace_id"] / item["path"]).exists()
    bundles = {row["asset_bundle_id"] for row in rows(root, "factor_registry")}
    assert quirks["factor_registry_orphans"]
    for item in quirks["factor_registry_orphans"]:
        assert item["asset_bundle_id"] in bundles
        assert not (root / "RDagentDB/production_bundles" / item["asset_bundle_id"]).exists()
    assert quirks["nan_in_json_files"]
    for rel in quirks["nan_in_json_files"]:
        text = (root / rel).read_text(encoding="utf-8")
        assert "NaN" in text and json.loads(text)
    assert any(item["table"] == "loops" for item in quirks["nan_in_json_columns"])
    loops = {key(row): row for row in rows(root, "loops")}
    for item in quirks["sqlite_datetime_timestamps"]:
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", loops[item["key"]][item["column"]])
    kinds = {item["kind"]: root / item["path"] for item in quirks["broken_files"]}
    assert set(kinds) == {"truncated_json", "non_utf8", "truncated_pickle"}
    with pytest.raises(json.JSONDecodeError):
        json.loads(kinds["truncated_json"].read_text(encoding="utf-8"))
    with pytest.raises(UnicodeDecodeError):
        kinds["non_utf8"].read_bytes().decode("utf-8")
    with pytest.raises(Exception):  # noqa: B017 - pandas raises one of several unpickling errors
        pd.read_pickle(kinds["truncated_pickle"])
    task_runs = {row["task_run_id"]: row for row in rows(root, "task_runs")}
    assert all(task_runs[t]["log_trace_path"].startswith("log/") for t in quirks["relative_log_trace_paths"])
    for workspace_id in quirks["mlruns_multiple_runs"]:
        runs = [p for p in (root / WS_ROOT / workspace_id / "mlruns").glob("*/*") if p.is_dir()]
        assert len(runs) == 2
    variants = quirks["factor_meta_variants"]
    assert {"A", "A+D", "B", "C"} <= set(variants)
    for workspace_id in quirks["tuple_string_factor_names"]:
        text = (root / WS_ROOT / workspace_id / "factor_meta.json").read_bytes().decode("utf-8", "replace")
        assert "('feature', '" in text


def test_command_line_entry_point(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli"
    assert (
        main(["--out", str(out), "--seed", "2", "--task-runs", "1", "--loops-per-run", "2", "--no-quirks"])
        == 0
    )
    assert "loops" in capsys.readouterr().out
    assert read_manifest(out)["knobs"]["quirks"] is False
    assert main(["--out", str(out)]) == 2
    assert os.path.isfile(out / "RDagentDB/registry.sqlite")
