"""Holds: experiments, workspaces or task runs that must not be cleaned up (design 4.1).

Two kinds, both stored in `wb_holds` and never deleted (a release sets `released_at`):

* `hold` — flagged for re-tracing or debugging; blocks cleanup while it is open and younger than
  `--hold-days` (an older open hold is reported as expired in the plan);
* `active` — on the active debugging list; blocks cleanup until released.

An id may be an experiment id, a workspace id or a task-run id; the plan checks every id an item
belongs to, by exact match. So an id the archive does not know (a typo, an id cut short as the
plan prints it) is refused unless `allow_unknown=True` (a workspace or task run not archived
yet): such a hold would protect nothing. The active list can also come from a file
(`--active-list`), one id a line.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal

import duckdb

from workbench.archive.catalog import open_catalog
from workbench.archive.db import utc_now
from workbench.archive.journal import recorded
from workbench.archive.layout import ArchiveLayout
from workbench.archive.storage_errors import storage_errors
from workbench.errors import ConfigError

HoldKind = Literal["hold", "active"]


@dataclass(frozen=True)
class Hold:
    target_id: str
    kind: str
    reason: str | None
    created_at: datetime
    released_at: datetime | None = None
    release_reason: str | None = None
    known_as: str | None = field(
        default=None, compare=False
    )  # 'experiment', 'workspace', 'task run'; None: unknown

    @property
    def is_open(self) -> bool:
        return self.released_at is None

    def describe(self) -> str:
        return f"{self.kind} on {self.target_id} since {self.created_at:%Y-%m-%d %H:%M} UTC: {self.reason or '-'}"


@dataclass(frozen=True)
class HoldIndex:
    """Open holds by id, split by what they mean for a plan made at `now`."""

    held: dict[str, Hold] = field(default_factory=dict)
    active: dict[str, str] = field(default_factory=dict)
    expired: dict[str, Hold] = field(default_factory=dict)

    def blocking_holds(self, ids: set[str]) -> list[Hold]:
        return [self.held[i] for i in sorted(ids) if i in self.held]

    def active_reasons(self, ids: set[str]) -> list[str]:
        return [f"{i}: {self.active[i]}" for i in sorted(ids) if i in self.active]

    def expired_holds(self, ids: set[str]) -> list[Hold]:
        return [self.expired[i] for i in sorted(ids) if i in self.expired]


def _clean_id(target_id: str) -> str:
    text = (target_id or "").strip()
    if not text:
        raise ConfigError("an id is required (experiment id, workspace id or task-run id)")
    return text


LIST_IDS = "list the ids with `workbench status --experiments` (experiment, task-run/loop and workspace ids)"

_KNOWN_IDS_SQL = r"""
SELECT id, 'experiment' FROM aistock_experiments
UNION SELECT workspace_id, 'workspace' FROM aistock_experiments
UNION SELECT regexp_extract(workspace_dir, '[^/\\]+$'), 'workspace' FROM aistock_experiments
UNION SELECT unnest(list_distinct(json_extract_string(file_refs_json, '$[*].workspace_id'))), 'workspace'
      FROM aistock_experiments
UNION SELECT task_run_id, 'task run' FROM aistock_experiments
UNION SELECT task_run_id, 'task run' FROM wb_loop_state
"""


def known_ids(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    """Every experiment, workspace and task-run id the archive knows → what it is."""
    out: dict[str, str] = {}
    for value, what in con.execute(_KNOWN_IDS_SQL).fetchall():
        if value:
            out.setdefault(str(value), what)
    return out


def _suggest(target: str, candidates: Iterable[str]) -> str:
    """' (did you mean ...?)' for ids the target is a prefix of, ignoring case; '' if none."""
    low = target.lower()
    close = sorted({c for c in candidates if c.lower().startswith(low) and c != target})
    if not close:
        return ""
    shown = ", ".join(close[:3]) + (f" or {len(close) - 3} more" if len(close) > 3 else "")
    return f" (did you mean {shown}? ids must be given in full)"


@storage_errors("a hold to the archive catalog")
def hold(
    target_id: str,
    *,
    reason: str,
    active: bool = False,
    allow_unknown: bool = False,
    archive: Path | str | None = None,
) -> Hold:
    """Flag an id for re-tracing/debugging (`active=True`: put it on the active debugging list).

    The id must name an experiment, workspace or task run the archive knows; `allow_unknown`
    records it anyway (for one not archived yet), with `known_as=None` on the returned hold.
    """
    target = _clean_id(target_id)
    if not (reason or "").strip():
        raise ConfigError("--reason is required: say why this must not be cleaned up")
    with open_catalog(archive, read_only=True) as con:
        known = known_ids(con)
    what = known.get(target)
    if what is None and not allow_unknown:
        raise ConfigError(
            f"{target} is not an experiment, workspace or task-run id known to the archive"
            f"{_suggest(target, known)}; nothing was recorded; {LIST_IDS}; "
            "to protect a workspace or task run not archived yet, add --allow-unknown"
        )
    record = Hold(target, "active" if active else "hold", reason.strip(), utc_now(), known_as=what)
    with open_catalog(archive) as con, recorded(con, ArchiveLayout.at(archive), "hold") as rec:
        con.execute(
            "INSERT INTO wb_holds (target_id, kind, reason, created_at) VALUES (?, ?, ?, ?)",
            [record.target_id, record.kind, record.reason, record.created_at],
        )
        rec.capture("wb_holds", target_id=[record.target_id])
    return record


@storage_errors("a hold release to the archive catalog")
def release(target_id: str, *, reason: str, archive: Path | str | None = None) -> list[Hold]:
    """Lift every open hold (both kinds) on an id; returns the holds released."""
    target = _clean_id(target_id)
    if not (reason or "").strip():
        raise ConfigError("--reason is required: say why the hold is lifted")
    now = utc_now()
    with open_catalog(archive) as con, recorded(con, ArchiveLayout.at(archive), "release") as rec:
        rec.capture("wb_holds", target_id=[target])
        rows = con.execute(
            "SELECT target_id, kind, reason, created_at FROM wb_holds WHERE target_id = ? AND released_at IS NULL "
            "ORDER BY created_at",
            [target],
        ).fetchall()
        if not rows:
            open_ids = [
                r[0]
                for r in con.execute(
                    "SELECT DISTINCT target_id FROM wb_holds WHERE released_at IS NULL"
                ).fetchall()
            ]
            raise ConfigError(
                f"no open hold on {target}{_suggest(target, open_ids)}; nothing was changed. List open "
                "holds with `workbench holds` (released ones with `workbench holds --all`)"
            )
        con.execute(
            "UPDATE wb_holds SET released_at = ?, release_reason = ? WHERE target_id = ? AND released_at IS NULL",
            [now, reason.strip(), target],
        )
    return [Hold(r[0], r[1], r[2], r[3], now, reason.strip()) for r in rows]


def list_holds(
    archive: Path | str | None = None, *, include_released: bool = False, identify: bool = False
) -> list[Hold]:
    """Holds, newest first (open ones only unless `include_released`).

    `identify=True` sets each hold's `known_as` (what its id names in the archive now, or None).
    """
    where = "" if include_released else "WHERE released_at IS NULL"
    with open_catalog(archive, read_only=True) as con:
        rows = con.execute(
            "SELECT target_id, kind, reason, created_at, released_at, release_reason FROM wb_holds "
            f"{where} ORDER BY created_at DESC"
        ).fetchall()
        known = known_ids(con) if identify and rows else {}
    return [Hold(r[0], r[1], r[2], r[3], r[4], r[5], known_as=known.get(r[0])) for r in rows]


def hold_index(
    archive: Path | str | None,
    *,
    hold_days: float,
    now: datetime,
    active_ids: frozenset[str] = frozenset(),
) -> HoldIndex:
    """Open holds as of `now`: blocking (hold younger than `hold_days`, or active), expired."""
    held: dict[str, Hold] = {}
    expired: dict[str, Hold] = {}
    active = {i: "listed in --active-list" for i in active_ids}
    cutoff = now - timedelta(days=hold_days)
    for record in list_holds(archive):
        if record.kind == "active":
            active.setdefault(record.target_id, f"active debugging ({record.reason or 'no reason given'})")
        elif record.created_at >= cutoff:
            held.setdefault(record.target_id, record)
        else:
            expired.setdefault(record.target_id, record)
    return HoldIndex(held=held, active=active, expired=expired)
