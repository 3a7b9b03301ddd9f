"""Shared fixtures: real sample installations made by the project's own generator, and archived copies."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from cleanup_helpers import Env, copy_tree_keeping_links
from seaweedfs import HOW_TO_GET_SEAWEEDFS, SeaweedFS, find_weed, start_seaweedfs

from workbench.archive.pipeline import archive
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


@pytest.fixture(scope="session")
def cleanup_template(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A sample installation archived in full, made once per session (copy it before changing it)."""
    base = tmp_path_factory.mktemp("cleanup_template")
    generate_sample(base / "rd", seed=0)
    archive(base / "rd", archive=base / "ar", mode="full", progress=False)
    return {"rd": base / "rd", "ar": base / "ar"}


@pytest.fixture()
def env(cleanup_template: dict[str, Path], tmp_path: Path) -> Env:
    """A private copy of the archived sample (installation and archive) for one test."""
    copy_tree_keeping_links(cleanup_template["rd"], tmp_path / "rd")
    shutil.copytree(cleanup_template["ar"], tmp_path / "ar")
    return Env(tmp_path / "rd", tmp_path / "ar", tmp_path)


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedFS]:
    """A real S3 server (SeaweedFS) on free loopback ports, one per test process, stopped at the end."""
    if find_weed() is None:
        pytest.skip(HOW_TO_GET_SEAWEEDFS)
    server = start_seaweedfs(tmp_path_factory.mktemp("seaweedfs"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture()
def s3_env(seaweedfs: SeaweedFS, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The server's AWS_* variables set for this test (boto3, deltalake, Polars, daft read them)."""
    variables = seaweedfs.env()
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    return variables


@pytest.fixture()
def bucket(seaweedfs: SeaweedFS, s3_env: dict[str, str]) -> str:
    """A new, empty bucket on the test server, with the AWS_* variables set."""
    return seaweedfs.create_bucket()
