"""What one planning pass reads, read once, and the protections every planned item is checked against.

Shared by the workspace planner (`planner`) and the log planner (`logs`), which is why it is a
module of its own: both judge folders against the same holds, active list and running task runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from workbench.archive.catalog import open_catalog
from workbench.archive.db import utc_now
from workbench.cleanup.archive_check import ArchiveChecker
from workbench.cleanup.holds import HoldIndex, hold_index
from workbench.cleanup.inventory import CatalogFacts, read_catalog_facts
from workbench.cleanup.policy import CleanupPolicy, Liveness, running_task_runs
from workbench.cleanup.safety import Roots
from workbench.rdagent.installation import Installation
from workbench.rdagent.registry import RegistrySnapshot, read_registry


@dataclass
class PlanContext:
    """Everything one planning pass reads, read once."""

    archive: Path | str | None
    installation: Installation
    roots: Roots
    snapshot: RegistrySnapshot
    facts: CatalogFacts
    holds: HoldIndex
    liveness: Liveness
    policy: CleanupPolicy
    now: datetime
    checker: ArchiveChecker


def plan_context(
    rdagent_root: Path | str,
    *,
    archive: Path | str | None,
    policy: CleanupPolicy,
    registry: Path | str | None = None,
    path_map: Sequence[str] = (),
    now: datetime | None = None,
) -> PlanContext:
    installation = Installation.open(
        Path(rdagent_root), registry=Path(registry) if registry else None, path_map=path_map
    )
    now = now or utc_now()
    with open_catalog(archive):
        pass  # brings an older catalog up to the current schema before the read-only reads below
    snapshot = read_registry(installation.registry_path)
    facts = read_catalog_facts(archive)
    return PlanContext(
        archive=archive,
        installation=installation,
        roots=Roots.of(installation),
        snapshot=snapshot,
        facts=facts,
        holds=hold_index(
            archive, hold_days=policy.hold_days, now=now, active_ids=frozenset(policy.active_ids)
        ),
        liveness=running_task_runs(snapshot, now=now, window=policy.running_window),
        policy=policy,
        now=now,
        checker=ArchiveChecker(archive, facts.stored_files),
    )


def blocking_reasons(ids: set[str], task_runs: set[str], context: PlanContext) -> tuple[list[str], list[str]]:
    """Holds, the active list and running task runs that protect any of `ids` / `task_runs`."""
    reasons: list[str] = []
    details: list[str] = []
    for record in context.holds.blocking_holds(ids):
        reasons.append("held")
        details.append(
            f"held for re-tracing/debugging: {record.describe()} (younger than {context.policy.hold_days:g} days)"
        )
    for text in context.holds.active_reasons(ids):
        reasons.append("active")
        details.append(f"on the active debugging list ({text})")
    for run_id in sorted(task_runs & set(context.liveness.active)):
        reasons.append("running")
        details.append(f"task run {run_id} is still running: {context.liveness.active[run_id]}")
    return reasons, details


def notes_for(ids: set[str], task_runs: set[str], context: PlanContext) -> list[str]:
    """Things a reviewer should know that do not block (expired holds, silent 'running' rows)."""
    notes = [f"note: hold expired ({h.describe()})" for h in context.holds.expired_holds(ids)]
    notes.extend(
        f"note: {context.liveness.stale[r]}" for r in sorted(task_runs & set(context.liveness.stale))
    )
    return notes
