"""The archive job: scan → extract → persist, full or incremental, idempotent and resumable.

* Full (design §3.2): every loop of the registry (optionally `since` a date); loops already at the
  target level with an unchanged fingerprint are skipped, level-1 loops get their files.
* Incremental (design §3.3): loops the registry changed since the cursor of the last run, the
  latest `last` loops or those of the last `hours`, and every loop still below the target level
  or failed before. A run with nothing new reads only the registry rows past the cursor.
* Each batch is committed on its own, so a killed run loses at most its current batch, and the
  cursor moves only when a run completes.
"""

from __future__ import annotations

import hashlib
import json
import math
import multiprocessing
import os
import uuid
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import duckdb
import polars as pl

from workbench.archive import faults
from workbench.archive.catalog import open_catalog
from workbench.archive.db import fetch_one, utc_now
from workbench.archive.extract import Extracted, ItemError, extract_loop, validate_request
from workbench.archive.journal import recorded
from workbench.archive.layout import ArchiveLayout
from workbench.archive.library_cache import refresh_library_cache
from workbench.archive.lock import archive_lock
from workbench.archive.packs import is_pack_key, parse_pack_key
from workbench.archive.persist import Outcome, StoredBatch, commit_batch, consolidate_factors, store_files
from workbench.archive.scan import LoopCandidate, build_candidates, is_archivable
from workbench.archive.storage_errors import one_line, storage_errno, storage_error, storage_errors
from workbench.archive.store import INLINE_PREFIX, ObjectStore
from workbench.errors import ConfigError, WorkbenchError
from workbench.rdagent.installation import Installation
from workbench.rdagent.registry import RegistrySnapshot, read_loops_changed_since, read_registry
from workbench.rdagent.times import loop_timestamp, parse_time

Mode = Literal["full", "incremental"]
CURSOR_NAME = "registry"


@dataclass
class RunSummary:
    """What one archive run did; printed, stored in the catalog and in ``runs/<run_id>.json``."""

    run_id: str
    mode: str
    archive: str
    started_at: str
    ended_at: str | None = None
    status: str = "running"
    candidates: int = 0
    level1: int = 0
    level2: int = 0
    unchanged: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    errors: list[dict[str, Any]] = field(default_factory=list)
    bytes_read: int = 0
    bytes_stored: int = 0
    notes: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def failed(self) -> bool:
        return bool(self.errors) or self.status == "failed"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def format(self) -> str:
        lines = [
            f"archive run {self.run_id} ({self.mode}) {self.status}",
            f"  archive:    {self.archive}",
            f"  candidates: {self.candidates}   level 1: {self.level1}   level 2: {self.level2}   unchanged: {self.unchanged}",
            f"  skipped:    {', '.join(f'{k}={v}' for k, v in sorted(self.skipped.items())) or 'none'}",
            f"  bytes:      {self.bytes_read:,} read from key files, {self.bytes_stored:,} newly stored",
            f"  errors:     {len(self.errors)}",
        ]
        if self.error:
            lines.insert(1, f"  failed:     {self.error}")
        for error in self.errors[:20]:
            where = f"{error.get('task_run_id')}/{error.get('loop_id')}"
            lines.append(f"    - [{error.get('stage')}] {where}: {error.get('message')}")
        if len(self.errors) > 20:
            lines.append(
                f"    ... {len(self.errors) - 20} more (table wb_item_errors, run_id = '{self.run_id}')"
            )
        return "\n".join(lines)


@dataclass(frozen=True)
class CatalogState:
    """What the catalog knows before the run: per-loop state, cursor, attached requests."""

    loops: dict[tuple[str, int], dict[str, Any]]
    cursor: tuple[int, str | None] | None
    requests: dict[str, dict[str, Any]]
    cleaned: set[str]
    fresh_requests: set[str]
    #: loops whose stored copy is missing or damaged (re-stored when the workspace still has the bytes)
    damaged: set[tuple[str, int]] = field(default_factory=set)
    damaged_objects: set[str] = field(default_factory=set)


def archive(
    rdagent_root: Path | str,
    *,
    archive: Path | str | None = None,
    mode: Mode = "full",
    registry: Path | str | None = None,
    path_map: Sequence[str] = (),
    since: date | datetime | str | None = None,
    hours: float | None = None,
    last: int | None = None,
    target_level: int = 2,
    batch_size: int = 200,
    include_heavy: bool = False,
    progress: bool = True,
    lock_wait_s: float = 0.0,
    workers: int | None = None,
    suspect: Iterable[str] = (),
) -> RunSummary:
    """Archive an RD-Agent installation into `archive`; see the module docstring.

    Loops whose stored objects are missing or damaged (`find_damaged_objects`, plus the sha256s
    in `suspect`, which `repair` passes after re-hashing) are archived again whatever their
    fingerprint, so the objects are stored again when the workspace still holds the bytes.
    """
    if mode not in ("full", "incremental"):
        raise ConfigError(f"unknown mode {mode!r}; use 'full' or 'incremental'")
    if target_level not in (1, 2):
        raise ConfigError(f"--target-level must be 1 or 2, not {target_level}")
    if hours is not None and last is not None:
        raise ConfigError("give either --hours or --last, not both")
    if mode == "full" and (hours is not None or last is not None):
        raise ConfigError(
            "--hours and --last select the loops of an incremental run; a full run takes --since DATE"
        )
    if hours is not None and not (isinstance(hours, int | float) and math.isfinite(hours) and hours > 0):
        raise ConfigError(f"--hours must be a positive number of hours, not {hours!r}")
    if last is not None and last < 1:
        raise ConfigError(f"--last must be at least 1, not {last!r}")
    if batch_size < 1:
        raise ConfigError("--batch-size must be at least 1")
    if since is not None and not isinstance(since, datetime) and parse_time(str(since)) is None:
        raise ConfigError(f"--since {since!r} is not a date (use YYYY-MM-DD)")
    installation = Installation.open(
        Path(rdagent_root), registry=Path(registry) if registry else None, path_map=path_map
    )
    layout = ArchiveLayout.at(archive)
    summary = RunSummary(
        run_id=uuid.uuid4().hex, mode=mode, archive=str(layout.root), started_at=utc_now().isoformat()
    )
    params = {
        "rdagent_root": str(installation.root),
        "registry": str(installation.registry_path),
        "mode": mode,
        "since": str(since) if since else None,
        "hours": hours,
        "last": last,
        "target_level": target_level,
        "batch_size": batch_size,
        "include_heavy": include_heavy,
        "path_map": list(path_map),
    }
    with (
        archive_lock(layout.root, job=f"archive-{mode}", wait_s=lock_wait_s),
        storage_errors("the archive catalog", path=layout.catalog, archive=layout.root),
    ):
        with open_catalog(layout.root, create=True) as con:
            fix_ended_runs(con, layout)
            state = _load_state(con, layout, suspect=suspect)
            with recorded(con, layout, "archive-run-start", run_id=summary.run_id) as rec:
                _record_run_start(con, summary, params)
                rec.capture("wb_archive_runs", run_id=[summary.run_id])
        try:
            start_run_file(layout, summary)
            _run(
                installation,
                layout,
                summary,
                state,
                mode=mode,
                since=since,
                hours=hours,
                last=last,
                target_level=target_level,
                batch_size=batch_size,
                include_heavy=include_heavy,
                progress=progress,
                workers=workers or (os.cpu_count() or 1),
            )
            summary.status = "failed" if summary.errors else "success"
        except BaseException as exc:
            full = storage_error(exc, writing="the archive", archive=layout.root)
            if full is None:
                summary.status = "aborted"
                summary.notes.append(f"{type(exc).__name__}: {exc}")
                raise
            # a full or failing disk: free this run's temporary files first, then record the failure
            ObjectStore(layout.objects, tmp=layout.tmp).clear_tmp()
            summary.status = "failed"
            summary.error = str(full)
            raise full from exc
        finally:
            summary.ended_at = utc_now().isoformat()
            _record_run_end(layout, summary)
    if summary.level1 or summary.level2:
        refresh_library_cache(layout.root)  # the first factor query after the run need not re-read DuckDB
    return summary


def _load_state(
    con: duckdb.DuckDBPyConnection, layout: ArchiveLayout, *, suspect: Iterable[str] = ()
) -> CatalogState:
    loops = {
        (r[0], int(r[1])): {"state": r[2], "level": r[3], "fingerprint": r[4], "experiment_id": r[5]}
        for r in con.execute(
            "SELECT task_run_id, loop_id, state, archiving_level, fingerprint, experiment_id FROM wb_loop_state"
        ).fetchall()
    }
    row = fetch_one(
        con, "SELECT registry_rowid, registry_updated_at FROM wb_cursor WHERE name = ?", [CURSOR_NAME]
    )
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
    damaged_objects = find_damaged_objects(con, layout, suspect=suspect)
    damaged = {
        (r[0], int(r[1]))
        for r in con.execute(
            "SELECT DISTINCT e.task_run_id, e.loop_id FROM wb_stored_files f JOIN aistock_experiments e "
            "ON e.id = f.experiment_id WHERE list_contains(?, f.sha256)",
            [sorted(damaged_objects)],
        ).fetchall()
    }
    return CatalogState(
        loops, (int(row[0]), row[1]) if row else None, requests, cleaned, fresh, damaged, damaged_objects
    )


def find_damaged_objects(
    con: duckdb.DuckDBPyConnection, layout: ArchiveLayout, *, suspect: Iterable[str] = ()
) -> set[str]:
    """Objects the catalog lists whose file (or pack) is missing or has the wrong size, plus `suspect`.

    A cheap check (one stat per object file, one per pack) that lets every run notice an object
    deleted or truncated under ``objects/`` and store it again; `verify --read-data` and `repair`
    find altered bytes and pass them as `suspect`.
    """
    damaged = set(suspect)
    store = ObjectStore(layout.objects, tmp=layout.tmp, packs=layout.packs)
    pack_sizes: dict[str, int] = {}
    for sha, key, stored_bytes in con.execute(
        "SELECT sha256, storage_key, stored_bytes FROM wb_objects"
    ).fetchall():
        if key.startswith(INLINE_PREFIX):
            continue
        if is_pack_key(key):
            location = parse_pack_key(key)
            if location.pack_sha256 not in pack_sizes:
                try:
                    pack_sizes[location.pack_sha256] = store.path_for(key).stat().st_size
                except OSError:
                    pack_sizes[location.pack_sha256] = -1
            if pack_sizes[location.pack_sha256] < location.offset + location.length:
                damaged.add(sha)
            continue
        try:
            if store.path_for(key).stat().st_size != stored_bytes:
                damaged.add(sha)
        except OSError:
            damaged.add(sha)
    return damaged


def _record_run_start(con: duckdb.DuckDBPyConnection, summary: RunSummary, params: dict[str, Any]) -> None:
    con.execute(
        "INSERT INTO wb_archive_runs (run_id, mode, status, started_at, params_json) VALUES (?, ?, 'running', ?, ?)",
        [summary.run_id, summary.mode, summary.started_at, json.dumps(params)],
    )


def _record_run_end(layout: ArchiveLayout, summary: RunSummary) -> None:
    """Store the summary as ``runs/<run_id>.json`` and in the catalog (evidence even if the catalog is busy).

    The JSON file was preallocated at the start (`start_run_file`) and is rewritten in place, so a
    full disk cannot keep the end of a run from being recorded. When the run ended on a storage
    fault, a failure here is only noted: the fault is what the job reports.
    """
    failing = summary.error is not None
    try:
        finish_run_file(layout, summary)
    except OSError as exc:
        if not failing:
            raise
        summary.notes.append(f"run file not written: {exc}")
    try:
        with (
            open_catalog(layout.root) as con,
            recorded(con, layout, "archive-run-end", run_id=summary.run_id) as rec,
        ):
            _update_run_row(con, summary.to_dict())
            rec.capture("wb_archive_runs", run_id=[summary.run_id])
    except (WorkbenchError, OSError, duckdb.Error) as exc:
        if not failing and storage_error(exc) is not None:
            raise
        summary.notes.append(f"run summary not stored in the catalog: {one_line(str(exc))}")


def _update_run_row(con: duckdb.DuckDBPyConnection, data: dict[str, Any]) -> None:
    con.execute(
        """UPDATE wb_archive_runs SET status = ?, ended_at = ?, n_candidates = ?, n_level1 = ?, n_level2 = ?,
           n_unchanged = ?, n_skipped = ?, n_errors = ?, bytes_read = ?, bytes_stored = ?, summary_json = ?
           WHERE run_id = ?""",
        [
            data.get("status"),
            data.get("ended_at"),
            data.get("candidates", 0),
            data.get("level1", 0),
            data.get("level2", 0),
            data.get("unchanged", 0),
            sum((data.get("skipped") or {}).values()),
            len(data.get("errors") or []),
            data.get("bytes_read", 0),
            data.get("bytes_stored", 0),
            json.dumps(data, default=str),
            data.get("run_id"),
        ],
    )


RUN_FILE_BYTES = 64 * 1024
"""Space reserved for ``runs/<run_id>.json`` at the start of a run, so its end can be written on a full disk."""


def run_file(layout: ArchiveLayout, run_id: str) -> Path:
    return layout.runs / f"{run_id}.json"


def start_run_file(layout: ArchiveLayout, summary: RunSummary) -> None:
    """Write ``runs/<run_id>.json`` (status running), padded with spaces to `RUN_FILE_BYTES`, durably."""
    layout.runs.mkdir(parents=True, exist_ok=True)
    path = run_file(layout, summary.run_id)
    faults.check("runs", path)
    data = json.dumps(summary.to_dict(), indent=2, default=str).encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        # real bytes, not a sparse hole: the blocks are allocated now, while there is space
        os.write(fd, data + b" " * max(0, RUN_FILE_BYTES - len(data) - 1) + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)


def _fitting(data: dict[str, Any], limit: int) -> bytes:
    """The summary as JSON, with its item errors cut short if that is what it takes to fit in `limit` bytes."""
    text = json.dumps(data, indent=2, default=str).encode()
    errors = list(data.get("errors") or [])
    keep = len(errors)
    while len(text) >= limit and keep > 0:
        keep //= 2
        cut = dict(
            data,
            errors=errors[:keep],
            notes=[
                *data.get("notes", []),
                f"{len(errors) - keep} more item errors in the catalog "
                f"(table wb_item_errors, run_id = '{data.get('run_id')}')",
            ],
        )
        text = json.dumps(cut, indent=2, default=str).encode()
    return text


def finish_run_file(layout: ArchiveLayout, summary: RunSummary) -> None:
    """Rewrite ``runs/<run_id>.json`` with the final summary.

    In place inside the reserved bytes when it fits (no new blocks needed: works on a full disk),
    then the padding is cut off; otherwise (or when the file is missing) written anew.
    """
    path = run_file(layout, summary.run_id)
    faults.check("runs", path)
    data = summary.to_dict()
    try:
        fd = os.open(path, os.O_WRONLY)
    except FileNotFoundError:
        layout.runs.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=2, default=str), encoding="utf-8")
        return
    try:
        reserved = os.fstat(fd).st_size
        text = _fitting(data, reserved) if summary.error else json.dumps(data, indent=2, default=str).encode()
        if len(text) < reserved:
            os.pwrite(fd, text + b" " * (reserved - len(text) - 1) + b"\n", 0)  # whitespace after JSON parses
            os.fsync(fd)
            os.ftruncate(fd, len(text))  # frees blocks, never needs one
        else:
            os.ftruncate(fd, 0)
            os.pwrite(fd, text, 0)
        os.fsync(fd)
    finally:
        os.close(fd)


def read_run_file(layout: ArchiveLayout, run_id: str) -> dict[str, Any] | None:
    """The summary in ``runs/<run_id>.json``, or None when it is missing or unreadable."""
    try:
        data = json.loads(run_file(layout, run_id).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def fix_ended_runs(con: duckdb.DuckDBPyConnection, layout: ArchiveLayout) -> int:
    """Catalog rows still 'running' whose run file says the run ended (the catalog was full or busy then)."""
    ended = []
    for (run_id,) in con.execute("SELECT run_id FROM wb_archive_runs WHERE status = 'running'").fetchall():
        data = read_run_file(layout, run_id)
        if data and data.get("status") not in (None, "running"):
            ended.append(data)
    if ended:
        with recorded(con, layout, "archive-runs-ended") as rec:
            for data in ended:
                _update_run_row(con, data)
            rec.capture("wb_archive_runs", run_id=[d.get("run_id") for d in ended])
    return len(ended)


def _pending_loops(state: CatalogState, target_level: int) -> set[tuple[str, int]]:
    """Loops the catalog knows that every run must look at again, whatever its filters.

    Failed and partial loops (retried, never skipped for good), loops archived below the target
    level, and the loops of task runs whose request was attached since the last run.
    """
    return {
        key
        for key, s in state.loops.items()
        if s["state"] in ("failed", "partial")
        or (s["state"] == "archived" and (s["level"] or 0) < target_level)
        or key[0] in state.fresh_requests
    } | state.damaged


def _load_snapshot(
    installation: Installation, mode: Mode, state: CatalogState, pending: set[tuple[str, int]]
) -> RegistrySnapshot:
    """The registry rows this run looks at.

    Full runs and first runs read everything. Incremental runs read only the loops past the
    cursor; the `pending` loops (`_pending_loops`: failed, partial, below the target level, newly
    attached request) are added from a full read only when there are any (they are few, and
    retrying them is the point).
    """
    if mode == "full" or state.cursor is None:
        return read_registry(installation.registry_path)
    rowid, updated_at = state.cursor
    changed = read_loops_changed_since(installation.registry_path, rowid=rowid, updated_at=updated_at)
    if not pending:
        return changed
    whole = read_registry(installation.registry_path)
    changed_keys = set(
        zip(changed.loops["task_run_id"].to_list(), changed.loops["loop_id"].to_list(), strict=True)
    )
    wanted = changed_keys | pending
    keep = pl.struct("task_run_id", "loop_id").map_elements(
        lambda r: (r["task_run_id"], r["loop_id"]) in wanted, return_dtype=pl.Boolean
    )
    return replace(whole, loops=whole.loops.filter(keep))


def _select(
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


def _run(
    installation: Installation,
    layout: ArchiveLayout,
    summary: RunSummary,
    state: CatalogState,
    *,
    mode: Mode,
    since: Any,
    hours: float | None,
    last: int | None,
    target_level: int,
    batch_size: int,
    include_heavy: bool,
    progress: bool,
    workers: int,
) -> None:
    pending = _pending_loops(state, target_level)
    snapshot = _load_snapshot(installation, mode, state, pending)
    candidates = build_candidates(snapshot, installation)
    for c, order in zip(candidates, snapshot.loops["_rowid"].to_list(), strict=True):
        c.loop["_order"] = order
    chosen = _select(candidates, since=since, hours=hours, last=last, pending=pending)
    requests = _requests_by_task_run(snapshot, state)
    hashes = _registry_hashes(snapshot)
    summary.candidates = len(chosen)
    work: list[tuple[LoopCandidate, str]] = []
    skip_outcomes: list[Outcome] = []
    # loops of task runs with a request go last, so the factors they name by name already exist
    for candidate in sorted(
        chosen,
        key=lambda c: (c.task_run_id in requests, loop_timestamp(c.loop) or "", c.task_run_id, c.loop_id),
    ):
        previous = state.loops.get(candidate.key)
        if candidate.experiment_id in state.cleaned:
            # the workspace was slimmed or deleted by cleanup: the archive is the record now
            _count(summary, "cleaned_up")
            if candidate.key in state.damaged:
                summary.notes.append(
                    f"experiment {candidate.experiment_id}: stored files are missing or damaged and "
                    "its workspace was cleaned up, so they cannot be stored again"
                )
            continue
        if candidate.duplicate_of:
            _count(summary, "duplicate")
            skip_outcomes.append(
                Outcome(
                    candidate.experiment_id, candidate.task_run_id, candidate.loop_id, 0, "duplicate", "", ()
                )
            )
            continue
        refusals = [
            ref.refused
            for ref in (candidate.experiment_workspace, *candidate.sub_workspaces)
            if ref is not None and ref.refused
        ]
        if refusals:  # a path escaping the roots, a link, an unreadable folder: reported, never read
            errors = tuple(ItemError("scan", "UnsafePathError", message) for message in refusals)
            skip_outcomes.append(
                Outcome(
                    candidate.experiment_id, candidate.task_run_id, candidate.loop_id, 0, "failed", "", errors
                )
            )
            continue
        if not is_archivable(candidate):
            reason = (
                "workspace_missing"
                if candidate.notes
                and not candidate.has_results_on_disk
                and candidate.experiment_workspace is not None
                and candidate.experiment_workspace.directory is None
                else "no_results"
            )
            _count(summary, reason)
            if previous is None or previous["state"] != "no_results":
                skip_outcomes.append(
                    Outcome(
                        candidate.experiment_id,
                        candidate.task_run_id,
                        candidate.loop_id,
                        0,
                        "no_results",
                        "",
                        (),
                    )
                )
            continue
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
            continue
        work.append((candidate, fingerprint))
    _process(
        layout,
        summary,
        work,
        skip_outcomes,
        requests,
        hashes,
        state.damaged_objects,
        target_level=target_level,
        batch_size=batch_size,
        include_heavy=include_heavy,
        progress=progress,
        workers=workers,
    )
    cursor = _snapshot_cursor(snapshot, state)
    if len(chosen) < len(candidates):
        # loops left out by the limit were not looked at: the next run must still see them
        cursor = None
        summary.notes.append(
            f"{len(candidates) - len(chosen)} loops outside --since/--hours/--last were left for a "
            "later run; the incremental cursor was not moved, so the next run still sees them"
        )
    with (
        open_catalog(layout.root) as con,
        recorded(con, layout, "archive-run-finish", run_id=summary.run_id) as rec,
    ):
        merged = consolidate_factors(con, rec)
        if merged:
            summary.notes.append(
                f"{merged} factors known only by name merged into the library factor of that name"
            )
        if cursor is not None:
            con.execute(
                "INSERT INTO wb_cursor VALUES (?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET "
                "registry_rowid = greatest(wb_cursor.registry_rowid, excluded.registry_rowid), "
                "registry_updated_at = greatest(wb_cursor.registry_updated_at, excluded.registry_updated_at), "
                "run_id = excluded.run_id, updated_at = excluded.updated_at",
                [CURSOR_NAME, cursor[0], cursor[1], summary.run_id, utc_now()],
            )
            rec.capture("wb_cursor", name=[CURSOR_NAME])


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


def _count(summary: RunSummary, reason: str) -> None:
    summary.skipped[reason] = summary.skipped.get(reason, 0) + 1


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


PARALLEL_MIN_LOOPS = 200


def _process(
    layout: ArchiveLayout,
    summary: RunSummary,
    work: list[tuple[LoopCandidate, str]],
    skip_outcomes: list[Outcome],
    requests: dict[str, dict[str, Any] | ItemError],
    hashes: dict[str, dict[str, str]],
    damaged_objects: set[str],
    *,
    target_level: int,
    batch_size: int,
    include_heavy: bool,
    progress: bool,
    workers: int,
) -> None:
    """Extract and store loops (in worker processes for large runs), commit batch by batch."""
    ObjectStore(layout.objects, tmp=layout.tmp).clear_tmp()
    if skip_outcomes:
        _commit(layout, summary, skip_outcomes, {}, {})
    if not work:
        return
    known = _known_objects(layout, exclude=damaged_objects) if target_level >= 2 else {}
    settings = _WorkerSettings(
        layout.objects, layout.tmp, requests, hashes, known, target_level, include_heavy
    )
    bar = _progress_bar(len(work), enabled=progress)
    pool = _worker_pool(settings, workers=workers if len(work) >= PARALLEL_MIN_LOOPS else 1)
    committer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="commit")
    pending: Future[None] | None = None
    try:
        for start in range(0, len(work), batch_size):
            batch = work[start : start + batch_size]
            outcomes, items, stored = [], {}, {}
            results = (
                pool.map(_archive_in_worker, batch, chunksize=4) if pool else map(_archive_in_worker, batch)
            )
            for (candidate, _), (outcome, item, files) in zip(batch, results, strict=True):
                outcomes.append(outcome)
                if item is not None:
                    items[candidate.experiment_id] = item
                if files is not None:
                    stored[candidate.experiment_id] = files
                    summary.bytes_read += files.bytes_read
                    summary.bytes_stored += files.bytes_written
                bar.update(1)
            if pending is not None:
                pending.result()
            # the commit of this batch overlaps the extraction of the next one
            pending = committer.submit(_sync_and_commit, layout, summary, outcomes, items, stored)
        if pending is not None:
            pending.result()
    finally:
        committer.shutdown(wait=True)
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        bar.close()


def _sync_and_commit(
    layout: ArchiveLayout,
    summary: RunSummary,
    outcomes: list[Outcome],
    items: dict[str, Extracted],
    stored: dict[str, StoredBatch],
) -> None:
    _commit(layout, summary, outcomes, items, stored)  # its record's sync makes the objects durable first


@dataclass(frozen=True)
class _WorkerSettings:
    objects: Path
    tmp: Path
    requests: dict[str, dict[str, Any] | ItemError]
    hashes: dict[str, dict[str, str]]
    known: dict[str, str]
    target_level: int
    include_heavy: bool


_WORKER: dict[str, Any] = {}


def _init_worker(settings: _WorkerSettings) -> None:
    _WORKER["settings"] = settings
    _WORKER["store"] = ObjectStore(settings.objects, tmp=settings.tmp)


def _worker_pool(settings: _WorkerSettings, *, workers: int) -> ProcessPoolExecutor | None:
    """Worker processes (spawned: no forked thread pools) for large runs; None means in-process."""
    _init_worker(settings)
    if workers <= 1:
        return None
    context = multiprocessing.get_context("spawn")
    return ProcessPoolExecutor(
        max_workers=workers, mp_context=context, initializer=_init_worker, initargs=(settings,)
    )


def _archive_in_worker(
    job: tuple[LoopCandidate, str],
) -> tuple[Outcome, Extracted | None, StoredBatch | None]:
    settings: _WorkerSettings = _WORKER["settings"]
    return _archive_one(
        job,
        requests=settings.requests,
        hashes=settings.hashes,
        store=_WORKER["store"],
        known=settings.known,
        target_level=settings.target_level,
        include_heavy=settings.include_heavy,
    )


def _progress_bar(total: int, *, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="archiving loops", unit="loop", disable=not enabled or total == 0)


def _known_objects(layout: ArchiveLayout, *, exclude: set[str]) -> dict[str, str]:
    """sha256 → storage key of every stored object, except the damaged ones (they are written again)."""
    with open_catalog(layout.root) as con:
        return {
            sha: key
            for sha, key in con.execute("SELECT sha256, storage_key FROM wb_objects").fetchall()
            if sha not in exclude
        }


def _archive_one(
    job: tuple[LoopCandidate, str],
    *,
    requests: dict[str, dict[str, Any] | ItemError],
    hashes: dict[str, dict[str, str]],
    store: ObjectStore,
    known: dict[str, str],
    target_level: int,
    include_heavy: bool,
) -> tuple[Outcome, Extracted | None, StoredBatch | None]:
    """Extract and store one loop; never raises for bad input (it becomes the outcome's errors).

    Runs in a worker process for large runs (see `_worker_pool`), in process otherwise.
    """
    candidate, fingerprint = job
    request = requests.get(candidate.task_run_id)
    if isinstance(request, ItemError):
        return (
            Outcome(
                candidate.experiment_id,
                candidate.task_run_id,
                candidate.loop_id,
                0,
                "failed",
                fingerprint,
                (request,),
            ),
            None,
            None,
        )
    try:
        item = extract_loop(
            candidate, request=request, include_heavy=include_heavy, with_files=target_level >= 2
        )
        stored = None
        level = 1
        if target_level >= 2 and item.can_reach_level2:
            ws = candidate.experiment_workspace
            hashes_of_ws = hashes.get(ws.workspace_id, {}) if ws else {}
            stored = store_files(item, store, known=known, registry_hashes=hashes_of_ws)
            item.errors.extend(stored.errors)
            level = 2 if not stored.errors else 1
    except Exception as exc:  # one bad loop never stops a run, whatever its input triggers
        if storage_errno(exc) is not None:  # ... but a full or failing disk does
            raise
        stage = "extract" if isinstance(exc, WorkbenchError | OSError | ValueError) else "internal"
        message = (
            str(exc) if stage == "extract" else f"unexpected {type(exc).__name__}: {exc} (please report this)"
        )
        error = ItemError(stage, type(exc).__name__, message)
        return (
            Outcome(
                candidate.experiment_id,
                candidate.task_run_id,
                candidate.loop_id,
                0,
                "failed",
                fingerprint,
                (error,),
            ),
            None,
            None,
        )
    errors = tuple(item.errors)
    note = None
    if errors:
        state = "failed"
    elif level >= target_level:
        state = "archived"
    else:
        state = "partial"
        note = "; ".join(candidate.notes) or "results not on disk; archived from the registry alone"
    return (
        Outcome(
            candidate.experiment_id,
            candidate.task_run_id,
            candidate.loop_id,
            level,
            state,
            fingerprint,
            errors,
            note,
        ),
        item,
        stored,
    )


def _commit(
    layout: ArchiveLayout,
    summary: RunSummary,
    outcomes: list[Outcome],
    items: dict[str, Extracted],
    stored: dict[str, StoredBatch],
) -> None:
    now = utc_now()
    with open_catalog(layout.root) as con:
        commit_batch(con, outcomes, items, stored, layout=layout, run_id=summary.run_id, now=now)
    for o in outcomes:
        if o.state in ("archived", "partial", "failed") and o.level >= 1:
            if o.level == 2:
                summary.level2 += 1
            else:
                summary.level1 += 1
        for e in o.errors:
            summary.errors.append(
                {
                    "task_run_id": o.task_run_id,
                    "loop_id": o.loop_id,
                    "experiment_id": o.experiment_id,
                    "stage": e.stage,
                    "path": e.path,
                    "message": e.message,
                }
            )
