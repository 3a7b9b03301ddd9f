"""Commits that several machines make at once: retried with backoff when another writer won.

Delta commits are conditional writes of the next log entry: when two publishers race, one wins
and the other's commit fails (or the table it was about to create now exists). The loser reads
the table again and redoes its step; what it writes is computed from the table as it is then, so
nothing is lost and nothing is written twice.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TypeVar

from deltalake.exceptions import CommitFailedError, DeltaError

from workbench.errors import LakeError

__all__ = ["is_conflict", "with_retries"]

T = TypeVar("T")
_CONFLICT_WORDS = ("conflict", "already exists", "version", "transaction", "concurrent", "precondition")


def is_conflict(exc: BaseException) -> bool:
    """Whether ``exc`` says another writer committed first (worth retrying), not a real failure."""
    if isinstance(exc, CommitFailedError):
        return True
    return isinstance(exc, DeltaError) and any(w in str(exc).lower() for w in _CONFLICT_WORDS)


def with_retries(
    step: Callable[[int], T], *, what: str, attempts: int = 12, first_delay_s: float = 0.05
) -> tuple[T, int]:
    """Run ``step(attempt)`` until it commits; on a conflict wait (exponential, jittered) and redo it.

    Returns the step's result and how many attempts it took.
    """
    for attempt in range(1, attempts + 1):
        try:
            return step(attempt), attempt
        except (CommitFailedError, DeltaError) as exc:
            if not is_conflict(exc) or attempt == attempts:
                if is_conflict(exc):
                    raise LakeError(
                        f"{what}: another writer kept committing first ({attempts} attempts, last: {exc}); "
                        "run the publish again"
                    ) from exc
                raise
            delay = first_delay_s * 2 ** min(attempt - 1, 6)
            time.sleep(delay + random.uniform(0, delay))
    raise AssertionError("unreachable")
