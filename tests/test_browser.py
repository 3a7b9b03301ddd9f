"""The notebooks as a quant uses them: JupyterLab in headless Chromium, on an archived sample.

Every notebook is opened and run cell by cell through JupyterLab itself; the tests then read
what the page shows: no error output, widgets drawn as controls, charts drawn, no request leaving
localhost, no error in the browser console. Both panels are driven as a person would, by clicking
and choosing in the page, and what they show afterwards is checked, down to the approval stored in
the catalog and listed by `workbench cleanup plans`.

Without Playwright or a Chromium the module is skipped with a message saying how to get them.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser_lab import HOW_TO_GET_A_BROWSER, JupyterLab, LabPage, find_chromium, jupyter_lab, new_lab_page

playwright_api = pytest.importorskip("playwright.sync_api", reason=HOW_TO_GET_A_BROWSER)
CHROMIUM = find_chromium()
if CHROMIUM is None:
    pytest.skip(f"no Chromium found: {HOW_TO_GET_A_BROWSER}", allow_module_level=True)

# one JupyterLab, archive copy and browser per test process (each xdist worker has its own)
pytestmark = [pytest.mark.browser, pytest.mark.slow]

NOTEBOOK_NAMES = sorted(p.name for p in (Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
STATIC_CHARTS = {"archive_full.ipynb", "archive_incremental.ipynb"}  # SVG kept in the executed copy
INTERACTIVE_CHARTS = {"factor_library.ipynb", "strategy_comparison.ipynb"}
WIDE = 1500  # a laptop screen with JupyterLab's file browser open


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory, cleanup_template: dict[str, Path]) -> Iterator[JupyterLab]:
    from cleanup_helpers import copy_tree_keeping_links

    base = tmp_path_factory.mktemp("browser")
    copy_tree_keeping_links(cleanup_template["rd"], base / "rd")
    shutil.copytree(cleanup_template["ar"], base / "ar")
    with jupyter_lab(base, rdagent_root=base / "rd", archive=base / "ar") as server:
        yield server


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture()
def tab(lab: JupyterLab, browser: Any) -> Iterator[LabPage]:
    page = new_lab_page(browser, lab, width=WIDE)
    yield page
    page.page.context.close()
    lab.shut_down_kernels()  # a kernel left running would keep the archive's catalog open


def archive_path(lab: JupyterLab) -> Path:
    return lab.root.parent / "ar"


def cell_errors(cells: list[dict[str, Any]]) -> list[str]:
    return [
        f"{o['ename']}: {o['evalue']} (in cell starting {c['source'][:60]!r})"
        for c in cells
        for o in c["outputs"]
        if o["output_type"] == "error"
    ]


def widget_outputs(cells: list[dict[str, Any]]) -> int:
    return sum(
        1
        for c in cells
        for o in c["outputs"]
        if "application/vnd.jupyter.widget-view+json" in o.get("data", {})
    )


# --------------------------------------------------------------------------------- every notebook


@pytest.mark.parametrize("name", NOTEBOOK_NAMES)
def test_notebook_runs_clean_in_jupyterlab(tab: LabPage, name: str) -> None:
    tab.open_notebook(name)
    cells = tab.run_all_cells()
    page = tab.page

    assert cell_errors(cells) == []
    assert page.get_by_text("Error displaying widget").count() == 0
    # every widget output is drawn as a live control or chart, not as its text fallback
    n_widgets = widget_outputs(cells)
    assert tab.drawn_widget_outputs() >= n_widgets
    if name in STATIC_CHARTS:
        assert any("image/svg+xml" in o.get("data", {}) for c in cells for o in c["outputs"])
        assert page.locator(".jp-RenderedSVG svg, .jp-RenderedSVG img").count() >= 1
    if name in INTERACTIVE_CHARTS:
        charts = page.locator(".vega-embed svg.marks")
        assert charts.count() >= 1
        box = charts.first.bounding_box()
        assert box and box["width"] > 200 and box["height"] > 100
    # no MathJax anywhere: JupyterLab would typeset the $ of Qlib expressions
    assert page.locator(".jp-OutputArea-output mjx-container, .jp-OutputArea-output .MathJax").count() == 0
    assert tab.outside_requests == []
    assert tab.console_errors == []


# --------------------------------------------------------------------------------- the two panels

LEGEND = """(panel) => {
  const svg = panel.querySelector('.vega-embed svg.marks');
  const legend = svg && svg.querySelector('.role-legend');
  if (!legend) return null;
  const labels = Array.from(legend.querySelectorAll('.role-legend-label text')).map(t => t.textContent);
  const symbols = Array.from(legend.querySelectorAll('.role-legend-symbol path'))
    .map(p => p.getAttribute('stroke') || p.getAttribute('fill'));
  return {
    colours: Object.fromEntries(labels.map((l, i) => [l, symbols[i]])),
    legend: legend.getBoundingClientRect().toJSON(),
    chart: svg.getBoundingClientRect().toJSON(),
  };
}"""


POINT_ON_PATH = """(path) => {
  const p = path.getPointAtLength(path.getTotalLength() / 2);
  const m = path.getScreenCTM();
  return [p.x * m.a + p.y * m.c + m.e, p.x * m.b + p.y * m.d + m.f];
}"""


def legend_of(panel: Any) -> dict[str, Any]:
    shown: dict[str, Any] | None = panel.evaluate(LEGEND)
    assert shown is not None, "the comparison chart has no legend"
    return shown


def selected_options(select: Any) -> list[str]:
    chosen: list[str] = select.evaluate("s => Array.from(s.selectedOptions).map(o => o.textContent.trim())")
    return chosen


def wait_for_legend(tab: LabPage, panel: Any, names: set[str]) -> dict[str, Any]:
    """The panel redraws its chart after a change: wait until the legend lists exactly `names`."""
    tab.page.wait_for_function(
        "([panel, names]) => { const s = panel.querySelector('.vega-embed svg.marks .role-legend');"
        " if (!s) return false; const l = Array.from(s.querySelectorAll('.role-legend-label text'))"
        ".map(t => t.textContent).sort(); return JSON.stringify(l) === JSON.stringify(names); }",
        arg=[panel.element_handle(), sorted(names)],
        timeout=30_000,
    )
    return legend_of(panel)


def test_comparison_panel_as_a_quant_uses_it(tab: LabPage) -> None:
    tab.open_notebook("strategy_comparison.ipynb")
    assert cell_errors(tab.run_all_cells()) == []
    panel = tab.page.locator(".widget-vbox", has_text="Strategy comparison").last
    task_run, strategies = panel.locator("select:not([multiple])"), panel.locator("select[multiple]")
    everything = legend_of(panel)
    names = set(everything["colours"])
    assert len(names) >= 3 and set(selected_options(strategies)) == names
    control_name: str = panel.evaluate(
        "p => Array.from(p.querySelectorAll('table tbody tr')).map(r => [r.cells[0].textContent,"
        " r.cells[1].textContent]).find(r => r[1] === 'control')[0]"
    )
    assert control_name in names

    # the chart fits beside the file browser at 1,500 px: its legend (which line is which) in view
    panel_box, chart_box = panel.bounding_box(), everything["chart"]
    assert panel_box and chart_box["right"] <= panel_box["x"] + panel_box["width"] + 1
    assert everything["legend"]["right"] <= WIDE and everything["legend"]["width"] > 0
    # as wide as the notebook, and it follows when the window narrows
    assert chart_box["width"] > 0.8 * panel_box["width"]
    tab.page.set_viewport_size({"width": WIDE - 400, "height": 1000})
    tab.page.wait_for_function(
        "([p, w]) => p.querySelector('.vega-embed svg.marks').getBoundingClientRect().width < w - 200",
        arg=[panel.element_handle(), chart_box["width"]],
        timeout=15_000,
    )
    narrow, narrow_panel = legend_of(panel), panel.bounding_box()
    assert narrow_panel and narrow["chart"]["right"] <= narrow_panel["x"] + narrow_panel["width"] + 1
    tab.page.set_viewport_size({"width": WIDE, "height": 1000})

    # pick two treatments: the control comes back selected, and every strategy keeps its colour
    treatments = sorted(names - {control_name})[:2]
    strategies.select_option(label=treatments)
    shown = wait_for_legend(tab, panel, {control_name, *treatments})
    tab.page.wait_for_function(
        "([s, n]) => s.selectedOptions.length === n", arg=[strategies.element_handle(), 3], timeout=15_000
    )
    assert set(selected_options(strategies)) == {control_name, *treatments}
    assert shown["colours"] == {n: everything["colours"][n] for n in shown["colours"]}

    # one treatment alone: still the same colours
    shown = wait_for_legend_after(tab, panel, strategies, [treatments[1]], {control_name, treatments[1]})
    assert shown["colours"] == {n: everything["colours"][n] for n in shown["colours"]}

    # tooltips on the curves (date, strategy, value): the handler is installed and each line carries
    # the fields it shows (Vega writes them into the mark's label); pointing at a line to open the
    # tooltip does not surface it in headless Chromium, so the label is what is checked
    line = panel.locator('.vega-embed svg.marks path[aria-roledescription="line mark"]').first
    line.scroll_into_view_if_needed()
    x, y = line.evaluate(POINT_ON_PATH)
    tab.page.mouse.move(x - 20, y - 20)
    tab.page.mouse.move(x, y, steps=5)
    tab.page.locator("#vg-tooltip-element").wait_for(state="attached", timeout=10_000)
    label = line.get_attribute("aria-label") or ""
    assert all(field in label for field in ("datetime:", "strategy:", "cum_excess:", "drawdown:"))

    # another task run (fewer strategies than the selection had): options follow, nothing breaks
    options = task_run.locator("option")
    if options.count() > 1:
        current = task_run.input_value()
        other = next(v for v in options.evaluate_all("os => os.map(o => o.value)") if v != current)
        task_run.select_option(value=other)
        tab.page.wait_for_function(
            "([s, before]) => Array.from(s.options).map(o => o.textContent).join() !== before",
            arg=[strategies.element_handle(), ",".join(sorted(names))],
            timeout=30_000,
        )
        tab.wait_for_widgets()
        assert selected_options(strategies)  # the new task run's strategies, all selected
    assert tab.console_errors == []
    assert tab.outside_requests == []


def wait_for_legend_after(
    tab: LabPage, panel: Any, strategies: Any, choose: list[str], expected: set[str]
) -> dict[str, Any]:
    strategies.select_option(label=choose)
    return wait_for_legend(tab, panel, expected)


def test_cleanup_panel_filter_select_approve(tab: LabPage, lab: JupyterLab) -> None:
    tab.open_notebook("cleanup_review.ipynb")
    assert cell_errors(tab.run_all_cells()) == []
    page = tab.page
    panel = page.locator(".widget-vbox", has_text="approve selected").last
    plan_id = re.search(r"plan (\S+) —", panel.inner_text())
    assert plan_id, panel.inner_text()[:300]

    # labels are whole, not cut off
    for label in ("approved by", "min size (KB)", "min age (days)", "task run"):
        element = panel.locator("label", has_text=label).first
        assert element.evaluate("e => e.scrollWidth <= e.clientWidth"), f"label {label!r} is cut off"

    # the task-run filter offers task runs only (log folders are filed under theirs)
    task_run = panel.locator(".widget-dropdown select").first
    runs = [v for v in task_run.locator("option").all_inner_texts() if v != "(all)"]
    catalog_runs = task_run_ids_in_catalog(archive_path(lab))
    assert runs and set(runs) <= catalog_runs

    # filter by the first task run, select all shown, approve
    items = panel.locator("select[multiple]")
    total = items.locator("option").count()
    task_run.select_option(label=runs[0])
    page.wait_for_function(
        "([s, n]) => s.options.length < n", arg=[items.element_handle(), total], timeout=15_000
    )
    shown = items.locator("option").count()
    assert 0 < shown < total
    panel.get_by_role("button", name="select all shown").click()
    page.wait_for_function(
        "([s, n]) => s.selectedOptions.length === n", arg=[items.element_handle(), shown], timeout=15_000
    )
    # the approve controls stay within reach after "select all" (the details scroll in their own box)
    approve = panel.get_by_role("button", name="approve selected")
    select_box, approve_box = items.bounding_box(), approve.bounding_box()
    assert select_box and approve_box and approve_box["y"] - (select_box["y"] + select_box["height"]) < 200

    panel.locator(".widget-text", has_text="approved by").locator("input").fill("browser test")
    approve.click()
    stored = panel.locator(".widget-html", has_text="stored:")
    stored.wait_for(timeout=30_000)
    approval_id = re.search(r"approval (\S+) stored: (\d+) items", stored.inner_text())
    assert approval_id and int(approval_id.group(2)) == shown

    # stored in the catalog, and `workbench cleanup plans` says the plan is approved
    listing = subprocess.run(
        [sys.executable, "-m", "workbench.cli", "cleanup", "plans", "--archive", str(archive_path(lab))],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert listing.returncode == 0, listing.stderr
    line = next(line for line in listing.stdout.splitlines() if plan_id.group(1) in line)
    assert "approved" in line
    assert tab.console_errors == []
    assert tab.outside_requests == []


def task_run_ids_in_catalog(archive: Path) -> set[str]:
    import duckdb

    with duckdb.connect(str(archive / "catalog.duckdb"), read_only=True) as db:
        return {r[0] for r in db.execute("select distinct task_run_id from aistock_experiments").fetchall()}
