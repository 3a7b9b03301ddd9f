"""`factor_meta.json` (spec §5.1): four producer variants, told apart by keys, one frame shape.

* A — HEAD backfill: full entries (`expression`, `input_schema`, `freq`, …, envelope).
* B — gap era: generated factors with `name, source, description_cn, formula_hint,
  created_at_utc, experiment_id, tags, variables`; Alpha158 entries `name, expression, source,
  region, tags`.
* C — `tools/scan_workspace_factors.py`: top-level `source: "backfill_scan"` + `workspace_path`,
  entries only `name, source`, names are parquet tuple strings.
* D — log enrichment appended to an existing file: `freq/align/nan_policy` but no
  `created_at_utc`, `experiment_id`, `expression`, `input_schema`.

A file can mix A and D entries, so the variant is decided per entry.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any, Literal

import polars as pl

from workbench.errors import InputFileError
from workbench.rdagent.files.jsonfile import (
    expect_object,
    get_list,
    get_object,
    get_str_list,
    get_text,
    json_type,
    read_json_file,
    to_json_text,
)
from workbench.rdagent.files.limits import JSON_METADATA

Variant = Literal["A", "B", "C", "D"]

FACTOR_META_SCHEMA: dict[str, Any] = {
    "name": pl.String,
    "raw_name": pl.String,
    "source": pl.String,
    "region": pl.String,
    "description_cn": pl.String,
    "formula_hint": pl.String,
    "expression": pl.String,
    "tags": pl.List(pl.String),
    "variables_json": pl.String,
    "freq": pl.String,
    "align": pl.String,
    "nan_policy": pl.String,
    "input_schema_json": pl.String,
    "impl_module": pl.String,
    "impl_func": pl.String,
    "impl_version": pl.String,
    "interface_info_json": pl.String,
    "experiment_id": pl.String,
    "created_at_utc": pl.String,
    "variant": pl.String,
}

_TEXT_FIELDS = (
    "source",
    "region",
    "description_cn",
    "formula_hint",
    "expression",
    "freq",
    "align",
    "nan_policy",
    "impl_module",
    "impl_func",
    "impl_version",
    "experiment_id",
    "created_at_utc",
)
_D_KEYS = ("freq", "align", "nan_policy")
_A_ONLY_KEYS = ("created_at_utc", "experiment_id")


def normalise_factor_name(raw: str) -> str:
    """`"('feature', 'RESI5')"` (pandas MultiIndex label stored by parquet) → `RESI5`; others unchanged."""
    text = raw.strip()
    if text.startswith("(") and text.endswith(")"):
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            return text
        if isinstance(value, tuple) and value and all(isinstance(v, str) for v in value):
            last: str = value[-1]
            if last.strip():
                return last.strip()
    return text


def read_factor_meta(path: Path, *, max_bytes: int = JSON_METADATA.max_bytes) -> pl.DataFrame:
    """One row per factor entry, columns `FACTOR_META_SCHEMA`, with the detected variant."""
    path = Path(path)
    data = expect_object(read_json_file(path, max_bytes=max_bytes), path)
    factors = get_list(data, "factors", path)
    if factors is None:
        raise InputFileError(path, "no 'factors' list: not a factor_meta.json")
    file_is_c = data.get("source") == "backfill_scan" or "workspace_path" in data
    rows = [_row(entry, index, path, file_is_c=file_is_c) for index, entry in enumerate(factors)]
    return (
        pl.DataFrame(rows, schema=FACTOR_META_SCHEMA, orient="row")
        if rows
        else pl.DataFrame(schema=FACTOR_META_SCHEMA)
    )


def detect_variant(entry: dict[str, Any], *, file_is_c: bool) -> Variant:
    """Variant of one factor entry, by which keys it has."""
    if file_is_c:
        return "C"
    if "input_schema" in entry:
        return "A"
    has_d_keys = any(k in entry for k in _D_KEYS)
    has_a_keys = any(k in entry for k in _A_ONLY_KEYS)
    if has_d_keys and not has_a_keys:
        return "D"
    if has_d_keys:
        return "A"
    return "B"


def _row(entry: Any, index: int, path: Path, *, file_is_c: bool) -> list[Any]:
    where = f"factors[{index}]"
    if not isinstance(entry, dict):
        raise InputFileError(path, f"{where} must be an object, found {json_type(entry)}")
    raw_name = get_text(entry, "name", path, where=where)
    if raw_name is None or not raw_name.strip():
        raise InputFileError(path, f"{where}.name is missing or empty")
    text = {key: get_text(entry, key, path, where=where) for key in _TEXT_FIELDS}
    values: dict[str, Any] = {
        "name": normalise_factor_name(raw_name),
        "raw_name": raw_name,
        **text,
        "tags": get_str_list(entry, "tags", path, where=where),
        "variables_json": to_json_text(entry.get("variables")),
        "input_schema_json": to_json_text(get_object(entry, "input_schema", path, where=where)),
        "interface_info_json": to_json_text(get_object(entry, "interface_info", path, where=where)),
        "variant": detect_variant(entry, file_is_c=file_is_c),
    }
    return [values[column] for column in FACTOR_META_SCHEMA]
