"""Hostile workspaces: FIFOs, links out of the root, escaping registry paths, names and trees the
archive cannot hold, files changing under the job. One bad loop never stops the run, nothing
outside the installation is read, and nothing the archive cannot hold reaches level 2."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from workbench.archive.files import walk_workspace
from workbench.archive.pipeline import archive
from workbench.archive.store import ObjectStore
from workbench.errors import InputFileError, VerificationError
from workbench.rdagent.files.reading import read_file_bytes

SECRET = "TOPSECRET-outside-the-installation"


def rows(archive_dir: Path, sql: str, params: list | None = None) -> list[tuple]:
    con = duckdb.connect(str(archive_dir / "catalog.duckdb"), read_only=True)
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


def level2_workspace(archive_dir: Path) -> tuple[str, Path]:
    """(experiment id, workspace folder) of one model experiment archived at level 2."""
    found = rows(
        archive_dir,
        "SELECT id, workspace_dir FROM aistock_experiments WHERE archiving_level = 2 "
        "AND action = 'model' ORDER BY id LIMIT 1",
    )
    assert found, "the sample should have a level-2 model experiment"
    return found[0][0], Path(found[0][1])


def state_of(archive_dir: Path, experiment_id: str) -> tuple[str, int, str | None]:
    return rows(
        archive_dir,
        "SELECT state, archiving_level, last_error FROM wb_loop_state WHERE experiment_id = ?",
        [experiment_id],
    )[0]


def catalog_mentions(archive_dir: Path, text: str) -> bool:
    """Whether `text` appears in any experiment row or any stored inline object."""
    hits = rows(
        archive_dir,
        "SELECT count(*) FROM aistock_experiments WHERE contains(CAST(metrics_json AS VARCHAR) "
        "|| coalesce(CAST(feedback_json AS VARCHAR), ''), ?)",
        [text],
    )[0][0]
    inline = rows(
        archive_dir,
        "SELECT count(*) FROM wb_inline_objects WHERE contains(coalesce(try(decode(data)), ''), ?)",
        [text],
    )[0][0]
    return bool(hits or inline)


def outside_secret(tmp_path: Path) -> Path:
    secret = tmp_path / "outside" / "secret.json"
    secret.parent.mkdir(exist_ok=True)
    secret.write_text('{"decision": true, "reason": "' + SECRET + '", "ic": 0.987654}')
    return secret


def test_fifos_never_hang_the_run(rd_root: Path, archive_dir: Path, tmp_path: Path) -> None:
    archive(rd_root, archive=archive_dir, progress=False)
    experiment, workspace = level2_workspace(archive_dir)
    os.mkfifo(workspace / "notes.txt")  # nobody will ever write to it: opening it would block for good
    (workspace / "feedback.json").unlink()
    os.mkfifo(workspace / "feedback.json")
    for target in (archive_dir, tmp_path / "fresh"):  # a rerun, and a first run over the FIFOs
        code = (
            f"from workbench.archive.pipeline import archive\n"
            f"archive({str(rd_root)!r}, archive={str(target)!r}, mode='full', progress=False)"
        )
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr  # a run with failed loops still ends normally
    state, level, error = state_of(archive_dir, experiment)
    # the loop failed this time; the archive keeps its earlier level-2 copy, which is still whole
    assert (
        (state, level) == ("failed", 2)
        and "feedback.json" in error
        and "not a regular file (a FIFO)" in error
    )
    assert state_of(tmp_path / "fresh", experiment)[:2] == ("failed", 1)
    classes = {f.rel_path: f.file_class for f in walk_workspace(workspace)}
    assert classes["notes.txt"] == classes["feedback.json"] == "special"  # listed, never opened


def test_links_out_of_the_workspace_are_never_read(rd_root: Path, archive_dir: Path, tmp_path: Path) -> None:
    archive(rd_root, archive=archive_dir, progress=False)
    experiment, workspace = level2_workspace(archive_dir)
    secret = outside_secret(tmp_path)
    (workspace / "feedback.json").unlink()
    (workspace / "feedback.json").symlink_to(secret)
    (workspace / "extra_secret.yaml").symlink_to(secret)
    summary = archive(rd_root, archive=archive_dir, progress=False)
    assert summary.failed
    state, _level, error = state_of(archive_dir, experiment)
    assert state == "failed" and "feedback.json: is a symbolic link" in error
    assert not catalog_mentions(archive_dir, SECRET)
    # a workspace seen first with the link never reaches level 2
    fresh = archive(rd_root, archive=tmp_path / "fresh", progress=False)
    assert fresh.failed and state_of(tmp_path / "fresh", experiment)[:2] == ("failed", 1)
    assert not catalog_mentions(tmp_path / "fresh", SECRET)
    assert secret.read_text().startswith('{"decision"')  # untouched


def test_registry_paths_leaving_the_workspace_root_are_refused(
    rd_root: Path, archive_dir: Path, tmp_path: Path
) -> None:
    archive(rd_root, archive=archive_dir, progress=False)
    experiment, workspace = level2_workspace(archive_dir)
    workspace_id = rows(
        archive_dir, "SELECT workspace_id FROM aistock_experiments WHERE id = ?", [experiment]
    )[0][0]
    outside = tmp_path / "elsewhere" / workspace.name
    outside.parent.mkdir()
    os.rename(workspace, outside)
    (outside / "extra_secret.yaml").write_text(SECRET)
    workspace.symlink_to(outside)  # the registered folder is now a link to a place outside the root
    other = rows(
        archive_dir,
        "SELECT workspace_id FROM aistock_experiments WHERE archiving_level = 2 "
        "AND id <> ? ORDER BY id LIMIT 1",
        [experiment],
    )[0][0]
    registry = sqlite3.connect(rd_root / "RDagentDB" / "registry.sqlite")
    with registry:
        registry.execute(
            "UPDATE workspaces SET workspace_path = ? WHERE workspace_id = ?",
            (
                str(
                    rd_root
                    / "git_ignore_folder"
                    / "RD-Agent_workspace"
                    / ".."
                    / ".."
                    / ".."
                    / "elsewhere"
                    / workspace.name
                ),
                other,
            ),
        )
    registry.close()
    summary = archive(rd_root, archive=archive_dir, mode="full", progress=False)
    messages = {e["experiment_id"]: e["message"] for e in summary.errors if e["stage"] == "scan"}
    assert "is a symbolic link; links are never followed" in messages[experiment]
    other_experiment = rows(
        archive_dir, "SELECT id FROM aistock_experiments WHERE workspace_id = ?", [other]
    )[0][0]
    assert "contains '..'; refused" in messages[other_experiment]
    assert not catalog_mentions(archive_dir, SECRET)
    assert rows(archive_dir, "SELECT count(*) FROM wb_stored_files WHERE rel_path = 'extra_secret.yaml'") == [
        (0,)
    ]
    assert state_of(archive_dir, experiment)[0] == state_of(archive_dir, other_experiment)[0] == "failed"
    assert workspace_id


def test_names_the_archive_cannot_hold_block_level2_and_cleanup(rd_root: Path, archive_dir: Path) -> None:
    from workbench.cleanup import cleanup

    archive(rd_root, archive=archive_dir, progress=False)
    experiment, workspace = level2_workspace(archive_dir)
    (workspace / "sub").mkdir(exist_ok=True)
    bad = os.fsencode(str(workspace / "sub")) + b"/notes\xff.yaml"
    with open(bad, "wb") as handle:
        handle.write(b"a: 1\n")
    summary = archive(rd_root, archive=archive_dir, progress=False)  # does not crash on the name
    assert summary.failed
    state, _level, error = state_of(archive_dir, experiment)
    assert state == "failed" and "not valid UTF-8" in error and "notes\\xff.yaml" in error
    plan = cleanup(rd_root, archive=archive_dir, stage="full", dry_run=True)
    listed = {item.path for item in plan.plan.items}
    assert str(workspace) not in listed and os.path.exists(bad)


def test_a_change_deep_in_the_tree_is_archived_again(rd_root: Path, archive_dir: Path) -> None:
    archive(rd_root, archive=archive_dir, progress=False)
    experiment, workspace = level2_workspace(archive_dir)
    nested = next(
        p
        for p in workspace.rglob("*")
        if p.is_file()
        and len(p.relative_to(workspace).parts) >= 3
        and p.suffix in ("", ".yaml", ".txt", ".json")
        and not p.is_symlink()
    )
    nested.write_text(nested.read_text() + "\nchanged\n")
    summary = archive(rd_root, archive=archive_dir, mode="full", progress=False)
    rel = nested.relative_to(workspace).as_posix()
    stored_size = rows(
        archive_dir,
        "SELECT size_bytes FROM wb_stored_files WHERE experiment_id = ? AND rel_path = ?",
        [experiment, rel],
    )
    assert stored_size == [(nested.stat().st_size,)], summary.format()


def test_deep_trees_are_walked_without_recursion(tmp_path: Path) -> None:
    folder = tmp_path / "ws"
    deep = str(folder)
    os.mkdir(deep)
    for _ in range(1200):  # os.makedirs and pathlib recurse; build it level by level
        deep += "/d"
        os.mkdir(deep)
    with open(deep + "/leaf.yaml", "w") as handle:
        handle.write("x: 1\n")
    try:
        found = list(walk_workspace(folder))
        assert [f.rel_path for f in found] == ["d/" * 1200 + "leaf.yaml"] and found[0].file_class == "key"
    finally:  # shutil.rmtree (pytest's clean-up) recurses too: take the tree down level by level
        os.unlink(deep + "/leaf.yaml")
        while deep != str(folder):
            os.rmdir(deep)
            deep = deep[: -len("/d")]


def test_a_large_unknown_file_is_heavy_wherever_it_is(tmp_path: Path) -> None:
    big = tmp_path / "notes.log"
    with open(big, "wb") as handle:
        handle.truncate(300 * 1024 * 1024)  # sparse: no disk used
    (entry,) = list(walk_workspace(tmp_path))
    assert entry.file_class == "heavy"


def test_a_file_changed_after_the_scan_is_not_stored(tmp_path: Path) -> None:
    store = ObjectStore(tmp_path / "objects", tmp=tmp_path / "tmp")
    source = tmp_path / "conf.yaml"
    source.write_text("a: 1\n" * 300)
    scanned = source.stat()
    source.write_text("")  # truncated by its writer after the scan
    with pytest.raises(VerificationError, match="changed after the workspace was scanned"):
        store.put_file(source, expect=(scanned.st_size, scanned.st_mtime_ns))
    now = source.stat()
    assert store.put_file(source, expect=(now.st_size, now.st_mtime_ns)).size_bytes == 0


def test_readers_refuse_links_fifos_and_devices(tmp_path: Path) -> None:
    secret = outside_secret(tmp_path)
    link = tmp_path / "feedback.json"
    link.symlink_to(secret)
    with pytest.raises(InputFileError, match="symbolic link"):
        read_file_bytes(link)
    fifo = tmp_path / "ret.pkl"
    os.mkfifo(fifo)
    with pytest.raises(InputFileError, match="not a regular file \\(a FIFO\\)"):
        read_file_bytes(fifo)
    with pytest.raises(InputFileError, match="a character device"):
        read_file_bytes(Path("/dev/zero"), follow_links=True)
    assert read_file_bytes(link, follow_links=True).startswith(
        b'{"decision"'
    )  # a file a user names may be a link
