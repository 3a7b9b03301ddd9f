"""Containment: nothing outside the workspace root and the log root is ever touched.

Safety by construction, not by hope:

* the workspace root, log root and quarantine are resolved with `os.path.realpath` once;
* a directory that may be removed must be a *direct child* of its root, its real location must
  be that child (so no `..`, no link on the way, no path that resolves elsewhere), and the entry
  itself must be a real directory, never a symbolic link;
* a file inside a workspace is reached component by component with `lstat`; every intermediate
  component must be a real directory;
* removal is a `rename` into the quarantine on the same file system (a link moves as the link,
  a hard link moves as that one directory entry); a rename across file systems is refused, never
  replaced by copy-and-delete;
* the quarantine itself must be a real folder in the RD-Agent root, and every folder created
  or used below it (plan, item) a real folder, never a link, right before each move;
* purging removes links with `unlink` and walks directories without following links, so the
  target of a link and the other names of a hard-linked file are never touched; it never enters
  another file system or a mount (bind mounts included) inside a quarantined entry.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from workbench.archive import faults
from workbench.errors import ConfigError, UnsafePathError
from workbench.rdagent.installation import LOG_RELPATH, WORKSPACE_RELPATH, Installation

HEX32 = re.compile(r"^[0-9a-f]{32}$")
QUARANTINE_DIRNAME = ".workbench_quarantine"


@dataclass(frozen=True)
class Roots:
    """The real (symlink-free) roots of one installation: the only places cleanup may touch."""

    rdagent_root: Path
    workspace_root: Path
    log_root: Path

    @property
    def quarantine(self) -> Path:
        return self.rdagent_root / QUARANTINE_DIRNAME

    @classmethod
    def at(cls, rdagent_root: Path | str) -> Roots:
        """The roots of an installation by its root folder alone (undo and purge need no registry)."""
        root = Path(rdagent_root).expanduser()
        if not root.is_dir():
            raise ConfigError(
                f"RD-Agent root {root} is not a directory; pass the folder that holds git_ignore_folder/"
            )
        return cls(
            rdagent_root=Path(os.path.realpath(root)),
            workspace_root=Path(os.path.realpath(root / WORKSPACE_RELPATH)),
            log_root=Path(os.path.realpath(root / LOG_RELPATH)),
        )

    @classmethod
    def of(cls, installation: Installation) -> Roots:
        return cls(
            rdagent_root=Path(os.path.realpath(installation.root)),
            workspace_root=Path(os.path.realpath(installation.workspace_root)),
            log_root=Path(os.path.realpath(installation.log_root)),
        )


def has_dotdot(raw: str) -> bool:
    """True when any segment of a path written in any OS style is `..`."""
    return ".." in re.split(r"[\\/]+", str(raw))


def is_workspace_name(name: str, registered: frozenset[str] = frozenset()) -> bool:
    """Workspace folders are named by a 32-hex uuid (or by the id the registry gave them)."""
    return bool(HEX32.match(name)) or name in registered


def checked_child(
    root: Path,
    candidate: Path | str,
    *,
    what: str,
    name_ok: Callable[[str], bool] | None = None,
) -> Path:
    """The real path of `candidate`, which must be a real directory directly under `root`.

    Raises `UnsafePathError` for `..`, a path resolving elsewhere, a link, a non-directory or a
    badly named folder. `FileNotFoundError` when it does not exist (the caller reports that).
    """
    text = str(candidate)
    if has_dotdot(text):
        raise UnsafePathError(f"{what} {text!r} contains '..'; refused")
    path = Path(os.path.abspath(text))
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        raise UnsafePathError(
            f"{what} {path} is a symbolic link (to {os.readlink(path)!r}); links are never followed, refused"
        )
    real = Path(os.path.realpath(path))
    if real.parent != root:
        raise UnsafePathError(
            f"{what} {text} resolves to {real}, which is not directly inside {root}; refused"
        )
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafePathError(f"{what} {real} is not a directory; refused")
    if name_ok is not None and not name_ok(real.name):
        raise UnsafePathError(f"{what} {real} is not named like a workspace (32 hex digits); refused")
    return real


def checked_entry(base: Path, rel_path: str) -> tuple[Path, os.stat_result]:
    """`base/rel_path` reached without following any link; returns the path and its lstat.

    `base` must already be a checked real directory. Every intermediate component must be a real
    directory; the final entry may be anything (a link is then handled as the link itself).
    """
    parts = Path(rel_path).parts
    if not parts or Path(rel_path).is_absolute() or ".." in parts or has_dotdot(rel_path):
        raise UnsafePathError(f"entry {rel_path!r} of {base} is not a plain relative path; refused")
    current = base
    for part in parts[:-1]:
        current = current / part
        st = os.lstat(current)
        if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
            raise UnsafePathError(f"{current} is a link or not a directory; refusing to go through it")
    target = current / parts[-1]
    return target, os.lstat(target)


def inside(root: Path, path: Path | str) -> bool:
    """True when the real location of `path` is `root` or below it."""
    real = Path(os.path.realpath(path))
    return real == root or root in real.parents


def entry_inside(root: Path, path: Path | str) -> bool:
    """True when the entry itself (a link is not followed) lies within `root`."""
    parent = Path(os.path.realpath(Path(path).parent))
    return parent == root or root in parent.parents


def quarantine_target(roots: Roots, plan_id: str, item_id: str, rel: str) -> Path:
    """Where one entry of one item goes in the quarantine (never outside the quarantine)."""
    for part in (plan_id, item_id):
        if not re.fullmatch(r"[0-9A-Za-z_.-]+", part) or part in (".", ".."):
            raise UnsafePathError(f"quarantine name {part!r} is not a plain name; refused")
    if has_dotdot(rel) or Path(rel).is_absolute():
        raise UnsafePathError(f"quarantine entry {rel!r} is not a plain relative path; refused")
    return roots.quarantine / plan_id / item_id / rel


def _quarantine_parent(target: Path, roots: Roots) -> None:
    """Create the folders from the quarantine down to `target.parent`, refusing any link on the way.

    The quarantine must be a real directory directly in the RD-Agent root; every folder below it
    (plan, item, sub-folders) is created or found with `lstat` and must be a real directory, and
    the real location of `target.parent` must be inside the real quarantine. A pre-created link
    (plan and item ids are predictable) would otherwise carry the move outside the root.
    """
    quarantine = roots.quarantine
    st = os.lstat(quarantine)
    if (
        stat.S_ISLNK(st.st_mode)
        or not stat.S_ISDIR(st.st_mode)
        or Path(os.path.realpath(quarantine)).parent != roots.rdagent_root
    ):
        raise UnsafePathError(
            f"quarantine {quarantine} is not a real folder directly in {roots.rdagent_root}; refused"
        )
    if has_dotdot(str(target)) or quarantine not in target.parents:
        raise UnsafePathError(f"{target} is not inside the quarantine {quarantine}; refused")
    current = quarantine
    for part in target.parent.relative_to(quarantine).parts:
        current = current / part
        try:
            current.mkdir(mode=0o700)
        except FileExistsError:
            pass
        st = os.lstat(current)
        if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
            raise UnsafePathError(
                f"quarantine folder {current} is a link or not a folder; links are never "
                "followed, nothing was moved"
            )
    if not inside(Path(os.path.realpath(quarantine)), target.parent):
        raise UnsafePathError(
            f"{target.parent} resolves outside the quarantine {quarantine}; nothing was moved"
        )


def move_entry(source: Path, target: Path, *, roots: Roots) -> None:
    """Rename `source` (a file, link or folder, never followed) to `target` on the same file system.

    `target` must lie in the quarantine of `roots` with no link on the way (see `_quarantine_parent`).
    Refuses when `target` exists and when the rename would cross file systems (EXDEV): cleanup
    never copies and deletes, because a half-finished copy is worse than nothing.
    """
    _quarantine_parent(target, roots)
    if os.path.lexists(target):
        raise UnsafePathError(f"{target} already exists; refusing to overwrite it")
    try:
        faults.check("quarantine", target)
        os.rename(source, target)
    except OSError as exc:
        if exc.errno == errno.EXDEV:
            raise UnsafePathError(
                f"{source} is on another file system than {target.parent}; cleanup only moves within "
                "one file system (it never copies and deletes), so this item is left in place"
            ) from exc
        raise


def _unescape_mountinfo(field: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def mount_points() -> frozenset[str]:
    """Every mount point of this process (`/proc/self/mountinfo`; empty where there is none).

    A bind mount of a folder of the same file system has the same `st_dev` as its parent, so the
    device alone does not reveal it; the mount table does.
    """
    try:
        text = Path("/proc/self/mountinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return frozenset()
    return frozenset(
        _unescape_mountinfo(line.split()[4]) for line in text.splitlines() if len(line.split()) > 4
    )


def remove_tree_no_follow(path: Path) -> int:
    """Delete a quarantined entry for good without following any link; returns entries removed.

    Links (symbolic or hard) are unlinked, so their targets and the other names of a hard-linked
    file survive; directories are walked without following links. Nothing on another file system
    or mounted inside the entry (a bind mount) is entered or removed: the rest is deleted, and
    `UnsafePathError` then names what was left in place (the entry stays, and stays recorded).
    """
    faults.check("purge", path)
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode) or stat.S_ISLNK(st.st_mode):
        os.unlink(path)
        return 1
    mounts = mount_points()
    top = os.fspath(path)
    if top in mounts or st.st_dev != os.lstat(os.path.dirname(top)).st_dev:
        raise UnsafePathError(f"{top} is a mount point or on another file system; nothing was deleted")
    removed = 0
    foreign: list[str] = []
    folders: list[str] = []
    pending = [top]  # an explicit stack: os.walk recurses, and a quarantined tree may be very deep
    while pending:
        dirpath = pending.pop()
        folders.append(dirpath)  # before its sub-folders: reversed, children go first
        for name in os.listdir(dirpath):
            entry = os.path.join(dirpath, name)
            est = os.lstat(entry)
            if est.st_dev != st.st_dev or entry in mounts:
                foreign.append(entry)
            elif stat.S_ISDIR(est.st_mode):
                pending.append(entry)
            else:  # files, symbolic links (also to folders), anything else: the entry itself
                os.unlink(entry)
                removed += 1
    holding = {os.path.dirname(entry) for entry in foreign}
    for folder in reversed(folders):
        if folder in holding:
            holding.add(os.path.dirname(folder))
            continue
        os.rmdir(folder)
        removed += 1
    if foreign:
        raise UnsafePathError(
            f"left in place {len(foreign)} entries on another file system or mounted inside {top} "
            f"({', '.join(foreign[:3])}); the rest was deleted. Unmount them, then purge again"
        )
    return removed
