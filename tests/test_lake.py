"""The team's lake on a local folder: publish is a merge by stable ids, reads equal the catalog's."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import duckdb
import pandas as pd
import polars as pl
import pytest
from cleanup_helpers import Env
from deltalake import DeltaTable
from lake_helpers import assert_close, assert_lake_equals_catalogs, catalog_rows, lake_rows
from polars.testing import assert_frame_equal

from workbench.analysis.compare import comparable_task_runs, compare_task_run
from workbench.archive.pipeline import archive
from workbench.archive.status import archive_status
from workbench.errors import LakeError
from workbench.lake import lake_status, publish, scan_table
from workbench.lake.tables import LAKE_TABLES, RETURN_SERIES
from workbench.library import factor_library, strategy_library
from workbench.sample.results import frame_pickle


def _versions(lake: Path) -> dict[str, int]:
    return {t.name: DeltaTable(str(lake / t.name)).version() for t in LAKE_TABLES}


def test_published_tables_read_back_equal_to_the_catalog(env: Env) -> None:
    lake = env.tmp / "lake"
    result = publish(env.ar, lake)
    assert result.n_changed == result.n_experiments > 0
    assert_lake_equals_catalogs(lake, [env.ar])
    series = scan_table(lake, "aistock_return_series").collect()
    assert series.height == catalog_rows(env.ar, RETURN_SERIES).height > 0
    partitions = DeltaTable(str(lake / "aistock_return_series")).metadata().partition_columns
    assert partitions == ["month"]


def test_publishing_again_writes_nothing_and_makes_no_new_version(env: Env) -> None:
    lake = env.tmp / "lake"
    publish(env.ar, lake)
    before = _versions(lake)
    again = publish(env.ar, lake)
    assert again.commits == 0 and again.n_changed == 0
    assert _versions(lake) == before


def test_the_library_functions_on_a_lake_answer_as_on_the_catalog(env: Env) -> None:
    lake = env.tmp / "lake"
    publish(env.ar, lake)
    assert_frame_equal(factor_library(None, lake=lake), factor_library(env.ar))
    assert_frame_equal(
        factor_library(None, lake=lake, sort_by="sharpe", limit=5),
        factor_library(env.ar, sort_by="sharpe", limit=5),
    )
    assert_frame_equal(strategy_library(None, lake=lake), strategy_library(env.ar))
    accepted = strategy_library(env.ar, status="rdagent_accept")
    assert accepted.height > 0
    assert_frame_equal(strategy_library(None, lake=lake, status="rdagent_accept"), accepted)
    for task_run in comparable_task_runs(env.ar)["task_run_id"].to_list():
        on_lake = compare_task_run(None, task_run, lake=lake, n_boot=200)
        assert_close(on_lake.to_dict(), compare_task_run(env.ar, task_run, n_boot=200).to_dict())
    catalog_status, shown = archive_status(env.ar), lake_status(lake)
    assert shown.by_level.to_dicts() == catalog_status.by_level.to_dicts()
    assert (
        shown.by_task_run.to_dicts()
        == catalog_status.by_task_run.select(shown.by_task_run.columns).to_dicts()
    )
    assert shown.errors["experiment_id"].to_list() == catalog_status.errors["experiment_id"].to_list()


def test_the_lakes_key_results_are_the_strategy_librarys(env: Env) -> None:
    lake = env.tmp / "lake"
    publish(env.ar, lake)
    library = strategy_library(env.ar).select("experiment_id", "information_ratio", "annualized_return")
    lake_experiments = scan_table(lake, "aistock_experiments").select(
        pl.col("id").alias("experiment_id"), "information_ratio", "annualized_return"
    )
    joined = library.join(lake_experiments.collect(), on="experiment_id", suffix="_lake")
    assert joined.height == library.height
    assert joined["information_ratio"].to_list() == joined["information_ratio_lake"].to_list()


def _shorten_return_series(env: Env, experiment_id: str, days: int) -> int:
    """Drop the last `days` rows of an experiment's ret.pkl in its workspace; returns the rows left."""
    con = duckdb.connect(str(env.ar / "catalog.duckdb"), read_only=True)
    try:
        rows = con.execute(
            "SELECT workspace_dir FROM aistock_experiments WHERE id = ?", [experiment_id]
        ).fetchall()
    finally:
        con.close()
    path = env.rd / "git_ignore_folder" / "RD-Agent_workspace" / Path(rows[0][0]).name / "ret.pkl"
    kept = pd.read_pickle(path).iloc[:-days]
    fresh = pd.DataFrame(  # fresh arrays: a sliced frame pickles attributes the safe reader refuses
        {c: kept[c].to_numpy().copy() for c in kept.columns},
        index=pd.DatetimeIndex(kept.index.to_numpy().copy(), name=kept.index.name),
    )
    path.write_bytes(frame_pickle(fresh))
    return len(fresh)


def test_a_re_archived_experiment_replaces_its_rows_in_one_commit_per_table(env: Env) -> None:
    lake = env.tmp / "lake"
    publish(env.ar, lake)
    series = catalog_rows(env.ar, RETURN_SERIES)
    target = series.group_by("experiment_id").len().sort("experiment_id")["experiment_id"][0]
    assert lake_rows(lake, RETURN_SERIES).filter(pl.col("experiment_id") == target).height > 7
    left = _shorten_return_series(env, target, days=7)
    archive(env.rd, archive=env.ar, mode="full", progress=False)
    assert catalog_rows(env.ar, RETURN_SERIES).filter(pl.col("experiment_id") == target).height == left
    before = _versions(lake)
    result = publish(env.ar, lake)
    assert result.n_changed >= 1
    after = _versions(lake)
    assert after["aistock_return_series"] == before["aistock_return_series"] + 1
    assert after["aistock_experiments"] == before["aistock_experiments"] + 1
    rows = lake_rows(lake, RETURN_SERIES)
    assert rows.filter(pl.col("experiment_id") == target).height == left
    assert_lake_equals_catalogs(lake, [env.ar])
    assert publish(env.ar, lake).commits == 0


def test_a_missing_lake_is_an_error_that_says_to_publish_first(tmp_path: Path) -> None:
    with pytest.raises(LakeError, match="publish an archive to it first"):
        strategy_library(None, lake=tmp_path / "nothing")


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "workbench.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_lake_commands_exit_with_their_own_code(env: Env) -> None:
    lake = env.tmp / "lake"
    published = _cli("publish", "--archive", str(env.ar), "--lake", str(lake))
    assert published.returncode == 0, published.stderr
    assert "experiments new or changed" in published.stdout
    shown = _cli("status", "--lake", str(lake))
    assert shown.returncode == 0, shown.stderr
    assert "aistock_return_series: version 0" in shown.stdout
    strategies = _cli("strategies", "--lake", str(lake), "--json")
    assert strategies.returncode == 0 and strategies.stdout.startswith("[")
    missing = _cli("status", "--lake", str(env.tmp / "nothing"))
    assert missing.returncode == LakeError.exit_code
    assert "publish an archive to it first" in missing.stderr
    assert "terminate called" not in missing.stderr + shown.stderr


def test_archive_publish_option_publishes_as_the_runs_last_step(rd_root: Path, archive_dir: Path) -> None:
    lake = archive_dir.parent / "lake"
    run = _cli(
        "archive",
        "--rdagent-root",
        str(rd_root),
        "--archive",
        str(archive_dir),
        "--no-progress",
        "--publish",
        str(lake),
    )
    assert run.returncode in (0, 1), run.stderr  # the sample has loops that fail on purpose (exit 1)
    assert "published" in run.stdout
    assert_lake_equals_catalogs(lake, [archive_dir])


def test_the_archive_notebook_publishes_when_given_a_lake(
    rd_root: Path, archive_dir: Path, tmp_path: Path
) -> None:
    import papermill as pm

    lake = tmp_path / "lake"
    notebooks = Path(__file__).resolve().parents[1] / "notebooks"
    pm.execute_notebook(
        str(notebooks / "archive_incremental.ipynb"),
        str(tmp_path / "run.ipynb"),
        parameters={"rdagent_root": str(rd_root), "archive_dir": str(archive_dir), "publish": str(lake)},
        cwd=str(notebooks),
        kernel_name="python3",
        progress_bar=False,
    )
    assert_lake_equals_catalogs(lake, [archive_dir])
