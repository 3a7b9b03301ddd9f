"""Shared fixtures: real sample installations made by the project's own generator."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from workbench.sample.generate import generate_sample


@pytest.fixture(scope="session")
def sample_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One small sample installation per test session (copy it before changing it)."""
    root = tmp_path_factory.mktemp("sample") / "rd"
    generate_sample(root, seed=0)
    return root


@pytest.fixture()
def rd_root(sample_template: Path, tmp_path: Path) -> Path:
    """A private copy of the sample installation for one test."""
    target = tmp_path / "rd"
    shutil.copytree(sample_template, target, symlinks=True)
    return target


@pytest.fixture()
def archive_dir(tmp_path: Path) -> Path:
    return tmp_path / "archive"
