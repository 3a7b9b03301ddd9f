"""`workbench repair`: rebuild a lost or damaged catalog from disk, and store damaged objects again.

1. **Catalog.** When ``catalog.duckdb`` is missing or unreadable (or `rebuild=True`), a new
   catalog is built in a temporary file from the newest snapshot that reads back whole plus the
   records written since, or from every record when no snapshot is usable (`journal.replay`).
   Only a complete, readable result is swapped in; the damaged file (and its WAL) is moved to
   ``damaged/``, never overwritten or deleted.
2. **Objects.** Every object the catalog lists is re-hashed. Missing or damaged ones are stored
   again by an incremental archive run of the RD-Agent installation (the root given, or the one
   the last archive run used) when the workspace still holds the same bytes (checked by SHA-256).
3. **Manifests.** Experiments whose manifest or series object is missing or damaged get a new
   manifest, written from the catalog.

What could not be repaired is listed, with the experiments that lose a file.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from workbench.archive.catalog import migrate, open_catalog
from workbench.archive.db import utc_now
from workbench.archive.durable import copy_synced, fsync_dir
from workbench.archive.journal import (
    ReplayReport,
    current_seq,
    load_manifest,
    object_store,
    record_files,
    recorded,
    replay,
)
from workbench.archive.layout import CATALOG_FILE, ArchiveLayout
from workbench.archive.lock import archive_lock
from workbench.archive.packs import iter_pack_files, parse_pack_key, read_blob, read_pack_index
from workbench.archive.remote import accepts_s3
from workbench.archive.schema import FACTOR_FIGURES_BACKFILL, WORKSPACE_BYTES_BACKFILL
from workbench.archive.snapshots import list_snapshots, take_snapshot
from workbench.archive.verify import read_back_problem
from workbench.errors import ArchiveError, VerificationError


@dataclass
class RepairReport:
    archive: str
    catalog: str = "healthy"  # healthy | rebuilt
    catalog_problem: str | None = None
    rebuilt_from: str | None = None
    damaged_catalog_kept_at: list[str] = field(default_factory=list)
    records_replayed: int = 0
    manifests_applied: int = 0
    objects_checked: int = 0
    objects_damaged: list[str] = field(default_factory=list)
    objects_restored: list[str] = field(default_factory=list)
    objects_unrepaired: list[dict[str, Any]] = field(default_factory=list)
    manifests_rewritten: int = 0
    packs_set_aside: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.objects_unrepaired and not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}

    def format(self) -> str:
        lines = [f"repair of {self.archive}: {'complete' if self.ok else 'INCOMPLETE'}"]
        if self.catalog == "rebuilt":
            lines.append(
                f"  catalog:   rebuilt ({self.catalog_problem}) from {self.rebuilt_from}: "
                f"{self.records_replayed} records, {self.manifests_applied} manifests replayed"
            )
            lines += [f"  damaged catalog kept at {p}" for p in self.damaged_catalog_kept_at]
        else:
            lines.append("  catalog:   healthy")
        lines.append(
            f"  objects:   {self.objects_checked} checked, {len(self.objects_damaged)} missing or damaged, "
            f"{len(self.objects_restored)} stored again from the workspaces"
        )
        lines += [
            f"  damaged pack moved to {p} (its good blobs were packed anew)" for p in self.packs_set_aside
        ]
        if self.manifests_rewritten:
            lines.append(f"  manifests: {self.manifests_rewritten} written again from the catalog")
        for item in self.objects_unrepaired[:50]:
            lines.append(
                f"  NOT REPAIRED object {item['sha256']}: {item['reason']} "
                f"(experiments {', '.join(item['experiments']) or 'none'})"
            )
        lines += [f"  problem: {p}" for p in self.problems[:50]]
        return "\n".join(lines)


def rebuild_catalog(layout: ArchiveLayout) -> tuple[Path, str, ReplayReport]:
    """Build a complete catalog in a new file (snapshot + later records, else every record)."""
    if not record_files(layout) and not list_snapshots(layout.root):
        raise ArchiveError(
            f"{layout.root} has neither records/ nor snapshots/: nothing to rebuild the catalog from "
            "(an archive written by workbench before schema 6 and never upgraded)"
        )
    target = layout.root / f".catalog-rebuild-{uuid.uuid4().hex}.duckdb"
    source = "every record"
    after_seq = 0
    for snapshot in list_snapshots(layout.root):
        if read_back_problem(snapshot.path) is None:
            copy_synced(snapshot.path, target)
            source = f"snapshot {snapshot.path.name} and the records after it"
            break
    con = duckdb.connect(str(target))
    try:
        migrate(con)
        after_seq = current_seq(con)
        report = replay(con, layout, after_seq=after_seq)
        con.execute(FACTOR_FIGURES_BACKFILL)  # records written before schema 7 lack those columns
        con.execute(WORKSPACE_BYTES_BACKFILL)  # ... and before schema 8, this one
        con.execute("CHECKPOINT")
    except BaseException:
        con.close()
        target.unlink(missing_ok=True)
        raise
    con.close()
    problem = read_back_problem(target)
    if problem is not None:
        target.unlink(missing_ok=True)
        raise ArchiveError(f"the rebuilt catalog does not read back ({problem}); nothing was swapped in")
    return target, source, report


def swap_in(layout: ArchiveLayout, rebuilt: Path) -> list[str]:
    """Move the damaged catalog (and WAL) to ``damaged/``, then rename the rebuilt one into place."""
    kept = []
    stamp = utc_now().strftime("%Y%m%dT%H%M%SZ")
    for suffix in ("", ".wal"):
        old = layout.root / f"{CATALOG_FILE}{suffix}"
        if old.exists():
            layout.damaged.mkdir(parents=True, exist_ok=True)
            aside = layout.damaged / f"catalog-{stamp}-{uuid.uuid4().hex[:8]}.duckdb{suffix}"
            os.replace(old, aside)
            kept.append(str(aside))
    os.replace(rebuilt, layout.catalog)
    fsync_dir(layout.root)
    return kept


@accepts_s3(writes=True)
def repair(
    archive: Path | str | None = None,
    *,
    rdagent_root: Path | str | None = None,
    registry: Path | str | None = None,
    path_map: tuple[str, ...] | list[str] = (),
    rebuild: bool = False,
) -> RepairReport:
    """Repair the archive; see the module docstring. Never deletes anything."""
    layout = ArchiveLayout.at(archive)
    if not layout.root.exists():
        raise ArchiveError(f"no archive folder at {layout.root}; pass the right --archive")
    report = RepairReport(str(layout.root))
    with archive_lock(layout.root, job="repair", snapshot=False):
        problem = read_back_problem(layout.catalog)
        if problem is not None or rebuild:
            report.catalog_problem = problem or "rebuild requested"
            rebuilt, source, replayed = rebuild_catalog(layout)
            report.damaged_catalog_kept_at = swap_in(layout, rebuilt)
            report.catalog, report.rebuilt_from = "rebuilt", source
            report.records_replayed, report.manifests_applied = replayed.records, replayed.manifests
            report.problems += replayed.problems
        damaged, stale_manifests = _check_objects_and_manifests(layout, report)
        if stale_manifests:
            with open_catalog(layout.root) as con, recorded(con, layout, "repair-manifests") as rec:
                rec.experiments(stale_manifests)
            report.manifests_rewritten = len(stale_manifests)
        if report.catalog == "rebuilt" or stale_manifests:
            take_snapshot(layout.root)
    if damaged:
        _restore_objects(
            layout, report, damaged, rdagent_root=rdagent_root, registry=registry, path_map=path_map
        )
    with archive_lock(layout.root, job="repair"):
        _salvage_packs(layout, report)
    return report


def _salvage_packs(layout: ArchiveLayout, report: RepairReport) -> None:
    """Rewrite each damaged pack's intact, still-referenced blobs into a new pack; keep the old one aside.

    The damaged blobs themselves were stored again from the workspaces (or are listed as not
    repaired); what is left is a pack file that no longer hashes to its name. Its good blobs move
    to a new pack (wb_objects updated in a recorded transaction), then the file goes to
    ``damaged/packs/``: never deleted, and no catalog row points into it any more.
    """
    with open_catalog(layout.root, read_only=True) as con:
        rows = con.execute("SELECT sha256, storage_key FROM wb_objects WHERE codec = 'pack'").fetchall()
    by_pack: dict[str, list[tuple[str, str]]] = {}
    for sha, key in rows:
        by_pack.setdefault(parse_pack_key(key).pack_sha256, []).append((sha, key))
    store = object_store(layout)
    for path in iter_pack_files(layout.packs):
        try:
            read_pack_index(path)
            continue
        except (OSError, VerificationError):
            pass
        moved: dict[str, str] = {}
        for sha, key in by_pack.get(path.name.removesuffix(".pack"), []):
            try:
                data = read_blob(layout.packs, key)
            except (OSError, VerificationError):
                continue
            if hashlib.sha256(data).hexdigest() == sha:
                store.put_bytes(data)
                moved[sha] = key
        if moved:
            keys = store.flush_pack()
            store.sync()
            with open_catalog(layout.root) as con, recorded(con, layout, "repair-packs") as rec:
                con.executemany(
                    "UPDATE wb_objects SET storage_key = ? WHERE sha256 = ?",
                    [(keys[sha], sha) for sha in moved],
                )
                rec.capture("wb_objects", sha256=sorted(moved))
                rec.experiments(
                    {
                        r[0]
                        for r in con.execute(
                            "SELECT DISTINCT experiment_id FROM wb_stored_files WHERE sha256 IN (SELECT unnest(?))",
                            [sorted(moved)],
                        ).fetchall()
                    }
                )
        if any(parse_pack_key(k).pack_sha256 == path.name.removesuffix(".pack") for k in _pack_keys(layout)):
            report.problems.append(f"pack {path.name} is damaged and still referenced; run repair again")
            continue
        aside = layout.damaged / "packs" / path.name
        aside.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, aside)
        report.packs_set_aside.append(str(aside))


def _pack_keys(layout: ArchiveLayout) -> list[str]:
    with open_catalog(layout.root, read_only=True) as con:
        return [
            r[0] for r in con.execute("SELECT storage_key FROM wb_objects WHERE codec = 'pack'").fetchall()
        ]


def _check_objects_and_manifests(layout: ArchiveLayout, report: RepairReport) -> tuple[set[str], set[str]]:
    """Re-hash every object; find manifests (and series objects) that are missing or damaged."""
    with open_catalog(layout.root, read_only=True) as con:
        objects = con.execute("SELECT sha256, storage_key FROM wb_objects ORDER BY sha256").fetchall()
        manifests = con.execute("SELECT experiment_id, sha256, storage_key FROM wb_manifests").fetchall()
        experiments = {
            r[0]
            for r in con.execute("SELECT id FROM aistock_experiments WHERE archiving_level >= 1").fetchall()
        }
    store = object_store(layout)
    damaged = set()
    for sha, key in objects:
        report.objects_checked += 1
        if not store.verify(key, sha):
            damaged.add(sha)
    report.objects_damaged = sorted(damaged)
    stale = experiments - {m[0] for m in manifests}
    for experiment_id, sha, key in manifests:
        try:
            manifest = load_manifest(layout, key, sha)
        except (VerificationError, ValueError):
            stale.add(experiment_id)
            continue
        series = manifest.get("series")
        if series and series["sha256"] in damaged:
            stale.add(experiment_id)
    return damaged, stale


def _latest_run_params(layout: ArchiveLayout) -> dict[str, Any]:
    with open_catalog(layout.root, read_only=True) as con:
        row = con.execute(
            "SELECT params_json FROM wb_archive_runs ORDER BY started_at DESC LIMIT 1"
        ).fetchone()
    return json.loads(row[0]) if row and row[0] else {}


def _restore_objects(
    layout: ArchiveLayout,
    report: RepairReport,
    damaged: set[str],
    *,
    rdagent_root: Path | str | None,
    registry: Path | str | None,
    path_map: tuple[str, ...] | list[str],
) -> None:
    """Store damaged objects again through an archive run, then say which are still damaged."""
    from workbench.archive.pipeline import archive  # the job that knows where each file comes from

    params = _latest_run_params(layout)
    root = rdagent_root or params.get("rdagent_root")
    reason = None
    if root is None or not Path(root).exists():
        reason = (
            f"the RD-Agent installation {root} is not there"
            if root
            else "no RD-Agent installation known (pass --rdagent-root)"
        )
    else:
        try:
            archive(
                root,
                archive=layout.root,
                mode="incremental",
                registry=registry or params.get("registry"),
                path_map=list(path_map) or list(params.get("path_map") or []),
                progress=False,
                suspect=damaged,
            )
        except ArchiveError as exc:
            reason = f"the archive run that stores them again failed: {exc}"
    still = _still_damaged(layout, damaged)
    report.objects_restored = sorted(damaged - still)
    with open_catalog(layout.root, read_only=True) as con:
        for sha in sorted(still):
            rows = con.execute(
                "SELECT f.experiment_id, e.workspace_state FROM wb_stored_files f JOIN aistock_experiments e "
                "ON e.id = f.experiment_id WHERE f.sha256 = ? ORDER BY 1",
                [sha],
            ).fetchall()
            why = reason or (
                "the workspace was cleaned up"
                if rows and all(r[1] != "present" for r in rows)
                else "no workspace holds these bytes any more"
            )
            report.objects_unrepaired.append(
                {"sha256": sha, "reason": why, "experiments": [r[0] for r in rows]}
            )


def _still_damaged(layout: ArchiveLayout, shas: set[str]) -> set[str]:
    with open_catalog(layout.root, read_only=True) as con:
        keys = dict(
            con.execute(
                "SELECT sha256, storage_key FROM wb_objects WHERE list_contains(?, sha256)", [sorted(shas)]
            ).fetchall()
        )
    store = object_store(layout)
    return {sha for sha in shas if sha not in keys or not store.verify(keys[sha], sha)}
