"""The layer rules of pyproject.toml bite: a crossing import, a cycle or an unplaced module fails them.

`scripts/lint.sh` runs `lint-imports` on the real tree; these tests run it on a copy with one
violation each, so a contract that silently stopped checking anything would be noticed.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")

pytestmark = pytest.mark.skipif(not LINT_IMPORTS.exists(), reason="lint-imports is in the dev extra")


def _copy_tree(tmp_path: Path) -> Path:
    tree = tmp_path / "tree"
    shutil.copytree(ROOT / "workbench", tree / "workbench", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(ROOT / "pyproject.toml", tree / "pyproject.toml")
    return tree


def _lint(tree: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=tree,
        env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )


def _append(path: Path, line: str) -> None:
    path.write_text(path.read_text(encoding="utf-8") + f"\n{line}\n", encoding="utf-8")


def test_the_real_tree_keeps_every_contract(tmp_path: Path) -> None:
    done = _lint(_copy_tree(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


@pytest.mark.parametrize(
    ("module", "line", "broken"),
    [
        ("rdagent/paths.py", "import workbench.archive.catalog", "Layers"),  # a reader reaching up
        ("archive/store.py", "import workbench.cleanup.plan", "Layers"),  # the archive using cleanup
        ("library/factors.py", "import workbench.cleanup.plan", "Layers"),  # two services coupled
        ("archive/db.py", "import workbench.archive.journal", "No import cycles"),  # journal → db → journal
        ("rdagent/registry.py", "import duckdb", "The readers only read"),
        ("archive/status.py", "import pandas", "pandas only to read pickles"),
    ],
)
def test_a_violation_breaks_its_contract(tmp_path: Path, module: str, line: str, broken: str) -> None:
    tree = _copy_tree(tmp_path)
    _append(tree / "workbench" / module, line)
    done = _lint(tree)
    assert done.returncode != 0
    assert f"{broken}" in done.stdout.split("Broken contracts")[-1], done.stdout


def test_a_module_outside_every_layer_is_refused(tmp_path: Path) -> None:
    tree = _copy_tree(tmp_path)
    (tree / "workbench" / "helpers.py").write_text('"""Somewhere nobody decided."""\n', encoding="utf-8")
    done = _lint(tree)
    assert done.returncode != 0 and "helpers" in done.stdout, done.stdout


PACKAGES = ("archive", "analysis", "cleanup", "library", "rdagent", "sample", "widgets")


@pytest.mark.parametrize("package", PACKAGES)
def test_each_layer_publishes_an_api_that_resolves_and_matches_its_type_stubs(package: str) -> None:
    import ast
    import importlib

    module = importlib.import_module(f"workbench.{package}")
    assert module.__all__, f"workbench.{package} exports nothing"
    for name in module.__all__:
        value = getattr(module, name)
        where = module._EXPORTS[name]
        assert value is getattr(importlib.import_module(f"workbench.{package}.{where}"), name)
    tree = ast.parse((ROOT / "workbench" / package / "__init__.py").read_text(encoding="utf-8"))
    typed = {
        (node.module, alias.asname or alias.name)
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
        and node.module
        and node.module.startswith(f"workbench.{package}.")
        for alias in node.names
    }
    assert typed == {(f"workbench.{package}.{where}", name) for name, where in module._EXPORTS.items()}


def test_the_command_line_starts_without_the_heavy_libraries() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, workbench.cli; print(sorted(m for m in sys.modules if m in "
            "('duckdb', 'polars', 'pyarrow', 'pandas', 'altair', 'ipywidgets')))",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert (
        done.stdout.strip() == "[]"
    )  # `workbench --help` answers at once; each command imports what it needs
