"""A full, over-quota or failing disk: one line, a distinct exit code, the run recorded, nothing half-stored.

(a) runs out of space for real on a small tmpfs (root only; skipped where mounting is refused);
(b) and (c) use the storage layer's fault seam (`WORKBENCH_FAULTS`, workbench/archive/faults.py)
for what a small file system cannot produce (EIO, EDQUOT) and to stop a cleanup at an exact move.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import duckdb
import pytest
from cleanup_helpers import Env, files_under

from workbench.archive.store import ObjectStore
from workbench.archive.verify import verify_archive


def cli(*args: str, faults: str | None = None) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k != "WORKBENCH_FAULTS"}
    if faults:
        environ["WORKBENCH_FAULTS"] = faults
    return subprocess.run(
        [sys.executable, "-m", "workbench.cli", *args],
        capture_output=True,
        text=True,
        env=environ,
        timeout=600,
    )


def archive_cli(rd: Path, ar: Path, faults: str | None = None) -> subprocess.CompletedProcess[str]:
    return cli("archive", "--rdagent-root", str(rd), "--archive", str(ar), "--no-progress", faults=faults)


def assert_one_line_error(done: subprocess.CompletedProcess[str], code: int, *needles: str) -> str:
    assert done.returncode == code, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert "Traceback" not in done.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def levels(ar: Path) -> dict[str, int]:
    con = duckdb.connect(str(ar / "catalog.duckdb"), read_only=True)
    try:
        return dict(con.execute("SELECT id, archiving_level FROM aistock_experiments").fetchall())
    finally:
        con.close()


def assert_level2_complete(ar: Path) -> None:
    """verify clean, and every level-2 experiment has every stored file's object, hashing right."""
    report = verify_archive(ar, read_data=True)
    assert not report.damaged and not report.missing
    con = duckdb.connect(str(ar / "catalog.duckdb"), read_only=True)
    try:
        rows = con.execute(
            "SELECT f.experiment_id, f.sha256, o.storage_key FROM wb_stored_files f JOIN aistock_experiments e "
            "ON e.id = f.experiment_id LEFT JOIN wb_objects o ON o.sha256 = f.sha256 WHERE e.archiving_level = 2"
        ).fetchall()
        store = ObjectStore(ar / "objects")
        bad = [(e, sha) for e, sha, key in rows if key is None or not store.verify(key, sha)]
    finally:
        con.close()
    assert not bad


def failed_run(ar: Path, *phrases: str) -> dict:
    """The one run file of the archive says failed with the reason; `workbench status --json` agrees."""
    files = sorted((ar / "runs").glob("*.json"))
    assert len(files) == 1
    data = json.loads(files[0].read_text(encoding="utf-8"))
    assert data["status"] == "failed" and data["error"]
    for phrase in phrases:
        assert phrase in data["error"]
    status = cli("status", "--archive", str(ar), "--json")
    assert status.returncode == 0, status.stderr
    runs = {r["run_id"]: r for r in json.loads(status.stdout)["runs"]}
    assert runs[data["run_id"]]["status"] == "failed" and runs[data["run_id"]]["error"] == data["error"]
    text = cli("status", "--archive", str(ar)).stdout
    assert f"failed: {data['error']}" in text
    return data


@pytest.fixture()
def tmpfs(tmp_path: Path) -> Iterator[Callable[[str, int], Path]]:
    """Mount small tmpfs file systems (root only); unmounted at the end."""
    mounted: list[Path] = []

    def mount(name: str, size_kib: int) -> Path:
        where = tmp_path / name
        where.mkdir()
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size_kib}k", "tmpfs", str(where)],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here (needs root and mount permission): {done.stderr.strip()}")
        mounted.append(where)
        return where

    yield mount
    for where in reversed(mounted):
        subprocess.run(["umount", "-l", str(where)], check=False)


def used_kib(path: Path) -> int:
    st = os.statvfs(path)
    return (st.f_blocks - st.f_bfree) * st.f_frsize // 1024


def test_archive_on_a_full_file_system_fails_cleanly_and_a_rerun_completes(
    rd_root: Path, tmpfs: Callable[[str, int], Path]
) -> None:
    # how much an archive of the sample needs, on the same kind of file system
    big = tmpfs("big", 256 * 1024)
    reference = archive_cli(rd_root, big / "ar")
    assert reference.returncode in (0, 1), reference.stderr  # 1: the sample's deliberately broken files
    snapshots_kib = sum(p.stat().st_size for p in (big / "ar" / "snapshots").glob("*")) // 1024
    needed = used_kib(big) - snapshots_kib  # the run's own writes; the snapshot comes after it
    want = levels(big / "ar")
    assert sum(1 for v in want.values() if v == 2) > 3

    # the catalog file grows in large steps and keeps free blocks, so what a run needs is well below its final use: 30 % stops it part-way
    small = tmpfs("small", needed * 3 // 10)
    ar = small / "ar"
    done = archive_cli(rd_root, ar)
    line = assert_one_line_error(done, 10, "no space left on device", str(small), "free of")
    data = failed_run(ar, "no space left on device")
    assert data["error"] in line
    assert_level2_complete(ar)
    assert not (ar / "tmp").exists() or not any((ar / "tmp").iterdir())
    assert levels(ar) != want  # it did stop part-way

    subprocess.run(["mount", "-o", f"remount,size={needed * 3}k", str(small)], check=True)
    again = archive_cli(rd_root, ar)
    assert again.returncode == reference.returncode, again.stderr
    assert levels(ar) == want
    assert_level2_complete(ar)
    status = json.loads(cli("status", "--archive", str(ar), "--json").stdout)
    assert {r["run_id"]: r["status"] for r in status["runs"]}[data["run_id"]] == "failed"
    con = duckdb.connect(str(ar / "catalog.duckdb"), read_only=True)
    try:  # the rerun wrote the failed run's outcome into the catalog if the full disk had kept it out
        assert con.execute(
            "SELECT status FROM wb_archive_runs WHERE run_id = ?", [data["run_id"]]
        ).fetchall() == [("failed",)]
    finally:
        con.close()


@pytest.mark.parametrize(
    ("fault", "code", "phrase"),
    [
        ("eio:objects:after=3", 11, "I/O error (EIO)"),
        ("edquot:objects:after=3", 10, "disk quota exceeded (EDQUOT)"),
        ("enospc:objects:after=0", 10, "no space left on device (ENOSPC)"),
    ],
)
def test_injected_storage_fault_during_an_archive_run(
    rd_root: Path, tmp_path: Path, fault: str, code: int, phrase: str
) -> None:
    reference = archive_cli(rd_root, tmp_path / "reference")
    ar = tmp_path / "ar"
    done = archive_cli(rd_root, ar, faults=fault)
    assert_one_line_error(done, code, phrase, str(ar / "tmp"))
    failed_run(ar, phrase)
    assert_level2_complete(ar)
    again = archive_cli(rd_root, ar)
    assert again.returncode == reference.returncode, again.stderr
    assert levels(ar) == levels(tmp_path / "reference")
    assert_level2_complete(ar)


def test_injected_fault_while_writing_the_run_file_records_the_run_in_the_catalog(
    rd_root: Path, tmp_path: Path
) -> None:
    ar = tmp_path / "ar"
    done = archive_cli(rd_root, ar, faults="enospc:runs")
    assert_one_line_error(done, 10, "no space left on device", str(ar / "runs"))
    con = duckdb.connect(str(ar / "catalog.duckdb"), read_only=True)
    try:
        rows = con.execute(
            "SELECT status, json_extract_string(summary_json, '$.error') FROM wb_archive_runs"
        ).fetchall()
    finally:
        con.close()
    assert len(rows) == 1 and rows[0][0] == "failed" and "no space left" in rows[0][1]


@pytest.mark.parametrize(
    ("fault", "stage", "batch"),
    [
        ("enospc:journal:after=2", "full", "2"),
        ("enospc:quarantine:after=3", "conservative", "2"),
        ("eio:record:after=1", "full", "2"),  # the second batch's record fails
        ("eio:record", "full", ""),  # default batches: the whole (one) batch is moved, unrecorded
    ],
)
def test_storage_fault_during_cleanup_confirm_loses_nothing(
    env: Env, fault: str, stage: str, batch: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WORKBENCH_CLEANUP_BATCH", batch)
    before = files_under(env.workspace_root)
    done = cli(
        "cleanup",
        "--rdagent-root",
        str(env.rd),
        "--archive",
        str(env.ar),
        "--stage",
        stage,
        "--confirm",
        "--yes",
        faults=fault,
    )
    code = 11 if fault.startswith("eio") else 10
    line = assert_one_line_error(done, code, "workbench cleanup undo")
    plan_id = line.split("workbench cleanup undo ")[1].split("`")[0]
    quarantine = env.rd / ".workbench_quarantine" / plan_id
    recorded = {
        r[0] for r in env.query("SELECT quarantine_path FROM wb_deletions WHERE plan_id = ?", [plan_id])
    }
    journal = [json.loads(x) for x in (quarantine / "journal.jsonl").read_text(encoding="utf-8").splitlines()]
    moved = {e["quarantine"] for e in journal if os.path.lexists(e["quarantine"])}
    assert moved, "the fault came before anything was moved"
    if not fault.startswith("eio:record"):
        assert moved <= recorded  # every entry that moved is recorded
    undo = cli("cleanup", "undo", plan_id, "--archive", str(env.ar))
    assert undo.returncode == 0, undo.stderr
    assert files_under(env.workspace_root) == before
