"""Helpers of the cleanup tests (fixtures using them live in conftest.py).

The copy keeps hard links (the sample hard-links shared source data into factor workspaces, and
cleanup must treat those as shared) and symbolic links as links, and keeps every mtime.
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


@dataclass
class Env:
    """One test's private archived sample: installation `rd`, archive `ar`, scratch folder `tmp`."""

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


def files_under(root: Path) -> dict[str, bytes]:
    """Relative path → bytes of every regular file (links not followed)."""
    out = {}
    for dirpath, _dirs, names in os.walk(root, followlinks=False):
        for name in names:
            path = Path(dirpath) / name
            if not path.is_symlink():
                out[path.relative_to(root).as_posix()] = path.read_bytes()
    return out
