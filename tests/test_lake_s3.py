"""The team's lake on a real S3 server (SeaweedFS): concurrent publishers lose nothing, reads equal the catalogs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from deltalake import DeltaTable
from lake_helpers import assert_lake_equals_catalogs, lake_rows
from polars.testing import assert_frame_equal

from workbench.archive.pipeline import archive
from workbench.lake import publish
from workbench.lake.tables import EXPERIMENTS, LAKE_TABLES
from workbench.library import strategy_library
from workbench.sample.generate import generate_sample

pytestmark = pytest.mark.xdist_group("s3")


@pytest.fixture(scope="module")
def two_archives(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two machines' archives: sample installations of different seeds (other task runs, shared factors)."""
    base = tmp_path_factory.mktemp("machines")
    out = []
    for seed in (0, 1):
        generate_sample(base / f"rd{seed}", seed=seed, task_runs=2, loops_per_run=3)
        archive(base / f"rd{seed}", archive=base / f"ar{seed}", mode="full", progress=False)
        out.append(base / f"ar{seed}")
    return out


def _publish_in_subprocess(archive_dir: Path, lake: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "workbench.cli", "publish", "--archive", str(archive_dir), "--lake", lake],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def test_two_machines_publishing_into_one_lake_at_once_lose_nothing(
    bucket: str, s3_env: dict[str, str], two_archives: list[Path]
) -> None:
    lake = f"s3://{bucket}/team/lake"
    env = {**os.environ, **s3_env}
    ids = [set(lake_rows_of(a)) for a in two_archives]
    assert ids[0] and ids[1] and not ids[0] & ids[1]
    runs = [_publish_in_subprocess(a, lake, env) for a in two_archives]
    outputs = [r.communicate(timeout=600) for r in runs]
    for run, (_out, err) in zip(runs, outputs, strict=True):
        assert run.returncode == 0, err
        assert "terminate called" not in err
    assert_lake_equals_catalogs(lake, two_archives)
    published = set(lake_rows(lake, EXPERIMENTS)["id"].to_list())
    assert published == ids[0] | ids[1]
    versions = {t.name: DeltaTable(f"{lake}/{t.name}").version() for t in LAKE_TABLES}
    for archive_dir in two_archives:  # both again, one after the other: nothing new
        assert publish(archive_dir, lake).commits == 0
    assert {t.name: DeltaTable(f"{lake}/{t.name}").version() for t in LAKE_TABLES} == versions


def lake_rows_of(archive_dir: Path) -> list[str]:
    import duckdb

    con = duckdb.connect(str(archive_dir / "catalog.duckdb"), read_only=True)
    try:
        return [r[0] for r in con.execute("SELECT id FROM aistock_experiments").fetchall()]
    finally:
        con.close()


def test_a_lake_on_s3_is_read_like_the_catalog_and_commands_exit_with_their_own_code(
    bucket: str, s3_env: dict[str, str], two_archives: list[Path]
) -> None:
    lake = f"s3://{bucket}/lake"
    first = publish(two_archives[0], lake)
    assert first.commits == len(LAKE_TABLES)
    assert publish(two_archives[0], lake).commits == 0
    assert_frame_equal(strategy_library(None, lake=lake), strategy_library(two_archives[0]))
    env = {**os.environ, **s3_env}
    for args in (("status", "--lake", lake), ("strategies", "--lake", lake, "--json")):
        done = subprocess.run(
            [sys.executable, "-m", "workbench.cli", *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr
        assert "terminate called" not in done.stderr
    missing = subprocess.run(
        [sys.executable, "-m", "workbench.cli", "status", "--lake", f"s3://{bucket}/nothing"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert missing.returncode == 13, missing.stderr
    assert "publish an archive to it first" in missing.stderr
