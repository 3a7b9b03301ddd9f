"""The archive job on real sample installations: levels, idempotency, ids, files, series, errors."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
from pathlib import Path

import duckdb
import polars as pl
import pyarrow.parquet as pq
import pytest

from workbench.archive.catalog import read_frame
from workbench.archive.ids import experiment_id
from workbench.archive.layout import ArchiveLayout
from workbench.archive.pipeline import archive
from workbench.archive.store import ObjectStore
from workbench.archive.verify import verify_archive
from workbench.metrics import compute_return_metrics
from workbench.rdagent.files.returns import read_returns


def manifest(root: Path) -> dict:
    return json.loads((root / "sample_manifest.json").read_text(encoding="utf-8"))


def broken_loop_keys(root: Path) -> set[tuple[str, int]]:
    keys = set()
    for item in manifest(root)["quirks"]["broken_files"]:
        task_run_id, loop_id = item["loop_key"].rsplit("/", 1)
        keys.add((task_run_id, int(loop_id)))
    return keys


def catalog_rows(archive_dir: Path, sql: str) -> list[tuple]:
    con = duckdb.connect(str(archive_dir / "catalog.duckdb"), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def snapshot_catalog(archive_dir: Path) -> dict[str, list[tuple]]:
    """Table contents that a rerun must not change (timestamps of runs excluded)."""
    queries = {
        "experiments": "SELECT id, archiving_level, strategy_id, metrics_json, file_refs_json, imported_at "
        "FROM aistock_experiments ORDER BY id",
        "factors": "SELECT * FROM aistock_factors ORDER BY id",
        "performance": "SELECT * FROM aistock_factor_performance ORDER BY id",
        "strategies": "SELECT * FROM aistock_strategies ORDER BY id",
        "combinations": "SELECT * FROM aistock_factor_combinations ORDER BY id",
        "series": "SELECT count(*), sum(account) FROM aistock_return_series",
        "files": "SELECT * FROM wb_stored_files ORDER BY experiment_id, rel_path",
        "objects": "SELECT * FROM wb_objects ORDER BY sha256",
    }
    return {name: catalog_rows(archive_dir, sql) for name, sql in queries.items()}


def test_full_archive_reaches_level2_for_every_expected_experiment(rd_root: Path, archive_dir: Path) -> None:
    summary = archive(rd_root, archive=archive_dir, mode="full", progress=False)
    expected = {
        (e["task_run_id"], e["loop_id"])
        for e in manifest(rd_root)["experiments_expected"]
        if not e.get("duplicate_of")
    }
    broken = broken_loop_keys(rd_root)
    levels = {
        (t, loop): lvl
        for t, loop, lvl in catalog_rows(
            archive_dir, "SELECT task_run_id, loop_id, archiving_level FROM aistock_experiments"
        )
    }
    assert expected <= set(levels)
    for key in expected - broken:
        assert levels[key] == 2, key
    for key in broken & expected:
        assert levels[key] == 1, f"{key} has a broken file and must stay below level 2"
    # the run reports every broken file by name and goes on
    reported = {Path(e["path"]).name for e in summary.errors}
    assert {Path(b["path"]).name for b in manifest(rd_root)["quirks"]["broken_files"]} <= reported
    assert summary.failed and summary.status == "failed"
    assert summary.level2 == len(expected - broken)


def test_duplicates_are_archived_once(rd_root: Path, archive_dir: Path) -> None:
    archive(rd_root, archive=archive_dir, mode="full", progress=False)
    dupes = [e for e in manifest(rd_root)["experiments_expected"] if e.get("duplicate_of")]
    assert dupes, "the sample should contain a duplicated run"
    states = dict(
        ((t, lp), s)
        for t, lp, s in catalog_rows(archive_dir, "SELECT task_run_id, loop_id, state FROM wb_loop_state")
    )
    for dupe in dupes:
        assert states[(dupe["task_run_id"], dupe["loop_id"])] == "duplicate"
        original_task_run, original_loop = dupe["duplicate_of"].rsplit("/", 1)
        assert states[(original_task_run, int(original_loop))] in ("archived", "failed")


def test_second_run_changes_nothing(rd_root: Path, archive_dir: Path) -> None:
    archive(rd_root, archive=archive_dir, mode="full", progress=False)
    before = snapshot_catalog(archive_dir)
    objects_before = sorted(
        p.relative_to(archive_dir) for p in (archive_dir / "objects").rglob("*") if p.is_file()
    )
    second = archive(rd_root, archive=archive_dir, mode="full", progress=False)
    assert second.level2 == 0
    assert second.unchanged >= len(before["experiments"]) - len(broken_loop_keys(rd_root)) - 1
    assert snapshot_catalog(archive_dir) == before
    objects_after = sorted(
        p.relative_to(archive_dir) for p in (archive_dir / "objects").rglob("*") if p.is_file()
    )
    assert objects_after == objects_before


def test_ids_are_stable_across_catalog_rebuilds(rd_root: Path, tmp_path: Path) -> None:
    first, second = tmp_path / "a1", tmp_path / "a2"
    archive(rd_root, archive=first, mode="full", progress=False)
    archive(rd_root, archive=second, mode="full", progress=False, batch_size=3)
    for table in (
        "aistock_experiments",
        "aistock_factors",
        "aistock_strategies",
        "aistock_factor_combinations",
    ):
        ids1 = catalog_rows(first, f"SELECT id FROM {table} ORDER BY id")
        assert ids1 == catalog_rows(second, f"SELECT id FROM {table} ORDER BY id"), table
    some = catalog_rows(first, "SELECT id, task_run_id, loop_id FROM aistock_experiments LIMIT 1")[0]
    assert some[0] == experiment_id(some[1], some[2])


def test_level2_files_are_stored_verified_and_listed(rd_root: Path, archive_dir: Path) -> None:
    archive(rd_root, archive=archive_dir, mode="full", progress=False)
    layout = ArchiveLayout.at(archive_dir)
    store = ObjectStore(layout.objects)
    rows = catalog_rows(
        archive_dir,
        "SELECT id, workspace_dir, file_refs_json FROM aistock_experiments WHERE archiving_level = 2",
    )
    assert rows
    for exp_id, workspace_dir, refs_json in rows:
        refs = json.loads(refs_json)
        kept = {r["path"]: r for r in refs if r["kept"]}
        assert "qlib_res.csv" in kept and "ret.pkl" in kept
        left_out = {r["path"] for r in refs if not r["kept"]}
        if (Path(workspace_dir) / "combined_factors_df.parquet").exists():
            assert "combined_factors_df.parquet" in left_out
        for rel, ref in kept.items():
            if rel.startswith("sub/"):
                continue
            original = (Path(workspace_dir) / rel).read_bytes()
            assert ref["sha256"] == hashlib.sha256(original).hexdigest()
            assert store.open_content(ref["storage_key"]) == original
        stored = catalog_rows(
            archive_dir, f"SELECT rel_path FROM wb_stored_files WHERE experiment_id = '{exp_id}'"
        )
        assert {r[0] for r in stored} == set(kept)
    assert not verify_archive(archive_dir, read_data=True).damaged


def test_identical_files_are_stored_once_and_compressed(rd_root: Path, archive_dir: Path) -> None:
    summary = archive(rd_root, archive=archive_dir, mode="full", progress=False)
    n_objects, stored, original = catalog_rows(
        archive_dir, "SELECT count(*), sum(stored_bytes), sum(size_bytes) FROM wb_objects"
    )[0]
    n_refs = catalog_rows(archive_dir, "SELECT count(*) FROM wb_stored_files")[0][0]
    assert n_objects < n_refs, "template files shared by workspaces must be stored once"
    assert stored < original
    assert summary.bytes_stored <= summary.bytes_read


def test_stored_parquet_is_compressed_and_restores_to_open_in_polars_duckdb_and_pyarrow(
    rd_root: Path, archive_dir: Path, tmp_path: Path
) -> None:
    """A Snappy `signals.parquet` is stored zstd-compressed (a third of its size, like any file
    that shrinks by 10 %) and comes back byte for byte, readable by every Parquet reader."""
    archive(rd_root, archive=archive_dir, mode="full", progress=False)
    sha, key, size, stored = catalog_rows(
        archive_dir,
        "SELECT o.sha256, o.storage_key, o.size_bytes, o.stored_bytes FROM wb_stored_files f "
        "JOIN wb_objects o USING (sha256) WHERE f.rel_path = 'signals.parquet' LIMIT 1",
    )[0]
    assert key.endswith(".zst") and stored < size * 0.9
    path = tmp_path / "back" / "signals.parquet"
    ObjectStore(archive_dir / "objects").restore_to(key, sha, path)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == sha
    assert pl.read_parquet(path).height > 0
    assert pq.read_table(path).num_rows > 0
    assert duckdb.execute(f"SELECT count(*) FROM read_parquet('{path}')").fetchall()[0][0] > 0


def test_return_series_match_ret_pkl_and_recomputed_metrics(rd_root: Path, archive_dir: Path) -> None:
    archive(rd_root, archive=archive_dir, mode="full", progress=False)
    rows = catalog_rows(
        archive_dir,
        "SELECT id, workspace_dir, recomputed_metrics_json FROM aistock_experiments "
        "WHERE archiving_level = 2 ORDER BY id LIMIT 3",
    )
    for exp_id, workspace_dir, recomputed in rows:
        original = read_returns(Path(workspace_dir) / "ret.pkl")
        stored = read_frame(
            archive_dir,
            "SELECT * EXCLUDE (experiment_id) FROM aistock_return_series "
            "WHERE experiment_id = ? ORDER BY datetime",
            [exp_id],
        )
        assert stored.height == original.height
        assert stored["return"].to_list() == pytest.approx(original["return"].to_list())
        assert stored["datetime"].to_list() == original["datetime"].to_list()
        expected = compute_return_metrics(original)
        got = json.loads(recomputed)
        key = "excess_return_with_cost.additive.annualized_return"
        assert got[key] == pytest.approx(expected[key])
    # one SQL across all experiments
    per_exp = read_frame(
        archive_dir, "SELECT experiment_id, count(*) AS n FROM aistock_return_series GROUP BY 1"
    )
    level2 = catalog_rows(archive_dir, "SELECT count(*) FROM aistock_experiments WHERE archiving_level = 2")[
        0
    ][0]
    assert per_exp.height == level2


def test_include_heavy_keeps_heavy_intermediates(rd_root: Path, archive_dir: Path) -> None:
    archive(rd_root, archive=archive_dir, mode="full", progress=False, include_heavy=True)
    refs = [
        json.loads(r[0])
        for r in catalog_rows(
            archive_dir, "SELECT file_refs_json FROM aistock_experiments WHERE archiving_level = 2"
        )
    ]
    heavy = [r for rs in refs for r in rs if r["class"] == "heavy"]
    assert heavy and all(r["kept"] for r in heavy)
    noise = [r for rs in refs for r in rs if r["class"] == "noise"]
    assert all(not r["kept"] for r in noise)


def test_target_level1_then_full_adds_only_files(rd_root: Path, archive_dir: Path) -> None:
    first = archive(rd_root, archive=archive_dir, mode="incremental", target_level=1, progress=False)
    assert first.level2 == 0 and first.level1 > 0
    assert catalog_rows(archive_dir, "SELECT count(*) FROM wb_objects")[0][0] == 0
    factors_before = catalog_rows(archive_dir, "SELECT * FROM aistock_factors ORDER BY id")
    second = archive(rd_root, archive=archive_dir, mode="full", progress=False)
    assert second.level2 > 0
    assert catalog_rows(archive_dir, "SELECT count(*) FROM wb_objects")[0][0] > 0
    assert catalog_rows(archive_dir, "SELECT * FROM aistock_factors ORDER BY id") == factors_before


def test_registry_hash_mismatch_blocks_level2(rd_root: Path, archive_dir: Path) -> None:
    """V1 rows carry sha256; a file changed since registration is reported and kept below level 2."""
    con = sqlite3.connect(rd_root / "RDagentDB" / "registry.sqlite")
    row = con.execute(
        "SELECT workspace_id, path FROM artifact_files WHERE sha256 IS NOT NULL "
        "AND path = 'qlib_res.csv' LIMIT 1"
    ).fetchone()
    con.close()
    if row is None:
        pytest.skip("sample has no hashed V1 artifact rows")
    workspace_id, rel = row
    target = rd_root / "git_ignore_folder" / "RD-Agent_workspace" / workspace_id / rel
    target.write_text(target.read_text() + "IC,0.5\n")
    summary = archive(rd_root, archive=archive_dir, mode="full", progress=False)
    assert any("registry recorded" in e["message"] for e in summary.errors)
    level = catalog_rows(
        archive_dir, f"SELECT archiving_level FROM aistock_experiments WHERE workspace_id = '{workspace_id}'"
    )
    assert level and level[0][0] == 1


def test_a_failed_loop_is_retried_and_heals(rd_root: Path, archive_dir: Path) -> None:
    archive(rd_root, archive=archive_dir, mode="full", progress=False)
    broken = manifest(rd_root)["quirks"]["broken_files"]
    feedback = next(b for b in broken if b["path"].endswith("feedback.json"))
    path = rd_root / feedback["path"]
    path.write_text(json.dumps({"version": "v1", "decision": True, "hypothesis": "fixed", "summary": {}}))
    task_run_id, loop_id = feedback["loop_key"].rsplit("/", 1)
    summary = archive(rd_root, archive=archive_dir, mode="incremental", progress=False)
    assert summary.level2 >= 1
    level = catalog_rows(
        archive_dir,
        f"SELECT archiving_level FROM aistock_experiments "
        f"WHERE task_run_id = '{task_run_id}' AND loop_id = {loop_id}",
    )[0][0]
    assert level == 2


def test_an_unchanged_failed_loop_waits_for_a_change_or_a_full_run(rd_root: Path, archive_dir: Path) -> None:
    """Incremental runs skip loops that failed on their own, unchanged input (and record nothing
    for them, so a scheduled run with nothing new writes nothing new); a full run retries them."""
    archive(rd_root, archive=archive_dir, mode="full", progress=False)
    failed = catalog_rows(archive_dir, "SELECT count(*) FROM wb_loop_state WHERE state = 'failed'")[0][0]
    assert failed >= 2
    errors = "SELECT count(*) FROM wb_item_errors"
    before = catalog_rows(archive_dir, errors)[0][0]
    quiet = archive(rd_root, archive=archive_dir, mode="incremental", progress=False)
    assert quiet.skipped.get("failed_unchanged") == failed and not quiet.errors
    assert quiet.level1 == quiet.level2 == 0
    assert catalog_rows(archive_dir, errors)[0][0] == before
    again = archive(rd_root, archive=archive_dir, mode="full", progress=False)
    assert len(again.errors) >= failed and "failed_unchanged" not in again.skipped
    assert catalog_rows(archive_dir, errors)[0][0] > before


def test_missing_registry_is_a_clear_error(tmp_path: Path) -> None:
    from workbench.errors import WorkbenchError

    (tmp_path / "empty").mkdir()
    with pytest.raises(WorkbenchError) as info:
        archive(tmp_path / "empty", archive=tmp_path / "ar", progress=False)
    assert "registry" in str(info.value).lower()


def test_archive_survives_the_installation_being_moved(rd_root: Path, tmp_path: Path) -> None:
    """Registry paths are WSL/Windows spellings; --path-map or anchor re-rooting finds the copy."""
    moved = tmp_path / "elsewhere" / "RD-Agent-main"
    moved.parent.mkdir()
    shutil.move(str(rd_root), moved)
    summary = archive(
        moved,
        archive=tmp_path / "ar",
        mode="full",
        progress=False,
        path_map=[f"/mnt/f/Dev/RD-Agent-main={moved}"],
    )
    assert summary.level2 > 0


def test_hard_linked_key_files_stay_key_files(rd_root: Path, archive_dir: Path, tmp_path: Path) -> None:
    """A dedupe or backup tool may hard-link results; they are still kept, never 'heavy'."""
    backup = tmp_path / "backup"
    backup.mkdir()
    workspaces = sorted((rd_root / "git_ignore_folder" / "RD-Agent_workspace").glob("*/ret.pkl"))
    for i, path in enumerate(workspaces):
        os.link(path, backup / f"ret_{i}.pkl")
        os.link(path.parent / "qlib_res.csv", backup / f"qlib_{i}.csv")
    archive(rd_root, archive=archive_dir, mode="full", progress=False)
    for (refs_json,) in catalog_rows(
        archive_dir, "SELECT file_refs_json FROM aistock_experiments WHERE archiving_level = 2"
    ):
        by_path = {r["path"]: r for r in json.loads(refs_json)}
        assert by_path["ret.pkl"]["kept"] and by_path["ret.pkl"]["class"] == "key"
        assert by_path["qlib_res.csv"]["kept"]


def test_objects_of_a_failed_file_check_are_still_written(rd_root: Path, archive_dir: Path) -> None:
    """A shared small file whose registry hash is wrong must not leave later copies without bytes."""
    con = sqlite3.connect(rd_root / "RDagentDB" / "registry.sqlite")
    with con:
        changed = con.execute(
            "UPDATE artifact_files SET sha256 = ? WHERE sha256 IS NOT NULL AND path LIKE '%.yaml'", ["0" * 64]
        ).rowcount
    con.close()
    if not changed:
        pytest.skip("sample has no hashed yaml rows")
    archive(rd_root, archive=archive_dir, mode="full", progress=False)
    report = verify_archive(archive_dir, read_data=True)
    assert report.checked > 0 and not report.missing and not report.damaged


def test_status_lists_experiment_ids_and_checks_its_filters(rd_root: Path, archive_dir: Path) -> None:
    from workbench.archive.schema import WORKSPACE_BYTES_BACKFILL
    from workbench.archive.status import archive_status
    from workbench.errors import ConfigError

    archive(rd_root, archive=archive_dir, progress=False)
    report = archive_status(archive_dir, list_experiments=True)
    data = json.loads(json.dumps(report.to_dict(), default=str))
    ids = {e["id"] for e in data["experiments"]}
    assert ids == set(report.experiments["id"].to_list()) and len(ids) > 5
    assert all(isinstance(e["kept_bytes"], int) for e in data["experiments"])
    assert all(isinstance(r["workspace_bytes"], int) for r in data["by_task_run"])
    # the stored workspace bytes (schema 8) are the file lists' sizes; the upgrade's backfill agrees
    listed = {
        r[0]: sum(f["size_bytes"] for f in json.loads(r[1]))
        for r in catalog_rows(archive_dir, "SELECT id, file_refs_json FROM aistock_experiments")
        if r[1]
    }
    shown = dict(zip(report.experiments["id"], report.experiments["workspace_bytes"], strict=True))
    assert listed and all(shown[i] == b for i, b in listed.items())
    assert sum(listed.values()) == report.storage["workspace_bytes"]
    con = duckdb.connect(str(archive_dir / "catalog.duckdb"))
    con.execute("UPDATE aistock_experiments SET workspace_bytes = NULL")
    con.execute(WORKSPACE_BYTES_BACKFILL)
    con.close()
    assert archive_status(archive_dir).storage["workspace_bytes"] == sum(listed.values())
    first = data["experiments"][0]
    assert first["id"] in report.format() and first["workspace_id"] in report.format()
    assert "experiments" not in archive_status(archive_dir).to_dict()
    with pytest.raises(ConfigError, match="no task run 'nope'"):
        archive_status(archive_dir, task_run_id="nope")
    with pytest.raises(ConfigError, match="not an archiving level"):
        archive_status(archive_dir, level=7)


def test_a_file_where_a_folder_belongs_is_a_config_error(rd_root: Path, tmp_path: Path) -> None:
    from workbench.archive.restore import restore_experiment
    from workbench.errors import ConfigError

    not_a_folder = tmp_path / "archive.txt"
    not_a_folder.write_text("keep me")
    with pytest.raises(ConfigError, match="is a file, not a folder"):
        archive(rd_root, archive=not_a_folder, progress=False)
    assert not_a_folder.read_text() == "keep me"
    archive(rd_root, archive=tmp_path / "ar", progress=False)
    level2 = read_frame(
        tmp_path / "ar", "SELECT id FROM aistock_experiments WHERE archiving_level = 2 LIMIT 1"
    )
    with pytest.raises(ConfigError, match="is a file; give a folder"):
        restore_experiment(level2["id"][0], to=not_a_folder, archive=tmp_path / "ar")
    assert not_a_folder.read_text() == "keep me"
