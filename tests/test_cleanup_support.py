"""Shared set-up of the cleanup tests: one archived sample per session, copied per test.

The copy keeps hard links (the sample hard-links shared source data into factor workspaces, and
cleanup must treat those as shared) and symbolic links as links, and keeps every mtime.
Other cleanup test modules import the fixtures from here.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import stat
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest

from workbench.archive.pipeline import archive
from workbench.sample.generate import generate_sample

_TEMPLATE: dict[str, Path] = {}


def copy_tree_keeping_links(source: Path, target: Path) -> None:
    """Copy a tree: symlinks stay symlinks, hard-linked files stay hard-linked, mtimes kept."""
    first_copy: dict[tuple[int, int], Path] = {}
    target.mkdir(parents=True)
    for dirpath, dirnames, filenames in os.walk(source, followlinks=False):
        base = Path(dirpath)
        out = target / base.relative_to(source)
        for name in list(dirnames):
            if (base / name).is_symlink():
                os.symlink(os.readlink(base / name), out / name)
                dirnames.remove(name)
            else:
                (out / name).mkdir()
        for name in filenames:
            src, dst = base / name, out / name
            st = os.lstat(src)
            if stat.S_ISLNK(st.st_mode):
                os.symlink(os.readlink(src), dst)
            elif st.st_nlink > 1 and (st.st_dev, st.st_ino) in first_copy:
                os.link(first_copy[(st.st_dev, st.st_ino)], dst)
            else:
                shutil.copy2(src, dst)
                first_copy[(st.st_dev, st.st_ino)] = dst


@pytest.fixture(scope="session")
def cleanup_template(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A sample installation archived in full, made once per session."""
    if not _TEMPLATE:
        base = tmp_path_factory.mktemp("cleanup_template")
        generate_sample(base / "rd", seed=0)
        archive(base / "rd", archive=base / "ar", mode="full", progress=False)
        _TEMPLATE.update(rd=base / "rd", ar=base / "ar")
    return _TEMPLATE


@dataclass
class Env:
    rd: Path
    ar: Path
    tmp: Path

    @property
    def workspace_root(self) -> Path:
        return self.rd / "git_ignore_folder" / "RD-Agent_workspace"

    @property
    def manifest(self) -> dict:
        return json.loads((self.rd / "sample_manifest.json").read_text(encoding="utf-8"))

    def query(self, sql: str, params: list | None = None) -> list[tuple]:
        con = duckdb.connect(str(self.ar / "catalog.duckdb"), read_only=True)
        try:
            return con.execute(sql, params or []).fetchall()
        finally:
            con.close()

    def experiments(self) -> dict[str, dict]:
        rows = self.query(
            "SELECT id, task_run_id, loop_id, workspace_id, archiving_level, workspace_state, "
            "file_refs_json FROM aistock_experiments"
        )
        keys = ["id", "task_run_id", "loop_id", "workspace_id", "level", "state", "file_refs"]
        return {r[0]: dict(zip(keys, r, strict=True)) for r in rows}

    def level2(self) -> dict[str, dict]:
        return {k: v for k, v in self.experiments().items() if v["level"] == 2}

    def registry_execute(self, sql: str, params: list | None = None) -> None:
        con = sqlite3.connect(self.rd / "RDagentDB" / "registry.sqlite")
        try:
            con.execute(sql, params or [])
            con.commit()
        finally:
            con.close()


@pytest.fixture()
def env(cleanup_template: dict[str, Path], tmp_path: Path) -> Env:
    """A private copy of the archived sample (installation and archive) for one test."""
    copy_tree_keeping_links(cleanup_template["rd"], tmp_path / "rd")
    shutil.copytree(cleanup_template["ar"], tmp_path / "ar")
    return Env(tmp_path / "rd", tmp_path / "ar", tmp_path)


def files_under(root: Path) -> dict[str, bytes]:
    """Relative path → bytes of every regular file (links not followed)."""
    out = {}
    for dirpath, _dirs, names in os.walk(root, followlinks=False):
        for name in names:
            path = Path(dirpath) / name
            if not path.is_symlink():
                out[path.relative_to(root).as_posix()] = path.read_bytes()
    return out


def test_copy_keeps_hard_links_and_symlinks(tmp_path: Path) -> None:
    source = tmp_path / "src"
    (source / "a").mkdir(parents=True)
    (source / "data.h5").write_bytes(b"shared")
    os.link(source / "data.h5", source / "a" / "data.h5")
    os.symlink("../data.h5", source / "a" / "link.h5")
    copy_tree_keeping_links(source, tmp_path / "dst")
    copied = tmp_path / "dst"
    assert os.stat(copied / "data.h5").st_ino == os.stat(copied / "a" / "data.h5").st_ino
    assert os.readlink(copied / "a" / "link.h5") == "../data.h5"
