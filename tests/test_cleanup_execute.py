"""Confirm, quarantine, undo, purge: what moves, what survives, and what the archive still serves."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from cleanup_helpers import Env, files_under

from workbench.archive import faults
from workbench.archive.lock import archive_lock
from workbench.archive.restore import restore_experiment
from workbench.cleanup import CleanupPolicy, approve_plan, cleanup, list_plans, purge_quarantine, undo_plan
from workbench.cleanup.apply import apply_items
from workbench.cleanup.context import plan_context
from workbench.cleanup.planner import plan_from_context
from workbench.cleanup.records import save_plan
from workbench.cli import main
from workbench.errors import ArchiveBusyError
from workbench.rdagent.files.factor_meta import read_factor_meta
from workbench.rdagent.files.qlib_res import read_qlib_res
from workbench.rdagent.files.returns import read_returns

OLD = 1_600_000_000  # an mtime far outside any grace window


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def original_file(env: Env, experiment: dict, rel: str) -> Path:
    """Where an archived rel path lives in the installation (sub/<id>/... is a sibling folder)."""
    if rel.startswith("sub/"):
        _sub, ws_id, rest = rel.split("/", 2)
        return env.workspace_root / ws_id / rest
    return env.workspace_root / experiment["workspace_id"] / rel


def test_restore_rebuilds_every_archived_file_byte_for_byte(env: Env, tmp_path: Path) -> None:
    for experiment in env.level2().values():
        target = tmp_path / "restored" / experiment["id"]
        result = restore_experiment(experiment["id"], to=target, archive=env.ar)
        kept = [r for r in json.loads(experiment["file_refs"]) if r["kept"]]
        assert result.files == len(kept) > 0
        for ref in kept:
            assert (
                sha(target / ref["path"]) == sha(original_file(env, experiment, ref["path"])) == ref["sha256"]
            )


def test_archive_alone_serves_everything_after_full_cleanup(env: Env, tmp_path: Path) -> None:
    level2 = env.level2()
    expected = {}
    for experiment in level2.values():
        folder = env.workspace_root / experiment["workspace_id"]
        names = (
            read_factor_meta(folder / "factor_meta.json")["name"].to_list()
            if (folder / "factor_meta.json").exists()
            else []
        )
        qlib = read_qlib_res(folder / "qlib_res.csv")
        expected[experiment["id"]] = {
            "returns": read_returns(folder / "ret.pkl"),
            "qlib": dict(zip(qlib["metric"].to_list(), qlib["value"].to_list(), strict=True)),
            "factors": sorted(set(names)),
            "hashes": {
                r["path"]: sha(original_file(env, experiment, r["path"]))
                for r in json.loads(experiment["file_refs"])
                if r["kept"]
            },
        }
    outcome = cleanup(env.rd, archive=env.ar, stage="full", confirm=True, yes=True, logs=True, keep_days=0)
    assert (
        outcome.ok
        and outcome.applied is not None
        and outcome.applied.count("moved") == len(outcome.plan.items)
    )
    states = {e["id"]: e["state"] for e in env.experiments().values()}
    assert all(states[i] == "deleted" for i in level2)
    purged = purge_quarantine(rdagent_root=env.rd, archive=env.ar, older_than="0s")
    assert len(purged.purged) == len(outcome.plan.items) and not purged.skipped
    shutil.rmtree(env.rd)
    assert not env.rd.exists()

    for experiment_id, want in expected.items():
        series = pl.DataFrame(
            env.query(
                'SELECT datetime, account, "return", total_turnover, turnover, total_cost, cost, value, cash, bench '
                "FROM aistock_return_series WHERE experiment_id = ? ORDER BY datetime",
                [experiment_id],
            ),
            schema=want["returns"].columns,
            orient="row",
        )
        assert series.equals(want["returns"].sort("datetime"))
        metrics = json.loads(
            env.query("SELECT metrics_json FROM aistock_experiments WHERE id = ?", [experiment_id])[0][0]
        )
        assert set(metrics["qlib_raw"]) == set(want["qlib"])
        for name, value in want["qlib"].items():
            stored = metrics["qlib_raw"][name]
            assert stored is None if value != value else stored == pytest.approx(value), (
                name
            )  # NaN is stored as null
        strategy = env.query(
            "SELECT s.id, s.config_json FROM aistock_strategies s JOIN aistock_experiments e "
            "ON e.strategy_id = s.id WHERE e.id = ?",
            [experiment_id],
        )
        assert len(strategy) == 1
        factors = env.query(
            "SELECT DISTINCT f.name FROM aistock_factors f JOIN aistock_factor_usage u ON u.factor_id = f.id "
            "WHERE u.experiment_id = ? ORDER BY 1",
            [experiment_id],
        )
        assert set(want["factors"]) <= {r[0] for r in factors}
        restored = restore_experiment(experiment_id, to=tmp_path / experiment_id, archive=env.ar)
        assert {p: sha(restored.target / p) for p in want["hashes"]} == want["hashes"]
    deletions = env.query("SELECT state, count(*) FROM wb_deletions GROUP BY 1")
    assert deletions == [("purged", len(outcome.plan.items))]


def _link_outside(env: Env, experiment: dict) -> tuple[Path, Path, Path]:
    """A file and a folder outside the root, linked from inside a workspace (old mtimes)."""
    outside = env.tmp / "outside"
    (outside / "folder").mkdir(parents=True)
    target = outside / "shared_data.h5"
    target.write_bytes(b"precious source data")
    (outside / "folder" / "keep.txt").write_text("keep", encoding="utf-8")
    folder = env.workspace_root / experiment["workspace_id"]
    os.symlink(target, folder / "linked_data.h5")
    os.symlink(outside / "folder", folder / "linked_folder")
    for name in ("linked_data.h5", "linked_folder"):
        os.utime(folder / name, (OLD, OLD), follow_symlinks=False)
    return target, outside / "folder", folder


@pytest.mark.parametrize("stage", ["conservative", "full"])
def test_symlink_to_outside_survives_with_target_untouched(env: Env, stage: str) -> None:
    experiment = sorted(env.level2().values(), key=lambda e: e["id"])[0]
    target, outside_folder, folder = _link_outside(env, experiment)
    source_data = next((env.rd / "git_ignore_folder" / "factor_implementation_source_data").glob("*.h5"))
    before = (target.stat(), sha(target), files_under(outside_folder), sha(source_data))
    outcome = cleanup(env.rd, archive=env.ar, stage=stage, confirm=True, yes=True)
    assert outcome.ok
    moved = {i.path for i in outcome.plan.items}
    assert str(folder) in moved
    if stage == "conservative":
        item = next(i for i in outcome.plan.items if i.path == str(folder))
        assert "linked_data.h5" in {f.rel_path for f in item.files}
        assert not os.path.lexists(folder / "linked_data.h5") and (folder / "linked_folder").is_symlink()
        assert (folder / "qlib_res.csv").exists() and (folder / "ret.pkl").exists()
    else:
        assert not folder.exists()
    purge_quarantine(rdagent_root=env.rd, archive=env.ar, older_than="0s")
    after = (target.stat(), sha(target), files_under(outside_folder), sha(source_data))
    assert (
        after[1:] == before[1:]
        and after[0].st_ino == before[0].st_ino
        and after[0].st_mtime_ns == before[0].st_mtime_ns
    )
    assert source_data.stat().st_nlink >= 1 and source_data.read_bytes()


def test_undo_puts_everything_back_and_resets_state(env: Env) -> None:
    before = files_under(env.workspace_root)
    outcome = cleanup(env.rd, archive=env.ar, stage="full", confirm=True, yes=True)
    plan_id = outcome.plan.plan_id
    assert files_under(env.workspace_root) != before
    assert (env.rd / ".workbench_quarantine" / plan_id / "journal.jsonl").exists()
    result = undo_plan(plan_id, rdagent_root=env.rd, archive=env.ar)
    assert not result.refused and len(result.restored) == len(outcome.plan.items)
    assert files_under(env.workspace_root) == before
    assert {e["state"] for e in env.experiments().values()} == {"present"}
    assert env.query("SELECT DISTINCT state FROM wb_deletions WHERE plan_id = ?", [plan_id]) == [
        ("restored",)
    ]
    assert not (env.rd / ".workbench_quarantine" / plan_id).exists()


def test_conservative_cleanup_slims_and_undo_refuses_an_existing_path(env: Env) -> None:
    outcome = cleanup(env.rd, archive=env.ar, confirm=True, yes=True)
    states = {e["state"] for e in env.level2().values()}
    assert states == {"slimmed"}
    item = outcome.plan.items[0]
    first = Path(item.path) / item.files[0].rel_path
    first.write_bytes(b"recreated by RD-Agent")
    result = undo_plan(outcome.plan.plan_id, rdagent_root=env.rd, archive=env.ar)
    assert [p for p, _ in result.refused] == [str(first)]
    assert "exists again" in result.refused[0][1]
    assert first.read_bytes() == b"recreated by RD-Agent"
    assert env.query("SELECT count(*) FROM wb_deletions WHERE state = 'quarantined'") == [(1,)]


def test_cleanup_and_archiving_never_run_together(env: Env) -> None:
    before = files_under(env.workspace_root)
    with archive_lock(env.ar, job="archive-full"), pytest.raises(ArchiveBusyError, match="archive-full"):
        cleanup(env.rd, archive=env.ar, stage="full", confirm=True, yes=True)
    with archive_lock(env.ar, job="archive-full"):
        code = main(
            ["cleanup", "--rdagent-root", str(env.rd), "--archive", str(env.ar), "--confirm", "--yes"]
        )
    assert code == 6
    assert files_under(env.workspace_root) == before


def test_damage_found_right_before_the_move_skips_the_item(env: Env) -> None:
    policy = CleanupPolicy(stage="full")
    context = plan_context(env.rd, archive=env.ar, policy=policy)
    plan = save_plan(plan_from_context(context), archive=env.ar)
    victim = plan.items[0]
    experiment = env.experiments()[victim.experiment_ids[0]]
    ref = next(
        r
        for r in json.loads(experiment["file_refs"])
        if r["kept"] and not r["storage_key"].startswith(("inline:", "pack:"))
    )
    (env.ar / "objects" / ref["storage_key"]).write_bytes(b"bit rot")
    with archive_lock(env.ar, job="cleanup"):
        result = apply_items(plan, [victim], context=context)
    assert result.outcomes[0].status == "skipped" and "damaged_archive" in result.outcomes[0].detail
    assert Path(victim.path).is_dir()
    assert env.query("SELECT count(*) FROM wb_deletions") == [(0,)]


def test_purge_respects_age_and_cli_paths(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    outcome = cleanup(env.rd, archive=env.ar, confirm=True, yes=True)
    assert (
        main(
            [
                "cleanup",
                "purge",
                "--older-than",
                "7d",
                "--rdagent-root",
                str(env.rd),
                "--archive",
                str(env.ar),
            ]
        )
        == 0
    )
    assert "purged 0" in capsys.readouterr().out
    assert env.query("SELECT count(*) FROM wb_deletions WHERE state = 'quarantined'")[0][0] > 0
    assert (
        main(
            [
                "cleanup",
                "purge",
                "--older-than",
                "0s",
                "--rdagent-root",
                str(env.rd),
                "--archive",
                str(env.ar),
            ]
        )
        == 0
    )
    assert env.query("SELECT DISTINCT state FROM wb_deletions") == [("purged",)]
    assert not (env.rd / ".workbench_quarantine" / outcome.plan.plan_id).exists()
    assert (
        main(
            ["cleanup", "undo", outcome.plan.plan_id, "--rdagent-root", str(env.rd), "--archive", str(env.ar)]
        )
        == 2
    )
    assert main(["cleanup", "plans", "--archive", str(env.ar)]) == 0
    assert outcome.plan.plan_id in capsys.readouterr().out


@pytest.mark.parametrize("linked", ["plan", "item"])
def test_linked_plan_or_item_folder_in_quarantine_moves_nothing_outside(env: Env, linked: str) -> None:
    """Plan and item ids are known between the dry run and --approval: a link planted there is refused."""
    before = files_under(env.workspace_root)
    plan = cleanup(env.rd, archive=env.ar, stage="full", dry_run=True).plan
    approval = approve_plan(plan.plan_id or "", archive=env.ar)
    outside = env.tmp / "outside"
    outside.mkdir()
    quarantine = env.rd / ".workbench_quarantine"
    quarantine.mkdir(mode=0o700)
    if linked == "plan":
        os.symlink(outside, quarantine / (plan.plan_id or ""))
    else:
        (quarantine / (plan.plan_id or "")).mkdir()
        os.symlink(outside, quarantine / (plan.plan_id or "") / plan.items[0].item_id)
    outcome = cleanup(env.rd, archive=env.ar, confirm=True, approval=approval.approval_id)
    assert outcome.applied is not None and not outcome.ok
    refused = [o for o in outcome.applied.outcomes if o.status == "failed"]
    assert refused and all("link" in o.detail for o in refused)
    assert len(refused) == (len(plan.items) if linked == "plan" else 1)
    assert os.listdir(outside) == []
    assert env.query(
        "SELECT count(*) FROM wb_deletions WHERE item_id IN (SELECT unnest(?))",
        [[o.item_id for o in refused]],
    ) == [(0,)]
    for o in refused:
        assert Path(o.path).is_dir()
    if linked == "plan":
        assert files_under(env.workspace_root) == before


def _immutable(path: Path, on: bool) -> bool:
    """`chattr +i` (root cannot delete it either); False where the file system does not support it."""
    done = subprocess.run(["chattr", "+i" if on else "-i", str(path)], capture_output=True, text=True)
    return done.returncode == 0


def test_purge_failing_partway_records_what_it_purged(env: Env) -> None:
    outcome = cleanup(env.rd, archive=env.ar, stage="full", confirm=True, yes=True)
    assert outcome.ok and len(outcome.plan.items) >= 3
    rows = env.query(
        "SELECT quarantine_path FROM wb_deletions WHERE state = 'quarantined' ORDER BY deleted_at"
    )
    stuck = Path(rows[1][0])  # a real entry that cannot be deleted: one immutable file inside it
    pinned = next(p for p in sorted(stuck.rglob("*")) if p.is_file() and not p.is_symlink())
    if shutil.which("chattr") is None or not _immutable(pinned, True):
        pytest.skip("chattr +i is not available on this file system (or not as root)")
    try:
        result = purge_quarantine(rdagent_root=env.rd, archive=env.ar, older_than="0s")
    finally:
        _immutable(pinned, False)
    assert len(result.purged) == len(outcome.plan.items) - 1
    assert [p for p, _ in result.skipped] == [str(stuck)] and "Operation not permitted" in result.skipped[0][
        1
    ]
    rows = env.query("SELECT quarantine_path FROM wb_deletions WHERE state = 'quarantined'")
    assert rows == [(str(stuck),)] and stuck.exists()
    again = purge_quarantine(rdagent_root=env.rd, archive=env.ar, older_than="0s")
    assert len(again.purged) == 1 and not again.skipped
    assert env.query("SELECT DISTINCT state FROM wb_deletions") == [("purged",)]


HOLDER = """
import sys, time, json, duckdb
from pathlib import Path
quarantine, catalog, second = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
def journaled():
    for journal in quarantine.glob("*/journal.jsonl"):
        for line in journal.read_text().splitlines():
            try:
                if json.loads(line).get("item_id") == second:
                    return True
            except ValueError:
                pass
    return False
deadline = time.monotonic() + 120
while time.monotonic() < deadline and not journaled():  # the first item is recorded by then
    time.sleep(0.01)
while True:  # then take the catalog for writing, as a notebook or another tool would
    try:
        con = duckdb.connect(catalog)
        break
    except duckdb.IOException:
        time.sleep(0.01)
print("held", flush=True)
time.sleep(120)
"""


@pytest.mark.parametrize("stage", ["full", "conservative"])
def test_move_whose_record_fails_is_kept_in_the_journal_and_undone(
    env: Env, monkeypatch: pytest.MonkeyPatch, stage: str
) -> None:
    """A real second process holds the catalog while the second batch's moves are recorded.

    Batches of two items (`WORKBENCH_CLEANUP_BATCH=2`): the first batch is recorded; the fault seam
    pauses the job before recording the second (`pause:record:after=1`), so that the holder, which
    waits for the third item's journal entry, takes the catalog first. Both items of the second
    batch are moved but unrecorded; nothing after them is touched; undo puts everything back.
    """
    before = files_under(env.workspace_root)
    planned = cleanup(env.rd, archive=env.ar, stage=stage, dry_run=True).plan
    assert len(planned.items) >= 5
    third = planned.items[2].item_id  # plans are deterministic: the confirm re-plans the same items
    folder_of = env.rd / ".workbench_quarantine"
    monkeypatch.setenv("WORKBENCH_CATALOG_TIMEOUT_S", "1")
    monkeypatch.setenv("WORKBENCH_CLEANUP_BATCH", "2")
    holder = None
    try:
        faults.configure("pause:record:after=1:times=1:ms=4000")
        holder = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(folder_of), str(env.ar / "catalog.duckdb"), third],
            stdout=subprocess.PIPE,
            text=True,
        )
        outcome = cleanup(env.rd, archive=env.ar, stage=stage, confirm=True, yes=True)
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    finally:
        faults.configure("")
        if holder is not None:
            holder.kill()
            holder.wait()
    applied, plan_id = outcome.applied, outcome.plan.plan_id or ""
    calls = [o.item_id for o in applied.outcomes] if applied else []
    assert applied is not None and applied.needs_recovery and not outcome.ok
    assert [o.status for o in applied.outcomes][:4] == ["moved", "moved", "failed", "failed"]
    assert all("is held by" in o.detail for o in applied.outcomes[2:4])
    assert all(o.status == "skipped" and "not attempted" in o.detail for o in applied.outcomes[4:])
    for later in outcome.plan.items[4:]:
        assert Path(later.path).exists()  # untouched
    assert f"workbench cleanup undo {plan_id}" in outcome.format()
    listed = next(p for p in list_plans(archive=env.ar) if p["plan_id"] == plan_id)
    assert listed["status"] == "applying" and f"workbench cleanup undo {plan_id}" in listed["recovery"]
    folder = env.rd / ".workbench_quarantine" / plan_id
    assert all((folder / c).is_dir() for c in calls[2:4])  # moved, but without a wb_deletions row
    purge_quarantine(rdagent_root=env.rd, archive=env.ar, older_than="0s")  # purges the recorded ones only
    assert not (folder / calls[0]).exists()
    assert (folder / "journal.jsonl").is_file() and all((folder / c).is_dir() for c in calls[2:4])
    result = undo_plan(plan_id, rdagent_root=env.rd, archive=env.ar)
    assert not result.refused and result.restored
    assert not folder.exists()
    for item_id in calls[2:4]:
        unrecorded = next(i for i in outcome.plan.items if i.item_id == item_id)
        if stage == "full":
            assert Path(unrecorded.path).is_dir()
        name = Path(unrecorded.path).name
        assert {k: v for k, v in files_under(env.workspace_root).items() if k.startswith(name)} == {
            k: v for k, v in before.items() if k.startswith(name)
        }
