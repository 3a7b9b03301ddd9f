"""Run bookkeeping: what one archive run did, in its catalog row and in ``runs/<run_id>.json``.

The file is the evidence that survives a full disk or a busy catalog: it is preallocated when
the run starts and rewritten in place when it ends, and the next run copies into the catalog
what only the file knows (`fix_ended_runs`).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from workbench.archive import faults
from workbench.archive.catalog import open_catalog
from workbench.archive.journal import recorded
from workbench.archive.layout import ArchiveLayout
from workbench.archive.storage_errors import one_line, storage_error
from workbench.errors import WorkbenchError


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

    def headline(self) -> str:
        """One line a person reads first: a failed run apart from a run that finished with bad loops.

        Why: one unreadable file fails its loop, not the run; the other loops are archived, and the
        failed ones are retried by the next run. Saying "failed" for that sends people looking for
        a broken archive.
        """
        what = f"archive run {self.run_id} ({self.mode})"
        if self.error or (self.status == "failed" and not self.errors):
            return f"{what} failed: {self.error or 'see the notes'}"
        if self.status in ("failed", "success") and self.errors:
            loops = len({(e.get("task_run_id"), e.get("loop_id")) for e in self.errors})
            return (
                f"{what} finished: {self.level1 + self.level2} loops archived, {loops} loop(s) with errors "
                "(listed below; each is retried by the next run, the others are safe)"
            )
        if self.status == "success":
            return f"{what} finished: {self.level1 + self.level2} loops archived, no errors"
        return f"{what} {self.status}"

    def format(self) -> str:
        lines = [
            self.headline(),
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


def record_run_start(con: duckdb.DuckDBPyConnection, summary: RunSummary, params: dict[str, Any]) -> None:
    con.execute(
        "INSERT INTO wb_archive_runs (run_id, mode, status, started_at, params_json) VALUES (?, ?, 'running', ?, ?)",
        [summary.run_id, summary.mode, summary.started_at, json.dumps(params)],
    )


def record_run_end(layout: ArchiveLayout, summary: RunSummary) -> None:
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
            update_run_row(con, summary.to_dict())
            rec.capture("wb_archive_runs", run_id=[summary.run_id])
    except (WorkbenchError, OSError, duckdb.Error) as exc:
        if not failing and storage_error(exc) is not None:
            raise
        summary.notes.append(f"run summary not stored in the catalog: {one_line(str(exc))}")


def update_run_row(con: duckdb.DuckDBPyConnection, data: dict[str, Any]) -> None:
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
                update_run_row(con, data)
            rec.capture("wb_archive_runs", run_id=[d.get("run_id") for d in ended])
    return len(ended)


def count_skip(summary: RunSummary, reason: str) -> None:
    summary.skipped[reason] = summary.skipped.get(reason, 0) + 1
