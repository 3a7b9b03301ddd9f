"""An ipywidgets panel over :func:`workbench.analysis.compare.compare_task_run`.

Pick a task run and some of its strategies; the table and the charts follow. The panel holds no
logic of its own: every change calls the library and shows its result. Table and chart are
plain HTML/SVG (rendered locally by vl-convert), so the panel works without network access
and can be driven from tests by setting the widgets' values.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import ipywidgets as widgets
import polars as pl

from workbench.analysis import charts
from workbench.analysis.compare import Comparison, comparable_task_runs, compare_task_run
from workbench.errors import ConfigError, WorkbenchError
from workbench.widgets.display import interactive_chart

__all__ = ["ComparisonPanel", "comparison_table_html"]

_SHOWN = {
    "strategy": ("strategy", None),
    "role": ("role", None),
    "annualized_excess_return": ("ann. excess", "{:.2%}"),
    "annualized_excess_return_diff": ("Δ vs control", "{:+.2%}"),
    "information_ratio": ("IR", "{:.2f}"),
    "information_ratio_diff": ("Δ IR", "{:+.2f}"),
    "information_ratio_own": ("IR own series", "{:.2f}"),
    "max_drawdown": ("max DD", "{:.2%}"),
    "ic": ("IC", "{:.4f}"),
    "turnover": ("turnover", "{:.3f}"),
    "psr": ("PSR", "{:.2f}"),
    "dsr": ("DSR", "{:.2f}"),
    "dsr_effective": ("DSR eff. N", "{:.2f}"),
    "sharpe_diff": ("Sharpe Δ", "{:+.2f}"),
    "sharpe_diff_low": ("CI low", "{:+.2f}"),
    "sharpe_diff_high": ("CI high", "{:+.2f}"),
    "sharpe_diff_studentized_low": ("stud. low", "{:+.2f}"),
    "sharpe_diff_studentized_high": ("stud. high", "{:+.2f}"),
    "sharpe_diff_p_holm": ("p (Holm)", "{:.3f}"),
}


def comparison_table_html(comparison: Comparison) -> str:
    """The comparison table as a small HTML table (control first), with the honesty notes under it."""
    head = "".join(f"<th>{html.escape(label)}</th>" for label, _ in _SHOWN.values())
    body = []
    for row in comparison.table.iter_rows(named=True):
        cells = []
        for column, (_, spec) in _SHOWN.items():
            value = row.get(column)
            text = "" if value is None else (spec.format(value) if spec else str(value))
            cells.append(f"<td>{html.escape(text)}</td>")
        style = ' style="font-weight:bold"' if row["role"] == "control" else ""
        body.append(f"<tr{style}>{''.join(cells)}</tr>")
    effective = f" (effective {comparison.trials.n_effective:.3g})" if comparison.trials else ""
    caption = (
        f"{comparison.n_days} common days {comparison.start} .. {comparison.end}; "
        f"control {comparison.control} ({comparison.control_basis}); DSR over {comparison.n_trials} trials"
        f"{effective}; bootstrap {comparison.bootstrap['method']}, {1 - comparison.bootstrap['alpha']:.0%} intervals"
    )
    alignment = (
        f"{a.strategy}: {a.own_days} own days {a.own_start} .. {a.own_end}, {a.aligned_days} kept "
        f"(late start {a.late_start}, early end {a.early_end}, missing {a.missing_days}, non-finite {a.non_finite})"
        for a in comparison.alignment
        if a.dropped or a.non_finite
    )
    notes = "".join(
        f"<li>{html.escape(n)}</li>"
        for n in (
            *(f"warning: {w}" for w in comparison.warnings),
            f"trials: {comparison.trials_basis}",
            *alignment,
            *comparison.notes,
            *(f"skipped {s['strategy']}: {s['reason']}" for s in comparison.skipped),
        )
    )
    return (
        f"<table><caption>{html.escape(caption)}</caption><thead><tr>{head}</tr></thead>"
        f"<tbody>{''.join(body)}</tbody></table>" + (f"<ul>{notes}</ul>" if notes else "")
    )


class ComparisonPanel:
    """Task run and strategy pickers, a cost switch, the comparison table and its charts.

    ``panel.widget`` is the VBox to display (a notebook cell ending in ``panel`` shows it).
    After every change ``panel.comparison`` holds the latest :class:`Comparison` (or None and
    ``panel.message`` says why).
    """

    def __init__(
        self,
        archive: Path | str | None,
        *,
        task_run_id: str | None = None,
        n_boot: int = 2000,
        seed: int = 0,
    ) -> None:
        self.archive = archive
        self.n_boot = n_boot
        self.seed = seed
        self.comparison: Comparison | None = None
        self.chart: Any = None  # the Altair chart shown (also for saving it)
        self.runs = comparable_task_runs(archive)
        self.task_run = widgets.Dropdown(
            options=self._run_options(), description="task run", layout=widgets.Layout(width="640px")
        )
        self.strategies = widgets.SelectMultiple(
            options=[], description="strategies", rows=8, layout=widgets.Layout(width="640px")
        )
        self.with_cost = widgets.Checkbox(value=True, description="excess return with cost")
        self.status = widgets.HTML()
        self.table_view = widgets.HTML()
        # the chart widget (tooltips, zoom along time) is swapped in on every change
        self.chart_view = widgets.VBox(layout=widgets.Layout(width="100%", overflow="auto"))
        self.widget = widgets.VBox(
            [
                widgets.HTML(
                    "<b>Strategy comparison</b> — control versus treatments, honest ranking (PSR, DSR, "
                    "bootstrap CI of the Sharpe difference)"
                ),
                self.task_run,
                self.strategies,
                self.with_cost,
                self.status,
                self.table_view,
                self.chart_view,
            ]
        )
        self._quiet = False
        self._domain: list[str] = []
        self.task_run.observe(self._on_task_run, names="value")
        self.strategies.observe(self._on_change, names="value")
        self.with_cost.observe(self._on_change, names="value")
        if task_run_id is not None:
            self.select_task_run(task_run_id)
        elif self.runs.height:
            self._on_task_run({"new": self.task_run.value})
        else:
            self.status.value = "no task run with an archived return series yet"

    # ------------------------------------------------------------------ public

    @property
    def message(self) -> str:
        text: str = self.status.value  # ipywidgets is untyped; an HTML widget's value is a str
        return text

    def select_task_run(self, task_run_id: str) -> None:
        """Show a task run (by id or unique prefix); all its strategies are selected."""
        matches = [v for _, v in self.task_run.options if v == task_run_id or v.startswith(task_run_id)]
        if len(matches) != 1:
            raise ConfigError(f"task run {task_run_id!r} is not one of the comparable task runs")
        if self.task_run.value == matches[0]:
            self._on_task_run({"new": matches[0]})
        else:
            self.task_run.value = matches[0]

    def select_strategies(self, names: list[str]) -> None:
        """Compare only these strategies (the control is always added back)."""
        self.strategies.value = tuple(names)

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)  # type: ignore[no-untyped-call]  # IPython's display() is unannotated

    # ------------------------------------------------------------------ internals

    def _run_options(self) -> list[tuple[str, str]]:
        options = []
        for row in self.runs.iter_rows(named=True):
            label = (
                f"{row['task_run_id'][:12]}  {row['request_name'] or '(no request)'}  "
                f"{row['n_with_series']}/{row['n_loops']} loops with series"
            )
            options.append((label, row["task_run_id"]))
        return options

    def _on_task_run(self, change: dict[str, Any]) -> None:
        """New task run: compare everything once, then offer its strategies (all selected)."""
        task_run = change["new"]
        if task_run is None:
            return
        self.comparison = None
        self._refresh(task_run, strategies=None)
        names: list[str] = self.comparison.table["strategy"].to_list() if self.comparison else []
        self._domain = names
        self._quiet = True
        try:
            # clear the selection before the options shrink: a selection pointing past the new options
            # makes the browser side fail ("Cannot set properties of undefined (setting 'selected')")
            self.strategies.value = ()
            self.strategies.options = names
            self.strategies.value = tuple(names)
        finally:
            self._quiet = False

    def _on_change(self, change: dict[str, Any]) -> None:
        if self._quiet or self.task_run.value is None:
            return
        chosen = list(self.strategies.value)
        self._refresh(self.task_run.value, strategies=chosen or None)
        shown = tuple(self.comparison.table["strategy"].to_list()) if self.comparison else ()
        if shown and set(shown) != set(self.strategies.value):  # the control is always compared: show it
            self._quiet = True
            try:
                self.strategies.value = tuple(name for name in self.strategies.options if name in shown)
            finally:
                self._quiet = False

    def _refresh(self, task_run: str, *, strategies: list[str] | None) -> None:
        try:
            comparison = compare_task_run(
                self.archive,
                task_run,
                strategies=strategies,
                with_cost=self.with_cost.value,
                n_boot=self.n_boot,
                seed=self.seed,
            )
        except WorkbenchError as exc:
            self.comparison = None
            self.status.value = f"<span style='color:#b00'>{html.escape(str(exc))}</span>"
            self.table_view.value = ""
            self.chart_view.children = ()
            return
        self.comparison = comparison
        self.status.value = html.escape(
            f"task run {comparison.task_run_id}"
            + (f" — request {comparison.request_name}" if comparison.request_name else "")
        )
        self.table_view.value = comparison_table_html(comparison)
        chart = charts.comparison_chart(
            comparison.curves,
            comparison.table,
            control=comparison.control,
            # every strategy of the task run, in one order: a strategy keeps its colour across selections
            domain=comparison.table["strategy"].to_list() if strategies is None else self._domain,
            stacked=True,  # fits beside JupyterLab's file browser; the legend sits on top
            width=520,
            window=(comparison.start, comparison.end),
            level=1 - float(comparison.bootstrap["alpha"]),
        )
        self.chart = chart
        self.chart_view.children = (interactive_chart(chart),)

    def table(self) -> pl.DataFrame:
        """The current comparison table (empty when nothing could be compared)."""
        return self.comparison.table if self.comparison else pl.DataFrame()
