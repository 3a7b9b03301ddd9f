"""Make a cleanup plan: judge every workspace folder (and log folder) against the policy.

Read-only: the planner reads the catalog, the registry and the folders, and returns an immutable
`CleanupPlan`. Every excluded folder is listed with every reason that applied, so the dry run
answers "why not this one?" as well as "why this one?".
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from workbench.archive.files import SHARED_DATA_SUFFIXES
from workbench.cleanup.archive_check import changed_key_files, summarise
from workbench.cleanup.context import PlanContext, blocking_reasons, notes_for, plan_context
from workbench.cleanup.inventory import (
    DirScan,
    ScannedFile,
    WorkspaceDir,
    scan_dir,
    untracked_dir_count,
    workspace_dirs,
)
from workbench.cleanup.logs import plan_logs
from workbench.cleanup.plan import CleanupPlan, Exclusion, PlanFile, PlanItem, item_id_for
from workbench.cleanup.policy import CleanupPolicy, recently_modified


def make_plan(
    rdagent_root: Path | str,
    *,
    archive: Path | str | None,
    policy: CleanupPolicy,
    registry: Path | str | None = None,
    path_map: Sequence[str] = (),
    now: datetime | None = None,
) -> CleanupPlan:
    """The exact plan for this installation and archive under `policy` (nothing is changed)."""
    context = plan_context(
        rdagent_root, archive=archive, policy=policy, registry=registry, path_map=path_map, now=now
    )
    return plan_from_context(context)


def plan_from_context(context: PlanContext) -> CleanupPlan:
    items: list[PlanItem] = []
    exclusions: list[Exclusion] = []
    known: set[str] = set()
    if context.policy.workspaces:
        dirs = workspace_dirs(context.facts, context.snapshot, context.installation, context.roots)
        known = {d.key for d in dirs}
        for folder in sorted(dirs, key=lambda d: (d.role != "experiment", d.key)):
            outcome = judge_workspace(folder, context)
            if isinstance(outcome, PlanItem):
                items.append(outcome)
            elif isinstance(outcome, Exclusion):
                exclusions.append(outcome)
    if context.policy.logs:
        log_items, log_exclusions = plan_logs(context)
        items.extend(log_items)
        exclusions.extend(log_exclusions)
    roots = context.roots
    return CleanupPlan(
        stage=context.policy.stage,
        created_at=context.now.isoformat(),
        rdagent_root=str(roots.rdagent_root),
        workspace_root=str(roots.workspace_root),
        log_root=str(roots.log_root),
        params_json=context.policy.to_json(),
        items=tuple(items),
        exclusions=tuple(exclusions),
        untracked_workspace_dirs=untracked_dir_count(roots, known) if context.policy.workspaces else 0,
    )


def _primary(folder: WorkspaceDir) -> tuple[str | None, int | None, str | None]:
    """(task run, loop, workspace id) to show for a folder: its owning experiment first."""
    owners = [e for e in folder.experiments if e.workspace_id in folder.workspace_ids] or folder.experiments
    owner = sorted(owners, key=lambda e: (e.task_run_id, e.loop_id))[0] if owners else None
    name = folder.path.name if folder.path else None
    ws = (
        name
        if name in folder.workspace_ids
        else (sorted(folder.workspace_ids)[0] if folder.workspace_ids else None)
    )
    return (owner.task_run_id if owner else None, owner.loop_id if owner else None, ws)


def _kind(policy: CleanupPolicy) -> str:
    return "workspace_full" if policy.stage == "full" else "workspace_heavy"


def _exclusion(
    folder: WorkspaceDir, kind: str, reasons: list[str], details: list[str], level: int | None
) -> Exclusion:
    task_run, loop, ws = _primary(folder)
    return Exclusion(
        target=str(folder.path) if folder.path else (folder.raw_path or folder.key),
        kind=kind,
        reasons=tuple(dict.fromkeys(reasons)),
        detail="; ".join(details),
        experiment_ids=folder.experiment_ids(),
        task_run_id=task_run,
        loop_id=loop,
        workspace_id=ws,
        level=level,
    )


def _uncovered_users(folder: WorkspaceDir, context: PlanContext) -> list[str]:
    mine = {(e.task_run_id, e.loop_id) for e in folder.experiments}
    out = []
    for loop in sorted(folder.registry_loops):
        if loop in mine or context.facts.loop_states.get(loop, ("", 0))[0] == "duplicate":
            continue
        out.append(f"{loop[0]}/{loop[1]}")
    return out


def judge_workspace(folder: WorkspaceDir, context: PlanContext) -> PlanItem | Exclusion | None:
    """An item, an exclusion with every reason, or None (nothing to remove in this stage)."""
    policy = context.policy
    kind = _kind(policy)
    level = min((e.level for e in folder.experiments), default=None)
    if folder.problem_kind == "missing":
        gone = all(e.workspace_state == "deleted" for e in folder.experiments)
        return _exclusion(
            folder, kind, ["already_deleted" if gone else "missing"], [folder.problem or "missing"], level
        )
    if folder.problem_kind == "unsafe_path" or folder.path is None:
        return _exclusion(folder, kind, ["unsafe_path"], [folder.problem or "path refused"], level)
    reasons: list[str] = []
    details: list[str] = []
    low = [e for e in folder.experiments if e.level < policy.required_level]
    if low:
        reasons.append("archiving_level")
        details.append(
            ", ".join(f"experiment {e.task_run_id}/{e.loop_id} is at level {e.level}" for e in low)
            + f" (< {policy.required_level})"
        )
    uncovered = _uncovered_users(folder, context)
    if uncovered:
        reasons.append("shared")
        details.append(f"also used by loop(s) {', '.join(uncovered)} that are not archived")
    ids, task_runs = folder.all_ids(), folder.task_run_ids()
    more_reasons, more_details = blocking_reasons(ids, task_runs, context)
    reasons += more_reasons
    details += more_details
    scan = scan_dir(folder.path)
    recent = recently_modified(*scan.latest, now=context.now, grace=policy.grace)
    if recent:
        reasons.append("recently_modified")
        details.append(recent)
    if not reasons:
        problems = [p for e in folder.experiments for p in context.checker.problems(e)]
        if problems:
            reasons.append("damaged_archive")
            details.append("archived copy missing or damaged: " + summarise(problems))
        elif policy.stage == "full":
            changed = changed_since_archive(folder, scan)
            if changed:
                reasons.append("changed_since_archive")
                details.append(
                    "key files not in the archive as they are now (re-archive first): " + summarise(changed)
                )
    if reasons:
        return _exclusion(folder, kind, reasons, details, level)
    notes = notes_for(ids, task_runs, context)
    return _item(folder, scan, kind, level, context, notes)


def changed_since_archive(folder: WorkspaceDir, scan: DirScan, *, rehash: bool = False) -> list[str]:
    """Key files of this folder that the archive does not hold as they are (see archive_check)."""
    refs: dict[str, Any] = {}
    for experiment in folder.experiments:
        main = experiment.workspace_id in folder.workspace_ids
        chosen_id = next((w for w in folder.workspace_ids if w in experiment.sub_workspace_ids()), None)
        refs.update(experiment.refs_of(chosen_id, main=main))
    return changed_key_files(scan, refs, folder=folder.path if rehash else None)


def removable_heavy(entry: ScannedFile) -> bool:
    """Conservative stage: heavy intermediates, Python caches and links to shared source data."""
    if entry.file_class == "heavy":
        return True
    if entry.file_class == "noise" and entry.reason == "python cache":
        return True
    return entry.is_link and os.path.splitext(entry.rel_path)[1].lower() in SHARED_DATA_SUFFIXES


def _item(
    folder: WorkspaceDir, scan: DirScan, kind: str, level: int | None, context: PlanContext, notes: list[str]
) -> PlanItem | None:
    assert folder.path is not None
    task_run, loop, ws = _primary(folder)
    verified = sum(1 for e in folder.experiments for r in e.file_refs or () if r.get("kept"))
    base = (
        f"archived at level {level} (>= {context.policy.required_level}), {verified} kept files verified "
        "in the archive; not held, not active, not running, idle"
    )
    main = tuple(
        sorted(e.experiment_id for e in folder.experiments if e.workspace_id in folder.workspace_ids)
    )
    common: dict[str, Any] = dict(
        experiment_ids=folder.experiment_ids(),
        task_run_id=task_run,
        loop_id=loop,
        main_experiment_ids=main,
        task_run_ids=tuple(sorted(folder.task_run_ids())),
        workspace_id=ws,
        role=folder.role,
        level=level,
        modified_at=_iso(scan.latest[0]),
    )
    path = str(folder.path)
    if kind == "workspace_full":
        rule = "; ".join([f"full stage: whole {folder.role.replace('_', '-')} folder; {base}", *notes])
        return PlanItem(
            item_id=item_id_for(kind, path),
            kind="workspace_full",
            path=path,
            rule=rule,
            bytes=scan.freed_bytes,
            shared_links=scan.shared_links,
            **common,
        )
    chosen = [f for f in scan.files if removable_heavy(f)]
    if not chosen:
        return None
    files = tuple(PlanFile(f.rel_path, f.size, f.reason, f.nlink, f.is_link) for f in chosen)
    freed = sum(f.size for f in chosen if not f.is_link and f.nlink == 1)
    links = sum(1 for f in chosen if f.is_link or f.nlink > 1)
    rule = "; ".join(
        [f"conservative stage: {len(files)} heavy intermediates only (key files stay); {base}", *notes]
    )
    return PlanItem(
        item_id=item_id_for(kind, path),
        kind="workspace_heavy",
        path=path,
        rule=rule,
        bytes=freed,
        shared_links=links,
        files=files,
        **common,
    )


def _iso(mtime_ns: int | None) -> str | None:
    if mtime_ns is None:
        return None
    from datetime import UTC

    return datetime.fromtimestamp(mtime_ns / 1e9, tz=UTC).isoformat()
