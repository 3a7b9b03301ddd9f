"""Apply a plan: move each confirmed entry into the plan's quarantine (restorable), recorded.

Right before each move the entry is checked again: inside its root, the archived copy verifies,
nothing changed within the grace window and (full stage) every key file is byte for byte in the
archive. Moves go in batches (see `apply_items`): journalled first (`quarantine`), synced once,
moved, then written to `wb_deletions` in one transaction per batch, so a plan of thousands of
items costs one catalog transaction per batch, not per item. A batch whose rows cannot be written
(catalog busy, ...) stops the run and leaves the plan `applying`: the journal still knows its
entries, and `workbench cleanup undo PLAN_ID` puts them back with the rest. The caller of
`apply_items` holds the archive lock.
"""

from __future__ import annotations

import os
import stat
import time
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
from workbench.cleanup.quarantine import QuarantineJournal, quarantine_dir
from workbench.cleanup.records import record_moves
from workbench.cleanup.safety import (
    checked_child,
    checked_entry,
    is_workspace_name,
    move_entry,
    quarantine_target,
)
from workbench.cleanup.units import format_bytes
from workbench.errors import ConfigError, StorageFullError, StorageIOError, UnsafePathError

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


#: a batch's moves are recorded once it holds this many items (`WORKBENCH_CLEANUP_BATCH` overrides)
BATCH_ITEMS = 256
#: ... or once this many seconds have passed since its first item was checked, so no check is older
#: than about this when its entry moves, and a failure leaves at most one short batch unrecorded
BATCH_SECONDS = 1.0


def batch_items() -> int:
    """Items per batch: `WORKBENCH_CLEANUP_BATCH` (a positive integer) or `BATCH_ITEMS`."""
    value = os.environ.get("WORKBENCH_CLEANUP_BATCH", "").strip()
    if not value:
        return BATCH_ITEMS
    if not value.isdigit() or int(value) < 1:
        raise ConfigError(f"WORKBENCH_CLEANUP_BATCH={value!r} is not a positive integer of items per batch")
    return int(value)


@dataclass
class _Move:
    source: Path
    target: Path
    freed: int
    name: str  # the path inside its item (a file of a conservative item), for notes


@dataclass
class _Prepared:
    """An item that passed its last-moment checks: the moves it needs, journalled but not done."""

    item: PlanItem
    moves: list[_Move]
    notes: list[str]
    done: list[_Move] = field(default_factory=list)
    error: str = ""


class _Batch:
    """Items checked and journalled, waiting to be moved and recorded together."""

    def __init__(self) -> None:
        self.items: list[_Prepared] = []
        self.started = 0.0

    def add(self, prepared: _Prepared) -> None:
        if not self.items:
            self.started = time.monotonic()
        self.items.append(prepared)

    def full(self, limit: int) -> bool:
        return len(self.items) >= limit or time.monotonic() - self.started >= BATCH_SECONDS


def apply_items(plan: CleanupPlan, items: list[PlanItem], *, context: PlanContext) -> ApplyResult:
    """Move each item to quarantine after last-moment checks; the caller holds the archive lock.

    Items go in batches: each item is checked and its moves appended to the journal; then the
    journal is synced once, the batch's entries are moved, and all their rows are written in one
    catalog transaction. A batch whose rows cannot be written leaves its moved items `failed`
    (the journal knows them, undo puts them back) and every later item untouched.
    """
    assert plan.plan_id, "store the plan first (records.save_plan)"
    roots = context.roots
    result = ApplyResult(plan.plan_id)
    try:
        folder = quarantine_dir(roots, plan.plan_id)
        journal = QuarantineJournal(folder)
    except (UnsafePathError, OSError) as exc:
        result.outcomes = [ItemOutcome(i.item_id, i.kind, i.path, "failed", detail=str(exc)) for i in items]
        return result
    dirs = {
        str(d.path): d
        for d in workspace_dirs(context.facts, context.snapshot, context.installation, roots)
        if d.path is not None
    }
    limit = batch_items()
    batch = _Batch()
    outcomes: dict[str, ItemOutcome] = {}
    with journal:
        for item in items:
            if result.needs_recovery or result.storage_error:
                break
            try:
                prepared = _prepare(plan, item, folder, dirs, context, journal)
            except SkipItem as exc:
                outcomes[item.item_id] = ItemOutcome(
                    item.item_id, item.kind, item.path, "skipped", detail=f"{exc.reason}: {exc.detail}"
                )
                continue
            except (UnsafePathError, OSError, StorageFullError, StorageIOError) as exc:
                result.storage_error = storage_error(
                    exc, writing=f"the quarantine of plan {plan.plan_id}", path=folder, archive=folder
                )
                outcomes[item.item_id] = ItemOutcome(
                    item.item_id, item.kind, item.path, "failed", detail=str(exc)
                )
                continue
            batch.add(prepared)
            if batch.full(limit):
                outcomes.update(_flush(plan, batch, journal, folder, context, result))
                batch = _Batch()
        if batch.items:
            outcomes.update(_flush(plan, batch, journal, folder, context, result))
    result.outcomes = [outcomes.get(i.item_id) or _not_attempted(i, result) for i in items]
    return result


def _not_attempted(item: PlanItem, result: ApplyResult) -> ItemOutcome:
    why = (
        "the disk is full or failing"
        if result.storage_error and not result.needs_recovery
        else ("an earlier move could not be recorded")
    )
    return ItemOutcome(item.item_id, item.kind, item.path, "skipped", detail=f"not attempted: {why}")


def _flush(
    plan: CleanupPlan,
    batch: _Batch,
    journal: QuarantineJournal,
    folder: Path,
    context: PlanContext,
    result: ApplyResult,
) -> dict[str, ItemOutcome]:
    """Sync the journal, move the batch's entries, record them in one transaction; the outcomes."""
    try:
        journal.sync()
    except OSError as exc:
        result.storage_error = storage_error(
            exc, writing=f"the quarantine journal of plan {plan.plan_id}", path=journal.path, archive=folder
        )
        return {p.item.item_id: _outcome(p, "failed", str(exc)) for p in batch.items}
    attempted = _move_batch(batch, plan, folder, context, result)
    moved = [(p.item, [(str(m.source), str(m.target), m.freed) for m in p.done]) for p in attempted if p.done]
    try:
        faults.check("record", context.archive)
        record_moves(plan, moved, archive=context.archive)
    except Exception as exc:  # any failure here leaves moved entries without a row
        count = sum(len(m) for _, m in moved)
        unrecorded = UnrecordedMove(
            f"moved {count} entries of {len(moved)} items to quarantine but could not record them ({exc})"
        )
        result.needs_recovery = True
        result.storage_error = storage_error(
            unrecorded,
            writing=f"the record of plan {plan.plan_id}'s moves",
            path=context.archive,
            archive=context.archive,
        )
        return {
            p.item.item_id: _outcome(p, "failed", str(unrecorded)) for p in attempted if p.done or p.error
        }
    return {p.item.item_id: _outcome(p) for p in attempted}


def _move_batch(
    batch: _Batch, plan: CleanupPlan, folder: Path, context: PlanContext, result: ApplyResult
) -> list[_Prepared]:
    """Do the batch's journalled moves; stops at a full or failing disk. The items attempted."""
    attempted: list[_Prepared] = []
    for prepared in batch.items:
        attempted.append(prepared)
        for move in prepared.moves:
            try:
                move_entry(move.source, move.target, roots=context.roots)
            except (UnsafePathError, OSError) as exc:
                if storage_errno(exc) is not None:
                    result.storage_error = storage_error(
                        exc, writing=f"the quarantine of plan {plan.plan_id}", path=folder, archive=folder
                    )
                    prepared.error = str(exc)
                    return attempted
                if prepared.item.kind == "workspace_heavy":
                    prepared.notes.append(f"{move.name}: {exc}")
                    continue
                prepared.error = str(exc)
                continue
            prepared.done.append(move)
    return attempted


def _outcome(prepared: _Prepared, status: Status | None = None, detail: str = "") -> ItemOutcome:
    item, done, notes = prepared.item, prepared.done, prepared.notes
    if status is None:
        if prepared.error and not done:
            status, detail = "failed", prepared.error
        elif not notes and not prepared.error:
            status = "moved"
        else:
            status = "partial" if done else "skipped"
            detail = "; ".join(([prepared.error] if prepared.error else []) + notes[:5])
    return ItemOutcome(
        item.item_id,
        item.kind,
        item.path,
        status,
        sum(m.freed for m in done),
        detail,
        moved=len(done),
    )


def _prepare(
    plan: CleanupPlan,
    item: PlanItem,
    folder: Path,
    dirs: dict[str, WorkspaceDir],
    context: PlanContext,
    journal: QuarantineJournal,
) -> _Prepared:
    """Last-moment checks of one item, then its moves appended to the journal (not yet done)."""
    if item.kind == "log_dir":
        real = checked_child(context.roots.log_root, item.path, what="log folder")
        _check_same(real, item)
        _check_idle(real, context)
        return _journal(plan, item, [(real, real.name, item.bytes)], [], context, journal)
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
        return _journal(plan, item, [(real, real.name, item.bytes)], [], context, journal)
    return _journal_files(plan, item, real, context, journal)


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


def _journal(
    plan: CleanupPlan,
    item: PlanItem,
    entries: list[tuple[Path, str, int]],
    notes: list[str],
    context: PlanContext,
    journal: QuarantineJournal,
) -> _Prepared:
    """Append each (source, name in quarantine, bytes freed) to the journal before anything moves."""
    moves = []
    for source, name, freed in entries:
        target = quarantine_target(context.roots, plan.plan_id or "", item.item_id, name)
        journal.append(
            {
                "item_id": item.item_id,
                "original": str(source),
                "quarantine": str(target),
                "bytes": freed,
                "at": utc_now().isoformat(),
            }
        )
        moves.append(_Move(source, target, freed, name))
    return _Prepared(item, moves, notes)


def _same_entry(entry: PlanFile, st: os.stat_result) -> bool:
    if entry.is_link:
        return stat.S_ISLNK(st.st_mode)
    return stat.S_ISREG(st.st_mode) and st.st_size == entry.bytes and st.st_nlink == entry.nlink


def _journal_files(
    plan: CleanupPlan, item: PlanItem, real: Path, context: PlanContext, journal: QuarantineJournal
) -> _Prepared:
    """A conservative item: each planned file still as planned is journalled; the rest noted."""
    entries: list[tuple[Path, str, int]] = []
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
        freed = entry.bytes if not entry.is_link and entry.nlink == 1 else 0
        entries.append((source, entry.rel_path, freed))
    return _journal(plan, item, entries, notes, context, journal)
