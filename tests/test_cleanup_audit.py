"""Fixes from the user audit of cleanup: plan roots for undo/purge, option checks up front, an
approved plan executed exactly as approved, one wording for plan items and paths, holds on ids
the archive does not know."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
from cleanup_helpers import Env, copy_tree_keeping_links, files_under

from workbench.cleanup import approve_plan, cleanup, hold, list_holds, list_plans, purge_quarantine, undo_plan
from workbench.cli import main
from workbench.errors import ConfigError


def quarantined(env: Env) -> int:
    return env.query("SELECT count(*) FROM wb_deletions WHERE state = 'quarantined'")[0][0]


# ----------------------------------------------------------------- 1. undo / purge use the plan's root


def test_undo_without_root_uses_the_plans_root(
    env: Env, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    before = files_under(env.workspace_root)
    outcome = cleanup(env.rd, archive=env.ar, stage="full", confirm=True, yes=True)
    plan_id = outcome.plan.plan_id or ""
    monkeypatch.chdir(env.tmp)  # the old default root, data/sample, is not there (nor anything like it)
    assert main(["cleanup", "undo", plan_id, "--archive", str(env.ar)]) == 0
    assert f"{len(outcome.plan.items)} paths restored" in capsys.readouterr().out
    assert files_under(env.workspace_root) == before
    assert quarantined(env) == 0


def test_undo_with_another_root_is_refused_up_front(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    outcome = cleanup(env.rd, archive=env.ar, stage="full", confirm=True, yes=True)
    plan_id = outcome.plan.plan_id or ""
    other = env.tmp / "other_root"
    other.mkdir()
    moved = quarantined(env)
    assert main(["cleanup", "undo", plan_id, "--rdagent-root", str(other), "--archive", str(env.ar)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "was made for RD-Agent root" in err and "drop --rdagent-root" in err
    assert quarantined(env) == moved
    with pytest.raises(ConfigError, match="was made for RD-Agent root"):
        undo_plan(plan_id, rdagent_root=other, archive=env.ar)
    # the same root spelled another way (a link to it) is the same installation
    link = env.tmp / "link_to_root"
    os.symlink(env.rd, link)
    assert main(["cleanup", "undo", plan_id, "--rdagent-root", str(link), "--archive", str(env.ar)]) == 0
    assert quarantined(env) == 0


def test_purge_without_root_uses_each_plans_root_and_refuses_a_foreign_root(
    env: Env, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    outcome = cleanup(env.rd, archive=env.ar, stage="full", confirm=True, yes=True)
    other = env.tmp / "other_root"
    other.mkdir()
    monkeypatch.chdir(env.tmp)
    assert (
        main(
            ["cleanup", "purge", "--older-than", "0s", "--rdagent-root", str(other), "--archive", str(env.ar)]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "no cleanup plan in this archive was made for RD-Agent root" in err and err.count("\n") == 1
    assert quarantined(env) == len(outcome.plan.items)
    assert main(["cleanup", "purge", "--older-than", "0s", "--archive", str(env.ar)]) == 0
    assert f"purged {len(outcome.plan.items)} quarantined paths" in capsys.readouterr().out
    assert env.query("SELECT DISTINCT state FROM wb_deletions") == [("purged",)]
    assert not (env.rd / ".workbench_quarantine" / (outcome.plan.plan_id or "")).exists()


def test_purge_with_a_root_leaves_other_roots_plans_alone(env: Env, tmp_path: Path) -> None:
    outcome = cleanup(env.rd, archive=env.ar, stage="full", confirm=True, yes=True)
    second = tmp_path / "second"
    copy_tree_keeping_links(env.rd, second)  # quarantine copied too; its plan rows are env.rd's
    plan_json = env.query("SELECT plan_json FROM wb_cleanup_plans")[0][0]
    con = duckdb.connect(str(env.ar / "catalog.duckdb"))
    plan = json.loads(plan_json)
    plan["plan_id"] = "20000101-000000-abcdef"
    plan["rdagent_root"] = os.path.realpath(second)
    plan["workspace_root"] = os.path.realpath(second / "git_ignore_folder" / "RD-Agent_workspace")
    plan["log_root"] = os.path.realpath(second / "log")
    con.execute(
        "INSERT INTO wb_cleanup_plans (plan_id, plan_hash, stage, created_at, params_json, plan_json, status) "
        "SELECT ?, plan_hash, stage, created_at, params_json, ?, 'planned' FROM wb_cleanup_plans WHERE plan_id = ?",
        [plan["plan_id"], json.dumps(plan), outcome.plan.plan_id],
    )
    con.close()
    result = purge_quarantine(rdagent_root=second, archive=env.ar, older_than="0s")
    assert result.purged == [] and result.other_roots == len(outcome.plan.items) and not result.skipped
    assert "other RD-Agent roots" in result.format()
    assert quarantined(env) == len(outcome.plan.items)


# ----------------------------------------------------------------- 2. --dry-run with --confirm


@pytest.mark.parametrize("extra", [[], ["--yes"], ["--approval", "a-0000000000"]])
def test_dry_run_and_confirm_together_are_refused_before_anything(
    env: Env, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], extra: list[str]
) -> None:
    monkeypatch.setattr(sys.stdin, "isatty", lambda: True)

    def no_prompt(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("must not ask")

    monkeypatch.setattr("typer.confirm", no_prompt)
    code = main(
        ["cleanup", "--rdagent-root", str(env.rd), "--archive", str(env.ar), "--dry-run", "--confirm", *extra]
    )
    captured = capsys.readouterr()
    assert code == 2
    assert "choose exactly one of --dry-run, --confirm" in captured.err and captured.err.count("\n") == 1
    assert captured.out == ""  # no plan printed
    assert env.query("SELECT count(*) FROM wb_cleanup_plans") == [(0,)]
    assert main(["cleanup", "--rdagent-root", str(env.rd), "--archive", str(env.ar)]) == 2
    assert "choose exactly one" in capsys.readouterr().err


# ----------------------------------------------------------------- 3. --min-archiving-level


@pytest.mark.parametrize("level", ["5", "3", "1", "0", "-1"])
def test_min_archiving_level_outside_what_is_safe_is_refused(
    env: Env, capsys: pytest.CaptureFixture[str], level: str
) -> None:
    code = main(
        [
            "cleanup",
            "--rdagent-root",
            str(env.rd),
            "--archive",
            str(env.ar),
            "--dry-run",
            "--min-archiving-level",
            level,
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and f"--min-archiving-level {level}" in err and "use 2" in err and err.count("\n") == 1
    assert env.query("SELECT count(*) FROM wb_cleanup_plans") == [(0,)]
    out = env.tmp / "manifest.json"
    assert (
        main(
            [
                "export-cleanup-manifest",
                "--out",
                str(out),
                "--rdagent-root",
                str(env.rd),
                "--archive",
                str(env.ar),
                "--min-archiving-level",
                level,
            ]
        )
        == 2
    )
    assert not out.exists()
    with pytest.raises(ConfigError, match="use 2"):
        cleanup(env.rd, archive=env.ar, dry_run=True, min_archiving_level=int(level))


# ----------------------------------------------------------------- 4. an approved plan is executed as approved


def test_confirm_with_approval_refuses_planning_options_that_differ(
    env: Env, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    before = files_under(env.workspace_root)
    plan = cleanup(env.rd, archive=env.ar, dry_run=True).plan  # conservative, grace 120 minutes
    approval = approve_plan(plan.plan_id or "", archive=env.ar).approval_id
    base = [
        "cleanup",
        "--rdagent-root",
        str(env.rd),
        "--archive",
        str(env.ar),
        "--confirm",
        "--approval",
        approval,
    ]
    for extra, shown in (
        [["--stage", "full"], "--stage full (approved: --stage conservative)"],
        [["--grace-minutes", "5"], "--grace-minutes 5 (approved: --grace-minutes 120)"],
        [["--hold-days", "1"], "--hold-days 1 (approved: --hold-days 30)"],
        [["--logs", "--keep-days", "0"], "--logs (approved: no --logs)"],
        [["--no-workspaces", "--logs"], "--no-workspaces (approved: --workspaces)"],
    ):
        assert main([*base, *extra]) == 2, extra
        err = capsys.readouterr().err
        assert "exactly as it was approved" in err and shown in err and "Drop the option" in err, err
        assert err.count("\n") == 1
    assert files_under(env.workspace_root) == before
    assert env.query("SELECT used_at IS NULL FROM wb_cleanup_approvals") == [(True,)]
    with pytest.raises(ConfigError, match="exactly as it was approved"):
        cleanup(env.rd, archive=env.ar, confirm=True, approval=approval, stage="full")
    # the approved values themselves may be repeated; the root is the plan's when none is given
    monkeypatch.chdir(env.tmp)
    assert (
        main(
            [
                "cleanup",
                "--archive",
                str(env.ar),
                "--confirm",
                "--approval",
                approval,
                "--stage",
                "conservative",
                "--grace-minutes",
                "120",
            ]
        )
        == 0
    )
    assert quarantined(env) > 0


def test_explicit_default_that_differs_from_the_approved_full_plan_is_refused(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = cleanup(env.rd, archive=env.ar, stage="full", dry_run=True).plan
    approval = approve_plan(plan.plan_id or "", archive=env.ar).approval_id
    code = main(
        [
            "cleanup",
            "--rdagent-root",
            str(env.rd),
            "--archive",
            str(env.ar),
            "--confirm",
            "--approval",
            approval,
            "--stage",
            "conservative",
        ]
    )
    assert code == 2 and "--stage conservative (approved: --stage full)" in capsys.readouterr().err
    assert quarantined(env) == 0
    other = env.tmp / "other_root"
    other.mkdir()
    assert (
        main(
            [
                "cleanup",
                "--rdagent-root",
                str(other),
                "--archive",
                str(env.ar),
                "--confirm",
                "--approval",
                approval,
            ]
        )
        == 2
    )
    assert "drop --rdagent-root" in capsys.readouterr().err


# ----------------------------------------------------------------- 5. plan items vs paths


def test_confirm_and_plans_count_plan_items_and_paths_the_same_way(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(["cleanup", "--rdagent-root", str(env.rd), "--archive", str(env.ar), "--confirm", "--yes"]) == 0
    )
    out = capsys.readouterr().out
    plan_id, items = env.query(
        "SELECT plan_id, json_array_length(json_extract(plan_json, '$.items')) FROM wb_cleanup_plans"
    )[0]
    paths = env.query("SELECT count(*) FROM wb_deletions")[0][0]
    assert paths > items > 0  # conservative: one path per heavy file
    assert (
        f"{items} of {items} plan items moved to quarantine" in out and f"{paths} paths moved in all" in out
    )
    assert main(["cleanup", "plans", "--archive", str(env.ar)]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith(plan_id))
    assert f"{items} plan items" in line and f"{items} moved ({paths} paths" in line
    assert f"{paths} paths still in quarantine" in line
    row = next(p for p in list_plans(archive=env.ar) if p["plan_id"] == plan_id)
    assert (row["items"], row["items_moved"], row["paths_moved"], row["paths_in_quarantine"]) == (
        items,
        items,
        paths,
        paths,
    )
    assert "moved" not in row  # no ambiguous key


# ----------------------------------------------------------------- 6. holds on unknown ids


def test_hold_on_an_id_the_archive_does_not_know_is_refused(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    archive = ["--archive", str(env.ar)]
    experiment = sorted(env.level2().values(), key=lambda e: e["id"])[0]
    for extra in ([], ["--active"]):
        assert main(["hold", "nonexistent-id", "--reason", "typo", *extra, *archive]) == 2
        err = capsys.readouterr().err
        assert (
            "not an experiment, workspace or task-run id known to the archive" in err and err.count("\n") == 1
        )
        assert "workbench status --experiments" in err and "--allow-unknown" in err
    assert main(["hold", experiment["id"][:12], "--reason", "cut short", *archive]) == 2
    assert f"did you mean {experiment['id']}" in capsys.readouterr().err
    assert env.query("SELECT count(*) FROM wb_holds") == [(0,)]
    with pytest.raises(ConfigError, match="known to the archive"):
        hold("nonexistent-id", reason="typo", archive=env.ar)

    for target, what in (
        (experiment["id"], "experiment"),
        (experiment["workspace_id"], "workspace"),
        (experiment["task_run_id"], "task run"),
    ):
        assert main(["hold", target, "--reason", "keep", *archive]) == 0
        assert f"({what})" in capsys.readouterr().out
    assert (
        main(["hold", "not-archived-yet", "--reason", "debugging", "--active", "--allow-unknown", *archive])
        == 0
    )
    captured = capsys.readouterr()
    assert "recorded: active on not-archived-yet" in captured.out and captured.err.startswith("warning:")
    assert main(["holds", *archive]) == 0
    listing = capsys.readouterr().out
    assert "not-archived-yet since" in listing and "(id not in the archive)" in listing
    assert {h.target_id: h.known_as for h in list_holds(env.ar, identify=True)}["not-archived-yet"] is None


def test_release_of_an_id_without_open_hold_says_how_to_list(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    archive = ["--archive", str(env.ar)]
    experiment = sorted(env.level2().values(), key=lambda e: e["id"])[0]
    assert main(["hold", experiment["id"], "--reason", "keep", *archive]) == 0
    assert main(["release", experiment["id"][:10], "--reason", "done", *archive]) == 2
    err = capsys.readouterr().err
    assert "no open hold on" in err and f"did you mean {experiment['id']}" in err and "workbench holds" in err
    assert main(["release", experiment["id"], "--reason", "done", *archive]) == 0
    assert main(["holds", *archive]) == 0
    assert "no open holds" in capsys.readouterr().out


# ----------------------------------------------------------------- 6. --confirm is the confirmation


def test_confirm_without_a_terminal_applies_the_plan_as_a_scheduled_job_would(env: Env) -> None:
    planned = cleanup(env.rd, archive=env.ar, stage="full", dry_run=True).plan
    assert planned.items
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "workbench.cli",
            "cleanup",
            "--rdagent-root",
            str(env.rd),
            "--archive",
            str(env.ar),
            "--stage",
            "full",
            "--confirm",
        ],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "needs a terminal" not in done.stderr and "moved to quarantine" in done.stdout
    status, moved = env.query(
        "SELECT status, (SELECT count(*) FROM wb_deletions d WHERE d.plan_id = p.plan_id) FROM wb_cleanup_plans p "
        "ORDER BY created_at DESC LIMIT 1"
    )[0]
    assert status == "applied" and moved >= len(planned.items)
    for item in planned.items:
        if item.kind == "workspace_full":
            assert not Path(item.path).exists()  # in quarantine, restorable with `cleanup undo`
