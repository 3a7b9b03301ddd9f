"""Undo a plan: move every quarantined entry back where it was.

Refuses where the original path exists again, where its parent went through a link or left the
roots; also puts back the entries the journal knows but `wb_deletions` does not (a run that
stopped between a move and its row). Takes the archive lock.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workbench.archive import faults
from workbench.archive.db import utc_now
from workbench.archive.lock import archive_lock
from workbench.archive.remote import accepts_s3
from workbench.archive.storage_errors import storage_error, storage_errors
from workbench.cleanup.plan import CleanupPlan
from workbench.cleanup.quarantine import journal_entries, plan_roots, tidy_quarantine
from workbench.cleanup.records import (
    Deletion,
    deletions,
    load_plan,
    mark_deletions,
    set_plan_status,
)
from workbench.cleanup.safety import (
    Roots,
    entry_inside,
    has_dotdot,
    inside,
)
from workbench.errors import ConfigError, StorageFullError, StorageIOError, UnsafePathError


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

    def to_dict(self) -> dict[str, Any]:
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


@accepts_s3(writes=True)
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
        if failure is not None:
            raise failure
        set_plan_status(plan_id, "undone" if not result.refused else "partially_undone", archive=archive)
        tidy_quarantine(roots.quarantine / plan_id, archive=archive, plan_id=plan_id)
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
    for entry in journal_entries(folder):
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
