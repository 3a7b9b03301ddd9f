"""Which loops a run archives, and why the others are skipped.

The catalog's view before the run (`CatalogState`: per-loop state, cursor, attached requests,
cleaned-up and damaged experiments), the registry rows to look at (all of them, or those past
the cursor plus the loops every run must retry), the --since/--hours/--last filters, and the
decision per loop: archive it (with its fingerprint), record why not, or leave it unchanged.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

import duckdb
import polars as pl

from workbench.archive.damage import find_damaged_objects
from workbench.archive.db import fetch_frame
from workbench.archive.extract import ItemError, validate_request
from workbench.archive.layout import ArchiveLayout
from workbench.archive.persist import Outcome, load_cursor
from workbench.archive.runs import RunSummary, count_skip
from workbench.archive.scan import LoopCandidate, build_candidates, is_archivable
from workbench.errors import ConfigError
from workbench.rdagent.installation import Installation
from workbench.rdagent.registry import MAX_ALSO, RegistrySnapshot, read_loops_changed_since, read_registry
from workbench.rdagent.times import loop_timestamp, parse_time

Mode = Literal["full", "incremental"]


@dataclass(frozen=True)
class LoopStates:
    """`wb_loop_state` as one frame; rows become dicts only for the loops a run looks at.

    Why: an incremental run with nothing new looks at a handful of loops, and turning every row of
    a large archive into a dict would make it cost what the archive holds.
    """

    frame: pl.DataFrame

    @classmethod
    def read(cls, con: duckdb.DuckDBPyConnection) -> LoopStates:
        frame = fetch_frame(
            con,
            "SELECT task_run_id, loop_id, state, archiving_level AS level, fingerprint, experiment_id, last_error "
            "FROM wb_loop_state",
        )
        return cls(frame.with_columns(pl.col("loop_id").cast(pl.Int64)))

    def lookup(self, keys: Iterable[tuple[str, int]]) -> dict[tuple[str, int], dict[str, Any]]:
        """The state rows of these loops (those the catalog has), as dicts."""
        wanted = list(keys)
        if not wanted or self.frame.is_empty():
            return {}
        found = self.frame.join(
            pl.DataFrame(
                {"task_run_id": [k[0] for k in wanted], "loop_id": [k[1] for k in wanted]},
                schema={"task_run_id": self.frame.schema["task_run_id"], "loop_id": pl.Int64},
            ),
            on=["task_run_id", "loop_id"],
            how="semi",
        )
        return {(r["task_run_id"], int(r["loop_id"])): r for r in found.iter_rows(named=True)}

    def pending(self, target_level: int, fresh_requests: set[str]) -> set[tuple[str, int]]:
        """Failed or partial, archived below `target_level`, or of a task run with a fresh request."""
        rows = self.frame.filter(
            pl.col("state").is_in(["failed", "partial"])
            | ((pl.col("state") == "archived") & (pl.col("level").fill_null(0) < target_level))
            | pl.col("task_run_id").is_in(sorted(fresh_requests))
        )
        return {(t, int(i)) for t, i in zip(rows["task_run_id"], rows["loop_id"], strict=True)}


@dataclass(frozen=True)
class CatalogState:
    """What the catalog knows before the run: per-loop state, cursor, attached requests."""

    loops: LoopStates
    cursor: tuple[int, str | None] | None
    requests: dict[str, dict[str, Any]]
    cleaned: set[str]
    fresh_requests: set[str]
    #: loops whose stored copy is missing or damaged (re-stored when the workspace still has the bytes)
    damaged: set[tuple[str, int]] = field(default_factory=set)
    damaged_objects: set[str] = field(default_factory=set)
    #: failed or partial loops whose last attempt met only problems of their own input (broken
    #: files, refused paths, an invalid request): an incremental run retries them once they change
    settled: set[tuple[str, int]] = field(default_factory=set)


@dataclass
class Selection:
    """What a run will do: the loops to archive (with their fingerprints) and the skips to record."""

    work: list[tuple[LoopCandidate, str]]
    skipped: list[Outcome]
    requests: dict[str, dict[str, Any] | ItemError]
    hashes: dict[str, dict[str, str]]
    #: the registry cursor to store when the run completes; None when filters left loops for later
    cursor: tuple[int, str | None] | None


def select_loops(
    installation: Installation,
    summary: RunSummary,
    state: CatalogState,
    *,
    mode: Mode,
    since: Any,
    hours: float | None,
    last: int | None,
    target_level: int,
    include_heavy: bool,
    on_registry_read: Callable[[int], None] | None = None,
) -> Selection:
    """Read the registry rows this run looks at, filter them and decide loop by loop (counted in `summary`).

    `on_registry_read` hears how many loop rows were read, before the slow part (the workspace walks).
    """
    pending = pending_loops(state, target_level)
    snapshot = load_snapshot(installation, mode, state, pending)
    if on_registry_read is not None:
        on_registry_read(snapshot.loops.height)
    candidates = build_candidates(snapshot, installation)
    for c, order in zip(candidates, snapshot.loops["_rowid"].to_list(), strict=True):
        c.loop["_order"] = order
    chosen = apply_filters(candidates, since=since, hours=hours, last=last, pending=pending)
    requests = _requests_by_task_run(snapshot, state)
    summary.candidates = len(chosen)
    previous = state.loops.lookup(c.key for c in chosen)
    work: list[tuple[LoopCandidate, str]] = []
    skipped: list[Outcome] = []
    # loops of task runs with a request go last, so the factors they name by name already exist
    for candidate in sorted(
        chosen,
        key=lambda c: (c.task_run_id in requests, loop_timestamp(c.loop) or "", c.task_run_id, c.loop_id),
    ):
        decision = _decide(
            candidate,
            previous.get(candidate.key),
            state,
            summary,
            requests,
            target_level=target_level,
            include_heavy=include_heavy,
            retry_settled=mode == "full",
        )
        if isinstance(decision, Outcome):
            skipped.append(decision)
        elif decision is not None:
            work.append((candidate, decision))
    cursor = _snapshot_cursor(snapshot, state)
    if len(chosen) < len(candidates):
        # loops left out by the limit were not looked at: the next run must still see them
        cursor = None
        summary.notes.append(
            f"{len(candidates) - len(chosen)} loops outside --since/--hours/--last were left for a "
            "later run; the incremental cursor was not moved, so the next run still sees them"
        )
    return Selection(work, skipped, requests, _registry_hashes(snapshot), cursor)


def _decide(
    candidate: LoopCandidate,
    previous: dict[str, Any] | None,
    state: CatalogState,
    summary: RunSummary,
    requests: dict[str, dict[str, Any] | ItemError],
    *,
    target_level: int,
    include_heavy: bool,
    retry_settled: bool = True,
) -> Outcome | str | None:
    """The loop's fingerprint when it must be archived, an outcome to record when it is skipped
    for a reason the catalog keeps, or None when there is nothing to do (counted in `summary`).

    Without `retry_settled` (incremental runs), a loop that failed on its own input, or was
    archived partially, is tried again only once its registry rows or files changed: the same
    input fails the same way, and retrying it would make every scheduled run cost (and record) it.
    """
    if candidate.experiment_id in state.cleaned:
        # the workspace was slimmed or deleted by cleanup: the archive is the record now
        count_skip(summary, "cleaned_up")
        if candidate.key in state.damaged:
            summary.notes.append(
                f"experiment {candidate.experiment_id}: stored files are missing or damaged and "
                "its workspace was cleaned up, so they cannot be stored again"
            )
        return None
    if candidate.duplicate_of:
        count_skip(summary, "duplicate")
        if (
            previous
            and previous["state"] == "duplicate"
            and previous["experiment_id"] == candidate.experiment_id
        ):
            return None
        return Outcome(
            candidate.experiment_id, candidate.task_run_id, candidate.loop_id, 0, "duplicate", "", ()
        )
    refusals = [
        ref.refused
        for ref in (candidate.experiment_workspace, *candidate.sub_workspaces)
        if ref is not None and ref.refused
    ]
    if refusals:  # a path escaping the roots, a link, an unreadable folder: reported, never read
        if (
            not retry_settled
            and previous
            and previous["state"] == "failed"
            and previous["last_error"] == refusals[0][:2000]
        ):
            count_skip(summary, "failed_unchanged")
            return None
        errors = tuple(ItemError("scan", "UnsafePathError", message) for message in refusals)
        return Outcome(
            candidate.experiment_id, candidate.task_run_id, candidate.loop_id, 0, "failed", "", errors
        )
    if not is_archivable(candidate):
        reason = (
            "workspace_missing"
            if candidate.notes
            and not candidate.has_results_on_disk
            and candidate.experiment_workspace is not None
            and candidate.experiment_workspace.directory is None
            else "no_results"
        )
        count_skip(summary, reason)
        if previous is None or previous["state"] != "no_results":
            return Outcome(
                candidate.experiment_id,
                candidate.task_run_id,
                candidate.loop_id,
                0,
                "no_results",
                "",
                (),
            )
        return None
    plain = _with_request(candidate.fingerprint(), requests.get(candidate.task_run_id))
    with_heavy = _with_heavy(plain)
    fingerprint = with_heavy if include_heavy else plain
    # an archive made with --include-heavy also satisfies a run without it, not the reverse
    accepted = (with_heavy,) if include_heavy else (plain, with_heavy)
    if (
        previous
        and candidate.key not in state.damaged
        and previous["fingerprint"] in accepted
        and previous["state"] in ("archived", "partial")
        and (previous["level"] >= target_level or previous["state"] == "partial")
    ):
        summary.unchanged += 1
        return None
    if (
        not retry_settled
        and previous
        and candidate.key in state.settled
        and candidate.key not in state.damaged
        and previous["fingerprint"] in accepted
    ):
        count_skip(summary, f"{previous['state']}_unchanged")
        return None
    return fingerprint


#: error types that come from a loop's own input: retrying without a change to it fails the same way
INPUT_ERRORS = ("InputFileError", "UnsafePickleError", "UnsafePathError", "ConfigError")


def load_state(
    con: duckdb.DuckDBPyConnection,
    layout: ArchiveLayout,
    *,
    suspect: Iterable[str] = (),
    mode: Mode = "full",
) -> CatalogState:
    """The catalog's view before a run; an incremental one checks objects the quick way (`damage`)."""
    loops = LoopStates.read(con)
    requests = {
        r[0]: json.loads(r[1])
        for r in con.execute("SELECT task_run_id, request_json FROM wb_attached_requests").fetchall()
    }
    cleaned = {
        r[0]
        for r in con.execute(
            "SELECT id FROM aistock_experiments WHERE workspace_state <> 'present'"
        ).fetchall()
    }
    fresh = {
        r[0]
        for r in con.execute(
            "SELECT a.task_run_id FROM wb_attached_requests a WHERE a.attached_at > "
            "coalesce((SELECT max(updated_at) FROM wb_cursor), TIMESTAMPTZ '1970-01-01 00:00:00+00')"
        ).fetchall()
    }
    damaged_objects = find_damaged_objects(con, layout, suspect=suspect, quick=mode == "incremental")
    damaged = (
        {
            (r[0], int(r[1]))
            for r in con.execute(
                "SELECT DISTINCT e.task_run_id, e.loop_id FROM wb_stored_files f JOIN aistock_experiments e "
                "ON e.id = f.experiment_id WHERE list_contains(?, f.sha256)",
                [sorted(damaged_objects)],
            ).fetchall()
        }
        if damaged_objects
        else set()
    )
    return CatalogState(
        loops, load_cursor(con), requests, cleaned, fresh, damaged, damaged_objects, _settled(con)
    )


def _settled(con: duckdb.DuckDBPyConnection) -> set[tuple[str, int]]:
    """Failed or partial loops whose last run recorded no error outside `INPUT_ERRORS`."""
    marks = ", ".join("?" for _ in INPUT_ERRORS)
    rows = con.execute(
        "SELECT s.task_run_id, s.loop_id FROM wb_loop_state s WHERE s.state IN ('failed', 'partial') "
        "AND NOT EXISTS (SELECT 1 FROM wb_item_errors e WHERE e.run_id = s.last_run_id "
        f"AND e.task_run_id = s.task_run_id AND e.loop_id = s.loop_id AND e.error_type NOT IN ({marks}))",
        list(INPUT_ERRORS),
    ).fetchall()
    return {(r[0], int(r[1])) for r in rows}


def pending_loops(state: CatalogState, target_level: int) -> set[tuple[str, int]]:
    """Loops the catalog knows that every run must look at again, whatever its filters.

    Failed and partial loops (retried, never skipped for good), loops archived below the target
    level, and the loops of task runs whose request was attached since the last run.
    """
    return state.loops.pending(target_level, state.fresh_requests) | state.damaged


def load_snapshot(
    installation: Installation, mode: Mode, state: CatalogState, pending: set[tuple[str, int]]
) -> RegistrySnapshot:
    """The registry rows this run looks at.

    Full runs and first runs read everything. Incremental runs read only the loops past the
    cursor and the `pending` loops (`pending_loops`: failed, partial, below the target level,
    newly attached request), named by key; a whole read is filtered only when there are more
    pending loops than one query can name.
    """
    if mode == "full" or state.cursor is None:
        return read_registry(installation.registry_path)
    rowid, updated_at = state.cursor
    if len(pending) <= MAX_ALSO:  # the usual case: the few pending loops are read by key
        return read_loops_changed_since(
            installation.registry_path, rowid=rowid, updated_at=updated_at, also=pending
        )
    changed = read_loops_changed_since(installation.registry_path, rowid=rowid, updated_at=updated_at)
    whole = read_registry(installation.registry_path)
    changed_keys = set(
        zip(changed.loops["task_run_id"].to_list(), changed.loops["loop_id"].to_list(), strict=True)
    )
    wanted = changed_keys | pending
    keep = pl.struct("task_run_id", "loop_id").map_elements(
        lambda r: (r["task_run_id"], r["loop_id"]) in wanted, return_dtype=pl.Boolean
    )
    return replace(whole, loops=whole.loops.filter(keep))


def apply_filters(
    candidates: list[LoopCandidate],
    *,
    since: date | datetime | str | None,
    hours: float | None,
    last: int | None,
    pending: set[tuple[str, int]] | None = None,
) -> list[LoopCandidate]:
    """Apply the --since, --hours and --last filters; `pending` loops pass --hours/--last regardless."""
    chosen = candidates
    if since is not None:
        bound = parse_time(str(since)) if not isinstance(since, datetime) else since
        if bound is None:
            raise ConfigError(f"--since {since!r} is not a date (use YYYY-MM-DD)")
        chosen = [c for c in chosen if (t := parse_time(loop_timestamp(c.loop))) is None or t >= bound]
    if hours is None and last is None:
        return chosen
    keep = pending or set()
    limited = [c for c in chosen if c.key not in keep]
    if hours is not None:
        bound = datetime.now(UTC) - timedelta(hours=hours)
        limited = [c for c in limited if (t := parse_time(loop_timestamp(c.loop))) is not None and t >= bound]
    if last is not None:
        limited = sorted(limited, key=lambda c: (c.loop.get("_order") or 0, loop_timestamp(c.loop) or ""))[
            -last:
        ]
    picked = {id(c) for c in limited}
    return [c for c in chosen if c.key in keep or id(c) in picked]


def _with_request(fingerprint: str, request: dict[str, Any] | ItemError | None) -> str:
    """A loop also changes when its task run's experiment request is attached or replaced."""
    if request is None:
        return fingerprint
    text = json.dumps(request if isinstance(request, dict) else str(request), sort_keys=True, default=str)
    return hashlib.sha256(f"{fingerprint}|{text}".encode()).hexdigest()


def _with_heavy(fingerprint: str) -> str:
    """The fingerprint of a loop archived with its heavy intermediates (--include-heavy)."""
    return hashlib.sha256(f"{fingerprint}|include-heavy".encode()).hexdigest()


def _snapshot_cursor(snapshot: RegistrySnapshot, state: CatalogState) -> tuple[int, str | None] | None:
    """The cursor after this run: the registry's own, never moving backwards."""
    rowid, stamp = snapshot.max_rowid, snapshot.max_updated_at
    if state.cursor:
        rowid = max(rowid, state.cursor[0])
        if state.cursor[1] and (stamp is None or state.cursor[1] > stamp):
            stamp = state.cursor[1]
    return rowid, stamp


def _registry_hashes(snapshot: RegistrySnapshot) -> dict[str, dict[str, str]]:
    """workspace_id → {relative path: sha256} for files the registry hashed (V1 rows only)."""
    found: dict[str, dict[str, str]] = {}
    frame = snapshot.artifact_files.filter(pl.col("sha256").is_not_null())
    for row in frame.select("workspace_id", "path", "sha256").iter_rows(named=True):
        rel = str(row["path"]).replace("\\", "/")
        found.setdefault(row["workspace_id"], {})[rel] = row["sha256"]
    return found


def _requests_by_task_run(
    snapshot: RegistrySnapshot, state: CatalogState
) -> dict[str, dict[str, Any] | ItemError]:
    """Experiment requests from task_runs.params_json, overridden by attached ones; invalid → error."""
    found: dict[str, dict[str, Any] | ItemError] = {}
    for row in snapshot.task_runs.iter_rows(named=True):
        raw = row.get("params_json")
        if not raw:
            continue
        try:
            params = json.loads(raw)
        except ValueError:
            continue
        if isinstance(params, dict) and params.get("experiment_request") is not None:
            source = f"task_runs.params_json of {row['task_run_id']}"
            try:
                found[row["task_run_id"]] = validate_request(params["experiment_request"], source=source)
            except ConfigError as exc:
                found[row["task_run_id"]] = ItemError("request", "ConfigError", str(exc), source)
    found.update(state.requests)
    return found
