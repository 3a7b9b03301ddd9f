"""ret.pkl: the restricted unpickler loads real pandas pickles and refuses everything else."""

from __future__ import annotations

import builtins
import csv
import math
import pickle
import struct
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pytest

from workbench.errors import InputFileError, UnsafePickleError
from workbench.rdagent.files.returns import RETURN_COLUMNS, RETURNS_SCHEMA, read_returns
from workbench.rdagent.files.safe_pickle import load_dataframe_pickle

FIXTURES = Path(__file__).parent / "fixtures" / "pickles"
PICKLES = sorted(FIXTURES.glob("ret_*.pkl"))


def _expected() -> list[dict]:
    with (FIXTURES / "expected_ret.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    return [
        {"datetime": date.fromisoformat(r["datetime"]), **{c: float(r[c]) for c in RETURN_COLUMNS}} for r in rows
    ]


def _same(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return (math.isnan(a) and math.isnan(b)) or a == b


def _reduce_pickle(module: str, name: str, args: tuple) -> bytes:
    """A protocol-2 pickle that calls module.name(*args) when loaded (spelled by hand)."""
    body = pickle.dumps(args, protocol=2)
    return b"\x80\x02c" + f"{module}\n{name}\n".encode() + body[2:-1] + b"R."


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def _frame(index: pd.Index, **columns: list) -> pd.DataFrame:
    return pd.DataFrame(columns, index=index)


def test_fixture_set_covers_every_generation():
    names = {p.name for p in PICKLES}
    for tag in ("pandas1.5.3_numpy1.26.4", "pandas2.2.3_numpy1.26.4", "pandas2.2.3_numpy2.2.6", "pandas3.1.1_numpy2.4.6"):
        for suffix in ("", "_protocol4", "_objectcol", "_rangeindex"):
            assert f"ret_{tag}{suffix}.pkl" in names


@pytest.mark.parametrize("path", PICKLES, ids=[p.name for p in PICKLES])
def test_fixture_pickles_load_with_expected_values(path: Path):
    frame = read_returns(path)
    assert frame.schema == pl.Schema(RETURNS_SCHEMA)
    expected = _expected()
    assert frame.height == len(expected) == 5
    for got, want in zip(frame.to_dicts(), expected, strict=True):
        assert got["datetime"] == want["datetime"]
        for column in RETURN_COLUMNS:
            assert _same(got[column], want[column]), (path.name, column, got[column], want[column])
    assert math.isnan(frame["bench"][0])  # NaN stays NaN, it is not turned into null


@pytest.mark.parametrize("path", PICKLES, ids=[p.name for p in PICKLES])
def test_fixture_pickles_are_dataframes(path: Path):
    frame = load_dataframe_pickle(path)
    assert isinstance(frame, pd.DataFrame)
    assert set(RETURN_COLUMNS) <= set(frame.columns)


# --------------------------------------------------------------------------- malicious pickles


@pytest.mark.parametrize(
    ("module", "name", "make_args"),
    [
        ("os", "system", lambda side: (f"touch {side}",)),
        ("posix", "system", lambda side: (f"touch {side}",)),
        ("builtins", "open", lambda side: (str(side), "w")),
        ("io", "open", lambda side: (str(side), "w")),
        ("subprocess", "Popen", lambda side: (["touch", str(side)],)),
        ("builtins", "exec", lambda side: (f"open({str(side)!r}, 'w').close()",)),
        ("builtins", "eval", lambda side: (f"open({str(side)!r}, 'w')",)),
    ],
)
def test_code_running_pickles_are_refused_without_side_effect(tmp_path: Path, module, name, make_args):
    side = tmp_path / "side_effect"
    path = _write(tmp_path, "ret.pkl", _reduce_pickle(module, name, make_args(side)))
    with pytest.raises(UnsafePickleError) as info:
        read_returns(path)
    assert f"pickle references {module}.{name}, which is not allowed in a return series" in str(info.value)
    assert info.value.path == str(path)
    assert not side.exists()


def test_control_the_malicious_pickle_really_acts_when_loaded_unrestricted(tmp_path: Path):
    # Proves the side-effect checks above are meaningful: plain pickle does create the file.
    side = tmp_path / "side_effect"
    pickle.loads(_reduce_pickle("builtins", "exec", (f"open({str(side)!r}, 'w').close()",)))
    assert side.exists()


def test_reduce_to_pandas_read_pickle_is_refused(tmp_path: Path):
    side = tmp_path / "side_effect"
    inner = _write(tmp_path, "inner.pkl", _reduce_pickle("builtins", "exec", (f"open({str(side)!r}, 'w').close()",)))
    outer = _write(tmp_path, "ret.pkl", _reduce_pickle("pandas.io.pickle", "read_pickle", (str(inner),)))
    with pytest.raises(UnsafePickleError, match=r"pandas\.io\.pickle\.read_pickle"):
        read_returns(outer)
    assert not side.exists()


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("builtins", "getattr"),
        ("builtins", "__import__"),
        ("pandas", "read_pickle"),
        ("pandas", "eval"),
        ("numpy", "load"),
        ("copyreg", "_reconstructor"),
        ("pandas.core.series", "Series"),
        ("pyarrow.lib", "unpickle_extension_type"),
    ],
)
def test_other_globals_are_refused(tmp_path: Path, module: str, name: str):
    path = _write(tmp_path, "ret.pkl", _reduce_pickle(module, name, ("x",)))
    with pytest.raises(UnsafePickleError, match=f"{module}.{name}"):
        load_dataframe_pickle(path)


class _Evil:
    def __init__(self, side: Path) -> None:
        self.side = side

    def __reduce__(self):
        return (builtins.exec, (f"open({str(self.side)!r}, 'w').close()",))


def test_evil_object_hidden_in_an_object_column_is_refused(tmp_path: Path):
    side = tmp_path / "side_effect"
    index = pd.DatetimeIndex(pd.to_datetime(["2024-07-01"]), name="datetime")
    frame = pd.DataFrame({"account": [1.0], "cash": pd.Series([_Evil(side)], index=index, dtype=object)}, index=index)
    path = _write(tmp_path, "ret.pkl", pickle.dumps(frame, protocol=5))
    with pytest.raises(UnsafePickleError, match=r"builtins\.exec"):
        read_returns(path)
    assert not side.exists()


def test_allowed_helpers_refuse_arguments_outside_string_data(tmp_path: Path):
    huge = _write(tmp_path, "a.pkl", _reduce_pickle("builtins", "bytearray", (10**12,)))
    with pytest.raises(UnsafePickleError, match="bytearray"):
        load_dataframe_pickle(huge)
    arrow = _write(tmp_path, "b.pkl", _reduce_pickle("pyarrow.lib", "type_for_alias", ("int64",)))
    with pytest.raises(UnsafePickleError, match="int64"):
        load_dataframe_pickle(arrow)


def test_persistent_ids_are_refused(tmp_path: Path):
    path = _write(tmp_path, "ret.pkl", b"\x80\x02Pabc\n.")
    with pytest.raises(UnsafePickleError, match="persistent"):
        load_dataframe_pickle(path)


# --------------------------------------------------------------------------- damaged / wrong content


def test_truncated_pickle_is_an_input_error(tmp_path: Path):
    data = PICKLES[0].read_bytes()
    path = _write(tmp_path, "ret.pkl", data[: len(data) // 2])
    with pytest.raises(InputFileError, match="truncated") as info:
        read_returns(path)
    assert not isinstance(info.value, UnsafePickleError)


def test_pickled_dict_is_not_a_dataframe(tmp_path: Path):
    path = _write(tmp_path, "ret.pkl", pickle.dumps({"account": [1.0, 2.0]}, protocol=4))
    with pytest.raises(InputFileError, match="holds a dict, not a pandas DataFrame"):
        read_returns(path)


def test_empty_and_oversized_files(tmp_path: Path):
    with pytest.raises(InputFileError, match="empty"):
        read_returns(_write(tmp_path, "empty.pkl", b""))
    with pytest.raises(InputFileError, match="limit"):
        read_returns(PICKLES[0], max_bytes=100)
    with pytest.raises(InputFileError, match="does not exist"):
        read_returns(tmp_path / "missing.pkl")


def test_unsorted_frame_is_sorted_and_missing_columns_are_null(tmp_path: Path):
    index = pd.DatetimeIndex(pd.to_datetime(["2024-07-03", "2024-07-01"]), name="datetime")
    frame = _frame(index, account=[3.0, 1.0], bench=[0.5, np.nan])
    frame.to_pickle(tmp_path / "ret.pkl")
    out = read_returns(tmp_path / "ret.pkl")
    assert out["datetime"].to_list() == [date(2024, 7, 1), date(2024, 7, 3)]
    assert out["account"].to_list() == [1.0, 3.0]
    assert out["cash"].to_list() == [None, None]
    assert out.schema == pl.Schema(RETURNS_SCHEMA)


def test_duplicate_dates_are_rejected(tmp_path: Path):
    index = pd.DatetimeIndex(pd.to_datetime(["2024-07-01", "2024-07-01"]), name="datetime")
    _frame(index, account=[1.0, 2.0]).to_pickle(tmp_path / "ret.pkl")
    with pytest.raises(InputFileError, match="2024-07-01 appears 2 times"):
        read_returns(tmp_path / "ret.pkl")


def test_times_of_day_and_non_numeric_values_are_rejected(tmp_path: Path):
    intraday = pd.DatetimeIndex(pd.to_datetime(["2024-07-01 09:30"]), name="datetime")
    _frame(intraday, account=[1.0]).to_pickle(tmp_path / "a.pkl")
    with pytest.raises(InputFileError, match="time of day"):
        read_returns(tmp_path / "a.pkl")
    daily = pd.DatetimeIndex(pd.to_datetime(["2024-07-01"]), name="datetime")
    _frame(daily, account=pd.Series(["lots"], index=daily, dtype=object)).to_pickle(tmp_path / "b.pkl")
    with pytest.raises(InputFileError, match="non-numeric value: 'lots'"):
        read_returns(tmp_path / "b.pkl")


def test_frame_without_dates_is_rejected(tmp_path: Path):
    pd.DataFrame({"account": [1.0]}).to_pickle(tmp_path / "ret.pkl")
    with pytest.raises(InputFileError, match="no DatetimeIndex"):
        read_returns(tmp_path / "ret.pkl")


@pytest.mark.parametrize("name", ["ret_pandas3.1.1_numpy2.4.6.pkl", "ret_pandas3.1.1_numpy2.4.6_protocol4.pkl"])
def test_arrow_labels_with_bad_offsets_are_rejected_not_read_out_of_bounds(tmp_path: Path, name: str):
    # pandas 3 stores the column labels as an Arrow string array: offsets buffer + data buffer.
    lengths = [len(c) for c in RETURN_COLUMNS]
    offsets = [sum(lengths[:i]) for i in range(len(lengths) + 1)]
    good = struct.pack(f"<{len(offsets)}q", *offsets)
    bad = struct.pack(f"<{len(offsets)}q", *offsets[:-1], 10**9)  # last label ends far past the data
    data = (FIXTURES / name).read_bytes()
    assert data.count(good) == 1
    path = _write(tmp_path, "ret.pkl", data.replace(good, bad))
    with pytest.raises(InputFileError, match="not a readable pickle"):
        read_returns(path)
