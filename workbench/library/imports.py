"""What an import of external factors or strategies did, and its record in `wb_imports`.

Shared by `external_factors` and `external_strategies`: every import is recorded (kind, source,
path, SHA-256 of the file, ids touched, times), and importing the same file again changes nothing.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import duckdb

from workbench.errors import InputFileError


@dataclass(frozen=True)
class ImportResult:
    """What one import did: counts, the ids touched, and anything worth knowing."""

    kind: Literal["factors", "strategy"]
    source: str
    path: str
    sha256: str
    ids: tuple[str, ...]
    new: int
    updated: int
    unchanged: int
    n_performance: int = 0
    n_values: int = 0
    notes: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def format(self) -> str:
        what = "factor" if self.kind == "factors" else "strategy"
        lines = [
            f"imported {self.path} as {self.source} ({self.kind}, sha256 {self.sha256[:12]})",
            f"  {what} rows: {self.new} new, {self.updated} updated, {self.unchanged} unchanged",
        ]
        if self.kind == "factors":
            lines.append(f"  performance rows: {self.n_performance}   factor values: {self.n_values:,}")
        if len(self.ids) == 1:
            lines.append(f"  id: {self.ids[0]}")
        lines.extend(f"  note: {note}" for note in self.notes)
        return "\n".join(lines)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    """SHA-256 of an input file; a file that vanished or cannot be read meanwhile is an InputFileError."""
    try:
        return _sha256(path)
    except OSError as exc:
        raise InputFileError(path, f"cannot read the file ({exc.strerror or type(exc).__name__})") from exc


def record_import(
    con: duckdb.DuckDBPyConnection,
    *,
    kind: str,
    source: str,
    path: Path,
    sha256: str,
    item_ids: Sequence[str],
    n_values: int,
    now: datetime,
) -> str:
    """Upsert the import's row in `wb_imports` (one per kind, source and file content); its id."""
    import_id = hashlib.sha256(f"{kind}|{source}|{sha256}".encode()).hexdigest()[:32]
    con.execute(
        "INSERT INTO wb_imports (import_id, kind, source, path, sha256, item_ids, n_values, first_imported_at, "
        "last_imported_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (import_id) DO UPDATE SET "
        "path = excluded.path, item_ids = excluded.item_ids, n_values = excluded.n_values, "
        "last_imported_at = excluded.last_imported_at",
        [
            import_id,
            kind,
            source,
            str(path.absolute()),
            sha256,
            json.dumps(list(item_ids)),
            n_values,
            now,
            now,
        ],
    )
    return import_id
