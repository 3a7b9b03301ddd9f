"""Rebuild the archived files of a workspace, byte for byte, from the archive alone."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from workbench.archive.catalog import open_catalog
from workbench.archive.db import fetch_one
from workbench.archive.layout import ArchiveLayout
from workbench.archive.remote import accepts_s3
from workbench.archive.store import ObjectStore
from workbench.errors import ArchiveError, ConfigError, UnsafePathError


@dataclass
class RestoreResult:
    experiment_id: str
    target: Path
    files: int = 0
    bytes: int = 0
    left_out: list[str] = field(default_factory=list)


def _safe_target(root: Path, rel_path: str) -> Path:
    """`root/rel_path`, refusing anything that would land outside `root`."""
    if rel_path.startswith(("/", "\\")) or ".." in Path(rel_path).parts:
        raise UnsafePathError(f"archived path {rel_path!r} would escape {root}; refusing to restore it")
    return root / rel_path


@accepts_s3(writes=False)
def restore_experiment(
    experiment_id: str, *, to: Path | str, archive: Path | str | None = None
) -> RestoreResult:
    """Write every stored file of one experiment (or workspace id) under `to`, checking each hash."""
    layout = ArchiveLayout.at(archive)
    with open_catalog(layout.root, read_only=True) as con:
        row = fetch_one(
            con,
            "SELECT id, file_refs_json FROM aistock_experiments WHERE id = ? OR workspace_id = ? "
            "ORDER BY archiving_level DESC LIMIT 1",
            [experiment_id, experiment_id],
        )
        if row is None:
            raise ArchiveError(
                f"no experiment or workspace {experiment_id!r} in {layout.root}; "
                "list them with `workbench status --experiments`"
            )
        files = con.execute(
            "SELECT f.rel_path, f.sha256, o.storage_key, f.size_bytes FROM wb_stored_files f "
            "JOIN wb_objects o ON o.sha256 = f.sha256 WHERE f.experiment_id = ? ORDER BY f.rel_path",
            [row[0]],
        ).fetchall()
    if not files:
        raise ArchiveError(
            f"experiment {row[0]} has no stored files (archiving level below 2); nothing to restore"
        )
    target = Path(to)
    if target.exists() and not target.is_dir():
        raise ConfigError(f"--to {target} is a file; give a folder (it is created if missing)")
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create the folder {target} ({exc.strerror}); choose another --to") from exc
    store = ObjectStore(layout.objects, tmp=layout.tmp, packs=layout.packs)
    result = RestoreResult(row[0], target)
    for rel_path, sha, key, size in files:
        store.restore_to(key, sha, _safe_target(target, rel_path))
        result.files += 1
        result.bytes += int(size)
    refs = json.loads(row[1] or "[]")
    result.left_out = [r["path"] for r in refs if not r.get("kept")]
    return result
