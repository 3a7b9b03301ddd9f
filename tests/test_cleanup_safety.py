"""Containment checks and link-safe removal, on small real trees."""

from __future__ import annotations

import os
import shutil
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest

from workbench.cleanup.safety import (
    Roots,
    checked_child,
    checked_entry,
    has_dotdot,
    is_workspace_name,
    move_entry,
    remove_tree_no_follow,
)
from workbench.cleanup.units import format_bytes, parse_age, parse_size
from workbench.errors import ConfigError, UnsafePathError

HEX = "0123456789abcdef0123456789abcdef"


@pytest.fixture()
def root(tmp_path: Path) -> Path:
    workspaces = tmp_path / "ws"
    (workspaces / HEX / "sub").mkdir(parents=True)
    (workspaces / HEX / "sub" / "f.txt").write_text("x", encoding="utf-8")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.txt").write_text("secret", encoding="utf-8")
    return Path(os.path.realpath(workspaces))


def test_checked_child_accepts_only_real_direct_children(root: Path, tmp_path: Path) -> None:
    name_ok = lambda n: is_workspace_name(n)  # noqa: E731
    assert checked_child(root, root / HEX, what="workspace", name_ok=name_ok) == root / HEX
    with pytest.raises(UnsafePathError, match=r"'\.\.'"):
        checked_child(root, f"{root}/{HEX}/../{HEX}", what="workspace")
    with pytest.raises(UnsafePathError, match="not directly inside"):
        checked_child(root, tmp_path / "outside", what="workspace")
    with pytest.raises(UnsafePathError, match="not directly inside"):
        checked_child(root, root / HEX / "sub", what="workspace")
    os.symlink(tmp_path / "outside", root / ("f" * 32))
    with pytest.raises(UnsafePathError, match="symbolic link"):
        checked_child(root, root / ("f" * 32), what="workspace", name_ok=name_ok)
    (root / "notes").mkdir()
    with pytest.raises(UnsafePathError, match="32 hex"):
        checked_child(root, root / "notes", what="workspace", name_ok=name_ok)
    with pytest.raises(FileNotFoundError):
        checked_child(root, root / ("a" * 32), what="workspace")
    assert has_dotdot(r"F:\Dev\x\..\y") and not has_dotdot("/a/..b/c")


def test_checked_entry_never_goes_through_a_link(root: Path, tmp_path: Path) -> None:
    base = root / HEX
    path, st = checked_entry(base, "sub/f.txt")
    assert path == base / "sub" / "f.txt" and st.st_size == 1
    os.symlink(tmp_path / "outside", base / "linkdir")
    with pytest.raises(UnsafePathError, match="link"):
        checked_entry(base, "linkdir/secret.txt")
    with pytest.raises(UnsafePathError):
        checked_entry(base, "../x")


def test_move_refuses_overwrite_and_removal_never_follows_links(root: Path, tmp_path: Path) -> None:
    folder = root / HEX
    os.symlink(tmp_path / "outside" / "secret.txt", folder / "to_file.h5")
    os.symlink(tmp_path / "outside", folder / "to_dir")
    shared = tmp_path / "shared.h5"
    shared.write_bytes(b"shared data")
    os.link(shared, folder / "hard.h5")
    roots = Roots(Path(os.path.realpath(tmp_path)), root, Path(os.path.realpath(tmp_path)) / "log")
    quarantine = roots.quarantine / "plan" / "item" / HEX
    quarantine.mkdir(parents=True)
    with pytest.raises(UnsafePathError, match="already exists"):
        move_entry(folder, quarantine, roots=roots)
    quarantine.rmdir()
    move_entry(folder, quarantine, roots=roots)
    assert not folder.exists() and (quarantine / "to_dir").is_symlink()
    removed = remove_tree_no_follow(quarantine)
    assert removed >= 5 and not quarantine.exists()
    assert (tmp_path / "outside" / "secret.txt").read_text(encoding="utf-8") == "secret"
    assert shared.read_bytes() == b"shared data" and shared.stat().st_nlink == 1


def test_move_across_file_systems_is_refused(tmp_path: Path) -> None:
    other = Path("/dev/shm")
    if not other.is_dir() or os.stat(other).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("no second file system to move across")
    source = tmp_path / "data"
    source.write_text("x", encoding="utf-8")
    other_root = Path(os.path.realpath(other)) / f"wb-test-{os.getpid()}"
    roots = Roots(other_root, other_root / "ws", other_root / "log")
    target = roots.quarantine / "plan" / "item" / "data"
    target.parent.mkdir(parents=True)
    try:
        with pytest.raises(UnsafePathError, match="another file system"):
            move_entry(source, target, roots=roots)
        assert source.exists() and not target.exists()
    finally:
        shutil.rmtree(other_root, ignore_errors=True)


@pytest.mark.parametrize("linked", ["quarantine", "plan", "item", "sub"])
def test_move_never_follows_a_link_in_the_quarantine(root: Path, tmp_path: Path, linked: str) -> None:
    """A pre-created link for the quarantine, plan, item or a sub-folder must not carry a move outside."""
    rd = Path(os.path.realpath(tmp_path))
    roots = Roots(rd, root, rd / "log")
    outside = rd / "outside"
    source = root / HEX / "sub"
    chain = [
        roots.quarantine,
        roots.quarantine / "plan",
        roots.quarantine / "plan" / "item",
        roots.quarantine / "plan" / "item" / "sub",
    ]
    at = ["quarantine", "plan", "item", "sub"].index(linked)
    for folder in chain[:at]:
        folder.mkdir()
    os.symlink(outside, chain[at])
    target = chain[-1] / "moved"
    with pytest.raises(UnsafePathError, match="link"):
        move_entry(source, target, roots=roots)
    assert (source / "f.txt").read_text(encoding="utf-8") == "x"
    assert sorted(os.listdir(outside)) == ["secret.txt"]


def _mount(args: list[str]) -> None:
    done = subprocess.run(["mount", *args], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount here (needs root and mount permission): {done.stderr.strip()}")


@pytest.mark.parametrize("how", ["device", "bind_mount"])
def test_purge_removal_never_enters_another_file_system(root: Path, tmp_path: Path, how: str) -> None:
    top = root / HEX
    mounted = top / "sub" / "mnt"
    mounted.mkdir()
    (mounted / "data.bin").write_bytes(b"under the mount")  # hidden while mounted, removed after
    (top / "other.txt").write_text("y", encoding="utf-8")
    if how == "device":  # a real tmpfs: another st_dev
        _mount(["-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mounted)])
    else:  # a bind mount of a folder of the same file system has the same st_dev; the mount table names it
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        _mount(["--bind", str(elsewhere), str(mounted)])
        assert os.lstat(mounted).st_dev == os.lstat(top).st_dev
    try:
        (mounted / "data.bin").write_bytes(b"not ours")
        with pytest.raises(UnsafePathError, match="left in place 1 entries"):
            remove_tree_no_follow(top)
        assert (mounted / "data.bin").read_bytes() == b"not ours"
        assert not (top / "other.txt").exists() and not (top / "sub" / "f.txt").exists()
    finally:
        subprocess.run(["umount", str(mounted)], check=True)
    assert remove_tree_no_follow(top) == 4 and not top.exists()


def test_units() -> None:
    assert (
        parse_size("500M") == 500 * 1024**2
        and parse_size("1.5GB") == int(1.5 * 1024**3)
        and parse_size("10") == 10
    )
    assert parse_age("7d") == timedelta(days=7) and parse_age("12h") == timedelta(hours=12)
    assert parse_age("0s") == timedelta(0)
    assert format_bytes(1536) == "1.5 KB" and format_bytes(12) == "12 B"
    with pytest.raises(ConfigError):
        parse_size("lots")
    with pytest.raises(ConfigError):
        parse_age("7 fortnights")


def test_purging_a_very_deep_tree_needs_no_recursion(tmp_path: Path) -> None:
    top = tmp_path / "quarantined"
    deep = str(top)
    os.mkdir(deep)
    for _ in range(1200):  # deeper than Python's recursion limit (os.walk recurses on 3.11)
        deep += "/d"
        os.mkdir(deep)
    with open(deep + "/leaf.yaml", "w") as handle:
        handle.write("x: 1\n")
    assert remove_tree_no_follow(top) == 1 + 1201 and not top.exists()
