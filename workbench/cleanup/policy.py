"""Who may be cleaned up (design 4.1): the options of one cleanup and the rules they drive.

The rules here are small predicates; the planner applies them to every workspace folder and log
folder and keeps *every* reason that excludes something, so the dry run can say why.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import Field, asdict, dataclass, field, fields
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from workbench.cleanup.units import parse_size
from workbench.errors import ConfigError
from workbench.rdagent.times import loop_timestamp, parse_time

if TYPE_CHECKING:  # the policy is imported by the CLI at start-up: no Polars needed for that
    from workbench.rdagent.registry import RegistrySnapshot

Stage = Literal["conservative", "full"]
STAGES: tuple[str, ...] = ("conservative", "full")
MAX_LEVEL = 2  # archiving levels are 0, 1 and 2; workspaces need 2, so --min-archiving-level can only be 2


@dataclass(frozen=True)
class OptionSpec:
    """How a policy field is offered to people: its help text and command-line flag(s).

    The policy dataclass is the one place the cleanup planning options are defined; the
    `cleanup` function, the CLI (`workbench cleanup`) and the approval check derive theirs from it.
    """

    help: str
    flags: tuple[str, ...] = ()
    #: what the command line takes when it differs from the field (a size like ``20G`` for bytes)
    cli_type: Any = None
    #: decides what a plan contains (so a confirm of an approved plan must not change it)
    planning: bool = True
    #: offered on the command line (the active ids come from --active-list instead)
    on_cli: bool = True


def _option(default: Any, help: str, **spec: Any) -> Any:
    return field(default=default, metadata={"option": OptionSpec(help, **spec)})


@dataclass(frozen=True)
class CleanupPolicy:
    """Every option that changes what a plan contains (stored with the plan, reused on confirm)."""

    stage: Stage = _option(
        "conservative", "conservative: heavy intermediates only; full: whole workspace folders.", cli_type=str
    )
    min_archiving_level: int = _option(2, "Workspaces need at least this archiving level (2 or more).")
    hold_days: float = _option(30.0, "A hold blocks cleanup for this many days.")
    grace_minutes: float = _option(120.0, "Leave folders with a file modified within this many minutes.")
    running_window_hours: float = _option(
        24.0, "A 'running' task run updated within this many hours is live."
    )
    workspaces: bool = _option(True, "Plan workspace folders.", flags=("--workspaces/--no-workspaces",))
    logs: bool = _option(False, "Also plan log/<timestamp>/ folders (level 1 is enough).", flags=("--logs",))
    keep_days: float | None = _option(
        30.0, "Logs: keep folders whose newest file is younger than this.", cli_type=float
    )
    max_total_size: int | None = _option(
        None, "Logs: remove oldest first only while all logs exceed this (e.g. 20G).", cli_type=str | None
    )
    keep_last: int | None = _option(None, "Logs: always keep the N newest log folders.")
    active_ids: tuple[str, ...] = _option(
        (), "Task-run/workspace ids under active debugging.", planning=False, on_cli=False
    )

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


def policy_fields() -> list[Field[Any]]:
    """The policy's fields in order, each with its `OptionSpec` (``field.metadata["option"]``)."""
    return list(fields(CleanupPolicy))


def option_spec(f: Field[Any]) -> OptionSpec:
    spec = f.metadata["option"]
    assert isinstance(spec, OptionSpec)
    return spec


PLANNING_OPTIONS: tuple[str, ...] = tuple(f.name for f in policy_fields() if option_spec(f).planning)
"""Options that decide what a plan contains; an approved plan is confirmed with its own values.

`active_ids` (and the `active_list` file they may come from) are not among them: on confirm they
are added to the approved plan's active ids, which can only protect more (an approved item they
exclude makes the confirm refuse).
"""


MANIFEST_OPTIONS: tuple[str, ...] = (
    "min_archiving_level",
    "hold_days",
    "grace_minutes",
    "running_window_hours",
)
"""The planning options a manifest takes: it describes the full stage of workspace folders, so the
stage, the log options and the workspace switch do not apply."""


def read_active_list(path: Path | str | None) -> frozenset[str]:
    """Ids from an active-list file: one task-run or workspace id a line; `#` starts a comment."""
    if path is None:
        return frozenset()
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"--active-list {file}: cannot read it ({exc})") from exc
    ids = set()
    for line in text.splitlines():
        value = line.split("#", 1)[0].strip()
        if value:
            ids.add(value)
    return frozenset(ids)


def build_policy(
    *, active_list: Path | str | None = None, active_ids: Sequence[str] = (), **options: Any
) -> CleanupPolicy:
    """Options as the CLI and `cleanup(...)` spell them → a validated policy.

    `options` are the fields of :class:`CleanupPolicy` (``max_total_size`` may be a size such as
    ``"20G"``); `active_list` names a file of ids under active debugging, added to `active_ids`.
    """
    known = {f.name for f in policy_fields()} - {"active_ids"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ConfigError(
            f"unknown cleanup option(s) {', '.join(unknown)}; the options are: {', '.join(sorted(known))}"
        )
    if "max_total_size" in options:
        options["max_total_size"] = parse_size(options["max_total_size"])
    ids = set(active_ids) | set(read_active_list(active_list))
    return CleanupPolicy(**options, active_ids=tuple(sorted(ids)))


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
