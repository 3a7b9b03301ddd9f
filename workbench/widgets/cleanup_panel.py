"""Review panel for a stored cleanup plan: filter, see why each item is in or out, approve.

The panel only reads the plan and writes an approval (`workbench.cleanup.approve_plan`); it never
deletes. Deleting is `workbench cleanup --confirm --approval ID`, which re-checks everything.
Every control is a public attribute so tests (and notebooks) can drive the panel directly.
"""

from __future__ import annotations

import html
from datetime import datetime
from pathlib import Path

import ipywidgets as widgets
import polars as pl

from workbench.archive.db import utc_now
from workbench.cleanup.approvals import Approval, approve_plan
from workbench.cleanup.plan import STAGE_OF_KIND, CleanupPlan, Exclusion, PlanItem
from workbench.cleanup.units import format_bytes

ALL = "(all)"
STAGE_CHOICES = (ALL, "conservative", "full", "logs")


def _age_days(stamp: str | None, now: datetime) -> float | None:
    if not stamp:
        return None
    return (now - datetime.fromisoformat(stamp)).total_seconds() / 86400


def items_frame(plan: CleanupPlan, *, now: datetime | None = None) -> pl.DataFrame:
    """The plan's items as a frame (one row per item) for tables and filters."""
    now = now or utc_now()
    rows = [
        {
            "item_id": i.item_id,
            "stage": STAGE_OF_KIND[i.kind],
            "kind": i.kind,
            "task_run_id": i.task_run_id,
            "loop_id": i.loop_id,
            "workspace_id": i.workspace_id,
            "level": i.level,
            "bytes": i.bytes,
            "age_days": _age_days(i.modified_at, now),
            "path": i.path,
            "rule": i.rule,
        }
        for i in plan.items
    ]
    schema = {
        "item_id": pl.String,
        "stage": pl.String,
        "kind": pl.String,
        "task_run_id": pl.String,
        "loop_id": pl.Int64,
        "workspace_id": pl.String,
        "level": pl.Int64,
        "bytes": pl.Int64,
        "age_days": pl.Float64,
        "path": pl.String,
        "rule": pl.String,
    }
    return pl.DataFrame(rows, schema=schema)


def exclusions_frame(plan: CleanupPlan) -> pl.DataFrame:
    """The plan's exclusions as a frame: what was left alone and why."""
    rows = [
        {
            "kind": e.kind,
            "reasons": ",".join(e.reasons),
            "task_run_id": e.task_run_id,
            "loop_id": e.loop_id,
            "workspace_id": e.workspace_id,
            "level": e.level,
            "target": e.target,
            "why": e.detail,
        }
        for e in plan.exclusions
    ]
    schema = {
        "kind": pl.String,
        "reasons": pl.String,
        "task_run_id": pl.String,
        "loop_id": pl.Int64,
        "workspace_id": pl.String,
        "level": pl.Int64,
        "target": pl.String,
        "why": pl.String,
    }
    return pl.DataFrame(rows, schema=schema)


class CleanupPanel:
    """Filter a plan (task run, age, size, stage), inspect reasons, select items and approve them."""

    def __init__(
        self,
        plan: CleanupPlan,
        *,
        archive: Path | str | None = None,
        now: datetime | None = None,
        rdagent_root: Path | str | None = None,
    ) -> None:
        if not plan.plan_id:
            raise ValueError("the panel reviews a stored plan: make it with cleanup(..., dry_run=True)")
        self.plan = plan
        self.archive = archive
        self.rdagent_root = rdagent_root or plan.rdagent_root
        self.now = now or utc_now()
        self.approval: Approval | None = None
        runs = sorted(
            {i.task_run_id for i in plan.items if i.task_run_id}
            | {e.task_run_id for e in plan.exclusions if e.task_run_id}
        )
        label = {"description_width": "initial"}  # labels are never cut off
        self.task_run = widgets.Dropdown(options=[ALL, *runs], value=ALL, description="task run", style=label)
        self.stage = widgets.Dropdown(
            options=list(STAGE_CHOICES), value=ALL, description="stage", style=label
        )
        self.min_age_days = widgets.BoundedFloatText(
            value=0, min=0, max=100_000, description="min age (days)", style=label
        )
        self.min_size_kb = widgets.BoundedFloatText(
            value=0, min=0, max=1e12, description="min size (KB)", style=label
        )
        self.show_excluded = widgets.Checkbox(value=True, description="show excluded", style=label)
        self.selection = widgets.SelectMultiple(
            options=[], rows=12, description="items", layout=widgets.Layout(width="100%")
        )
        self.select_all = widgets.Button(description="select all shown")
        self.clear = widgets.Button(description="clear selection")
        self.approved_by = widgets.Text(
            value="", placeholder="your name", description="approved by", style=label
        )
        self.note = widgets.Text(value="", placeholder="why", description="note", style=label)
        self.approve_button = widgets.Button(description="approve selected", button_style="warning")
        self.summary = widgets.HTML()
        # a long selection scrolls inside its own box: the approve controls stay in view
        self.details = widgets.HTML(layout=widgets.Layout(max_height="320px", overflow="auto"))
        self.excluded = widgets.HTML()
        self.status = widgets.HTML()
        for control in (self.task_run, self.stage, self.min_age_days, self.min_size_kb, self.show_excluded):
            control.observe(self._on_filter, names="value")
        self.selection.observe(self._on_select, names="value")
        self.select_all.on_click(self._on_select_all)
        self.clear.on_click(self._on_clear)
        self.approve_button.on_click(self._on_approve)
        self.widget = widgets.VBox(
            [
                widgets.HTML(
                    f"<b>plan {html.escape(plan.plan_id)}</b> — stage {plan.stage}, "
                    f"{len(plan.items)} items, {format_bytes(plan.total_bytes)}, hash {plan.plan_hash[:16]}"
                ),
                widgets.HBox([self.task_run, self.stage]),
                widgets.HBox([self.min_age_days, self.min_size_kb, self.show_excluded]),
                self.summary,
                self.selection,
                widgets.HBox([self.select_all, self.clear]),
                widgets.HBox([self.approved_by, self.note, self.approve_button]),
                self.status,
                self.details,
                self.excluded,
            ]
        )
        self.refresh()

    # -- filtering -------------------------------------------------------------------
    def _matches_run(self, task_run_id: str | None, task_run_ids: tuple[str, ...] = ()) -> bool:
        return (
            self.task_run.value == ALL
            or self.task_run.value == task_run_id
            or self.task_run.value in task_run_ids
        )

    def visible_items(self) -> list[PlanItem]:
        """Items that pass every filter."""
        out = []
        for item in self.plan.items:
            age = _age_days(item.modified_at, self.now)
            if not self._matches_run(item.task_run_id, item.task_run_ids):
                continue
            if self.stage.value != ALL and STAGE_OF_KIND[item.kind] != self.stage.value:
                continue
            if self.min_age_days.value and (age is None or age < self.min_age_days.value):
                continue
            if item.bytes < self.min_size_kb.value * 1024:
                continue
            out.append(item)
        return out

    def visible_exclusions(self) -> list[Exclusion]:
        if not self.show_excluded.value:
            return []
        stage = self.stage.value
        return [
            e
            for e in self.plan.exclusions
            if self._matches_run(e.task_run_id) and (stage == ALL or STAGE_OF_KIND.get(e.kind) == stage)
        ]

    @property
    def selected_ids(self) -> tuple[str, ...]:
        return tuple(self.selection.value)

    # -- rendering -------------------------------------------------------------------
    def refresh(self) -> None:
        items = self.visible_items()
        keep = [i for i in self.selection.value if i in {x.item_id for x in items}]
        self.selection.options = [
            (f"{i.kind:<15} {format_bytes(i.bytes):>9}  {i.path}", i.item_id) for i in items
        ]
        self.selection.value = tuple(keep)
        self.summary.value = (
            f"{len(items)} of {len(self.plan.items)} items shown "
            f"({format_bytes(sum(i.bytes for i in items))}); {len(keep)} selected"
        )
        self._render_details()
        rows = "".join(
            f"<tr><td>{html.escape(','.join(e.reasons))}</td><td>{html.escape(e.target)}</td>"
            f"<td>{html.escape(e.detail)}</td></tr>"
            for e in self.visible_exclusions()
        )
        self.excluded.value = (
            (
                f"<b>excluded ({len(self.visible_exclusions())})</b><table><tr><th>reasons</th>"
                f"<th>path</th><th>why</th></tr>{rows}</table>"
            )
            if rows
            else ""
        )

    def _render_details(self) -> None:
        chosen = [self.plan.item(i) for i in self.selected_ids]
        rows = "".join(
            f"<tr><td>{html.escape(i.item_id)}</td><td>{html.escape(i.path)}</td><td>{i.level}</td>"
            f"<td>{format_bytes(i.bytes)}</td><td>{html.escape(i.rule)}</td></tr>"
            for i in chosen
            if i is not None
        )
        self.details.value = (
            (
                f"<b>selected ({len(chosen)}, {format_bytes(sum(i.bytes for i in chosen if i))})</b>"
                f"<table><tr><th>item</th><th>path</th><th>level</th><th>frees</th><th>why eligible"
                f"</th></tr>{rows}</table>"
            )
            if rows
            else "<i>nothing selected</i>"
        )

    # -- events ----------------------------------------------------------------------
    def _on_filter(self, _change: object) -> None:
        self.refresh()

    def _on_select(self, _change: object) -> None:
        self.summary.value = self.summary.value.rsplit(";", 1)[0] + f"; {len(self.selected_ids)} selected"
        self._render_details()

    def _on_select_all(self, _button: object) -> None:
        self.selection.value = tuple(i.item_id for i in self.visible_items())

    def _on_clear(self, _button: object) -> None:
        self.selection.value = ()

    def _on_approve(self, _button: object) -> None:
        if not self.selected_ids:
            self.status.value = "<span style='color:#b00'>select at least one item first</span>"
            return
        try:
            self.approval = approve_plan(
                self.plan.plan_id or "",
                item_ids=self.selected_ids,
                approved_by=self.approved_by.value or None,
                note=self.note.value or None,
                archive=self.archive,
            )
        except Exception as exc:  # shown to the reviewer, never swallowed silently
            self.status.value = f"<span style='color:#b00'>not approved: {html.escape(str(exc))}</span>"
            return
        command = (
            f"workbench cleanup --rdagent-root {self.rdagent_root} --archive {self.archive} --confirm "
            f"--approval {self.approval.approval_id}"
        )
        self.status.value = (
            f"approval <b>{self.approval.approval_id}</b> stored: {len(self.approval.item_ids)} items. "
            f"Apply with <code>{html.escape(command)}</code>"
        )

    def _ipython_display_(self) -> None:  # pragma: no cover - notebook display
        from IPython.display import display

        display(self.widget)  # type: ignore[no-untyped-call]  # IPython's display() is unannotated
