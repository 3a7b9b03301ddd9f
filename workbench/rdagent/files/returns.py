"""`ret.pkl` (spec §7.1): Qlib's daily portfolio report, read through the restricted unpickler.

The result is one Polars frame shape shared with `ret_schema.*` (§7.3): `datetime` (Date) and the
9 Qlib columns as Float64 (absent ones null, NaN kept), sorted by date, one row per date.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl

from workbench.errors import InputFileError
from workbench.rdagent.files.limits import RETURNS_PICKLE
from workbench.rdagent.files.safe_pickle import load_dataframe_pickle

RETURN_COLUMNS: tuple[str, ...] = (
    "account",
    "return",
    "total_turnover",
    "turnover",
    "total_cost",
    "cost",
    "value",
    "cash",
    "bench",
)
RETURNS_SCHEMA: dict[str, Any] = {"datetime": pl.Date, **dict.fromkeys(RETURN_COLUMNS, pl.Float64)}


def read_returns(path: Path, *, max_bytes: int = RETURNS_PICKLE.max_bytes) -> pl.DataFrame:
    """Read a `ret.pkl` safely into the `RETURNS_SCHEMA` frame."""
    path = Path(path)
    frame = load_dataframe_pickle(path, max_bytes=max_bytes)
    return returns_frame_from_pandas(frame, path)


def returns_frame_from_pandas(frame: Any, path: Path) -> pl.DataFrame:
    """Convert a pandas report frame (DatetimeIndex or a `datetime` column) to `RETURNS_SCHEMA`."""
    import pandas as pd

    if frame.columns.has_duplicates:
        dup = frame.columns[frame.columns.duplicated()][0]
        raise InputFileError(path, f"column {dup!r} appears twice")
    if isinstance(frame.index, pd.DatetimeIndex):
        stamps = frame.index
    elif "datetime" in frame.columns:
        try:
            stamps = pd.DatetimeIndex(pd.to_datetime(frame["datetime"]))
        except (ValueError, TypeError) as exc:
            raise InputFileError(path, f"'datetime' column is not dates ({exc})") from None
    else:
        raise InputFileError(
            path, f"no DatetimeIndex and no 'datetime' column (index is {type(frame.index).__name__})"
        )
    columns = {"datetime": _dates(stamps, path)}
    present = [name for name in RETURN_COLUMNS if name in frame.columns]
    block = _float_block(frame, present)
    for i, name in enumerate(present):
        values = block[:, i] if block is not None else _floats(frame[name], name, path)
        columns[name] = pl.Series(name, values, dtype=pl.Float64, nan_to_null=False)
    days = columns["datetime"].to_numpy()
    if len(days) < 2 or bool((days[1:] > days[:-1]).all()):
        # the usual report: dates strictly increasing, so already what `normalise_returns_frame`
        # makes of it (no duplicates, sorted); build it in one step
        height = len(days)
        return pl.DataFrame(
            [columns["datetime"]]
            + [
                columns[name] if name in columns else pl.Series(name, [None] * height, dtype=pl.Float64)
                for name in RETURN_COLUMNS
            ]
        )
    return normalise_returns_frame(pl.DataFrame(columns), path)


def _float_block(frame: Any, names: list[str]) -> npt.NDArray[np.float64] | None:
    """All wanted columns as one float64 array when they already are float64 (the usual case)."""
    dtypes = dict(zip(frame.columns, frame.dtypes.tolist(), strict=True))
    if not names or any(str(dtypes[name]) != "float64" for name in names):
        return None
    block: npt.NDArray[np.float64] = frame[names].to_numpy(dtype="float64")
    return block


def normalise_returns_frame(frame: pl.DataFrame, path: Path) -> pl.DataFrame:
    """Add missing columns as null, cast, reject null/duplicate dates, sort by date."""
    if "datetime" not in frame.columns:
        raise InputFileError(path, "no 'datetime' column")
    if frame["datetime"].null_count():
        raise InputFileError(path, "a row has no date (NaT/null datetime)")
    if frame["datetime"].is_sorted() and frame["datetime"].n_unique() == frame.height:
        dup = frame["datetime"].head(0)
    else:
        dup = frame.filter(pl.col("datetime").is_duplicated())["datetime"]
    if len(dup):
        raise InputFileError(path, f"date {dup[0]} appears {int((frame['datetime'] == dup[0]).sum())} times")
    out = frame.select(
        pl.col("datetime").cast(pl.Date),
        *[
            pl.col(name).cast(pl.Float64)
            if name in frame.columns
            else pl.lit(None, dtype=pl.Float64).alias(name)
            for name in RETURN_COLUMNS
        ],
    )
    return out.sort("datetime")


def _dates(stamps: Any, path: Path) -> pl.Series:
    """Trading dates of a DatetimeIndex (tz-aware ones at their own wall time); times must be midnight."""
    if stamps.tz is not None:
        stamps = stamps.tz_localize(None)
    if stamps.hasnans:
        raise InputFileError(path, "the datetime index has NaT entries")
    days = stamps.to_numpy().astype("datetime64[D]")
    off_midnight = days.astype(stamps.dtype) != stamps.to_numpy()
    if off_midnight.any():
        raise InputFileError(
            path, f"the datetime index has a time of day ({stamps[off_midnight][0]}); expected daily dates"
        )
    return pl.Series("datetime", days).cast(pl.Date)


def _floats(column: Any, name: str, path: Path) -> npt.NDArray[np.float64]:
    """A column as float64; object/string columns must hold numbers (None/NaN allowed)."""
    import pandas as pd

    if pd.api.types.is_bool_dtype(column.dtype) or not pd.api.types.is_numeric_dtype(column.dtype):
        numeric = pd.to_numeric(column, errors="coerce")
        broken = numeric.isna() & column.notna()
        if broken.any():
            raise InputFileError(path, f"column {name!r} has a non-numeric value: {column[broken].iloc[0]!r}")
        column = numeric
    values: npt.NDArray[np.float64] = column.to_numpy(dtype="float64", na_value=np.nan)
    return values
