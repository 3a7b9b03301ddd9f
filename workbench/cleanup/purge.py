"""Purge: delete quarantined entries older than an age, for good (phase two of a cleanup).

Never follows links and never enters another file system; each deletion is marked in
`wb_deletions`. Takes the archive lock.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from workbench.archive.db import utc_now
from workbench.archive.lock import archive_lock
from workbench.archive.remote import accepts_s3
from workbench.archive.storage_errors import storage_error, storage_errors
from workbench.cleanup.quarantine import plan_roots, tidy_quarantine
from workbench.cleanup.records import (
    deletions,
    load_plan,
    mark_deletions,
    recorded_roots,
)
from workbench.cleanup.safety import (
    Roots,
    entry_inside,
    remove_tree_no_follow,
)
from workbench.cleanup.units import format_bytes, parse_age
from workbench.errors import ConfigError, UnsafePathError


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

    def to_dict(self) -> dict[str, Any]:
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


@accepts_s3(writes=True)
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
            tidy_quarantine(roots.quarantine / plan_id, archive=archive, plan_id=plan_id)
    return result
