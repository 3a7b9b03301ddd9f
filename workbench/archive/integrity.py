"""Checks of the self-describing parts of an archive: manifests against the catalog, packs, records.

`verify` runs them beside its catalog and object checks; each returns a small report whose
`ok` says whether that part passed and whose lists name what failed and where.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import duckdb

from workbench.archive.journal import RowSet, capture, load_manifest, object_store, read_record, record_files
from workbench.archive.layout import ArchiveLayout
from workbench.archive.packs import iter_pack_files, read_pack_index
from workbench.errors import VerificationError

#: the row sets of a manifest that belong to its experiment alone (shared library rows may have
#: been improved by later experiments, so they are not compared)
OWN_TABLES = {
    "aistock_experiments": "id",
    "wb_stored_files": "experiment_id",
    "wb_loop_state": "experiment_id",
    "aistock_factor_usage": "experiment_id",
    "aistock_factor_performance": "experiment_id",
}


@dataclass
class PartReport:
    """One `verify` part over self-describing files: how many were checked, what failed."""

    name: str = ""
    checked: int = 0
    problems: list[str] = field(default_factory=list)
    skipped: str | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else VerificationError.exit_code

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("name")
        return {"ok": self.ok, **data}

    def format(self) -> str:
        if self.skipped:
            return f"{self.name}: not checked ({self.skipped})"
        lines = [f"{self.name}: checked {self.checked}, {len(self.problems)} problems"]
        lines += [f"  {p}" for p in self.problems[:50]]
        if len(self.problems) > 50:
            lines.append(f"  ... {len(self.problems) - 50} more (--json lists them all)")
        return "\n".join(lines)


def check_manifests(
    con: duckdb.DuckDBPyConnection, layout: ArchiveLayout, *, read_data: bool = False
) -> PartReport:
    """Every experiment at level 1 or 2 has a readable manifest that matches its catalog rows.

    With `read_data`, the series object each manifest points to is re-hashed as well.
    """
    report = PartReport("manifests")
    current = {
        r[0]: (r[1], r[2])
        for r in con.execute("SELECT experiment_id, sha256, storage_key FROM wb_manifests").fetchall()
    }
    series_rows = dict(
        con.execute("SELECT experiment_id, count(*) FROM aistock_return_series GROUP BY 1").fetchall()
    )
    store = object_store(layout)
    for (experiment_id,) in con.execute(
        "SELECT id FROM aistock_experiments WHERE archiving_level >= 1 ORDER BY id"
    ).fetchall():
        report.checked += 1
        if experiment_id not in current:
            report.problems.append(f"experiment {experiment_id} has no manifest (run `workbench repair`)")
            continue
        sha, key = current[experiment_id]
        try:
            manifest = load_manifest(layout, key, sha)
        except (VerificationError, ValueError) as exc:
            report.problems.append(f"experiment {experiment_id}: {exc} (run `workbench repair`)")
            continue
        for data in manifest["rowsets"]:
            rowset = RowSet.from_json(data)
            if rowset.table in OWN_TABLES and rowset.parquet is None:
                now = capture(con, rowset.table, rowset.match)
                if now.rows != rowset.rows:
                    report.problems.append(
                        f"experiment {experiment_id}: {rowset.table} rows differ from its "
                        f"manifest {sha} (run `workbench repair`)"
                    )
        series = manifest.get("series")
        if (series or {}).get("rows", 0) != series_rows.get(experiment_id, 0):
            report.problems.append(
                f"experiment {experiment_id}: the catalog holds {series_rows.get(experiment_id, 0)} "
                f"return-series rows, its manifest {(series or {}).get('rows', 0)}"
            )
        elif series and read_data and not store.verify(series["storage_key"], series["sha256"]):
            report.problems.append(
                f"experiment {experiment_id}: return-series object {series['sha256']} is missing "
                "or damaged (run `workbench repair`)"
            )
    return report


def check_packs(layout: ArchiveLayout) -> PartReport:
    """Every pack hashes to its name, and every blob in its index to its own."""
    report = PartReport("packs")
    for path in iter_pack_files(layout.packs):
        report.checked += 1
        try:
            read_pack_index(path)
        except (OSError, VerificationError) as exc:
            report.problems.append(str(exc))
    return report


def check_records(layout: ArchiveLayout) -> PartReport:
    """Every record parses (a torn or altered record would be skipped by a rebuild)."""
    report = PartReport("records")
    for path in record_files(layout):
        report.checked += 1
        try:
            read_record(path)
        except VerificationError as exc:
            report.problems.append(str(exc))
    return report
