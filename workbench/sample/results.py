"""Numeric result files of the sample installation: ret.pkl, qlib_res.csv, signals, parquet.

Values are plausible, not realistic: the benchmark is one series shared by every workspace (it
is the same index), each workspace adds its own alpha and noise, and the `qlib_res.csv`
metrics are computed from that workspace's return series exactly as Qlib's `risk_analysis`
does (mode "sum", N = 238), so downstream metric code can be checked against them.
"""

from __future__ import annotations

import io
import math
import pickle
import zlib
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from workbench.rdagent.files.signals import SIGNALS_SCHEMA

QLIB_ANNUAL_DAYS = 238
INITIAL_ACCOUNT = 1e8
FIRST_TRADING_DAY = "2024-07-01"

_SIGNAL_NULL_FLOATS = ("confidence", "volatility_est", "max_weight", "min_weight")
_SIGNAL_NULL_TEXT = ("sector", "industry")
_SIGNAL_NULL_IDS = ("task_run_id", "loop_id", "workspace_id", "model_version")


def trading_days(count: int) -> pd.DatetimeIndex:
    """Naive business days named `datetime`, as in Qlib's report frames."""
    return pd.bdate_range(FIRST_TRADING_DAY, periods=count, name="datetime").as_unit("ns")


def instrument_codes(count: int) -> list[str]:
    """Exchange-prefixed A-share codes, half Shanghai, half Shenzhen."""
    codes = []
    for i in range(count):
        codes.append(f"SH{600000 + 3 * i:06d}" if i % 2 == 0 else f"SZ{1 + 2 * i:06d}")
    return codes


def benchmark_returns(seed: int, count: int) -> np.ndarray:
    """Daily benchmark (SH000300) returns; one series per installation."""
    return np.random.default_rng([seed, 9_000_001]).normal(0.0003, 0.01, count)


def build_ret_frame(
    rng: np.random.Generator, *, days: pd.DatetimeIndex, bench: np.ndarray, alpha: float
) -> pd.DataFrame:
    """A Qlib `report_normal_1day` frame: 9 float64 columns, compounding from 1e8."""
    n = len(days)
    turnover = rng.uniform(0.05, 0.35, n)
    turnover[0] = 1.0
    cost = turnover * 0.0015 + rng.uniform(0.0, 0.00005, n)
    ret = bench + alpha + rng.normal(0.0, 0.006, n)
    growth = np.cumprod(1.0 + ret - cost)
    account = INITIAL_ACCOUNT * growth
    previous = np.concatenate(([INITIAL_ACCOUNT], account[:-1]))
    cash_share = rng.uniform(0.002, 0.03, n)
    frame = pd.DataFrame(
        {
            "account": account,
            "return": ret,
            "total_turnover": turnover * previous,
            "turnover": turnover,
            "total_cost": cost * previous,
            "cost": cost,
            "value": account * (1.0 - cash_share),
            "cash": account * cash_share,
            "bench": bench.astype(np.float64),
        },
        index=days,
    )
    return frame


def _risk_analysis(returns: pd.Series) -> dict[str, float]:
    mean = float(returns.mean())
    std = float(returns.std(ddof=1)) if len(returns) > 1 else float("nan")
    cumulative = returns.cumsum()
    return {
        "mean": mean,
        "std": std,
        "annualized_return": mean * QLIB_ANNUAL_DAYS,
        "information_ratio": mean / std * math.sqrt(QLIB_ANNUAL_DAYS) if std and std == std else float("nan"),
        "max_drawdown": float((cumulative - cumulative.cummax()).min()),
    }


def qlib_metrics(
    rng: np.random.Generator, ret: pd.DataFrame, *, action: str, nan_metric: str | None = None
) -> dict[str, float]:
    """Every metric Qlib writes for the fork's configs (§6), computed from `ret`."""
    metrics: dict[str, float] = {}
    ic = float(rng.normal(0.04, 0.015))
    rank_ic = ic + float(rng.normal(0.003, 0.003))
    metrics["IC"] = ic
    metrics["ICIR"] = ic / float(rng.uniform(0.1, 0.2))
    metrics["Rank IC"] = rank_ic
    metrics["Rank ICIR"] = rank_ic / float(rng.uniform(0.1, 0.2))
    excess = ret["return"] - ret["bench"]
    for label, series in (("without_cost", excess), ("with_cost", excess - ret["cost"])):
        for key, value in _risk_analysis(series).items():
            metrics[f"1day.excess_return_{label}.{key}"] = value
    metrics["1day.ffr"] = 1.0
    metrics["1day.pa"] = 0.0
    metrics["1day.pos"] = 0.0
    if action == "factor":
        metrics["l2.train"] = float(rng.uniform(0.97, 0.995))
        metrics["l2.valid"] = float(rng.uniform(0.99, 1.0))
    if nan_metric is not None:
        metrics[nan_metric] = float("nan")
    return metrics


def qlib_res_csv(metrics: dict[str, float], order: list[int]) -> bytes:
    """`pd.Series(metrics).to_csv()` text: header `,0`, rows in the given (shuffled) order."""
    names = list(metrics)
    lines = [",0"]
    for index in order:
        lines.append(f"{names[index]},{float(metrics[names[index]])!r}")
    return ("\n".join(lines) + "\n").encode()


def frame_pickle(frame: pd.DataFrame) -> bytes:
    """`DataFrame.to_pickle` bytes (protocol 5 by default, like pandas)."""
    buffer = io.BytesIO()
    frame.to_pickle(buffer, compression=None)
    return buffer.getvalue()


def ret_schema_files(ret: pd.DataFrame) -> tuple[bytes, bytes]:
    """`ret_schema.parquet` and `ret_schema.json` (§7.3): index reset, datetime in UTC."""
    frame = ret.reset_index()
    frame["datetime"] = frame["datetime"].dt.tz_localize("UTC")
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False, engine="pyarrow")
    text = frame.to_json(orient="table", date_format="iso", index=True)
    return buffer.getvalue(), text.encode()


@dataclass
class SignalShape:
    """Shared pieces of every signals table of one installation (built once for speed)."""

    days: pd.DatetimeIndex
    instruments: list[str]
    topk: int
    date_text: np.ndarray = field(init=False)
    instrument_array: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.date_text = np.repeat(self.days.strftime("%Y-%m-%d").to_numpy(dtype=object), self.topk)
        self.instrument_array = np.array(self.instruments, dtype=object)


SIGNAL_NULL_COLUMNS = (
    ("target_position", "price_ref") + _SIGNAL_NULL_FLOATS + _SIGNAL_NULL_TEXT + _SIGNAL_NULL_IDS
)


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Column indices and values of the k best scores of every day (row), best first."""
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return top, np.take_along_axis(scores, top, axis=1).ravel()


def signals_frame(scores: np.ndarray, *, shape: SignalShape, n_drop: int, generated_at: str) -> pd.DataFrame:
    """The §7.4 signals table: top-k rows per trade date by score, columns in the reader's order."""
    k = shape.topk
    top, picked = top_k(scores, k)
    rows = len(picked)
    columns: dict[str, object] = {
        "trade_date": shape.date_text,
        "instrument": shape.instrument_array[top.ravel()],
        "signal": picked,
        "target_weight": np.full(rows, 1.0 / k),
        "target_position": np.full(rows, None, dtype=object),
        "price_ref": np.full(rows, None, dtype=object),
        "universe_flag": np.ones(rows, dtype=np.int64),
        "score": picked,
        "rank": pd.array(np.tile(np.arange(1, k + 1), len(shape.days)), dtype="Int64"),
        "pred_return": picked,
    }
    for name in _SIGNAL_NULL_FLOATS + _SIGNAL_NULL_TEXT:
        columns[name] = np.full(rows, None, dtype=object)
    columns["generated_at_utc"] = np.full(rows, generated_at, dtype=object)
    for name in _SIGNAL_NULL_IDS:
        columns[name] = np.full(rows, None, dtype=object)
    columns["weight_method"] = np.full(rows, "topk_equal_weight", dtype=object)
    columns["topk"] = np.full(rows, k, dtype=np.int64)
    columns["n_drop"] = np.full(rows, n_drop, dtype=np.int64)
    columns["rebalance_freq"] = np.full(rows, "1d", dtype=object)
    return pd.DataFrame(
        {
            name: pd.Series(columns[name], dtype=object) if _is_text(columns[name]) else columns[name]
            for name in SIGNALS_SCHEMA
        }
    )


def signals_files(
    scores: np.ndarray, *, shape: SignalShape, n_drop: int, generated_at: str
) -> tuple[bytes, bytes]:
    """`signals.parquet` / `signals.json` through pandas (the reference for `tables`)."""
    frame = signals_frame(scores, shape=shape, n_drop=n_drop, generated_at=generated_at)
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False, engine="pyarrow")
    text = frame.to_json(orient="table", date_format="iso", index=True)
    return buffer.getvalue(), text.encode()


def _is_text(values: object) -> bool:
    """Object arrays stay object (pandas < 3 wrote them so), not pandas 3's `str` dtype."""
    return isinstance(values, np.ndarray) and values.dtype == object


def pred_index(days: pd.DatetimeIndex, instruments: list[str], *, rows: int) -> pd.MultiIndex:
    """Index of `pred.pkl`: the last `rows` days (a size knob) times all instruments."""
    tail = max(1, min(len(days), rows))
    return pd.MultiIndex.from_product([days[-tail:], instruments], names=["datetime", "instrument"])


def pred_pickle(scores: np.ndarray, index: pd.MultiIndex) -> bytes:
    """`mlruns/.../artifacts/pred.pkl`: the model's score frame over `index` (see `pred_index`)."""
    tail = len(index) // scores.shape[1]
    return frame_pickle(pd.DataFrame({"score": scores[-tail:].ravel()}, index=index))


def factor_values(seed: int, name: str, size: int) -> np.ndarray:
    """Values of one generated factor: the same name gives the same values everywhere."""
    return np.random.default_rng([seed, zlib.crc32(name.encode())]).normal(0.0, 1.0, size)


def combined_index(days: pd.DatetimeIndex, instruments: list[str]) -> pd.MultiIndex:
    """(datetime, instrument) index; instruments kept as object dtype, as pandas < 3 wrote them."""
    return pd.MultiIndex.from_product(
        [days, pd.Index(instruments, dtype=object)], names=["datetime", "instrument"]
    )


def combined_factors_frame(
    seed: int, names: tuple[str, ...], *, days: pd.DatetimeIndex, instruments: list[str]
) -> pd.DataFrame:
    """The factor runner's frame: ('feature', name) columns over a (datetime, instrument) index."""
    index = combined_index(days, instruments)
    columns = pd.MultiIndex.from_tuples([("feature", name) for name in names])
    values = np.column_stack([factor_values(seed, name, len(index)) for name in names])
    return pd.DataFrame(values, index=index, columns=columns)


def combined_factors_parquet(
    seed: int, names: tuple[str, ...], *, days: pd.DatetimeIndex, instruments: list[str]
) -> bytes:
    """`combined_factors_df.parquet` (§8), written through pandas with pyarrow, so the raw
    parquet column names are tuple strings (the reference for `tables`)."""
    buffer = io.BytesIO()
    combined_factors_frame(seed, names, days=days, instruments=instruments).to_parquet(
        buffer, engine="pyarrow"
    )
    return buffer.getvalue()


def opaque_bytes(rng: np.random.Generator, size: int, *, prefix: bytes = b"") -> bytes:
    """Incompressible filler for heavy stand-ins (HDF5 files, session pickles)."""
    return prefix + rng.bytes(max(0, size - len(prefix)))


def small_pickle(obj: object) -> bytes:
    """Pickle of plain dicts/lists/strings only, so any restricted unpickler can read it."""
    return pickle.dumps(obj, protocol=4)


def parquet_column_names(data: bytes) -> list[str]:
    """Raw parquet column names (used by the tests and by the manifest builder)."""
    return [str(name) for name in pq.read_schema(pa.BufferReader(data)).names]
