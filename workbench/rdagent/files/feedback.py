"""`feedback.json` (spec §5.3): the loop's decision and the feedback texts, flattened."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypedDict

from workbench.errors import InputFileError
from workbench.rdagent.files.jsonfile import (
    expect_object,
    get_bool,
    get_int,
    get_object,
    get_text,
    json_type,
    read_json_file,
)
from workbench.rdagent.files.limits import JSON_METADATA


class Feedback(TypedDict):
    """Flattened feedback; `decision` is True/False/None (null, or absent)."""

    version: str | None
    task_run_id: str | None
    loop_id: int | None
    generated_at_utc: str | None
    decision: bool | None
    hypothesis: str | None
    execution: str | None
    value_feedback: str | None
    shape_feedback: str | None
    code_critic: list[Any]
    limitations: list[Any]


def read_feedback(path: Path, *, max_bytes: int = JSON_METADATA.max_bytes) -> Feedback:
    """Read a feedback.json; `decision` accepts true/false/null and the strings "true"/"false"."""
    path = Path(path)
    data = expect_object(read_json_file(path, max_bytes=max_bytes), path)
    if not data or not (_FEEDBACK_KEYS & data.keys() or data.keys() <= _HEADER_KEYS):
        found = ", ".join(sorted(data)[:6]) or "no keys"
        raise InputFileError(
            path, f"not a feedback file: none of {', '.join(sorted(_FEEDBACK_KEYS))} (found {found})"
        )
    summary = get_object(data, "summary", path) or {}
    return Feedback(
        version=get_text(data, "version", path),
        task_run_id=get_text(data, "task_run_id", path),
        loop_id=get_int(data, "loop_id", path),
        generated_at_utc=get_text(data, "generated_at_utc", path),
        decision=get_bool(data, "decision", path),
        hypothesis=get_text(data, "hypothesis", path),
        execution=get_text(summary, "execution", path, where="summary"),
        value_feedback=get_text(summary, "value_feedback", path, where="summary"),
        shape_feedback=get_text(summary, "shape_feedback", path, where="summary"),
        code_critic=_items(summary, "code_critic", path),
        limitations=_items(summary, "limitations", path),
    )


#: Every feedback.json with content (spec §5.3) has at least one of these.
_FEEDBACK_KEYS = frozenset({"decision", "summary", "hypothesis"})
#: A header alone (an early backfill wrote just these) is an empty feedback, not another file.
_HEADER_KEYS = frozenset({"version", "task_run_id", "loop_id", "generated_at_utc"})


def _items(summary: dict[str, Any], key: str, path: Path) -> list[Any]:
    """A list as written (a lone string becomes a one-element list, null an empty list)."""
    value = summary.get(key)
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return list(value)
    raise InputFileError(path, f"summary.{key} must be an array, found {json_type(value)}")
