"""Log retention, holds on the command line, and the manifest for RD-Agent's own cleanup script."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cleanup_helpers import Env

from workbench.cleanup import cleanup, export_cleanup_manifest, hold
from workbench.cli import main

LATER = datetime(2026, 3, 1, tzinfo=UTC)  # the sample's logs end in February 2026


def log_folders(env: Env) -> list[str]:
    return sorted(str(p) for p in (env.rd / "log").iterdir() if p.is_dir())


def test_log_retention_by_age_count_and_size(env: Env) -> None:
    every = cleanup(
        env.rd, archive=env.ar, dry_run=True, workspaces=False, logs=True, keep_days=0, now=LATER
    ).plan
    eligible = {i.path for i in every.items}
    assert eligible and all(i.kind == "log_dir" for i in every.items)
    unknown = [e for e in every.exclusions if e.reason == "unknown_log"]
    assert len(unknown) == 1 and unknown[0].target not in eligible  # a log no task run claims is left alone
    assert eligible | {unknown[0].target} == set(log_folders(env))

    recent = cleanup(
        env.rd, archive=env.ar, dry_run=True, workspaces=False, logs=True, keep_days=30, now=LATER
    ).plan
    retained = {e.target for e in recent.exclusions if e.reason == "retained"}
    assert retained and {i.path for i in recent.items} == eligible - retained
    assert all("older than 30 days" in i.rule for i in recent.items)

    last2 = cleanup(
        env.rd, archive=env.ar, dry_run=True, workspaces=False, logs=True, keep_days=0, keep_last=2, now=LATER
    ).plan
    assert len(last2.items) == len(eligible) - len(
        {e.target for e in last2.exclusions if e.reason == "retained"}
    )
    newest = sorted(every.items, key=lambda i: i.modified_at)[-1]
    assert newest.path not in {i.path for i in last2.items}

    sizes = sorted((i.modified_at, i.bytes) for i in every.items)
    total = sum(i.bytes for i in every.items) + sum(
        sum(f.stat().st_size for f in (env.rd / "log" / os.path.basename(e.target)).rglob("*") if f.is_file())
        for e in unknown
    )
    limit = total - sizes[0][1]  # removing the oldest eligible folder is enough
    capped = cleanup(
        env.rd,
        archive=env.ar,
        dry_run=True,
        workspaces=False,
        logs=True,
        keep_days=0,
        max_total_size=limit,
        now=LATER,
    ).plan
    assert [i.bytes for i in capped.items] == [sizes[0][1]]


def test_logs_of_held_running_and_unarchived_runs_are_kept(env: Env) -> None:
    runs = {
        i.task_run_id: i.path
        for i in cleanup(
            env.rd, archive=env.ar, dry_run=True, workspaces=False, logs=True, keep_days=0
        ).plan.items
    }
    held_run, running_run = sorted(runs)[:2]
    hold(held_run, reason="re-trace the whole run", archive=env.ar)
    env.registry_execute(
        "UPDATE task_runs SET status = 'running', updated_at_utc = ? WHERE task_run_id = ?",
        [datetime.now(UTC).isoformat(), running_run],
    )
    env.registry_execute(
        "INSERT INTO loops (task_run_id, loop_id, action, status) VALUES (?, 99, 'factor', 'success')",
        [sorted(runs)[2]],
    )
    plan = cleanup(env.rd, archive=env.ar, dry_run=True, workspaces=False, logs=True, keep_days=0).plan
    reasons = {e.target: set(e.reasons) for e in plan.exclusions}
    assert "held" in reasons[runs[held_run]]
    assert "running" in reasons[runs[running_run]]
    assert "not_archived" in reasons[runs[sorted(runs)[2]]]
    outcome = cleanup(
        env.rd, archive=env.ar, confirm=True, yes=True, workspaces=False, logs=True, keep_days=0
    )
    assert outcome.ok and all(not os.path.exists(i.path) for i in outcome.plan.items)
    assert os.path.isdir(runs[held_run]) and os.path.isdir(runs[running_run])


def test_hold_release_and_holds_commands(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    archive = ["--archive", str(env.ar)]
    assert (
        main(["hold", "abc123", "--reason", "debugging", "--active", *archive]) == 2
    )  # no such id in the archive
    assert main(["hold", "abc123", "--reason", "debugging", "--active", "--allow-unknown", *archive]) == 0
    assert main(["holds", *archive]) == 0
    assert "active on abc123" in capsys.readouterr().out
    assert main(["release", "abc123", "--reason", "fixed", *archive]) == 0
    assert main(["release", "abc123", "--reason", "again", *archive]) == 2
    assert main(["holds", "--all", *archive]) == 0
    assert "released" in capsys.readouterr().out
    assert env.query("SELECT target_id, kind, release_reason FROM wb_holds") == [
        ("abc123", "active", "fixed")
    ]


def test_manifest_for_the_rdagent_script(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    level2 = sorted(env.level2().values(), key=lambda e: e["id"])
    hold(level2[0]["id"], reason="keep", archive=env.ar)
    out = env.tmp / "manifest.json"
    code = main(
        [
            "export-cleanup-manifest",
            "--out",
            str(out),
            "--rdagent-root",
            str(env.rd),
            "--archive",
            str(env.ar),
        ]
    )
    assert code == 0 and "can_cleanup=true" in capsys.readouterr().out
    document = json.loads(out.read_text(encoding="utf-8"))
    entries = document["experiments"]
    assert {e["experiment_id"] for e in entries} == set(env.experiments())
    for entry in entries:
        assert {
            "task_run_id",
            "loop_id",
            "workspace_id",
            "workspace_path",
            "archiving_level",
            "can_cleanup",
        } <= set(entry)
        assert isinstance(entry["archiving_level"], int) and isinstance(entry["can_cleanup"], bool)
        if entry["can_cleanup"]:
            assert entry["archiving_level"] >= 2 and os.path.isdir(entry["workspace_path"])
            assert os.path.dirname(entry["workspace_path"]) == os.path.realpath(env.workspace_root)
        else:
            assert entry["workspace_path"] is None and entry["reason"]
    held = [e for e in entries if e["experiment_id"] == level2[0]["id"]]
    assert held and not any(e["can_cleanup"] for e in held)
    assert any(e["can_cleanup"] and e["workspace_role"] == "sub_workspace" for e in entries)
    assert not any(e["can_cleanup"] for e in entries if e["archiving_level"] < 2)
    stored = env.query(
        "SELECT status, plan_hash FROM wb_cleanup_plans WHERE plan_id = ?", [document["plan_id"]]
    )
    assert stored == [("exported", document["plan_hash"])]
    assert export_cleanup_manifest(env.rd, out=out, archive=env.ar)["experiments"] == entries


def test_manifest_to_a_folder_or_under_a_file_is_a_clear_error(env: Env, tmp_path: Path) -> None:
    from workbench.errors import ConfigError

    plans_before = env.query("SELECT count(*) FROM wb_cleanup_plans")
    with pytest.raises(ConfigError, match="is a folder; give a file name"):
        export_cleanup_manifest(env.rd, out=tmp_path, archive=env.ar)
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(ConfigError, match="cannot create the folder of --out"):
        export_cleanup_manifest(env.rd, out=blocker / "manifest.json", archive=env.ar)
    assert env.query("SELECT count(*) FROM wb_cleanup_plans") == plans_before  # nothing planned or recorded
    assert not [p for p in tmp_path.parent.iterdir() if p.name.endswith(".part")]
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]
