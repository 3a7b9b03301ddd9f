"""Fast writers for the per-workspace tables (signals, ret_schema, combined factors).

pandas' `to_parquet`/`to_json` cost ~10 ms per table, which dominates a 2,000-loop sample.
These writers take the Arrow schema and the JSON schema header from one pandas conversion,
then build every further table from Arrow arrays and a row template. The bytes are identical
to the pandas path in `results` (the tests check that), only faster.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from workbench.rdagent.files.returns import RETURN_COLUMNS
from workbench.sample import results

_DATA_MARK = '"data":['


def json_number(value: float) -> str:
    """A float as pandas' ujson writes it with `double_precision=10`."""
    if value != value:
        return "null"
    if value == 0:
        return "0.0"
    text = format(value, ".10f").rstrip("0")
    return text + "0" if text.endswith(".") else text


_TRAILING_ZEROS = re.compile(r"(\.\d*?[1-9])0+(?=,|$)")
_ALL_ZEROS = re.compile(r"\.0+(?=,|$)")


def json_numbers(values: np.ndarray) -> list[str]:
    """`json_number` of every value, formatted in one pass (C-speed regexes, no per-value calls)."""
    floats = np.asarray(values, dtype=np.float64) + 0.0  # turns -0.0 into 0.0, as ujson prints it
    if floats.size == 0:
        return []
    text = ",".join(["%.10f"] * floats.size) % tuple(floats.tolist())
    text = _ALL_ZEROS.sub(".0", _TRAILING_ZEROS.sub(r"\1", text))
    return text.replace("nan", "null").split(",")


def _json_prefix(text: str) -> str:
    return text[: text.index(_DATA_MARK) + len(_DATA_MARK)]


def _parquet_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="snappy")
    return sink.getvalue()


class TableWriter:
    """Builds the table files of every workspace of one installation."""

    def __init__(self, *, seed: int, days: pd.DatetimeIndex, instruments: list[str], topk: int) -> None:
        self.seed = seed
        self.days = days
        self.instruments = instruments
        self.shape = results.SignalShape(days, instruments, topk)
        self._signals: tuple[pa.Schema, str] | None = None
        self._ret: tuple[pa.Schema, str] | None = None
        self._utc_days = pa.array(days.tz_localize("UTC"))
        self._day_iso = [day.strftime("%Y-%m-%dT%H:%M:%S.000Z") for day in days]
        self._static: dict[str, pa.Array] = {}
        self._combined_index: dict[int, tuple[pa.Array, pa.Array]] = {}
        self._combined_templates: dict[int, pa.Schema] = {}

    # -- ret_schema ----------------------------------------------------------------------
    def ret_schema_files(self, ret: pd.DataFrame) -> tuple[bytes, bytes]:
        """Same bytes as `results.ret_schema_files`."""
        if self._ret is None:
            frame = ret.reset_index()
            frame["datetime"] = frame["datetime"].dt.tz_localize("UTC")
            schema = pa.Table.from_pandas(frame, preserve_index=False).schema
            self._ret = (schema, _json_prefix(frame.to_json(orient="table", date_format="iso", index=True)))
        schema, prefix = self._ret
        values = [ret[column].to_numpy() for column in RETURN_COLUMNS]
        table = pa.Table.from_arrays([self._utc_days, *[pa.array(v) for v in values]], schema=schema)
        template = '{"index":%d,"datetime":"%s",' + ",".join(f'"{c}":%s' for c in RETURN_COLUMNS) + "}"
        formatted = [json_numbers(column) for column in values]
        rows = [template % (i, self._day_iso[i], *row) for i, row in enumerate(zip(*formatted, strict=True))]
        return _parquet_bytes(table), (prefix + ",".join(rows) + "]}").encode()

    # -- signals -------------------------------------------------------------------------
    def _static_array(self, name: str, factory: Callable[[], pa.Array]) -> pa.Array:
        if name not in self._static:
            self._static[name] = factory()
        return self._static[name]

    def signals_files(self, scores: np.ndarray, *, n_drop: int, generated_at: str) -> tuple[bytes, bytes]:
        """Same bytes as `results.signals_files`."""
        shape = self.shape
        k = shape.topk
        if self._signals is None:
            frame = results.signals_frame(scores, shape=shape, n_drop=n_drop, generated_at=generated_at)
            schema = pa.Table.from_pandas(frame, preserve_index=False).schema
            self._signals = (
                schema,
                _json_prefix(frame.to_json(orient="table", date_format="iso", index=True)),
            )
        schema, prefix = self._signals
        top, picked = results.top_k(scores, k)
        instruments = shape.instrument_array[top.ravel()]
        rows = len(picked)
        columns = self._signal_arrays(picked, instruments, rows, n_drop=n_drop, generated_at=generated_at)
        table = pa.Table.from_arrays([columns[field.name] for field in schema], schema=schema)
        weight = json_number(1.0 / k)
        template = (
            '{"index":%d,"trade_date":"%s","instrument":"%s","signal":%s,"target_weight":' + weight + ","
            '"target_position":null,"price_ref":null,"universe_flag":1,"score":%s,"rank":%d,"pred_return":%s,'
            '"confidence":null,"volatility_est":null,"max_weight":null,"min_weight":null,"sector":null,"industry":null,'
            '"generated_at_utc":"' + generated_at + '","task_run_id":null,"loop_id":null,"workspace_id":null,'
            '"model_version":null,"weight_method":"topk_equal_weight","topk":'
            + str(k)
            + ',"n_drop":'
            + str(n_drop)
            + ',"rebalance_freq":"1d"}'
        )
        ranks = np.tile(np.arange(1, k + 1), len(shape.days)).tolist()
        numbers = json_numbers(picked)
        lines = [
            template % (i, date, instrument, number, number, rank, number)
            for i, (date, instrument, number, rank) in enumerate(
                zip(shape.date_text, instruments, numbers, ranks, strict=True)
            )
        ]
        return _parquet_bytes(table), (prefix + ",".join(lines) + "]}").encode()

    def _signal_arrays(
        self, picked: np.ndarray, instruments: np.ndarray, rows: int, *, n_drop: int, generated_at: str
    ) -> dict[str, pa.Array]:
        k = self.shape.topk
        score = pa.array(picked)
        nulls = pa.nulls(rows)
        columns = {name: nulls for name in results.SIGNAL_NULL_COLUMNS}
        columns.update(
            {
                "trade_date": self._static_array(
                    "trade_date", lambda: pa.array(self.shape.date_text, type=pa.string())
                ),
                "instrument": pa.array(instruments, type=pa.string()),
                "signal": score,
                "score": score,
                "pred_return": score,
                "target_weight": self._static_array(
                    "target_weight", lambda: pa.array(np.full(rows, 1.0 / k))
                ),
                "universe_flag": self._static_array(
                    "universe_flag", lambda: pa.array(np.ones(rows, dtype=np.int64))
                ),
                "rank": self._static_array(
                    "rank",
                    lambda: pa.array(np.tile(np.arange(1, k + 1, dtype=np.int64), len(self.shape.days))),
                ),
                "generated_at_utc": pa.array(np.full(rows, generated_at, dtype=object), type=pa.string()),
                "weight_method": self._static_array(
                    "weight_method", lambda: pa.array(["topk_equal_weight"] * rows, type=pa.string())
                ),
                "topk": self._static_array("topk", lambda: pa.array(np.full(rows, k, dtype=np.int64))),
                "n_drop": pa.array(np.full(rows, n_drop, dtype=np.int64)),
                "rebalance_freq": self._static_array(
                    "rebalance_freq", lambda: pa.array(["1d"] * rows, type=pa.string())
                ),
            }
        )
        return columns

    # -- combined factors ----------------------------------------------------------------
    def _combined_schema(self, names: tuple[str, ...]) -> pa.Schema:
        """Arrow schema (with pandas metadata) for these factor names.

        Built once per column count from placeholder names, then renamed: converting even a
        one-row MultiIndex frame through pandas costs ~10 ms, renaming costs microseconds.
        """
        count = len(names)
        if count not in self._combined_templates:
            placeholders = tuple(f"__sample_factor_{i}__" for i in range(count))
            tiny = results.combined_factors_frame(
                self.seed, placeholders, days=self.days[:1], instruments=self.instruments[:1]
            )
            self._combined_templates[count] = pa.Table.from_pandas(tiny).schema
        template = self._combined_templates[count]
        metadata = template.metadata[b"pandas"].decode()
        fields = []
        for field in template:
            name = field.name
            for i in reversed(range(count)):
                name = name.replace(f"__sample_factor_{i}__", names[i])
            fields.append(field.with_name(name))
        for i in reversed(range(count)):
            metadata = metadata.replace(f"__sample_factor_{i}__", names[i])
        return pa.schema(fields, metadata={b"pandas": metadata.encode()})

    def combined_parquet(self, names: tuple[str, ...], *, days: int) -> bytes:
        """Same bytes as `results.combined_factors_parquet` for the first `days` days."""
        head = self.days[:days]
        schema = self._combined_schema(names)
        if days not in self._combined_index:
            index = results.combined_index(head, self.instruments)
            self._combined_index[days] = (
                pa.array(index.get_level_values(0)),
                pa.array(index.get_level_values(1).to_numpy(dtype=object), type=pa.string()),
            )
        size = days * len(self.instruments)
        arrays = [pa.array(results.factor_values(self.seed, name, size)) for name in names]
        table = pa.Table.from_arrays([*arrays, *self._combined_index[days]], schema=schema)
        return _parquet_bytes(table)
