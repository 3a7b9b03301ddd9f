"""Sizes and ages as people type them (`500M`, `2G`, `7d`, `12h`) and as people read them."""

from __future__ import annotations

import re
from datetime import timedelta

from workbench.errors import ConfigError

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)(i?b?)\s*$", re.IGNORECASE)
_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$", re.IGNORECASE)
_FACTORS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4, "p": 1024**5}
_AGE_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_size(text: str | int | None) -> int | None:
    """`500M`, `2G`, `1.5GB`, `1024` → bytes (binary units); None stays None."""
    if text is None or isinstance(text, int):
        return text
    match = _SIZE.match(str(text))
    if not match:
        raise ConfigError(f"size {text!r} is not understood; write e.g. 500M, 2G or 1048576 (bytes)")
    return int(float(match.group(1)) * _FACTORS[match.group(2).lower()])


def parse_age(text: str | timedelta) -> timedelta:
    """`7d`, `12h`, `30m`, `0s`, `2w` → a timedelta."""
    if isinstance(text, timedelta):
        return text
    match = _AGE.match(str(text))
    if not match:
        raise ConfigError(f"age {text!r} is not understood; write e.g. 7d, 12h, 30m or 0s")
    return timedelta(**{_AGE_UNITS[match.group(2).lower()]: float(match.group(1))})


def format_bytes(value: int | float | None) -> str:
    """1536 → '1.5 KB' (binary units, one decimal)."""
    if value is None:
        return "-"
    size = float(value)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(size) < 1024 or unit == "TB":
            return f"{int(size)} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TB"  # pragma: no cover - loop always returns
