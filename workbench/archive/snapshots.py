"""Catalog snapshots: a consistent copy of the catalog after every successful writing job.

A snapshot is the catalog file itself, copied right after a ``CHECKPOINT`` while this process
holds the only writing connection (DuckDB's file lock keeps every other process out, so the
bytes cannot change under the copy). It is named by the record sequence it contains,
``snapshots/catalog-<seq>-<UTC time>.duckdb``, so `repair` can start from the newest one that
opens and replay only the records written since. The newest `keep` snapshots are kept.
"""

from __future__ import annotations

import os
import re
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path

from workbench.archive.catalog import open_catalog
from workbench.archive.db import utc_now
from workbench.archive.durable import copy_synced, fsync_dir
from workbench.archive.journal import current_seq, newest_record_seq, read_record, record_files
from workbench.archive.layout import ArchiveLayout
from workbench.errors import VerificationError, WorkbenchError

DEFAULT_KEEP = 3
_NAME = re.compile(r"^catalog-(\d{12})-(\d{8}T\d{6}\d*Z)\.duckdb$")


@dataclass(frozen=True)
class Snapshot:
    path: Path
    seq: int
    taken_at: str


def list_snapshots(archive: Path | str | None) -> list[Snapshot]:
    """Snapshots, newest first (by record sequence, then time)."""
    layout = ArchiveLayout.at(archive)
    found = []
    if layout.snapshots.exists():
        for path in layout.snapshots.iterdir():
            match = _NAME.match(path.name)
            if match and path.is_file():
                found.append(Snapshot(path, int(match[1]), match[2]))
    return sorted(found, key=lambda s: (s.seq, s.taken_at), reverse=True)


def take_snapshot(archive: Path | str | None, *, keep: int = DEFAULT_KEEP) -> Snapshot:
    """Copy the checkpointed catalog into ``snapshots/`` (fsynced), then drop all but the newest `keep`."""
    layout = ArchiveLayout.at(archive)
    layout.snapshots.mkdir(parents=True, exist_ok=True)
    layout.tmp.mkdir(parents=True, exist_ok=True)
    temp = layout.tmp / f"snapshot-{uuid.uuid4().hex}.part"
    with open_catalog(layout.root) as con:
        con.execute("CHECKPOINT")
        seq = current_seq(con)
        copy_synced(layout.catalog, temp)
    stamp = utc_now().strftime("%Y%m%dT%H%M%S%fZ")
    target = layout.snapshots / f"catalog-{seq:012d}-{stamp}.duckdb"
    os.replace(temp, target)
    fsync_dir(layout.snapshots)
    for old in list_snapshots(layout.root)[max(keep, 1) :]:
        old.path.unlink(missing_ok=True)
    return Snapshot(target, seq, stamp)


def snapshot_if_changed(layout: ArchiveLayout) -> Snapshot | None:
    """A snapshot when the catalog has records newer than the newest snapshot; failures only warn.

    Records already hold every change, so a snapshot that cannot be taken (a full disk, say)
    costs `repair` time, not data.
    """
    if not layout.catalog.exists():
        return None
    try:
        newest = list_snapshots(layout.root)
        # records are written before their transaction commits, so the newest record's sequence
        # is the catalog's (or one ahead): no catalog open is needed to see that nothing changed
        if newest and not _substantive_since(layout, newest[0].seq, newest_record_seq(layout)):
            return None
        return take_snapshot(layout.root)
    except (OSError, WorkbenchError) as exc:
        warnings.warn(
            f"catalog snapshot not taken in {layout.snapshots} ({exc}); `workbench repair` can still "
            "rebuild the catalog from records/",
            stacklevel=2,
        )
        return None


BOOKKEEPING = frozenset({"archive-run-start", "archive-run-end", "archive-run-finish"})


def _substantive_since(layout: ArchiveLayout, snapshot_seq: int, seq: int) -> bool:
    """Whether a record after the snapshot changed more than run bookkeeping.

    A scheduled incremental run that found nothing new writes only its run rows; copying the
    whole catalog for that would make every hourly run cost a catalog's worth of I/O, while
    replaying those few records costs nothing.
    """
    if seq <= snapshot_seq:
        return False
    for path in reversed(record_files(layout)):
        try:
            record = read_record(path)
        except VerificationError:
            return True
        if record.seq <= snapshot_seq:
            break
        if (
            record.kind not in BOOKKEEPING
            or record.manifests
            or any(r.table not in ("wb_archive_runs", "wb_cursor") for r in record.rowsets)
        ):
            return True
    return False
