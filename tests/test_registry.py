"""registry.sqlite reader: canonical frames, schema generations, incremental reads, safety under a live writer."""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import polars as pl
import pytest

from workbench.errors import RegistryError
from workbench.rdagent.registry import (
    MAX_ALSO,
    SCHEMA,
    read_loops_changed_since,
    read_registry,
    registry_max_cursor,
)

HEAD_DDL = """
CREATE TABLE task_runs (task_run_id TEXT PRIMARY KEY, scenario TEXT, status TEXT, created_at_utc TEXT,
  updated_at_utc TEXT, git_sha TEXT, rdagent_version TEXT, log_trace_path TEXT, params_json TEXT);
CREATE TABLE loops (task_run_id TEXT NOT NULL, loop_id INTEGER NOT NULL, action TEXT, status TEXT,
  has_result INTEGER DEFAULT 0, best_workspace_id TEXT, started_at_utc TEXT, ended_at_utc TEXT, error_type TEXT,
  error_message TEXT, ic_mean REAL, rank_ic_mean REAL, ann_return REAL, mdd REAL, turnover REAL, multi_score REAL,
  metrics_json TEXT, log_dir TEXT, materialization_status TEXT, materialization_error TEXT,
  materialization_updated_at_utc TEXT, asset_bundle_id TEXT, is_solidified INTEGER DEFAULT 0,
  sync_status TEXT DEFAULT 'pending', updated_at_utc TEXT, PRIMARY KEY (task_run_id, loop_id));
CREATE TABLE workspaces (workspace_id TEXT PRIMARY KEY, task_run_id TEXT NOT NULL, loop_id INTEGER,
  workspace_role TEXT, experiment_type TEXT, step_name TEXT, status TEXT, workspace_path TEXT NOT NULL,
  meta_path TEXT, summary_path TEXT, manifest_path TEXT, created_at_utc TEXT, updated_at_utc TEXT);
CREATE INDEX idx_workspaces_task_loop ON workspaces(task_run_id, loop_id);
CREATE TABLE artifacts (artifact_id TEXT PRIMARY KEY, task_run_id TEXT NOT NULL, loop_id INTEGER,
  workspace_id TEXT NOT NULL, artifact_type TEXT, name TEXT, version TEXT, status TEXT, primary_flag INTEGER,
  summary_json TEXT, entry_path TEXT, model_type TEXT, model_conf_json TEXT, dataset_conf_json TEXT,
  feature_schema_json TEXT, created_at_utc TEXT, updated_at_utc TEXT);
CREATE INDEX idx_artifacts_task_loop ON artifacts(task_run_id, loop_id);
CREATE TABLE artifact_files (file_id TEXT PRIMARY KEY, artifact_id TEXT NOT NULL, workspace_id TEXT NOT NULL,
  path TEXT NOT NULL, sha256 TEXT, size_bytes INTEGER, mtime_utc TEXT, kind TEXT);
CREATE INDEX idx_artifact_files_artifact ON artifact_files(artifact_id);
CREATE TABLE factor_registry (factor_name TEXT, expression TEXT, performance_json TEXT, asset_bundle_id TEXT,
  workspace_id TEXT, task_run_id TEXT, loop_id INTEGER, updated_at_utc TEXT,
  PRIMARY KEY (factor_name, asset_bundle_id));
"""

# V1 (Dec-24) tables, then HEAD's migration: the 7 loops columns appended in spec §2.3 order,
# no loops.log_dir, no artifacts.model_* columns, no factor_registry table.
V1_DDL = """
CREATE TABLE task_runs (task_run_id TEXT PRIMARY KEY, scenario TEXT, status TEXT, created_at_utc TEXT,
  updated_at_utc TEXT, git_sha TEXT, rdagent_version TEXT, log_trace_path TEXT, params_json TEXT);
CREATE TABLE loops (task_run_id TEXT NOT NULL, loop_id INTEGER NOT NULL, action TEXT, status TEXT,
  has_result INTEGER DEFAULT 0, best_workspace_id TEXT, started_at_utc TEXT, ended_at_utc TEXT, error_type TEXT,
  error_message TEXT, ic_mean REAL, rank_ic_mean REAL, ann_return REAL, mdd REAL, turnover REAL, multi_score REAL,
  metrics_json TEXT, PRIMARY KEY (task_run_id, loop_id));
ALTER TABLE loops ADD COLUMN materialization_status TEXT;
ALTER TABLE loops ADD COLUMN materialization_error TEXT;
ALTER TABLE loops ADD COLUMN materialization_updated_at_utc TEXT;
ALTER TABLE loops ADD COLUMN asset_bundle_id TEXT;
ALTER TABLE loops ADD COLUMN is_solidified INTEGER DEFAULT 0;
ALTER TABLE loops ADD COLUMN sync_status TEXT DEFAULT 'pending';
ALTER TABLE loops ADD COLUMN updated_at_utc TEXT;
CREATE TABLE workspaces (workspace_id TEXT PRIMARY KEY, task_run_id TEXT NOT NULL, loop_id INTEGER,
  workspace_role TEXT, experiment_type TEXT, step_name TEXT, status TEXT, workspace_path TEXT NOT NULL,
  meta_path TEXT, summary_path TEXT, manifest_path TEXT, created_at_utc TEXT, updated_at_utc TEXT);
CREATE TABLE artifacts (artifact_id TEXT PRIMARY KEY, task_run_id TEXT NOT NULL, loop_id INTEGER,
  workspace_id TEXT NOT NULL, artifact_type TEXT, name TEXT, version TEXT, status TEXT, primary_flag INTEGER,
  summary_json TEXT, entry_path TEXT, created_at_utc TEXT, updated_at_utc TEXT);
CREATE TABLE artifact_files (file_id TEXT PRIMARY KEY, artifact_id TEXT NOT NULL, workspace_id TEXT NOT NULL,
  path TEXT NOT NULL, sha256 TEXT, size_bytes INTEGER, mtime_utc TEXT, kind TEXT);
"""


def make_db(path: Path, ddl: str, *, wal: bool = True, rows: str = "") -> Path:
    con = sqlite3.connect(path)
    if wal:
        con.execute("PRAGMA journal_mode=WAL")
    con.executescript(ddl + rows)
    con.commit()
    con.close()
    return path


def listing(directory: Path) -> list[str]:
    return sorted(os.listdir(directory))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


HEAD_ROWS = """
INSERT INTO task_runs VALUES ('run1', 'QuantRDLoop', 'success', '2026-01-06T07:12:03+00:00', NULL, NULL, '0.8.0',
  '/mnt/f/Dev/RD-Agent-main/log/2026-01-06_06-00-53-321254', '{}');
INSERT INTO loops (task_run_id, loop_id, action, status, has_result, ic_mean, log_dir, is_solidified,
  started_at_utc, updated_at_utc) VALUES
  ('run1', 0, 'factor', 'success', 1, 0.047, '/mnt/f/Dev/RD-Agent-main/log', 1, '2026-01-06T06:10:00+00:00',
   '2026-01-06T06:20:00+00:00'),
  ('run1', 1, 'model', 'failed', 0, NULL, NULL, NULL, '2026-01-06T06:30:00+00:00', NULL),
  ('orphan', 0, NULL, 'running', 0, NULL, NULL, 0, '2026-01-06T06:40:00+00:00', NULL);
INSERT INTO workspaces (workspace_id, task_run_id, loop_id, workspace_role, status, workspace_path) VALUES
  ('ws0', 'run1', 0, 'experiment_workspace', 'success', 'F:\\Dev\\ws0'),
  ('ws1', 'run1', 1, 'experiment_workspace', 'success', '/mnt/f/ws1');
INSERT INTO artifacts (artifact_id, task_run_id, loop_id, workspace_id, artifact_type, name, primary_flag,
  model_type) VALUES
  ('a0', 'run1', 0, 'ws0', 'report', 'qlib_report', 1, NULL),
  ('a1', 'run1', 1, 'ws1', 'report', 'qlib_report', 1, 'GeneralPTNN');
INSERT INTO artifact_files VALUES ('f0', 'a0', 'ws0', 'qlib_res.csv', NULL, 1234, NULL, 'report'),
  ('f1', 'a1', 'ws1', 'ret.pkl', NULL, 99, NULL, 'report');
INSERT INTO factor_registry VALUES ('RESI5', 'Resi($close,5)', '{}', 'b-1', 'ws0', 'run1', 0, NULL);
"""


def expected_schema(table: str) -> pl.Schema:
    cols = dict(SCHEMA[table])
    if table == "loops":
        cols["_rowid"] = pl.Int64
    return pl.Schema(cols)


def test_head_db_gives_canonical_frames(tmp_path: Path):
    db = make_db(tmp_path / "registry.sqlite", HEAD_DDL, rows=HEAD_ROWS)
    snap = read_registry(db)
    for table in SCHEMA:
        assert getattr(snap, table).schema == expected_schema(table), table
    assert snap.loops.columns[:5] == ["task_run_id", "loop_id", "action", "status", "has_result"]
    assert snap.loops.columns[-2:] == ["updated_at_utc", "_rowid"]
    loops = snap.loops.sort("_rowid")
    assert loops["_rowid"].to_list() == [1, 2, 3]
    assert loops["has_result"].to_list() == [1, 0, 0]
    assert loops["is_solidified"].to_list() == [1, None, 0]
    assert loops["ic_mean"].to_list() == [0.047, None, None]
    assert snap.workspaces["workspace_path"].to_list() == ["F:\\Dev\\ws0", "/mnt/f/ws1"]
    assert snap.artifacts.sort("artifact_id")["model_type"].to_list() == [None, "GeneralPTNN"]
    assert snap.factor_registry["factor_name"].to_list() == ["RESI5"]
    assert snap.source_columns["loops"] == tuple(c for c, _ in SCHEMA["loops"])
    assert (snap.max_rowid, snap.max_updated_at) == (3, "2026-01-06T06:40:00+00:00")
    assert registry_max_cursor(db) == (3, "2026-01-06T06:40:00+00:00")


def test_v1_schema_absent_columns_and_tables_come_back_null(tmp_path: Path):
    rows = """
    INSERT INTO loops (task_run_id, loop_id, action, status, has_result, ic_mean, metrics_json, is_solidified,
      updated_at_utc) VALUES ('v1run', 0, 'factor', 'success', 1, 0.05, '{"IC": NaN}', 0, '2025-12-24T10:00:00+00:00');
    INSERT INTO artifacts (artifact_id, task_run_id, loop_id, workspace_id, artifact_type, name, entry_path)
      VALUES ('x', 'v1run', 0, 'w', 'config_snapshot', 'workspace_configs', '/mnt/f/abs/path');
    """
    db = make_db(tmp_path / "registry.sqlite", V1_DDL, rows=rows)
    snap = read_registry(db)
    for table in SCHEMA:
        assert getattr(snap, table).schema == expected_schema(table), table
    loop = snap.loops.row(0, named=True)
    assert loop["log_dir"] is None and loop["ic_mean"] == 0.05 and loop["metrics_json"] == '{"IC": NaN}'
    assert loop["sync_status"] == "pending" and loop["updated_at_utc"] == "2025-12-24T10:00:00+00:00"
    art = snap.artifacts.row(0, named=True)
    assert (
        art["model_type"] is None
        and art["feature_schema_json"] is None
        and art["entry_path"] == "/mnt/f/abs/path"
    )
    assert snap.factor_registry.height == 0
    assert "log_dir" not in snap.source_columns["loops"]
    assert "model_type" not in snap.source_columns["artifacts"]
    assert snap.source_columns["factor_registry"] == ()


def test_loose_sqlite_types_are_normalised(tmp_path: Path):
    ddl = """CREATE TABLE loops (task_run_id, loop_id, has_result, is_solidified, ic_mean, status);"""
    rows = """INSERT INTO loops VALUES ('r', '3', '1', 'true', '0.5', 7), ('r', 4.0, 'yes', NULL, 'n/a', NULL);"""
    snap = read_registry(make_db(tmp_path / "registry.sqlite", ddl, rows=rows))
    loops = snap.loops.sort("_rowid")
    assert loops["loop_id"].to_list() == [3, 4]
    assert loops["has_result"].to_list() == [1, None]
    assert loops["is_solidified"].to_list() == [1, None]
    assert loops["ic_mean"].to_list() == [0.5, None]
    assert loops["status"].to_list() == ["7", None]
    assert snap.task_runs.height == 0 and snap.task_runs.schema == expected_schema("task_runs")


def test_changed_since_selects_new_and_updated_loops_with_their_rows(tmp_path: Path):
    db = make_db(tmp_path / "registry.sqlite", HEAD_DDL, rows=HEAD_ROWS)
    # cursor after the first loop; loop ('run1', 1) has no updated_at but a later rowid
    snap = read_loops_changed_since(db, rowid=1, updated_at="2026-01-06T06:35:00+00:00")
    assert sorted(snap.loops["_rowid"].to_list()) == [2, 3]
    assert snap.workspaces["workspace_id"].to_list() == ["ws1"]
    assert snap.artifacts["artifact_id"].to_list() == ["a1"]
    assert snap.artifact_files["file_id"].to_list() == ["f1"]
    assert snap.task_runs["task_run_id"].to_list() == ["run1"]
    assert snap.factor_registry.height == 0
    assert (snap.max_rowid, snap.max_updated_at) == (
        3,
        "2026-01-06T06:40:00+00:00",
    )  # cursor of the whole table

    con = sqlite3.connect(db)
    con.execute(
        "UPDATE loops SET status='success', updated_at_utc='2026-01-07T00:00:00+00:00' WHERE loop_id=0 "
        "AND task_run_id='run1'"
    )
    con.commit()
    con.close()
    again = read_loops_changed_since(db, rowid=snap.max_rowid, updated_at=snap.max_updated_at)
    assert again.loops.select("task_run_id", "loop_id").rows() == [("run1", 0)]
    assert again.workspaces["workspace_id"].to_list() == ["ws0"]
    assert again.factor_registry["factor_name"].to_list() == ["RESI5"]
    nothing = read_loops_changed_since(db, rowid=again.max_rowid, updated_at=again.max_updated_at)
    assert nothing.loops.height == nothing.workspaces.height == nothing.task_runs.height == 0
    assert nothing.loops.schema == expected_schema("loops")
    only_rowid = read_loops_changed_since(db, rowid=2, updated_at=None)
    assert only_rowid.loops["_rowid"].to_list() == [3]
    # loops named by key come with their rows whatever the cursor (an incremental run's retries)
    named = read_loops_changed_since(
        db, rowid=again.max_rowid, updated_at=again.max_updated_at, also=[("run1", 0)]
    )
    assert named.loops.select("task_run_id", "loop_id").rows() == [("run1", 0)]
    assert named.workspaces["workspace_id"].to_list() == ["ws0"]
    assert named.task_runs["task_run_id"].to_list() == ["run1"]
    both = read_loops_changed_since(db, rowid=2, updated_at=None, also=[("run1", 0), ("nope", 9)])
    assert sorted(both.loops["_rowid"].to_list()) == [1, 3]
    with pytest.raises(ValueError, match="at most"):
        read_loops_changed_since(db, rowid=0, updated_at=None, also=[("r", i) for i in range(MAX_ALSO + 1)])


def test_loops_named_by_key_are_read_from_a_without_rowid_table_too(tmp_path: Path):
    ddl = HEAD_DDL.replace(
        "manifest_path TEXT, created_at_utc TEXT, updated_at_utc TEXT);",
        "manifest_path TEXT, created_at_utc TEXT, updated_at_utc TEXT) WITHOUT ROWID;",
    )
    assert ddl != HEAD_DDL
    db = make_db(tmp_path / "registry.sqlite", ddl, rows=HEAD_ROWS)
    whole = read_registry(db)
    named = read_loops_changed_since(
        db, rowid=whole.max_rowid, updated_at=whole.max_updated_at, also=[("run1", 0)]
    )
    assert named.workspaces["workspace_id"].to_list() == ["ws0"]
    assert named.loops.select("task_run_id", "loop_id").rows() == [("run1", 0)]


def test_changed_since_on_v1_db_without_updated_at_uses_other_timestamps(tmp_path: Path):
    ddl = """CREATE TABLE loops (task_run_id TEXT, loop_id INTEGER, status TEXT, started_at_utc TEXT,
             ended_at_utc TEXT);"""
    rows = """INSERT INTO loops VALUES ('r', 0, 'success', '2025-12-24T01:00:00+00:00', '2025-12-24T05:00:00+00:00'),
              ('r', 1, 'running', '2025-12-24T02:00:00+00:00', NULL);"""
    db = make_db(tmp_path / "registry.sqlite", ddl, rows=rows)
    assert registry_max_cursor(db) == (2, "2025-12-24T05:00:00+00:00")
    snap = read_loops_changed_since(db, rowid=2, updated_at="2025-12-24T03:00:00+00:00")
    assert snap.loops["loop_id"].to_list() == [0]  # ended_at is newer than the cursor


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "does not exist"),
        (b"", "empty"),
        (b"this is a text file, not a database" * 4, "not a SQLite database"),
    ],
)
def test_unreadable_registry_files(tmp_path: Path, content: bytes | None, message: str):
    path = tmp_path / "registry.sqlite"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(RegistryError, match=message) as info:
        read_registry(path)
    assert str(path) in str(info.value)


def test_directory_and_foreign_sqlite_file(tmp_path: Path):
    with pytest.raises(RegistryError, match="not a regular file"):
        read_registry(tmp_path)
    other = make_db(tmp_path / "other.sqlite", "CREATE TABLE notes (x TEXT);")
    with pytest.raises(RegistryError, match="none of the registry tables"):
        read_registry(other)


def test_damaged_database_is_a_registry_error(tmp_path: Path):
    db = make_db(tmp_path / "registry.sqlite", HEAD_DDL, rows=HEAD_ROWS, wal=False)
    data = bytearray(db.read_bytes())
    data[100:4096] = b"\xff" * (4096 - 100)  # wreck the schema page, keep the header
    db.write_bytes(bytes(data))
    with pytest.raises(RegistryError, match="cannot be read"):
        read_registry(db, timeout_s=0.2)


# --------------------------------------------------------------------------- never writing


def test_quiescent_wal_db_is_read_without_creating_side_files(tmp_path: Path):
    db = make_db(tmp_path / "registry.sqlite", HEAD_DDL, rows=HEAD_ROWS)
    before, digest = listing(tmp_path), sha256(db)
    assert before == ["registry.sqlite"]  # the writer closed cleanly: no -wal/-shm
    for _ in range(3):
        assert read_registry(db).loops.height == 3
    registry_max_cursor(db)
    read_loops_changed_since(db, rowid=0, updated_at=None)
    assert listing(tmp_path) == before and sha256(db) == digest


def test_rollback_journal_db_is_read_without_creating_files(tmp_path: Path):
    db = make_db(tmp_path / "registry.sqlite", HEAD_DDL, rows=HEAD_ROWS, wal=False)
    before, digest = listing(tmp_path), sha256(db)
    assert read_registry(db).workspaces.height == 2
    assert listing(tmp_path) == before and sha256(db) == digest


def _uncheckpointed_copy(tmp_path: Path) -> Path:
    """A WAL database whose committed rows live only in the WAL, without -shm (as after a copy)."""
    source = tmp_path / "live"
    source.mkdir()
    db = make_db(source / "registry.sqlite", HEAD_DDL)
    writer = sqlite3.connect(db)
    writer.execute("PRAGMA wal_autocheckpoint=0")
    writer.executescript(HEAD_ROWS)
    writer.commit()
    copy = tmp_path / "copy"
    copy.mkdir()
    shutil.copy2(db, copy / "registry.sqlite")
    shutil.copy2(source / "registry.sqlite-wal", copy / "registry.sqlite-wal")  # committed rows live here
    writer.close()
    return copy / "registry.sqlite"


def test_wal_without_shm_is_read_from_a_private_copy_and_left_untouched(tmp_path: Path):
    db = _uncheckpointed_copy(tmp_path)
    before = {name: sha256(db.parent / name) for name in listing(db.parent)}
    assert sorted(before) == ["registry.sqlite", "registry.sqlite-wal"]
    snap = read_registry(db)
    assert snap.loops.height == 3 and snap.workspaces.height == 2  # the rows only the WAL holds
    registry_max_cursor(db)
    read_loops_changed_since(db, rowid=0, updated_at=None)
    assert {name: sha256(db.parent / name) for name in listing(db.parent)} == before


def test_empty_leftover_wal_is_read_at_once(tmp_path: Path):
    db = make_db(tmp_path / "registry.sqlite", HEAD_DDL, rows=HEAD_ROWS)
    (tmp_path / "registry.sqlite-wal").write_bytes(b"")  # a crashed writer's leftover, no -shm
    started = time.monotonic()
    assert read_registry(db, timeout_s=5).loops.height == 3
    assert time.monotonic() - started < 2
    assert listing(tmp_path) == ["registry.sqlite", "registry.sqlite-wal"]


def test_live_writer_side_files_are_byte_for_byte_unchanged(tmp_path: Path):
    """A writer holds the database open (its -wal and -shm exist); reading changes none of the three files."""
    db = make_db(tmp_path / "registry.sqlite", HEAD_DDL)
    writer = sqlite3.connect(db, isolation_level=None)
    writer.execute("PRAGMA wal_autocheckpoint=0")
    writer.executescript("BEGIN;" + HEAD_ROWS + "COMMIT;")
    # a last commit after the writer's own read marks: an in-place reader would record a new one in -shm
    writer.execute("UPDATE loops SET status = status")
    try:
        names = listing(tmp_path)
        assert names == ["registry.sqlite", "registry.sqlite-shm", "registry.sqlite-wal"]
        before = {name: (tmp_path / name).read_bytes() for name in names}
        for _ in range(3):
            snap = read_registry(db)
            assert snap.loops.height == 3
        registry_max_cursor(db)
        assert {name: (tmp_path / name).read_bytes() for name in listing(tmp_path)} == before
    finally:
        writer.close()


WRITER = textwrap.dedent(
    """
    import os, sqlite3, sys, time
    db, ready, stop, mode = sys.argv[1:5]

    def connect():
        con = sqlite3.connect(db, timeout=10, isolation_level=None)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=NORMAL")
        return con

    def pair(con, loop_id, status):
        ts = "2026-01-06T06:%02d:%02d+00:00" % (loop_id // 60 % 60, loop_id % 60)
        con.execute("INSERT INTO loops (task_run_id, loop_id, status, updated_at_utc) VALUES ('w', ?, ?, ?)",
                    (loop_id, status, ts))
        con.execute("INSERT INTO workspaces (workspace_id, task_run_id, loop_id, status, workspace_path) "
                    "VALUES (?, 'w', ?, ?, ?)", ("ws%d" % loop_id, loop_id, status, "/mnt/f/ws/%d" % loop_id))

    i = 0
    con = connect()
    open(ready, "w").close()
    while not os.path.exists(stop):
        i += 1
        if mode == "per-write":                 # RD-Agent opens a new connection for every write
            con.close()
            time.sleep(0.003)                   # quiescent gaps: the reader uses its lock-free path
            con = connect()
        con.execute("BEGIN IMMEDIATE")          # a loop and its workspace in one short transaction
        pair(con, i, "running")
        con.execute("COMMIT")
        con.execute("BEGIN IMMEDIATE")          # both tables updated together
        con.execute("UPDATE loops SET status=? WHERE task_run_id='w' AND loop_id < 100000", ("v%d" % i,))
        con.execute("UPDATE workspaces SET status=? WHERE task_run_id='w' AND loop_id < 100000", ("v%d" % i,))
        con.execute("COMMIT")
        if i % 15 == 1:                         # long open write transactions (from the start), like the backfill tool
            con.execute("BEGIN IMMEDIATE")
            for j in range(5):
                pair(con, 100000 + i * 10 + j, "long")
                time.sleep(0.05)
            con.execute("COMMIT")
    con.close()
    print(i)
    """
)


def check_consistent(snap) -> None:
    """Writer invariants: every loop has its workspace with the same status; long batches are whole."""
    loops = dict(snap.loops.filter(pl.col("task_run_id") == "w").select("loop_id", "status").rows())
    spaces = dict(snap.workspaces.filter(pl.col("task_run_id") == "w").select("loop_id", "status").rows())
    assert loops == spaces
    batches: dict[int, int] = {}
    for loop_id in loops:
        if loop_id >= 100000:
            batches[loop_id // 10] = batches.get(loop_id // 10, 0) + 1
    assert all(count == 5 for count in batches.values()), batches


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["one-connection", "per-write"])
def test_reader_is_consistent_and_harmless_next_to_a_writer_process(tmp_path: Path, mode: str):
    db = make_db(tmp_path / "registry.sqlite", HEAD_DDL)
    ready, stop = tmp_path / "ready", tmp_path / "stop"
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(db), str(ready), str(stop), mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not ready.exists():
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline, "writer did not start"
            time.sleep(0.01)
        seen_loops = []
        for _ in range(40):
            snap = read_registry(db)
            check_consistent(snap)
            incremental = read_loops_changed_since(db, rowid=0, updated_at=None)
            check_consistent(incremental)
            seen_loops.append(snap.loops.height)
            time.sleep(0.01)
        assert seen_loops[-1] > 0 and seen_loops == sorted(seen_loops)  # snapshots only ever grow
    finally:
        stop.touch()
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    iterations = int(out.strip())
    assert iterations > 0

    for name in ("ready", "stop"):
        (tmp_path / name).unlink()
    before, digest = listing(tmp_path), sha256(db)
    assert before == ["registry.sqlite"]  # the writer closed last and removed its side files
    final = read_registry(db)
    check_consistent(final)
    assert final.loops.filter(pl.col("loop_id") < 100000).height == iterations
    assert final.loops.filter(pl.col("status") == "long").height == 5 * ((iterations + 14) // 15)
    read_loops_changed_since(db, rowid=final.max_rowid - 3, updated_at=final.max_updated_at)
    assert listing(tmp_path) == before and sha256(db) == digest
