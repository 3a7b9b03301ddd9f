"""The dry run: exactly the expected folders, every exclusion with its reason, stable and readable."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cleanup_helpers import Env

from workbench.cleanup import cleanup, hold
from workbench.cli import main
from workbench.errors import ConfigError

RUNNING_RUN = "b7d779cc4b5c4436953c178e61067a8c"


def registry_rows(rd: Path, sql: str) -> list[tuple]:
    con = sqlite3.connect(f"file:{rd / 'RDagentDB' / 'registry.sqlite'}?mode=ro&immutable=1", uri=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def folders_of(env: Env, experiment: dict) -> list[str]:
    """Real paths of an experiment's workspace folders (main + sub-workspaces from the registry)."""
    rows = registry_rows(
        env.rd, "SELECT workspace_id, task_run_id, loop_id, workspace_role, workspace_path FROM workspaces"
    )
    paths = []
    for ws_id, run, loop, role, raw in rows:
        name = raw.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
        mine = ws_id == experiment["workspace_id"] or (
            role == "sub_workspace" and run == experiment["task_run_id"] and loop == experiment["loop_id"]
        )
        if mine and (env.workspace_root / name).is_dir():
            paths.append(os.path.realpath(env.workspace_root / name))
    return sorted(set(paths))


def pick(level2: dict[str, dict], count: int) -> list[dict]:
    """Distinct level-2 experiments outside the running run, in a stable order."""
    chosen = [
        e
        for e in sorted(level2.values(), key=lambda e: (e["task_run_id"], e["loop_id"]))
        if e["task_run_id"] != RUNNING_RUN
    ]
    return chosen[:count]


def unique_object(env: Env, experiment: dict) -> str:
    """Storage key of a kept file of this experiment that no other experiment shares."""
    counts: dict[str, int] = {}
    for other in env.experiments().values():
        for ref in json.loads(other["file_refs"] or "[]"):
            if ref.get("kept"):
                counts[ref["sha256"]] = counts.get(ref["sha256"], 0) + 1
    for ref in json.loads(experiment["file_refs"]):
        if (
            ref.get("kept")
            and counts[ref["sha256"]] == 1
            and not ref["storage_key"].startswith(("inline:", "pack:"))
        ):
            return ref["storage_key"]
    raise AssertionError("no unique object")


def set_up_cases(env: Env) -> dict[str, dict]:
    """Held, active, running, damaged-archive, escaping and recently-modified cases on one copy."""
    level2 = env.level2()
    held, active, damaged, linked, dotdot, elsewhere, touched = pick(level2, 7)
    hold(held["id"], reason="re-tracing a surprising IC", archive=env.ar)
    (env.tmp / "active.txt").write_text(f"# debugging now\n{active['workspace_id']}\n", encoding="utf-8")
    now = datetime.now(UTC).isoformat()
    env.registry_execute("UPDATE task_runs SET updated_at_utc = ? WHERE task_run_id = ?", [now, RUNNING_RUN])
    store = env.ar / "objects" / unique_object(env, damaged)
    store.write_bytes(b"damaged" + store.read_bytes()[7:])
    outside = env.tmp / "outside"
    outside.mkdir()
    name = linked["workspace_id"]
    shutil.move(str(env.workspace_root / name), str(outside / name))
    os.symlink(outside / name, env.workspace_root / name)
    env.registry_execute(
        "UPDATE workspaces SET workspace_path = ? WHERE workspace_id = ?",
        [
            "/mnt/f/Dev/RD-Agent-main/git_ignore_folder/RD-Agent_workspace/../../../../etc",
            dotdot["workspace_id"],
        ],
    )
    copy = outside / elsewhere["workspace_id"]
    shutil.copytree(env.workspace_root / elsewhere["workspace_id"], copy, symlinks=True)
    env.registry_execute(
        "UPDATE workspaces SET workspace_path = ? WHERE workspace_id = ?",
        [str(copy), elsewhere["workspace_id"]],
    )
    (env.workspace_root / touched["workspace_id"] / "qlib_res.csv").touch()
    return {
        "held": held,
        "active": active,
        "damaged": damaged,
        "linked": linked,
        "dotdot": dotdot,
        "elsewhere": elsewhere,
        "touched": touched,
    }


def test_dry_run_matches_the_expected_set(env: Env) -> None:
    cases = set_up_cases(env)
    before = {p: os.stat(p).st_mtime_ns for p in env.rd.rglob("*") if not p.is_symlink()}
    outcome = cleanup(env.rd, archive=env.ar, stage="full", dry_run=True, active_list=env.tmp / "active.txt")
    plan = outcome.plan
    experiments = env.experiments()
    running = {e["id"] for e in experiments.values() if e["task_run_id"] == RUNNING_RUN and e["level"] == 2}
    whole = {c["id"] for k, c in cases.items() if k in ("held", "active", "damaged", "touched")} | running
    expected = set()
    for experiment in env.level2().values():
        if experiment["id"] in whole:
            continue
        paths = folders_of(env, experiment)
        if experiment["id"] in {cases[k]["id"] for k in ("linked", "dotdot", "elsewhere")}:
            main = os.path.realpath(env.workspace_root / experiment["workspace_id"])
            paths = [p for p in paths if p != main]
        expected |= set(paths)
    assert {i.path for i in plan.items} == expected
    assert all(i.kind == "workspace_full" and i.level == 2 and i.rule for i in plan.items)

    reasons: dict[str, set[str]] = {}
    for exclusion in plan.exclusions:
        for experiment_id in exclusion.experiment_ids:
            reasons.setdefault(experiment_id, set()).update(exclusion.reasons)
    assert "held" in reasons[cases["held"]["id"]]
    assert "active" in reasons[cases["active"]["id"]]
    assert "damaged_archive" in reasons[cases["damaged"]["id"]]
    assert "recently_modified" in reasons[cases["touched"]["id"]]
    for key in ("linked", "dotdot", "elsewhere"):
        assert reasons[cases[key]["id"]] == {"unsafe_path"}, key
    assert all("running" in reasons[r] for r in running)
    level1 = {e["id"] for e in experiments.values() if e["level"] == 1}
    assert level1 and all("archiving_level" in reasons[i] or "missing" in reasons[i] for i in level1)
    linked_exclusion = next(e for e in plan.exclusions if cases["linked"]["workspace_id"] in e.target)
    assert "symbolic link" in linked_exclusion.detail
    dotdot_exclusion = next(
        e for e in plan.exclusions if cases["dotdot"]["id"] in e.experiment_ids and "unsafe_path" in e.reasons
    )
    assert "'..'" in dotdot_exclusion.detail
    # a dry run changes nothing on disk and stores the plan
    assert {p: os.stat(p).st_mtime_ns for p in env.rd.rglob("*") if not p.is_symlink()} == before
    stored = env.query("SELECT plan_hash, status FROM wb_cleanup_plans WHERE plan_id = ?", [plan.plan_id])
    assert stored == [(plan.plan_hash, "planned")]


def test_conservative_plan_removes_only_heavy_files(env: Env) -> None:
    plan = cleanup(env.rd, archive=env.ar, dry_run=True).plan
    assert plan.items and all(i.kind == "workspace_heavy" for i in plan.items)
    refs = {}
    for experiment in env.level2().values():
        for ref in json.loads(experiment["file_refs"]):
            refs[
                (
                    ref["workspace_id"],
                    ref["path"].split("/", 2)[-1] if ref["path"].startswith("sub/") else ref["path"],
                )
            ] = ref
    names = set()
    for item in plan.items:
        for entry in item.files:
            ref = refs[(item.workspace_id, entry.rel_path)]
            assert not ref["kept"] and ref["class"] in ("heavy", "noise", "link")
            names.add(entry.rel_path.rsplit("/", 1)[-1])
            if entry.nlink > 1:
                assert entry.reason == "hard link to shared source data"
    assert {"combined_factors_df.parquet", "result.h5", "daily_pv.h5", "pred.pkl"} <= names
    assert not names & {"params.pkl", "qlib_res.csv", "ret.pkl", "factor_meta.json"}
    linked = [i for i in plan.items if any(f.nlink > 1 for f in i.files)]
    assert linked and all(i.shared_links >= 1 for i in linked)
    assert all(i.bytes == sum(f.bytes for f in i.files if f.nlink == 1 and not f.is_link) for i in plan.items)


def test_plan_hash_is_stable_and_ignores_time(env: Env) -> None:
    first = cleanup(env.rd, archive=env.ar, dry_run=True, stage="full").plan
    second = cleanup(env.rd, archive=env.ar, dry_run=True, stage="full").plan
    assert first.plan_id != second.plan_id and first.created_at != second.created_at
    assert first.plan_hash == second.plan_hash
    assert [i.item_id for i in first.items] == [i.item_id for i in second.items]


def test_released_hold_no_longer_blocks(env: Env) -> None:
    from workbench.cleanup import release

    target = pick(env.level2(), 1)[0]
    hold(target["task_run_id"], reason="debugging the whole run", archive=env.ar)
    blocked = cleanup(env.rd, archive=env.ar, dry_run=True, stage="full").plan
    assert not any(target["id"] in i.experiment_ids for i in blocked.items)
    release(target["task_run_id"], reason="done", archive=env.ar)
    free = cleanup(env.rd, archive=env.ar, dry_run=True, stage="full").plan
    assert any(target["id"] in i.experiment_ids for i in free.items)
    rows = env.query("SELECT kind, reason, released_at IS NOT NULL, release_reason FROM wb_holds")
    assert rows == [("hold", "debugging the whole run", True, "done")]


def test_old_hold_expires_but_is_noted(env: Env) -> None:
    target = pick(env.level2(), 1)[0]
    hold(target["id"], reason="long ago", archive=env.ar)
    later = datetime(2099, 1, 1, tzinfo=UTC)
    plan = cleanup(env.rd, archive=env.ar, dry_run=True, stage="full", now=later).plan
    item = next(i for i in plan.items if target["id"] in i.main_experiment_ids)
    assert "hold expired" in item.rule


def test_invalid_options_are_refused(env: Env) -> None:
    with pytest.raises(ConfigError, match="level 2"):
        cleanup(env.rd, archive=env.ar, dry_run=True, min_archiving_level=1)
    with pytest.raises(ConfigError, match="exactly one"):
        cleanup(env.rd, archive=env.ar)
    with pytest.raises(ConfigError, match="stage"):
        cleanup(env.rd, archive=env.ar, dry_run=True, stage="everything")


def test_cli_dry_run_is_readable_and_json_is_complete(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    hold(pick(env.level2(), 1)[0]["id"], reason="keep", archive=env.ar)
    code = main(
        ["cleanup", "--rdagent-root", str(env.rd), "--archive", str(env.ar), "--dry-run", "--stage", "full"]
    )
    text = capsys.readouterr().out
    assert code == 0
    assert "WILL MOVE TO QUARANTINE" in text and "EXCLUDED" in text and "plan id:" in text
    assert "[held]" in text and "[archiving_level]" in text and "--approval" in text and "rule:" in text
    code = main(["cleanup", "--rdagent-root", str(env.rd), "--archive", str(env.ar), "--dry-run", "--json"])
    data = json.loads(capsys.readouterr().out)
    assert code == 0
    plan = data["plan"]
    assert plan["plan_id"] and len(plan["plan_hash"]) == 64
    assert plan["totals"]["items"] == len(plan["items"]) > 0
    for item in plan["items"]:
        assert {
            "item_id",
            "kind",
            "path",
            "experiment_ids",
            "task_run_id",
            "loop_id",
            "workspace_id",
            "level",
            "bytes",
            "rule",
            "files",
        } <= set(item)
    assert all(e["reasons"] and e["detail"] for e in plan["exclusions"])
    assert main(["cleanup", "--rdagent-root", str(env.rd), "--archive", str(env.ar)]) == 2


def test_an_active_list_naming_unknown_ids_gets_a_warning(env: Env) -> None:
    experiment = next(iter(env.level2().values()))
    listed = env.tmp / "active_typo.txt"
    listed.write_text(f"{experiment['task_run_id']}\n{experiment['workspace_id']}\nno_such_run_42\n")
    outcome = cleanup(env.rd, archive=env.ar, stage="full", dry_run=True, active_list=listed)
    (note,) = outcome.notes
    assert "names 1 id(s)" in note and "no_such_run_42" in note and note in outcome.format(archive=env.ar)
    listed.write_text(f"{experiment['task_run_id']}\n")
    assert cleanup(env.rd, archive=env.ar, stage="full", dry_run=True, active_list=listed).notes == []
