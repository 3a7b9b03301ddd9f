"""The archive: an RD-Agent installation kept as a DuckDB catalog, content-addressed objects and packs,
Parquet series, and the records and manifests that rebuild the catalog (`docs/archive-format.md`).

The job (`pipeline.archive`: `selection` decides, `runner` extracts and stores, `persist` writes
the rows, `runs` records the run), and what reads or repairs an archive: status, verify, repair,
restore, snapshots, the factor library's cache. Its public API is `__all__`, each name imported on first use; `repair.repair` is
reached through its module, which has its name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from workbench.exports import lazy_exports

if TYPE_CHECKING:  # the same names, for type checkers and editors
    from workbench.archive.catalog import open_catalog as open_catalog
    from workbench.archive.catalog import read_frame as read_frame
    from workbench.archive.layout import DEFAULT_ARCHIVE as DEFAULT_ARCHIVE
    from workbench.archive.layout import ArchiveLayout as ArchiveLayout
    from workbench.archive.library_cache import clear_library_cache as clear_library_cache
    from workbench.archive.library_cache import refresh_library_cache as refresh_library_cache
    from workbench.archive.pipeline import archive as archive
    from workbench.archive.restore import restore_experiment as restore_experiment
    from workbench.archive.runs import RunSummary as RunSummary
    from workbench.archive.snapshots import list_snapshots as list_snapshots
    from workbench.archive.snapshots import take_snapshot as take_snapshot
    from workbench.archive.status import archive_status as archive_status
    from workbench.archive.verify import verify_archive as verify_archive

_EXPORTS = {
    "archive": "pipeline",
    "RunSummary": "runs",
    "archive_status": "status",
    "verify_archive": "verify",
    "restore_experiment": "restore",
    "ArchiveLayout": "layout",
    "DEFAULT_ARCHIVE": "layout",
    "open_catalog": "catalog",
    "read_frame": "catalog",
    "list_snapshots": "snapshots",
    "take_snapshot": "snapshots",
    "clear_library_cache": "library_cache",
    "refresh_library_cache": "library_cache",
}
__all__, __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
