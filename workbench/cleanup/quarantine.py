"""The quarantine of a plan, and its journal: where moved entries wait until purged or put back.

Phase one of a cleanup moves each confirmed entry with `rename` into
``<rdagent_root>/.workbench_quarantine/<plan_id>/<item_id>/...`` on the same file system. Each move
is appended to the plan's journal (`journal.jsonl`, synced once per batch of moves) before it
happens, so an interrupted run leaves a complete record even when its `wb_deletions` rows could
not be written; undo reads both. The journal is only deleted once nothing else is left in the plan's quarantine folder.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

from workbench.archive import faults
from workbench.cleanup.plan import CleanupPlan
from workbench.cleanup.records import deletions
from workbench.cleanup.safety import (
    Roots,
    mount_points,
    quarantine_target,
)
from workbench.errors import ConfigError, UnsafePathError

JOURNAL = "journal.jsonl"


def quarantine_dir(roots: Roots, plan_id: str) -> Path:
    """The plan's quarantine folder, created if needed; refuses a linked or odd quarantine."""
    base = roots.quarantine
    if os.path.lexists(base):
        st = os.lstat(base)
        if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
            raise UnsafePathError(f"quarantine {base} is a link or not a folder; refusing to use it")
    else:
        base.mkdir(mode=0o700)
    folder = quarantine_target(roots, plan_id, "x", "x").parent.parent
    folder.mkdir(mode=0o700, exist_ok=True)
    st = os.lstat(folder)  # mkdir(exist_ok) accepts a link to a folder: a pre-created link is refused here
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise UnsafePathError(
            f"plan quarantine {folder} is a link or not a folder; refusing to use it, nothing moved"
        )
    return folder


class QuarantineJournal:
    """The plan's journal, open for appending: intended moves are written, then synced once per batch.

    Every entry must be on disk before its move happens, so `sync` is called (one fsync for the
    whole batch) before any move of the batch; undo reads the entries back (`journal_entries`).
    """

    def __init__(self, folder: Path) -> None:
        self.path = folder / JOURNAL
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600)
        self._handle = open(fd, "a", encoding="utf-8")  # noqa: SIM115 -- closed by close()/__exit__

    def append(self, entry: dict[str, Any]) -> None:
        """Write one intended move (not yet durable: call `sync` before moving)."""
        faults.check("journal", self.path)
        self._handle.write(json.dumps(entry, ensure_ascii=False) + "\n")

    def sync(self) -> None:
        """Make every appended entry durable (one fsync)."""
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> QuarantineJournal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def journal_entries(folder: Path) -> list[dict[str, Any]]:
    """The plan's journal (a link or a torn last line is ignored)."""
    path = folder / JOURNAL
    if not os.path.lexists(path) or not stat.S_ISREG(os.lstat(path).st_mode):
        return []
    entries = []
    with open(os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)), encoding="utf-8") as handle:
        for line in handle:
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict) and all(
                isinstance(entry.get(k), str) for k in ("item_id", "original", "quarantine")
            ):
                entries.append(entry)
    return entries


def plan_roots(plan: CleanupPlan, rdagent_root: Path | str | None = None, *, action: str) -> Roots:
    """The roots a plan was made for; `rdagent_root`, when given, must be that same installation.

    Undo and purge work on the plan's quarantine, which lives in the plan's own RD-Agent root, so
    the root stored with the plan is used; a different root given by the user is refused
    (`ConfigError`), and a recorded root that now resolves elsewhere is refused (`UnsafePathError`).
    """
    recorded = Roots(Path(plan.rdagent_root), Path(plan.workspace_root), Path(plan.log_root))
    if rdagent_root is not None and os.path.realpath(Path(rdagent_root).expanduser()) != plan.rdagent_root:
        raise ConfigError(
            f"plan {plan.plan_id} was made for RD-Agent root {plan.rdagent_root}, not {rdagent_root}; "
            f"drop --rdagent-root ({action} uses the plan's own root) or pass {plan.rdagent_root}"
        )
    if not recorded.rdagent_root.is_dir():
        raise ConfigError(
            f"plan {plan.plan_id}'s RD-Agent root {plan.rdagent_root} is no longer a directory, and "
            f"its quarantine was inside it; nothing to {action}"
        )
    current = Roots.at(recorded.rdagent_root)
    if current != recorded:
        raise UnsafePathError(
            f"plan {plan.plan_id}'s roots now resolve to {current.rdagent_root}, "
            f"{current.workspace_root}, {current.log_root} instead of the recorded ones; refused"
        )
    return recorded


def tidy_quarantine(folder: Path, *, archive: Path | str | None, plan_id: str) -> None:
    """Remove empty folders of a plan's quarantine, and its journal once nothing else is left in it.

    The journal is the only trace of a move whose record failed, so it stays while the folder holds
    anything besides it. Links and other file systems are never entered.
    """
    if not folder.is_dir() or os.path.islink(folder):
        return
    device, mounts = os.lstat(folder).st_dev, mount_points()
    folders: list[str] = []
    for dirpath, dirnames, _files in os.walk(folder, topdown=True, followlinks=False):
        folders.append(dirpath)
        paths = [os.path.join(dirpath, n) for n in dirnames]
        dirnames[:] = [
            os.path.basename(e)
            for e in paths
            if not os.path.islink(e) and e not in mounts and os.lstat(e).st_dev == device
        ]
    for dirpath in reversed(folders[1:]):
        try:
            os.rmdir(dirpath)  # only succeeds when empty
        except OSError:
            pass
    if deletions(archive=archive, plan_id=plan_id, states=("quarantined",)):
        return
    if any(entry.name != JOURNAL for entry in folder.iterdir()):
        return
    journal = folder / JOURNAL
    if journal.is_file() and not journal.is_symlink():
        journal.unlink()
    if not any(folder.iterdir()):
        folder.rmdir()
