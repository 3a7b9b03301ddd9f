"""Is the archived copy of an experiment complete and intact? Checked at planning and again
immediately before anything of its workspace is moved.

Every file that `file_refs_json` marks as kept must be listed in `wb_stored_files` with the same
SHA-256, its object must be listed in `wb_objects`, and the object must re-hash to that SHA-256.
For the full stage the folder on disk must also still be what was archived: every key file there
is one the archive holds, with the same bytes (a new or changed key file would be lost).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from workbench.archive.layout import ArchiveLayout
from workbench.archive.remote import bound_remote
from workbench.archive.store import ObjectStore, sha256_file
from workbench.cleanup.inventory import ArchivedExperiment, DirScan
from workbench.errors import InputFileError

MAX_LISTED = 3


class ArchiveChecker:
    """Verifies archived copies, re-hashing each stored object at most once per checker."""

    def __init__(
        self, archive: Path | str | None, stored_files: dict[str, dict[str, tuple[str, str | None]]]
    ) -> None:
        layout = ArchiveLayout.at(archive)
        self.archive = layout.root
        self.store = ObjectStore(layout.objects, tmp=layout.tmp, packs=layout.packs)
        self.stored_files = stored_files
        self._verified: dict[tuple[str, str], bool] = {}
        self.remote = bound_remote(layout.root)  # an s3:// archive: the bucket must hold it too

    def forget(self) -> None:
        """Drop cached results so the next check re-reads and re-hashes (used right before moving)."""
        self._verified.clear()

    def _object_ok(self, storage_key: str, sha256: str) -> bool:
        key = (storage_key, sha256)
        if key not in self._verified:
            self._verified[key] = self.store.verify(storage_key, sha256) and (
                self.remote is None or self.remote.holds_object(storage_key)
            )
        return self._verified[key]

    def problems(self, experiment: ArchivedExperiment) -> list[str]:
        """Why the archived copy of `experiment` cannot be trusted (empty when it can)."""
        if experiment.file_refs is None:
            return [
                f"experiment {experiment.experiment_id} has no archived file list (level {experiment.level})"
            ]
        stored = self.stored_files.get(experiment.experiment_id, {})
        found: list[str] = []
        for ref in experiment.file_refs:
            if not ref.get("kept"):
                continue
            path, sha = ref.get("path"), ref.get("sha256")
            entry = stored.get(path or "")
            if not sha or entry is None:
                found.append(f"{path}: promised but not stored")
            elif entry[0] != sha:
                found.append(f"{path}: stored hash {entry[0][:12]} differs from promised {sha[:12]}")
            elif entry[1] is None:
                found.append(f"{path}: object {sha[:12]} missing from wb_objects")
            elif not self._object_ok(entry[1], sha):
                where = f" in the archive or in {self.remote.uri}" if self.remote is not None else ""
                found.append(f"{path}: stored object {entry[1]} is missing or damaged{where}")
        return found


def changed_key_files(
    scan: DirScan, refs: dict[str, dict[str, Any]], *, folder: Path | None = None
) -> list[str]:
    """Key files on disk the archive does not hold as they are now.

    Without `folder` sizes are compared (cheap, for planning); with it, kept files are re-hashed
    and compared with the archived SHA-256 (right before a full removal).
    """
    changed = []
    for entry in scan.files:
        if entry.file_class == "unreadable":
            changed.append(f"{entry.rel_path} ({entry.reason}; the archive cannot hold it)")
            continue
        if entry.file_class != "key":
            continue
        ref = refs.get(entry.rel_path)
        if ref is None:
            changed.append(f"{entry.rel_path} (not in the archive)")
        elif ref.get("size_bytes") is None or int(ref["size_bytes"]) != entry.size:
            changed.append(f"{entry.rel_path} (size {entry.size} ≠ archived {ref.get('size_bytes')})")
        elif folder is not None and ref.get("kept"):
            try:
                same = sha256_file(folder / entry.rel_path) == ref.get("sha256")
            except (InputFileError, OSError) as exc:
                changed.append(f"{entry.rel_path} (cannot be re-read: {exc})")
                continue
            if not same:
                changed.append(f"{entry.rel_path} (content differs from the archived copy)")
    return changed


def summarise(problems: list[str]) -> str:
    head = "; ".join(problems[:MAX_LISTED])
    return head + (f"; and {len(problems) - MAX_LISTED} more" if len(problems) > MAX_LISTED else "")
