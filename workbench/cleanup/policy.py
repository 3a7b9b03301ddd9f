"""Who may be cleaned up (design 4.1): the options of one cleanup and the rules they drive.

The rules here are small predicates; the planner applies them to every workspace folder and log
folder and keeps *every* reason that excludes something, so the dry run can say why.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timedelta
from typing import Any, Literal

from workbench.errors import ConfigError
from workbench.rdagent.registry import RegistrySnapshot
from workbench.rdagent.times import loop_timestamp, parse_time

Stage = Literal["conservative", "full"]
STAGES: tuple[str, ...] = ("conservative", "full")
MAX_LEVEL = 2  # archiving levels are 0, 1 and 2; workspaces need 2, so --min-archiving-level can only be 2


@dataclass(frozen=True)
class CleanupPolicy:
    """Every option that changes what a plan contains (stored with the plan, reused on confirm)."""

    stage: Stage = "conservative"
    min_archiving_level: int = 2
    hold_days: float = 30.0
    grace_minutes: float = 120.0
    running_window_hours: float = 24.0
    workspaces: bool = True
    logs: bool = False
    keep_days: float | None = 30.0
    keep_last: int | None = None
    max_total_size: int | None = None
    active_ids: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise ConfigError(f"--stage {self.stage!r}: expected 'conservative' or 'full'")
        if self.min_archiving_level > MAX_LEVEL:
            raise ConfigError(
                f"--min-archiving-level {self.min_archiving_level}: archiving levels are 0, 1 and 2, so nothing "
                "could ever reach it; use 2 (the default: every key file stored and verified)"
            )
        if self.min_archiving_level < 2:
            raise ConfigError(
                f"--min-archiving-level {self.min_archiving_level}: workspaces are cleaned only at level 2 "
                "(level 0 is not archived at all, level 1 keeps catalog rows but not the workspace files; "
                "design 4.1); use 2. Logs need only level 1: use --logs"
            )
        for name in ("hold_days", "grace_minutes", "running_window_hours"):
            if getattr(self, name) < 0:
                raise ConfigError(f"--{name.replace('_', '-')} must not be negative")
        if self.keep_days is not None and self.keep_days < 0:
            raise ConfigError("--keep-days must not be negative")
        if self.keep_last is not None and self.keep_last < 0:
            raise ConfigError("--keep-last must not be negative")
        if self.max_total_size is not None and self.max_total_size < 0:
            raise ConfigError("--max-total-size must not be negative")
        if not self.workspaces and not self.logs:
            raise ConfigError(
                "nothing to plan: workspaces are off (--no-workspaces) and logs are off (no --logs)"
            )

    @property
    def required_level(self) -> int:
        """The archiving level a workspace needs (the full stage never goes below 2)."""
        return max(self.min_archiving_level, 2)

    @property
    def grace(self) -> timedelta:
        return timedelta(minutes=self.grace_minutes)

    @property
    def running_window(self) -> timedelta:
        return timedelta(hours=self.running_window_hours)

    def to_params(self) -> dict[str, Any]:
        data = asdict(self)
        data["active_ids"] = sorted(self.active_ids)
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_params(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> CleanupPolicy:
        names = {f.name for f in fields(cls)}
        known = {k: v for k, v in params.items() if k in names}
        known["active_ids"] = tuple(known.get("active_ids") or ())
        return cls(**known)


@dataclass(frozen=True)
class Liveness:
    """Task runs the registry shows as still running (`active`) or marked running but silent."""

    active: dict[str, str]
    stale: dict[str, str]


def _latest(times: list[datetime | None]) -> datetime | None:
    known = [t for t in times if t is not None]
    return max(known) if known else None


def running_task_runs(snapshot: RegistrySnapshot, *, now: datetime, window: timedelta) -> Liveness:
    """Registry status `running` (task run or loop) with an update within `window` → active.

    A `running` row whose times cannot be read counts as active: we cannot prove it has stopped.
    """
    loop_times: dict[str, list[datetime | None]] = {}
    running_loops: dict[str, list[tuple[int, datetime | None]]] = {}
    for loop in snapshot.loops.iter_rows(named=True):
        stamp = parse_time(loop_timestamp(loop))
        loop_times.setdefault(loop["task_run_id"], []).append(stamp)
        if (loop.get("status") or "").lower() == "running":
            running_loops.setdefault(loop["task_run_id"], []).append((int(loop["loop_id"]), stamp))
    active: dict[str, str] = {}
    stale: dict[str, str] = {}
    for run in snapshot.task_runs.iter_rows(named=True):
        if (run.get("status") or "").lower() != "running":
            continue
        run_id = run["task_run_id"]
        last = _latest(
            [
                parse_time(run.get("updated_at_utc")),
                parse_time(run.get("created_at_utc")),
                *loop_times.get(run_id, []),
            ]
        )
        _classify(active, stale, run_id, last, now, window, "task run status 'running'")
    for run_id, loops in running_loops.items():
        for loop_id, stamp in loops:
            _classify(active, stale, run_id, stamp, now, window, f"loop {loop_id} status 'running'")
    for run_id in active:
        stale.pop(run_id, None)
    return Liveness(active=active, stale=stale)


def _classify(
    active: dict[str, str],
    stale: dict[str, str],
    run_id: str,
    last: datetime | None,
    now: datetime,
    window: timedelta,
    what: str,
) -> None:
    if last is None:
        active.setdefault(run_id, f"{what} and no readable update time")
    elif now - last <= window:
        active.setdefault(run_id, f"{what}, last update {last:%Y-%m-%d %H:%M} UTC (within {window})")
    else:
        stale.setdefault(run_id, f"{what} but no update since {last:%Y-%m-%d %H:%M} UTC; treated as stopped")


def recently_modified(
    latest_mtime_ns: int | None, latest_path: str | None, *, now: datetime, grace: timedelta
) -> str | None:
    """A reason when something in a folder changed within the grace window, else None."""
    if latest_mtime_ns is None:
        return None
    changed = datetime.fromtimestamp(latest_mtime_ns / 1e9, tz=now.tzinfo)
    if now - changed < grace:
        return f"{latest_path} modified at {changed:%Y-%m-%d %H:%M:%S} (within the {grace} grace window)"
    return None
