"""Log retention (design 4.2): `log/<timestamp>/` folders of task runs archived at level 1 or more.

A log folder is *eligible* when the registry links it to task runs, every loop of those runs has
been archived (at level 1 or more, or recorded as having no results / being a duplicate), no id
of those runs is held or on the active list, no run is still running and nothing in the folder
changed within the grace window. Among eligible folders, retention decides:

* `keep_days`: folders whose newest file is younger than this are kept;
* `keep_last`: the N newest log folders (of all, eligible or not) are kept;
* `max_total_size`: if set, unprotected eligible folders are removed oldest first only while the
  total size of all log folders is above the limit; if not set, every unprotected eligible
  folder is removed.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from workbench.cleanup.context import PlanContext, blocking_reasons, notes_for
from workbench.cleanup.inventory import DirScan, scan_dir
from workbench.cleanup.plan import Exclusion, PlanItem, item_id_for
from workbench.cleanup.policy import CleanupPolicy, recently_modified
from workbench.cleanup.safety import checked_child, has_dotdot
from workbench.cleanup.units import format_bytes
from workbench.errors import UnsafePathError

ARCHIVED_STATES = ("no_results", "duplicate")


@dataclass
class LogFolder:
    path: Path
    scan: DirScan
    task_runs: set[str]
    reasons: list[str]
    details: list[str]
    experiment_ids: tuple[str, ...] = ()
    level: int | None = None
    #: the task run shown for the folder: one that owns archived experiments, so a run registered a
    #: second time under the log folder's name (a bootstrap duplicate) is not shown as a run of its own
    primary_run: str | None = None

    @property
    def latest(self) -> datetime:
        mtime_ns = self.scan.latest[0]
        if mtime_ns is None:
            mtime_ns = os.lstat(self.path).st_mtime_ns
        return datetime.fromtimestamp(mtime_ns / 1e9, tz=UTC)

    @property
    def size(self) -> int:
        return self.scan.freed_bytes


def _log_runs(context: PlanContext) -> dict[str, set[str]]:
    """Real log folder path → task-run ids the registry links to it."""
    log_root = str(context.roots.log_root)
    found: dict[str, set[str]] = {}

    def add(raw: str | None, run_id: str) -> None:
        if not raw or has_dotdot(raw):
            return
        resolved = context.installation.resolver.resolve(raw)
        if resolved is None:
            return
        real = os.path.realpath(resolved)
        if real != log_root:
            found.setdefault(real, set()).add(run_id)

    for run in context.snapshot.task_runs.iter_rows(named=True):
        add(run.get("log_trace_path"), run["task_run_id"])
    for loop in context.snapshot.loops.iter_rows(named=True):
        add(loop.get("log_dir"), loop["task_run_id"])
    for run_id in set(context.snapshot.loops["task_run_id"].to_list()) | set(
        context.snapshot.task_runs["task_run_id"].to_list()
    ):
        candidate = context.roots.log_root / run_id
        if run_id and not has_dotdot(run_id) and os.path.isdir(candidate):
            found.setdefault(os.path.realpath(candidate), set()).add(run_id)
    return found


def _archive_gaps(task_runs: set[str], context: PlanContext) -> tuple[list[str], tuple[str, ...], int | None]:
    """Loops of these runs that are not archived at level 1 yet; their experiment ids; min level."""
    gaps = []
    for loop in context.snapshot.loops.iter_rows(named=True):
        if loop["task_run_id"] not in task_runs:
            continue
        key = (loop["task_run_id"], int(loop["loop_id"]))
        state = context.facts.loop_states.get(key)
        if state is None:
            gaps.append(f"{key[0]}/{key[1]} (never archived)")
        elif state[0] not in ARCHIVED_STATES and state[1] < 1:
            gaps.append(f"{key[0]}/{key[1]} ({state[0]}, level {state[1]})")
    experiments = [e for e in context.facts.experiments if e.task_run_id in task_runs]
    gaps.extend(f"{e.task_run_id}/{e.loop_id} (level {e.level})" for e in experiments if e.level < 1)
    level = min((e.level for e in experiments), default=None)
    return sorted(set(gaps)), tuple(sorted(e.experiment_id for e in experiments)), level


def _hold_ids(task_runs: set[str], folder: Path, context: PlanContext) -> set[str]:
    ids = set(task_runs) | {folder.name}
    for experiment in context.facts.experiments:
        if experiment.task_run_id in task_runs:
            ids |= experiment.ids()
    return ids


def _judge(path: Path, runs: set[str], context: PlanContext) -> LogFolder:
    scan = scan_dir(path)
    folder = LogFolder(path, scan, runs, [], [])
    if not runs:
        folder.reasons.append("unknown_log")
        folder.details.append("not linked to any task run in the registry; left alone")
        return folder
    gaps, folder.experiment_ids, folder.level = _archive_gaps(runs, context)
    owners = sorted({e.task_run_id for e in context.facts.experiments if e.task_run_id in runs})
    folder.primary_run = owners[0] if owners else sorted(runs)[0]
    if gaps:
        folder.reasons.append("not_archived")
        folder.details.append(
            "loops not archived at level 1 yet: "
            + ", ".join(gaps[:5])
            + (f" and {len(gaps) - 5} more" if len(gaps) > 5 else "")
        )
    reasons, details = blocking_reasons(_hold_ids(runs, path, context), runs, context)
    folder.reasons += reasons
    folder.details += details
    recent = recently_modified(*scan.latest, now=context.now, grace=context.policy.grace)
    if recent:
        folder.reasons.append("recently_modified")
        folder.details.append(recent)
    return folder


def _exclusion(folder: LogFolder, reasons: list[str], details: list[str]) -> Exclusion:
    runs = sorted(folder.task_runs)
    return Exclusion(
        target=str(folder.path),
        kind="log_dir",
        reasons=tuple(dict.fromkeys(reasons)),
        detail="; ".join(details),
        experiment_ids=folder.experiment_ids,
        task_run_id=folder.primary_run or (runs[0] if runs else None),
        level=folder.level,
    )


def _item(folder: LogFolder, rule: str) -> PlanItem:
    runs = sorted(folder.task_runs)
    path = str(folder.path)
    return PlanItem(
        item_id=item_id_for("log_dir", path),
        kind="log_dir",
        path=path,
        rule=rule,
        bytes=folder.size,
        experiment_ids=folder.experiment_ids,
        task_run_id=folder.primary_run or (runs[0] if runs else None),
        task_run_ids=tuple(runs),
        role="log",
        level=folder.level,
        shared_links=folder.scan.shared_links,
        modified_at=folder.latest.isoformat(),
    )


def _folders(context: PlanContext) -> tuple[list[LogFolder], list[Exclusion]]:
    root = context.roots.log_root
    runs_by_path = _log_runs(context)
    folders, refused = [], []
    for name in sorted(os.listdir(root)):
        path = root / name
        st = os.lstat(path)
        if not stat.S_ISDIR(st.st_mode) and not stat.S_ISLNK(st.st_mode):
            continue
        try:
            real = checked_child(root, path, what="log folder")
        except UnsafePathError as exc:
            refused.append(
                Exclusion(target=str(path), kind="log_dir", reasons=("unsafe_path",), detail=str(exc))
            )
            continue
        except FileNotFoundError:
            continue
        folders.append(_judge(real, runs_by_path.get(str(real), set()), context))
    return folders, refused


def plan_logs(context: PlanContext) -> tuple[list[PlanItem], list[Exclusion]]:
    """Log items and exclusions under the retention options of `context.policy`."""
    if not context.roots.log_root.is_dir():
        return [], []
    policy = context.policy
    folders, exclusions = _folders(context)
    newest_first = sorted(folders, key=lambda f: f.latest, reverse=True)
    newest = {f.path for f in newest_first[: policy.keep_last]} if policy.keep_last else set()
    total = sum(f.size for f in folders)
    items: list[PlanItem] = []
    for folder in sorted(folders, key=lambda f: f.latest):
        if folder.reasons:
            exclusions.append(_exclusion(folder, folder.reasons, folder.details))
            continue
        kept = []
        if policy.keep_days is not None and context.now - folder.latest < timedelta(days=policy.keep_days):
            kept.append(f"newer than {policy.keep_days:g} days (--keep-days)")
        if folder.path in newest:
            kept.append(f"among the {policy.keep_last} newest log folders (--keep-last)")
        if not kept and policy.max_total_size is not None and total <= policy.max_total_size:
            kept.append(
                f"total log size {format_bytes(total)} is within --max-total-size "
                f"{format_bytes(policy.max_total_size)}"
            )
        if kept:
            exclusions.append(_exclusion(folder, ["retained"], kept))
            continue
        notes = notes_for(_hold_ids(folder.task_runs, folder.path, context), folder.task_runs, context)
        rule = "; ".join([_rule(folder, policy, total), *notes])
        total -= folder.size
        items.append(_item(folder, rule))
    return items, exclusions


def _rule(folder: LogFolder, policy: CleanupPolicy, total: int) -> str:
    parts = [
        f"log folder of task run(s) {', '.join(sorted(folder.task_runs))}, every loop archived at level >= 1"
    ]
    if policy.keep_days is not None:
        parts.append(f"older than {policy.keep_days:g} days")
    if policy.keep_last:
        parts.append(f"not among the {policy.keep_last} newest")
    if policy.max_total_size is not None:
        parts.append(
            f"total log size {format_bytes(total)} > --max-total-size {format_bytes(policy.max_total_size)}, "
            "oldest first"
        )
    parts.append("not held, not active, not running, idle")
    return "; ".join(parts)
