"""Checked parsing of RD-Agent's JSON files, plus typed field access (the bytes come from `reading`).

RD-Agent writes JSON with Python's `allow_nan=True`, so `NaN`/`Infinity`/`-Infinity` tokens are
accepted. Everything else that is wrong becomes an `InputFileError` that names the file and
says where and what: missing, not a regular file, too big, not UTF-8 (byte offset), invalid or
truncated JSON (line/column), wrong top-level type, wrong field type.
"""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any

from workbench.errors import InputFileError
from workbench.rdagent.files.limits import JSON_METADATA, FileKind
from workbench.rdagent.files.reading import read_text_file


def read_json_file(
    path: Path, *, max_bytes: int = JSON_METADATA.max_bytes, kind: FileKind = JSON_METADATA
) -> Any:
    """Parse a JSON file (NaN/Infinity tokens accepted as floats); by default a JSON metadata file."""
    text = read_text_file(path, max_bytes=max_bytes, kind=kind)
    return parse_json_text(text, Path(path))


def parse_json_text(text: str, path: Path) -> Any:
    """Parse JSON text read from `path`; errors say line/column, or that the file is truncated."""
    if not text.strip():
        raise InputFileError(path, "empty file, expected JSON")
    try:
        data = json.loads(text, parse_int=_bounded_int_parser(path))
    except json.JSONDecodeError as exc:
        # a file cut inside a string fails at the string's opening quote, not at the end
        if exc.pos >= len(text.rstrip()) or exc.msg.startswith("Unterminated string"):
            raise InputFileError(
                path,
                f"truncated JSON: the file ends before the value at line {exc.lineno} column {exc.colno} is "
                f"complete ({exc.msg})",
                hint="the writer was probably interrupted",
            ) from None
        raise InputFileError(
            path, f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from None
    except RecursionError:
        raise InputFileError(path, "JSON nested too deeply") from None
    if _SURROGATE_ESCAPE.search(text):
        _refuse_lone_surrogates(data, path)
    return data


#: Integers RD-Agent writes (loop ids, counts, epoch milliseconds) fit in 64 bits with room to spare.
_MAX_INT_DIGITS = 18
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _bounded_int_parser(path: Path) -> Any:
    """`json.loads`' integer hook: a literal longer than 18 digits is damage, not data.

    Why: Python parses integers of any length (and refuses over 4,300 digits with a bare
    ValueError), and such values later overflow floats, Int64 columns and dates.
    """

    def parse(literal: str) -> int:
        digits = len(literal.lstrip("-"))
        if digits > _MAX_INT_DIGITS:
            preview = literal if len(literal) <= 24 else f"{literal[:20]}... ({digits} digits)"
            raise InputFileError(
                path,
                f"integer {preview} is too large for any field of this file",
                hint="the file is damaged or not an RD-Agent file",
            )
        return int(literal)

    return parse


def _refuse_lone_surrogates(data: Any, path: Path) -> None:
    """An escaped UTF-16 surrogate without its pair cannot be stored or encoded: the file is damaged."""
    stack = [data]
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise InputFileError(
                    path,
                    f"string {_preview(value)} holds an unpaired UTF-16 surrogate escape",
                    hint="the file is damaged; RD-Agent writes valid UTF-8",
                ) from None
        elif isinstance(value, dict):
            stack.extend(value.keys())
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)


def expect_object(data: Any, path: Path, *, what: str = "top level") -> dict[str, Any]:
    """`data` if it is a JSON object, else an error naming the type found."""
    if not isinstance(data, dict):
        raise InputFileError(path, f"{what} must be a JSON object, found {json_type(data)}")
    return data


def json_type(value: Any) -> str:
    """JSON name of a parsed value's type, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def to_json_text(value: Any) -> str | None:
    """Compact JSON text of a parsed value (None stays None; NaN is written as the NaN token)."""
    if value is None:
        return None
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=True, default=str)


# --------------------------------------------------------------------------- typed field access


def get_text(obj: dict[str, Any], key: str, path: Path, *, where: str = "") -> str | None:
    """A string field; numbers are turned into text, null/absent is None, anything else is an error."""
    value = obj.get(key)
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise _wrong(path, where, key, "a string", value)


def get_int(obj: dict[str, Any], key: str, path: Path, *, where: str = "") -> int | None:
    """An integer field; integral floats and digit strings are accepted."""
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool):
        raise _wrong(path, where, key, "an integer", value)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    raise _wrong(path, where, key, "an integer", value)


def get_float(obj: dict[str, Any], key: str, path: Path, *, where: str = "") -> float | None:
    """A number field (NaN kept); numeric strings such as "0.5" or "nan" are accepted."""
    return as_float(obj.get(key), path, where=_field(where, key))


def as_float(value: Any, path: Path, *, where: str) -> float | None:
    """A JSON value as float: numbers and numeric strings, null → None, anything else an error."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise InputFileError(path, f"{where} must be a number, found boolean")
    if isinstance(value, int | float):
        try:
            return float(value)
        except OverflowError:
            raise InputFileError(path, f"{where} = {_preview(value)} is too large for a number") from None
    if isinstance(value, str):
        parsed = parse_float_text(value)
        if parsed is not None or not value.strip():
            return parsed
    raise InputFileError(path, f"{where} must be a number, found {json_type(value)} {_preview(value)}")


def parse_float_text(text: str) -> float | None:
    """`float()` of a stripped string (nan/inf spellings included); None if empty or not a number.

    Python's own `1_000` digit grouping is not a number in any file RD-Agent writes.
    """
    stripped = text.strip()
    if not stripped or "_" in stripped:
        return None
    try:
        return float(stripped)
    except ValueError:
        return None


def get_list(obj: dict[str, Any], key: str, path: Path, *, where: str = "") -> list[Any] | None:
    """A list field; null/absent is None."""
    value = obj.get(key)
    if value is None or isinstance(value, list):
        return value
    raise _wrong(path, where, key, "an array", value)


def get_object(obj: dict[str, Any], key: str, path: Path, *, where: str = "") -> dict[str, Any] | None:
    """An object field; null/absent is None."""
    value = obj.get(key)
    if value is None or isinstance(value, dict):
        return value
    raise _wrong(path, where, key, "an object", value)


def get_bool(obj: dict[str, Any], key: str, path: Path, *, where: str = "") -> bool | None:
    """A boolean field; also 0/1 and the strings "true"/"false"/"1"/"0" (any case)."""
    value = obj.get(key)
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0", "null", ""):
        text = value.strip().lower()
        return None if text in ("null", "") else text in ("true", "1")
    raise _wrong(path, where, key, "true/false/null", value)


def get_str_list(obj: dict[str, Any], key: str, path: Path, *, where: str = "") -> list[str]:
    """A list of strings; a single string is a one-element list, null/absent an empty list."""
    value = obj.get(key)
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        for index, item in enumerate(value):
            if not isinstance(item, str):
                raise InputFileError(
                    path,
                    f"{_field(where, key)}[{index}] must be a string, found {json_type(item)} {_preview(item)}",
                )
        return list(value)
    raise _wrong(path, where, key, "a list of strings", value)


def is_nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def _field(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _wrong(path: Path, where: str, key: str, expected: str, value: Any) -> InputFileError:
    return InputFileError(
        path, f"{_field(where, key)} must be {expected}, found {json_type(value)} {_preview(value)}"
    )


def _preview(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def as_date(value: Any, path: Path, *, where: str) -> date | None:
    """A calendar date from `YYYY-MM-DD` or an ISO timestamp at midnight (UTC if it has an offset).

    Numbers are epoch milliseconds (pandas `to_json` with `date_format="epoch"`).
    """
    if value is None:
        return None
    if isinstance(value, datetime):
        return _midnight_date(value, path, where=where)
    if isinstance(value, date):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        if isinstance(value, float) and not math.isfinite(value):
            return None
        try:
            stamp = datetime.fromtimestamp(value / 1000, tz=UTC)
        except (OverflowError, OSError, ValueError):
            raise InputFileError(
                path, f"{where} = {_preview(value)} is not a date in epoch milliseconds (out of range)"
            ) from None
        return _midnight_date(stamp, path, where=where)
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        try:
            stamp = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
        except ValueError:
            raise InputFileError(path, f"{where} is not a date: {_preview(value)}") from None
        return _midnight_date(stamp, path, where=where)
    raise InputFileError(path, f"{where} must be a date string, found {json_type(value)} {_preview(value)}")


def _midnight_date(stamp: datetime, path: Path, *, where: str) -> date:
    if stamp.tzinfo is not None:
        stamp = stamp.astimezone(UTC)
    if stamp.time() != time(0, 0):
        raise InputFileError(
            path, f"{where} has a time of day ({stamp.isoformat()}); expected a trading date"
        )
    return stamp.date()
