"""ret.pkl: the restricted unpickler loads real pandas pickles and refuses everything else."""

from __future__ import annotations

import builtins
import copyreg
import csv
import datetime as dt
import io
import math
import os
import pickle
import re
import struct
import subprocess
import sys
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pytest
from numpy._core.multiarray import _reconstruct
from numpy._core.numeric import _frombuffer
from pandas._libs.tslibs.timestamps import _unpickle_timestamp
from pandas.core.indexes.base import _new_Index
from pandas.core.indexes.datetimes import _new_DatetimeIndex

from workbench.errors import InputFileError, UnsafePickleError
from workbench.rdagent.files.returns import RETURN_COLUMNS, RETURNS_SCHEMA, read_returns
from workbench.rdagent.files.safe_pickle import MAX_OPCODES, RestrictedUnpickler, load_dataframe_pickle

FIXTURES = Path(__file__).parent / "fixtures" / "pickles"
PICKLES = sorted(FIXTURES.glob("ret_*.pkl"))


def _expected() -> list[dict]:
    with (FIXTURES / "expected_ret.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    return [
        {"datetime": date.fromisoformat(r["datetime"]), **{c: float(r[c]) for c in RETURN_COLUMNS}}
        for r in rows
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
    for tag in (
        "pandas1.5.3_numpy1.26.4",
        "pandas2.2.3_numpy1.26.4",
        "pandas2.2.3_numpy2.2.6",
        "pandas3.1.1_numpy2.4.6",
    ):
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
    inner = _write(
        tmp_path, "inner.pkl", _reduce_pickle("builtins", "exec", (f"open({str(side)!r}, 'w').close()",))
    )
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
    frame = pd.DataFrame(
        {"account": [1.0], "cash": pd.Series([_Evil(side)], index=index, dtype=object)}, index=index
    )
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


@pytest.mark.parametrize(
    "name", ["ret_pandas3.1.1_numpy2.4.6.pkl", "ret_pandas3.1.1_numpy2.4.6_protocol4.pkl"]
)
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


# --------------------------------------------------------------------------- reviewer's holes (BUILD, dtype, ndarray, tz, cls)

REPO = Path(__file__).resolve().parent.parent
_ORIGINAL_HAS_DUPLICATES = pd.Index.__dict__["has_duplicates"]
_F8_STATE = (3, "<", None, None, None, -1, -1, 0)  # what numpy writes for a plain float64 dtype
_N_HUGE = 300_000_000  # rows a zero-stride array would fake from 8 bytes (the reviewer's 11 GB RSS)


class _R:
    """Pickles as `func(*args)`, then BUILD(state) if a state is given (spells hostile pickles)."""

    def __init__(self, func, args: tuple, state=None) -> None:
        self.func, self.args, self.state = func, args, state

    def __reduce__(self):
        return (self.func, self.args) if self.state is None else (self.func, self.args, self.state)


class _New:
    """Pickles as NEWOBJ of `cls` (no arguments), then BUILD(state) if a state is given."""

    def __init__(self, cls: type, state=None) -> None:
        self.cls, self.state = cls, state


class _HostilePickler(pickle._Pickler):
    """Pickles `_R`/`_New` as written and lets `swap(obj)` replace how chosen parts of a genuine frame pickle."""

    def __init__(self, file, swap=None) -> None:
        super().__init__(file, protocol=4)
        self._swap = swap

    def reducer_override(self, obj):
        return NotImplemented if self._swap is None else self._swap(obj)

    def save(self, obj, save_persistent_id=True):
        if isinstance(obj, _New):  # obj=None skips pickle's "args[0] is obj's class" check
            return self.save_reduce(copyreg.__newobj__, (obj.cls,), obj.state, obj=None)
        return super().save(obj, save_persistent_id)


def _dumps(obj, swap=None) -> bytes:
    buf = io.BytesIO()
    _HostilePickler(buf, swap).dump(obj)
    return buf.getvalue()


def _dtype(spec: str, state=None) -> _R:
    return _R(np.dtype, (spec, False, True), state)


def _report_frame(*, object_cash: bool = False) -> pd.DataFrame:
    index = pd.DatetimeIndex(pd.to_datetime(["2024-07-01", "2024-07-02", "2024-07-03"]), name="datetime")
    frame = pd.DataFrame({"account": [1.0, 2.0, 3.0], "return": [0.1, 0.2, 0.3]}, index=index)
    if object_cash:
        frame["cash"] = pd.Series([1.0, 2.0, 3.0], index=index, dtype=object)
    return frame


def _swap_dtype(dtype: np.dtype, reduce_value):
    return lambda obj: reduce_value if isinstance(obj, np.dtype) and obj == dtype else NotImplemented


def _swap_float_block(reduce_value):
    """Replace the 2-d float64 block of a frame by `reduce_value` (the index and labels stay genuine)."""
    return lambda obj: (
        reduce_value
        if type(obj) is np.ndarray and obj.ndim == 2 and obj.dtype == np.float64
        else NotImplemented
    )


_ISOLATED_LOADER = """
import sys
from pathlib import Path
from workbench.errors import InputFileError, UnsafePickleError
from workbench.rdagent.files.returns import read_returns
for arg in sys.argv[1:]:
    try:
        frame = read_returns(Path(arg))
        print("LOADED", frame.height, flush=True)
    except UnsafePickleError as exc:
        print("REFUSED", exc.reason, flush=True)
    except InputFileError as exc:
        print("ERROR", exc.reason, flush=True)
"""


def _load_isolated(paths: list[Path], *, address_space: int | None = None) -> list[str]:
    """read_returns on each path in a child process: a segfault or runaway allocation fails the test, not pytest."""

    def limit() -> None:
        if address_space is not None:
            import resource

            resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))

    env = {**os.environ, "PYTHONPATH": str(REPO), "ARROW_DEFAULT_MEMORY_POOL": "system"}
    result = subprocess.run(
        [sys.executable, "-c", _ISOLATED_LOADER, *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
        env=env,
        preexec_fn=limit,
    )
    assert result.returncode == 0, f"loader died with {result.returncode}: {result.stderr[-2000:]}"
    lines = result.stdout.splitlines()
    assert len(lines) == len(paths), (lines, result.stderr[-2000:])
    return lines


def test_control_structured_dtype_state_is_accepted_by_plain_pickle():
    # The hole behind #1: plain pickle lets a BUILD give a dtype any fields, here one 1 MiB past an 8-byte item.
    evil = pickle.loads(
        _dumps(_dtype("V8", (3, "|", None, ("x",), {"x": (np.dtype("<f8"), 1 << 20)}, 8, 1, 0)))
    )
    assert evil.itemsize == 8 and evil.fields["x"][1] == 1 << 20


def test_hostile_dtype_states_are_refused_in_a_child_that_does_not_crash(tmp_path: Path):
    n = 4
    dates = (np.datetime64("2024-01-01", "D") + np.arange(n)).astype("M8[ns]")
    index = _R(pd.DatetimeIndex, (_R(_frombuffer, (dates.tobytes(), _dtype("<M8[ns]"), (n,), "C")),))

    def reviewer_frame(field_dtype, offset: int, data: bytes) -> bytes:  # /tmp/rev/mk.py, verbatim
        record = _dtype("V8", (3, "|", None, ("return",), {"return": (field_dtype, offset)}, 8, 1, 0))
        return _dumps(_R(pd.DataFrame, (_R(np.ndarray, ((n,), record, data)), index)))

    structured = (3, "<", None, ("return",), {"return": (np.dtype("<i8"), 1 << 20)}, 8, 1, 0)
    cases = {  # name: (pickle, what the refusal names)
        "oob": (reviewer_frame(_dtype("<f8"), 1 << 20, b"\0" * 8 * n), "numpy dtype 'V8'"),
        "objptr": (
            reviewer_frame(_dtype("|O"), 0, (0x4141414141414141).to_bytes(8, "little") * n),
            "numpy dtype 'V8'",
        ),
        # genuine report frames whose dtype state alone is hostile
        "f8_fields": (
            _dumps(_report_frame(), _swap_dtype(np.dtype("f8"), (np.dtype, ("f8", False, True), structured))),
            "numpy dtype 'f8' the names ('return',)",
        ),
        "f8_elsize": (
            _dumps(
                _report_frame(),
                _swap_dtype(
                    np.dtype("f8"), (np.dtype, ("f8", False, True), (3, "<", None, None, None, 4096, 8, 0))
                ),
            ),
            "numpy dtype 'f8' the elsize 4096",
        ),
        "f8_byteorder": (
            _dumps(
                _report_frame(),
                _swap_dtype(
                    np.dtype("f8"), (np.dtype, ("f8", False, True), (3, ">", None, None, None, -1, -1, 0))
                ),
            ),
            "numpy dtype 'f8' the byte order '>'",
        ),
        "object_flags0": (
            _dumps(
                _report_frame(object_cash=True),
                _swap_dtype(
                    np.dtype("O"), (np.dtype, ("O8", False, True), (3, "|", None, None, None, -1, -1, 0))
                ),
            ),
            "numpy dtype 'O8' the flags 0",
        ),
        "datetime_unit": (
            _dumps(
                _report_frame(),
                _swap_dtype(
                    np.dtype("M8[us]"),
                    (
                        np.dtype,
                        ("M8", False, True),
                        (4, "<", None, None, None, -1, -1, 0, (None, (b"Y", 1, 1, 1))),
                    ),
                ),
            ),
            "datetime metadata",
        ),
        "datetime_metadata": (
            _dumps(
                _report_frame(),
                _swap_dtype(
                    np.dtype("M8[us]"),
                    (
                        np.dtype,
                        ("M8", False, True),
                        (4, "<", None, None, None, -1, -1, 0, ({"evil": 1}, (b"us", 1, 1, 1))),
                    ),
                ),
            ),
            "datetime metadata",
        ),
        "shared_singleton": (
            _dumps(_report_frame(), _swap_dtype(np.dtype("f8"), (np.dtype, ("f8", False, False), _F8_STATE))),
            "copy=False",
        ),
        "unicode": (_dumps(_dtype("U4", (3, "<", None, None, None, 4096, 4, 8))), "numpy dtype 'U4'"),
    }
    paths = [_write(tmp_path, f"{name}.pkl", data) for name, (data, _) in cases.items()]
    for (name, (_, expected)), line in zip(cases.items(), _load_isolated(paths), strict=True):
        assert line.startswith("REFUSED ") and expected in line, (name, line)


def test_build_on_a_class_is_refused_and_does_not_patch_pandas(tmp_path: Path):
    # /tmp/rev/poison.py: GLOBAL pandas.Index, BUILD (None, {'has_duplicates': False}), POP, then a real frame.
    head = b"\x80\x04" + b"cpandas\nIndex\n" + b"N}X\x0e\x00\x00\x00has_duplicates\x89s\x86" + b"b0"
    good = pd.DataFrame({"return": [0.1]}, index=pd.DatetimeIndex(["2024-01-01"], name="datetime"))
    poison = _write(tmp_path, "poison.pkl", head + pickle.dumps(good, protocol=4)[2:])
    with pytest.raises(
        UnsafePickleError, match=r"sets the state \(BUILD\) of the class pandas\.Index"
    ) as info:
        read_returns(poison)
    assert info.value.path == str(poison)
    assert pd.Index.__dict__["has_duplicates"] is _ORIGINAL_HAS_DUPLICATES
    assert isinstance(pd.Index.__dict__["has_duplicates"], property)
    dup = pd.DataFrame(
        np.ones((2, 2)), index=pd.DatetimeIndex(["2024-01-01", "2024-01-02"]), columns=["return", "return"]
    )
    with pytest.raises(InputFileError, match="column 'return' appears twice"):
        read_returns(_write(tmp_path, "dup.pkl", pickle.dumps(dup, protocol=4)))


def _build_on_global(module: str, name: str, state) -> bytes:
    return b"\x80\x02c" + f"{module}\n{name}\n".encode() + pickle.dumps(state, protocol=2)[2:-1] + b"b."


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            _build_on_global("pandas", "DataFrame", (None, {"__init__": None})),
            "of the class pandas.DataFrame",
        ),
        (_build_on_global("numpy", "ndarray", {"x": 1}), "of the class numpy.ndarray"),
        (_build_on_global("numpy", "dtype", {"x": 1}), "of the callable numpy.dtype"),
        (
            _build_on_global("pandas.core.indexes.base", "_new_Index", {"__code__": None}),
            "callable pandas.core.indexes",
        ),
        (b"\x80\x02}}b.", "of a builtins.dict object"),
        (_dumps(_R(slice, (1,), {"start": 5})), "of a builtins.slice object"),
    ],
    ids=["class-slotstate", "ndarray-class", "dtype-class", "function", "dict", "slice"],
)
def test_build_on_anything_but_a_fresh_allow_listed_object_is_refused(
    tmp_path: Path, data: bytes, message: str
):
    with pytest.raises(UnsafePickleError, match=re.escape(message)):
        load_dataframe_pickle(_write(tmp_path, "ret.pkl", data))


def test_slot_state_and_second_build_on_a_frame_are_refused(tmp_path: Path):
    slot_state = _dumps(_New(pd.DataFrame, (None, {"_mgr": None})))
    with pytest.raises(UnsafePickleError, match="gives a DataFrame the state"):
        load_dataframe_pickle(_write(tmp_path, "a.pkl", slot_state))
    genuine = pickle.dumps(_report_frame(), protocol=4)
    twice = genuine[:-1] + pickle.dumps({"_typ": "dataframe"}, protocol=2)[2:-1] + b"b."
    with pytest.raises(UnsafePickleError, match="BUILD"):
        load_dataframe_pickle(_write(tmp_path, "b.pkl", twice))


def test_hostile_arrays_are_refused_without_allocating(tmp_path: Path):
    f8 = _dtype("f8", _F8_STATE)
    m8 = _dtype("M8", (4, "<", None, None, None, -1, -1, 0, (None, (b"ns", 1, 1, 1))))
    zero = b"\0" * 8
    huge = (2, _N_HUGE)  # the 2-d float block of a 2-column frame, faked from 8 bytes
    big = (2, 20_000_000)  # under the element cap: only the exact data length stops it
    # /tmp/rev/amp.py (195 bytes → 11 GB RSS before), spelled with dtype specs that are allowed
    amp = _R(
        pd.DataFrame,
        (
            {"return": _R(np.ndarray, ((_N_HUGE,), f8, zero, 0, (0,)))},
            _R(pd.DatetimeIndex, (_R(np.ndarray, ((_N_HUGE,), m8, zero, 0, (0,))),)),
        ),
    )
    blocks = {  # how the float block of a genuine report frame is pickled instead
        "ndarray_call": (np.ndarray, (huge, np.dtype("f8"), zero, 0, (0, 0))),
        "reconstruct_huge": (_reconstruct, (np.ndarray, (0,), b"b"), (1, huge, np.dtype("f8"), False, zero)),
        "reconstruct_short": (_reconstruct, (np.ndarray, (0,), b"b"), (1, big, np.dtype("f8"), False, zero)),
        "reconstruct_objects": (
            _reconstruct,
            (np.ndarray, (0,), b"b"),
            (1, big, np.dtype("O"), False, [1.0]),
        ),
        "frombuffer_huge": (_frombuffer, (zero, np.dtype("f8"), huge, "C")),
        "frombuffer_short": (_frombuffer, (zero, np.dtype("f8"), big, "C")),
        "zero_dim": (_frombuffer, (b"", np.dtype("f8"), (0, 10**12), "C")),
    }
    huge_range = (_new_Index, (pd.RangeIndex, {"name": None, "start": 0, "stop": 10**12, "step": 1}))
    cases = {name: _dumps(_report_frame(), _swap_float_block(value)) for name, value in blocks.items()}
    cases["reviewer_amp"] = _dumps(amp)
    cases["range_index"] = _dumps(
        pd.DataFrame({"return": [0.1]}),
        lambda obj: huge_range if type(obj) is pd.RangeIndex else NotImplemented,
    )
    cases["bytearray8"] = b"\x80\x05\x96" + struct.pack("<Q", 1 << 40) + b"."  # claims 1 TiB
    cases["opcode_flood"] = b"\x80\x04" + b"}" * (MAX_OPCODES + 10) + b"."  # ~70 bytes of dict per byte
    expected = {
        "ndarray_call": "REFUSED pickle calls the class numpy.ndarray, which is not callable",
        "reconstruct_huge": "REFUSED pickle gives a numpy array the shape (2, 300000000), over the limit",
        "reconstruct_short": "8 bytes of data; it needs exactly 320000000",
        "reconstruct_objects": "REFUSED pickle gives an object array of 40000000 elements",
        "frombuffer_huge": "REFUSED pickle gives an array read from a buffer the shape (2, 300000000), over the limit",
        "frombuffer_short": "from 8 bytes; it needs exactly 320000000",
        "zero_dim": "over the limit of 50000000 elements",
        "reviewer_amp": "REFUSED pickle calls the class numpy.ndarray, which is not callable",
        "range_index": "REFUSED pickle builds a RangeIndex",
        "bytearray8": "ERROR truncated pickle (a byte array of 1099511627776 bytes",
        "opcode_flood": f"REFUSED pickle has more than {MAX_OPCODES} opcodes",
    }
    paths = [_write(tmp_path, f"{name}.pkl", cases[name]) for name in expected]
    assert max(len(cases[name]) for name in expected if name != "opcode_flood") < 2000
    lines = _load_isolated(paths, address_space=2 << 30)
    for (name, message), line in zip(expected.items(), lines, strict=True):
        assert message in line and "MemoryError" not in line, (name, line)
        assert line.startswith("ERROR " if name == "bytearray8" else "REFUSED "), (name, line)


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        (_R(pd.DatetimeTZDtype, ("ns", "dateutil//etc/passwd")), "time zone 'dateutil//etc/passwd'"),
        (
            _New(pd.DatetimeTZDtype, {"unit": "ns", "tz": "dateutil//etc/passwd"}),
            "time zone 'dateutil//etc/passwd'",
        ),
        (_New(pd.DatetimeTZDtype, {"unit": "ns", "tz": "../../etc/passwd"}), "time zone '../../etc/passwd'"),
        (_R(pd.DatetimeTZDtype, ("D", "UTC")), "time unit 'D'"),
        (_R(_unpickle_timestamp, (0, None, "dateutil//etc/passwd", 10)), "time zone 'dateutil//etc/passwd'"),
        (
            _R(
                _new_DatetimeIndex,
                (
                    pd.DatetimeIndex,
                    {"data": np.zeros(1, "M8[ns]"), "tz": "dateutil//etc/passwd", "freq": None},
                ),
            ),
            "time zone 'dateutil//etc/passwd'",
        ),
    ],
    ids=["reduce", "build", "relative-path", "unit", "timestamp", "index"],
)
def test_time_zones_outside_utc_iana_and_fixed_offsets_are_refused(tmp_path: Path, obj, message: str):
    with pytest.raises(UnsafePickleError, match=re.escape(message)):
        load_dataframe_pickle(_write(tmp_path, "ret.pkl", _dumps(obj)))


@pytest.mark.parametrize("tz", ["UTC", "Asia/Shanghai", "+08:00"])
@pytest.mark.parametrize("how", ["reduce", "build"])
def test_time_zone_dtypes_that_are_allowed(tmp_path: Path, tz: str, how: str):
    value = dt.timezone(dt.timedelta(hours=8)) if tz == "+08:00" else tz
    obj = (
        _R(pd.DatetimeTZDtype, ("ns", value))
        if how == "reduce"
        else _New(pd.DatetimeTZDtype, {"unit": "ns", "tz": value})
    )
    with pytest.raises(InputFileError, match="holds a DatetimeTZDtype, not a pandas DataFrame") as info:
        load_dataframe_pickle(_write(tmp_path, "ret.pkl", _dumps(obj)))  # the dtype itself was rebuilt
    assert not isinstance(info.value, UnsafePickleError)


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        (
            _R(_new_Index, (pd.DataFrame, {"data": np.array(["a"], dtype=object), "name": None})),
            "the class pandas.DataFrame as the class of an index",
        ),
        (
            _R(_new_Index, (pd.DatetimeIndex, {"data": np.zeros(1, "M8[ns]"), "name": None})),
            "the class pandas.DatetimeIndex as the class of an index",
        ),
        (
            _R(_new_Index, (np.ndarray, {"data": np.array([1.0]), "name": None})),
            "the class numpy.ndarray as the class of an index",
        ),
        (
            _R(_new_DatetimeIndex, (pd.Index, {"data": np.zeros(1, "M8[ns]"), "name": None, "freq": None})),
            "the class pandas.Index as the class of a datetime index",
        ),
        (
            _R(_new_DatetimeIndex, ("pandas.DatetimeIndex", {"data": np.zeros(1, "M8[ns]")})),
            "a builtins.str object as the class of a datetime index",
        ),
    ],
    ids=["frame", "datetimeindex-via-new-index", "ndarray", "index-via-new-datetimeindex", "str"],
)
def test_index_rebuilders_only_take_index_classes(tmp_path: Path, obj, message: str):
    with pytest.raises(UnsafePickleError, match=re.escape(message)):
        load_dataframe_pickle(_write(tmp_path, "ret.pkl", _dumps(obj)))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (_dumps(_R(pd.Index, (["a"],))), "calls the class pandas.Index, which is not callable"),
        (
            _dumps(_R(pd.DataFrame, ({"return": [1.0]},))),
            "calls the class pandas.DataFrame, which is not callable",
        ),
        (_dumps(_New(pd.Index)), "creates an instance of the class pandas.Index (NEWOBJ)"),
        (b"\x80\x02(ipandas\nDataFrame\n.", "INST opcode"),
        (b"\x80\x02(cpandas\nDataFrame\no.", "OBJ opcode"),
        (b"\x80\x02\x82\x01.", "EXT1 opcode"),
        (b"\x80\x05\x97.", "NEXT_BUFFER opcode"),
        (b"\x80\x02cbuiltins\nbytearray\nC\x01x\x85R(K\x01e.", "APPENDS on a builtins.bytearray object"),
        (b"\x80\x02cpandas\nDataFrame\n)\x81(X\x01\x00\x00\x00aK\x01u.", "SETITEMS on a pandas DataFrame"),
        (_dumps(_R(_reconstruct, (np.ndarray, (5,), b"b"))), "numpy _reconstruct with (5,)"),
        (
            _dumps(
                _R(_frombuffer, (b"\0" * 8, _dtype("O8", (3, "|", None, None, None, -1, -1, 63)), (1,), "C"))
            ),
            "object dtype",
        ),
    ],
    ids=[
        "reduce-index",
        "reduce-frame",
        "newobj-index",
        "inst",
        "obj",
        "ext1",
        "next-buffer",
        "appends",
        "setitems",
        "reconstruct",
        "frombuffer-objects",
    ],
)
def test_opcodes_and_calls_outside_a_dataframe_pickle_are_refused(tmp_path: Path, data: bytes, message: str):
    with pytest.raises(UnsafePickleError, match=re.escape(message)):
        load_dataframe_pickle(_write(tmp_path, "ret.pkl", data))


def test_stdlib_unpickler_dispatch_is_left_alone():
    assert RestrictedUnpickler.dispatch is not pickle._Unpickler.dispatch
    assert pickle._Unpickler.dispatch[pickle.BUILD[0]] is pickle._Unpickler.load_build
    assert pickle._Unpickler.dispatch[pickle.REDUCE[0]] is pickle._Unpickler.load_reduce


def _current_frames() -> dict[str, pd.DataFrame]:
    dates = pd.to_datetime(["2024-07-01", "2024-07-02", "2024-07-03"])
    base = {"account": [1.0, 2.0, 3.0], "return": [0.1, np.nan, 0.3]}
    mixed = pd.DataFrame(
        {
            **base,
            "step": np.arange(3, dtype="i8"),
            "flag": [True, False, True],
            "cash": pd.Series([1.0, None, "3"], dtype=object).to_numpy(),
            "f4": np.ones(3, "f4"),
        },
        index=pd.DatetimeIndex(dates, name="datetime"),
    )
    return {
        "float": pd.DataFrame(base, index=pd.DatetimeIndex(dates, name="datetime")),
        "mixed": mixed,
        "freq": pd.DataFrame(base, index=pd.date_range("2024-07-01", periods=3, freq="B", name="datetime")),
        "freq_day_ns": pd.DataFrame(base, index=pd.date_range("2024-07-01", periods=3, freq="D", unit="ns")),
        "utc": pd.DataFrame(base, index=pd.date_range("2024-07-01", periods=3, tz="UTC", name="datetime")),
        "utc_no_freq": pd.DataFrame(base, index=pd.DatetimeIndex(dates, name="datetime").tz_localize("UTC")),
        "fixed_offset": pd.DataFrame(
            base, index=pd.DatetimeIndex(dates).tz_localize(dt.timezone(dt.timedelta(hours=8)))
        ),
        "reset": pd.DataFrame(base, index=pd.DatetimeIndex(dates, name="datetime")).reset_index(),
        "timestamps": pd.DataFrame(
            {"t": pd.Series(list(dates), dtype=object), "x": [pd.NaT, 1.0, np.float64(2)]}
        ),
    }


@pytest.mark.parametrize("protocol", [4, 5])
@pytest.mark.parametrize("name", [*_current_frames(), "used_index"])
def test_frames_written_by_this_pandas_load_equal(tmp_path: Path, name: str, protocol: int):
    if name == "used_index":  # a used index pickles its DatetimeArray's cache ({'unit': .., '_creso': ..})
        frame = _current_frames()["freq_day_ns"]
        assert frame.index.unit == "ns" and frame.index.is_normalized and frame.index._data._cache
    else:
        frame = _current_frames()[name]
    path = tmp_path / "ret.pkl"
    frame.to_pickle(path, protocol=protocol)
    got = load_dataframe_pickle(path)
    assert type(got) is pd.DataFrame and got.equals(frame)
    assert type(got.index) is type(frame.index) and got.index.equals(frame.index)
    assert getattr(got.index, "freq", None) == getattr(frame.index, "freq", None)
    assert list(got.columns) == list(frame.columns) and got.columns.dtype == frame.columns.dtype
    assert got.dtypes.tolist() == frame.dtypes.tolist()


def test_tz_aware_report_reads_its_wall_dates(tmp_path: Path):
    frame = _current_frames()["utc"]
    frame.to_pickle(tmp_path / "ret.pkl")
    assert read_returns(tmp_path / "ret.pkl")["datetime"].to_list() == [date(2024, 7, d) for d in (1, 2, 3)]
