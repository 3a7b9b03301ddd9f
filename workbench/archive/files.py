"""Which files of a workspace are kept, which are heavy, which are noise (spec §3.6).

The classification drives both archiving (what level 2 must hold) and cleanup (what the
conservative stage may delete). Links are never followed: a symbolic link is recorded as a link
and neither stored nor descended into; hard-linked shared source data is heavy. FIFOs, sockets and
devices are `special`: listed, never opened. What cannot be listed or read back by name (a folder
without permission, an entry whose name is not UTF-8) is `unreadable`: the archive cannot hold it,
so it blocks level 2 and cleanup never removes the folder around it.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

FileClass = Literal["key", "heavy", "noise", "link", "special", "unreadable"]

HEAVY_NAMES = {"combined_factors_df.parquet", "result.h5"}
NOISE_NAMES = {"execution.lock"}
NOISE_DIRS = {"__pycache__", ".ipynb_checkpoints"}
MLRUNS_KEPT_DIRS = {"metrics", "params", "tags"}
SHARED_DATA_SUFFIXES = {".h5", ".hdf5", ".hdf", ".parquet", ".pkl", ".csv", ".bin"}
# results and metadata are key even when hard-linked (e.g. by a dedupe or backup tool)
KEY_NAMES = {
    "qlib_res.csv",
    "ret.pkl",
    "ret_schema.parquet",
    "ret_schema.json",
    "signals.parquet",
    "signals.json",
    "model.pkl",
    "params.pkl",
}
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
    if not stat.S_ISREG(st.st_mode):
        return "special", "FIFO, socket or device (never opened)"
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
    if st.st_size > LARGE_UNKNOWN_BYTES:
        return "heavy", "large file of no known kind"
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
    """Every entry under `root` without following links, with its class; sorted for stable output.

    Depth-first (a folder's files, then its sub-folders in name order) with an explicit stack, so
    a pathologically deep tree cannot exhaust Python's recursion limit.
    """
    stack: list[tuple[str, str]] = [(str(root), "")]
    while stack:
        directory, prefix = stack.pop()
        subdirs: list[tuple[str, str]] = []
        yield from _list_folder(directory, prefix, subdirs)
        stack.extend(reversed(subdirs))


def _list_folder(directory: str, prefix: str, subdirs: list[tuple[str, str]]) -> Iterator[WorkspaceFile]:
    """The entries of one folder (one lstat each, no Path objects: this runs for every file)."""
    try:
        entries = sorted(os.scandir(directory), key=lambda e: e.name)
    except OSError as exc:
        yield _unreadable(prefix.rstrip("/") or ".", f"folder cannot be listed ({exc.strerror})")
        return
    for entry in entries:
        rel = prefix + entry.name
        if not _utf8(entry.name):
            yield _unreadable(_printable(rel), "name is not valid UTF-8; rename it so it can be archived")
            continue
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError as exc:
            yield _unreadable(rel, f"cannot stat ({exc.strerror})")
            continue
        if stat.S_ISDIR(st.st_mode):
            subdirs.append((entry.path, rel + "/"))
            continue
        file_class, reason = classify(rel, st)
        target = _read_link(entry.path) if stat.S_ISLNK(st.st_mode) else None
        yield WorkspaceFile(rel, st.st_size, st.st_mtime_ns, file_class, reason, target)


def _unreadable(rel_path: str, reason: str) -> WorkspaceFile:
    return WorkspaceFile(rel_path, 0, 0, "unreadable", reason)


def _utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # undecodable bytes arrive as lone surrogates (surrogateescape)
        return False
    return True


def _printable(rel_path: str) -> str:
    """A UTF-8 spelling of a name with undecodable bytes (shown as \\xNN), for messages only."""
    return os.fsencode(rel_path).decode("utf-8", errors="backslashreplace")


def _read_link(path: str) -> str:
    try:
        return _printable(os.readlink(path))
    except OSError as exc:
        return f"(unreadable link: {exc.strerror})"
