"""Return metrics, PSR/DSR and the paired bootstrap on tiny, hand-checkable series."""

from __future__ import annotations

import datetime as dt
import math
from statistics import NormalDist

import numpy as np
import polars as pl
import pytest

from workbench.errors import ConfigError
from workbench.metrics import (
    METRIC_KEYS,
    QLIB_DAILY_PERIODS,
    SERIES_NAMES,
    bootstrap_sharpe_diff_ci,
    bootstrap_sharpe_diff_cis,
    compute_return_metrics,
    deflated_sharpe_ratio,
    effective_trials,
    excess_curves,
    expected_max_sharpe,
    holm_adjust,
    optimal_block_length,
    probabilistic_sharpe_ratio,
    sharpe_diff_tests,
    sharpe_stats,
)

R = [0.01, -0.02, 0.03, 0.0]
DAYS = [dt.date(2024, 1, 2), dt.date(2024, 1, 3), dt.date(2024, 1, 4), dt.date(2024, 1, 5)]


def report(returns: list[float | None], *, bench: float = 0.0, cost: float = 0.0, **extra) -> pl.DataFrame:
    """A converted Qlib daily report with constant bench and cost."""
    n = len(returns)
    days = [dt.date(2024, 1, 1) + dt.timedelta(days=i + 1) for i in range(n)]
    return pl.DataFrame(
        {"datetime": days, "return": returns, "bench": [bench] * n, "cost": [cost] * n, **extra},
        schema_overrides={"datetime": pl.Date, "return": pl.Float64, "bench": pl.Float64, "cost": pl.Float64},
    )


# r = [0.01, -0.02, 0.03, 0.0], N = 252
#   mean = 0.02 / 4 = 0.005
#   deviations 0.005, -0.025, 0.025, -0.005 → squares sum 0.0013 → var(ddof=1) = 0.0013/3
#   std = sqrt(0.0013/3) = 0.0208166599...
#   additive annualized = 0.005 * 252 = 1.26
#   IR = 0.005 / 0.0208166599 * sqrt(252) = 3.8129334...
#   cumsum 0.01, -0.01, 0.02, 0.02; running max (Qlib: from day 1) 0.01, 0.01, 0.02, 0.02
#   → additive max drawdown = -0.02
#   wealth 1.01, 0.9898, 1.019494, 1.019494 → total return 0.019494
#   compounded annualized = 1.019494 ** (252/4) - 1; drawdown 0.9898/1.01 - 1 = -0.02
#   volatility = std * sqrt(252) = 0.3304542...
#   population moments: m2 = 0.0013/4 = 3.25e-4, m3 = 0 (symmetric deviations)
#   m4 = (2*0.005**4 + 2*0.025**4)/4 = 1.95625e-7 → kurtosis = 1.95625e-7 / 3.25e-4**2 = 1.852071
STD = math.sqrt(0.0013 / 3)


def test_hand_computed_metrics_of_a_four_day_series():
    m = compute_return_metrics(report(R))
    for series in SERIES_NAMES:  # bench 0, cost 0: with and without cost coincide
        assert m[f"{series}.additive.mean"] == pytest.approx(0.005)
        assert m[f"{series}.additive.std"] == pytest.approx(STD)
        assert m[f"{series}.additive.annualized_return"] == pytest.approx(1.26)
        assert m[f"{series}.additive.information_ratio"] == pytest.approx(0.005 / STD * math.sqrt(252))
        assert m[f"{series}.additive.information_ratio"] == pytest.approx(3.8129334558)
        assert m[f"{series}.additive.max_drawdown"] == pytest.approx(-0.02)
        assert m[f"{series}.compounded.total_return"] == pytest.approx(0.019494)
        assert m[f"{series}.compounded.annualized_return"] == pytest.approx(1.019494**63 - 1)
        assert m[f"{series}.compounded.max_drawdown"] == pytest.approx(-0.02)
        assert m[f"{series}.compounded.volatility"] == pytest.approx(STD * math.sqrt(252))
    assert m["sharpe"] == pytest.approx(3.8129334558)
    assert m["skewness"] == pytest.approx(0.0, abs=1e-12)
    assert m["kurtosis"] == pytest.approx(1.95625e-7 / 3.25e-4**2)
    assert (m["n_days"], m["n_dropped"], m["start"], m["end"]) == (4, 0, "2024-01-02", "2024-01-05")
    assert m["turnover_mean"] is None
    assert list(m) == list(METRIC_KEYS)


def test_bench_and_cost_are_subtracted_in_the_right_series():
    # return = r + 0.002, bench = 0.002, cost = 0.001:
    # without cost mean = 0.005 (annualized 1.26); with cost mean = 0.004 (annualized 1.008)
    m = compute_return_metrics(report([x + 0.002 for x in R], bench=0.002, cost=0.001))
    assert m["excess_return_without_cost.additive.annualized_return"] == pytest.approx(1.26)
    assert m["excess_return_with_cost.additive.annualized_return"] == pytest.approx(1.008)
    assert m["excess_return_with_cost.additive.std"] == pytest.approx(STD)
    assert m["sharpe"] == pytest.approx(0.004 / STD * math.sqrt(252))
    # wealth with cost: 1.009 * 0.979 * 1.029 * 0.999
    assert m["excess_return_with_cost.compounded.total_return"] == pytest.approx(
        1.009 * 0.979 * 1.029 * 0.999 - 1
    )


def test_qlib_additive_drawdown_ignores_a_first_day_loss_but_compounded_does_not():
    # r = [-0.01, -0.01]: Qlib cumsum -0.01, -0.02, running max starts at -0.01 → -0.01
    # compounded: wealth 0.99, 0.9801 against the starting 1 → -0.0199
    m = compute_return_metrics(report([-0.01, -0.01]))
    assert m["excess_return_with_cost.additive.max_drawdown"] == pytest.approx(-0.01)
    assert m["excess_return_with_cost.compounded.max_drawdown"] == pytest.approx(-0.0199)


def test_periods_per_year_scales_annualised_values_only():
    m = compute_return_metrics(report(R), periods_per_year=QLIB_DAILY_PERIODS)
    assert QLIB_DAILY_PERIODS == 238
    assert m["excess_return_with_cost.additive.annualized_return"] == pytest.approx(0.005 * 238)
    assert m["excess_return_with_cost.additive.information_ratio"] == pytest.approx(
        0.005 / STD * math.sqrt(238)
    )
    assert m["excess_return_with_cost.additive.mean"] == pytest.approx(0.005)


def test_null_and_nan_rows_are_dropped_and_counted():
    dirty = report([0.01, None, -0.02, float("nan"), 0.03, 0.0], turnover=[0.2, 0.1, 0.4, 0.3, None, 0.3])
    m = compute_return_metrics(dirty)
    clean = compute_return_metrics(report(R))
    assert m["n_dropped"] == 2
    assert m["n_days"] == 4
    assert m["excess_return_with_cost.additive.information_ratio"] == pytest.approx(
        clean["excess_return_with_cost.additive.information_ratio"]
    )
    # kept turnover values 0.2, 0.4, (null), 0.3 → mean 0.3
    assert m["turnover_mean"] == pytest.approx(0.3)


def test_unsorted_rows_are_sorted_by_date():
    shuffled = report(R).reverse()
    assert compute_return_metrics(shuffled)["excess_return_with_cost.additive.max_drawdown"] == pytest.approx(
        -0.02
    )


def test_fewer_than_two_days_gives_none_not_an_exception():
    m = compute_return_metrics(report([0.01]))
    assert (m["n_days"], m["start"], m["end"]) == (1, "2024-01-02", "2024-01-02")
    assert m["excess_return_with_cost.additive.mean"] is None
    assert m["sharpe"] is None
    empty = compute_return_metrics(report([]))
    assert (empty["n_days"], empty["start"]) == (0, None)


def test_zero_std_gives_no_information_ratio():
    m = compute_return_metrics(report([0.01, 0.01, 0.01]))
    assert m["excess_return_with_cost.additive.std"] == pytest.approx(0.0)
    assert m["excess_return_with_cost.additive.information_ratio"] is None
    assert m["sharpe"] is None and m["skewness"] is None and m["kurtosis"] is None
    assert m["excess_return_with_cost.compounded.total_return"] == pytest.approx(1.01**3 - 1)


def test_datetime_column_is_accepted_and_missing_columns_rejected():
    frame = report(R).with_columns(pl.col("datetime").cast(pl.Datetime("us", "UTC")))
    assert compute_return_metrics(frame)["start"] == "2024-01-02"
    with pytest.raises(ConfigError, match="bench"):
        compute_return_metrics(report(R).drop("bench"))


def test_excess_curves_match_the_metrics():
    curves = excess_curves(report(R))
    assert curves.columns == [
        "datetime",
        "excess_with_cost",
        "cum_excess_additive",
        "cum_excess_compounded",
        "drawdown_additive",
        "drawdown_compounded",
    ]
    assert curves["cum_excess_additive"].to_list() == pytest.approx([0.01, -0.01, 0.02, 0.02])
    assert curves["cum_excess_compounded"].to_list() == pytest.approx([0.01, -0.0102, 0.019494, 0.019494])
    assert curves["drawdown_additive"].to_list() == pytest.approx([0.0, -0.02, 0.0, 0.0])
    assert curves["drawdown_compounded"].to_list() == pytest.approx([0.0, 0.9898 / 1.01 - 1, 0.0, 0.0])
    first_loss = excess_curves(report([-0.01, -0.01]))
    assert first_loss["drawdown_compounded"].to_list() == pytest.approx([-0.01, -0.0199])


# --------------------------------------------------------------------------- PSR / DSR


def test_sharpe_stats_are_per_period():
    s = sharpe_stats(np.array([0.01, -0.02, 0.03, 0.0, np.nan]))
    assert s["n"] == 4
    assert s["sr"] == pytest.approx(0.005 / STD)
    assert s["skew"] == pytest.approx(0.0, abs=1e-12)
    assert s["kurtosis"] == pytest.approx(1.852071, rel=1e-6)
    assert sharpe_stats(pl.Series([0.01, None]))["sr"] is None


def test_psr_normal_case_reduces_to_the_simple_formula():
    # skew 0, kurtosis 3: PSR = Φ(SR·√(n−1) / √(1 + SR²/2))
    sr, n = 0.1, 101
    expected = NormalDist().cdf(sr * math.sqrt(n - 1) / math.sqrt(1 + sr**2 / 2))
    assert probabilistic_sharpe_ratio(sr, n=n, skew=0.0, kurtosis=3.0) == pytest.approx(expected)
    assert expected == pytest.approx(0.84074, abs=1e-5)  # Φ(0.997509)
    assert probabilistic_sharpe_ratio(0.0, n=50, skew=-1.0, kurtosis=6.0) == pytest.approx(0.5)
    assert probabilistic_sharpe_ratio(0.2, n=50, skew=0.0, kurtosis=3.0, sr_benchmark=0.2) == pytest.approx(
        0.5
    )


def test_psr_negative_skew_and_fat_tails_lower_confidence():
    normal = probabilistic_sharpe_ratio(0.1, n=250, skew=0.0, kurtosis=3.0)
    assert probabilistic_sharpe_ratio(0.1, n=250, skew=-2.0, kurtosis=10.0) < normal


def test_psr_annualised_inputs_are_de_annualised():
    annual = probabilistic_sharpe_ratio(2.0, n=500, skew=0.0, kurtosis=3.0, periods_per_year=252)
    daily = probabilistic_sharpe_ratio(2.0 / math.sqrt(252), n=500, skew=0.0, kurtosis=3.0)
    assert annual == pytest.approx(daily)


def test_expected_max_sharpe_grows_with_the_number_of_trials():
    values = [expected_max_sharpe(n_trials=k, var_trials=1.0) for k in (1, 2, 10, 100, 1000)]
    assert values[0] == 0.0
    assert all(a < b for a, b in zip(values, values[1:], strict=False))
    # scales with √V; the paper's example: √0.5 · 2.5306 ≈ 1.7894 annualised
    assert expected_max_sharpe(n_trials=100, var_trials=0.5) == pytest.approx(1.7894, abs=1e-4)


def test_deflated_sharpe_ratio_reproduces_the_paper_example():
    # Bailey & López de Prado (2014): SR 2.5 annualised, T = 1250 days, 100 trials,
    # V[annualised SR] = 0.5, skew −3, kurtosis 10, 250 days/year → DSR ≈ 0.9004
    dsr = deflated_sharpe_ratio(
        2.5, n=1250, skew=-3.0, kurtosis=10.0, n_trials=100, var_trials=0.5, periods_per_year=250
    )
    assert dsr == pytest.approx(0.9004, abs=5e-4)
    per_day = deflated_sharpe_ratio(
        2.5 / math.sqrt(250), n=1250, skew=-3.0, kurtosis=10.0, n_trials=100, var_trials=0.5 / 250
    )
    assert per_day == pytest.approx(dsr)


def test_invalid_psr_inputs_raise_config_error():
    with pytest.raises(ConfigError, match="at least 2"):
        probabilistic_sharpe_ratio(0.1, n=1, skew=0.0, kurtosis=3.0)
    with pytest.raises(ConfigError, match="n_trials"):
        expected_max_sharpe(n_trials=0, var_trials=1.0)


# --------------------------------------------------------------------------- bootstrap


def _noise(n: int = 500, seed: int = 7) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0003, 0.01, n)


def test_identical_series_give_a_zero_interval():
    x = _noise()
    assert bootstrap_sharpe_diff_ci(x, x.copy(), n_boot=300) == (0.0, 0.0, 0.0)


@pytest.mark.parametrize("method", ["circular", "stationary"])
def test_constant_positive_drift_puts_the_interval_above_zero(method):
    control = _noise()
    point, low, high = bootstrap_sharpe_diff_ci(control + 0.001, control, n_boot=500, method=method)
    # same std on every resample, so each difference is 0.001/std·√252 > 0
    assert point == pytest.approx(0.001 / control.std(ddof=1) * math.sqrt(252))
    assert 0 < low <= point <= high


def test_bootstrap_is_deterministic_for_a_seed():
    t, c = _noise(seed=1), _noise(seed=2)
    first = bootstrap_sharpe_diff_ci(t, c, n_boot=200, seed=3)
    assert bootstrap_sharpe_diff_ci(pl.Series(t), pl.Series(c), n_boot=200, seed=3) == first
    assert bootstrap_sharpe_diff_ci(t, c, n_boot=200, seed=4) != first


def test_bootstrap_handles_a_ten_year_sample():
    t, c = _noise(2500, seed=1), _noise(2500, seed=2)
    point, low, high = bootstrap_sharpe_diff_ci(t, c, n_boot=2000, block=5)
    assert low < point < high


def test_bootstrap_rejects_misaligned_or_flat_input():
    with pytest.raises(ConfigError, match="equal length"):
        bootstrap_sharpe_diff_ci(np.zeros(5), np.zeros(4))
    with pytest.raises(ConfigError, match="zero variance"):
        bootstrap_sharpe_diff_ci(np.full(10, 0.01), _noise(10))
    with pytest.raises(ConfigError, match="block"):
        bootstrap_sharpe_diff_ci(_noise(10), _noise(10, seed=3), block=11)


def test_circular_blocks_are_runs_of_consecutive_days_that_wrap():
    from workbench.metrics import _block_indices

    idx = _block_indices(np.random.default_rng(1), rows=200, n=97, block=5, method="circular")
    steps = np.diff(idx, axis=1) % 97
    # inside a block the next day follows; a new block starts every 5 days
    assert (steps[:, [i for i in range(96) if (i + 1) % 5]] == 1).all()
    stationary = _block_indices(np.random.default_rng(1), rows=400, n=500, block=8.0, method="stationary")
    breaks = (np.diff(stationary, axis=1) % 500 != 1).mean()
    assert breaks == pytest.approx(1 / 8, abs=0.01)  # geometric blocks: a new one with probability 1/8


def test_resample_moments_from_day_counts_equal_the_gathered_days():
    from workbench.metrics import _block_indices, _diff_se, _Draws, _resampled_diffs, _row_sharpe

    x = np.stack([_noise(97, seed=5), _noise(97, seed=6), _noise(97, seed=8)])
    idx = _block_indices(np.random.default_rng(1), rows=300, n=97, block=4.0, method="stationary")
    diffs, _ = _resampled_diffs(x, _Draws(idx, lags=2), lags=2, periods_per_year=252)
    for i in (1, 2):
        gathered = _row_sharpe(x[i][idx], periods_per_year=252) - _row_sharpe(x[0][idx], periods_per_year=252)
        assert diffs[i - 1] == pytest.approx(gathered, rel=1e-9, abs=1e-12)
    # one block of every day, rotated: every consecutive pair is inside the block, so the
    # block-based standard error is the HAC standard error of the gathered days
    rotations = (np.arange(5)[:, None] * 13 + np.arange(97)) % 97
    _, se = _resampled_diffs(x[:2], _Draws(rotations, lags=3), lags=3, periods_per_year=252)
    assert se[0] == pytest.approx(
        _diff_se(x[0][rotations], x[1][rotations], lags=3, periods_per_year=252), rel=1e-9
    )


def test_several_treatments_get_the_interval_each_would_get_alone():
    control = _noise(120, seed=1)
    treatments = {"a": _noise(120, seed=2) + 0.001, "b": _noise(120, seed=3), "flat": np.full(120, 0.01)}
    together = bootstrap_sharpe_diff_cis(control, treatments, n_boot=400, seed=9, block=5)
    for name in ("a", "b"):
        assert together[name] == bootstrap_sharpe_diff_ci(
            treatments[name], control, n_boot=400, seed=9, block=5
        )
    assert isinstance(together["flat"], str) and "zero variance" in together["flat"]
    for method in ("circular", "stationary"):  # a flat stretch takes the gathering path: same answer alone
        bumpy = {"a": np.concatenate([np.zeros(10), _noise(110, seed=4)])}
        alone = bootstrap_sharpe_diff_ci(bumpy["a"], control, n_boot=300, seed=2, method=method)
        assert bootstrap_sharpe_diff_cis(control, bumpy, n_boot=300, seed=2, method=method)["a"] == alone


# --------------------------------------------------------------------------- block length, studentized interval, Holm


def _ar1(rng: np.random.Generator, n: int, phi: float) -> np.ndarray:
    e = rng.normal(size=n + 100)
    x = np.empty_like(e)
    x[0] = e[0]
    for t in range(1, e.size):
        x[t] = phi * x[t - 1] + e[t]
    return x[100:]


def test_politis_white_block_length_follows_the_autocorrelation():
    rng = np.random.default_rng(0)
    # AR(1): G/g = 2φ/(1−φ²), so the stationary bootstrap's optimal expected block is (G/g)^(2/3)·n^(1/3)
    theory = (2 * 0.3 / (1 - 0.3**2)) ** (2 / 3) * 5000 ** (1 / 3)  # 12.95 days
    estimates = [optimal_block_length(_ar1(rng, 5000, 0.3)) for _ in range(5)]
    assert np.median(estimates) == pytest.approx(theory, rel=0.15)
    circular = optimal_block_length(_ar1(np.random.default_rng(1), 5000, 0.3), method="circular")
    stationary = optimal_block_length(_ar1(np.random.default_rng(1), 5000, 0.3))
    assert circular == pytest.approx(stationary * (2 / (4 / 3)) ** (1 / 3))  # D_CB = 2/3·D_SB
    assert optimal_block_length(rng.normal(size=2000)) < 2  # no autocorrelation: about one day
    assert optimal_block_length(np.full(50, 0.01)) == 1.0


def test_holm_adjustment_by_hand():
    # sorted 0.01, 0.02, 0.04 of m=3: 3·0.01=0.03, max(0.03, 2·0.02=0.04)=0.04, max(0.04, 1·0.04)=0.04
    assert holm_adjust([0.04, 0.01, None, 0.02]) == pytest.approx([0.04, 0.03, None, 0.04])
    assert holm_adjust([0.5, 0.6]) == [1.0, 1.0]
    assert holm_adjust([]) == []


def test_effective_trials_and_a_fractional_deflation():
    assert effective_trials(10, 0.0) == 10 and effective_trials(10, 1.0) == 1
    assert effective_trials(10, 0.5) == pytest.approx(5.5)
    assert effective_trials(10, -0.2) == 10  # never more than N
    fewer = deflated_sharpe_ratio(
        2.0, n=500, skew=0, kurtosis=3, n_trials=5.5, var_trials=0.5, periods_per_year=252
    )
    more = deflated_sharpe_ratio(
        2.0, n=500, skew=0, kurtosis=3, n_trials=10, var_trials=0.5, periods_per_year=252
    )
    assert fewer > more  # correlated trials deflate less
    assert expected_max_sharpe(n_trials=1.2, var_trials=1.0) == 0.0  # floored, not negative


def test_studentized_standard_error_is_the_delta_method_by_hand():
    rng = np.random.default_rng(3)
    c, t = rng.normal(0.0005, 0.01, 400), rng.normal(0.001, 0.01, 400)
    result = sharpe_diff_tests(c, {"t": t}, n_boot=300, block=1, method="circular")["t"]
    assert not isinstance(result, str)

    def influence(x: np.ndarray) -> np.ndarray:
        mu, m2 = x.mean(), (x * x).mean()
        sigma = math.sqrt(m2 - mu * mu)
        return m2 / sigma**3 * (x - mu) - mu / (2 * sigma**3) * (x * x - m2)

    z = influence(t) - influence(c)
    lrv = (z * z).mean() + 2 * 0.5 * (z[1:] * z[:-1]).sum() / z.size  # Bartlett, one lag
    assert result.se == pytest.approx(math.sqrt(lrv / z.size) * math.sqrt(252), rel=1e-12)
    assert result.studentized_low < result.point < result.studentized_high
    assert result.studentized_high - result.point == pytest.approx(result.point - result.studentized_low)
    assert (result.block, result.block_basis, result.n_days) == (1.0, "given", 400)
    auto = sharpe_diff_tests(c, {"t": t}, n_boot=100)["t"]
    assert (
        not isinstance(auto, str) and auto.method == "stationary" and auto.block_basis.startswith("Politis")
    )
    with pytest.raises(ConfigError, match="method"):
        sharpe_diff_tests(c, {"t": t}, method="moving")  # type: ignore[arg-type]


def test_a_large_true_difference_gets_a_small_p_value_and_none_a_large_one():
    rng = np.random.default_rng(4)
    c = rng.normal(0.0, 0.01, 750)
    strong = sharpe_diff_tests(c, {"t": c * 0.3 + rng.normal(0.003, 0.01, 750)}, n_boot=500)["t"]
    same = sharpe_diff_tests(c, {"t": c.copy()}, n_boot=200)["t"]
    assert not isinstance(strong, str) and not isinstance(same, str)
    assert strong.p_value is not None and strong.p_value < 0.01
    assert (same.point, same.studentized_low, same.studentized_high, same.p_value) == (0.0, 0.0, 0.0, 1.0)


@pytest.mark.slow
def test_coverage_by_simulation_with_a_known_sharpe_difference():
    """AR(1) days (φ = 0.2), correlated control, true annualised Sharpe difference exactly 1.

    Measured with this seed: stationary bootstrap (Politis-White block) percentile 0.89,
    studentized 0.92 on 250 days; the studentized interval is the closer to the nominal 95 %.
    """
    rng = np.random.default_rng(1)
    reps, n, phi = 200, 250, 0.2
    scale = 0.01 * math.sqrt(1 - phi**2)  # stationary sd of the AR(1) days = 0.01
    hits = {"percentile": 0, "studentized": 0}
    for r in range(reps):
        common = _ar1(rng, n, phi)
        control = scale * (0.5 * common + math.sqrt(0.75) * _ar1(rng, n, phi)) + 0.01 / math.sqrt(252)
        treatment = scale * _ar1(rng, n, phi) + 2 * 0.01 / math.sqrt(252)
        result = sharpe_diff_tests(control, {"t": treatment}, n_boot=499, seed=r)["t"]
        assert not isinstance(result, str) and result.studentized_low is not None
        hits["percentile"] += result.low <= 1.0 <= result.high
        hits["studentized"] += result.studentized_low <= 1.0 <= result.studentized_high
    coverage = {k: v / reps for k, v in hits.items()}
    assert 0.90 <= coverage["studentized"] <= 0.99, coverage
    assert coverage["studentized"] >= coverage["percentile"], coverage


@pytest.mark.parametrize("block", [1.0, 2.0, 3.0])
def test_a_treatments_studentized_interval_is_the_same_alone_or_among_others(block: float) -> None:
    """With the same block, each treatment's whole result (percentile and studentized interval,
    p-value) must not depend on which other treatments are compared: the resampled standard
    errors of the third treatment were once taken from the other treatments' lag sums."""
    from workbench.metrics import sharpe_diff_tests

    rng = np.random.default_rng(7)
    control, *others = rng.normal(0.0005, 0.01, size=(4, 120))
    treatments = {f"t{i}": series for i, series in enumerate(others)}
    together = sharpe_diff_tests(control, treatments, n_boot=400, block=block, seed=3)
    for name, series in treatments.items():
        alone = sharpe_diff_tests(control, {name: series}, n_boot=400, block=block, seed=3)[name]
        both = together[name]
        assert not isinstance(alone, str) and not isinstance(both, str)
        assert both.studentized_low == pytest.approx(alone.studentized_low, rel=1e-9)
        assert both.studentized_high == pytest.approx(alone.studentized_high, rel=1e-9)
        assert both.p_value == pytest.approx(alone.p_value, rel=1e-9)
        assert (both.low, both.high) == pytest.approx((alone.low, alone.high), rel=1e-9)
