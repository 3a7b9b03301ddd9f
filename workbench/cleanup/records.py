"""Cleanup in the catalog: stored plans, deletions, and each experiment's workspace state.

`wb_cleanup_plans` keeps the exact plan (JSON and hash) a dry run printed, so an approval can
refer to it; `wb_deletions` keeps one row per moved entry (what, when, bytes, which plan, where
it sits in quarantine, and whether it was restored or purged); `aistock_experiments.workspace_state`
says whether an experiment's workspace is `present`, `slimmed` or `deleted`.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb

from workbench.archive.catalog import open_catalog
from workbench.archive.db import utc_now
from workbench.archive.journal import recorded
from workbench.archive.layout import ArchiveLayout
from workbench.cleanup.plan import CleanupPlan, PlanItem, new_plan_id
from workbench.errors import ArchiveError, ConfigError

STATE_RANK = {"present": 0, "slimmed": 1, "deleted": 2}
ACTIVE_STATES = ("quarantined", "purged")


@dataclass(frozen=True)
class StoredPlan:
    plan: CleanupPlan
    status: str
    stored_hash: str
    applied_at: datetime | None
    approval_id: str | None


@dataclass(frozen=True)
class Deletion:
    deletion_id: str
    plan_id: str
    item_id: str
    experiment_id: str | None
    kind: str
    original_path: str
    quarantine_path: str | None
    bytes: int
    state: str
    deleted_at: datetime
    restored_at: datetime | None = None
    purged_at: datetime | None = None


def save_plan(plan: CleanupPlan, *, archive: Path | str | None, status: str = "planned") -> CleanupPlan:
    """Store a plan under a new id (returned on the plan) so it can be approved and audited."""
    stored = plan.with_id(plan.plan_id or new_plan_id(utc_now()))
    with open_catalog(archive) as con, recorded(con, ArchiveLayout.at(archive), "cleanup-plan") as rec:
        rec.capture("wb_cleanup_plans", plan_id=[stored.plan_id])
        con.execute(
            "INSERT INTO wb_cleanup_plans (plan_id, plan_hash, stage, created_at, params_json, plan_json, status) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                stored.plan_id,
                stored.plan_hash,
                stored.stage,
                utc_now(),
                stored.params_json,
                stored.to_json(),
                status,
            ],
        )
    return stored


def load_plan(plan_id: str, *, archive: Path | str | None) -> StoredPlan:
    """A stored plan; its JSON is re-hashed and must match the hash stored beside it."""
    with open_catalog(archive, read_only=True) as con:
        row = con.execute(
            "SELECT plan_json, status, plan_hash, applied_at, approval_id FROM wb_cleanup_plans WHERE plan_id = ?",
            [plan_id],
        ).fetchone()
    if row is None:
        raise ConfigError(
            f"no cleanup plan {plan_id!r} in the archive; list plans with `workbench cleanup plans`"
        )
    plan = CleanupPlan.from_dict(json.loads(row[0]))
    if plan.plan_hash != row[2]:
        raise ArchiveError(
            f"stored plan {plan_id} does not hash to its recorded hash; the catalog row was altered"
        )
    return StoredPlan(plan, row[1], row[2], row[3], row[4])


def recorded_roots(*, archive: Path | str | None) -> set[str]:
    """The RD-Agent roots the archive's stored plans were made for."""
    with open_catalog(archive, read_only=True) as con:
        rows = con.execute(
            "SELECT DISTINCT json_extract_string(plan_json, '$.rdagent_root') FROM wb_cleanup_plans"
        )
        return {r[0] for r in rows.fetchall() if r[0]}


def list_plans(*, archive: Path | str | None, limit: int = 50) -> list[dict[str, Any]]:
    """Recent plans with their status and how much they moved.

    `approval_id` is the approval a plan was applied with, else its newest approval (one made in the
    review panel shows at once, before it is applied); `approvals` counts them.

    Two units, never mixed: plan items (`items` in the plan, `items_moved` of them with at least
    one path moved) and paths (`paths_moved` filesystem entries moved, one row each in
    `wb_deletions`; `paths_in_quarantine` of them still there). A full-stage item is one path
    (its folder); a conservative item is one path per heavy file.
    """
    with open_catalog(archive, read_only=True) as con:
        rows = con.execute(
            """
            SELECT p.plan_id, p.stage, p.created_at, p.status, p.applied_at,
                   coalesce(p.approval_id, (SELECT a.approval_id FROM wb_cleanup_approvals a
                       WHERE a.plan_id = p.plan_id ORDER BY a.created_at DESC LIMIT 1)) AS approval_id,
                   (SELECT count(*) FROM wb_cleanup_approvals a WHERE a.plan_id = p.plan_id) AS approvals,
                   json_array_length(json_extract(p.plan_json, '$.items')) AS items,
                   count(DISTINCT d.item_id) AS items_moved,
                   count(d.deletion_id) AS paths_moved, coalesce(sum(d.bytes), 0) AS bytes,
                   count(*) FILTER (WHERE d.state = 'quarantined') AS paths_in_quarantine,
                   json_extract_string(p.plan_json, '$.rdagent_root') AS rdagent_root
            FROM wb_cleanup_plans p LEFT JOIN wb_deletions d ON d.plan_id = p.plan_id
            GROUP BY ALL ORDER BY p.created_at DESC LIMIT ?
            """,
            [limit],
        ).fetchall()
    keys = [
        "plan_id",
        "stage",
        "created_at",
        "status",
        "applied_at",
        "approval_id",
        "approvals",
        "items",
        "items_moved",
        "paths_moved",
        "bytes",
        "paths_in_quarantine",
        "rdagent_root",
    ]
    plans = [dict(zip(keys, row, strict=True)) for row in rows]
    for plan in plans:
        plan["recovery"] = (
            f"interrupted, or a move could not be recorded: unless a cleanup is running now, put it "
            f"back with `workbench cleanup undo {plan['plan_id']}`"
            if plan["status"] == "applying"
            else None
        )
    return plans


def set_plan_status(
    plan_id: str,
    status: str,
    *,
    archive: Path | str | None,
    applied: bool = False,
    approval_id: str | None = None,
) -> None:
    with open_catalog(archive) as con, recorded(con, ArchiveLayout.at(archive), "cleanup-plan-status") as rec:
        rec.capture("wb_cleanup_plans", plan_id=[plan_id])
        con.execute(
            "UPDATE wb_cleanup_plans SET status = ?, applied_at = CASE WHEN ? THEN ? ELSE applied_at END, "
            "approval_id = coalesce(?, approval_id) WHERE plan_id = ?",
            [status, applied, utc_now(), approval_id, plan_id],
        )


def record_moves(
    plan: CleanupPlan,
    moved: list[tuple[PlanItem, list[tuple[str, str, int]]]],
    *,
    archive: Path | str | None,
) -> list[Deletion]:
    """One `wb_deletions` row per moved entry of these items, and their experiments' new workspace
    state, in one transaction (one catalog open and one record for a whole batch of items)."""
    now = utc_now()
    rows = [
        Deletion(
            uuid.uuid4().hex,
            plan.plan_id or "",
            item.item_id,
            item.experiment_ids[0] if item.experiment_ids else None,
            item.kind,
            original,
            target,
            size,
            "quarantined",
            now,
        )
        for item, moves in moved
        for original, target, size in moves
    ]
    if not rows:
        return []
    touched = {e for item, _ in moved for e in item.experiment_ids}
    with open_catalog(archive) as con, recorded(con, ArchiveLayout.at(archive), "cleanup-moves") as rec:
        con.executemany(
            "INSERT INTO wb_deletions (deletion_id, plan_id, item_id, experiment_id, kind, original_path, "
            "quarantine_path, bytes, state, deleted_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                [
                    d.deletion_id,
                    d.plan_id,
                    d.item_id,
                    d.experiment_id,
                    d.kind,
                    d.original_path,
                    d.quarantine_path,
                    d.bytes,
                    d.state,
                    d.deleted_at,
                ]
                for d in rows
            ],
        )
        refresh_workspace_states(con, touched)
        rec.capture("wb_deletions", deletion_id=[d.deletion_id for d in rows])
        rec.experiments(touched)
    return rows


def deletions(
    *, archive: Path | str | None, plan_id: str | None = None, states: tuple[str, ...] = ()
) -> list[Deletion]:
    """Deletion rows, oldest first, optionally of one plan and in some states."""
    where, params = [], []
    if plan_id is not None:
        where.append("plan_id = ?")
        params.append(plan_id)
    if states:
        where.append(f"state IN ({', '.join('?' for _ in states)})")
        params.extend(states)
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    with open_catalog(archive, read_only=True) as con:
        rows = con.execute(
            "SELECT deletion_id, plan_id, item_id, experiment_id, kind, original_path, quarantine_path, bytes, state, "
            f"deleted_at, restored_at, purged_at FROM wb_deletions {clause} ORDER BY deleted_at, deletion_id",
            params,
        ).fetchall()
    return [
        Deletion(r[0], r[1], r[2], r[3], r[4], r[5], r[6], int(r[7] or 0), r[8], r[9], r[10], r[11])
        for r in rows
    ]


def mark_deletions(
    deletion_ids: list[str], state: str, *, archive: Path | str | None, experiment_ids: set[str] | None = None
) -> None:
    """Set rows to `restored` or `purged` (with the time) and refresh the touched experiments."""
    if not deletion_ids:
        return
    column = {"restored": "restored_at", "purged": "purged_at"}[state]
    with open_catalog(archive) as con, recorded(con, ArchiveLayout.at(archive), f"cleanup-{state}") as rec:
        con.execute(
            f"UPDATE wb_deletions SET state = ?, {column} = ? "
            "WHERE deletion_id IN (SELECT unnest(?::VARCHAR[]))",
            [state, utc_now(), list(deletion_ids)],
        )
        if experiment_ids:
            refresh_workspace_states(con, experiment_ids)
            rec.experiments(experiment_ids)
        rec.capture("wb_deletions", deletion_id=list(deletion_ids))


def _effect(item: PlanItem, experiment_id: str) -> str:
    if item.kind == "workspace_full" and experiment_id in item.main_experiment_ids:
        return "deleted"
    return "slimmed" if item.kind in ("workspace_full", "workspace_heavy") else "present"


#: items of stored plans by (plan_id, plan_hash), indexed by experiment: a stored plan never changes,
#: so each is parsed once per process instead of once per recorded item (that made cleanup quadratic)
_PLAN_INDEX: dict[tuple[str, str], dict[str, list[PlanItem]]] = {}
_PLAN_INDEX_MAX = 32


def _items_by_experiment(plan_json: str) -> dict[str, list[PlanItem]]:
    """A stored plan's items under each experiment id they name."""
    index: dict[str, list[PlanItem]] = {}
    for data in json.loads(plan_json).get("items") or ():
        item = PlanItem.from_dict(data)
        for experiment_id in item.experiment_ids:
            index.setdefault(experiment_id, []).append(item)
    return index


def _plan_indexes(con: duckdb.DuckDBPyConnection) -> dict[str, dict[str, list[PlanItem]]]:
    """The experiment index of every plan with deletions not restored (parsed once, then cached)."""
    marks = ", ".join("?" for _ in ACTIVE_STATES)
    rows = con.execute(
        f"SELECT p.plan_id, p.plan_hash FROM wb_cleanup_plans p WHERE p.plan_id IN "
        f"(SELECT DISTINCT plan_id FROM wb_deletions WHERE state IN ({marks}))",
        list(ACTIVE_STATES),
    ).fetchall()
    indexes: dict[str, dict[str, list[PlanItem]]] = {}
    for plan_id, plan_hash in rows:
        key = (plan_id, plan_hash)
        if key not in _PLAN_INDEX:
            if len(_PLAN_INDEX) >= _PLAN_INDEX_MAX:
                _PLAN_INDEX.clear()
            found = con.execute(
                "SELECT plan_json FROM wb_cleanup_plans WHERE plan_id = ?", [plan_id]
            ).fetchone()
            _PLAN_INDEX[key] = _items_by_experiment(found[0]) if found else {}
        indexes[plan_id] = _PLAN_INDEX[key]
    return indexes


def refresh_workspace_states(con: duckdb.DuckDBPyConnection, experiment_ids: set[str]) -> dict[str, str]:
    """Recompute `workspace_state` of these experiments from every deletion not restored.

    Only the plan items naming these experiments are looked up, so the cost follows the experiments
    touched, not every deletion ever recorded.
    """
    if not experiment_ids:
        return {}
    candidates: dict[tuple[str, str], PlanItem] = {}
    for plan_id, index in _plan_indexes(con).items():
        for experiment_id in experiment_ids:
            for item in index.get(experiment_id, ()):
                candidates[(plan_id, item.item_id)] = item
    active: set[tuple[str, str]] = set()
    if candidates:
        pairs = list(candidates)
        con.execute("CREATE OR REPLACE TEMP TABLE _wb_refresh_items (plan_id VARCHAR, item_id VARCHAR)")
        con.executemany("INSERT INTO _wb_refresh_items VALUES (?, ?)", [list(p) for p in pairs])
        rows = con.execute(
            f"SELECT DISTINCT d.plan_id, d.item_id FROM wb_deletions d JOIN _wb_refresh_items c "
            f"ON c.plan_id = d.plan_id AND c.item_id = d.item_id "
            f"WHERE d.state IN ({', '.join('?' for _ in ACTIVE_STATES)})",
            list(ACTIVE_STATES),
        ).fetchall()
        con.execute("DROP TABLE _wb_refresh_items")
        active = {(r[0], r[1]) for r in rows}
    states = dict.fromkeys(experiment_ids, "present")
    for key in active:
        item = candidates[key]
        for experiment_id in set(item.experiment_ids) & experiment_ids:
            effect = _effect(item, experiment_id)
            if STATE_RANK[effect] > STATE_RANK[states[experiment_id]]:
                states[experiment_id] = effect
    con.executemany(
        "UPDATE aistock_experiments SET workspace_state = ? WHERE id = ?",
        [[state, experiment_id] for experiment_id, state in states.items()],
    )
    return states
