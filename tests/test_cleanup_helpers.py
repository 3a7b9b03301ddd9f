"""The cleanup tests' tree copy keeps links as links."""

from __future__ import annotations

import os
from pathlib import Path

from cleanup_helpers import copy_tree_keeping_links


def test_copy_keeps_hard_links_and_symlinks(tmp_path: Path) -> None:
    source = tmp_path / "src"
    (source / "a").mkdir(parents=True)
    (source / "data.h5").write_bytes(b"shared")
    os.link(source / "data.h5", source / "a" / "data.h5")
    os.symlink("../data.h5", source / "a" / "link.h5")
    copy_tree_keeping_links(source, tmp_path / "dst")
    copied = tmp_path / "dst"
    assert os.stat(copied / "data.h5").st_ino == os.stat(copied / "a" / "data.h5").st_ino
    assert os.readlink(copied / "a" / "link.h5") == "../data.h5"
