"""The team's lake: an archive's catalog published as Delta Lake tables, read by Polars, daft, DuckDB or Spark.

``publish(archive, lake)`` writes (merges) the tables; ``lake_connection`` and ``scan_table``
read them lazily with Polars ``scan_delta``; the library and analysis functions take ``lake=``.
Its public API is ``__all__``, each name imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from workbench.exports import lazy_exports

if TYPE_CHECKING:  # the same names, for type checkers and editors
    from workbench.lake.publication import PublishResult as PublishResult
    from workbench.lake.publication import publish as publish
    from workbench.lake.read import lake_connection as lake_connection
    from workbench.lake.read import read_lake_frame as read_lake_frame
    from workbench.lake.read import scan_table as scan_table
    from workbench.lake.status import LakeStatus as LakeStatus
    from workbench.lake.status import lake_status as lake_status
    from workbench.lake.storage import daft_io_config as daft_io_config
    from workbench.lake.storage import table_uri as table_uri

_EXPORTS = {
    "PublishResult": "publication",
    "publish": "publication",
    "lake_connection": "read",
    "read_lake_frame": "read",
    "scan_table": "read",
    "LakeStatus": "status",
    "lake_status": "status",
    "daft_io_config": "storage",
    "table_uri": "storage",
}
__all__, __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
