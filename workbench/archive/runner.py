"""The runner: extract and store the selected loops, in worker processes for large runs, and
commit batch by batch (each batch's commit overlapping the extraction of the next).

Each batch is committed on its own, so a killed run loses at most its current batch; one bad
loop becomes its outcome's errors and never stops the run, but a full or failing disk does.
"""

from __future__ import annotations

import multiprocessing
import pickle
import uuid
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workbench.archive.catalog import open_catalog
from workbench.archive.db import utc_now
from workbench.archive.extract import Extracted, ItemError, extract_loop
from workbench.archive.layout import ArchiveLayout
from workbench.archive.persist import Outcome, StoredBatch, commit_batch, store_files
from workbench.archive.runs import RunSummary
from workbench.archive.scan import LoopCandidate
from workbench.archive.storage_errors import storage_errno
from workbench.archive.store import ObjectStore
from workbench.errors import WorkbenchError

PARALLEL_MIN_LOOPS = 200


def archive_loops(
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
    pool: ProcessPoolExecutor | None = None,
) -> None:
    """Extract and store loops (in worker processes for large runs), commit batch by batch.

    `pool` (from `start_workers`, started while the loops were being selected) is used, then
    shut down; without one, a large run starts its own.
    """
    settings_file = ""
    try:
        ObjectStore(layout.objects, tmp=layout.tmp).clear_tmp()
        if skip_outcomes:
            _commit(layout, summary, skip_outcomes, {}, {})
        if not work:
            return
        if pool is None and workers > 1 and len(work) >= PARALLEL_MIN_LOOPS:
            pool = start_workers(workers)
        known = _known_objects(layout, exclude=damaged_objects) if target_level >= 2 else {}
        settings = _WorkerSettings(
            layout.objects, layout.tmp, requests, hashes, known, target_level, include_heavy
        )
        _init_worker(settings)
        settings_file = _settings_file(layout, settings) if pool is not None else ""
        _run_batches(layout, summary, work, pool, settings_file, batch_size=batch_size, progress=progress)
    finally:
        if pool is not None:  # a pool that got no work is not waited for (it may still be importing)
            pool.shutdown(wait=bool(work), cancel_futures=True)
        if settings_file:
            Path(settings_file).unlink(missing_ok=True)


def _run_batches(
    layout: ArchiveLayout,
    summary: RunSummary,
    work: list[tuple[LoopCandidate, str]],
    pool: ProcessPoolExecutor | None,
    settings_file: str,
    *,
    batch_size: int,
    progress: bool,
) -> None:
    """Collect the loops' results batch by batch; each batch's commit overlaps the next's extraction."""
    bar = _progress_bar(len(work), enabled=progress)
    committer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="commit")
    pending: Future[None] | None = None
    try:
        batches = [work[start : start + batch_size] for start in range(0, len(work), batch_size)]
        # the next batch is queued in the workers before this one is collected, so they never
        # wait for the main process (and at most two batches of results are held in memory)
        queued = [_launch(pool, settings_file, batches[0])] if pool else []
        for index, batch in enumerate(batches):
            if pool is not None:
                if index + 1 < len(batches):
                    queued.append(_launch(pool, settings_file, batches[index + 1]))
                futures = queued.pop(0)
                results: Iterator[_Result] = (r for f in futures for r in f.result())
            else:
                results = map(_archive_in_worker, batch)
            outcomes, items, stored = [], {}, {}
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
            pending = committer.submit(_sync_and_commit, layout, summary, outcomes, items, stored)
        if pending is not None:
            pending.result()
    finally:
        committer.shutdown(wait=True)
        bar.close()


_Result = tuple[Outcome, Extracted | None, StoredBatch | None]
CHUNK = 4
"""Loops per task sent to a worker process (fewer round trips than one loop per task)."""


def _launch(
    pool: ProcessPoolExecutor, settings_file: str, batch: list[tuple[LoopCandidate, str]]
) -> list[Future[list[_Result]]]:
    """Queue one batch in the worker processes, `CHUNK` loops per task, in order."""
    return [
        pool.submit(_archive_chunk, settings_file, batch[i : i + CHUNK]) for i in range(0, len(batch), CHUNK)
    ]


def _archive_chunk(settings_file: str, jobs: list[tuple[LoopCandidate, str]]) -> list[_Result]:
    if _WORKER.get("settings_file") != settings_file:
        with open(settings_file, "rb") as handle:
            _init_worker(pickle.load(handle))  # written by this run's own process (`_settings_file`)
        _WORKER["settings_file"] = settings_file
    return [_archive_in_worker(job) for job in jobs]


def start_workers(workers: int) -> ProcessPoolExecutor:
    """Start the worker processes now (spawned: no forked thread pools).

    Each imports the archive code first (about a second), so a run starts them while it selects
    its loops; the run's settings reach them later through a file (`_settings_file`).
    """
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))
    for _ in range(workers):
        pool.submit(_warm)  # one task per process makes the pool start them all now
    return pool


def _warm() -> None:
    """Nothing: importing this module in the worker was the point."""


def _settings_file(layout: ArchiveLayout, settings: _WorkerSettings) -> str:
    """The run's worker settings (requests, registry hashes, known objects), pickled once for all workers."""
    layout.tmp.mkdir(parents=True, exist_ok=True)
    path = layout.tmp / f"workers-{uuid.uuid4().hex}.pickle"
    path.write_bytes(pickle.dumps(settings, protocol=pickle.HIGHEST_PROTOCOL))
    return str(path)


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
