"""RD-Agent's timestamps: the registry writes them in several formats (spec §2.6).

Naive times are UTC (every writer generation stores UTC); text that does not parse is treated as
unknown rather than as an error, because a loop with an odd timestamp must still be archivable.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


def loop_timestamp(loop: dict[str, Any]) -> str | None:
    """The loop's latest known time as ISO text (registry formats vary, §2.6)."""
    for column in ("updated_at_utc", "ended_at_utc", "started_at_utc"):
        value = loop.get(column)
        if value:
            return str(value).replace(" ", "T")
    return None


def parse_time(text: str | None) -> datetime | None:
    """An aware datetime from registry text (`Z` or naive means UTC); None when absent or unparsable."""
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value
