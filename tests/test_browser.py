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

# one JupyterLab and one browser for the module, on one xdist worker (the tests share the archive)
pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.xdist_group("browser")]

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
