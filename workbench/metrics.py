"""Return-series metrics computed the same way for every experiment.

RD-Agent's own numbers (``qlib_res.csv``) come from Qlib's ``risk_analysis`` in additive
("sum") mode; quants also want compounded figures and an honest ranking that accounts for
how many strategies were tried. Everything here is a pure function of a daily Qlib report
(``ret.pkl`` converted to Polars: ``datetime, return, bench, cost`` and optionally
``turnover``) or of plain arrays, so results are reproducible from the archive alone.

Conventions
-----------
* Excess return without cost = ``return - bench``; with cost = ``return - bench - cost``.
* Standard deviations use ``ddof=1`` (as Qlib/pandas); skewness and kurtosis are the
  population (biased) moment ratios used by Bailey & López de Prado, kurtosis is Pearson's
  (normal = 3).
* Annualisation factor: ``periods_per_year`` (default 252). Qlib's ``risk_analysis`` called by
  ``PortAnaRecord`` with ``freq="day"`` actually uses **238**; pass
  ``periods_per_year=QLIB_DAILY_PERIODS`` to reproduce ``qlib_res.csv`` numbers exactly.
* Sharpe ratios given to :func:`probabilistic_sharpe_ratio` and :func:`deflated_sharpe_ratio`
  are per period unless ``periods_per_year`` is passed, in which case they are annualised and
  are de-annualised as ``SR / sqrt(P)`` (and a variance of annualised SRs as ``V / P``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from statistics import NormalDist
from typing import Literal, cast

import numpy as np
import polars as pl

from workbench.errors import ConfigError

__all__ = [
    "EULER_GAMMA",
    "METRIC_KEYS",
    "QLIB_DAILY_PERIODS",
    "SERIES_NAMES",
    "bootstrap_sharpe_diff_ci",
    "bootstrap_sharpe_diff_cis",
    "compute_return_metrics",
    "deflated_sharpe_ratio",
    "excess_curves",
    "excess_return",
    "excess_returns",
    "expected_max_sharpe",
    "probabilistic_sharpe_ratio",
    "sharpe_stats",
    "usable_rows",
]

MetricValue = float | int | str | None
ArrayLike = np.ndarray | pl.Series

EULER_GAMMA = 0.5772156649015329
"""Euler–Mascheroni constant, used by the expected maximum of N Gaussian Sharpe ratios."""

QLIB_DAILY_PERIODS = 238
"""The annualisation factor Qlib's ``risk_analysis(freq="day")`` really uses (not 252)."""

SERIES_NAMES: tuple[str, str] = ("excess_return_without_cost", "excess_return_with_cost")
_ADDITIVE = ("mean", "std", "annualized_return", "information_ratio", "max_drawdown")
_COMPOUNDED = ("annualized_return", "max_drawdown", "total_return", "volatility")
_SUMMARY = ("turnover_mean", "sharpe", "skewness", "kurtosis")
_REQUIRED = ("datetime", "return", "bench", "cost")

METRIC_KEYS: tuple[str, ...] = (
    "n_days",
    "n_dropped",
    "start",
    "end",
    *(f"{s}.additive.{m}" for s in SERIES_NAMES for m in _ADDITIVE),
    *(f"{s}.compounded.{m}" for s in SERIES_NAMES for m in _COMPOUNDED),
    *_SUMMARY,
)
"""Every key :func:`compute_return_metrics` returns, in a stable order (catalog columns)."""

_NORMAL = NormalDist()


# --------------------------------------------------------------------------- daily report


def _daily_report(frame: pl.DataFrame) -> tuple[pl.DataFrame, int]:
    """Validated, sorted rows with finite return/bench/cost, and how many rows were dropped.

    Dropping (rather than zero-filling) keeps a missing day from looking like a flat day.
    """
    missing = [c for c in _REQUIRED if c not in frame.columns]
    if missing:
        raise ConfigError(
            f"daily report lacks column(s) {missing}; expected a converted Qlib report with "
            f"{list(_REQUIRED)} (see spec §7.1)"
        )
    dtype = frame.schema["datetime"]
    if dtype == pl.Date:
        when = pl.col("datetime")
    elif isinstance(dtype, pl.Datetime):
        when = pl.col("datetime").dt.date()
    else:
        raise ConfigError(f"daily report column 'datetime' must be Date or Datetime, got {dtype}")
    numeric = ["return", "bench", "cost"] + (["turnover"] if "turnover" in frame.columns else [])
    selected = frame.select(when.alias("datetime"), *(pl.col(c).cast(pl.Float64) for c in numeric))
    kept = selected.filter(pl.col("datetime").is_not_null(), usable_rows()).sort("datetime")
    return kept, selected.height - kept.height


def excess_return(*, with_cost: bool = True) -> pl.Expr:
    """Daily excess return as Qlib's PortAnaRecord defines it: ``return - bench`` (``- cost``).

    The one place the formula is written; every metric, curve and comparison uses it.
    """
    expr = pl.col("return") - pl.col("bench")
    return expr - pl.col("cost") if with_cost else expr


def usable_rows() -> pl.Expr:
    """Rows metrics can use: finite return, bench and cost (others are dropped, never zero-filled)."""
    return pl.all_horizontal([pl.col(c).is_finite() for c in ("return", "bench", "cost")])


def excess_returns(rows: pl.DataFrame, *, with_cost: bool = True) -> np.ndarray:
    """The daily excess returns of report rows (already filtered with :func:`usable_rows`)."""
    return rows.select(excess_return(with_cost=with_cost)).to_series().to_numpy()


def _none_if_nan(value: float) -> float | None:
    """Metrics are stored as SQL NULL, never as NaN, so 'undefined' is unambiguous."""
    return None if not math.isfinite(value) else float(value)


def _is_flat(r: np.ndarray) -> bool:
    """Exactly constant: its std may still be a rounding residue like 1e-18, so test max == min."""
    return bool(r.max() == r.min())


def _additive_metrics(r: np.ndarray, *, periods_per_year: int) -> dict[str, float | None]:
    """Exactly Qlib's ``risk_analysis(mode="sum")`` with N = periods_per_year.

    Note: Qlib's running maximum starts at the first day's cumulative sum, not at 0, so a loss
    on day one is not counted as drawdown. Reproduced on purpose for comparability.
    """
    mean = float(r.mean())
    std = float(r.std(ddof=1))
    cum = np.cumsum(r)
    return {
        "mean": mean,
        "std": std,
        "annualized_return": mean * periods_per_year,
        "information_ratio": None if _is_flat(r) else mean / std * math.sqrt(periods_per_year),
        "max_drawdown": float((cum - np.maximum.accumulate(cum)).min()),
    }


def _compounded_metrics(r: np.ndarray, *, periods_per_year: int) -> dict[str, float | None]:
    """Geometric counterparts: wealth starts at 1 and the starting 1 counts as a peak.

    A terminal wealth at or below zero (a total loss) annualises to -1.
    """
    wealth = np.cumprod(1.0 + r)
    terminal = float(wealth[-1])
    peak = np.maximum.accumulate(np.concatenate(([1.0], wealth)))[1:]
    annualized = terminal ** (periods_per_year / r.size) - 1.0 if terminal > 0 else -1.0
    return {
        "annualized_return": _none_if_nan(annualized),
        "max_drawdown": float((wealth / peak - 1.0).min()),
        "total_return": terminal - 1.0,
        "volatility": float(r.std(ddof=1)) * math.sqrt(periods_per_year),
    }


def _moments(r: np.ndarray) -> tuple[float | None, float | None]:
    """Population skewness and Pearson kurtosis (normal = 3); None when the series is flat."""
    if _is_flat(r):
        return None, None
    dev = r - r.mean()
    m2 = float(np.mean(dev**2))
    return float(np.mean(dev**3)) / m2**1.5, float(np.mean(dev**4)) / m2**2


def compute_return_metrics(frame: pl.DataFrame, *, periods_per_year: int = 252) -> dict[str, MetricValue]:
    """All return metrics of one daily report, under the keys of :data:`METRIC_KEYS`.

    Why one function: every experiment must be measured identically before it is compared.
    Rows whose return, bench or cost is null/NaN/inf are dropped and counted in ``n_dropped``.
    With fewer than 2 rows left every numeric metric is None (``n_days``, ``n_dropped``,
    ``start``, ``end`` are still reported); a constant series makes IR, Sharpe and moments None.
    """
    _check_periods(periods_per_year)
    rows, n_dropped = _daily_report(frame)
    out: dict[str, MetricValue] = dict.fromkeys(METRIC_KEYS)
    out["n_days"] = rows.height
    out["n_dropped"] = n_dropped
    if rows.height:
        out["start"] = rows["datetime"][0].isoformat()
        out["end"] = rows["datetime"][-1].isoformat()
    if rows.height < 2:
        return out
    for series in SERIES_NAMES:
        r = excess_returns(rows, with_cost=series == "excess_return_with_cost")
        for name, value in _additive_metrics(r, periods_per_year=periods_per_year).items():
            out[f"{series}.additive.{name}"] = value
        for name, value in _compounded_metrics(r, periods_per_year=periods_per_year).items():
            out[f"{series}.compounded.{name}"] = value
    out["sharpe"] = out["excess_return_with_cost.additive.information_ratio"]
    out["skewness"], out["kurtosis"] = _moments(excess_returns(rows, with_cost=True))
    if "turnover" in rows.columns:
        turnover = rows["turnover"].drop_nulls().drop_nans()
        out["turnover_mean"] = float(cast(float, turnover.mean())) if turnover.len() else None
    return out


def excess_curves(frame: pl.DataFrame) -> pl.DataFrame:
    """Chart-ready cumulative excess (with cost) and drawdown curves, additive and compounded.

    Uses the same dropping and drawdown conventions as :func:`compute_return_metrics`, so the
    minimum of each drawdown column equals the corresponding ``max_drawdown`` metric.
    """
    rows, _ = _daily_report(frame)
    excess = excess_return(with_cost=True)
    wealth = (1.0 + pl.col("excess_with_cost")).cum_prod()
    return (
        rows.select(pl.col("datetime"), excess.alias("excess_with_cost"))
        .with_columns(pl.col("excess_with_cost").cum_sum().alias("cum_excess_additive"))
        .with_columns(
            (wealth - 1.0).alias("cum_excess_compounded"),
            (pl.col("cum_excess_additive") - pl.col("cum_excess_additive").cum_max()).alias(
                "drawdown_additive"
            ),
            (wealth / pl.max_horizontal(wealth.cum_max(), pl.lit(1.0)) - 1.0).alias("drawdown_compounded"),
        )
    )


# --------------------------------------------------------------------------- honest ranking


def _check_periods(periods_per_year: int | None) -> None:
    if periods_per_year is not None and periods_per_year < 1:
        raise ConfigError(f"periods_per_year must be a positive integer, got {periods_per_year}")


def _per_period(value: float, periods_per_year: int | None, *, power: float) -> float:
    """De-annualise: a Sharpe ratio divides by sqrt(P) (power 0.5), a variance of SRs by P."""
    _check_periods(periods_per_year)
    return value if periods_per_year is None else value / periods_per_year**power


def _finite(values: ArrayLike) -> np.ndarray:
    """Float array without nulls/NaN/inf (Polars nulls become NaN first)."""
    array = values.cast(pl.Float64).to_numpy() if isinstance(values, pl.Series) else np.asarray(values, float)
    finite: np.ndarray = array[np.isfinite(array)]
    return finite


def sharpe_stats(excess: ArrayLike) -> dict[str, float | int | None]:
    """Per-period Sharpe ratio, length, skewness and Pearson kurtosis: the inputs of PSR/DSR.

    Non-finite values are dropped first. ``sr`` (mean / std with ddof=1, NOT annualised),
    ``skew`` and ``kurtosis`` are None with fewer than 2 values or a zero standard deviation.
    """
    r = _finite(excess)
    out: dict[str, float | int | None] = {"sr": None, "n": int(r.size), "skew": None, "kurtosis": None}
    if r.size < 2:
        return out
    if not _is_flat(r):
        out["sr"] = float(r.mean()) / float(r.std(ddof=1))
        out["skew"], out["kurtosis"] = _moments(r)
    return out


def probabilistic_sharpe_ratio(
    sr: float,
    *,
    n: int,
    skew: float,
    kurtosis: float,
    sr_benchmark: float = 0.0,
    periods_per_year: int | None = None,
) -> float:
    """Probability that the true Sharpe ratio exceeds ``sr_benchmark`` (Bailey & López de Prado).

    PSR = Φ((SR − SR*)·√(n−1) / √(1 − γ3·SR + (γ4−1)/4·SR²)), SR per period, γ4 Pearson kurtosis.
    With ``periods_per_year`` both ``sr`` and ``sr_benchmark`` are taken as annualised and divided
    by √periods_per_year first.
    """
    if n < 2:
        raise ConfigError(f"PSR needs at least 2 observations, got n={n}")
    for label, value in (("sr", sr), ("skew", skew), ("kurtosis", kurtosis), ("sr_benchmark", sr_benchmark)):
        if not math.isfinite(value):
            raise ConfigError(f"PSR input {label} must be finite, got {value}")
    sr = _per_period(sr, periods_per_year, power=0.5)
    sr_benchmark = _per_period(sr_benchmark, periods_per_year, power=0.5)
    radicand = 1.0 - skew * sr + (kurtosis - 1.0) / 4.0 * sr**2
    if radicand <= 0:
        raise ConfigError(
            f"PSR undefined: 1 - skew*SR + (kurtosis-1)/4*SR^2 = {radicand:.4g} <= 0 "
            f"(skew={skew}, kurtosis={kurtosis}, SR={sr}); check that kurtosis is Pearson (normal = 3)"
        )
    return _NORMAL.cdf((sr - sr_benchmark) * math.sqrt(n - 1) / math.sqrt(radicand))


def expected_max_sharpe(*, n_trials: int, var_trials: float) -> float:
    """Expected maximum Sharpe ratio of ``n_trials`` unskilled trials with that SR variance.

    E[max SR] ≈ √V·((1−γ)·Φ⁻¹(1−1/N) + γ·Φ⁻¹(1−1/(N·e))); the result is in the units of
    √var_trials (per period in, per period out). One trial involves no selection: 0.
    """
    if n_trials < 1:
        raise ConfigError(f"n_trials must be at least 1, got {n_trials}")
    if not (var_trials >= 0 and math.isfinite(var_trials)):
        raise ConfigError(f"var_trials must be a finite variance >= 0, got {var_trials}")
    if n_trials == 1:
        return 0.0
    z1 = _NORMAL.inv_cdf(1.0 - 1.0 / n_trials)
    z2 = _NORMAL.inv_cdf(1.0 - 1.0 / (n_trials * math.e))
    return math.sqrt(var_trials) * ((1.0 - EULER_GAMMA) * z1 + EULER_GAMMA * z2)


def deflated_sharpe_ratio(
    sr: float,
    *,
    n: int,
    skew: float,
    kurtosis: float,
    n_trials: int,
    var_trials: float,
    periods_per_year: int | None = None,
) -> float:
    """PSR against the Sharpe ratio the best of ``n_trials`` lucky trials would reach anyway.

    Per-period inputs by default. With ``periods_per_year`` = P, ``sr`` is annualised (÷ √P) and
    ``var_trials`` is the variance of the trials' annualised SRs (÷ P); e.g. the paper's example
    is ``deflated_sharpe_ratio(2.5, n=1250, skew=-3, kurtosis=10, n_trials=100, var_trials=0.5,
    periods_per_year=250)`` ≈ 0.9004.
    """
    sr_daily = _per_period(sr, periods_per_year, power=0.5)
    var_daily = _per_period(var_trials, periods_per_year, power=1.0)
    sr_star = expected_max_sharpe(n_trials=n_trials, var_trials=var_daily)
    return probabilistic_sharpe_ratio(sr_daily, n=n, skew=skew, kurtosis=kurtosis, sr_benchmark=sr_star)


# --------------------------------------------------------------------------- paired bootstrap

_BOOT_CELLS = 2_000_000  # resampled values per chunk: bounds memory at ~50 MB


def _paired_finite_rows(series: Sequence[ArrayLike]) -> np.ndarray:
    """A (series, days) float array of equally long series, without the days any of them lacks."""
    arrays = [
        v.cast(pl.Float64).to_numpy() if isinstance(v, pl.Series) else np.asarray(v, float) for v in series
    ]
    shapes = {a.shape for a in arrays}
    if any(a.ndim != 1 for a in arrays) or len(shapes) != 1:
        raise ConfigError(
            f"treatment and control must be date-aligned 1-D series of equal length, "
            f"got shapes {', '.join(str(a.shape) for a in arrays)} (join the reports on their dates first)"
        )
    x = np.stack(arrays)
    return x[:, np.isfinite(x).all(axis=0)]


def _row_sharpe(x: np.ndarray, *, periods_per_year: int) -> np.ndarray:
    """Annualised Sharpe of every row; NaN where a row is flat (max == min)."""
    std = x.std(axis=1, ddof=1)
    flat = x.max(axis=1) == x.min(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        sr = np.where(flat, np.nan, x.mean(axis=1) / std)
    return sr * math.sqrt(periods_per_year)


def _circular_indices(starts: np.ndarray, *, n: int, block: int) -> np.ndarray:
    """(rows, n) day indices of circular blocks of ``block`` days beginning at ``starts``."""
    idx = (starts[:, :, None] + np.arange(block)) % n
    return idx.reshape(starts.shape[0], starts.shape[1] * block)[:, :n]


def _block_indices(
    rng: np.random.Generator, *, rows: int, n: int, block: int, method: Literal["circular", "stationary"]
) -> np.ndarray:
    """(rows, n) day indices: blocks of consecutive days, wrapping around the end of the sample.

    ``circular``: fixed blocks of ``block`` days. ``stationary`` (Politis–Romano): a new block
    starts at each day with probability 1/block, so block lengths are geometric with that mean.
    """
    if method == "circular":
        return _circular_indices(rng.integers(0, n, size=(rows, -(-n // block))), n=n, block=block)
    positions = np.arange(n)
    new_block = rng.random((rows, n)) < 1.0 / block
    new_block[:, 0] = True
    starts = rng.integers(0, n, size=(rows, n))
    last = np.maximum.accumulate(np.where(new_block, positions, 0), axis=1)
    return (np.take_along_axis(starts, last, axis=1) + positions - last) % n


def _has_flat_block(x: np.ndarray, block: int) -> bool:
    """Could a circular block of ``block`` days be constant? (Then a resample could be flat.)"""
    same = x == np.roll(x, -1)
    if block <= 1:
        return True
    ext = np.concatenate([same, same[: block - 1]])
    return bool(np.lib.stride_tricks.sliding_window_view(ext, block - 1).all(axis=1).any())


def _block_sums(x: np.ndarray, length: int) -> np.ndarray:
    """Sum of ``length`` consecutive values starting at every day, wrapping around the end."""
    ext = np.concatenate([x, x[: length - 1]]) if length > 1 else x
    sums: np.ndarray = np.lib.stride_tricks.sliding_window_view(ext, length).sum(axis=1)
    return sums


def _block_sum_sharpes(x: np.ndarray, starts: np.ndarray, *, block: int, periods_per_year: int) -> np.ndarray:
    """:func:`_row_sharpe` of the circular-block resamples given by ``starts``, from block sums.

    Equal to gathering the days (``_row_sharpe(x[idx])``, tests check it) but a block's sum is
    computed once instead of once per resample; only valid when no block can be flat.
    """
    n = x.size
    last = n - (starts.shape[1] - 1) * block
    centre = float(x.mean())
    y = x - centre
    totals = np.zeros(starts.shape[0])
    squares = np.zeros(starts.shape[0])
    for values, target in ((y, totals), (y * y, squares)):
        full, tail = _block_sums(values, block), _block_sums(values, last)
        target += full[starts[:, :-1]].sum(axis=1) + tail[starts[:, -1]]
    mean = totals / n
    std = np.sqrt(np.maximum(squares - n * mean * mean, 0.0) / (n - 1))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(std > 0, (mean + centre) / std, np.nan) * math.sqrt(periods_per_year)


def _resampled_sharpes(
    x: np.ndarray,
    *,
    n_boot: int,
    block: int,
    seed: int,
    periods_per_year: int,
    method: Literal["circular", "stationary"],
) -> np.ndarray:
    """(series, n_boot) Sharpe ratios of every series on the same resampled days.

    Circular blocks are summed once per block (`_block_sum_sharpes`) for every series that cannot
    give a flat resample, and gathered day by day otherwise; each series' figures depend on that
    series and the drawn days alone, so a treatment gets the same interval alone or with others.
    """
    n = x.shape[1]
    rng = np.random.default_rng(seed)
    chunk = max(1, _BOOT_CELLS // n)
    by_sums = [
        method == "circular" and 2 <= block and 2 * block <= n and not _has_flat_block(row, block)
        for row in x
    ]
    resampled = np.empty((x.shape[0], n_boot))
    for start in range(0, n_boot, chunk):
        rows = min(chunk, n_boot - start)
        if method == "circular":
            starts = rng.integers(0, n, size=(rows, -(-n // block)))
            idx = _circular_indices(starts, n=n, block=block) if not all(by_sums) else None
        else:
            idx = _block_indices(rng, rows=rows, n=n, block=block, method=method)
        for i, series in enumerate(x):
            if by_sums[i]:
                values = _block_sum_sharpes(series, starts, block=block, periods_per_year=periods_per_year)
            else:
                assert idx is not None
                values = _row_sharpe(series[idx], periods_per_year=periods_per_year)
            resampled[i, start : start + rows] = values
    return resampled


def _check_bootstrap(*, n: int, block: int, n_boot: int, alpha: float, periods_per_year: int) -> None:
    if n < 2:
        raise ConfigError(f"bootstrap needs at least 2 paired finite observations, got {n}")
    if not 1 <= block <= n:
        raise ConfigError(f"block must be between 1 and the number of days ({n}), got {block}")
    if n_boot < 1:
        raise ConfigError(f"n_boot must be at least 1, got {n_boot}")
    if not 0 < alpha < 1:
        raise ConfigError(f"alpha must be in (0, 1), got {alpha}")
    _check_periods(periods_per_year)


def bootstrap_sharpe_diff_cis(
    control: ArrayLike,
    treatments: Mapping[str, ArrayLike],
    *,
    n_boot: int = 2000,
    alpha: float = 0.05,
    block: int = 5,
    seed: int = 0,
    periods_per_year: int = 252,
    method: Literal["circular", "stationary"] = "circular",
) -> dict[str, tuple[float, float, float] | str]:
    """(point, low, high) of annualised Sharpe(treatment) − Sharpe(control) for every treatment.

    Inputs are date-aligned daily excess returns (the same days, in order, for every series); days on
    which any series is not finite are left out for all. Each resample draws the SAME days for
    every series, in blocks, so cross-correlation and short-range autocorrelation survive; the
    days are drawn once, so each treatment gets exactly the interval it would get alone.
    Deterministic for a given ``seed``. Resamples in which either side is flat are discarded.
    A treatment whose interval is undefined gets the reason as a string; bad settings raise
    :class:`ConfigError`.
    """
    names = list(treatments)
    x = _paired_finite_rows([control, *(treatments[name] for name in names)])
    n = x.shape[1]
    _check_bootstrap(n=n, block=block, n_boot=n_boot, alpha=alpha, periods_per_year=periods_per_year)
    point = _row_sharpe(x, periods_per_year=periods_per_year)
    resampled = _resampled_sharpes(
        x, n_boot=n_boot, block=block, seed=seed, periods_per_year=periods_per_year, method=method
    )
    out: dict[str, tuple[float, float, float] | str] = {}
    for i, name in enumerate(names, start=1):
        if not (np.isfinite(point[0]) and np.isfinite(point[i])):
            out[name] = "Sharpe ratio undefined: treatment or control has zero variance"
            continue
        diffs = resampled[i] - resampled[0]
        diffs = diffs[np.isfinite(diffs)]
        if diffs.size == 0:
            out[name] = "every bootstrap resample was flat; the series are too short or constant"
            continue
        low, high = np.quantile(diffs, [alpha / 2.0, 1.0 - alpha / 2.0])
        out[name] = (float(point[i] - point[0]), float(low), float(high))
    return out


def bootstrap_sharpe_diff_ci(
    treatment: ArrayLike,
    control: ArrayLike,
    *,
    n_boot: int = 2000,
    alpha: float = 0.05,
    block: int = 5,
    seed: int = 0,
    periods_per_year: int = 252,
    method: Literal["circular", "stationary"] = "circular",
) -> tuple[float, float, float]:
    """:func:`bootstrap_sharpe_diff_cis` for one treatment; an undefined interval raises ConfigError."""
    result = bootstrap_sharpe_diff_cis(
        control,
        {"treatment": treatment},
        n_boot=n_boot,
        alpha=alpha,
        block=block,
        seed=seed,
        periods_per_year=periods_per_year,
        method=method,
    )["treatment"]
    if isinstance(result, str):
        raise ConfigError(result)
    return result
