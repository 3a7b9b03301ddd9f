"""One archive or cleanup job at a time per archive.

The lock is an exclusive `flock` on ``.workbench.lock`` in the archive folder. The kernel drops
it when the holder dies (even by `kill -9`), so a crashed job never blocks the next one; the file
also records who holds it (host, pid, job, start time) so a refusal can name the holder.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from workbench.archive.db import utc_now
from workbench.archive.layout import ArchiveLayout
from workbench.archive.snapshots import snapshot_if_changed
from workbench.errors import ArchiveBusyError


def read_holder(lock_path: Path) -> dict[str, object]:
    """What the lock file says about its last holder (may be stale)."""
    try:
        holder = json.loads(lock_path.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}


@contextmanager
def archive_lock(
    archive: Path | str | None, *, job: str, wait_s: float = 0.0, snapshot: bool = True
) -> Iterator[None]:
    """Hold the archive's job lock for the duration of the block.

    `wait_s` > 0 waits (polling) for a running job to finish before giving up. A job that ends
    without an exception leaves a catalog snapshot (`snapshots.py`) when it changed the catalog.
    """
    layout = ArchiveLayout.at(archive)
    layout.root.mkdir(parents=True, exist_ok=True)
    fd = os.open(layout.lock, os.O_RDWR | os.O_CREAT, 0o644)
    locked = False
    deadline = time.monotonic() + wait_s
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise ArchiveBusyError(
                        f"archive {layout.root} is in use by {describe_holder(read_holder(layout.lock))}; "
                        f"wait for it to finish"
                    ) from None
                time.sleep(0.2)
        info = {
            "job": job,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started_at": utc_now().isoformat(),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        locked = True
        yield
        if snapshot:
            snapshot_if_changed(layout)
    finally:
        try:
            if locked:
                os.ftruncate(fd, 0)  # no stale holder for the next refusal to name
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)


def describe_holder(holder: dict[str, object]) -> str:
    """Who holds the lock, as far as the lock file tells; never a process known to have ended."""
    pid, host = holder.get("pid"), holder.get("host")
    if not isinstance(pid, int):
        return "another process that did not record itself in the lock file"
    if host == socket.gethostname() and not _alive(pid):
        return (
            f"another process (the lock file names pid {pid}, which has ended: the lock is held by a "
            "program other than workbench, e.g. a copy or backup tool)"
        )
    return (
        f"job {holder.get('job', '?')!r} (pid {pid} on {host or '?'}, since {holder.get('started_at', '?')})"
    )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        pass
    return True
