"""The manifest RD-Agent's own `tools/cleanup_archived_workspaces.py` reads (spec §11).

That script trusts the manifest completely (any path, missing fields read as "delete"), so the
manifest is written defensively: every entry has every field, `archiving_level` is an int,
`can_cleanup` a real bool that is true only for folders a full-stage plan of workbench itself
would move (held, active, running, damaged-archive, changed and escaping folders are false), and
`workspace_path` is the checked local path for those and `null` for the others (so a false entry
can never steer the script to an odd path). Sub-workspace folders get entries of their own.
The plan behind the manifest is stored (status `exported`) so the deletion stays traceable.
Prefer `workbench cleanup --confirm`: it quarantines instead of deleting and can be undone.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from workbench.archive.db import utc_now
from workbench.cleanup.context import plan_context
from workbench.cleanup.plan import CleanupPlan
from workbench.cleanup.planner import plan_from_context
from workbench.cleanup.policy import MANIFEST_OPTIONS, build_policy
from workbench.cleanup.records import save_plan
from workbench.errors import ConfigError


def manifest_entries(plan: CleanupPlan, experiments: Sequence[Any]) -> list[dict[str, Any]]:
    """One entry per experiment folder (experiment and sub-workspaces), decided by the plan."""
    by_experiment: dict[str, list[tuple[str, Any]]] = {}
    for item in plan.items:
        for experiment_id in item.experiment_ids:
            by_experiment.setdefault(experiment_id, []).append(("item", item))
    for exclusion in plan.exclusions:
        for experiment_id in exclusion.experiment_ids:
            by_experiment.setdefault(experiment_id, []).append(("exclusion", exclusion))
    entries = []
    for experiment in experiments:
        decided = by_experiment.get(experiment.experiment_id, [])
        if not decided:
            entries.append(
                _entry(
                    experiment,
                    experiment.workspace_id,
                    None,
                    False,
                    "experiment",
                    "no workspace folder found for this experiment",
                )
            )
        for what, decision in decided:
            role = getattr(decision, "role", None) or (
                "experiment" if decision.workspace_id == experiment.workspace_id else "sub_workspace"
            )
            if what == "item":
                entries.append(
                    _entry(experiment, decision.workspace_id, decision.path, True, role, decision.rule)
                )
            else:
                entries.append(
                    _entry(
                        experiment,
                        decision.workspace_id,
                        None,
                        False,
                        role,
                        f"{','.join(decision.reasons)}: {decision.detail}",
                    )
                )
    return entries


def _entry(
    experiment: Any, workspace_id: str | None, path: str | None, can: bool, role: str, why: str
) -> dict[str, Any]:
    return {
        "task_run_id": experiment.task_run_id,
        "loop_id": int(experiment.loop_id),
        "workspace_id": workspace_id,
        "workspace_path": path,
        "archiving_level": int(experiment.level),
        "can_cleanup": bool(can),
        "experiment_id": experiment.experiment_id,
        "workspace_role": role,
        "reason": why,
    }


def export_cleanup_manifest(
    rdagent_root: Path | str,
    *,
    out: Path | str,
    archive: Path | str | None = None,
    active_list: Path | str | None = None,
    registry: Path | str | None = None,
    path_map: Sequence[str] = (),
    **options: Any,
) -> dict[str, Any]:
    """Write `{"experiments": [...]}` for the RD-Agent-side script; returns what was written.

    `options` are the `MANIFEST_OPTIONS` fields of :class:`CleanupPolicy`.
    """
    other = sorted(set(options) - set(MANIFEST_OPTIONS))
    if other:
        raise ConfigError(
            f"the cleanup manifest takes only {', '.join(MANIFEST_OPTIONS)} of the planning options, "
            f"not {', '.join(other)} (it describes the full stage of workspace folders)"
        )
    target = _checked_output(Path(out))
    policy = build_policy(stage="full", active_list=active_list, **options)
    context = plan_context(rdagent_root, archive=archive, policy=policy, registry=registry, path_map=path_map)
    plan = save_plan(plan_from_context(context), archive=archive, status="exported")
    document = {
        "generated_at": utc_now().isoformat(),
        "generated_by": "workbench export-cleanup-manifest",
        "plan_id": plan.plan_id,
        "plan_hash": plan.plan_hash,
        "min_archiving_level": policy.required_level,
        "experiments": manifest_entries(plan, context.facts.experiments),
    }
    temp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.part")
    try:
        temp.write_text(json.dumps(document, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        os.replace(temp, target)
    except OSError as exc:
        raise ConfigError(
            f"cannot write the manifest {target} ({exc.strerror}); choose another --out"
        ) from exc
    finally:
        temp.unlink(missing_ok=True)
    return document


def _checked_output(target: Path) -> Path:
    """The manifest's path, checked before any planning: a file path whose folder can be made."""
    if target.is_dir():
        raise ConfigError(
            f"--out {target} is a folder; give a file name such as {target / 'cleanup_manifest.json'}"
        )
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"cannot create the folder of --out {target} ({exc.strerror}); choose another --out"
        ) from exc
    return target
