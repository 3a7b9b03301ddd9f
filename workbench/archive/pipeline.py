"""The archive job: scan → extract → persist, full or incremental, idempotent and resumable.

* Full (design §3.2): every loop of the registry (optionally `since` a date); loops already at the
  target level with an unchanged fingerprint are skipped, level-1 loops get their files.
* Incremental (design §3.3): loops the registry changed since the cursor of the last run, the
  latest `last` loops or those of the last `hours`, and every loop still below the target level
  or failed before. A run with nothing new reads only the registry rows past the cursor.
* Each batch is committed on its own, so a killed run loses at most its current batch, and the
  cursor moves only when a run completes.

This module holds the job itself (options, lock, run records, the three steps); `selection`
decides which loops to archive, `runner` extracts and stores them, `persist` writes the rows and
`runs` keeps the run's own record.
"""

from __future__ import annotations

import math
import os
import uuid
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from datetime import date, datetime
from pathlib import Path
from typing import Any

from workbench.archive.catalog import open_catalog
from workbench.archive.damage import find_damaged_objects
from workbench.archive.db import utc_now
from workbench.archive.journal import recorded
from workbench.archive.layout import ArchiveLayout
from workbench.archive.library_cache import refresh_library_cache
from workbench.archive.lock import archive_lock
from workbench.archive.persist import consolidate_factors, save_cursor
from workbench.archive.remote import accepts_s3
from workbench.archive.runner import PARALLEL_MIN_LOOPS, archive_loops, start_workers
from workbench.archive.runs import (
    RunSummary,
    fix_ended_runs,
    record_run_end,
    record_run_start,
    start_run_file,
)
from workbench.archive.selection import CatalogState, Mode, load_state, select_loops
from workbench.archive.storage_errors import storage_error, storage_errors
from workbench.archive.store import ObjectStore
from workbench.errors import ConfigError
from workbench.rdagent.installation import Installation
from workbench.rdagent.times import parse_time

__all__ = ["Mode", "RunSummary", "archive", "check_options"]


@accepts_s3(writes=True)
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
    check_options(
        mode=mode, target_level=target_level, hours=hours, last=last, batch_size=batch_size, since=since
    )
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
            state = load_state(con, layout, suspect=suspect, mode=mode)
            with recorded(con, layout, "archive-run-start", run_id=summary.run_id) as rec:
                record_run_start(con, summary, params)
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
            record_run_end(layout, summary)
    if summary.level1 or summary.level2:
        refresh_library_cache(layout.root)  # the first factor query after the run need not re-read DuckDB
    return summary


def check_options(
    *, mode: str, target_level: int, hours: float | None, last: int | None, batch_size: int, since: Any
) -> None:
    """Refuse contradictory or out-of-range options before anything is opened (ConfigError, exit 2)."""
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
    """Select, archive, then finish: merge name-only factors and move the cursor, in one transaction
    (skipped when nothing was archived and the cursor stays where it is)."""
    pool: list[ProcessPoolExecutor] = []

    def start_early(loops: int) -> None:
        # a large run starts its worker processes now: they import while the loops are selected
        if workers > 1 and loops >= PARALLEL_MIN_LOOPS:
            pool.append(start_workers(workers))

    try:
        selection = select_loops(
            installation,
            summary,
            state,
            mode=mode,
            since=since,
            hours=hours,
            last=last,
            target_level=target_level,
            include_heavy=include_heavy,
            on_registry_read=start_early,
        )
    except BaseException:
        for started in pool:
            started.shutdown(wait=False, cancel_futures=True)
        raise
    archive_loops(
        layout,
        summary,
        selection.work,
        selection.skipped,
        selection.requests,
        selection.hashes,
        state.damaged_objects,
        target_level=target_level,
        batch_size=batch_size,
        include_heavy=include_heavy,
        progress=progress,
        workers=workers,
        pool=pool[0] if pool else None,
    )
    if not (summary.level1 or summary.level2) and selection.cursor in (None, state.cursor):
        return  # nothing archived and the cursor stays: no name-only factor to merge, nothing to save
    with open_catalog(layout.root) as con:
        with recorded(con, layout, "archive-run-finish", run_id=summary.run_id) as rec:
            merged = consolidate_factors(con, rec)
            if merged:
                summary.notes.append(
                    f"{merged} factors known only by name merged into the library factor of that name"
                )
            if selection.cursor is not None:
                save_cursor(con, rec, selection.cursor, run_id=summary.run_id)
        if summary.level2:
            # the folders this run wrote into are looked at now, by the run that wrote them, so the
            # next run's check costs only what changed after it (damage found here is looked for
            # again by the next run: the folder times are then not kept)
            find_damaged_objects(con, layout, quick=True)
