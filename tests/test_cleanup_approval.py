"""Review and approval: the widget driven from pytest, approvals bound to the exact plan."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cleanup_helpers import Env

from workbench.cleanup import approve_plan, cleanup
from workbench.cli import main
from workbench.errors import ConfigError, PlanChangedError
from workbench.widgets.cleanup_panel import CleanupPanel, exclusions_frame, items_frame


def test_panel_filters_selects_and_approves_then_confirm_applies_only_that(env: Env) -> None:
    plan = cleanup(env.rd, archive=env.ar, stage="full", dry_run=True, logs=True, keep_days=0).plan
    panel = CleanupPanel(plan, archive=env.ar, rdagent_root=env.rd, now=datetime(2026, 11, 1, tzinfo=UTC))
    assert len(panel.visible_items()) == len(plan.items)
    panel.stage.value = "logs"
    assert panel.visible_items() and all(i.kind == "log_dir" for i in panel.visible_items())
    panel.stage.value = "full"
    run = sorted({i.task_run_id for i in panel.visible_items()})[0]
    panel.task_run.value = run
    shown = panel.visible_items()
    assert shown and all(
        i.kind == "workspace_full" and run in (i.task_run_id, *i.task_run_ids) for i in shown
    )
    assert len(panel.selection.options) == len(shown)
    biggest = max(i.bytes for i in shown)
    panel.min_size_kb.value = biggest / 1024
    assert all(i.bytes >= biggest for i in panel.visible_items())
    panel.min_size_kb.value = 0
    panel.min_age_days.value = 100_000
    assert panel.visible_items() == []
    panel.min_age_days.value = 30
    assert panel.visible_items() == shown  # the sample's files are months old
    panel.approve_button.click()
    assert "select at least one" in panel.status.value and panel.approval is None
    panel.select_all.click()
    assert set(panel.selected_ids) == {i.item_id for i in shown}
    assert "why eligible" in panel.details.value and shown[0].rule[:30] in panel.details.value
    panel.approved_by.value = "reviewer"
    panel.note.value = "first batch"
    panel.approve_button.click()
    approval = panel.approval
    assert approval is not None and approval.approval_id in panel.status.value
    rows = env.query("SELECT plan_id, plan_hash, item_ids, approved_by, note FROM wb_cleanup_approvals")
    assert rows[0][:2] == (plan.plan_id, plan.plan_hash) and rows[0][3:] == ("reviewer", "first batch")
    assert sorted(json.loads(rows[0][2])) == sorted(panel.selected_ids)

    outcome = cleanup(env.rd, archive=env.ar, confirm=True, approval=approval.approval_id)
    moved = {o.path for o in outcome.applied.outcomes if o.status == "moved"}
    assert moved == {i.path for i in shown}
    for item in plan.items:
        assert Path(item.path).exists() == (item.path not in moved)
    assert env.query(
        "SELECT status, approval_id FROM wb_cleanup_plans WHERE plan_id = ?", [plan.plan_id]
    ) == [("applied", approval.approval_id)]
    with pytest.raises(ConfigError, match="already used"):
        cleanup(env.rd, archive=env.ar, confirm=True, approval=approval.approval_id)


def test_frames_explain_items_and_exclusions(env: Env) -> None:
    plan = cleanup(env.rd, archive=env.ar, dry_run=True).plan
    items, excluded = items_frame(plan), exclusions_frame(plan)
    assert items.height == len(plan.items) and items["rule"].str.len_chars().min() > 10
    assert excluded.height == len(plan.exclusions) and set(excluded["reasons"]) >= {"archiving_level"}


def test_changed_plan_is_refused_and_nothing_is_deleted(env: Env) -> None:
    plan = cleanup(env.rd, archive=env.ar, dry_run=True).plan
    approval = approve_plan(plan.plan_id, archive=env.ar, approved_by="ops")
    item = plan.items[0]
    heavy = Path(item.path) / item.files[0].rel_path
    heavy.write_bytes(heavy.read_bytes() + b"grown")
    os.utime(heavy, (1_600_000_000, 1_600_000_000))  # old mtime: the change is in size, not in activity
    with pytest.raises(PlanChangedError, match="changed since approval"):
        cleanup(env.rd, archive=env.ar, confirm=True, approval=approval.approval_id)
    assert env.query("SELECT count(*) FROM wb_deletions") == [(0,)]
    assert all(Path(i.path, f.rel_path).exists() for i in plan.items for f in i.files)
    code = main(
        [
            "cleanup",
            "--rdagent-root",
            str(env.rd),
            "--archive",
            str(env.ar),
            "--confirm",
            "--approval",
            approval.approval_id,
        ]
    )
    assert code == 9


def test_held_after_approval_is_refused(env: Env) -> None:
    from workbench.cleanup import hold

    plan = cleanup(env.rd, archive=env.ar, stage="full", dry_run=True).plan
    approval = approve_plan(plan.plan_id, item_ids=[plan.items[0].item_id], archive=env.ar)
    hold(plan.items[0].experiment_ids[0], reason="someone needs it after all", archive=env.ar)
    with pytest.raises(PlanChangedError, match="no longer eligible"):
        cleanup(env.rd, archive=env.ar, confirm=True, approval=approval.approval_id)
    assert Path(plan.items[0].path).is_dir()


def test_approve_cli_and_unknown_items(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    plan = cleanup(env.rd, archive=env.ar, dry_run=True).plan
    assert main(["cleanup", "approve", plan.plan_id, "--archive", str(env.ar), "--item", "nope"]) == 2
    assert main(["cleanup", "approve", plan.plan_id, "--archive", str(env.ar), "--by", "ops"]) == 0
    text = capsys.readouterr().out
    assert f"{len(plan.items)} plan items" in text and "--approval a-" in text
