"""A restricted unpickler for `ret.pkl`: only what rebuilds a pandas DataFrame of numbers and dates.

`pickle.load` runs any callable a pickle names, so a crafted `ret.pkl` could run commands. This
unpickler's `find_class` admits an explicit allow-list of (module, name) pairs, found empirically
from DataFrames pickled by pandas 1.5 / 2.2 / 3.1 with numpy 1.26 / 2.x (see
tests/fixtures/pickles/README.md). Everything else — `os.system`, `builtins.eval`,
`pandas.read_pickle`, … — raises `UnsafePickleError` before anything is called. The few
pyarrow and builtins callables pandas 3 needs (for its string-typed column labels) are wrapped so
they only accept string data, and rebuilt Arrow arrays are fully validated.
"""

from __future__ import annotations

import importlib
import io
import pickle
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from workbench.errors import InputFileError, UnsafePickleError
from workbench.rdagent.files.jsonfile import DEFAULT_MAX_BYTES, read_file_bytes

# numpy 2 renamed numpy.core → numpy._core; pickles name whichever their writer had.
_NP_ALIASES = {"numpy.core": "numpy._core"}

# Allowed (module, name) as written in pickles (after the numpy alias) → where it lives now.
_ALLOWED: dict[tuple[str, str], tuple[str, str]] = {
    ("numpy", "dtype"): ("numpy", "dtype"),
    ("numpy", "ndarray"): ("numpy", "ndarray"),
    ("numpy._core.multiarray", "_reconstruct"): ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"): ("numpy._core.multiarray", "scalar"),
    ("numpy._core.numeric", "_frombuffer"): ("numpy._core.numeric", "_frombuffer"),
    ("builtins", "slice"): ("builtins", "slice"),
    ("datetime", "timezone"): ("datetime", "timezone"),
    ("datetime", "timedelta"): ("datetime", "timedelta"),
    # frame, block manager, blocks
    ("pandas", "DataFrame"): ("pandas", "DataFrame"),
    ("pandas.core.frame", "DataFrame"): ("pandas", "DataFrame"),
    ("pandas.core.internals.managers", "BlockManager"): ("pandas.core.internals.managers", "BlockManager"),
    ("pandas._libs.internals", "_unpickle_block"): ("pandas._libs.internals", "_unpickle_block"),
    ("pandas.core.internals.blocks", "new_block"): ("pandas._libs.internals", "_unpickle_block"),  # pandas <= 1.3
    # indexes
    ("pandas.core.indexes.base", "_new_Index"): ("pandas.core.indexes.base", "_new_Index"),
    ("pandas", "Index"): ("pandas", "Index"),
    ("pandas.core.indexes.base", "Index"): ("pandas", "Index"),
    ("pandas.core.indexes.numeric", "Int64Index"): ("pandas", "Index"),  # pandas < 2
    ("pandas.core.indexes.numeric", "UInt64Index"): ("pandas", "Index"),
    ("pandas.core.indexes.numeric", "Float64Index"): ("pandas", "Index"),
    ("pandas", "RangeIndex"): ("pandas", "RangeIndex"),
    ("pandas.core.indexes.range", "RangeIndex"): ("pandas", "RangeIndex"),
    ("pandas", "DatetimeIndex"): ("pandas", "DatetimeIndex"),
    ("pandas.core.indexes.datetimes", "DatetimeIndex"): ("pandas", "DatetimeIndex"),
    ("pandas.core.indexes.datetimes", "_new_DatetimeIndex"): ("pandas.core.indexes.datetimes", "_new_DatetimeIndex"),
    # datetime arrays and scalars
    ("pandas._libs.arrays", "__pyx_unpickle_NDArrayBacked"): ("pandas._libs.arrays", "__pyx_unpickle_NDArrayBacked"),
    ("pandas.arrays", "DatetimeArray"): ("pandas.arrays", "DatetimeArray"),
    ("pandas.core.arrays.datetimes", "DatetimeArray"): ("pandas.arrays", "DatetimeArray"),
    ("pandas.core.dtypes.dtypes", "DatetimeTZDtype"): ("pandas", "DatetimeTZDtype"),
    ("pandas", "DatetimeTZDtype"): ("pandas", "DatetimeTZDtype"),
    ("pandas._libs.tslibs.timestamps", "_unpickle_timestamp"): ("pandas._libs.tslibs.timestamps", "_unpickle_timestamp"),
    ("pandas._libs.tslibs.nattype", "__nat_unpickle"): ("pandas._libs.tslibs.nattype", "_nat_unpickle"),
    ("pandas._libs.tslibs.nattype", "_nat_unpickle"): ("pandas._libs.tslibs.nattype", "_nat_unpickle"),
    ("pandas._libs.missing", "NA"): ("pandas._libs.missing", "NA"),
    # the DatetimeIndex `freq` of a regular calendar (plain value objects: n, normalize, offset)
    **{("pandas._libs.tslibs.offsets", name): ("pandas._libs.tslibs.offsets", name)
       for name in ("Day", "BusinessDay", "Week", "MonthEnd", "MonthBegin", "BusinessMonthEnd",
                    "BusinessMonthBegin", "Hour", "Minute", "Second")},
    # string labels/columns (pandas 3 makes column labels a string array)
    ("pandas", "StringDtype"): ("pandas", "StringDtype"),
    ("pandas.core.arrays.string_", "StringDtype"): ("pandas", "StringDtype"),
    ("pandas.arrays", "StringArray"): ("pandas.arrays", "StringArray"),
    ("pandas.core.arrays.string_", "StringArray"): ("pandas.arrays", "StringArray"),
    ("pandas.arrays", "ArrowStringArray"): ("pandas.arrays", "ArrowStringArray"),
    ("pandas.core.arrays.string_arrow", "ArrowStringArray"): ("pandas.arrays", "ArrowStringArray"),
}

_STRING_ALIASES = frozenset({"string", "str", "utf8", "large_string", "large_str", "large_utf8"})


class _Refused(Exception):
    """An allowed callable was given arguments outside what a return series needs."""


def _safe_bytearray(*args: Any) -> bytearray:
    if not args:
        return bytearray()
    if len(args) == 1 and isinstance(args[0], bytes | bytearray):
        return bytearray(args[0])
    raise _Refused("pickle calls builtins.bytearray with something other than bytes")


def _safe_type_for_alias(name: Any) -> Any:
    import pyarrow.lib

    if not isinstance(name, str) or name not in _STRING_ALIASES:
        raise _Refused(f"pickle asks for Arrow type {name!r}; only string types are allowed in a return series")
    return pyarrow.lib.type_for_alias(name)


def _safe_py_buffer(obj: Any) -> Any:
    import pyarrow.lib

    if not isinstance(obj, bytes | bytearray):
        raise _Refused("pickle calls pyarrow.lib.py_buffer with something other than bytes")
    return pyarrow.lib.py_buffer(obj)


def _is_string_type(value: Any) -> bool:
    import pyarrow as pa

    return isinstance(value, pa.DataType) and (pa.types.is_string(value) or pa.types.is_large_string(value))


def _safe_restore_array(state: Any) -> Any:
    import pyarrow as pa
    import pyarrow.lib

    # (type, length, null_count, offset, buffers, children, dictionary) as written by pyarrow
    ok = (
        isinstance(state, tuple)
        and len(state) == 7
        and _is_string_type(state[0])
        and all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in state[1:4])
        and isinstance(state[4], list)
        and all(b is None or isinstance(b, pa.Buffer) for b in state[4])
        and state[5] == []
        and state[6] is None
    )
    if not ok:
        raise _Refused("pickle rebuilds an Arrow array that is not a plain string array")
    array = pyarrow.lib._restore_array(state)
    array.validate(full=True)
    return array


def _safe_chunked_array(arrays: Any, type: Any = None) -> Any:  # noqa: A002 - pyarrow's name
    import pyarrow as pa

    if not isinstance(arrays, list) or not all(isinstance(a, pa.Array) and _is_string_type(a.type) for a in arrays):
        raise _Refused("pickle builds an Arrow chunked array that is not made of string arrays")
    if type is not None and not _is_string_type(type):
        raise _Refused("pickle builds an Arrow chunked array of a non-string type")
    return pa.chunked_array(arrays, type=type)


_WRAPPED: dict[tuple[str, str], Callable[..., Any]] = {
    ("builtins", "bytearray"): _safe_bytearray,
    ("pyarrow.lib", "type_for_alias"): _safe_type_for_alias,
    ("pyarrow.lib", "py_buffer"): _safe_py_buffer,
    ("pyarrow.lib", "_restore_array"): _safe_restore_array,
    ("pyarrow.lib", "chunked_array"): _safe_chunked_array,
}


def _canonical(module: str) -> str:
    for old, new in _NP_ALIASES.items():
        if module == old or module.startswith(old + "."):
            return new + module[len(old) :]
    return module


def _numpy_core_module(module: str) -> str:
    """`numpy._core.x` where this numpy has it, else `numpy.core.x` (numpy < 1.26)."""
    try:
        importlib.import_module(module)
        return module
    except ImportError:
        return module.replace("numpy._core", "numpy.core", 1)


def allowed_global(module: str, name: str) -> Any | None:
    """The object a pickle's (module, name) may refer to, or None if it is not allowed."""
    key = (_canonical(module), name)
    if key in _WRAPPED:
        return _WRAPPED[key]
    target = _ALLOWED.get(key)
    if target is None:
        return None
    target_module, target_name = target
    if target_module.startswith("numpy._core"):
        target_module = _numpy_core_module(target_module)
    return getattr(importlib.import_module(target_module), target_name)


class RestrictedUnpickler(pickle.Unpickler):
    """`pickle.Unpickler` that resolves only allow-listed globals and no persistent ids."""

    def __init__(self, file: io.BufferedIOBase, *, path: Path) -> None:
        super().__init__(file)
        self._path = path

    def find_class(self, module: str, name: str) -> Any:
        try:
            target = allowed_global(module, name)
        except (ImportError, AttributeError) as exc:
            raise InputFileError(
                self._path, f"pickle needs {module}.{name}, which this pandas/numpy does not provide ({exc})"
            ) from None
        if target is None:
            raise UnsafePickleError(
                self._path,
                f"pickle references {module}.{name}, which is not allowed in a return series",
                hint="the file was not loaded; a genuine ret.pkl only holds a pandas DataFrame",
            )
        return target

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError(self._path, "pickle uses persistent ids, which are not allowed in a return series")


def load_dataframe_pickle(path: Path, *, max_bytes: int = DEFAULT_MAX_BYTES) -> Any:
    """Unpickle a pandas DataFrame through `RestrictedUnpickler`; anything else is an error."""
    import pandas as pd

    path = Path(path)
    data = read_file_bytes(path, max_bytes=max_bytes)
    if not data:
        raise InputFileError(path, "empty file, expected a pickled DataFrame")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            obj = RestrictedUnpickler(io.BytesIO(data), path=path).load()
    except InputFileError:
        raise
    except _Refused as exc:
        raise UnsafePickleError(path, str(exc), hint="the file was not loaded") from None
    except Exception as exc:  # any failure inside pickle/pandas/numpy is a bad input file
        raise InputFileError(path, _describe_failure(exc)) from None
    if not isinstance(obj, pd.DataFrame):
        raise InputFileError(path, f"pickle holds a {type(obj).__name__}, not a pandas DataFrame")
    return obj


def _describe_failure(exc: Exception) -> str:
    text = str(exc)
    if isinstance(exc, EOFError) or "truncated" in text.lower() or "ran out of input" in text.lower():
        return f"truncated pickle ({type(exc).__name__}: {text})"
    return f"not a readable pickle ({type(exc).__name__}: {text})"
