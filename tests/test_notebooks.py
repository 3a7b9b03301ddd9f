"""Every notebook runs through papermill on a sample installation, parameters injected."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import papermill as pm
import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def all_notebooks() -> list[Path]:
    return sorted(NOTEBOOKS.glob("*.ipynb"))


def test_notebooks_are_committed_without_outputs() -> None:
    assert all_notebooks()
    for path in all_notebooks():
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert not cell.outputs and cell.execution_count is None, f"{path.name} has outputs"
        tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1, f"{path.name} needs exactly one cell tagged 'parameters'"


@pytest.mark.slow
@pytest.mark.parametrize("name", [p.name for p in all_notebooks()])
def test_notebook_runs_under_papermill(name: str, rd_root: Path, archive_dir: Path, tmp_path: Path) -> None:
    output = tmp_path / f"out_{name}"
    pm.execute_notebook(
        str(NOTEBOOKS / name),
        str(output),
        parameters={"rdagent_root": str(rd_root), "archive_dir": str(archive_dir)},
        cwd=str(NOTEBOOKS),
        kernel_name="python3",
        progress_bar=False,
    )
    executed = nbformat.read(output, as_version=4)
    errors = [
        o for c in executed.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"
    ]
    assert not errors
    assert (archive_dir / "catalog.duckdb").exists()
    assert any(c.outputs for c in executed.cells if c.cell_type == "code")
    assert json.dumps(executed.metadata.get("papermill", {})).count("parameters") >= 1


def test_archive_notebook_summary_reports_levels(rd_root: Path, archive_dir: Path, tmp_path: Path) -> None:
    output = tmp_path / "out.ipynb"
    pm.execute_notebook(
        str(NOTEBOOKS / "archive_full.ipynb"),
        str(output),
        parameters={"rdagent_root": str(rd_root), "archive_dir": str(archive_dir)},
        cwd=str(NOTEBOOKS),
        kernel_name="python3",
        progress_bar=False,
    )
    text = json.dumps(nbformat.read(output, as_version=4).cells)
    assert "level 2:" in text and "<svg" in text


def test_a_scheduled_runs_html_report_opens_offline_with_its_charts(
    rd_root: Path, archive_dir: Path, tmp_path: Path
) -> None:
    import re

    from workbench.cli import main

    executed = tmp_path / "archive_incremental_run.ipynb"
    pm.execute_notebook(
        str(NOTEBOOKS / "archive_incremental.ipynb"),
        str(executed),
        parameters={"rdagent_root": str(rd_root), "archive_dir": str(archive_dir)},
        cwd=str(NOTEBOOKS),
        kernel_name="python3",
        progress_bar=False,
    )
    assert main(["report", str(executed)]) == 0
    html = executed.with_suffix(".html").read_text(encoding="utf-8")
    assert (
        "<svg" in html or "data:image/svg+xml" in html
    ) and "level 2" in html  # charts and summary, as printed
    loaded = re.findall(r'(?:src|href)\s*=\s*["\']([^"\']*)', html)
    assert not [url for url in loaded if url.startswith(("http:", "https:", "//"))], loaded
    assert "cdnjs.cloudflare.com/ajax/libs/mathjax" not in html and "unpkg.com" not in html
