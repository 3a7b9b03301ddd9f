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


def test_an_approval_made_in_the_panel_shows_in_cleanup_plans_before_it_is_applied(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    from workbench.cleanup import list_plans
    from workbench.cli import main

    plan = cleanup(env.rd, archive=env.ar, dry_run=True).plan
    panel = CleanupPanel(plan, archive=env.ar)
    panel._on_select_all(None)
    panel.approved_by.value = "reviewer"
    panel._on_approve(None)
    assert panel.approval is not None
    row = next(p for p in list_plans(archive=env.ar) if p["plan_id"] == plan.plan_id)
    assert row["approval_id"] == panel.approval.approval_id and row["approvals"] == 1
    assert row["status"] == "planned"  # stored status: nothing has been applied
    capsys.readouterr()
    assert main(["cleanup", "plans", "--archive", str(env.ar)]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith(plan.plan_id or "-"))
    assert " approved " in line and panel.approval.approval_id in line


def test_the_panel_keeps_labels_whole_and_the_approve_button_above_a_long_selection(env: Env) -> None:
    plan = cleanup(env.rd, archive=env.ar, dry_run=True, logs=True, keep_days=0).plan
    panel = CleanupPanel(plan, archive=env.ar)
    for control in (panel.approved_by, panel.min_size_kb, panel.min_age_days, panel.task_run):
        assert control.style.description_width == "initial", control.description
    children = list(panel.widget.children)
    approve_row = next(
        i for i, c in enumerate(children) if panel.approve_button in getattr(c, "children", ())
    )
    assert approve_row < children.index(panel.details)  # "select all" never pushes the button out of view
    assert panel.details.layout.max_height and panel.details.layout.overflow == "auto"


def test_a_log_folder_is_filed_under_the_task_run_that_owns_its_experiments(env: Env) -> None:
    plan = cleanup(env.rd, archive=env.ar, dry_run=True, logs=True, keep_days=0).plan
    owners = {r[0] for r in env.query("SELECT DISTINCT task_run_id FROM aistock_experiments")}
    logs = [i for i in plan.items if i.kind == "log_dir"] + [
        e for e in plan.exclusions if e.kind == "log_dir"
    ]
    assert logs
    for entry in logs:
        linked = set(getattr(entry, "task_run_ids", ()) or ())
        if entry.task_run_id is not None and (linked & owners or entry.task_run_id in owners):
            assert entry.task_run_id in owners, entry  # never a bootstrap duplicate named after the folder
    panel = CleanupPanel(plan, archive=env.ar)
    assert set(panel.task_run.options) - {"(all)"} <= owners | {e.task_run_id for e in plan.exclusions}
