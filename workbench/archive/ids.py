"""Stable ids derived from natural keys.

The same loop, factor, strategy or combination always gets the same id, so references held by
other systems survive a rebuild of the catalog from the same RD-Agent installation.
"""

from __future__ import annotations

import re
import uuid

_NAMESPACE = uuid.UUID("0d5f3c8e-7b0a-4a53-9a55-5f1b1c2d7e01")


def _stable(kind: str, *parts: object) -> str:
    key = "|".join("" if p is None else str(p) for p in parts)
    return uuid.uuid5(_NAMESPACE, f"{kind}:{key}").hex


def experiment_id(task_run_id: str, loop_id: int) -> str:
    """One experiment per registry loop (task run, loop index)."""
    return _stable("experiment", task_run_id, int(loop_id))


def strategy_key(task_run_id: str, loop_id: int, workspace_id: str | None) -> str:
    """The design's strategy key: the (task run, loop, workspace) triple."""
    return f"{task_run_id}/{int(loop_id)}/{workspace_id or ''}"


def strategy_id(key: str) -> str:
    return _stable("strategy", key)


def normalise_expression(expression: str | None) -> str:
    """Whitespace-free, lower-case form used to recognise one factor written twice."""
    return re.sub(r"\s+", "", expression or "").lower()


def factor_id(name: str, *, expression: str | None = None, version: str | None = None) -> str:
    """Same normalised expression, or (without one) same name and version → same factor."""
    key = normalise_expression(expression)
    if key:
        return _stable("factor-expr", key)
    return _stable("factor-name", name.strip(), version or "")


def combination_id(factor_ids: list[str]) -> str:
    """A combination is its set of factors, whatever the order or name."""
    return _stable("combination", *sorted(set(factor_ids)))


def performance_id(factor: str, window: str, experiment: str | None) -> str:
    return _stable("factor-performance", factor, window, experiment)
