"""Which files of a workspace are kept, which are heavy, which are noise (spec §3.6).

The classification drives both archiving (what level 2 must hold) and cleanup (what the
conservative stage may delete). Links are never followed: a symbolic link is recorded as a link
and neither stored nor descended into; hard-linked shared source data is heavy.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

FileClass = Literal["key", "heavy", "noise", "link"]

HEAVY_NAMES = {"combined_factors_df.parquet", "result.h5"}
NOISE_NAMES = {"execution.lock"}
NOISE_DIRS = {"__pycache__", ".ipynb_checkpoints"}
MLRUNS_KEPT_DIRS = {"metrics", "params", "tags"}
SHARED_DATA_SUFFIXES = {".h5", ".hdf5", ".hdf", ".parquet", ".pkl", ".csv", ".bin"}
# results and metadata are key even when hard-linked (e.g. by a dedupe or backup tool)
KEY_NAMES = {"qlib_res.csv", "ret.pkl", "ret_schema.parquet", "ret_schema.json", "signals.parquet", "signals.json",
             "model.pkl", "params.pkl"}
KEY_SUFFIXES = {".json", ".yaml", ".yml", ".py", ".md"}
LARGE_UNKNOWN_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True)
class WorkspaceFile:
    rel_path: str
    size_bytes: int
    mtime_ns: int
    file_class: FileClass
    reason: str
    link_target: str | None = None


def classify(rel_path: str, st: os.stat_result) -> tuple[FileClass, str]:
    """The class of one entry and the rule that decided it."""
    parts = rel_path.split("/")
    name = parts[-1]
    if stat.S_ISLNK(st.st_mode):
        return "link", "symbolic link (never followed)"
    if any(p in NOISE_DIRS for p in parts[:-1]) or name.endswith(".pyc"):
        return "noise", "python cache"
    if name in NOISE_NAMES:
        return "noise", "lock file"
    if parts[0] == "mlruns":
        return _classify_mlruns(parts)
    if name in HEAVY_NAMES:
        return "heavy", f"heavy intermediate ({name})"
    if name in KEY_NAMES or os.path.splitext(name)[1].lower() in KEY_SUFFIXES:
        return "key", "workspace file"
    if st.st_nlink > 1 and os.path.splitext(name)[1].lower() in SHARED_DATA_SUFFIXES:
        return "heavy", "hard link to shared source data"
    if st.st_size > LARGE_UNKNOWN_BYTES and len(parts) > 1:
        return "heavy", "large nested file"
    return "key", "workspace file"


def _classify_mlruns(parts: list[str]) -> tuple[FileClass, str]:
    name = parts[-1]
    if ".trash" in parts:
        return "heavy", "mlruns trash"
    if name == "params.pkl" and "artifacts" in parts:
        return "key", "trained model (mlruns params.pkl)"
    if name == "meta.yaml":
        return "key", "mlruns metadata"
    if len(parts) >= 4 and parts[-2] in MLRUNS_KEPT_DIRS:
        return "key", f"mlruns {parts[-2]} file"
    return "heavy", "mlruns intermediate"


def walk_workspace(root: Path) -> Iterator[WorkspaceFile]:
    """Every file under `root` without following links, with its class; sorted for stable output."""
    yield from _walk(str(root), "")


def _walk(directory: str, prefix: str) -> Iterator[WorkspaceFile]:
    """`os.scandir` recursion: one lstat per entry, no Path objects (this runs for every file)."""
    try:
        entries = sorted(os.scandir(directory), key=lambda e: e.name)
    except OSError:
        return
    subdirs = []
    for entry in entries:
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        rel = prefix + entry.name
        if stat.S_ISDIR(st.st_mode):
            subdirs.append((entry.path, rel + "/"))
            continue
        file_class, reason = classify(rel, st)
        target = os.readlink(entry.path) if stat.S_ISLNK(st.st_mode) else None
        yield WorkspaceFile(rel, st.st_size, st.st_mtime_ns, file_class, reason, target)
    for path, rel_prefix in subdirs:
        yield from _walk(path, rel_prefix)
