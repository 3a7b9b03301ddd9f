"""Apply a plan: move each confirmed entry into the plan's quarantine (restorable), recorded.

Right before each move the entry is checked again: inside its root, the archived copy verifies,
nothing changed within the grace window and (full stage) every key file is byte for byte in the
archive. Each move is journalled first (`quarantine`) and written to `wb_deletions` right after.
A move whose row cannot be written (catalog busy, ...) stops the run and leaves the plan
`applying`: the journal still knows the entry, and `workbench cleanup undo PLAN_ID` puts it back
with the rest. The caller of `apply_items` holds the archive lock.
"""

from __future__ import annotations

import os
import stat
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from workbench.archive import faults
from workbench.archive.db import utc_now
from workbench.archive.storage_errors import storage_errno, storage_error
from workbench.cleanup.context import PlanContext
from workbench.cleanup.inventory import DirScan, WorkspaceDir, scan_dir, workspace_dirs
from workbench.cleanup.plan import CleanupPlan, PlanFile, PlanItem
from workbench.cleanup.planner import changed_since_archive
from workbench.cleanup.policy import recently_modified
from workbench.cleanup.quarantine import journal_move, quarantine_dir
from workbench.cleanup.records import (
    record_moves,
)
from workbench.cleanup.safety import (
    checked_child,
    checked_entry,
    is_workspace_name,
    move_entry,
    quarantine_target,
)
from workbench.cleanup.units import format_bytes
from workbench.errors import StorageFullError, StorageIOError, UnsafePathError

Status = Literal["moved", "partial", "skipped", "failed"]


class UnrecordedMove(Exception):
    """Entries were moved to quarantine but their `wb_deletions` rows could not be written."""


class SkipItem(Exception):
    """An item that the last-moment checks refuse; it stays where it is and is reported."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass
class ItemOutcome:
    item_id: str
    kind: str
    path: str
    status: Status
    bytes: int = 0
    detail: str = ""
    moved: int = 0


@dataclass
class ApplyResult:
    plan_id: str
    outcomes: list[ItemOutcome] = field(default_factory=list)
    needs_recovery: bool = False
    storage_error: StorageFullError | StorageIOError | None = None
    """Set when a full or failing disk stopped the run (the items after it were not attempted)."""

    @property
    def recovery(self) -> str:
        return (
            (
                f"RECOVERY NEEDED: entries of plan {self.plan_id} were moved to quarantine but not recorded; "
                f"the plan stays 'applying'. Put everything back with `workbench cleanup undo {self.plan_id}` "
                "(it reads the quarantine journal), then plan again"
            )
            if self.needs_recovery
            else ""
        )

    def count(self, status: str) -> int:
        return sum(1 for o in self.outcomes if o.status == status)

    @property
    def bytes(self) -> int:
        return sum(o.bytes for o in self.outcomes)

    @property
    def paths(self) -> int:
        """Filesystem entries moved (a full item is one folder; a conservative item one entry per file)."""
        return sum(o.moved for o in self.outcomes)

    @property
    def ok(self) -> bool:
        return all(o.status == "moved" for o in self.outcomes)

    def to_dict(self) -> dict[str, Any]:
        """Counts of plan items by outcome (`moved` = plan items moved in full) and of paths moved."""
        return {
            "plan_id": self.plan_id,
            "items": len(self.outcomes),
            "moved": self.count("moved"),
            "partial": self.count("partial"),
            "skipped": self.count("skipped"),
            "failed": self.count("failed"),
            "paths_moved": self.paths,
            "bytes": self.bytes,
            "needs_recovery": self.needs_recovery,
            "recovery": self.recovery,
            "outcomes": [asdict(o) for o in self.outcomes],
        }

    def format(self) -> str:
        lines = [
            f"plan {self.plan_id}: {self.count('moved')} of {len(self.outcomes)} plan items moved to quarantine, "
            f"{self.count('partial')} partly, {self.count('skipped')} skipped, {self.count('failed')} failed; "
            f"{self.paths} paths moved in all ({format_bytes(self.bytes)})"
        ]
        for o in self.outcomes:
            if o.status != "moved":
                lines.append(f"  [{o.status.upper()}] {o.path}: {o.detail}")
        if self.needs_recovery:
            lines.append(self.recovery)
        return "\n".join(lines)


def _record(
    plan: CleanupPlan, item: PlanItem, moves: list[tuple[str, str, int]], context: PlanContext
) -> None:
    """`record_moves`, or `UnrecordedMove` when the rows cannot be written (the moves are done)."""
    try:
        faults.check("record", context.archive)
        record_moves(plan, item, moves, archive=context.archive)
    except Exception as exc:  # any failure here leaves moved entries without a row
        raise UnrecordedMove(
            f"moved {len(moves)} entries to quarantine but could not record them ({exc})"
        ) from exc


def apply_items(plan: CleanupPlan, items: list[PlanItem], *, context: PlanContext) -> ApplyResult:
    """Move each item to quarantine after last-moment checks; the caller holds the archive lock."""
    assert plan.plan_id, "store the plan first (records.save_plan)"
    roots = context.roots
    result = ApplyResult(plan.plan_id)
    try:
        folder = quarantine_dir(roots, plan.plan_id)
    except (UnsafePathError, OSError) as exc:
        result.outcomes = [ItemOutcome(i.item_id, i.kind, i.path, "failed", detail=str(exc)) for i in items]
        return result
    dirs = {
        str(d.path): d
        for d in workspace_dirs(context.facts, context.snapshot, context.installation, roots)
        if d.path is not None
    }
    for item in items:
        if result.needs_recovery or result.storage_error:
            why = (
                "the disk is full or failing"
                if result.storage_error
                else "an earlier move could not be recorded"
            )
            result.outcomes.append(
                ItemOutcome(item.item_id, item.kind, item.path, "skipped", detail=f"not attempted: {why}")
            )
            continue
        try:
            outcome = _apply_one(plan, item, folder, dirs, context)
        except SkipItem as exc:
            outcome = ItemOutcome(
                item.item_id, item.kind, item.path, "skipped", detail=f"{exc.reason}: {exc.detail}"
            )
        except UnrecordedMove as exc:
            result.needs_recovery = True
            result.storage_error = storage_error(
                exc,
                writing=f"the record of plan {plan.plan_id}'s moves",
                path=context.archive,
                archive=context.archive,
            )
            outcome = ItemOutcome(item.item_id, item.kind, item.path, "failed", detail=str(exc))
        except (UnsafePathError, OSError, StorageFullError, StorageIOError) as exc:
            result.storage_error = storage_error(
                exc, writing=f"the quarantine of plan {plan.plan_id}", path=folder, archive=folder
            )
            outcome = ItemOutcome(item.item_id, item.kind, item.path, "failed", detail=str(exc))
        result.outcomes.append(outcome)
    return result


def _apply_one(
    plan: CleanupPlan, item: PlanItem, folder: Path, dirs: dict[str, WorkspaceDir], context: PlanContext
) -> ItemOutcome:
    if item.kind == "log_dir":
        real = checked_child(context.roots.log_root, item.path, what="log folder")
        _check_same(real, item)
        _check_idle(real, context)
        return _move_whole(plan, item, real, folder, context)
    workspace = dirs.get(item.path)
    if workspace is None:
        raise SkipItem("missing", "the folder is no longer one of an archived experiment's folders")
    real = checked_child(
        context.roots.workspace_root,
        item.path,
        what="workspace",
        name_ok=lambda name: is_workspace_name(name, frozenset(workspace.workspace_ids)),
    )
    _check_same(real, item)
    _check_archive(workspace, context)
    scan = _check_idle(real, context)
    if item.kind == "workspace_full":
        changed = changed_since_archive(workspace, scan, rehash=True)
        if changed:
            raise SkipItem("changed_since_archive", "; ".join(changed[:3]))
        return _move_whole(plan, item, real, folder, context)
    return _move_files(plan, item, real, folder, context)


def _check_same(real: Path, item: PlanItem) -> None:
    if str(real) != item.path:
        raise UnsafePathError(f"{item.path} now resolves to {real}; refused")


def _check_archive(workspace: WorkspaceDir, context: PlanContext) -> None:
    context.checker.forget()
    problems = [p for e in workspace.experiments for p in context.checker.problems(e)]
    if problems:
        raise SkipItem("damaged_archive", "archived copy missing or damaged: " + "; ".join(problems[:3]))


def _check_idle(real: Path, context: PlanContext) -> DirScan:
    scan = scan_dir(real)
    recent = recently_modified(*scan.latest, now=utc_now(), grace=context.policy.grace)
    if recent:
        raise SkipItem("recently_modified", recent)
    return scan


def _move_whole(
    plan: CleanupPlan, item: PlanItem, real: Path, folder: Path, context: PlanContext
) -> ItemOutcome:
    target = quarantine_target(context.roots, plan.plan_id or "", item.item_id, real.name)
    journal_move(
        folder,
        {
            "item_id": item.item_id,
            "original": str(real),
            "quarantine": str(target),
            "bytes": item.bytes,
            "at": utc_now().isoformat(),
        },
    )
    move_entry(real, target, roots=context.roots)
    _record(plan, item, [(str(real), str(target), item.bytes)], context)
    return ItemOutcome(item.item_id, item.kind, item.path, "moved", item.bytes, moved=1)


def _same_entry(entry: PlanFile, st: os.stat_result) -> bool:
    if entry.is_link:
        return stat.S_ISLNK(st.st_mode)
    return stat.S_ISREG(st.st_mode) and st.st_size == entry.bytes and st.st_nlink == entry.nlink


def _move_files(
    plan: CleanupPlan, item: PlanItem, real: Path, folder: Path, context: PlanContext
) -> ItemOutcome:
    moves: list[tuple[str, str, int]] = []
    notes = []
    for entry in item.files:
        try:
            source, st = checked_entry(real, entry.rel_path)
        except FileNotFoundError:
            notes.append(f"{entry.rel_path}: gone")
            continue
        if not _same_entry(entry, st):
            notes.append(f"{entry.rel_path}: changed since planning, left in place")
            continue
        target = quarantine_target(context.roots, plan.plan_id or "", item.item_id, entry.rel_path)
        freed = entry.bytes if not entry.is_link and entry.nlink == 1 else 0
        journal_move(
            folder,
            {
                "item_id": item.item_id,
                "original": str(source),
                "quarantine": str(target),
                "bytes": freed,
                "at": utc_now().isoformat(),
            },
        )
        try:
            move_entry(source, target, roots=context.roots)
        except (UnsafePathError, OSError) as exc:
            if storage_errno(exc) is not None and moves:
                _record(plan, item, moves, context)  # what did move is recorded before the run stops
            if storage_errno(exc) is not None:
                raise
            notes.append(f"{entry.rel_path}: {exc}")
            continue
        moves.append((str(source), str(target), freed))
    if moves:
        _record(plan, item, moves, context)
    status: Status = "moved" if not notes else ("partial" if moves else "skipped")
    return ItemOutcome(
        item.item_id,
        item.kind,
        item.path,
        status,
        sum(m[2] for m in moves),
        "; ".join(notes[:5]),
        moved=len(moves),
    )
