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

from workbench.cleanup.apply import ApplyResult
from workbench.cleanup.approvals import Approval, approve_plan, load_approval
from workbench.cleanup.holds import Hold, hold, list_holds, read_active_list, release
from workbench.cleanup.job import CleanupOutcome, cleanup
from workbench.cleanup.manifest import export_cleanup_manifest
from workbench.cleanup.plan import CleanupPlan, Exclusion, PlanFile, PlanItem
from workbench.cleanup.planner import make_plan
from workbench.cleanup.policy import PLANNING_OPTIONS, CleanupPolicy, build_policy
from workbench.cleanup.purge import PurgeResult, purge_quarantine
from workbench.cleanup.records import deletions, list_plans, load_plan, save_plan
from workbench.cleanup.undo import UndoResult, undo_plan

__all__ = [
    "ApplyResult",
    "Approval",
    "CleanupOutcome",
    "CleanupPlan",
    "CleanupPolicy",
    "Exclusion",
    "Hold",
    "PlanFile",
    "PlanItem",
    "PurgeResult",
    "UndoResult",
    "approve_plan",
    "PLANNING_OPTIONS",
    "build_policy",
    "cleanup",
    "deletions",
    "export_cleanup_manifest",
    "hold",
    "list_holds",
    "list_plans",
    "load_approval",
    "load_plan",
    "make_plan",
    "purge_quarantine",
    "read_active_list",
    "release",
    "save_plan",
    "undo_plan",
]
