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
from statistics import NormalDist
from typing import Literal

import numpy as np
import polars as pl

from workbench.errors import ConfigError

__all__ = [
    "EULER_GAMMA",
    "METRIC_KEYS",
    "QLIB_DAILY_PERIODS",
    "SERIES_NAMES",
    "align_excess_returns",
    "bootstrap_sharpe_diff_ci",
    "compute_return_metrics",
    "deflated_sharpe_ratio",
    "excess_curves",
    "expected_max_sharpe",
    "probabilistic_sharpe_ratio",
    "sharpe_stats",
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
    kept = selected.filter(
        pl.col("datetime").is_not_null(),
        *(pl.col(c).is_finite() for c in ("return", "bench", "cost")),
    ).sort("datetime")
    return kept, selected.height - kept.height


def _excess(rows: pl.DataFrame, *, with_cost: bool) -> np.ndarray:
    """Daily excess return, as Qlib's PortAnaRecord defines it."""
    expr = pl.col("return") - pl.col("bench")
    if with_cost:
        expr = expr - pl.col("cost")
    return rows.select(expr).to_series().to_numpy()


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
        r = _excess(rows, with_cost=series == "excess_return_with_cost")
        for name, value in _additive_metrics(r, periods_per_year=periods_per_year).items():
            out[f"{series}.additive.{name}"] = value
        for name, value in _compounded_metrics(r, periods_per_year=periods_per_year).items():
            out[f"{series}.compounded.{name}"] = value
    out["sharpe"] = out["excess_return_with_cost.additive.information_ratio"]
    out["skewness"], out["kurtosis"] = _moments(_excess(rows, with_cost=True))
    if "turnover" in rows.columns:
        turnover = rows["turnover"].drop_nulls().drop_nans()
        out["turnover_mean"] = float(turnover.mean()) if turnover.len() else None
    return out


def excess_curves(frame: pl.DataFrame) -> pl.DataFrame:
    """Chart-ready cumulative excess (with cost) and drawdown curves, additive and compounded.

    Uses the same dropping and drawdown conventions as :func:`compute_return_metrics`, so the
    minimum of each drawdown column equals the corresponding ``max_drawdown`` metric.
    """
    rows, _ = _daily_report(frame)
    excess = pl.col("return") - pl.col("bench") - pl.col("cost")
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


def align_excess_returns(
    treatment: pl.DataFrame, control: pl.DataFrame, *, with_cost: bool = True
) -> pl.DataFrame:
    """Daily excess returns of two reports on their common dates: ``datetime, treatment, control``.

    Paired tests need the same days on both sides; dates present in only one report are left out.
    """
    sides = []
    for label, frame in (("treatment", treatment), ("control", control)):
        rows, _ = _daily_report(frame)
        expr = pl.col("return") - pl.col("bench") - (pl.col("cost") if with_cost else pl.lit(0.0))
        sides.append(rows.select(pl.col("datetime"), expr.alias(label)))
    return sides[0].join(sides[1], on="datetime", how="inner").sort("datetime")


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
    return array[np.isfinite(array)]


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


def _paired_finite(treatment: ArrayLike, control: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Two equally long float arrays with every pair that has a non-finite side removed."""
    t, c = (
        v.cast(pl.Float64).to_numpy() if isinstance(v, pl.Series) else np.asarray(v, float)
        for v in (treatment, control)
    )
    if t.ndim != 1 or t.shape != c.shape:
        raise ConfigError(
            f"treatment and control must be date-aligned 1-D series of equal length, "
            f"got shapes {t.shape} and {c.shape} (see align_excess_returns)"
        )
    keep = np.isfinite(t) & np.isfinite(c)
    return t[keep], c[keep]


def _row_sharpe(x: np.ndarray, *, periods_per_year: int) -> np.ndarray:
    """Annualised Sharpe of every row; NaN where a row is flat (max == min)."""
    std = x.std(axis=1, ddof=1)
    flat = x.max(axis=1) == x.min(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        sr = np.where(flat, np.nan, x.mean(axis=1) / std)
    return sr * math.sqrt(periods_per_year)


def _block_indices(
    rng: np.random.Generator, *, rows: int, n: int, block: int, method: Literal["circular", "stationary"]
) -> np.ndarray:
    """(rows, n) day indices: blocks of consecutive days, wrapping around the end of the sample.

    ``circular``: fixed blocks of ``block`` days. ``stationary`` (Politis–Romano): a new block
    starts at each day with probability 1/block, so block lengths are geometric with that mean.
    """
    if method == "circular":
        n_blocks = -(-n // block)
        starts = rng.integers(0, n, size=(rows, n_blocks))
        idx = (starts[:, :, None] + np.arange(block)) % n
        return idx.reshape(rows, n_blocks * block)[:, :n]
    positions = np.arange(n)
    new_block = rng.random((rows, n)) < 1.0 / block
    new_block[:, 0] = True
    starts = rng.integers(0, n, size=(rows, n))
    last = np.maximum.accumulate(np.where(new_block, positions, 0), axis=1)
    return (np.take_along_axis(starts, last, axis=1) + positions - last) % n


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
    """(point, low, high) of annualised Sharpe(treatment) − Sharpe(control), percentile CI.

    Inputs are date-aligned daily excess returns (see :func:`align_excess_returns`). Each
    resample draws the SAME days for both sides, in blocks, so the cross-correlation of the two
    strategies and short-range autocorrelation survive. Deterministic for a given ``seed``.
    Resamples in which either side is flat are discarded.
    """
    t, c = _paired_finite(treatment, control)
    n = t.size
    if n < 2:
        raise ConfigError(f"bootstrap needs at least 2 paired finite observations, got {n}")
    if not 1 <= block <= n:
        raise ConfigError(f"block must be between 1 and the number of days ({n}), got {block}")
    if n_boot < 1:
        raise ConfigError(f"n_boot must be at least 1, got {n_boot}")
    if not 0 < alpha < 1:
        raise ConfigError(f"alpha must be in (0, 1), got {alpha}")
    _check_periods(periods_per_year)
    point = _row_sharpe(np.stack([t, c]), periods_per_year=periods_per_year)
    if not np.isfinite(point).all():
        raise ConfigError("Sharpe ratio undefined: treatment or control has zero variance")
    rng = np.random.default_rng(seed)
    diffs = np.empty(n_boot)
    chunk = max(1, _BOOT_CELLS // n)
    for start in range(0, n_boot, chunk):
        rows = min(chunk, n_boot - start)
        idx = _block_indices(rng, rows=rows, n=n, block=block, method=method)
        diffs[start : start + rows] = _row_sharpe(t[idx], periods_per_year=periods_per_year) - _row_sharpe(
            c[idx], periods_per_year=periods_per_year
        )
    diffs = diffs[np.isfinite(diffs)]
    if diffs.size == 0:
        raise ConfigError("every bootstrap resample was flat; the series are too short or constant")
    low, high = np.quantile(diffs, [alpha / 2.0, 1.0 - alpha / 2.0])
    return float(point[0] - point[1]), float(low), float(high)
