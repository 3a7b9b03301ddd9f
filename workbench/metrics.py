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
from dataclasses import dataclass
from statistics import NormalDist
from typing import Literal, cast

import numpy as np
import polars as pl

from workbench.errors import ConfigError

__all__ = [
    "BOOTSTRAP_METHODS",
    "BootstrapMethod",
    "EULER_GAMMA",
    "METRIC_KEYS",
    "QLIB_DAILY_PERIODS",
    "SERIES_NAMES",
    "SharpeDiffTest",
    "bootstrap_sharpe_diff_ci",
    "bootstrap_sharpe_diff_cis",
    "compute_return_metrics",
    "deflated_sharpe_ratio",
    "excess_curves",
    "excess_return",
    "effective_trials",
    "excess_returns",
    "expected_max_sharpe",
    "holm_adjust",
    "optimal_block_length",
    "probabilistic_sharpe_ratio",
    "sharpe_diff_tests",
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
    # the same arithmetic as `excess_return()` ((return - bench) - cost), on arrays taken once
    without_cost = rows["return"].to_numpy() - rows["bench"].to_numpy()
    excess = {"excess_return_without_cost": without_cost}
    excess["excess_return_with_cost"] = without_cost - rows["cost"].to_numpy()
    for series in SERIES_NAMES:
        r = excess[series]
        for name, value in _additive_metrics(r, periods_per_year=periods_per_year).items():
            out[f"{series}.additive.{name}"] = value
        for name, value in _compounded_metrics(r, periods_per_year=periods_per_year).items():
            out[f"{series}.compounded.{name}"] = value
    out["sharpe"] = out["excess_return_with_cost.additive.information_ratio"]
    out["skewness"], out["kurtosis"] = _moments(excess["excess_return_with_cost"])
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


def expected_max_sharpe(*, n_trials: float, var_trials: float) -> float:
    """Expected maximum Sharpe ratio of ``n_trials`` unskilled trials with that SR variance.

    E[max SR] ≈ √V·((1−γ)·Φ⁻¹(1−1/N) + γ·Φ⁻¹(1−1/(N·e))); the result is in the units of
    √var_trials (per period in, per period out). One trial involves no selection: 0. N may be an
    effective (fractional) number of trials; the approximation is floored at 0 below N ≈ 1.5.
    """
    if not (n_trials >= 1 and math.isfinite(n_trials)):
        raise ConfigError(f"n_trials must be at least 1, got {n_trials}")
    if not (var_trials >= 0 and math.isfinite(var_trials)):
        raise ConfigError(f"var_trials must be a finite variance >= 0, got {var_trials}")
    if n_trials == 1:
        return 0.0
    z1 = _NORMAL.inv_cdf(1.0 - 1.0 / n_trials)
    z2 = _NORMAL.inv_cdf(1.0 - 1.0 / (n_trials * math.e))
    return max(0.0, math.sqrt(var_trials) * ((1.0 - EULER_GAMMA) * z1 + EULER_GAMMA * z2))


def effective_trials(n_trials: int, mean_correlation: float) -> float:
    """Independent trials equivalent to ``n_trials`` with that average pairwise correlation.

    N_eff = ρ̄ + (1 − ρ̄)·N (López de Prado): uncorrelated trials count fully, identical ones as one.
    A negative average correlation is taken as 0 (N_eff never exceeds N).
    """
    if n_trials < 1:
        raise ConfigError(f"n_trials must be at least 1, got {n_trials}")
    if not math.isfinite(mean_correlation):
        raise ConfigError(f"mean_correlation must be finite, got {mean_correlation}")
    rho = min(1.0, max(0.0, mean_correlation))
    return rho + (1.0 - rho) * n_trials


def deflated_sharpe_ratio(
    sr: float,
    *,
    n: int,
    skew: float,
    kurtosis: float,
    n_trials: float,
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

BootstrapMethod = Literal["stationary", "circular"]
BOOTSTRAP_METHODS: tuple[str, ...] = ("stationary", "circular")
_BOOT_CELLS = 2_000_000  # resampled values per chunk: bounds memory at ~50 MB


def _flat_top(t: float) -> float:
    """The trapezoidal flat-top kernel of Politis & White: 1 up to 1/2, then down to 0 at 1."""
    t = abs(t)
    return 1.0 if t <= 0.5 else max(0.0, 2.0 * (1.0 - t))


def optimal_block_length(values: ArrayLike, *, method: BootstrapMethod = "stationary") -> float:
    """Data-driven block length for a block bootstrap of the mean (Politis & White 2004).

    With the correction of Patton, Politis & White (2009): b = (2·G² / D)^(1/3) · n^(1/3), where
    G = Σ λ(k/M)·|k|·γ(k), D = 2·g² (stationary: the EXPECTED block length) or 4/3·g² (circular),
    g = Σ λ(k/M)·γ(k) the long-run variance, λ the flat-top kernel and M = 2·m̂ with m̂ the first
    lag after which K_n = max(5, √log10 n) autocorrelations are all within 2·√(log10 n / n).
    Bounded to [1, min(3√n, n/3)]; a series without autocorrelation gives (about) 1.
    """
    x = _finite(values)
    n = x.size
    if n < 4 or _is_flat(x):
        return 1.0
    eps = x - x.mean()
    kn = max(5, math.ceil(math.sqrt(math.log10(n))))
    m_max = min(math.ceil(math.sqrt(n)) + kn, n - 1)
    acv = np.array([float(eps[k:] @ eps[: n - k]) / n for k in range(m_max + 1)])
    rho = np.abs(acv / acv[0])
    threshold = 2.0 * math.sqrt(math.log10(n) / n)
    m_hat = next(
        (m for m in range(0, m_max - kn + 1) if (rho[m + 1 : m + kn + 1] < threshold).all()),
        m_max,
    )
    big_m = min(2 * max(m_hat, 1), m_max)
    weights = [_flat_top(k / big_m) for k in range(1, big_m + 1)]
    g_sum = sum(2.0 * w * k * acv[k] for k, w in enumerate(weights, start=1))
    lrv = acv[0] + sum(2.0 * w * acv[k] for k, w in enumerate(weights, start=1))
    if lrv <= 0:
        return 1.0
    d = (2.0 if method == "stationary" else 4.0 / 3.0) * lrv**2
    b = (2.0 * g_sum**2 / d) ** (1.0 / 3.0) * n ** (1.0 / 3.0)
    return float(min(max(b, 1.0), max(1.0, min(3.0 * math.sqrt(n), n / 3.0))))


def holm_adjust(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm's step-down adjustment of p-values tested together (None stays None, not counted).

    Sorted ascending, the i-th of m gets max over j ≤ i of min(1, (m − j + 1)·p_(j)); it controls the
    chance of any false 'better than the control' at the nominal level, whatever the dependence.
    """
    known = sorted((p, i) for i, p in enumerate(p_values) if p is not None)
    out: list[float | None] = [None] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(known):
        running = max(running, min(1.0, (len(known) - rank) * p))
        out[i] = running
    return out


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


def _sharpe_influence(x: np.ndarray) -> np.ndarray:
    """Per-day influence of each row's Sharpe ratio (delta method on the mean and second moment)."""
    mean = x.mean(axis=-1, keepdims=True)
    second = (x * x).mean(axis=-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        sigma3 = np.maximum(second - mean * mean, 0.0) ** 1.5
        influence: np.ndarray = (second / sigma3) * (x - mean) - (mean / (2.0 * sigma3)) * (x * x - second)
    return influence


def _diff_se(control: np.ndarray, treatment: np.ndarray, *, lags: int, periods_per_year: int) -> np.ndarray:
    """HAC (Bartlett, ``lags``) standard error of annualised Sharpe(treatment) − Sharpe(control), per row.

    The delta-method standard error of Ledoit & Wolf (2008) with a kernel estimate of the long-run
    variance, so autocorrelated days do not pass for independent evidence.
    """
    z = _sharpe_influence(treatment) - _sharpe_influence(control)
    n = z.shape[-1]
    lrv = (z * z).mean(axis=-1)
    for j in range(1, min(lags, n - 1) + 1):
        lrv = lrv + 2.0 * (1.0 - j / (lags + 1)) * (z[..., j:] * z[..., :-j]).sum(axis=-1) / n
    se: np.ndarray = np.sqrt(np.maximum(lrv, 0.0) / n) * math.sqrt(periods_per_year)
    return se


def _block_indices(
    rng: np.random.Generator, *, rows: int, n: int, block: float, method: BootstrapMethod
) -> np.ndarray:
    """(rows, n) day indices: blocks of consecutive days, wrapping around the end of the sample.

    ``circular``: fixed blocks of ``ceil(block)`` days. ``stationary`` (Politis & Romano 1994): a new
    block starts at each day with probability 1/block, so block lengths are geometric with that mean.
    """
    if method == "circular":
        size = math.ceil(block)
        starts = rng.integers(0, n, size=(rows, -(-n // size)))
        idx = (starts[:, :, None] + np.arange(size)) % n
        return idx.reshape(rows, starts.shape[1] * size)[:, :n]
    positions = np.arange(n)
    new_block = rng.random((rows, n)) < 1.0 / block
    new_block[:, 0] = True
    starts = rng.integers(0, n, size=(rows, n))
    last = np.maximum.accumulate(np.where(new_block, positions, 0), axis=1)
    return (np.take_along_axis(starts, last, axis=1) + positions - last) % n


def _check_bootstrap(*, n: int, block: float, n_boot: int, alpha: float, periods_per_year: int) -> None:
    if n < 2:
        raise ConfigError(f"bootstrap needs at least 2 paired finite observations, got {n}")
    if not 1 <= block <= n:
        raise ConfigError(f"block must be between 1 and the number of days ({n}), got {block}")
    if n_boot < 1:
        raise ConfigError(f"n_boot must be at least 1, got {n_boot}")
    if not 0 < alpha < 1:
        raise ConfigError(f"alpha must be in (0, 1), got {alpha}")
    _check_periods(periods_per_year)


@dataclass(frozen=True)
class SharpeDiffTest:
    """Annualised Sharpe(treatment) − Sharpe(control) with two bootstrap intervals and a p-value.

    ``low``/``high``: percentile interval of the resampled differences. ``studentized_low/high``:
    symmetric studentized interval (Ledoit & Wolf 2008), d ± q·se with q the (1 − alpha) quantile of
    |d* − d| / se*; ``p_value``: their two-sided bootstrap p-value of "no difference". ``block`` is
    the (expected, for ``stationary``) block length used; ``block_basis`` says where it came from.
    """

    point: float
    low: float
    high: float
    studentized_low: float | None
    studentized_high: float | None
    se: float | None
    p_value: float | None
    block: float
    block_basis: str
    method: BootstrapMethod
    n_days: int
    n_resamples: int


class _Draws:
    """Per chunk of resamples: how often each day is drawn, and how often each lag-j pair of
    consecutive days follows itself (within a block), as (rows, n) count matrices.

    Every moment of a resample is then a matrix product with per-day features, so a treatment
    costs a few BLAS calls instead of gathering n_boot × n values; the draws are shared by every
    treatment of the comparison.
    """

    def __init__(self, idx: np.ndarray, *, lags: int) -> None:
        rows, n = idx.shape
        offsets = (np.arange(rows) * n)[:, None]
        self.n = n
        self.counts = np.bincount((idx + offsets).ravel(), minlength=rows * n).reshape(rows, n).astype(float)
        self.pairs = []
        for j in range(1, min(lags, n - 1) + 1):
            follows = idx[:, j:] == (idx[:, :-j] + j) % n
            flat = (idx[:, :-j] + offsets)[follows]
            self.pairs.append(np.bincount(flat, minlength=rows * n).reshape(rows, n).astype(float))


def _side_coefficients(mean: np.ndarray, second: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Population sd and the delta-method weights of mean and second moment in Sharpe = mean / sd."""
    var = second - mean * mean
    flat = var <= 1e-12 * np.maximum(second, np.finfo(float).tiny)
    with np.errstate(divide="ignore", invalid="ignore"):
        sigma = np.where(flat, np.nan, np.sqrt(np.maximum(var, 0.0)))
        return sigma, second / sigma**3, -mean / (2.0 * sigma**3)


_PAIRS = ((0, 0), (0, 1), (1, 1), (0, 2), (0, 3), (1, 2), (1, 3))  # (i, k) with a treatment feature
_CONTROL_PAIRS = ((2, 2), (2, 3), (3, 3))  # control features only: shared by every treatment


def _symmetric(values: dict[tuple[int, int], np.ndarray]) -> np.ndarray:
    """(..., 4, 4) symmetric matrices from their upper-triangle entries."""
    first = next(iter(values.values()))
    out = np.empty((*first.shape, 4, 4))
    for (i, k), v in values.items():
        out[..., i, k] = v
        out[..., k, i] = v
    return out


def _resampled_diffs(
    x: np.ndarray, draws: _Draws, *, lags: int, periods_per_year: int
) -> tuple[np.ndarray, np.ndarray]:
    """(treatments, rows) Sharpe(row i) − Sharpe(row 0) and its block-based HAC standard error.

    Per treatment and day the features g = (x_t, x_t², x_c, x_c²); a resample's z_p = a·g + k has
    Σz² = aᵀG₀a − n·k² and, for lag j over the pairs inside blocks, Σ z_p z_{p+j} = aᵀG_ja +
    k·a·S_j + m_j·k² (pairs across block junctions are independent draws and are left out, as in
    a block-based estimate). Only the symmetric part of G_j matters, and the control's own
    entries are computed once: all treatments share one matrix product per lag.
    """
    n, m = draws.n, x.shape[0] - 1
    control = np.stack([x[0], x[0] ** 2], axis=1)  # (n, 2): g_2, g_3
    g = np.concatenate([np.stack([x[1:], x[1:] ** 2], axis=2), np.broadcast_to(control, (m, n, 2))], axis=2)

    def columns(left: np.ndarray, right: np.ndarray, pairs: Sequence[tuple[int, int]]) -> np.ndarray:
        """(n, m·len(pairs)) symmetric products ½(g_i(d)·g_k(d+j) + g_k(d)·g_i(d+j))."""
        cols = [0.5 * (left[..., i] * right[..., k] + left[..., k] * right[..., i]) for i, k in pairs]
        return np.stack(cols, axis=-1).transpose(1, 0, 2).reshape(n, -1)

    # every series' first and second moments in one product, so equal series get equal figures
    raw = draws.counts @ np.concatenate([x.T, (x**2).T, (x[0] ** 3)[:, None], (x[0] ** 4)[:, None]], axis=1)
    sums, squares = raw[:, : m + 1] / n, raw[:, m + 1 : 2 * m + 2] / n
    shared = np.stack([raw[:, 0], raw[:, m + 1], raw[:, -2], raw[:, -1]], axis=1)  # Σ x_c, x_c², x_c³, x_c⁴
    products = (draws.counts @ columns(g, g, _PAIRS)).reshape(-1, m, len(_PAIRS)).transpose(1, 0, 2)
    mean_t = sums[:, 1:].T  # (m, rows)
    moments = np.stack(
        [
            mean_t,
            squares[:, 1:].T,
            np.broadcast_to(sums[:, 0], mean_t.shape),
            np.broadcast_to(squares[:, 0], mean_t.shape),
        ],
        axis=-1,
    )
    g0 = _symmetric(
        {
            **{pair: products[..., c] for c, pair in enumerate(_PAIRS)},
            (2, 2): np.broadcast_to(shared[:, 1], mean_t.shape),
            (2, 3): np.broadcast_to(shared[:, 2], mean_t.shape),
            (3, 3): np.broadcast_to(shared[:, 3], mean_t.shape),
        }
    )
    sigma_t, a1_t, a2_t = _side_coefficients(moments[..., 0], moments[..., 1])
    sigma_c, a1_c, a2_c = _side_coefficients(moments[..., 2], moments[..., 3])
    # Sharpe ratios use ddof=1 standard deviations: σ·√(n/(n−1))
    diffs = (moments[..., 0] / sigma_t - moments[..., 2] / sigma_c) * math.sqrt(
        (n - 1) / n * periods_per_year
    )
    a = np.stack([a1_t, a2_t, -a1_c, -a2_c], axis=-1)  # (m, rows, 4)
    k = -(a * moments).sum(axis=-1)
    lrv = np.einsum("mri,mrij,mrj->mr", a, g0, a) - n * k * k
    for j, pairs in enumerate(draws.pairs, start=1):
        later_c = np.roll(control, -j, axis=0)
        shared_lag = pairs @ np.stack(
            [
                control[:, 0] * later_c[:, 0],
                0.5 * (control[:, 0] * later_c[:, 1] + control[:, 1] * later_c[:, 0]),
                control[:, 1] * later_c[:, 1],
                control[:, 0] + later_c[:, 0],
                control[:, 1] + later_c[:, 1],
                np.ones(n),
            ],
            axis=1,
        )  # (rows, 6)
        later = np.roll(g, -j, axis=1)
        sums_t = (g[..., :2] + later[..., :2]).transpose(1, 0, 2).reshape(n, -1)
        # two blocks of columns (m·pairs products, then m·2 sums): each is reshaped on its own, per
        # treatment; reshaping them together mixed one treatment's sums into another's products
        lag_products = (pairs @ columns(g, later, _PAIRS)).reshape(-1, m, len(_PAIRS)).transpose(1, 0, 2)
        lag_sums = (pairs @ sums_t).reshape(-1, m, 2).transpose(1, 0, 2)
        lagged = np.concatenate([lag_products, lag_sums], axis=-1)
        gj = _symmetric(
            {
                **{pair: lagged[..., c] for c, pair in enumerate(_PAIRS)},
                (2, 2): np.broadcast_to(shared_lag[:, 0], mean_t.shape),
                (2, 3): np.broadcast_to(shared_lag[:, 1], mean_t.shape),
                (3, 3): np.broadcast_to(shared_lag[:, 2], mean_t.shape),
            }
        )
        sj = np.concatenate(
            [lagged[..., len(_PAIRS) :], np.broadcast_to(shared_lag[:, 3:5], (m, *shared_lag[:, 3:5].shape))],
            axis=-1,
        )
        mj = shared_lag[:, 5]
        term = np.einsum("mri,mrij,mrj->mr", a, gj, a) + k * (a * sj).sum(axis=-1) + mj * k * k
        lrv = lrv + 2.0 * (1.0 - j / (lags + 1)) * term
    se = np.sqrt(np.maximum(lrv / n, 0.0) / n) * math.sqrt(periods_per_year)
    return diffs, se


def _hac_lags(block: float, n: int) -> int:
    """Bartlett bandwidth of the studentized interval: the block length, at most Newey–West's 4·(n/100)^(2/9)."""
    return int(max(1, min(round(block), math.floor(4.0 * (n / 100.0) ** (2.0 / 9.0)))))


def _summarise(
    d: float, se: float, diffs: np.ndarray, ses: np.ndarray, *, alpha: float
) -> tuple[float, float, float | None, float | None, float | None, int] | str:
    """Percentile interval, studentized interval and p-value from the resampled differences."""
    valid = np.isfinite(diffs)
    if not valid.any():
        return "every bootstrap resample was flat; the series are too short or constant"
    low, high = np.quantile(diffs[valid], [alpha / 2.0, 1.0 - alpha / 2.0])
    stud_low = stud_high = p_value = None
    studentized = valid & np.isfinite(ses) & (ses > 0)
    if math.isfinite(se) and se > 0 and studentized.any():
        t_star = np.abs(diffs[studentized] - d) / ses[studentized]
        q = float(np.quantile(t_star, 1.0 - alpha))
        stud_low, stud_high = d - q * se, d + q * se
        p_value = float((1 + np.count_nonzero(t_star >= abs(d) / se)) / (1 + t_star.size))
    elif se == 0 and d == 0:
        stud_low = stud_high = 0.0
        p_value = 1.0
    return float(low), float(high), stud_low, stud_high, p_value, int(valid.sum())


def sharpe_diff_tests(
    control: ArrayLike,
    treatments: Mapping[str, ArrayLike],
    *,
    n_boot: int = 2000,
    alpha: float = 0.05,
    block: float | None = None,
    seed: int = 0,
    periods_per_year: int = 252,
    method: BootstrapMethod = "stationary",
) -> dict[str, SharpeDiffTest | str]:
    """Paired block bootstrap of annualised Sharpe(treatment) − Sharpe(control), per treatment.

    Inputs are date-aligned daily excess returns (the same days, in order); days on which any
    series is not finite are left out for all. Each resample draws the SAME days for every series,
    in blocks, so cross-correlation and short-range autocorrelation survive, and the treatments are
    tested on the same draws. ``method``: ``stationary`` (Politis & Romano, geometric blocks of
    mean ``block``) or ``circular`` (fixed blocks). ``block=None`` takes the largest
    :func:`optimal_block_length` of the series. Deterministic for a given ``seed``; with the same
    block a treatment gets the same interval alone or with others. A treatment whose interval is
    undefined gets the reason as a string; bad settings raise :class:`ConfigError`.
    """
    if method not in BOOTSTRAP_METHODS:
        raise ConfigError(f"method must be one of {', '.join(BOOTSTRAP_METHODS)}, got {method!r}")
    names = list(treatments)
    x = _paired_finite_rows([control, *(treatments[name] for name in names)])
    n = x.shape[1]
    if block is None:
        chosen = max(optimal_block_length(row, method=method) for row in x) if n >= 2 else 1.0
        block_used = float(math.ceil(chosen)) if method == "circular" else chosen
        basis = "Politis-White (Patton correction), the largest over the compared series"
    else:
        block_used, basis = float(block), "given"
    _check_bootstrap(n=n, block=block_used, n_boot=n_boot, alpha=alpha, periods_per_year=periods_per_year)
    point = _row_sharpe(x, periods_per_year=periods_per_year)
    lags = _hac_lags(block_used, n)
    defined = [i for i in range(1, x.shape[0]) if np.isfinite(point[0]) and np.isfinite(point[i])]
    diffs = {i: np.empty(n_boot) for i in defined}
    ses = {i: np.empty(n_boot) for i in defined}
    rng = np.random.default_rng(seed)
    chunk = max(1, _BOOT_CELLS // (n * (1 + lags)))
    for start in range(0, n_boot, chunk):
        rows = min(chunk, n_boot - start)
        draws = _Draws(_block_indices(rng, rows=rows, n=n, block=block_used, method=method), lags=lags)
        if defined:
            chunk_diffs, chunk_ses = _resampled_diffs(
                x[[0, *defined]], draws, lags=lags, periods_per_year=periods_per_year
            )
            for row, i in enumerate(defined):
                diffs[i][start : start + rows] = chunk_diffs[row]
                ses[i][start : start + rows] = chunk_ses[row]
    out: dict[str, SharpeDiffTest | str] = {}
    for i, name in enumerate(names, start=1):
        if i not in diffs:
            out[name] = "Sharpe ratio undefined: treatment or control has zero variance"
            continue
        d = float(point[i] - point[0])
        se = float(_diff_se(x[0], x[i], lags=lags, periods_per_year=periods_per_year))
        summary = _summarise(d, se, diffs[i], ses[i], alpha=alpha)
        if isinstance(summary, str):
            out[name] = summary
            continue
        low, high, stud_low, stud_high, p_value, n_resamples = summary
        out[name] = SharpeDiffTest(
            point=d,
            low=low,
            high=high,
            studentized_low=stud_low,
            studentized_high=stud_high,
            se=se if math.isfinite(se) else None,
            p_value=p_value,
            block=block_used,
            block_basis=basis,
            method=method,
            n_days=n,
            n_resamples=n_resamples,
        )
    return out


def bootstrap_sharpe_diff_cis(
    control: ArrayLike,
    treatments: Mapping[str, ArrayLike],
    *,
    n_boot: int = 2000,
    alpha: float = 0.05,
    block: float | None = None,
    seed: int = 0,
    periods_per_year: int = 252,
    method: BootstrapMethod = "stationary",
) -> dict[str, tuple[float, float, float] | str]:
    """(point, low, high) percentile intervals of :func:`sharpe_diff_tests` (same arguments)."""
    tests = sharpe_diff_tests(
        control,
        treatments,
        n_boot=n_boot,
        alpha=alpha,
        block=block,
        seed=seed,
        periods_per_year=periods_per_year,
        method=method,
    )
    return {name: t if isinstance(t, str) else (t.point, t.low, t.high) for name, t in tests.items()}


def bootstrap_sharpe_diff_ci(
    treatment: ArrayLike,
    control: ArrayLike,
    *,
    n_boot: int = 2000,
    alpha: float = 0.05,
    block: float | None = None,
    seed: int = 0,
    periods_per_year: int = 252,
    method: BootstrapMethod = "stationary",
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
