"""Approvals: a reviewer's yes to some items of one stored plan, bound to their exact content.

`--confirm --approval ID` recomputes the plan and applies only the approved items, and only if
each of them is still in the plan with the same content (same path, ids, level, bytes, files,
rule); otherwise it refuses with `PlanChangedError` and changes nothing. An approval is used once.
"""

from __future__ import annotations

import getpass
import json
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from workbench.archive.catalog import open_catalog
from workbench.archive.db import utc_now
from workbench.archive.journal import recorded
from workbench.archive.layout import ArchiveLayout
from workbench.archive.remote import accepts_s3
from workbench.cleanup.plan import CleanupPlan, PlanItem, hash_items
from workbench.cleanup.records import load_plan
from workbench.errors import ConfigError, PlanChangedError


@dataclass(frozen=True)
class Approval:
    approval_id: str
    plan_id: str
    plan_hash: str
    item_ids: tuple[str, ...]
    approved_by: str | None
    note: str | None
    created_at: datetime
    used_at: datetime | None = None


@accepts_s3(writes=True)
def approve_plan(
    plan_id: str,
    *,
    item_ids: Iterable[str] | None = None,
    approved_by: str | None = None,
    note: str | None = None,
    archive: Path | str | None = None,
) -> Approval:
    """Approve some items (default: all) of a stored plan; returns the stored approval."""
    stored = load_plan(plan_id, archive=archive)
    plan = stored.plan
    if stored.status not in ("planned", "exported"):
        raise ConfigError(
            f"plan {plan_id} is {stored.status}; make a new plan with `workbench cleanup --dry-run`"
        )
    chosen = (
        tuple(sorted(set(item_ids))) if item_ids is not None else tuple(sorted(i.item_id for i in plan.items))
    )
    unknown = [i for i in chosen if plan.item(i) is None]
    if unknown:
        raise ConfigError(f"item(s) {', '.join(unknown)} are not in plan {plan_id}")
    if not chosen:
        raise ConfigError(f"nothing to approve: no items selected from plan {plan_id}")
    approval = Approval(
        f"a-{secrets.token_hex(5)}",
        plan_id,
        plan.plan_hash,
        chosen,
        approved_by or getpass.getuser(),
        note,
        utc_now(),
    )
    with open_catalog(archive) as con, recorded(con, ArchiveLayout.at(archive), "approval") as rec:
        rec.capture("wb_cleanup_approvals", approval_id=[approval.approval_id])
        con.execute(
            "INSERT INTO wb_cleanup_approvals (approval_id, plan_id, plan_hash, item_ids, approved_by, note, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                approval.approval_id,
                approval.plan_id,
                approval.plan_hash,
                json.dumps(list(chosen)),
                approval.approved_by,
                approval.note,
                approval.created_at,
            ],
        )
    return approval


def load_approval(approval_id: str, *, archive: Path | str | None) -> Approval:
    with open_catalog(archive, read_only=True) as con:
        row = con.execute(
            "SELECT approval_id, plan_id, plan_hash, item_ids, approved_by, note, created_at, used_at "
            "FROM wb_cleanup_approvals WHERE approval_id = ?",
            [approval_id],
        ).fetchone()
    if row is None:
        raise ConfigError(f"no approval {approval_id!r} in the archive")
    return Approval(row[0], row[1], row[2], tuple(json.loads(row[3])), row[4], row[5], row[6], row[7])


def mark_used(approval_id: str, *, archive: Path | str | None) -> None:
    with open_catalog(archive) as con, recorded(con, ArchiveLayout.at(archive), "approval-used") as rec:
        rec.capture("wb_cleanup_approvals", approval_id=[approval_id])
        con.execute(
            "UPDATE wb_cleanup_approvals SET used_at = ? WHERE approval_id = ?", [utc_now(), approval_id]
        )


def approved_items(approval: Approval, approved_plan: CleanupPlan, current: CleanupPlan) -> list[PlanItem]:
    """The approved items as they are in the recomputed plan; refuses if any changed or vanished."""
    if approval.used_at is not None:
        raise ConfigError(
            f"approval {approval.approval_id} was already used at {approval.used_at}; approve again"
        )
    if approved_plan.plan_hash != approval.plan_hash:
        raise PlanChangedError(f"plan {approval.plan_id} no longer matches approval {approval.approval_id}")
    problems = []
    items = []
    for item_id in approval.item_ids:
        before, now = approved_plan.item(item_id), current.item(item_id)
        if before is None:
            problems.append(f"{item_id}: not in the approved plan")
        elif now is None:
            problems.append(f"{item_id} ({before.path}): no longer eligible or gone")
        elif now.content_hash() != before.content_hash():
            problems.append(f"{item_id} ({before.path}): changed since approval ({_diff(before, now)})")
        else:
            items.append(now)
    if problems:
        raise PlanChangedError(
            f"the plan changed since approval {approval.approval_id}; nothing was deleted. "
            + "; ".join(problems[:10])
            + (f"; and {len(problems) - 10} more" if len(problems) > 10 else "")
            + ". Make a new plan with --dry-run and approve it again."
        )
    if hash_items(items) != hash_items([approved_plan.item(i) for i in approval.item_ids]):  # type: ignore[misc]
        raise PlanChangedError(
            f"approved items of {approval.approval_id} hash differently now; nothing was deleted"
        )
    return items


def _diff(before: PlanItem, now: PlanItem) -> str:
    a, b = before.content(), now.content()
    return ", ".join(k for k in sorted(a) if a[k] != b.get(k)) or "content"
