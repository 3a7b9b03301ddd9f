"""The factor library's in-memory copy and its on-disk cache: the archive keeps them current.

The copy is also kept on disk (``cache/`` in the archive, Arrow IPC, named by the catalog's change
stamps), so a fresh kernel or process does not re-read the library from DuckDB; jobs that change
the library refresh it when they finish (:func:`refresh_library_cache`). A cache file is only ever
used for the exact catalog state it was made from; deleting ``cache/`` is always safe.

Why here and not in `workbench.library`: archive jobs refresh the copy when they finish, and the
archive must not import the layers built on it.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from workbench.archive.catalog import open_catalog
from workbench.archive.db import fetch_frame
from workbench.archive.layout import ArchiveLayout
from workbench.errors import WorkbenchError

FACTOR_COLUMNS = """
    f.id AS factor_id, f.name, f.version, f.source,
    CAST(coalesce(f.tags, '[]') AS VARCHAR[]) AS tags,
    f.description_cn, f.expression, f.formula_hint, f.region, f.freq, f.first_experiment_id, f.created_at
"""


@dataclass
class LibrarySnapshot:
    """The whole factor library as Polars frames, valid while the catalog files are unchanged."""

    state: tuple[Any, ...]
    factors: pl.DataFrame
    performance: pl.DataFrame
    #: per-factor summaries by (window, basis, metric), computed once per snapshot
    picks: dict[tuple[str | None, str, str], pl.DataFrame] = field(default_factory=dict)
    _sources: tuple[str, ...] | None = None
    _windows: tuple[str, ...] | None = None

    @property
    def sources(self) -> tuple[str, ...]:
        """Every factor source in the library, sorted (computed once per snapshot)."""
        if self._sources is None:
            self._sources = tuple(sorted(self.factors["source"].drop_nulls().unique().to_list()))
        return self._sources

    @property
    def windows(self) -> tuple[str, ...]:
        """Every window with a result in the library, sorted (computed once per snapshot)."""
        if self._windows is None:
            self._windows = tuple(sorted(self.performance["window_name"].drop_nulls().unique().to_list()))
        return self._windows


_SNAPSHOTS: dict[Path, LibrarySnapshot] = {}

_SNAPSHOT_SQL = {
    "factors": f"""
        WITH used AS (
            SELECT factor_id, count(DISTINCT experiment_id) AS n_experiments FROM aistock_factor_usage GROUP BY factor_id
        ),
        members AS (
            SELECT member AS factor_id, count(DISTINCT id) AS n_combinations
            FROM (SELECT id, unnest(CAST(factor_ids AS VARCHAR[])) AS member FROM aistock_factor_combinations)
            GROUP BY member
        )
        SELECT {FACTOR_COLUMNS},
               coalesce(u.n_experiments, 0) AS n_experiments, coalesce(m.n_combinations, 0) AS n_combinations
        FROM aistock_factors f LEFT JOIN used u ON u.factor_id = f.id LEFT JOIN members m ON m.factor_id = f.id
    """,
    "performance": """
        SELECT id, factor_id, window_name, start_date, end_date, ic_mean, ic_ir, rank_ic, rank_ic_ir, coverage,
               annual_return, max_drawdown, sharpe, basis, experiment_id AS perf_experiment_id, updated_at,
               combination_size, annual_return_cost, max_drawdown_cost, sharpe_cost, periods_per_year
        FROM aistock_factor_performance
    """,
}


def clear_library_cache() -> None:
    """Forget every in-memory library copy (they are refreshed on change anyway; this frees memory)."""
    _SNAPSHOTS.clear()


def _catalog_state(archive: Path | str | None) -> tuple[Any, ...]:
    """Identity and change stamps of the catalog and its write-ahead log: any commit changes one."""
    catalog = ArchiveLayout.at(archive).catalog
    stamps: list[Any] = [str(catalog)]
    for path in (catalog, catalog.with_name(catalog.name + ".wal")):
        try:
            st = path.stat()
        except FileNotFoundError:
            stamps.append(None)
            continue
        stamps.append((st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns))
    return tuple(stamps)


def library_snapshot(archive: Path | str | None, *, wait_for_disk: bool = False) -> LibrarySnapshot:
    """The cached library, reloaded whenever the catalog changed since it was read.

    Why: every call would otherwise re-read and decompress the whole performance table through a
    fresh connection; a notebook or widget filters the same library many times between writes.
    """
    layout = ArchiveLayout.at(archive)
    state = _catalog_state(archive)  # taken before reading: a write during the read forces a reload
    cached = _SNAPSHOTS.get(layout.root)
    if cached is not None and cached.state == state:
        return cached
    files = _cache_files(layout, state)
    persisted = _read_cache(files)
    if persisted is not None:
        factors, performance = persisted
    else:
        factors, performance = _read_library(archive)
        if wait_for_disk:
            _write_cache(files, factors, performance)
        else:  # the caller has its answer without waiting for ~100 MB to be written
            threading.Thread(
                target=_write_cache,
                args=(files, factors, performance),
                daemon=True,
                name="factor-library-cache",
            ).start()
    snapshot = LibrarySnapshot(state, factors, performance)
    _SNAPSHOTS[layout.root] = snapshot
    return snapshot


def refresh_library_cache(archive: Path | str | None) -> None:
    """Bring the in-memory and on-disk library copies up to date (jobs call it after writing).

    Why: the first `factor_library` call after a job would otherwise pay for re-reading the
    whole library from DuckDB. Best effort: a failure only means that call is slower.
    """
    try:
        snapshot = library_snapshot(archive, wait_for_disk=True)
        files = _cache_files(ArchiveLayout.at(archive), snapshot.state)
        if not all(f.is_file() for f in files):  # held in memory already, but not yet on disk
            _write_cache(files, snapshot.factors, snapshot.performance)
    except (OSError, WorkbenchError, duckdb.Error):
        pass


def _read_library(archive: Path | str | None) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Factors (with their window count) and every performance row, read from the catalog."""
    with open_catalog(archive, read_only=True) as con:
        return read_library_frames(con)


def read_library_frames(con: duckdb.DuckDBPyConnection) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Factors (with their window count) and every performance row, from any connection that has the
    catalog's library tables (the catalog itself, or the team lake's tables under the same names)."""
    factors = fetch_frame(con, _SNAPSHOT_SQL["factors"])
    performance = fetch_frame(con, _SNAPSHOT_SQL["performance"])
    windows = performance.group_by("factor_id").agg(
        pl.col("window_name").n_unique().cast(pl.Int64).alias("n_windows")
    )
    factors = factors.join(windows, on="factor_id", how="left").with_columns(pl.col("n_windows").fill_null(0))
    return factors, performance


_CACHE_PREFIX = "factor_library-"


def _cache_files(layout: ArchiveLayout, state: tuple[Any, ...]) -> tuple[Path, Path]:
    """The two Arrow files of the library copy made from exactly this catalog state."""
    tag = hashlib.sha256(repr(state).encode()).hexdigest()[:20]
    folder = layout.root / "cache"
    return folder / f"{_CACHE_PREFIX}{tag}.factors.arrow", folder / f"{_CACHE_PREFIX}{tag}.performance.arrow"


def _read_cache(files: tuple[Path, Path]) -> tuple[pl.DataFrame, pl.DataFrame] | None:
    """The cached copy for this state, or None (missing, half-written or unreadable: read the catalog)."""
    if not all(f.is_file() for f in files):
        return None
    try:
        return pl.read_ipc(files[0]), pl.read_ipc(files[1])
    except Exception:  # a damaged cache is never worse than no cache
        return None


def _write_cache(files: tuple[Path, Path], factors: pl.DataFrame, performance: pl.DataFrame) -> None:
    """Write the copy (each file atomically, performance first) and drop copies of older states."""
    folder = files[0].parent
    try:
        folder.mkdir(exist_ok=True)
        for target, frame in ((files[1], performance), (files[0], factors)):
            temp = folder / f".{uuid.uuid4().hex}.part"
            frame.write_ipc(temp, compression="uncompressed")  # uncompressed: reading it is the point
            os.replace(temp, target)
        for old in folder.glob(f"{_CACHE_PREFIX}*.arrow"):
            if old not in files:
                old.unlink(missing_ok=True)
        for stale in folder.glob(".*.part"):  # left by a process that died while writing
            if stale.stat().st_mtime < time.time() - 600:
                stale.unlink(missing_ok=True)
    except OSError:
        pass  # a read-only archive still answers, only without the cache
