"""The archive is the last copy: the catalog can be rebuilt from disk, objects are stored again.

Real archives of the sample installation, real files deleted and altered on disk, the real CLI.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import polars as pl
import pytest
from cleanup_helpers import Env, copy_tree_keeping_links

from workbench.archive.integrity import check_packs
from workbench.archive.journal import load_manifest, record_files
from workbench.archive.layout import ArchiveLayout
from workbench.archive.packs import read_blob, read_pack_index
from workbench.archive.pipeline import archive
from workbench.archive.repair import repair
from workbench.archive.restore import restore_experiment
from workbench.archive.snapshots import list_snapshots
from workbench.archive.verify import verify_archive
from workbench.cleanup import approve_plan, cleanup, undo_plan
from workbench.cleanup.holds import hold, release
from workbench.library.combinations import save_combination
from workbench.library.external_factors import import_factors
from workbench.library.external_strategies import import_strategy
from workbench.library.factors import factor_library
from workbench.library.strategies import set_recommendation, strategy_library


def catalog_tables(catalog: Path) -> dict[str, list[tuple]]:
    """Every table of a catalog, every row, in a canonical order."""
    con = duckdb.connect(str(catalog), read_only=True)
    try:
        names = [r[0] for r in con.execute("SELECT table_name FROM duckdb_tables() ORDER BY 1").fetchall()]
        return {name: con.execute(f'SELECT * FROM "{name}" ORDER BY ALL').fetchall() for name in names}
    finally:
        con.close()


def assert_same_tables(before: dict[str, list[tuple]], after: dict[str, list[tuple]]) -> None:
    assert sorted(before) == sorted(after)
    for table, rows in before.items():
        assert after[table] == rows, (
            f"{table}: {len(rows)} rows before, {len(after[table])} after the rebuild"
        )


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _strategy_file(path: Path) -> Path:
    path.write_text(
        "strategy_type: topk\nname: ext_topk\ntrading_rule: {topk: 30, n_drop: 4}\n"
        "benchmark: SH000905\nextra: {shape: portfolio, output_mode: target_weight}\n",
        encoding="utf-8",
    )
    return path


@pytest.fixture(scope="module")
def lived_in(tmp_path_factory: pytest.TempPathFactory) -> Env:
    """An archive that has seen every kind of write: runs, holds, reviews, imports, a cleanup, an undo."""
    from workbench.sample.generate import generate_sample

    base = tmp_path_factory.mktemp("durable")
    generate_sample(base / "rd", seed=0)
    env = Env(base / "rd", base / "ar", base)
    archive(env.rd, archive=env.ar, mode="full", progress=False)
    experiments = sorted(env.level2())
    hold(experiments[0], reason="paper draft", archive=env.ar)
    hold(experiments[1], reason="kept for a while", archive=env.ar)
    release(experiments[1], reason="no longer needed", archive=env.ar)
    strategy = strategy_library(env.ar)["strategy_id"][0]
    set_recommendation(env.ar, strategy, "manual_review", "looks overfit", reviewer="qa")
    meta = base / "meta.parquet"
    pl.DataFrame(
        {
            "name": ["ext_mom_5"],
            "expression": ["Ref($close,5)/$close-1"],
            "window_name": ["test"],
            "ic_mean": [0.03],
        }
    ).write_parquet(meta)
    import_factors(meta, archive=env.ar, source="alpha_library")
    import_strategy(_strategy_file(base / "ext.yaml"), archive=env.ar)
    factors = factor_library(env.ar)["factor_id"].to_list()[:2]
    save_combination(env.ar, "pair", factors)
    first = cleanup(env.rd, archive=env.ar, stage="full", confirm=True, yes=True, keep_days=0)
    assert first.applied is not None and first.applied.count("moved") > 0
    undo_plan(first.plan.plan_id or "", archive=env.ar, rdagent_root=env.rd)
    planned = cleanup(env.rd, archive=env.ar, stage="conservative", dry_run=True, keep_days=0)
    approve_plan(planned.plan.plan_id or "", archive=env.ar, approved_by="lead")
    archive(env.rd, archive=env.ar, mode="incremental", progress=False)
    return env


@pytest.fixture()
def env(lived_in: Env, tmp_path: Path) -> Env:
    copy_tree_keeping_links(lived_in.rd, tmp_path / "rd")
    shutil.copytree(lived_in.ar, tmp_path / "ar")
    return Env(tmp_path / "rd", tmp_path / "ar", tmp_path)


def test_nothing_lives_only_in_the_catalog(env: Env) -> None:
    layout = ArchiveLayout.at(env.ar)
    assert env.query("SELECT count(*) FROM wb_inline_objects") == [(0,)]
    keys = [r[0] for r in env.query("SELECT storage_key FROM wb_objects")]
    assert any(k.startswith("pack:") for k in keys) and all(not k.startswith("inline:") for k in keys)
    packs = [read_pack_index(p) for p in sorted(layout.packs.glob("*/*.pack"))]
    packed = {sha for index in packs for sha in index.blobs}
    assert {r[0] for r in env.query("SELECT sha256 FROM wb_objects WHERE codec = 'pack'")} <= packed
    # every experiment at level 1 or 2 has a manifest that holds its rows and its series
    manifests = dict(env.query("SELECT experiment_id, storage_key FROM wb_manifests"))
    shas = dict(env.query("SELECT experiment_id, sha256 FROM wb_manifests"))
    for experiment_id, level in env.query(
        "SELECT id, archiving_level FROM aistock_experiments WHERE archiving_level >= 1"
    ):
        manifest = load_manifest(layout, manifests[experiment_id], shas[experiment_id])
        tables = {r["table"] for r in manifest["rowsets"]}
        assert {"aistock_experiments", "aistock_factors", "wb_stored_files", "aistock_strategies"} <= tables
        assert (manifest["series"] is not None) == (level == 2)
    kinds = {json.loads(p.read_text())["kind"] for p in record_files(layout)}
    assert {
        "archive-batch",
        "hold",
        "release",
        "review",
        "import-factors",
        "import-strategy",
        "save-combination",
        "cleanup-plan",
        "cleanup-moves",
        "cleanup-restored",
        "approval",
    } <= kinds


def test_deleted_catalog_is_rebuilt_equal_and_restores_byte_for_byte(env: Env, tmp_path: Path) -> None:
    catalog = env.ar / "catalog.duckdb"
    before = catalog_tables(catalog)
    catalog.unlink()
    shutil.rmtree(env.ar / "snapshots")  # no snapshot: every record is replayed
    report = repair(env.ar)
    assert report.ok and report.catalog == "rebuilt" and report.rebuilt_from == "every record"
    assert_same_tables(before, catalog_tables(catalog))
    for experiment_id, refs in env.query(
        "SELECT id, file_refs_json FROM aistock_experiments WHERE archiving_level = 2"
    ):
        target = tmp_path / "restored" / experiment_id
        restore_experiment(experiment_id, to=target, archive=env.ar)
        kept = [r for r in json.loads(refs) if r["kept"]]
        assert kept and all(sha(target / r["path"]) == r["sha256"] for r in kept)
    assert (
        verify_archive(env.ar, read_data=True).missing == []
        and verify_archive(env.ar, read_data=True).damaged == []
    )


def test_damaged_catalog_is_kept_aside_and_rebuilt_from_a_snapshot_and_later_records(env: Env) -> None:
    experiment = sorted(env.level2())[2]
    hold(experiment, reason="after the last snapshot", archive=env.ar)  # a record newer than any snapshot
    catalog = env.ar / "catalog.duckdb"
    before = catalog_tables(catalog)
    damaged_bytes = bytearray(catalog.read_bytes())
    damaged_bytes[:4096] = b"\xff" * 4096
    catalog.write_bytes(bytes(damaged_bytes))
    result = subprocess.run(
        [sys.executable, "-m", "workbench.cli", "repair", "--archive", str(env.ar), "--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["catalog"] == "rebuilt" and report["rebuilt_from"].startswith("snapshot catalog-")
    assert report["records_replayed"] >= 1
    assert_same_tables(before, catalog_tables(catalog))
    kept = [Path(p) for p in report["damaged_catalog_kept_at"]]
    assert kept and kept[0].read_bytes() == bytes(damaged_bytes)  # the damaged file is kept, byte for byte


def test_snapshots_are_rotated_and_each_opens(env: Env) -> None:
    snapshots = list_snapshots(env.ar)
    assert len(snapshots) == 3  # the fixture's jobs made more; the newest three are kept
    for snapshot in snapshots:
        con = duckdb.connect(str(snapshot.path), read_only=True)
        assert con.execute("SELECT value FROM wb_meta WHERE key = 'record_seq'").fetchall() == [
            (str(snapshot.seq),)
        ]
        con.close()
    hold(sorted(env.level2())[3], reason="a change", archive=env.ar)  # no job lock: no snapshot of its own
    assert list_snapshots(env.ar) == snapshots
    import_strategy(_strategy_file(env.tmp / "again.yaml"), archive=env.ar, name="another")
    assert list_snapshots(env.ar)[0].seq > snapshots[0].seq and len(list_snapshots(env.ar)) == 3


def _stored(env: Env, predicate: str) -> tuple[str, str, str]:
    """(experiment id, sha256, storage key) of one stored file of a present level-2 experiment."""
    rows = env.query(
        "SELECT f.experiment_id, f.sha256, o.storage_key FROM wb_stored_files f JOIN wb_objects o USING (sha256) "
        "JOIN aistock_experiments e ON e.id = f.experiment_id WHERE e.workspace_state = 'present' AND "
        f"e.archiving_level = 2 AND {predicate} ORDER BY f.size_bytes DESC, 1, 2"
    )
    return rows[0]


@pytest.mark.parametrize("mode", ["incremental", "full"])
def test_deleted_object_is_stored_again_by_the_next_run(env: Env, mode: str) -> None:
    _experiment, digest, key = _stored(env, "o.codec IN ('raw', 'zstd')")
    (env.ar / "objects" / key).unlink()
    assert digest in verify_archive(env.ar, read_data=True).missing
    archive(env.rd, archive=env.ar, mode=mode, progress=False)
    report = verify_archive(env.ar, read_data=True)
    assert not report.missing and not report.damaged


def test_a_full_run_notices_an_object_truncated_in_place(env: Env) -> None:
    """Truncation leaves folder times alone, so an incremental run cannot see it; a full run can."""
    _experiment, digest, key = _stored(env, "o.codec IN ('raw', 'zstd')")
    path = env.ar / "objects" / key
    with open(path, "r+b") as handle:
        handle.truncate(path.stat().st_size // 2)
    archive(env.rd, archive=env.ar, mode="incremental", progress=False)
    assert digest in verify_archive(env.ar, read_data=True).damaged  # not looked for: by design
    archive(env.rd, archive=env.ar, mode="full", progress=False)
    report = verify_archive(env.ar, read_data=True)
    assert not report.missing and not report.damaged


def test_a_run_that_stored_files_leaves_the_folder_times_current(env: Env) -> None:
    """The run that wrote into the object folders looks at them itself, so the next run with
    nothing new lists no folder at all."""
    from workbench.archive.damage import folder_stamps

    layout = ArchiveLayout.at(env.ar)
    saved = json.loads((env.ar / "cache" / "object_folders.json").read_text())["folders"]
    assert saved == folder_stamps(layout) and any(k.startswith("objects/") for k in saved)
    quiet = archive(env.rd, archive=env.ar, mode="incremental", progress=False)
    assert quiet.level2 == 0 and saved == folder_stamps(layout)


def test_without_the_folder_times_an_incremental_run_checks_every_object(env: Env) -> None:
    _experiment, digest, key = _stored(env, "o.codec IN ('raw', 'zstd')")
    stamps = env.ar / "cache" / "object_folders.json"
    assert stamps.is_file()
    (env.ar / "objects" / key).unlink()
    stamps.write_text("{not json")  # a damaged cache is no cache: the check falls back to every object
    os.utime(path := env.ar / "objects" / key.split("/")[0], ns=(0, 0))  # and the folder time lies
    assert not path.joinpath(Path(key).name).exists()
    archive(env.rd, archive=env.ar, mode="incremental", progress=False)
    report = verify_archive(env.ar, read_data=True)
    assert not report.missing and not report.damaged


def test_deleted_pack_is_written_again_by_the_next_run(env: Env) -> None:
    _experiment, digest, key = _stored(env, "o.codec = 'pack'")
    pack = next((env.ar / "packs").glob(f"*/{key.split(':')[1]}.pack"))
    pack.unlink()
    assert digest in verify_archive(env.ar, read_data=True).missing
    archive(env.rd, archive=env.ar, mode="incremental", progress=False)
    report = verify_archive(env.ar, read_data=True)
    assert not report.missing and not report.damaged


def test_repair_rehashes_and_stores_an_altered_object_again(env: Env) -> None:
    experiment, digest, key = _stored(env, "o.codec IN ('raw', 'zstd')")
    path = env.ar / "objects" / key
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01  # same size: only a re-hash can tell
    path.write_bytes(bytes(data))
    assert digest in verify_archive(env.ar, read_data=True).damaged
    report = repair(env.ar)
    assert report.ok and digest in report.objects_restored
    assert not verify_archive(env.ar, read_data=True).damaged


def test_repair_says_what_it_cannot_repair(env: Env) -> None:
    outcome = cleanup(env.rd, archive=env.ar, stage="full", confirm=True, yes=True, keep_days=0)
    assert outcome.applied is not None
    rows = env.query(
        "SELECT f.experiment_id, f.sha256, o.storage_key FROM wb_stored_files f JOIN wb_objects o USING (sha256) "
        "JOIN aistock_experiments e ON e.id = f.experiment_id WHERE e.workspace_state = 'deleted' "
        "AND o.codec IN ('raw', 'zstd') AND f.sha256 NOT IN (SELECT f2.sha256 FROM wb_stored_files f2 JOIN "
        "aistock_experiments e2 ON e2.id = f2.experiment_id WHERE e2.workspace_state = 'present') ORDER BY 1, 2"
    )
    experiment, digest, key = rows[0]
    (env.ar / "objects" / key).unlink()
    result = subprocess.run(
        [sys.executable, "-m", "workbench.cli", "repair", "--archive", str(env.ar)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 7
    assert f"NOT REPAIRED object {digest}" in result.stdout and experiment in result.stdout
    assert "cleaned up" in result.stdout


def test_a_torn_record_from_a_crash_is_reported_not_fatal(env: Env) -> None:
    layout = ArchiveLayout.at(env.ar)
    newest = record_files(layout)[-1]
    torn = newest.with_name(f"{999999999999:012d}-{'0' * 32}.json")
    torn.write_bytes(newest.read_bytes()[:100])
    (env.ar / "catalog.duckdb").unlink()
    report = repair(env.ar)
    assert report.catalog == "rebuilt" and not report.ok
    assert any(torn.name in p for p in report.problems)
    os.remove(torn)


def _make_like_schema_5(ar: Path) -> None:
    """Turn a current archive into what workbench wrote before schema 6: small objects in the
    catalog (`wb_inline_objects`, keys `inline:<sha>`), no packs, manifests, records or snapshots,
    and performance rows without schema 7's columns, experiments without schema 8's (the upgrade
    fills them again)."""
    layout = ArchiveLayout.at(ar)
    con = duckdb.connect(str(layout.catalog))
    for sha, key in con.execute("SELECT sha256, storage_key FROM wb_objects WHERE codec = 'pack'").fetchall():
        data = read_blob(layout.packs, key)
        con.execute("INSERT INTO wb_inline_objects VALUES (?, ?)", [sha, data])
        con.execute(
            "UPDATE wb_objects SET storage_key = ?, codec = 'inline' WHERE sha256 = ?", [f"inline:{sha}", sha]
        )
    for experiment_id, refs in con.execute(
        "SELECT id, file_refs_json FROM aistock_experiments WHERE file_refs_json IS NOT NULL"
    ).fetchall():
        fixed = [
            {**r, "storage_key": f"inline:{r['sha256']}"}
            if str(r.get("storage_key", "")).startswith("pack:")
            else r
            for r in json.loads(refs)
        ]
        con.execute(
            "UPDATE aistock_experiments SET file_refs_json = ? WHERE id = ?",
            [json.dumps(fixed), experiment_id],
        )
    for column in (  # schema 7's columns
        "rank_ic",
        "rank_ic_ir",
        "dates_from",
        "annual_return_cost",
        "max_drawdown_cost",
        "sharpe_cost",
        "periods_per_year",
        "combination_size",
    ):
        con.execute(f"ALTER TABLE aistock_factor_performance DROP COLUMN {column}")
    con.execute("ALTER TABLE aistock_experiments DROP COLUMN workspace_bytes")  # schema 8's
    con.execute("DROP TABLE wb_manifests")
    con.execute("DELETE FROM wb_meta WHERE key = 'record_seq'")
    con.execute("UPDATE wb_meta SET value = '5' WHERE key = 'schema_version'")
    con.close()
    for folder in (layout.packs, layout.manifests, layout.records, layout.snapshots):
        shutil.rmtree(folder)


def test_an_archive_from_before_records_is_made_self_describing_by_its_upgrade(
    env: Env, tmp_path: Path
) -> None:
    _make_like_schema_5(env.ar)
    archive(env.rd, archive=env.ar, mode="incremental", progress=False)  # a writing command upgrades
    hold(sorted(env.level2())[0], reason="first hold after the upgrade", archive=env.ar)
    assert env.query("SELECT count(*) FROM wb_inline_objects") == [(0,)]
    assert env.query("SELECT count(*) FROM wb_objects WHERE codec = 'inline'") == [(0,)]
    kinds = [json.loads(p.read_text())["kind"] for p in record_files(ArchiveLayout.at(env.ar))]
    assert kinds[0] == "baseline" and "hold" in kinds
    catalog = env.ar / "catalog.duckdb"
    before = catalog_tables(catalog)
    catalog.unlink()
    shutil.rmtree(env.ar / "snapshots", ignore_errors=True)
    assert repair(env.ar).ok
    assert_same_tables(before, catalog_tables(catalog))
    for experiment_id, refs in env.query(
        "SELECT id, file_refs_json FROM aistock_experiments WHERE archiving_level = 2"
    ):
        target = tmp_path / "restored" / experiment_id
        restore_experiment(experiment_id, to=target, archive=env.ar)
        assert all(sha(target / r["path"]) == r["sha256"] for r in json.loads(refs) if r["kept"])


def test_a_damaged_pack_is_replaced_even_when_the_loop_packs_the_same_bytes_again(env: Env) -> None:
    _experiment, digest, key = _stored(env, "o.codec = 'pack'")
    pack = next((env.ar / "packs").glob(f"*/{key.split(':')[1]}.pack"))
    data = bytearray(pack.read_bytes())
    offset = int(key.split(":")[2])
    data[offset] ^= 0x01  # same size, same name: only a re-hash tells
    pack.write_bytes(bytes(data))
    assert digest in verify_archive(env.ar, read_data=True).damaged
    report = repair(env.ar)
    assert report.ok and report.packs_set_aside == [str(env.ar / "damaged" / "packs" / pack.name)]
    assert not verify_archive(env.ar, read_data=True).damaged and not pack.exists()
    assert check_packs(ArchiveLayout.at(env.ar)).ok


def _verify_cli(ar: Path, *extra: str) -> tuple[int, dict]:
    done = subprocess.run(
        [sys.executable, "-m", "workbench.cli", "verify", "--archive", str(ar), "--json", *extra],
        capture_output=True,
        text=True,
        timeout=300,
    )
    return done.returncode, json.loads(done.stdout)


def test_verify_checks_manifests_records_and_with_read_data_every_stored_byte(env: Env) -> None:
    code, report = _verify_cli(env.ar, "--read-data")
    assert (
        code == 0 and report["ok"] and report["manifests"]["checked"] > 0 and report["packs"]["checked"] > 0
    )
    # an altered object of the same size: only --read-data tells
    _experiment, digest, key = _stored(env, "o.codec IN ('raw', 'zstd')")
    path = env.ar / "objects" / key
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))
    code, report = _verify_cli(env.ar)
    assert code == 0 and report["packs"]["skipped"]
    code, report = _verify_cli(env.ar, "--read-data")
    assert code == 7 and report["failed"] == ["objects"] and report["objects"]["damaged"] == [digest]
    path.write_bytes(bytes(data[:-1]) + bytes([data[-1] ^ 0x01]))
    # a manifest deleted, a record torn
    manifest = (
        env.ar / "manifests" / env.query("SELECT storage_key FROM wb_manifests ORDER BY 1 LIMIT 1")[0][0]
    )
    manifest.unlink()
    newest = record_files(ArchiveLayout.at(env.ar))[-1]
    newest.write_bytes(newest.read_bytes()[:50])
    code, report = _verify_cli(env.ar)
    assert code == 7 and report["failed"] == ["manifests", "records"]
    assert any("workbench repair" in p for p in report["manifests"]["problems"])


def test_repair_of_a_catalog_another_process_holds_is_busy_not_a_rebuild(env: Env) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            (
                "import duckdb, sys, time\n"
                f"con = duckdb.connect({str(env.ar / 'catalog.duckdb')!r})\n"
                "print('ready', flush=True)\n"
                "time.sleep(30)\n"
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        done = subprocess.run(
            [sys.executable, "-m", "workbench.cli", "repair", "--archive", str(env.ar)],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "WORKBENCH_CATALOG_TIMEOUT_S": "1"},
        )
    finally:
        holder.kill()
        holder.wait()
    assert done.returncode == 6 and "is held by" in done.stderr
    assert not (env.ar / "damaged").exists()  # the healthy catalog was not set aside
