"""What exists: archived experiments, their folders on this machine, the registry's view of them.

Nothing here decides; it gathers the facts the planner judges. Folders are located from the
registry's path strings through the installation's resolver (never from the archive-time
`workspace_dir`, which may belong to another machine) and then checked for containment.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workbench.archive.catalog import read_frame
from workbench.archive.files import walk_workspace
from workbench.cleanup.safety import Roots, checked_child, has_dotdot, is_workspace_name
from workbench.errors import UnsafePathError
from workbench.rdagent.installation import Installation
from workbench.rdagent.registry import RegistrySnapshot

SUB_PREFIX = "sub/"


@dataclass(frozen=True)
class ArchivedExperiment:
    """One `aistock_experiments` row, as cleanup needs it."""

    experiment_id: str
    task_run_id: str
    loop_id: int
    workspace_id: str | None
    workspace_path: str | None
    level: int
    workspace_state: str
    file_refs: tuple[dict[str, Any], ...] | None

    def ids(self) -> set[str]:
        return {i for i in (self.experiment_id, self.task_run_id, self.workspace_id) if i}

    def sub_workspace_ids(self) -> set[str]:
        found = set()
        for ref in self.file_refs or ():
            path = ref.get("path") or ""
            if path.startswith(SUB_PREFIX) and ref.get("workspace_id"):
                found.add(ref["workspace_id"])
        return found

    def refs_of(self, workspace_id: str | None, *, main: bool) -> dict[str, dict[str, Any]]:
        """File refs of one of its folders, keyed by the path relative to that folder."""
        out: dict[str, dict[str, Any]] = {}
        subs = self.sub_workspace_ids()
        for ref in self.file_refs or ():
            path = ref.get("path") or ""
            sub = next((s for s in subs if path.startswith(f"{SUB_PREFIX}{s}/")), None)
            if main and sub is None:
                out[path] = ref
            elif not main and sub is not None and sub == workspace_id:
                out[path[len(SUB_PREFIX) + len(sub) + 1 :]] = ref
        return out


@dataclass(frozen=True)
class ScannedFile:
    rel_path: str
    size: int
    mtime_ns: int
    file_class: str
    reason: str
    nlink: int
    is_link: bool


@dataclass(frozen=True)
class DirScan:
    """Every entry of one folder (links not followed) with the bytes removing it would free."""

    files: tuple[ScannedFile, ...]

    @property
    def freed_bytes(self) -> int:
        return sum(f.size for f in self.files if not f.is_link and f.nlink == 1)

    @property
    def shared_links(self) -> int:
        return sum(1 for f in self.files if f.is_link or f.nlink > 1)

    @property
    def latest(self) -> tuple[int | None, str | None]:
        if not self.files:
            return None, None
        newest = max(self.files, key=lambda f: f.mtime_ns)
        return newest.mtime_ns, newest.rel_path


def scan_dir(path: Path) -> DirScan:
    """Walk a checked folder without following links; each entry is lstat-ed for its link count."""
    files = []
    for info in walk_workspace(path):
        if info.file_class == "unreadable":  # kept in the scan: it blocks removing the folder
            files.append(ScannedFile(info.rel_path, 0, 0, info.file_class, info.reason, 1, False))
            continue
        try:
            st = os.lstat(path / info.rel_path)
        except OSError:
            continue
        files.append(
            ScannedFile(
                info.rel_path,
                info.size_bytes,
                info.mtime_ns,
                info.file_class,
                info.reason,
                st.st_nlink,
                stat.S_ISLNK(st.st_mode),
            )
        )
    return DirScan(tuple(files))


@dataclass
class WorkspaceDir:
    """One workspace folder and everything that refers to it."""

    key: str
    raw_path: str | None
    path: Path | None
    role: str
    problem: str | None = None
    problem_kind: str | None = None
    workspace_ids: set[str] = field(default_factory=set)
    experiments: list[ArchivedExperiment] = field(default_factory=list)
    registry_loops: set[tuple[str, int]] = field(default_factory=set)

    @property
    def dir_name(self) -> str:
        return self.path.name if self.path else (self.raw_path or "?")

    def experiment_ids(self) -> tuple[str, ...]:
        return tuple(sorted({e.experiment_id for e in self.experiments}))

    def task_run_ids(self) -> set[str]:
        return {e.task_run_id for e in self.experiments} | {t for t, _ in self.registry_loops}

    def all_ids(self) -> set[str]:
        ids = set(self.workspace_ids) | self.task_run_ids()
        for experiment in self.experiments:
            ids |= experiment.ids()
        if self.path is not None:
            ids.add(self.path.name)
        return ids


@dataclass(frozen=True)
class CatalogFacts:
    experiments: tuple[ArchivedExperiment, ...]
    loop_states: dict[tuple[str, int], tuple[str, int]]
    stored_files: dict[str, dict[str, tuple[str, str | None]]]


def read_catalog_facts(archive: Path | str | None) -> CatalogFacts:
    """Experiments, per-loop archive state and stored files with their objects, in three queries."""
    rows = read_frame(
        archive,
        "SELECT id, task_run_id, loop_id, workspace_id, workspace_path, archiving_level, workspace_state, "
        "file_refs_json FROM aistock_experiments ORDER BY task_run_id, loop_id",
    )
    experiments = []
    for row in rows.iter_rows(named=True):
        refs = _slim_refs(row["file_refs_json"])
        experiments.append(
            ArchivedExperiment(
                row["id"],
                row["task_run_id"],
                int(row["loop_id"]),
                row["workspace_id"],
                row["workspace_path"],
                int(row["archiving_level"]),
                row["workspace_state"] or "present",
                tuple(refs) if refs is not None else None,
            )
        )
    states = read_frame(archive, "SELECT task_run_id, loop_id, state, archiving_level FROM wb_loop_state")
    loop_states = {(r[0], int(r[1])): (r[2], int(r[3] or 0)) for r in states.iter_rows()}
    files = read_frame(
        archive,
        "SELECT f.experiment_id, f.rel_path, f.sha256, o.storage_key FROM wb_stored_files f "
        "LEFT JOIN wb_objects o ON o.sha256 = f.sha256",
    )
    stored: dict[str, dict[str, tuple[str, str | None]]] = {}
    for exp_id, rel, sha, key in files.iter_rows():
        stored.setdefault(exp_id, {})[rel] = (sha, key)
    return CatalogFacts(tuple(experiments), loop_states, stored)


#: the file-list fields cleanup reads; the rest (class, storage key, times, ...) is dropped on
#: reading, so planning thousands of experiments does not hold every field of every file
_REF_FIELDS = ("path", "kept", "sha256", "size_bytes", "workspace_id")


def _slim_refs(text: str | None) -> list[dict[str, Any]] | None:
    """An experiment's archived file list with only `_REF_FIELDS` (None: no list, level 1)."""
    if not text:
        return None
    refs = json.loads(text)
    return [{k: ref[k] for k in _REF_FIELDS if k in ref} for ref in refs if isinstance(ref, dict)]


def _locate(
    raw: str | None, installation: Installation, roots: Roots, registered: frozenset[str]
) -> tuple[Path | None, str | None, str | None]:
    """(checked real path, problem kind, problem text) for one registry path string."""
    if raw is None or not str(raw).strip():
        return None, "missing", "no path recorded for this workspace"
    if has_dotdot(raw):
        return None, "unsafe_path", f"registry path {raw!r} contains '..'; refused"
    resolved = installation.resolver.resolve(raw)
    if resolved is None:
        return None, "missing", f"{raw} not found on this machine"
    try:
        real = checked_child(
            roots.workspace_root,
            resolved,
            what="workspace",
            name_ok=lambda name: is_workspace_name(name, registered),
        )
    except UnsafePathError as exc:
        return None, "unsafe_path", str(exc)
    except FileNotFoundError:
        return None, "missing", f"{resolved} not found"
    return real, None, None


def _registry_paths(snapshot: RegistrySnapshot) -> dict[str, list[dict[str, Any]]]:
    by_id: dict[str, list[dict[str, Any]]] = {}
    for row in snapshot.workspaces.iter_rows(named=True):
        by_id.setdefault(row["workspace_id"], []).append(row)
    return by_id


def _real_key(raw: str | None, installation: Installation) -> str | None:
    """Real path of a registry path, for "who else uses this folder" (any existing path)."""
    if not raw or has_dotdot(raw):
        return None
    resolved = installation.resolver.resolve(raw)
    return os.path.realpath(resolved) if resolved is not None else None


def workspace_dirs(
    facts: CatalogFacts, snapshot: RegistrySnapshot, installation: Installation, roots: Roots
) -> list[WorkspaceDir]:
    """Every folder of every archived experiment (experiment and sub-workspaces), merged by real path."""
    rows_by_id = _registry_paths(snapshot)
    registered = frozenset(rows_by_id)
    users: dict[str, set[tuple[str, int]]] = {}
    ids_by_key: dict[str, set[str]] = {}
    for row in snapshot.workspaces.iter_rows(named=True):
        key = _real_key(row.get("workspace_path"), installation)
        if key is not None and row.get("loop_id") is not None:
            users.setdefault(key, set()).add((row["task_run_id"], int(row["loop_id"])))
            ids_by_key.setdefault(key, set()).add(row["workspace_id"])
    subs_by_loop: dict[tuple[str, int], set[str]] = {}
    for row in snapshot.workspaces.iter_rows(named=True):
        if row.get("workspace_role") == "sub_workspace" and row.get("loop_id") is not None:
            subs_by_loop.setdefault((row["task_run_id"], int(row["loop_id"])), set()).add(row["workspace_id"])
    dirs: dict[str, WorkspaceDir] = {}
    for experiment in facts.experiments:
        wanted: list[tuple[str | None, str]] = [(experiment.workspace_id, "experiment")]
        subs = experiment.sub_workspace_ids() | subs_by_loop.get(
            (experiment.task_run_id, experiment.loop_id), set()
        )
        wanted.extend((s, "sub_workspace") for s in sorted(subs))
        for ws_id, role in wanted:
            raws = [r.get("workspace_path") for r in rows_by_id.get(ws_id or "", [])]
            if role == "experiment" and not raws:
                raws = [experiment.workspace_path]
            if not raws:
                raws = [str(roots.workspace_root / ws_id)] if ws_id else [None]
            raw = raws[-1]
            path, kind, text = _locate(raw, installation, roots, registered)
            key = str(path) if path is not None else f"{kind}:{ws_id}:{raw}"
            entry = dirs.get(key)
            if entry is None:
                entry = dirs[key] = WorkspaceDir(key, raw, path, role, text, kind)
            if role == "experiment":
                entry.role = "experiment"
            if ws_id:
                entry.workspace_ids.add(ws_id)
            if experiment not in entry.experiments:
                entry.experiments.append(experiment)
            if path is not None:
                entry.registry_loops |= users.get(str(path), set())
                entry.workspace_ids |= ids_by_key.get(str(path), set())
    return list(dirs.values())


def untracked_dir_count(roots: Roots, known: set[str]) -> int:
    """Workspace folders on disk that no archived experiment uses (never touched)."""
    try:
        names = os.listdir(roots.workspace_root)
    except OSError:
        return 0
    return sum(
        1 for n in names if str(roots.workspace_root / n) not in known and (roots.workspace_root / n).is_dir()
    )
