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

from workbench.archive.catalog import utc_now
from workbench.archive.lock import archive_lock
from workbench.cleanup.inventory import WorkspaceDir, scan_dir, workspace_dirs
from workbench.cleanup.plan import CleanupPlan, PlanFile, PlanItem
from workbench.cleanup.planner import PlanContext, changed_since_archive
from workbench.cleanup.policy import recently_modified
from workbench.cleanup.records import Deletion, deletions, load_plan, mark_deletions, record_moves
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
from workbench.errors import ConfigError, UnsafePathError

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

    @property
    def recovery(self) -> str:
        return (f"RECOVERY NEEDED: entries of plan {self.plan_id} were moved to quarantine but not recorded; "
                f"the plan stays 'applying'. Put everything back with `workbench cleanup undo {self.plan_id}` "
                "(it reads the quarantine journal), then plan again") if self.needs_recovery else ""

    def count(self, status: str) -> int:
        return sum(1 for o in self.outcomes if o.status == status)

    @property
    def bytes(self) -> int:
        return sum(o.bytes for o in self.outcomes)

    @property
    def ok(self) -> bool:
        return all(o.status == "moved" for o in self.outcomes)

    def to_dict(self) -> dict:
        return {"plan_id": self.plan_id, "moved": self.count("moved"), "partial": self.count("partial"),
                "skipped": self.count("skipped"), "failed": self.count("failed"), "bytes": self.bytes,
                "needs_recovery": self.needs_recovery, "recovery": self.recovery,
                "outcomes": [asdict(o) for o in self.outcomes]}

    def format(self) -> str:
        lines = [f"plan {self.plan_id}: moved {self.count('moved')} items to quarantine "
                 f"({format_bytes(self.bytes)}), partial {self.count('partial')}, skipped {self.count('skipped')}, "
                 f"failed {self.count('failed')}"]
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
        raise UnsafePathError(f"plan quarantine {folder} is a link or not a folder; refusing to use it, nothing moved")
    return folder


def _journal(folder: Path, entry: dict) -> None:
    """Append one intended move to the plan's journal, durably, before the move happens."""
    fd = os.open(folder / JOURNAL, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600)
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
            if isinstance(entry, dict) and all(isinstance(entry.get(k), str) for k in ("item_id", "original", "quarantine")):
                entries.append(entry)
    return entries


def _record(plan: CleanupPlan, item: PlanItem, moves: list[tuple[str, str, int]], context: PlanContext) -> None:
    """`record_moves`, or `UnrecordedMove` when the rows cannot be written (the moves are done)."""
    try:
        record_moves(plan, item, moves, archive=context.archive)
    except Exception as exc:  # any failure here leaves moved entries without a row
        raise UnrecordedMove(f"moved {len(moves)} entries to quarantine but could not record them ({exc})") from exc


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
    dirs = {str(d.path): d for d in workspace_dirs(context.facts, context.snapshot, context.installation, roots)
            if d.path is not None}
    for item in items:
        if result.needs_recovery:
            result.outcomes.append(ItemOutcome(item.item_id, item.kind, item.path, "skipped",
                                               detail="not attempted: an earlier move could not be recorded"))
            continue
        try:
            outcome = _apply_one(plan, item, folder, dirs, context)
        except SkipItem as exc:
            outcome = ItemOutcome(item.item_id, item.kind, item.path, "skipped", detail=f"{exc.reason}: {exc.detail}")
        except UnrecordedMove as exc:
            result.needs_recovery = True
            outcome = ItemOutcome(item.item_id, item.kind, item.path, "failed", detail=str(exc))
        except (UnsafePathError, OSError) as exc:
            outcome = ItemOutcome(item.item_id, item.kind, item.path, "failed", detail=str(exc))
        result.outcomes.append(outcome)
    return result


def _apply_one(plan: CleanupPlan, item: PlanItem, folder: Path, dirs: dict[str, WorkspaceDir],
               context: PlanContext) -> ItemOutcome:
    if item.kind == "log_dir":
        real = checked_child(context.roots.log_root, item.path, what="log folder")
        _check_same(real, item)
        _check_idle(real, context)
        return _move_whole(plan, item, real, folder, context)
    workspace = dirs.get(item.path)
    if workspace is None:
        raise SkipItem("missing", "the folder is no longer one of an archived experiment's folders")
    real = checked_child(context.roots.workspace_root, item.path, what="workspace",
                         name_ok=lambda name: is_workspace_name(name, frozenset(workspace.workspace_ids)))
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


def _move_whole(plan: CleanupPlan, item: PlanItem, real: Path, folder: Path, context: PlanContext) -> ItemOutcome:
    target = quarantine_target(context.roots, plan.plan_id or "", item.item_id, real.name)
    _journal(folder, {"item_id": item.item_id, "original": str(real), "quarantine": str(target),
                      "bytes": item.bytes, "at": utc_now().isoformat()})
    move_entry(real, target, roots=context.roots)
    _record(plan, item, [(str(real), str(target), item.bytes)], context)
    return ItemOutcome(item.item_id, item.kind, item.path, "moved", item.bytes, moved=1)


def _same_entry(entry: PlanFile, st: os.stat_result) -> bool:
    if entry.is_link:
        return stat.S_ISLNK(st.st_mode)
    return stat.S_ISREG(st.st_mode) and st.st_size == entry.bytes and st.st_nlink == entry.nlink


def _move_files(plan: CleanupPlan, item: PlanItem, real: Path, folder: Path, context: PlanContext) -> ItemOutcome:
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
        _journal(folder, {"item_id": item.item_id, "original": str(source), "quarantine": str(target),
                          "bytes": freed, "at": utc_now().isoformat()})
        try:
            move_entry(source, target, roots=context.roots)
        except (UnsafePathError, OSError) as exc:
            notes.append(f"{entry.rel_path}: {exc}")
            continue
        moves.append((str(source), str(target), freed))
    if moves:
        _record(plan, item, moves, context)
    status: Status = "moved" if not notes else ("partial" if moves else "skipped")
    return ItemOutcome(item.item_id, item.kind, item.path, status, sum(m[2] for m in moves), "; ".join(notes[:5]),
                       moved=len(moves))


# --------------------------------------------------------------------------- undo


@dataclass
class UndoResult:
    plan_id: str
    restored: list[str] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)

    def format(self) -> str:
        lines = [f"plan {self.plan_id}: restored {len(self.restored)} entries, refused {len(self.refused)}"]
        lines.extend(f"  [REFUSED] {path}: {why}" for path, why in self.refused)
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"plan_id": self.plan_id, "restored": self.restored,
                "refused": [{"path": p, "reason": r} for p, r in self.refused]}


def _restore_one(row: Deletion, roots: Roots) -> None:
    quarantined = Path(row.quarantine_path or "")
    if not row.quarantine_path or not entry_inside(roots.quarantine / row.plan_id, quarantined):
        raise UnsafePathError(f"quarantine path {row.quarantine_path} is not in {roots.quarantine / row.plan_id}")
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
    os.rename(quarantined, original)


def undo_plan(plan_id: str, *, rdagent_root: Path | str, archive: Path | str | None = None) -> UndoResult:
    """Move every quarantined entry of a plan back where it was."""
    roots = Roots.at(rdagent_root)
    stored = load_plan(plan_id, archive=archive)
    with archive_lock(archive, job="cleanup-undo"):
        rows = deletions(archive=archive, plan_id=plan_id, states=("quarantined",))
        rows += _unrecorded(stored.plan, roots, archive=archive)
        if not rows:
            raise ConfigError(f"plan {plan_id} has nothing in quarantine (never applied, already undone or purged)")
        result = UndoResult(plan_id)
        done: list[Deletion] = []
        for row in reversed(rows):
            try:
                _restore_one(row, roots)
            except (UnsafePathError, OSError) as exc:
                result.refused.append((row.original_path, str(exc)))
                continue
            done.append(row)
            result.restored.append(row.original_path)
        touched = {e for row in done for e in (stored.plan.item(row.item_id).experiment_ids  # type: ignore[union-attr]
                                               if stored.plan.item(row.item_id) else ())}
        mark_deletions([d.deletion_id for d in done if d.deletion_id], "restored", archive=archive,
                       experiment_ids=touched)
        from workbench.cleanup.records import set_plan_status

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
        if (item is None or quarantined in known or quarantined in out or has_dotdot(quarantined)
                or folder / item.item_id not in Path(quarantined).parents or not os.path.lexists(quarantined)):
            continue
        out[quarantined] = Deletion("", plan.plan_id or "", item.item_id, None, item.kind, entry["original"],
                                    quarantined, int(entry.get("bytes") or 0), "unrecorded", utc_now())
    return list(out.values())


# --------------------------------------------------------------------------- purge


@dataclass
class PurgeResult:
    cutoff: datetime
    purged: list[str] = field(default_factory=list)
    bytes: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def format(self) -> str:
        lines = [f"purged {len(self.purged)} quarantined entries ({format_bytes(self.bytes)}) moved before "
                 f"{self.cutoff:%Y-%m-%d %H:%M:%S} UTC; skipped {len(self.skipped)}"]
        lines.extend(f"  [SKIPPED] {path}: {why}" for path, why in self.skipped)
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"cutoff": self.cutoff.isoformat(), "purged": self.purged, "bytes": self.bytes,
                "skipped": [{"path": p, "reason": r} for p, r in self.skipped]}


def purge_quarantine(
    *, rdagent_root: Path | str, archive: Path | str | None = None, older_than: str | timedelta = "7d",
    now: datetime | None = None,
) -> PurgeResult:
    """Delete for good what was quarantined at least `older_than` ago (links unlinked, never followed)."""
    age = parse_age(older_than)
    roots = Roots.at(rdagent_root)
    result = PurgeResult((now or utc_now()) - age)
    with archive_lock(archive, job="cleanup-purge"):
        rows = [r for r in deletions(archive=archive, states=("quarantined",)) if r.deleted_at <= result.cutoff]
        done: list[str] = []
        plans: set[str] = set()
        try:
            for row in rows:
                quarantined = Path(row.quarantine_path or "")
                if not row.quarantine_path or not entry_inside(roots.quarantine / row.plan_id, quarantined):
                    result.skipped.append((str(quarantined), f"not in the quarantine of {roots.rdagent_root}"))
                    continue
                if not os.path.lexists(quarantined):
                    result.skipped.append((str(quarantined), "missing from quarantine (moved by hand?)"))
                    continue
                try:
                    remove_tree_no_follow(quarantined)
                except (UnsafePathError, OSError) as exc:
                    result.skipped.append((str(quarantined), f"not (fully) deleted, still recorded as quarantined: {exc}"))
                    continue
                done.append(row.deletion_id)
                plans.add(row.plan_id)
                result.purged.append(row.original_path)
                result.bytes += row.bytes
        finally:
            mark_deletions(done, "purged", archive=archive)
        for plan_id in sorted(plans):
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
        dirnames[:] = [os.path.basename(e) for e in paths
                       if not os.path.islink(e) and e not in mounts and os.lstat(e).st_dev == device]
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
