"""Archive runs against other processes: kill -9 and resume, locks, a busy catalog, a live registry."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import duckdb
import pytest

from workbench.archive.catalog import migrate, open_catalog, schema_version
from workbench.archive.lock import archive_lock
from workbench.archive.pipeline import archive
from workbench.archive.schema import LATEST_VERSION, MIGRATIONS
from workbench.archive.verify import verify_archive
from workbench.errors import ArchiveBusyError
from workbench.sample.generate import generate_sample

PYTHON = sys.executable


def rows(archive_dir: Path, sql: str) -> list[tuple]:
    con = duckdb.connect(str(archive_dir / "catalog.duckdb"), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def archive_in_subprocess(
    root: Path, archive_dir: Path, *extra: str, faults: str | None = None
) -> subprocess.Popen:
    """A full archive run (one loop per batch) in another process; `faults` sets WORKBENCH_FAULTS."""
    code = textwrap.dedent(f"""
        from workbench.archive.pipeline import archive
        archive({str(root)!r}, archive={str(archive_dir)!r}, mode="full", progress=False, batch_size=1)
    """)
    env = dict(os.environ)
    if faults is not None:
        env["WORKBENCH_FAULTS"] = faults
    return subprocess.Popen(
        [PYTHON, "-c", code, *extra], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env
    )


def count_files(folder: Path) -> int:
    return sum(1 for p in folder.rglob("*") if p.is_file()) if folder.exists() else 0


# The killed run pauses (WORKBENCH_FAULTS) just before writing record 13 of its 37: the run-start
# record and 11 committed batches lie behind it, and batch 12's objects and manifests may already be
# on disk without a record or a commit. The kill comes once 12 records exist, whatever the machine's
# speed: the paused run can neither finish nor write another record before it.
KILL_AFTER_RECORDS = 12


def record_names(archive_dir: Path) -> list[str]:
    folder = archive_dir / "records"
    return sorted(p.name for p in folder.glob("*.json")) if folder.exists() else []


def wait_for_records(archive_dir: Path, count: int, proc: subprocess.Popen, timeout: float = 300) -> None:
    """Wait until the run has written `count` records (an on-disk point, not a time); fail if it exits."""
    deadline = time.monotonic() + timeout
    while len(record_names(archive_dir)) < count:
        assert proc.poll() is None, f"the run exited before its record {count}: {proc.stderr.read()}"
        assert time.monotonic() < deadline, f"no record {count} after {timeout} s"
        time.sleep(0.05)


def test_killed_full_run_is_completed_by_the_next(tmp_path: Path) -> None:
    root = tmp_path / "rd"
    generate_sample(root, seed=3, task_runs=6, loops_per_run=6)
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    proc = archive_in_subprocess(root, killed, faults=f"pause:records:after={KILL_AFTER_RECORDS}:ms=600000")
    try:
        wait_for_records(killed, KILL_AFTER_RECORDS, proc)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert len(record_names(killed)) == KILL_AFTER_RECORDS, "the run must stop before its next record"
    interrupted = rows(killed, "SELECT status FROM wb_archive_runs")
    assert interrupted == [("running",)], "the killed run must be visible as unfinished"
    # no experiment is left half at level 2: every level-2 row has its series and files
    half = rows(
        killed,
        """SELECT e.id FROM aistock_experiments e WHERE e.archiving_level = 2 AND (
                             NOT EXISTS (SELECT 1 FROM aistock_return_series r WHERE r.experiment_id = e.id)
                          OR NOT EXISTS (SELECT 1 FROM wb_stored_files f WHERE f.experiment_id = e.id))""",
    )
    assert half == []
    assert rows(killed, "SELECT count(*) FROM aistock_experiments WHERE archiving_level = 2")[0][0] > 0
    archive(root, archive=killed, mode="full", progress=False)
    archive(root, archive=clean, mode="full", progress=False)
    for sql in (
        "SELECT id, archiving_level FROM aistock_experiments ORDER BY id",
        "SELECT experiment_id, rel_path, sha256 FROM wb_stored_files ORDER BY 1, 2",
        "SELECT sha256, storage_key FROM wb_objects ORDER BY 1",
        "SELECT experiment_id, count(*), sum(account) FROM aistock_return_series GROUP BY 1 ORDER BY 1",
        "SELECT id FROM aistock_factors ORDER BY id",
    ):
        assert rows(killed, sql) == rows(clean, sql), sql
    report = verify_archive(killed, read_data=True)
    assert report.checked > 0 and not report.damaged and not report.missing
    assert not (killed / "tmp").exists() or count_files(killed / "tmp") == 0


def test_second_job_on_the_same_archive_is_refused_and_a_dead_holder_frees_the_lock(
    rd_root: Path, archive_dir: Path
) -> None:
    holder = subprocess.Popen(
        [
            PYTHON,
            "-c",
            textwrap.dedent(f"""
        import time
        from workbench.archive.lock import archive_lock
        with archive_lock({str(archive_dir)!r}, job="cleanup"):
            print("held", flush=True)
            time.sleep(60)
    """),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    with pytest.raises(ArchiveBusyError) as info:
        archive(rd_root, archive=archive_dir, progress=False)
    assert "cleanup" in str(info.value) and str(holder.pid) in str(info.value)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    with archive_lock(archive_dir, job="test"):
        pass
    assert archive(rd_root, archive=archive_dir, progress=False).level2 > 0


def test_a_notebook_holding_the_catalog_delays_the_job_instead_of_failing_it(
    rd_root: Path, archive_dir: Path
) -> None:
    archive(rd_root, archive=archive_dir, mode="incremental", target_level=1, progress=False)
    reader = subprocess.Popen(
        [
            PYTHON,
            "-c",
            textwrap.dedent(f"""
        import time, duckdb
        con = duckdb.connect({str(archive_dir / "catalog.duckdb")!r}, read_only=True)
        print("open", flush=True)
        time.sleep(1.5)
        con.close()
    """),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert reader.stdout is not None and reader.stdout.readline().strip() == "open"
    summary = archive(rd_root, archive=archive_dir, mode="full", progress=False)
    reader.wait()
    assert summary.level2 > 0


def test_a_catalog_held_too_long_gives_up_naming_the_holder(archive_dir: Path) -> None:
    with open_catalog(archive_dir, create=True):
        pass
    reader = subprocess.Popen(
        [
            PYTHON,
            "-c",
            textwrap.dedent(f"""
        import time, duckdb
        con = duckdb.connect({str(archive_dir / "catalog.duckdb")!r}, read_only=True)
        print("open", flush=True)
        time.sleep(30)
    """),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert reader.stdout is not None and reader.stdout.readline().strip() == "open"
        with pytest.raises(ArchiveBusyError) as info:
            with open_catalog(archive_dir, timeout_s=0.5):
                pass
        assert f"PID {reader.pid}" in str(info.value)
    finally:
        reader.kill()
        reader.wait()


def add_loop_like_rdagent(root: Path, *, task_run_id: str, loop_id: int, source_workspace: Path) -> str:
    """Another process (as RD-Agent would) adds a finished loop: a workspace folder, then registry rows."""
    new_id = f"{loop_id:02d}" + "ab" * 15
    target = root / "git_ignore_folder" / "RD-Agent_workspace" / new_id
    shutil.copytree(source_workspace, target, symlinks=True)
    code = textwrap.dedent(f"""
        import sqlite3
        con = sqlite3.connect({str(root / "RDagentDB" / "registry.sqlite")!r}, timeout=10)
        con.execute("PRAGMA journal_mode=WAL")
        now = "2026-11-25T10:00:00.000001+00:00"
        with con:
            con.execute("INSERT INTO loops (task_run_id, loop_id, action, status, has_result, started_at_utc, "
                        "ended_at_utc, updated_at_utc) VALUES (?, ?, 'model', 'success', 0, ?, ?, ?)",
                        ({task_run_id!r}, {loop_id}, now, now, now))
            con.execute("INSERT INTO workspaces (workspace_id, task_run_id, loop_id, workspace_role, "
                        "experiment_type, step_name, status, workspace_path, created_at_utc, updated_at_utc) "
                        "VALUES (?, ?, ?, 'experiment_workspace', 'model', 'feedback', 'success', ?, ?, ?)",
                        ({new_id!r}, {task_run_id!r}, {loop_id},
                         "/mnt/f/Dev/RD-Agent-main/git_ignore_folder/RD-Agent_workspace/{new_id}", now, now))
        con.close()
    """)
    subprocess.run([PYTHON, "-c", code], check=True)
    return new_id


def test_incremental_picks_up_only_what_is_new(rd_root: Path, archive_dir: Path) -> None:
    archive(rd_root, archive=archive_dir, mode="full", progress=False)
    noop = archive(rd_root, archive=archive_dir, mode="incremental", progress=False)
    failed_before = rows(
        archive_dir, "SELECT count(*) FROM wb_loop_state WHERE state IN ('failed', 'partial')"
    )[0][0]
    assert noop.candidates == failed_before and noop.level2 == 0
    source_dir, task_run_id = rows(
        archive_dir,
        "SELECT workspace_dir, task_run_id FROM aistock_experiments WHERE archiving_level = 2 "
        "AND action = 'model' ORDER BY id LIMIT 1",
    )[0]
    new_id = add_loop_like_rdagent(
        rd_root, task_run_id=task_run_id, loop_id=77, source_workspace=Path(source_dir)
    )
    summary = archive(rd_root, archive=archive_dir, mode="incremental", progress=False)
    assert summary.level2 == 1
    assert summary.candidates == failed_before + 1
    level = rows(
        archive_dir, f"SELECT archiving_level FROM aistock_experiments WHERE workspace_id = '{new_id}'"
    )
    assert level == [(2,)]


def test_incremental_last_n_limits_the_work(rd_root: Path, archive_dir: Path) -> None:
    summary = archive(rd_root, archive=archive_dir, mode="incremental", last=3, progress=False)
    assert summary.candidates == 3


def test_incremental_hours_selects_recent_loops_only(rd_root: Path, archive_dir: Path) -> None:
    summary = archive(rd_root, archive=archive_dir, mode="incremental", hours=1, progress=False)
    assert summary.candidates == 0  # the sample's loops are months old


def test_old_catalog_is_upgraded_in_place(tmp_path: Path) -> None:
    path = tmp_path / "ar"
    path.mkdir()
    con = duckdb.connect(str(path / "catalog.duckdb"))
    migrate(con, target=1)
    assert schema_version(con) == 1
    con.execute("INSERT INTO aistock_factors (id, name, source) VALUES ('f1', 'RESI5', 'qlib_alpha158')")
    con.close()
    with open_catalog(path) as upgraded:
        assert schema_version(upgraded) == LATEST_VERSION
        assert upgraded.execute("SELECT name FROM aistock_factors").fetchall() == [("RESI5",)]
        tables = {
            r[0] for r in upgraded.execute("SELECT table_name FROM information_schema.tables").fetchall()
        }
    assert {"wb_holds", "wb_attached_requests"} <= tables
    assert max(MIGRATIONS) == LATEST_VERSION


def test_run_summary_is_stored_and_written_as_json(rd_root: Path, archive_dir: Path) -> None:
    summary = archive(rd_root, archive=archive_dir, progress=False)
    stored = rows(
        archive_dir,
        f"SELECT status, n_level2, n_errors FROM wb_archive_runs WHERE run_id = '{summary.run_id}'",
    )
    assert stored == [(summary.status, summary.level2, len(summary.errors))]
    on_disk = json.loads((archive_dir / "runs" / f"{summary.run_id}.json").read_text())
    assert on_disk["level2"] == summary.level2


def test_registry_is_never_modified(rd_root: Path, archive_dir: Path) -> None:
    registry = rd_root / "RDagentDB" / "registry.sqlite"
    before = {p.name: p.read_bytes() for p in registry.parent.glob("registry.sqlite*")}
    archive(rd_root, archive=archive_dir, progress=False)
    after = {p.name: p.read_bytes() for p in registry.parent.glob("registry.sqlite*")}
    assert after == before
    assert sqlite3.connect(registry).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_rearchiving_after_a_full_cleanup_keeps_the_archived_record(rd_root: Path, archive_dir: Path) -> None:
    from workbench.cleanup import cleanup

    archive(rd_root, archive=archive_dir, mode="full", progress=False)
    outcome = cleanup(rd_root, archive=archive_dir, stage="full", confirm=True, yes=True)
    deleted = rows(archive_dir, "SELECT id FROM aistock_experiments WHERE workspace_state = 'deleted'")
    assert deleted, f"the full cleanup should delete workspaces ({outcome})"
    sql = (
        "SELECT id, archiving_level, metrics_json, feedback_json, file_refs_json, workspace_dir "
        "FROM aistock_experiments ORDER BY id"
    )
    before = rows(archive_dir, sql)
    summary = archive(rd_root, archive=archive_dir, mode="full", progress=False)
    assert summary.skipped.get("cleaned_up", 0) >= len(deleted)
    assert rows(archive_dir, sql) == before


def test_since_limits_a_full_run_to_recent_loops(rd_root: Path, archive_dir: Path) -> None:
    nothing = archive(rd_root, archive=archive_dir, mode="full", since="2100-01-01", progress=False)
    assert nothing.candidates == 0 and nothing.level2 == 0
    everything = archive(rd_root, archive=archive_dir, mode="full", since="2000-01-01", progress=False)
    assert everything.level2 > 0


def test_bad_since_is_a_config_error(rd_root: Path, archive_dir: Path) -> None:
    from workbench.errors import ConfigError

    with pytest.raises(ConfigError, match="since"):
        archive(rd_root, archive=archive_dir, mode="full", since="last tuesday", progress=False)


def test_a_limited_first_run_leaves_the_rest_to_the_next_incremental_run(
    rd_root: Path, archive_dir: Path
) -> None:
    """--hours/--last/--since do not move the cursor past loops they left out."""
    reference = archive(rd_root, archive=archive_dir / "reference", mode="incremental", progress=False)
    assert reference.level2 > 0
    limited = archive(rd_root, archive=archive_dir / "a", mode="incremental", hours=1, progress=False)
    assert limited.candidates == 0 and any("cursor was not moved" in n for n in limited.notes)
    assert rows(archive_dir / "a", "SELECT count(*) FROM wb_cursor") == [(0,)]
    for run in (dict(mode="incremental", last=2), dict(mode="full", since="2100-01-01")):
        archive(rd_root, archive=archive_dir / "b", progress=False, **run)
    follow_up = archive(rd_root, archive=archive_dir / "a", mode="incremental", progress=False)
    assert (follow_up.level1, follow_up.level2) == (reference.level1, reference.level2)
    archive(rd_root, archive=archive_dir / "b", mode="incremental", progress=False)
    sql = "SELECT count(*) FROM aistock_experiments WHERE archiving_level = 2"
    assert rows(archive_dir / "b", sql) == rows(archive_dir / "reference", sql)


def test_failed_and_below_target_loops_pass_the_hours_limit(rd_root: Path, archive_dir: Path) -> None:
    archive(rd_root, archive=archive_dir, mode="full", target_level=1, progress=False)
    at_level1 = rows(
        archive_dir, "SELECT count(*) FROM wb_loop_state WHERE state = 'archived' AND archiving_level = 1"
    )
    assert at_level1[0][0] > 0
    upgraded = archive(rd_root, archive=archive_dir, mode="incremental", hours=1, progress=False)
    assert upgraded.level2 > 0  # every loop still below the target level, though months old
    assert rows(
        archive_dir, "SELECT count(*) FROM wb_loop_state WHERE state = 'archived' AND archiving_level = 1"
    ) == [(0,)]


def test_include_heavy_on_an_existing_archive_stores_the_heavy_files(
    rd_root: Path, archive_dir: Path
) -> None:
    archive(rd_root, archive=archive_dir, mode="full", progress=False)
    sql = "SELECT count(*) FROM wb_stored_files WHERE file_class = 'heavy'"
    assert rows(archive_dir, sql) == [(0,)]
    heavy = archive(rd_root, archive=archive_dir, mode="full", include_heavy=True, progress=False)
    assert heavy.level2 > 0 and heavy.bytes_stored > 0
    assert rows(archive_dir, sql)[0][0] > 0
    again = archive(rd_root, archive=archive_dir, mode="full", include_heavy=True, progress=False)
    plain = archive(rd_root, archive=archive_dir, mode="incremental", progress=False)
    assert again.level2 == 0 and plain.level2 == 0  # a heavy archive also satisfies a plain run
    assert rows(archive_dir, sql)[0][0] > 0


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (dict(mode="incremental", hours=-5), "--hours must be a positive"),
        (dict(mode="incremental", hours=0), "--hours must be a positive"),
        (dict(mode="incremental", last=0), "--last must be at least 1"),
        (dict(mode="full", hours=1), "a full run takes --since"),
        (dict(mode="full", last=3), "a full run takes --since"),
    ],
)
def test_bad_limits_are_config_errors(rd_root: Path, archive_dir: Path, options: dict, message: str) -> None:
    from workbench.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        archive(rd_root, archive=archive_dir, progress=False, **options)
    assert not (archive_dir / "catalog.duckdb").exists()


def test_a_foreign_lock_holder_is_not_named_after_a_finished_job(archive_dir: Path) -> None:
    """After a workbench job ends, a foreign program holding the lock is not reported as that job."""
    with archive_lock(archive_dir, job="archive-full"):
        pass
    assert (archive_dir / ".workbench.lock").read_text() == ""  # the finished job left no holder record
    foreign = subprocess.Popen(
        [
            PYTHON,
            "-c",
            textwrap.dedent(f"""
        import fcntl, os, time
        fd = os.open({str(archive_dir / ".workbench.lock")!r}, os.O_RDWR)
        fcntl.flock(fd, fcntl.LOCK_EX)
        print("held", flush=True)
        time.sleep(60)
    """),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert foreign.stdout is not None and foreign.stdout.readline().strip() == "held"
        with pytest.raises(ArchiveBusyError, match="did not record itself") as info:
            with archive_lock(archive_dir, job="test"):
                pass
        assert "archive-full" not in str(info.value)
    finally:
        foreign.kill()
        foreign.wait()


def test_the_summary_says_finished_when_only_loops_failed_and_failed_when_the_run_did() -> None:
    from workbench.archive.runs import RunSummary

    bad_loop = {"task_run_id": "t1", "loop_id": 3, "stage": "extract", "message": "ret.pkl: not a pickle"}
    done = RunSummary(
        "r1", "full", "/a", "2026-01-01", status="failed", level2=57, errors=[bad_loop, bad_loop]
    )
    assert done.failed  # exit 1 and the recorded status stay as they were
    assert done.headline() == (
        "archive run r1 (full) finished: 57 loops archived, 1 loop(s) with errors "
        "(listed below; each is retried by the next run, the others are safe)"
    )
    assert "ret.pkl: not a pickle" in done.format()
    full = RunSummary("r2", "incremental", "/a", "2026-01-01", status="failed", error="disk full (ENOSPC)")
    assert full.headline() == "archive run r2 (incremental) failed: disk full (ENOSPC)"
    clean = RunSummary("r3", "full", "/a", "2026-01-01", status="success", level1=2, level2=8)
    assert clean.headline() == "archive run r3 (full) finished: 10 loops archived, no errors"


def test_the_samples_planted_defects_are_named_as_such_and_real_failures_stay_failures(
    rd_root: Path, archive_dir: Path, tmp_path: Path
) -> None:
    from workbench.demo import describe_run, planted_errors

    summary = archive(rd_root, archive=archive_dir, mode="full", progress=False)
    planted, real = planted_errors(summary, rd_root)
    assert planted and not real  # the embedded sample breaks a few files on purpose, nothing else fails
    text = describe_run(summary, rd_root)
    assert "finished" in text.splitlines()[0] and "breaks on purpose" in text
    elsewhere = tmp_path / "copy"  # the same errors where no sample manifest vouches for them
    elsewhere.mkdir()
    assert planted_errors(summary, elsewhere) == ([], summary.errors)
    assert "on purpose" not in describe_run(summary, elsewhere)
