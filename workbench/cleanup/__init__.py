"""Safe cleanup of RD-Agent workspaces and logs: policy → plan → approval → quarantine → purge / undo.

Public entry points (the CLI calls exactly these):

* `cleanup(rdagent_root, archive=..., dry_run=True | confirm=True, ...)` — `workbench cleanup`
* `approve_plan(plan_id, item_ids=..., archive=...)` — `workbench cleanup approve`
* `undo_plan(plan_id, archive=...)` — `workbench cleanup undo` (in the plan's own RD-Agent root)
* `purge_quarantine(archive=..., older_than="7d")` — `workbench cleanup purge` (each plan in its own root)
* `hold`, `release`, `list_holds` — `workbench hold`, `workbench release`, `workbench holds`
* `export_cleanup_manifest(rdagent_root, out=..., archive=...)` — `workbench export-cleanup-manifest`
* `make_plan(rdagent_root, archive=..., policy=CleanupPolicy(...))` — the plan alone (notebooks)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from workbench.exports import lazy_exports

if TYPE_CHECKING:  # the same names, for type checkers and editors
    from workbench.cleanup.apply import ApplyResult as ApplyResult
    from workbench.cleanup.approvals import Approval as Approval
    from workbench.cleanup.approvals import approve_plan as approve_plan
    from workbench.cleanup.approvals import load_approval as load_approval
    from workbench.cleanup.holds import Hold as Hold
    from workbench.cleanup.holds import hold as hold
    from workbench.cleanup.holds import list_holds as list_holds
    from workbench.cleanup.holds import release as release
    from workbench.cleanup.job import CleanupOutcome as CleanupOutcome
    from workbench.cleanup.job import cleanup as cleanup
    from workbench.cleanup.manifest import export_cleanup_manifest as export_cleanup_manifest
    from workbench.cleanup.plan import CleanupPlan as CleanupPlan
    from workbench.cleanup.plan import Exclusion as Exclusion
    from workbench.cleanup.plan import PlanFile as PlanFile
    from workbench.cleanup.plan import PlanItem as PlanItem
    from workbench.cleanup.planner import make_plan as make_plan
    from workbench.cleanup.policy import PLANNING_OPTIONS as PLANNING_OPTIONS
    from workbench.cleanup.policy import CleanupPolicy as CleanupPolicy
    from workbench.cleanup.policy import build_policy as build_policy
    from workbench.cleanup.purge import PurgeResult as PurgeResult
    from workbench.cleanup.purge import purge_quarantine as purge_quarantine
    from workbench.cleanup.records import deletions as deletions
    from workbench.cleanup.records import list_plans as list_plans
    from workbench.cleanup.records import load_plan as load_plan
    from workbench.cleanup.records import save_plan as save_plan
    from workbench.cleanup.undo import UndoResult as UndoResult
    from workbench.cleanup.undo import undo_plan as undo_plan

_EXPORTS = {
    "ApplyResult": "apply",
    "Approval": "approvals",
    "CleanupOutcome": "job",
    "CleanupPlan": "plan",
    "CleanupPolicy": "policy",
    "Exclusion": "plan",
    "Hold": "holds",
    "PLANNING_OPTIONS": "policy",
    "PlanFile": "plan",
    "PlanItem": "plan",
    "PurgeResult": "purge",
    "UndoResult": "undo",
    "approve_plan": "approvals",
    "build_policy": "policy",
    "cleanup": "job",
    "deletions": "records",
    "export_cleanup_manifest": "manifest",
    "hold": "holds",
    "list_holds": "holds",
    "list_plans": "records",
    "load_approval": "approvals",
    "load_plan": "records",
    "make_plan": "planner",
    "purge_quarantine": "purge",
    "release": "holds",
    "save_plan": "records",
    "undo_plan": "undo",
}
__all__, __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
