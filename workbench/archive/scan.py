"""Scan: which registry loops to archive now, and where their workspaces are on this machine.

Driven by the registry (design §3.1): loops with results recorded there, and also loops whose
experiment workspace holds results on disk although the registry says otherwise. One directory
registered under two ids, or one run under two task-run ids, is archived once; the duplicates are
reported, not archived twice.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from workbench.archive.files import WorkspaceFile, walk_workspace
from workbench.archive.ids import experiment_id
from workbench.rdagent.installation import Installation
from workbench.rdagent.paths import normalise_path_key
from workbench.rdagent.registry import RegistrySnapshot

RESULT_FILES = ("qlib_res.csv", "ret.pkl")
_HEX32 = re.compile(r"^[0-9a-f]{32}$")


@dataclass(frozen=True)
class WorkspaceRef:
    workspace_id: str
    role: str | None
    raw_path: str | None
    directory: Path | None
    #: why an existing folder was not used (outside the roots, a link, `..`, unreadable)
    refused: str | None = None


@dataclass
class LoopCandidate:
    """One registry loop with what the scan learned about it."""

    task_run_id: str
    loop_id: int
    experiment_id: str
    loop: dict[str, Any]
    task_run: dict[str, Any] | None
    experiment_workspace: WorkspaceRef | None
    sub_workspaces: list[WorkspaceRef] = field(default_factory=list)
    has_results_on_disk: bool = False
    duplicate_of: str | None = None
    notes: list[str] = field(default_factory=list)
    #: str(folder) → its walk, kept by `fingerprint` so that extraction lists each workspace once
    #: and stores exactly the files the fingerprint describes
    listings: dict[str, list[WorkspaceFile]] = field(default_factory=dict, repr=False, compare=False)

    @property
    def key(self) -> tuple[str, int]:
        return (self.task_run_id, self.loop_id)

    def listing(self, directory: Path) -> list[WorkspaceFile]:
        """The walk of one of the loop's workspace folders, taken once per run."""
        found = self.listings.get(str(directory))
        if found is None:
            found = self.listings[str(directory)] = list(walk_workspace(directory))
        return found

    def fingerprint(self) -> str:
        """Changes when the registry rows or the workspace files change."""
        digest = hashlib.sha256()
        digest.update(json.dumps(self.loop, sort_keys=True, default=str).encode())
        digest.update(json.dumps(self.task_run or {}, sort_keys=True, default=str).encode())
        for ref in [self.experiment_workspace, *self.sub_workspaces]:
            if ref is None:
                continue
            digest.update(f"{ref.workspace_id}|{ref.directory}".encode())
            if ref.directory is not None:
                # the whole tree: a change in a nested file (mlruns/**/params/...) is a change too
                for info in self.listing(ref.directory):
                    digest.update(
                        os.fsencode(f"{info.rel_path}|{info.size_bytes}|{info.mtime_ns}|{info.file_class}\n")
                    )
        return digest.hexdigest()


def _rows_by(frame: pl.DataFrame, keys: list[str]) -> dict[tuple[Any, ...], list[dict[str, Any]]]:
    grouped: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for row in frame.iter_rows(named=True):
        grouped.setdefault(tuple(row[k] for k in keys), []).append(row)
    return grouped


def _has_results(directory: Path | None) -> bool:
    """Both result files are regular files (a link or FIFO named ret.pkl is not a result)."""
    return directory is not None and all(_is_regular_file(directory / name) for name in RESULT_FILES)


def _is_regular_file(path: Path) -> bool:
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def _workspace_ref(row: dict[str, Any], installation: Installation) -> WorkspaceRef:
    raw = row.get("workspace_path")
    directory = installation.resolver.resolve(raw)
    refused = _refusal(raw, directory, installation) if directory is not None else None
    if refused is not None:
        directory = None
    return WorkspaceRef(row["workspace_id"], row.get("workspace_role"), raw, directory, refused)


def _refusal(raw: str | None, directory: Path, installation: Installation) -> str | None:
    """Why a resolved workspace folder must not be read, or None when it is safe.

    The same containment rules as cleanup: no `..`, not a link, a real folder, and inside the
    installation's workspace root or a `--path-map` target the user named.
    """
    if ".." in re.split(r"[\\/]+", str(raw or "")):
        return f"registry path {raw!r} contains '..'; refused"
    try:
        st = os.lstat(directory)
    except OSError as exc:
        return f"workspace folder {directory} cannot be read ({exc.strerror})"
    if stat.S_ISLNK(st.st_mode):
        return f"workspace folder {directory} is a symbolic link; links are never followed"
    if not stat.S_ISDIR(st.st_mode):
        return f"registry path {raw!r} resolves to {directory}, which is not a folder"
    real = os.path.realpath(directory)
    if not any(
        real == root or real.startswith(root.rstrip(os.sep) + os.sep) for root in installation.allowed_roots()
    ):
        return (
            f"registry path {raw!r} resolves to {real}, outside the workspace root "
            f"{installation.workspace_root}; refused (add --path-map FROM=TO if the workspaces live there)"
        )
    if not os.access(directory, os.R_OK | os.X_OK):
        return f"workspace folder {directory} cannot be read (permission denied)"
    return None


def _pick_experiment_workspace(
    loop: dict[str, Any], rows: list[dict[str, Any]], installation: Installation
) -> tuple[WorkspaceRef | None, list[WorkspaceRef]]:
    """The workspace holding the loop's results, and its factor/model sub-workspaces."""
    best = loop.get("best_workspace_id")
    ordered = sorted(
        rows, key=lambda r: (r["workspace_id"] != best, r.get("workspace_role") == "sub_workspace")
    )
    experiment_refs = [
        _workspace_ref(r, installation) for r in ordered if r.get("workspace_role") != "sub_workspace"
    ]
    subs = [_workspace_ref(r, installation) for r in ordered if r.get("workspace_role") == "sub_workspace"]
    with_results = [ref for ref in experiment_refs if _has_results(ref.directory)]
    existing = [ref for ref in experiment_refs if ref.directory is not None]
    preferred = with_results or existing or experiment_refs
    return (preferred[0] if preferred else None), subs


def build_candidates(snapshot: RegistrySnapshot, installation: Installation) -> list[LoopCandidate]:
    """Every loop of the snapshot as a candidate, duplicates marked."""
    task_runs = {row["task_run_id"]: row for row in snapshot.task_runs.iter_rows(named=True)}
    workspaces = _rows_by(snapshot.workspaces, ["task_run_id", "loop_id"])
    candidates: list[LoopCandidate] = []
    for loop in snapshot.loops.iter_rows(named=True):
        task_run_id, loop_id = loop["task_run_id"], int(loop["loop_id"])
        loop_row = {k: v for k, v in loop.items() if k != "_rowid"}
        chosen, subs = _pick_experiment_workspace(
            loop, workspaces.get((task_run_id, loop_id), []), installation
        )
        candidate = LoopCandidate(
            task_run_id=task_run_id,
            loop_id=loop_id,
            experiment_id=experiment_id(task_run_id, loop_id),
            loop=loop_row,
            task_run=task_runs.get(task_run_id),
            experiment_workspace=chosen,
            sub_workspaces=subs,
            has_results_on_disk=_has_results(chosen.directory if chosen else None),
        )
        if candidate.task_run is None:
            candidate.notes.append("no task_runs row for this loop")
        for ref in [chosen, *subs]:
            if ref is not None and ref.refused:
                candidate.notes.append(f"workspace {ref.workspace_id}: {ref.refused}")
        if chosen is not None and chosen.directory is None and not chosen.refused:
            candidate.notes.append(
                f"workspace {chosen.workspace_id} not found on this machine ({chosen.raw_path})"
            )
        candidates.append(candidate)
    mark_duplicates(candidates)
    return candidates


def _canonical_rank(candidate: LoopCandidate) -> tuple[bool, bool, bool, str, int]:
    """Prefer the live uuid run id with a task_runs row over bootstrap duplicates."""
    task_run = candidate.task_run or {}
    return (
        not _HEX32.match(candidate.task_run_id),
        candidate.task_run is None,
        task_run.get("status") in (None, "unknown", "legacy"),
        candidate.task_run_id,
        candidate.loop_id,
    )


def mark_duplicates(candidates: Iterable[LoopCandidate]) -> None:
    """Loops whose experiment workspace is the same directory: keep one, mark the others."""
    by_dir: dict[str, list[LoopCandidate]] = {}
    for candidate in candidates:
        ref = candidate.experiment_workspace
        if ref is None or ref.directory is None:
            continue
        by_dir.setdefault(normalise_path_key(str(ref.directory.resolve())), []).append(candidate)
    for group in by_dir.values():
        if len(group) < 2:
            continue
        group.sort(key=_canonical_rank)
        keeper = group[0]
        for other in group[1:]:
            other.duplicate_of = keeper.experiment_id
            other.notes.append(
                f"same workspace directory as {keeper.task_run_id}/{keeper.loop_id}; archived once there"
            )


def is_archivable(candidate: LoopCandidate) -> bool:
    """Results on disk, or results recorded in the registry (level 1 from the registry alone)."""
    if candidate.duplicate_of:
        return False
    if candidate.has_results_on_disk:
        return True
    loop = candidate.loop
    has_result = loop.get("has_result") in (1, "1", True)
    registry_metrics = loop.get("metrics_json") or loop.get("ic_mean") is not None
    return bool(has_result and registry_metrics)
