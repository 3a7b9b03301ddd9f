"""Two-phase deletion: move to quarantine (restorable), later purge for good; or undo.

Phase one moves each confirmed entry with `rename` into
``<rdagent_root>/.workbench_quarantine/<plan_id>/<item_id>/...`` on the same file system, after
checking again, right before the move, that the entry is inside its root, that the archived
copy verifies, that nothing changed within the grace window and (full stage) that every key file
is byte for byte in the archive. Each move is written to a journal in the quarantine first and to
`wb_deletions` right after, so an interrupted run leaves a complete record. A move whose row
cannot be written (catalog busy, ...) stops the run and leaves the plan `applying`: the journal
still knows the entry, and `workbench cleanup undo PLAN_ID` puts it back with the rest.

`undo_plan` moves a plan's entries back (refusing where the original path exists again), also
those the journal knows but `wb_deletions` does not; `purge_quarantine` deletes quarantined
entries older than an age, never following links and never entering another file system.
The journal is only deleted once nothing else is left in the plan's quarantine folder.
The caller of `apply_items` holds the archive lock; `undo_plan` and `purge_quarantine` take it.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal

from workbench.archive import faults
from workbench.archive.db import utc_now
from workbench.archive.lock import archive_lock
from workbench.archive.storage_errors import storage_errno, storage_error, storage_errors
from workbench.cleanup.context import PlanContext
from workbench.cleanup.inventory import WorkspaceDir, scan_dir, workspace_dirs
from workbench.cleanup.plan import CleanupPlan, PlanFile, PlanItem
from workbench.cleanup.planner import changed_since_archive
from workbench.cleanup.policy import recently_modified
from workbench.cleanup.records import (
    Deletion,
    deletions,
    load_plan,
    mark_deletions,
    record_moves,
    recorded_roots,
)
from workbench.cleanup.safety import (
    Roots,
    checked_child,
    checked_entry,
    entry_inside,
    has_dotdot,
    inside,
    is_workspace_name,
    mount_points,
    move_entry,
    quarantine_target,
    remove_tree_no_follow,
)
from workbench.cleanup.units import format_bytes, parse_age
from workbench.errors import ConfigError, StorageFullError, StorageIOError, UnsafePathError

Status = Literal["moved", "partial", "skipped", "failed"]
JOURNAL = "journal.jsonl"


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

    def to_dict(self) -> dict:
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


# --------------------------------------------------------------------------- apply


def _quarantine_dir(roots: Roots, plan_id: str) -> Path:
    """The plan's quarantine folder, created if needed; refuses a linked or odd quarantine."""
    base = roots.quarantine
    if os.path.lexists(base):
        st = os.lstat(base)
        if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
            raise UnsafePathError(f"quarantine {base} is a link or not a folder; refusing to use it")
    else:
        base.mkdir(mode=0o700)
    folder = quarantine_target(roots, plan_id, "x", "x").parent.parent
    folder.mkdir(mode=0o700, exist_ok=True)
    st = os.lstat(folder)  # mkdir(exist_ok) accepts a link to a folder: a pre-created link is refused here
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise UnsafePathError(
            f"plan quarantine {folder} is a link or not a folder; refusing to use it, nothing moved"
        )
    return folder


def _journal(folder: Path, entry: dict) -> None:
    """Append one intended move to the plan's journal, durably, before the move happens."""
    faults.check("journal", folder / JOURNAL)
    fd = os.open(
        folder / JOURNAL, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600
    )
    with open(fd, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(entry, ensure_ascii=False) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def _journal_entries(folder: Path) -> list[dict]:
    """The plan's journal (a link or a torn last line is ignored)."""
    path = folder / JOURNAL
    if not os.path.lexists(path) or not stat.S_ISREG(os.lstat(path).st_mode):
        return []
    entries = []
    with open(os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)), encoding="utf-8") as handle:
        for line in handle:
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict) and all(
                isinstance(entry.get(k), str) for k in ("item_id", "original", "quarantine")
            ):
                entries.append(entry)
    return entries


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
        folder = _quarantine_dir(roots, plan.plan_id)
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


def _check_idle(real: Path, context: PlanContext):  # noqa: ANN202 - DirScan
    scan = scan_dir(real)
    recent = recently_modified(*scan.latest, now=utc_now(), grace=context.policy.grace)
    if recent:
        raise SkipItem("recently_modified", recent)
    return scan


def _move_whole(
    plan: CleanupPlan, item: PlanItem, real: Path, folder: Path, context: PlanContext
) -> ItemOutcome:
    target = quarantine_target(context.roots, plan.plan_id or "", item.item_id, real.name)
    _journal(
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
        _journal(
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


# --------------------------------------------------------------------------- undo


@dataclass
class UndoResult:
    plan_id: str
    restored: list[str] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)

    def format(self) -> str:
        lines = [
            f"plan {self.plan_id}: {len(self.restored)} paths restored from quarantine, {len(self.refused)} refused"
        ]
        lines.extend(f"  [REFUSED] {path}: {why}" for path, why in self.refused)
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {
            "plan_id": self.plan_id,
            "restored": self.restored,
            "refused": [{"path": p, "reason": r} for p, r in self.refused],
        }


def _restore_one(row: Deletion, roots: Roots) -> None:
    quarantined = Path(row.quarantine_path or "")
    if not row.quarantine_path or not entry_inside(roots.quarantine / row.plan_id, quarantined):
        raise UnsafePathError(
            f"quarantine path {row.quarantine_path} is not in {roots.quarantine / row.plan_id}"
        )
    if not os.path.lexists(quarantined):
        raise UnsafePathError(f"{quarantined} is no longer in quarantine (purged or moved by hand)")
    original = Path(row.original_path)
    if has_dotdot(row.original_path) or not original.is_absolute():
        raise UnsafePathError(f"original path {row.original_path!r} is not a plain absolute path")
    parent = original.parent
    if not parent.is_dir():
        raise UnsafePathError(f"{parent} does not exist any more (undo a later plan first)")
    if not (inside(roots.workspace_root, parent) or inside(roots.log_root, parent)):
        raise UnsafePathError(f"{parent} is not inside the workspace root or the log root; refused")
    if os.path.realpath(parent) != str(parent):
        raise UnsafePathError(f"{parent} goes through a symbolic link now; refused")
    if os.path.lexists(original):
        raise UnsafePathError(f"{original} exists again; move it away first, then undo")
    faults.check("restore", original)
    os.rename(quarantined, original)


def plan_roots(plan: CleanupPlan, rdagent_root: Path | str | None = None, *, action: str) -> Roots:
    """The roots a plan was made for; `rdagent_root`, when given, must be that same installation.

    Undo and purge work on the plan's quarantine, which lives in the plan's own RD-Agent root, so
    the root stored with the plan is used; a different root given by the user is refused
    (`ConfigError`), and a recorded root that now resolves elsewhere is refused (`UnsafePathError`).
    """
    recorded = Roots(Path(plan.rdagent_root), Path(plan.workspace_root), Path(plan.log_root))
    if rdagent_root is not None and os.path.realpath(Path(rdagent_root).expanduser()) != plan.rdagent_root:
        raise ConfigError(
            f"plan {plan.plan_id} was made for RD-Agent root {plan.rdagent_root}, not {rdagent_root}; "
            f"drop --rdagent-root ({action} uses the plan's own root) or pass {plan.rdagent_root}"
        )
    if not recorded.rdagent_root.is_dir():
        raise ConfigError(
            f"plan {plan.plan_id}'s RD-Agent root {plan.rdagent_root} is no longer a directory, and "
            f"its quarantine was inside it; nothing to {action}"
        )
    current = Roots.at(recorded.rdagent_root)
    if current != recorded:
        raise UnsafePathError(
            f"plan {plan.plan_id}'s roots now resolve to {current.rdagent_root}, "
            f"{current.workspace_root}, {current.log_root} instead of the recorded ones; refused"
        )
    return recorded


@storage_errors("an undo of a cleanup plan")
def undo_plan(
    plan_id: str, *, rdagent_root: Path | str | None = None, archive: Path | str | None = None
) -> UndoResult:
    """Move every quarantined entry of a plan back where it was (in the plan's own RD-Agent root)."""
    stored = load_plan(plan_id, archive=archive)
    roots = plan_roots(stored.plan, rdagent_root, action="undo")
    with archive_lock(archive, job="cleanup-undo"):
        rows = deletions(archive=archive, plan_id=plan_id, states=("quarantined",))
        rows += _unrecorded(stored.plan, roots, archive=archive)
        if not rows:
            raise ConfigError(
                f"plan {plan_id} has nothing in quarantine (never applied, already undone or purged)"
            )
        result = UndoResult(plan_id)
        done: list[Deletion] = []
        failure: StorageFullError | StorageIOError | None = None
        for row in reversed(rows):
            try:
                _restore_one(row, roots)
            except (UnsafePathError, OSError) as exc:
                failure = storage_error(
                    exc,
                    writing=f"{row.original_path} (undo of plan {plan_id})",
                    archive=roots.workspace_root,
                    hint=f"run `workbench cleanup undo {plan_id}` again to restore the rest",
                )
                if failure is not None:
                    break
                result.refused.append((row.original_path, str(exc)))
                continue
            done.append(row)
            result.restored.append(row.original_path)
        touched = {
            e
            for row in done
            for e in (
                stored.plan.item(row.item_id).experiment_ids  # type: ignore[union-attr]
                if stored.plan.item(row.item_id)
                else ()
            )
        }
        mark_deletions(
            [d.deletion_id for d in done if d.deletion_id],
            "restored",
            archive=archive,
            experiment_ids=touched,
        )
        from workbench.cleanup.records import set_plan_status

        if failure is not None:
            raise failure
        set_plan_status(plan_id, "undone" if not result.refused else "partially_undone", archive=archive)
        _tidy_quarantine(roots.quarantine / plan_id, archive=archive, plan_id=plan_id)
    return result


def _unrecorded(plan: CleanupPlan, roots: Roots, *, archive: Path | str | None) -> list[Deletion]:
    """Entries the plan's journal moved to quarantine that have no `wb_deletions` row (a failed record).

    Returned as row-like `Deletion`s without a deletion id, so `_restore_one` checks them the same
    way; only entries of the plan's own items that are still in its quarantine folder count.
    """
    folder = roots.quarantine / (plan.plan_id or "")
    if not folder.is_dir() or folder.is_symlink():
        return []
    known = {r.quarantine_path for r in deletions(archive=archive, plan_id=plan.plan_id)}
    out: dict[str, Deletion] = {}
    for entry in _journal_entries(folder):
        item = plan.item(entry["item_id"])
        quarantined = entry["quarantine"]
        if (
            item is None
            or quarantined in known
            or quarantined in out
            or has_dotdot(quarantined)
            or folder / item.item_id not in Path(quarantined).parents
            or not os.path.lexists(quarantined)
        ):
            continue
        out[quarantined] = Deletion(
            "",
            plan.plan_id or "",
            item.item_id,
            None,
            item.kind,
            entry["original"],
            quarantined,
            int(entry.get("bytes") or 0),
            "unrecorded",
            utc_now(),
        )
    return list(out.values())


# --------------------------------------------------------------------------- purge


@dataclass
class PurgeResult:
    cutoff: datetime
    purged: list[str] = field(default_factory=list)
    bytes: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    other_roots: int = 0

    def format(self) -> str:
        lines = [
            f"purged {len(self.purged)} quarantined paths ({format_bytes(self.bytes)}) moved before "
            f"{self.cutoff:%Y-%m-%d %H:%M:%S} UTC; skipped {len(self.skipped)}"
        ]
        lines.extend(f"  [SKIPPED] {path}: {why}" for path, why in self.skipped)
        if self.other_roots:
            lines.append(
                f"  left alone: {self.other_roots} quarantined paths of plans for other RD-Agent roots "
                "(drop --rdagent-root to purge every plan's quarantine)"
            )
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {
            "cutoff": self.cutoff.isoformat(),
            "purged": self.purged,
            "bytes": self.bytes,
            "skipped": [{"path": p, "reason": r} for p, r in self.skipped],
            "other_roots": self.other_roots,
        }


def _purge_scope(
    rdagent_root: Path | str | None, plan_ids: set[str], *, archive: Path | str | None
) -> tuple[dict[str, Roots | str], set[str]]:
    """Each plan's roots (or why they cannot be used), and the plans left out because of `rdagent_root`.

    Without `rdagent_root` every plan is purged in its own recorded root. With it, only the plans
    made for that installation; a root no plan of the archive was made for is refused (unless the
    archive has no plans at all: then there is simply nothing to purge).
    """
    plans = {plan_id: load_plan(plan_id, archive=archive).plan for plan_id in sorted(plan_ids)}
    other: set[str] = set()
    if rdagent_root is not None:
        wanted = os.path.realpath(Path(rdagent_root).expanduser())
        recorded = {p.rdagent_root for p in plans.values()} | recorded_roots(archive=archive)
        if recorded and wanted not in recorded:
            known = ", ".join(sorted(recorded))
            raise ConfigError(
                f"no cleanup plan in this archive was made for RD-Agent root {rdagent_root} (plans are "
                f"for: {known}); drop --rdagent-root to purge every plan's quarantine in its own root"
            )
        other = {plan_id for plan_id, plan in plans.items() if plan.rdagent_root != wanted}
    scope: dict[str, Roots | str] = {}
    for plan_id, plan in plans.items():
        if plan_id in other:
            continue
        try:
            scope[plan_id] = plan_roots(plan, action="purge")
        except (ConfigError, UnsafePathError) as exc:
            scope[plan_id] = str(exc)
    return scope, other


@storage_errors("a purge of the quarantine")
def purge_quarantine(
    *,
    rdagent_root: Path | str | None = None,
    archive: Path | str | None = None,
    older_than: str | timedelta = "7d",
    now: datetime | None = None,
) -> PurgeResult:
    """Delete for good what was quarantined at least `older_than` ago (links unlinked, never followed).

    Each plan's entries are purged in the plan's own RD-Agent root; `rdagent_root` limits the
    purge to the plans made for that installation.
    """
    age = parse_age(older_than)
    result = PurgeResult((now or utc_now()) - age)
    with archive_lock(archive, job="cleanup-purge"):
        rows = [
            r for r in deletions(archive=archive, states=("quarantined",)) if r.deleted_at <= result.cutoff
        ]
        scope, other = _purge_scope(rdagent_root, {r.plan_id for r in rows}, archive=archive)
        result.other_roots = sum(1 for r in rows if r.plan_id in other)
        rows = [r for r in rows if r.plan_id not in other]
        done: list[str] = []
        plans: dict[str, Roots] = {}
        try:
            for row in rows:
                quarantined = Path(row.quarantine_path or "")
                roots = scope[row.plan_id]
                if isinstance(roots, str):
                    result.skipped.append((str(quarantined), roots))
                    continue
                if not row.quarantine_path or not entry_inside(roots.quarantine / row.plan_id, quarantined):
                    result.skipped.append(
                        (str(quarantined), f"not in the quarantine of {roots.rdagent_root}")
                    )
                    continue
                if not os.path.lexists(quarantined):
                    result.skipped.append((str(quarantined), "missing from quarantine (moved by hand?)"))
                    continue
                try:
                    remove_tree_no_follow(quarantined)
                except (UnsafePathError, OSError) as exc:
                    failure = storage_error(
                        exc,
                        writing=f"the quarantine (purging {quarantined})",
                        archive=quarantined.parent,
                        hint="what was purged before is recorded; purge again later",
                    )
                    if failure is not None:
                        raise failure from exc
                    result.skipped.append(
                        (str(quarantined), f"not (fully) deleted, still recorded as quarantined: {exc}")
                    )
                    continue
                done.append(row.deletion_id)
                plans[row.plan_id] = roots
                result.purged.append(row.original_path)
                result.bytes += row.bytes
        finally:
            mark_deletions(done, "purged", archive=archive)
        for plan_id, roots in sorted(plans.items()):
            _tidy_quarantine(roots.quarantine / plan_id, archive=archive, plan_id=plan_id)
    return result


def _tidy_quarantine(folder: Path, *, archive: Path | str | None, plan_id: str) -> None:
    """Remove empty folders of a plan's quarantine, and its journal once nothing else is left in it.

    The journal is the only trace of a move whose record failed, so it stays while the folder holds
    anything besides it. Links and other file systems are never entered.
    """
    if not folder.is_dir() or os.path.islink(folder):
        return
    device, mounts = os.lstat(folder).st_dev, mount_points()
    folders: list[str] = []
    for dirpath, dirnames, _files in os.walk(folder, topdown=True, followlinks=False):
        folders.append(dirpath)
        paths = [os.path.join(dirpath, n) for n in dirnames]
        dirnames[:] = [
            os.path.basename(e)
            for e in paths
            if not os.path.islink(e) and e not in mounts and os.lstat(e).st_dev == device
        ]
    for dirpath in reversed(folders[1:]):
        try:
            os.rmdir(dirpath)  # only succeeds when empty
        except OSError:
            pass
    if deletions(archive=archive, plan_id=plan_id, states=("quarantined",)):
        return
    if any(entry.name != JOURNAL for entry in folder.iterdir()):
        return
    journal = folder / JOURNAL
    if journal.is_file() and not journal.is_symlink():
        journal.unlink()
    if not any(folder.iterdir()):
        folder.rmdir()
