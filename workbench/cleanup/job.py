"""`workbench cleanup`: dry run (plan, stored) or confirm (re-plan under the lock, then apply).

Confirming never trusts an old plan: it takes the archive lock (so archiving cannot run at the
same time), recomputes the plan from the catalog, the registry and the disk, and then

* with an approval: re-plans with the approved plan's own root and options (a planning option
  given now that differs from the approved one is refused, `ConfigError`: the approved plan is
  executed exactly as approved), applies only the approved items, and refuses
  (`PlanChangedError`, exit 9) if any of them is gone from the new plan or its content changed;
* with `expect_plan_hash` (the interactive confirmation): refuses if the new plan differs from
  the one the person just saw;
* otherwise: applies the recomputed plan (`--confirm` is the confirmation; `yes` only tells the
  CLI not to ask at a terminal).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from workbench.archive.catalog import open_catalog
from workbench.archive.lock import archive_lock
from workbench.archive.remote import accepts_s3
from workbench.archive.storage_errors import storage_errors
from workbench.cleanup.apply import ApplyResult, apply_items
from workbench.cleanup.approvals import Approval, approved_items, load_approval, mark_used
from workbench.cleanup.context import PlanContext, plan_context
from workbench.cleanup.holds import known_ids
from workbench.cleanup.plan import CleanupPlan
from workbench.cleanup.planner import plan_from_context
from workbench.cleanup.policy import PLANNING_OPTIONS, CleanupPolicy, build_policy
from workbench.cleanup.records import load_plan, save_plan, set_plan_status
from workbench.cleanup.units import format_bytes
from workbench.errors import ConfigError, PlanChangedError

CHOOSE_ONE = (
    "choose exactly one of --dry-run, --confirm (--dry-run shows and stores the plan, --confirm applies "
    "it); nothing was changed"
)


@dataclass
class CleanupOutcome:
    """What one `cleanup` call did: the plan, and for a confirm what was moved."""

    plan: CleanupPlan
    applied: ApplyResult | None = None
    approval: Approval | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.applied is None or self.applied.ok

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"plan": self.plan.to_dict()}
        if self.applied is not None:
            data["applied"] = self.applied.to_dict()
        if self.approval is not None:
            data["approval_id"] = self.approval.approval_id
        if self.notes:
            data["notes"] = list(self.notes)
        return data

    def format(self, *, archive: Path | str | None = None, rdagent_root: Path | str | None = None) -> str:
        if self.applied is not None:
            lines = [self.applied.format(), *self.notes]
            lines.append(f"undo with: workbench cleanup undo {self.plan.plan_id} --archive {archive}")
            lines.append(f"purge later with: workbench cleanup purge --older-than 7d --archive {archive}")
            return "\n".join(lines)
        lines = [
            self.plan.format(),
            "",
            f"plan id: {self.plan.plan_id}   hash: {self.plan.plan_hash}",
            "next:",
        ]
        lines.append(
            f"  review and approve: notebooks/cleanup_review.ipynb, or `workbench cleanup approve "
            f"{self.plan.plan_id} --archive {archive}`"
        )
        lines.append(
            f"  then delete exactly what was approved: `workbench cleanup --archive {archive} --confirm "
            "--approval APPROVAL_ID` (the plan's own RD-Agent root and options are used)"
        )
        lines.append(
            "  (or `--confirm` alone: recompute and apply; at a terminal it shows the plan and asks first, "
            "`--yes` skips the question)"
        )
        lines.extend(self.notes)
        return "\n".join(lines)


def _spell(name: str, value: Any) -> str:
    """An option value as a person would type it on the command line."""
    flag = "--" + name.replace("_", "-")
    if name == "workspaces":
        return "--workspaces" if value else "--no-workspaces"
    if name == "logs":
        return "--logs" if value else "no --logs"
    if value is None:
        return f"no {flag}"
    if name == "max_total_size":
        return f"{flag} {format_bytes(value)}"
    return f"{flag} {value:g}" if isinstance(value, float) else f"{flag} {value}"


def differing_options(
    requested: CleanupPolicy, approved: CleanupPolicy, given: Collection[str] | None
) -> list[str]:
    """Planning options given for a confirm whose value is not the approved plan's, spelled for a message.

    `given` names the options the caller set on purpose (the CLI knows); None means every option
    whose value differs from its default.
    """
    default = CleanupPolicy()
    names = [
        n
        for n in PLANNING_OPTIONS
        if (n in given if given is not None else getattr(requested, n) != getattr(default, n))
    ]
    return [
        f"{_spell(n, getattr(requested, n))} (approved: {_spell(n, getattr(approved, n))})"
        for n in names
        if getattr(requested, n) != getattr(approved, n)
    ]


@accepts_s3(writes=True)
@storage_errors("a cleanup (plan, quarantine moves, records)")
def cleanup(
    rdagent_root: Path | str | None,
    *,
    archive: Path | str | None = None,
    active_list: Path | str | None = None,
    active_ids: Sequence[str] = (),
    registry: Path | str | None = None,
    path_map: Sequence[str] = (),
    dry_run: bool = False,
    confirm: bool = False,
    approval: str | None = None,
    yes: bool = False,
    expect_plan_hash: str | None = None,
    now: datetime | None = None,
    given: Collection[str] | None = None,
    **options: Any,
) -> CleanupOutcome:
    """Plan (`dry_run`) or apply (`confirm`) a cleanup of one RD-Agent installation.

    `options` are the planning options, the fields of :class:`CleanupPolicy` (``stage``,
    ``min_archiving_level``, ``hold_days``, ``grace_minutes``, ``running_window_hours``,
    ``workspaces``, ``logs``, ``keep_days``, ``max_total_size``, ``keep_last``); an unknown one
    is a ConfigError.

    With `approval`, `rdagent_root` may be None (the approved plan's root is used), and the
    planning options must be the approved plan's: `given` names those the caller set on purpose
    (None: those that differ from their defaults); any of them that differs is refused.
    """
    if dry_run == confirm:
        raise ConfigError(CHOOSE_ONE)
    if dry_run and (approval or yes):
        raise ConfigError("--approval and --yes belong to --confirm, not --dry-run")
    if rdagent_root is None and not approval:
        raise ConfigError(
            "--rdagent-root is required (only --confirm --approval takes the root from the approved plan)"
        )
    policy = build_policy(active_list=active_list, active_ids=active_ids, **options)
    if dry_run:
        assert rdagent_root is not None
        context = plan_context(
            rdagent_root, archive=archive, policy=policy, registry=registry, path_map=path_map, now=now
        )
        plan = save_plan(plan_from_context(context), archive=archive)
        return CleanupOutcome(plan, notes=_unknown_active_notes(context))
    if approval:
        return _confirm_approved(
            rdagent_root,
            approval,
            archive=archive,
            policy=policy,
            registry=registry,
            path_map=path_map,
            now=now,
            given=given,
        )
    assert rdagent_root is not None
    # `confirm` is the confirmation (design: --dry-run / --confirm): the plan is made again under the
    # lock and every item re-verified right before it moves. Asking first is the CLI's business, at a
    # terminal only; `expect_plan_hash` then guards against a plan that changed while it asked.
    with archive_lock(archive, job="cleanup"):
        context = plan_context(
            rdagent_root, archive=archive, policy=policy, registry=registry, path_map=path_map, now=now
        )
        plan = plan_from_context(context)
        if expect_plan_hash is not None and plan.plan_hash != expect_plan_hash:
            raise PlanChangedError(
                "the plan changed between showing it and confirming; nothing was deleted. "
                "Run the command again to see the new plan"
            )
        plan = save_plan(plan, archive=archive, status="applying")
        result = apply_items(plan, list(plan.items), context=context)
        if not result.needs_recovery:  # otherwise it stays 'applying': `workbench cleanup undo` recovers it
            _finish(
                result,
                lambda: set_plan_status(
                    plan.plan_id or "",
                    "applied" if result.ok else "partially_applied",
                    archive=archive,
                    applied=True,
                ),
            )
    _raise_storage(result)
    return CleanupOutcome(plan, result)


def _finish(result: ApplyResult, set_status: Callable[[], None]) -> None:
    """Record the plan's outcome; on a full disk that may fail too, and the plan then stays 'applying'."""
    try:
        set_status()
    except Exception:
        if result.storage_error is None:
            raise


def _raise_storage(result: ApplyResult) -> None:
    """A run stopped by a full or failing disk ends the command with that error (exit 10 or 11), on one line."""
    error = result.storage_error
    if error is None:
        return
    moved = result.paths
    recovery = (
        f"{moved} paths were moved to quarantine before it stopped, each recorded (or in the quarantine "
        f"journal); `workbench cleanup undo {result.plan_id}` puts them back"
    )
    raise type(error)(f"{error}; cleanup of plan {result.plan_id} stopped: {recovery}") from error


def _unknown_active_notes(context: PlanContext) -> list[str]:
    """A warning for active-list ids that name nothing here: a typo protects nothing."""
    if not context.policy.active_ids:
        return []
    with open_catalog(context.archive, read_only=True) as con:
        known = set(known_ids(con))
    known |= set(context.snapshot.task_runs["task_run_id"].drop_nulls().to_list())
    known |= set(context.snapshot.workspaces["workspace_id"].drop_nulls().to_list())
    unknown = sorted(set(context.policy.active_ids) - known)
    if not unknown:
        return []
    shown = ", ".join(unknown[:10]) + (f" and {len(unknown) - 10} more" if len(unknown) > 10 else "")
    return [
        f"warning: the active list names {len(unknown)} id(s) that are no task run, workspace or experiment "
        f"of this installation or archive: {shown} (a typo protects nothing; "
        "`workbench status --experiments` lists the ids)"
    ]


def _confirm_approved(
    rdagent_root: Path | str | None,
    approval_id: str,
    *,
    archive: Path | str | None,
    policy: CleanupPolicy,
    registry: Path | str | None,
    path_map: Sequence[str],
    now: datetime | None,
    given: Collection[str] | None,
) -> CleanupOutcome:
    """Apply an approval: the approved plan's own root and options, the current holds, only approved items."""
    approval = load_approval(approval_id, archive=archive)
    stored = load_plan(approval.plan_id, archive=archive)
    if rdagent_root is None:
        rdagent_root = stored.plan.rdagent_root
    elif os.path.realpath(rdagent_root) != stored.plan.rdagent_root:
        raise ConfigError(
            f"approval {approval_id} is for plan {approval.plan_id} of RD-Agent root "
            f"{stored.plan.rdagent_root}, not {rdagent_root}; drop --rdagent-root (the approved plan's "
            f"root is used) or make and approve a plan for {rdagent_root}"
        )
    approved_policy = CleanupPolicy.from_params(stored.plan.params)
    differ = differing_options(policy, approved_policy, given)
    if differ:
        raise ConfigError(
            f"approval {approval_id} executes plan {approval.plan_id} exactly as it was approved, but "
            f"the command gives {'; '.join(differ)}; nothing was deleted. Drop the option, or make a "
            "new plan with it (--dry-run) and approve that"
        )
    merged = CleanupPolicy.from_params(
        {
            **approved_policy.to_params(),
            "active_ids": sorted(set(approved_policy.active_ids) | set(policy.active_ids)),
        }
    )
    with archive_lock(archive, job="cleanup"):
        context = plan_context(
            rdagent_root, archive=archive, policy=merged, registry=registry, path_map=path_map, now=now
        )
        current = plan_from_context(context)
        items = approved_items(load_approval(approval_id, archive=archive), stored.plan, current)
        mark_used(approval_id, archive=archive)
        set_plan_status(stored.plan.plan_id or "", "applying", archive=archive, approval_id=approval_id)
        result = apply_items(stored.plan, items, context=context)
        if not result.needs_recovery:  # otherwise it stays 'applying': `workbench cleanup undo` recovers it
            _finish(
                result,
                lambda: set_plan_status(
                    stored.plan.plan_id or "",
                    "applied" if result.ok else "partially_applied",
                    archive=archive,
                    applied=True,
                    approval_id=approval_id,
                ),
            )
    _raise_storage(result)
    note = (
        f"approval {approval_id}: {len(items)} of the plan's {len(stored.plan.items)} plan items were approved "
        "and attempted"
    )
    return CleanupOutcome(stored.plan, result, approval, [note])
