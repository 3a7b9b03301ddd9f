"""A restricted unpickler for `ret.pkl`: only what rebuilds a pandas DataFrame of numbers and dates.

`pickle.load` runs any callable a pickle names and hands any object to `__setstate__`, so a
crafted `ret.pkl` could run commands, patch classes or make numpy read outside a buffer. This
module unpickles with a subclass of the pure-Python `pickle._Unpickler` whose opcodes are all
checked, and nothing from a pickle reaches numpy/pandas unvalidated:

* GLOBAL / STACK_GLOBAL resolve only an explicit allow-list of (module, name) pairs, found
  empirically from DataFrames pickled by pandas 1.5 / 2.2 / 3.1 with numpy 1.26 / 2.x (see
  tests/fixtures/pickles/README.md). The pickle never gets the real object: it gets a `_Global`
  token. Only tokens with a checking wrapper can be called (REDUCE); classes such as
  `numpy.ndarray` or `pandas.Index` are only names that other wrappers accept as arguments.
* NEWOBJ only creates the three classes genuine pickles create that way (DataFrame,
  ArrowStringArray, DatetimeTZDtype), with no arguments.
* BUILD (set an object's state) is only accepted on a `_Pending` placeholder that a wrapper or
  NEWOBJ created for one of the types genuine pickles BUILD (numpy dtype and ndarray, DataFrame,
  DatetimeArray, StringArray, ArrowStringArray, DatetimeTZDtype), once. The state is validated
  and the real object built from it; classes, functions, modules and objects already in use can
  never be given a state. Slot-state `(state, slots)` tuples are never accepted.
* numpy dtypes are rebuilt from a short list of plain specs, never through `dtype.__setstate__`;
  arrays get a validated shape (element cap), dtype and data length. Time zones are UTC, names
  from `zoneinfo.available_timezones()` or `datetime.timezone` objects.
* INST/OBJ/NEWOBJ_EX, persistent ids, extension codes and out-of-band buffers are refused;
  APPEND(S)/SETITEM(S)/ADDITEMS only fill lists/dicts/sets. The number of opcodes is capped
  (`MAX_OPCODES`) and a byte array may not claim more bytes than the file has.

Every refusal raises `UnsafePickleError` naming what was refused; other failures are
`InputFileError`.
"""

from __future__ import annotations

import datetime as _dt
import functools
import importlib
import io
import math
import pickle
import struct
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeAlias, cast

from workbench.errors import InputFileError, UnsafePickleError
from workbench.rdagent.files.limits import RETURNS_PICKLE, FileKind
from workbench.rdagent.files.reading import read_file_bytes

MAX_ELEMENTS = 50_000_000  # per array (shape product); a daily return series has a few thousand
MAX_ROWS = 10_000_000  # rows of the final frame (and of any index)
MAX_BLOCKS = 100_000
MAX_OFFSET_N = 100_000  # `n` of a DatetimeIndex frequency such as Day(n)
# Opcodes per pickle. Each may create an object (~70 bytes for an empty dict), so this bounds the
# memory a small file of one-byte opcodes can claim (~400 MB). A float frame needs a few hundred;
# an object column about two per cell.
MAX_OPCODES = 5_000_000

_HINT = "the file was not loaded; a genuine ret.pkl only holds a pandas DataFrame"

# numpy 2 renamed numpy.core → numpy._core; pickles name whichever their writer had.
_NP_ALIASES = {"numpy.core": "numpy._core"}

# numpy dtype specs a DataFrame pickle may construct (`numpy.dtype(spec, False, True)`).
_PLAIN_DTYPE_SPECS = frozenset(
    {"f8", "f4", "i8", "i4", "i2", "i1", "u8", "u4", "u2", "u1", "b1", "O8", "M8", "m8"}
)
_DATETIME_UNITS = ("s", "ms", "us", "ns")
_NPY_UNIT_CODES = {"s": 7, "ms": 8, "us": 9, "ns": 10}  # pandas' `reso` argument of Timestamps
_DTYPE_STATE_FIELDS = ("version", "byte order", "subarray", "names", "fields", "elsize", "alignment", "flags")

_STRING_ALIASES = frozenset({"string", "str", "utf8", "large_string", "large_str", "large_utf8"})


class _Refused(Exception):
    """A pickle asked for something outside what a return series needs (becomes UnsafePickleError)."""


def _refuse(reason: str) -> _Refused:
    return _Refused(reason)


# --------------------------------------------------------------------------- tokens


class _Global:
    """What GLOBAL/STACK_GLOBAL push for an allowed (module, name): never the real object.

    `call` is the checking wrapper REDUCE may call (None: not callable); `new` builds the
    `_Pending` placeholder NEWOBJ creates (None: NEWOBJ refused); `target` is the real object,
    only ever looked at by wrappers (e.g. the `cls` argument of `_new_Index`).
    """

    __slots__ = ("call", "name", "new", "target")

    def __init__(
        self,
        name: str,
        target: Any = None,
        *,
        call: Callable[..., Any] | None = None,
        new: Callable[[Any], Any] | None = None,
    ) -> None:
        self.name = name
        self.target = target
        self.call = call
        self.new = new

    def __repr__(self) -> str:
        return f"<allowed global {self.name}>"


class _Pending:
    """An object a genuine pickle creates and then BUILDs; the real object is made at BUILD."""

    __slots__ = ("done", "finish", "kind", "memo_keys")

    def __init__(self, kind: str, finish: Callable[[Any], Any]) -> None:
        self.kind = kind
        self.finish = finish
        self.done = False
        self.memo_keys: list[Any] = []

    def __repr__(self) -> str:
        return f"<{self.kind} waiting for its state>"


def _describe(obj: Any) -> str:
    if isinstance(obj, _Global):
        kind = "class" if isinstance(obj.target, type) else "object" if obj.call is None else "callable"
        return f"the {kind} {obj.name}"
    if isinstance(obj, _Pending):
        return f"an already-built {obj.kind}" if obj.done else f"a {obj.kind} that has no state yet"
    if isinstance(obj, type):
        return f"the class {obj.__module__}.{obj.__qualname__}"
    return f"a {type(obj).__module__}.{type(obj).__qualname__} object"


# --------------------------------------------------------------------------- small validators


def _is_int(value: Any) -> bool:
    return type(value) is int


def _is_bool(value: Any) -> bool:
    return type(value) is bool


def _args(args: tuple[Any, ...], name: str, low: int, high: int) -> tuple[Any, ...]:
    if not low <= len(args) <= high:
        raise _refuse(f"pickle calls {name} with {len(args)} arguments; a return series needs {low}..{high}")
    return args


def _check_shape(shape: Any, what: str) -> int:
    """Validate an array shape (tuple of 1 or 2 non-negative ints); return the element count."""
    if type(shape) is not tuple or not 1 <= len(shape) <= 2 or not all(_is_int(n) and n >= 0 for n in shape):
        raise _refuse(f"pickle gives {what} the shape {shape!r}; expected 1 or 2 non-negative integers")
    count = math.prod(shape)
    if count > MAX_ELEMENTS or any(n > MAX_ELEMENTS for n in shape):
        raise _refuse(f"pickle gives {what} the shape {shape!r}, over the limit of {MAX_ELEMENTS} elements")
    return count


@functools.cache
def _canonical_dtypes() -> dict[str, Any]:
    """dtype.str → the fresh numpy dtype, for every dtype a return-series pickle may use."""
    import numpy as np

    out = {}
    for spec in _PLAIN_DTYPE_SPECS:
        if spec in ("M8", "m8"):
            for unit in _DATETIME_UNITS:
                dtype = np.dtype(f"{spec}[{unit}]")
                out[dtype.str] = dtype
        else:
            dtype = np.dtype(spec)
            out[dtype.str] = dtype
    return out


def _check_dtype(dtype: Any, what: str, *, allow_object: bool = True) -> Any:
    """A real, plain numpy dtype (as `_finish_dtype` makes them); anything else is refused."""
    import numpy as np

    if not isinstance(dtype, np.dtype):
        raise _refuse(f"pickle gives {what} the dtype {_describe(dtype)}, not a plain numpy dtype")
    fresh = _canonical_dtypes().get(dtype.str)
    ok = (
        fresh is not None
        and type(dtype) is type(fresh)
        and dtype == fresh
        and dtype.fields is None
        and dtype.names is None
        and dtype.subdtype is None
        and dtype.shape == ()
        and dtype.flags == fresh.flags
        and dtype.itemsize == fresh.itemsize
        and dtype.alignment == fresh.alignment
        and not dtype.metadata
    )
    if not ok:
        raise _refuse(f"pickle gives {what} the numpy dtype {dtype!r}, which is not a plain dtype")
    if dtype.hasobject and not allow_object:
        raise _refuse(f"pickle gives {what} an object dtype, which cannot be read from raw bytes")
    return dtype


def _check_ndarray(
    value: Any, what: str, *, ndims: tuple[int, ...] = (1, 2), kinds: str | None = None
) -> Any:
    import numpy as np

    if type(value) is not np.ndarray:
        raise _refuse(f"pickle gives {what} {_describe(value)}, expected a numpy array")
    _check_dtype(value.dtype, what)
    if value.ndim not in ndims or (kinds is not None and value.dtype.kind not in kinds):
        raise _refuse(f"pickle gives {what} a {value.ndim}-d {value.dtype} array")
    return value


def _check_scalar(value: Any, what: str) -> Any:
    """A value a cell, label or attr may hold: None, bool, int, float, str, Timestamp, NaT, NA, numpy number."""
    import numpy as np
    import pandas as pd

    if value is None or type(value) in (bool, int, float, str) or value is pd.NaT or value is pd.NA:
        return value
    if type(value) is pd.Timestamp:
        return value
    if isinstance(value, np.generic) and not isinstance(value, np.object_):
        _check_dtype(value.dtype, what)
        return value
    raise _refuse(
        f"pickle puts {_describe(value)} in {what}; only numbers, strings, dates and missing values are allowed"
    )


@functools.cache
def _zone_names() -> frozenset[str]:
    import zoneinfo

    return frozenset(zoneinfo.available_timezones())


def _check_tz(tz: Any, what: str) -> Any:
    if type(tz) is _dt.timezone:
        return tz
    if type(tz) is str and (tz == "UTC" or tz in _zone_names()):
        return tz
    raise _refuse(
        f"pickle gives {what} the time zone {tz!r}; only 'UTC', IANA zone names and fixed offsets are allowed"
    )


def _check_unit(unit: Any, what: str) -> str:
    if type(unit) is not str or unit not in _DATETIME_UNITS:
        raise _refuse(
            f"pickle gives {what} the time unit {unit!r}; expected one of {', '.join(_DATETIME_UNITS)}"
        )
    return unit


@functools.cache
def _offset_classes() -> dict[type, tuple[str, ...]]:
    """Allowed DatetimeIndex `freq` classes → the extra constructor arguments after (n, normalize)."""
    from pandas._libs.tslibs import offsets

    extras = {"BusinessDay": ("offset",), "Week": ("weekday",)}
    names = (
        "Day",
        "BusinessDay",
        "Week",
        "MonthEnd",
        "MonthBegin",
        "BusinessMonthEnd",
        "BusinessMonthBegin",
        "Hour",
        "Minute",
        "Second",
    )
    return {getattr(offsets, name): extras.get(name, ()) for name in names}


def _check_freq(freq: Any, what: str) -> Any:
    if freq is None or type(freq) in _offset_classes():
        return freq
    raise _refuse(f"pickle gives {what} the frequency {_describe(freq)}; expected a calendar offset or None")


def _check_index(value: Any, what: str) -> Any:
    import pandas as pd

    if type(value) not in (pd.Index, pd.RangeIndex, pd.DatetimeIndex):
        raise _refuse(f"pickle gives {what} {_describe(value)}, expected a pandas Index")
    if len(value) > MAX_ROWS:
        raise _refuse(f"pickle builds an index of {len(value)} entries, over the limit of {MAX_ROWS}")
    return value


def _target(token: Any, allowed: tuple[Any, ...], what: str) -> Any:
    if not isinstance(token, _Global) or token.target not in allowed:
        names = ", ".join(f"{t.__module__}.{t.__qualname__}" for t in allowed)
        raise _refuse(f"pickle passes {_describe(token)} as {what}; only {names} is allowed there")
    return token.target


# --------------------------------------------------------------------------- numpy


def _numpy_core_module(module: str) -> str:
    """`numpy._core.x` where this numpy has it, else `numpy.core.x` (numpy < 1.26)."""
    try:
        importlib.import_module(module)
        return module
    except ImportError:
        return module.replace("numpy._core", "numpy.core", 1)


def _numpy_core(module: str, name: str) -> Any:
    return getattr(importlib.import_module(_numpy_core_module(module)), name)


def _call_dtype(*args: Any) -> _Pending:
    """`numpy.dtype(spec, align, copy)` as numpy pickles it; the state comes with BUILD."""
    spec, align, copy = _args(args, "numpy.dtype", 3, 3)
    if type(spec) is not str or spec not in _PLAIN_DTYPE_SPECS:
        raise _refuse(
            f"pickle asks for numpy dtype {spec!r}; only plain numeric, bool, object and datetime dtypes are allowed"
        )
    if type(align) not in (bool, int) or align or type(copy) not in (bool, int) or not copy:
        raise _refuse(
            f"pickle asks for numpy dtype {spec!r} with align={align!r}, copy={copy!r}; expected False, True"
        )
    return _Pending(f"numpy dtype {spec!r}", functools.partial(_finish_dtype, spec))


def _finish_dtype(spec: str, state: Any) -> Any:
    """The dtype for a BUILD state that must be exactly what numpy writes for a fresh `spec` dtype.

    numpy's `dtype.__setstate__` is never called: a validated state only chooses the datetime unit,
    so the result is a fresh canonical dtype.
    """
    import numpy as np

    fresh = np.dtype(spec)
    expected = fresh.__reduce__()[2]
    what = f"numpy dtype {spec!r}"
    if type(state) is not tuple or len(state) != len(expected):
        raise _refuse(f"pickle gives {what} the state {_describe(state)} of the wrong form")
    for field, got, want in zip(_DTYPE_STATE_FIELDS, state, expected, strict=False):
        if type(got) is not type(want) or got != want:
            raise _refuse(f"pickle gives {what} the {field} {got!r} (a plain {spec} dtype has {want!r})")
    if spec not in ("M8", "m8"):
        return fresh
    # (metadata, (unit, num, den, events)); numpy 1.x writes {} for the metadata, numpy 2 None
    meta = state[8]
    ok = (
        type(meta) is tuple
        and len(meta) == 2
        and (meta[0] is None or (type(meta[0]) is dict and not meta[0]))
        and type(meta[1]) is tuple
        and len(meta[1]) == 4
        and type(meta[1][0]) is bytes
        and meta[1][0].decode("ascii", "replace") in _DATETIME_UNITS
        and all(_is_int(n) and n == 1 for n in meta[1][1:])
    )
    if not ok:
        raise _refuse(
            f"pickle gives {what} the datetime metadata {meta!r}; expected a unit of s, ms, us or ns"
        )
    return np.dtype(f"{spec}[{meta[1][0].decode('ascii')}]")


def _call_reconstruct(*args: Any) -> _Pending:
    """`numpy.core.multiarray._reconstruct(ndarray, (0,), b'b')`: an array whose state comes with BUILD."""
    import numpy as np

    cls, shape, typecode = _args(args, "numpy _reconstruct", 3, 3)
    _target(cls, (np.ndarray,), "the class of a rebuilt array")
    if (
        type(shape) is not tuple
        or shape != (0,)
        or not _is_int(shape[0])
        or type(typecode) is not bytes
        or typecode != b"b"
    ):
        raise _refuse(f"pickle calls numpy _reconstruct with {shape!r}, {typecode!r}; expected (0,), b'b'")
    return _Pending("numpy array", _finish_ndarray)


def _finish_ndarray(state: Any) -> Any:
    """Array from a validated `(1, shape, dtype, is_fortran, rawdata)` state."""
    import numpy as np

    if type(state) is not tuple or len(state) != 5 or not _is_int(state[0]) or state[0] != 1:
        raise _refuse(
            f"pickle gives a numpy array the state {_describe(state)}; expected (1, shape, dtype, fortran, data)"
        )
    _, shape, dtype, is_fortran, raw = state
    count = _check_shape(shape, "a numpy array")
    dtype = _check_dtype(dtype, "a numpy array")
    if not _is_bool(is_fortran):
        raise _refuse(f"pickle gives a numpy array the order flag {is_fortran!r}")
    if dtype.hasobject:
        if type(raw) is not list or len(raw) != count:
            raise _refuse(f"pickle gives an object array of {count} elements {_describe(raw)} as its items")
        for item in raw:
            _check_scalar(item, "an object array")
    elif type(raw) not in (bytes, bytearray) or len(raw) != count * dtype.itemsize:
        size = len(raw) if type(raw) in (bytes, bytearray) else _describe(raw)
        raise _refuse(
            f"pickle gives a numpy array of shape {shape} and dtype {dtype} {size} bytes of data; "
            f"it needs exactly {count * dtype.itemsize}"
        )
    array = _numpy_core("numpy._core.multiarray", "_reconstruct")(np.ndarray, (0,), b"b")
    array.__setstate__((1, shape, dtype, is_fortran, raw))
    if array.shape != shape or array.dtype != dtype or array.size != count:
        raise _refuse("numpy did not rebuild the array as validated")
    return array


def _call_frombuffer(*args: Any) -> Any:
    """`numpy.core.numeric._frombuffer(buf, dtype, shape, order)` (protocol 5 arrays)."""
    buf, dtype, shape, order = _args(args, "numpy _frombuffer", 4, 4)
    dtype = _check_dtype(dtype, "an array read from a buffer", allow_object=False)
    count = _check_shape(shape, "an array read from a buffer")
    if type(order) is not str or order not in ("C", "F"):
        raise _refuse(f"pickle gives an array read from a buffer the order {order!r}")
    if type(buf) not in (bytes, bytearray) or len(buf) != count * dtype.itemsize:
        size = len(buf) if type(buf) in (bytes, bytearray) else _describe(buf)
        raise _refuse(
            f"pickle reads an array of shape {shape} and dtype {dtype} from {size} bytes; "
            f"it needs exactly {count * dtype.itemsize}"
        )
    return _numpy_core("numpy._core.numeric", "_frombuffer")(buf, dtype, shape, order)


def _call_scalar(*args: Any) -> Any:
    """`numpy.core.multiarray.scalar(dtype, bytes)`: a numpy number in an object column."""
    dtype, data = _args(args, "numpy scalar", 2, 2)
    dtype = _check_dtype(dtype, "a numpy scalar", allow_object=False)
    if type(data) is not bytes or len(data) != dtype.itemsize:
        raise _refuse(
            f"pickle builds a numpy {dtype} scalar from {_describe(data)}; expected {dtype.itemsize} bytes"
        )
    return _numpy_core("numpy._core.multiarray", "scalar")(dtype, data)


# --------------------------------------------------------------------------- builtins / datetime


def _call_slice(*args: Any) -> slice:
    _args(args, "builtins.slice", 1, 3)
    if not all(a is None or _is_int(a) for a in args):
        raise _refuse(f"pickle builds a slice from {args!r}; expected integers")
    return slice(*args)


def _call_timedelta(*args: Any) -> _dt.timedelta:
    _args(args, "datetime.timedelta", 0, 3)
    if not all(_is_int(a) for a in args):
        raise _refuse(f"pickle builds a timedelta from {args!r}; expected integers")
    return _dt.timedelta(*args)


def _call_timezone(*args: Any) -> _dt.timezone:
    _args(args, "datetime.timezone", 1, 2)
    if type(args[0]) is not _dt.timedelta or (
        len(args) == 2 and (type(args[1]) is not str or len(args[1]) > 64)
    ):
        raise _refuse(f"pickle builds a time zone from {args!r}; expected an offset and an optional name")
    return _dt.timezone(*args)


def _safe_bytearray(*args: Any) -> bytearray:
    if not args:
        return bytearray()
    if len(args) == 1 and isinstance(args[0], bytes | bytearray):
        return bytearray(args[0])
    raise _refuse("pickle calls builtins.bytearray with something other than bytes")


# --------------------------------------------------------------------------- pyarrow (pandas 3 string labels)


def _safe_type_for_alias(*args: Any) -> Any:
    import pyarrow.lib

    (name,) = _args(args, "pyarrow.lib.type_for_alias", 1, 1)
    if not isinstance(name, str) or name not in _STRING_ALIASES:
        raise _refuse(
            f"pickle asks for Arrow type {name!r}; only string types are allowed in a return series"
        )
    return pyarrow.lib.type_for_alias(name)


def _safe_py_buffer(*args: Any) -> Any:
    import pyarrow.lib

    (obj,) = _args(args, "pyarrow.lib.py_buffer", 1, 1)
    if not isinstance(obj, bytes | bytearray):
        raise _refuse("pickle calls pyarrow.lib.py_buffer with something other than bytes")
    return pyarrow.lib.py_buffer(obj)


def _is_string_type(value: Any) -> bool:
    import pyarrow as pa

    return isinstance(value, pa.DataType) and (pa.types.is_string(value) or pa.types.is_large_string(value))


def _safe_restore_array(*args: Any) -> Any:
    import pyarrow as pa
    import pyarrow.lib

    (state,) = _args(args, "pyarrow.lib._restore_array", 1, 1)
    # (type, length, null_count, offset, buffers, children, dictionary) as written by pyarrow
    ok = (
        isinstance(state, tuple)
        and len(state) == 7
        and _is_string_type(state[0])
        and all(_is_int(n) and 0 <= n <= MAX_ELEMENTS for n in state[1:4])
        and isinstance(state[4], list)
        and all(b is None or isinstance(b, pa.Buffer) for b in state[4])
        and state[5] == []
        and state[6] is None
    )
    if not ok:
        raise _refuse("pickle rebuilds an Arrow array that is not a plain string array")
    array = pyarrow.lib._restore_array(state)
    array.validate(full=True)
    return array


def _safe_chunked_array(*args: Any) -> Any:
    import pyarrow as pa

    arrays, type_ = _args(args, "pyarrow.lib.chunked_array", 1, 2) + (None,) * (2 - len(args))
    if not isinstance(arrays, list) or not all(
        isinstance(a, pa.Array) and _is_string_type(a.type) for a in arrays
    ):
        raise _refuse("pickle builds an Arrow chunked array that is not made of string arrays")
    if type_ is not None and not _is_string_type(type_):
        raise _refuse("pickle builds an Arrow chunked array of a non-string type")
    return pa.chunked_array(arrays, type=type_)


# --------------------------------------------------------------------------- pandas


def _call_string_dtype(*args: Any) -> Any:
    import pandas as pd

    storage, na_value = _args(args, "pandas.StringDtype", 0, 2) + ("python", pd.NA)[len(args) :]
    if type(storage) is not str or storage not in ("python", "pyarrow"):
        raise _refuse(f"pickle asks for a string dtype with storage {storage!r}")
    if not (na_value is pd.NA or (type(na_value) is float and math.isnan(na_value))):
        raise _refuse(f"pickle asks for a string dtype with missing value {na_value!r}")
    return pd.StringDtype(storage, na_value)


def _call_tz_dtype(*args: Any) -> Any:
    """`DatetimeTZDtype(unit, tz)` called directly (older pickles; genuine pandas 2/3 use NEWOBJ + BUILD)."""
    import pandas as pd

    unit, tz = _args(args, "pandas.DatetimeTZDtype", 2, 2)
    return pd.DatetimeTZDtype(_check_unit(unit, "a DatetimeTZDtype"), _check_tz(tz, "a DatetimeTZDtype"))


def _finish_tz_dtype(state: Any) -> Any:
    import pandas as pd

    if type(state) is not dict or set(state) != {"unit", "tz"}:
        raise _refuse(
            f"pickle gives a DatetimeTZDtype the state {_describe(state)}; expected {{'unit', 'tz'}}"
        )
    return pd.DatetimeTZDtype(
        _check_unit(state["unit"], "a DatetimeTZDtype"), _check_tz(state["tz"], "a DatetimeTZDtype")
    )


def _call_timestamp(*args: Any) -> Any:
    """`_unpickle_timestamp(value, freq, tz[, reso])` (Timestamps in object columns)."""
    from pandas._libs.tslibs.timestamps import _unpickle_timestamp

    value, freq, tz, *rest = _args(args, "pandas Timestamp", 3, 4)
    if not _is_int(value) or not -(2**63) < value < 2**63:
        raise _refuse(f"pickle builds a Timestamp from {value!r}; expected a 64-bit integer")
    _check_freq(freq, "a Timestamp")
    if tz is not None:
        _check_tz(tz, "a Timestamp")
    if rest and (not _is_int(rest[0]) or rest[0] not in _NPY_UNIT_CODES.values()):
        raise _refuse(f"pickle builds a Timestamp with resolution code {rest[0]!r}")
    return _unpickle_timestamp(value, freq, tz, *rest)


def _call_nat(*args: Any) -> Any:
    import pandas as pd

    if args not in ((), (None,)):
        raise _refuse(f"pickle builds NaT from {args!r}")
    return pd.NaT


def _offset_caller(cls: type, extras: tuple[str, ...]) -> Callable[..., Any]:
    name = f"pandas offset {cls.__name__}"

    def call(*args: Any) -> Any:
        _args(args, name, 0, 2 + len(extras))
        n = args[0] if args else 1
        normalize = args[1] if len(args) > 1 else False
        rest = args[2:]
        if not _is_int(n) or abs(n) > MAX_OFFSET_N or not _is_bool(normalize):
            raise _refuse(f"pickle builds {name} from {args!r}; expected a small integer and a bool")
        for extra, value in zip(extras, rest, strict=False):
            ok = (
                extra == "offset" and type(value) is _dt.timedelta and abs(value) <= _dt.timedelta(days=1)
            ) or (extra == "weekday" and (value is None or (_is_int(value) and 0 <= value <= 6)))
            if not ok:
                raise _refuse(f"pickle builds {name} with {extra}={value!r}")
        return cls(n, normalize, *rest)

    return call


def _call_ndarray_backed(*args: Any) -> _Pending:
    """`__pyx_unpickle_NDArrayBacked(cls, checksum, None)`: a DatetimeArray/StringArray whose state comes with BUILD."""
    import pandas as pd

    cls_token, checksum, state = _args(args, "pandas __pyx_unpickle_NDArrayBacked", 3, 3)
    cls = _target(cls_token, (pd.arrays.DatetimeArray, pd.arrays.StringArray), "the class of a pandas array")
    if not _is_int(checksum) or state is not None:
        raise _refuse(
            "pickle calls __pyx_unpickle_NDArrayBacked with a state; genuine pickles BUILD it afterwards"
        )
    return _Pending(f"pandas {cls.__name__}", functools.partial(_finish_ndarray_backed, cls, checksum))


def _finish_ndarray_backed(cls: type, checksum: int, state: Any) -> Any:
    import numpy as np
    import pandas as pd

    what = f"a pandas {cls.__name__}"
    if type(state) is not tuple or len(state) not in (2, 3):
        raise _refuse(
            f"pickle gives {what} the state {_describe(state)}; expected (dtype, values[, attributes])"
        )
    first, second = state[:2]
    values, dtype = (first, second) if type(first) is np.ndarray else (second, first)
    extra = state[2] if len(state) == 3 else {}
    if cls is pd.arrays.DatetimeArray:
        values = _check_ndarray(values, what, kinds="M")
        unit = np.datetime_data(values.dtype)[0]
        if type(dtype) is pd.DatetimeTZDtype:
            if dtype.unit != unit:
                raise _refuse(f"pickle gives {what} {unit} values but a {dtype} dtype")
        elif not (isinstance(dtype, np.dtype) and _check_dtype(dtype, what) == values.dtype):
            raise _refuse(f"pickle gives {what} {values.dtype} values but the dtype {_describe(dtype)}")
        if type(extra) is not dict or set(extra) - {"_freq", "_cache"}:
            keys = sorted(map(repr, extra)) if type(extra) is dict else _describe(extra)
            raise _refuse(f"pickle gives {what} the attributes {keys}; only _freq and _cache are allowed")
        if "_freq" in extra:
            _check_freq(extra["_freq"], what)
        # `_cache` holds lazily computed properties (e.g. unit, _creso) when the writer had used them.
        # It is derived data: dropped here, so a pickle cannot pre-seed what pandas would compute.
        cache = extra.get("_cache", {})
        if type(cache) is not dict or len(cache) > 100 or not all(type(k) is str for k in cache):
            raise _refuse(f"pickle gives {what} the cache {_describe(cache)}")
        extra = {k: v for k, v in extra.items() if k != "_cache"}
    else:  # StringArray: column labels of pandas 3 without pyarrow
        values = _check_ndarray(values, what, ndims=(1,), kinds="O")
        if type(dtype) is not pd.StringDtype or dtype.storage != "python":
            raise _refuse(f"pickle gives {what} the dtype {_describe(dtype)}")
        for item in values:
            if not (
                type(item) is str
                or item is None
                or item is pd.NA
                or (type(item) is float and math.isnan(item))
            ):
                raise _refuse(f"pickle puts {_describe(item)} in {what}; expected strings")
        if type(extra) is not dict or extra:
            raise _refuse(f"pickle gives {what} the attributes {_describe(extra)}")
    from pandas._libs.arrays import __pyx_unpickle_NDArrayBacked

    obj = __pyx_unpickle_NDArrayBacked(cls, checksum, None)
    obj.__setstate__((dtype, values, dict(extra)))
    return obj


def _finish_arrow_strings(state: Any) -> Any:
    import pandas as pd
    import pyarrow as pa

    what = "a pandas ArrowStringArray"
    if type(state) is not dict or not {"_pa_array", "_dtype"} <= set(state) <= {
        "_pa_array",
        "_dtype",
        "_cache",
    }:
        raise _refuse(f"pickle gives {what} the state {_describe(state)}; expected _pa_array, _dtype, _cache")
    data, dtype = state["_pa_array"], state["_dtype"]
    if not isinstance(data, pa.Array | pa.ChunkedArray) or not _is_string_type(data.type):
        raise _refuse(f"pickle gives {what} the data {_describe(data)}; expected an Arrow string array")
    if len(data) > MAX_ELEMENTS:
        raise _refuse(f"pickle gives {what} {len(data)} strings, over the limit of {MAX_ELEMENTS}")
    if type(dtype) is not pd.StringDtype or dtype.storage != "pyarrow":
        raise _refuse(f"pickle gives {what} the dtype {_describe(dtype)}")
    if type(state.get("_cache", {})) is not dict or state.get("_cache", {}) != {}:
        raise _refuse(f"pickle gives {what} a pre-filled cache")
    obj = pd.arrays.ArrowStringArray.__new__(pd.arrays.ArrowStringArray)
    obj.__setstate__({"_pa_array": data, "_dtype": dtype, "_cache": {}})
    return obj


_EXTENSION_VALUES = ("DatetimeArray", "StringArray", "ArrowStringArray")


def _check_block_values(values: Any, what: str) -> Any:
    import numpy as np
    import pandas as pd

    if type(values) is np.ndarray:
        return _check_ndarray(values, what)
    if type(values) in tuple(getattr(pd.arrays, name) for name in _EXTENSION_VALUES) and values.ndim in (
        1,
        2,
    ):
        return values
    raise _refuse(f"pickle gives {what} {_describe(values)}; expected a numpy or pandas array")


def _call_unpickle_block(*args: Any) -> Any:
    import numpy as np
    from pandas._libs.internals import _unpickle_block

    values, placement, ndim = _args(args, "pandas _unpickle_block", 3, 3)
    _check_block_values(values, "a column block")
    if type(placement) is slice:
        pass
    elif type(placement) is np.ndarray:
        _check_ndarray(placement, "a block placement", ndims=(1,), kinds="i")
    else:
        raise _refuse(
            f"pickle places a column block with {_describe(placement)}; expected a slice or integers"
        )
    if not _is_int(ndim) or ndim not in (1, 2):
        raise _refuse(f"pickle builds a {ndim!r}-dimensional block")
    return _unpickle_block(values, placement, ndim)


def _call_block_manager(*args: Any) -> Any:
    from pandas.core.internals.blocks import Block
    from pandas.core.internals.managers import BlockManager

    blocks, axes = _args(args, "pandas BlockManager", 2, 2)
    if (
        type(blocks) not in (tuple, list)
        or len(blocks) > MAX_BLOCKS
        or not all(isinstance(b, Block) for b in blocks)
    ):
        raise _refuse(f"pickle builds a BlockManager from {_describe(blocks)}; expected blocks")
    if type(axes) not in (tuple, list) or len(axes) != 2:
        raise _refuse(f"pickle builds a BlockManager with axes {_describe(axes)}; expected columns and index")
    for axis in axes:
        _check_index(axis, "a BlockManager axis")
    return BlockManager(tuple(blocks), list(axes), verify_integrity=True)


def _check_index_data(data: Any) -> Any:
    import numpy as np
    import pandas as pd

    if type(data) is np.ndarray:
        return _check_ndarray(data, "an Index", ndims=(1,))
    if (
        type(data) in (pd.arrays.ArrowStringArray, pd.arrays.StringArray, pd.arrays.DatetimeArray)
        and data.ndim == 1
    ):
        return data
    raise _refuse(f"pickle gives an Index the data {_describe(data)}; expected a 1-d array")


def _call_new_index(*args: Any) -> Any:
    """`pandas.core.indexes.base._new_Index(cls, d)`, with `cls` only Index or RangeIndex."""
    import pandas as pd
    from pandas.core.indexes.base import _new_Index

    cls_token, d = _args(args, "pandas _new_Index", 2, 2)
    cls = _target(cls_token, (pd.Index, pd.RangeIndex), "the class of an index")
    if type(d) is not dict:
        raise _refuse(f"pickle gives an index the arguments {_describe(d)}; expected a dict")
    if cls is pd.RangeIndex:
        if set(d) - {"name", "start", "stop", "step"} or not all(
            _is_int(d.get(k, 1)) for k in ("start", "stop", "step")
        ):
            raise _refuse(
                f"pickle builds a RangeIndex from {sorted(d)!r}; expected integer start, stop, step"
            )
        if (
            d.get("step", 1) == 0
            or len(range(d.get("start", 0), d.get("stop", 0), d.get("step", 1))) > MAX_ROWS
        ):
            raise _refuse(f"pickle builds a RangeIndex {d!r} with a zero step or over {MAX_ROWS} entries")
        args_ = {k: d[k] for k in ("start", "stop", "step") if k in d}
    else:
        if "data" not in d or set(d) - {"data", "name"}:
            raise _refuse(f"pickle builds an Index from {sorted(d)!r}; expected data and name")
        args_ = {"data": _check_index_data(d["data"])}
    args_["name"] = _check_scalar(d.get("name"), "an index name")
    return _check_index(_new_Index(cls, args_), "an index")


def _call_new_datetime_index(*args: Any) -> Any:
    """`_new_DatetimeIndex(cls, d)`, with `cls` only DatetimeIndex."""
    import numpy as np
    import pandas as pd
    from pandas.core.indexes.datetimes import _new_DatetimeIndex

    cls_token, d = _args(args, "pandas _new_DatetimeIndex", 2, 2)
    cls = _target(cls_token, (pd.DatetimeIndex,), "the class of a datetime index")
    if type(d) is not dict or "data" not in d or set(d) - {"data", "name", "freq", "tz"}:
        raise _refuse(f"pickle builds a DatetimeIndex from {_describe(d)}; expected data, name, freq, tz")
    data = d["data"]
    if type(data) is np.ndarray:
        _check_ndarray(data, "a DatetimeIndex", ndims=(1,), kinds="M")
    elif type(data) is not pd.arrays.DatetimeArray or data.ndim != 1:
        raise _refuse(f"pickle gives a DatetimeIndex the data {_describe(data)}")
    checked = {"data": data, "name": _check_scalar(d.get("name"), "an index name")}
    if "freq" in d:
        checked["freq"] = _check_freq(d["freq"], "a DatetimeIndex")
    if "tz" in d:
        checked["tz"] = None if d["tz"] is None else _check_tz(d["tz"], "a DatetimeIndex")
    return _check_index(_new_DatetimeIndex(cls, checked), "a DatetimeIndex")


def _finish_frame(state: Any) -> Any:
    import pandas as pd
    from pandas.core.internals.managers import BlockManager

    what = "a DataFrame"
    allowed = {"_mgr", "_typ", "_metadata", "attrs", "_attrs", "_flags"}
    if type(state) is not dict or not {"_mgr", "_typ"} <= set(state) <= allowed:
        keys = sorted(map(repr, state)) if type(state) is dict else _describe(state)
        raise _refuse(f"pickle gives {what} the state {keys}; expected {sorted(allowed)}")
    if type(state["_mgr"]) is not BlockManager:
        raise _refuse(f"pickle gives {what} the data {_describe(state['_mgr'])}; expected a BlockManager")
    if type(state["_typ"]) is not str or state["_typ"] != "dataframe":
        raise _refuse(f"pickle gives {what} the type tag {state['_typ']!r}")
    if type(state.get("_metadata", [])) is not list or state.get("_metadata", []) != []:
        raise _refuse(f"pickle gives {what} extra metadata fields {state['_metadata']!r}")
    for key in ("attrs", "_attrs"):
        attrs = state.get(key) or {}
        if type(attrs) is not dict or len(attrs) > 1000 or not all(type(k) is str for k in attrs):
            raise _refuse(f"pickle gives {what} the attrs {_describe(attrs)}")
        for value in attrs.values():
            _check_scalar(value, "the frame attrs")
    flags = state.get("_flags", {"allows_duplicate_labels": True})
    if (
        type(flags) is not dict
        or set(flags) - {"allows_duplicate_labels"}
        or not all(map(_is_bool, flags.values()))
    ):
        raise _refuse(f"pickle gives {what} the flags {flags!r}")
    frame = pd.DataFrame.__new__(pd.DataFrame)
    frame.__setstate__(dict(state))
    if len(frame.index) > MAX_ROWS:
        raise _refuse(f"pickle holds {len(frame.index)} rows, over the limit of {MAX_ROWS}")
    return frame


# --------------------------------------------------------------------------- the allow-list


def _aliases(
    names: tuple[tuple[str, str], ...], token: Callable[[], _Global]
) -> dict[tuple[str, str], Callable[[], _Global]]:
    return dict.fromkeys(names, token)


def _pandas_class(module: str, name: str, **kwargs: Any) -> Callable[[], _Global]:
    return lambda: _Global(f"{module}.{name}", getattr(importlib.import_module(module), name), **kwargs)


def _callable(qualname: str, call: Callable[..., Any]) -> Callable[[], _Global]:
    return lambda: _Global(qualname, call=call)


def _offset_token(name: str) -> Callable[[], _Global]:
    def make() -> _Global:
        from pandas._libs.tslibs import offsets

        cls = getattr(offsets, name)
        return _Global(f"pandas.offsets.{name}", cls, call=_offset_caller(cls, _offset_classes()[cls]))

    return make


def _na_token() -> Any:
    import pandas as pd

    return pd.NA  # a plain constant (string missing value); REDUCE/BUILD on it are refused


# (module, name) as written in pickles (after the numpy alias) → a factory of what the pickle gets.
_ALLOWED: dict[tuple[str, str], Callable[[], Any]] = {
    ("numpy", "dtype"): _callable("numpy.dtype", _call_dtype),
    ("numpy", "ndarray"): lambda: _Global("numpy.ndarray", importlib.import_module("numpy").ndarray),
    ("numpy._core.multiarray", "_reconstruct"): _callable(
        "numpy._core.multiarray._reconstruct", _call_reconstruct
    ),
    ("numpy._core.multiarray", "scalar"): _callable("numpy._core.multiarray.scalar", _call_scalar),
    ("numpy._core.numeric", "_frombuffer"): _callable("numpy._core.numeric._frombuffer", _call_frombuffer),
    ("builtins", "slice"): _callable("builtins.slice", _call_slice),
    ("builtins", "bytearray"): _callable("builtins.bytearray", _safe_bytearray),
    ("datetime", "timezone"): _callable("datetime.timezone", _call_timezone),
    ("datetime", "timedelta"): _callable("datetime.timedelta", _call_timedelta),
    # frame, block manager, blocks
    **_aliases(
        (("pandas", "DataFrame"), ("pandas.core.frame", "DataFrame")),
        _pandas_class("pandas", "DataFrame", new=lambda _: _Pending("pandas DataFrame", _finish_frame)),
    ),
    ("pandas.core.internals.managers", "BlockManager"): _callable("pandas BlockManager", _call_block_manager),
    **_aliases(
        (("pandas._libs.internals", "_unpickle_block"), ("pandas.core.internals.blocks", "new_block")),
        _callable("pandas._libs.internals._unpickle_block", _call_unpickle_block),
    ),
    # indexes: classes are only arguments of _new_Index / _new_DatetimeIndex
    ("pandas.core.indexes.base", "_new_Index"): _callable(
        "pandas.core.indexes.base._new_Index", _call_new_index
    ),
    **_aliases(
        (
            ("pandas", "Index"),
            ("pandas.core.indexes.base", "Index"),
            ("pandas.core.indexes.numeric", "Int64Index"),
            ("pandas.core.indexes.numeric", "UInt64Index"),
            ("pandas.core.indexes.numeric", "Float64Index"),
        ),  # pandas < 2 numeric indexes → Index
        _pandas_class("pandas", "Index"),
    ),
    **_aliases(
        (("pandas", "RangeIndex"), ("pandas.core.indexes.range", "RangeIndex")),
        _pandas_class("pandas", "RangeIndex"),
    ),
    **_aliases(
        (("pandas", "DatetimeIndex"), ("pandas.core.indexes.datetimes", "DatetimeIndex")),
        _pandas_class("pandas", "DatetimeIndex"),
    ),
    ("pandas.core.indexes.datetimes", "_new_DatetimeIndex"): _callable(
        "pandas.core.indexes.datetimes._new_DatetimeIndex", _call_new_datetime_index
    ),
    # datetime arrays and scalars
    ("pandas._libs.arrays", "__pyx_unpickle_NDArrayBacked"): _callable(
        "pandas._libs.arrays.__pyx_unpickle_NDArrayBacked", _call_ndarray_backed
    ),
    **_aliases(
        (("pandas.arrays", "DatetimeArray"), ("pandas.core.arrays.datetimes", "DatetimeArray")),
        _pandas_class("pandas.arrays", "DatetimeArray"),
    ),
    **_aliases(
        (("pandas", "DatetimeTZDtype"), ("pandas.core.dtypes.dtypes", "DatetimeTZDtype")),
        _pandas_class(
            "pandas",
            "DatetimeTZDtype",
            call=_call_tz_dtype,
            new=lambda _: _Pending("pandas DatetimeTZDtype", _finish_tz_dtype),
        ),
    ),
    ("pandas._libs.tslibs.timestamps", "_unpickle_timestamp"): _callable(
        "pandas._libs.tslibs.timestamps._unpickle_timestamp", _call_timestamp
    ),
    **_aliases(
        (("pandas._libs.tslibs.nattype", "__nat_unpickle"), ("pandas._libs.tslibs.nattype", "_nat_unpickle")),
        _callable("pandas._libs.tslibs.nattype._nat_unpickle", _call_nat),
    ),
    **_aliases((("pandas._libs.missing", "NA"), ("pandas", "NA")), _na_token),
    # the DatetimeIndex `freq` of a regular calendar (n, normalize[, offset | weekday])
    **{
        ("pandas._libs.tslibs.offsets", name): _offset_token(name)
        for name in (
            "Day",
            "BusinessDay",
            "Week",
            "MonthEnd",
            "MonthBegin",
            "BusinessMonthEnd",
            "BusinessMonthBegin",
            "Hour",
            "Minute",
            "Second",
        )
    },
    # string labels/columns (pandas 3 makes column labels a string array)
    **_aliases(
        (("pandas", "StringDtype"), ("pandas.core.arrays.string_", "StringDtype")),
        _callable("pandas.StringDtype", _call_string_dtype),
    ),
    **_aliases(
        (("pandas.arrays", "StringArray"), ("pandas.core.arrays.string_", "StringArray")),
        _pandas_class("pandas.arrays", "StringArray"),
    ),
    **_aliases(
        (("pandas.arrays", "ArrowStringArray"), ("pandas.core.arrays.string_arrow", "ArrowStringArray")),
        _pandas_class(
            "pandas.arrays",
            "ArrowStringArray",
            new=lambda _: _Pending("pandas ArrowStringArray", _finish_arrow_strings),
        ),
    ),
    ("pyarrow.lib", "type_for_alias"): _callable("pyarrow.lib.type_for_alias", _safe_type_for_alias),
    ("pyarrow.lib", "py_buffer"): _callable("pyarrow.lib.py_buffer", _safe_py_buffer),
    ("pyarrow.lib", "_restore_array"): _callable("pyarrow.lib._restore_array", _safe_restore_array),
    ("pyarrow.lib", "chunked_array"): _callable("pyarrow.lib.chunked_array", _safe_chunked_array),
}


def _canonical(module: str) -> str:
    for old, new in _NP_ALIASES.items():
        if module == old or module.startswith(old + "."):
            return new + module[len(old) :]
    return module


@functools.cache
def allowed_global(module: str, name: str) -> Any | None:
    """What a pickle's (module, name) resolves to (a `_Global` token or a constant), or None if not allowed."""
    factory = _ALLOWED.get((_canonical(module), name))
    return None if factory is None else factory()


# --------------------------------------------------------------------------- the unpickler


class _Memo(dict[Any, Any]):
    """The unpickler memo; remembers where `_Pending` objects are stored so BUILD can swap them."""

    def __setitem__(self, key: Any, value: Any) -> None:
        super().__setitem__(key, value)
        if type(value) is _Pending:
            value.memo_keys.append(key)


_Load: TypeAlias = "Callable[[RestrictedUnpickler], None]"  # one opcode's handler in the dispatch table


def _counted(load: _Load) -> _Load:
    def step(self: RestrictedUnpickler) -> None:
        self._opcodes += 1
        if self._opcodes > MAX_OPCODES:
            raise self._unsafe(f"pickle has more than {MAX_OPCODES} opcodes; a return series needs far fewer")
        load(self)

    return step


def _refused_opcode(name: str, why: str) -> _Load:
    def load(self: RestrictedUnpickler) -> None:
        raise self._unsafe(f"pickle uses the {name} opcode ({why}), which is not allowed in a return series")

    return load


class RestrictedUnpickler(pickle._Unpickler):
    """Pure-Python unpickler whose every object-creating opcode is checked (see the module docstring)."""

    # typeshed types the inherited table as holding functions of the C `pickle.Unpickler` (they take a
    # `pickle._Unpickler`) and the entries below take a RestrictedUnpickler: `load()` only ever calls
    # them with `self`, which the declared types cannot express.
    dispatch: ClassVar[dict[int, _Load]] = cast(  # type: ignore[assignment]
        "dict[int, _Load]", dict(pickle._Unpickler.dispatch)
    )  # a copy: pickle._Unpickler itself is left alone

    if TYPE_CHECKING:
        # Internals of the pure-Python `pickle._Unpickler` that typeshed does not declare.
        stack: list[Any]
        append: Callable[[Any], None]
        read: Callable[[int], bytes]
        readinto: Callable[[bytearray], int]

        def pop_mark(self) -> list[Any]: ...

    def __init__(self, file: io.BufferedIOBase, *, path: Path, size: int) -> None:
        super().__init__(file)
        self._path = path
        self._size = size
        self._opcodes = 0
        self.memo = _Memo()

    def _unsafe(self, reason: str) -> UnsafePickleError:
        return UnsafePickleError(self._path, reason, hint=_HINT)

    def find_class(self, module: str, name: str) -> Any:
        try:
            target = allowed_global(module, name)
        except (ImportError, AttributeError) as exc:
            raise InputFileError(
                self._path, f"pickle needs {module}.{name}, which this pandas/numpy does not provide ({exc})"
            ) from None
        if target is None:
            raise self._unsafe(f"pickle references {module}.{name}, which is not allowed in a return series")
        return target

    def persistent_load(self, pid: Any) -> Any:
        raise self._unsafe("pickle uses persistent ids, which are not allowed in a return series")

    # -- calls and object creation

    def load_reduce(self) -> None:
        stack = self.stack
        args = stack.pop()
        func = stack[-1]
        if not isinstance(func, _Global) or func.call is None:
            raise self._unsafe(f"pickle calls {_describe(func)}, which is not callable in a return series")
        if type(args) is not tuple:
            raise self._unsafe(
                f"pickle calls {func.name} with {_describe(args)} instead of an argument tuple"
            )
        stack[-1] = func.call(*args)

    dispatch[pickle.REDUCE[0]] = load_reduce

    def load_newobj(self) -> None:
        args = self.stack.pop()
        cls = self.stack.pop()
        if not isinstance(cls, _Global) or cls.new is None:
            raise self._unsafe(
                f"pickle creates an instance of {_describe(cls)} (NEWOBJ), which is not allowed"
            )
        if args != () or type(args) is not tuple:
            raise self._unsafe(f"pickle creates {cls.name} with arguments {_describe(args)}; expected none")
        self.append(cls.new(cls))

    dispatch[pickle.NEWOBJ[0]] = load_newobj

    def load_build(self) -> None:
        state = self.stack.pop()
        inst = self.stack[-1]
        if type(inst) is not _Pending or inst.done:
            raise self._unsafe(
                f"pickle sets the state (BUILD) of {_describe(inst)}; only the numpy/pandas objects a "
                "DataFrame pickle creates may get a state, once"
            )
        obj = inst.finish(state)
        inst.done = True
        self.stack[-1] = obj
        for key in inst.memo_keys:
            if self.memo.get(key) is inst:
                self.memo[key] = obj

    dispatch[pickle.BUILD[0]] = load_build

    # -- containers: only real lists, dicts and sets are filled

    def _container(self, obj: Any, kind: type, opcode: str) -> Any:
        if type(obj) is not kind:
            raise self._unsafe(
                f"pickle uses {opcode} on {_describe(obj)}; only a {kind.__name__} may be filled"
            )
        return obj

    def load_append(self) -> None:
        value = self.stack.pop()
        self._container(self.stack[-1], list, "APPEND").append(value)

    dispatch[pickle.APPEND[0]] = load_append

    def load_appends(self) -> None:
        items = self.pop_mark()
        self._container(self.stack[-1], list, "APPENDS").extend(items)

    dispatch[pickle.APPENDS[0]] = load_appends

    def load_setitem(self) -> None:
        value = self.stack.pop()
        key = self.stack.pop()
        self._container(self.stack[-1], dict, "SETITEM")[key] = value

    dispatch[pickle.SETITEM[0]] = load_setitem

    def load_setitems(self) -> None:
        items = self.pop_mark()
        target = self._container(self.stack[-1], dict, "SETITEMS")
        for i in range(0, len(items), 2):
            target[items[i]] = items[i + 1]

    dispatch[pickle.SETITEMS[0]] = load_setitems

    def load_additems(self) -> None:
        items = self.pop_mark()
        self._container(self.stack[-1], set, "ADDITEMS").update(items)

    dispatch[pickle.ADDITEMS[0]] = load_additems

    def load_bytearray8(self) -> None:
        (length,) = struct.unpack("<Q", self.read(8))
        if length > self._size:
            raise InputFileError(
                self._path, f"truncated pickle (a byte array of {length} bytes in a {self._size}-byte file)"
            )
        data = bytearray(length)
        self.readinto(data)  # outside a frame this may shrink `data` instead of failing
        if len(data) != length:
            raise InputFileError(self._path, "truncated pickle (a byte array ends early)")
        self.append(data)

    dispatch[pickle.BYTEARRAY8[0]] = load_bytearray8

    # -- opcodes a DataFrame pickle never needs
    dispatch[pickle.INST[0]] = _refused_opcode("INST", "call a class by name")
    dispatch[pickle.OBJ[0]] = _refused_opcode("OBJ", "call a class")
    dispatch[pickle.NEWOBJ_EX[0]] = _refused_opcode("NEWOBJ_EX", "create an object with keyword arguments")
    dispatch[pickle.PERSID[0]] = _refused_opcode("PERSID", "persistent ids")
    dispatch[pickle.BINPERSID[0]] = _refused_opcode("BINPERSID", "persistent ids")
    dispatch[pickle.EXT1[0]] = _refused_opcode("EXT1", "extension registry")
    dispatch[pickle.EXT2[0]] = _refused_opcode("EXT2", "extension registry")
    dispatch[pickle.EXT4[0]] = _refused_opcode("EXT4", "extension registry")
    dispatch[pickle.NEXT_BUFFER[0]] = _refused_opcode("NEXT_BUFFER", "out-of-band buffers")
    dispatch[pickle.READONLY_BUFFER[0]] = _refused_opcode("READONLY_BUFFER", "out-of-band buffers")

    dispatch = {code: _counted(load) for code, load in dispatch.items()}


def load_dataframe_pickle(
    path: Path, *, max_bytes: int = RETURNS_PICKLE.max_bytes, kind: FileKind = RETURNS_PICKLE
) -> Any:
    """Unpickle a pandas DataFrame through `RestrictedUnpickler`; anything else is an error."""
    import pandas as pd

    path = Path(path)
    data = read_file_bytes(path, max_bytes=max_bytes, kind=kind)
    if not data:
        raise InputFileError(path, "empty file, expected a pickled DataFrame")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            obj = RestrictedUnpickler(io.BytesIO(data), path=path, size=len(data)).load()
    except InputFileError:
        raise
    except _Refused as exc:
        raise UnsafePickleError(path, str(exc), hint=_HINT) from None
    except Exception as exc:  # any failure inside pickle/pandas/numpy is a bad input file
        raise InputFileError(path, _describe_failure(exc)) from None
    if type(obj) is not pd.DataFrame:
        raise InputFileError(path, f"pickle holds a {type(obj).__name__}, not a pandas DataFrame")
    if len(obj.index) > MAX_ROWS:
        raise UnsafePickleError(
            path, f"pickle holds {len(obj.index)} rows, over the limit of {MAX_ROWS}", hint=_HINT
        )
    return obj


def _describe_failure(exc: Exception) -> str:
    text = str(exc)
    if isinstance(exc, EOFError) or "truncated" in text.lower() or "ran out of input" in text.lower():
        return f"truncated pickle ({type(exc).__name__}: {text})"
    return f"not a readable pickle ({type(exc).__name__}: {text})"
