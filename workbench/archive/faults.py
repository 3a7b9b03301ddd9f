"""Fault injection: make the storage layer's own write helpers fail the way a full or failing disk does.

For tests, and for machines where a small file system cannot be mounted. The storage layer calls
`check(op, path)` right before each write it guards; when the environment variable
``WORKBENCH_FAULTS`` is unset (the normal case) `check` returns at once and costs one truth test.

Syntax: one or more rules separated by ``,``; each rule is ``KIND:OP[:after=N][:times=M][:ms=T]``

* KIND — ``enospc`` (disk full), ``edquot`` (quota exceeded), ``eio`` (I/O error), ``eperm``
  (operation not permitted): `check` raises a real ``OSError`` with that errno and the path;
  ``pause`` sleeps ``ms`` milliseconds (default 1000) and goes on, to open a window for a real
  second process (e.g. one holding the catalog) at an exact point of a job.
* OP — which writes: ``objects`` (object files in ``objects/``, packs, manifests), ``records``
  (the records written before each catalog commit, journal.py), ``runs`` (the run
  summary ``runs/<run_id>.json``), ``journal`` (the cleanup quarantine journal), ``quarantine``
  (moving an entry into quarantine), ``record`` (writing the ``wb_deletions`` rows of a move),
  ``purge`` (deleting a quarantined entry), ``restore`` (moving an entry back on undo), ``s3``
  (each upload to the bucket of an ``s3://`` archive, `bucket.py`);
  ``*`` matches every op.
* ``after=N`` — the first N calls of OP pass, the later ones fail (default 0: the first fails);
  ``times=M`` — fail at most M times, then pass again (default: for ever, as a full disk stays full).

Counts are per process. Example: ``WORKBENCH_FAULTS="eio:objects:after=3"`` makes the fourth and
every later object write of an archive run fail with EIO.
"""

from __future__ import annotations

import errno
import os
import time
from dataclasses import dataclass
from pathlib import Path

from workbench.errors import ConfigError

ENV = "WORKBENCH_FAULTS"
ERRNOS = {"enospc": errno.ENOSPC, "edquot": errno.EDQUOT, "eio": errno.EIO, "eperm": errno.EPERM}
KINDS = (*ERRNOS, "pause")
OPS = ("objects", "records", "runs", "journal", "quarantine", "record", "purge", "restore", "s3", "*")


@dataclass
class Rule:
    kind: str
    op: str
    after: int = 0
    times: int | None = None
    ms: int = 1000
    calls: int = 0
    fired: int = 0


def parse(spec: str | None) -> list[Rule]:
    """The rules of a ``WORKBENCH_FAULTS`` value (empty for None or ""); `ConfigError` when malformed."""
    rules: list[Rule] = []
    for text in (spec or "").split(","):
        text = text.strip()
        if not text:
            continue
        parts = text.split(":")
        if len(parts) < 2 or parts[0] not in KINDS or parts[1] not in OPS:
            raise ConfigError(
                f"{ENV}: {text!r} is not KIND:OP[:after=N][:times=M][:ms=T] with KIND one of "
                f"{', '.join(KINDS)} and OP one of {', '.join(OPS)}"
            )
        rule = Rule(parts[0], parts[1])
        for option in parts[2:]:
            name, _, value = option.partition("=")
            if name not in ("after", "times", "ms") or not value.isdigit():
                raise ConfigError(f"{ENV}: {option!r} in {text!r} is not after=N, times=M or ms=T")
            setattr(rule, name, int(value))
        rules.append(rule)
    return rules


_RULES: list[Rule] = parse(os.environ.get(ENV))


def configure(spec: str | None = None) -> None:
    """Replace the active rules (counts restart); None re-reads ``WORKBENCH_FAULTS``, "" turns faults off."""
    global _RULES
    _RULES = parse(os.environ.get(ENV) if spec is None else spec)


def check(op: str, path: Path | str | None = None) -> None:
    """Called by the storage layer before a guarded write; raises the injected fault, if any."""
    if not _RULES:
        return
    _fire(op, path)


def _fire(op: str, path: Path | str | None) -> None:
    for rule in _RULES:
        if rule.op not in (op, "*"):
            continue
        rule.calls += 1
        if rule.calls <= rule.after or (rule.times is not None and rule.fired >= rule.times):
            continue
        rule.fired += 1
        if rule.kind == "pause":
            time.sleep(rule.ms / 1000)
            continue
        code = ERRNOS[rule.kind]
        raise OSError(
            code,
            f"{os.strerror(code)} (injected by {ENV}, {op} write #{rule.calls})",
            None if path is None else os.fspath(path),
        )
