"""Forecast and trading metrics against values computed independently in plain Python."""

import math
import statistics

import jax.numpy as jnp
import numpy as np
import pytest

from ntjax import metrics

P = 252


def _random(n, seed, scale=1.0, loc=0.0):
    rng = np.random.default_rng(seed)
    return (loc + scale * rng.normal(size=n)).tolist()


# --- forecast metrics ---------------------------------------------------------------------------


def test_pointwise_errors_match_python_loops():
    y = _random(50, 0, 3.0, 10.0)
    y_hat = _random(50, 1, 3.0, 10.0)
    n = len(y)
    mae = sum(abs(a - b) for a, b in zip(y, y_hat, strict=True)) / n
    mse = sum((a - b) ** 2 for a, b in zip(y, y_hat, strict=True)) / n
    mape = sum(abs(a - b) / abs(a) for a, b in zip(y, y_hat, strict=True)) / n
    smape = sum(2 * abs(a - b) / (abs(a) + abs(b)) for a, b in zip(y, y_hat, strict=True)) / n
    mean = sum(y) / n
    r2 = 1 - sum((a - b) ** 2 for a, b in zip(y, y_hat, strict=True)) / sum(
        (a - mean) ** 2 for a in y
    )
    assert metrics.mae(y, y_hat) == pytest.approx(mae, rel=1e-12)
    assert metrics.mse(y, y_hat) == pytest.approx(mse, rel=1e-12)
    assert metrics.rmse(y, y_hat) == pytest.approx(math.sqrt(mse), rel=1e-12)
    assert metrics.mape(y, y_hat) == pytest.approx(mape, rel=1e-12)
    assert metrics.smape(y, y_hat) == pytest.approx(smape, rel=1e-12)
    assert metrics.r2(y, y_hat) == pytest.approx(r2, rel=1e-12)


def test_forecast_metrics_accept_jax_arrays_and_reject_shape_mismatch():
    assert metrics.mae(jnp.array([1.0, 2.0]), jnp.array([2.0, 4.0])) == pytest.approx(1.5)
    with pytest.raises(ValueError, match="shape"):
        metrics.mae([1.0, 2.0], [1.0, 2.0, 3.0])


def test_mape_skips_zero_actuals_and_is_nan_without_any():
    assert metrics.mape([0.0, 2.0, 4.0], [5.0, 1.0, 5.0]) == pytest.approx((0.5 + 0.25) / 2)
    assert math.isnan(metrics.mape([0.0, 0.0], [1.0, 2.0]))


def test_smape_counts_zero_over_zero_as_zero():
    assert metrics.smape([0.0, 1.0], [0.0, 3.0]) == pytest.approx((0 + 2 * 2 / 4) / 2)


def test_r2_perfect_and_constant_target():
    assert metrics.r2([1.0, 2.0, 3.0], [1.0, 2.0, 3.0]) == 1.0
    assert math.isnan(metrics.r2([2.0, 2.0], [1.0, 3.0]))


def test_naive_scale_and_mase():
    history = [1.0, 3.0, 2.0, 6.0, 4.0]
    assert metrics.naive_scale(history) == pytest.approx((2 + 1 + 4 + 2) / 4)
    assert metrics.naive_scale(history, season_length=2) == pytest.approx((1 + 3 + 2) / 3)
    assert math.isnan(metrics.naive_scale([1.0, 2.0], season_length=2))
    y = [[1.0, 2.0], [10.0, 20.0]]
    y_hat = [[2.0, 2.0], [13.0, 20.0]]
    expected = ((1 + 0) / 2 / 0.5 + (3 + 0) / 2 / 3.0) / 2
    assert metrics.mase(y, y_hat, scale=[0.5, 3.0]) == pytest.approx(expected)


def test_coverage_and_width():
    y = [1.0, 2.0, 3.0, 4.0]
    lower = [0.0, 2.0, 3.5, 3.0]
    upper = [2.0, 2.5, 4.0, 3.5]
    assert metrics.coverage(y, lower, upper) == pytest.approx(2 / 4)  # ends count as inside
    assert metrics.interval_width(lower, upper) == pytest.approx((2 + 0.5 + 0.5 + 0.5) / 4)


def test_forecast_metrics_bundle():
    y = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 7.0]])
    y_hat = y + np.array([[0.5, -0.5, 0.0], [1.0, 0.0, -1.0]])
    lower, upper = y_hat - 0.6, y_hat + 0.6
    out = metrics.forecast_metrics(y, y_hat, mase_scale=[1.0, 2.0], intervals={80: (lower, upper)})
    assert out["mae"] == pytest.approx(3.0 / 6)
    assert out["rmse"] == pytest.approx(math.sqrt(2.5 / 6))
    assert out["mase"] == pytest.approx((1.0 / 3 / 1.0 + 2.0 / 3 / 2.0) / 2)
    assert out["coverage_80"] == pytest.approx(4 / 6)
    assert out["width_80"] == pytest.approx(1.2)
    assert out["n_points"] == 6


# --- trading metrics: independent references ------------------------------------------------------


def _equity(returns):
    values = [1.0]
    for r in returns:
        values.append(values[-1] * (1 + r))
    return values


def _max_drawdown(returns):
    peak, worst = -math.inf, 0.0
    for value in _equity(returns):
        peak = max(peak, value)
        worst = min(worst, value / peak - 1)
    return worst


def _runs(positions):
    """(start, stop, sign) of runs of same-sign non-zero positions, by a plain scan."""
    runs, start = [], None
    sign = lambda x: (x > 0) - (x < 0)
    for i, p in enumerate(positions):
        if start is not None and sign(p) != sign(positions[start]):
            runs.append((start, i, sign(positions[start])))
            start = None
        if start is None and sign(p) != 0:
            start = i
    if start is not None:
        runs.append((start, len(positions), sign(positions[start])))
    return runs


@pytest.fixture
def returns():
    return _random(300, 7, 0.01, 0.0004)


def test_total_return_cagr_volatility(returns):
    final = _equity(returns)[-1]
    assert metrics.total_return(returns) == pytest.approx(final - 1, rel=1e-12)
    assert metrics.cagr(returns) == pytest.approx(final ** (P / len(returns)) - 1, rel=1e-12)
    assert metrics.cagr(returns, periods_per_year=12) == pytest.approx(
        final ** (12 / len(returns)) - 1, rel=1e-12
    )
    assert metrics.volatility(returns) == pytest.approx(
        statistics.stdev(returns) * math.sqrt(P), rel=1e-12
    )
    np.testing.assert_allclose(metrics.equity_curve(returns), _equity(returns), rtol=1e-13)


@pytest.mark.parametrize("risk_free", [0.0, 0.03], ids=["rf0", "rf3pct"])
def test_sharpe_ratio(returns, risk_free):
    excess = [r - risk_free / P for r in returns]
    expected = statistics.mean(excess) / statistics.stdev(excess) * math.sqrt(P)
    assert metrics.sharpe_ratio(returns, risk_free=risk_free) == pytest.approx(expected, rel=1e-12)
    # jax arrays (float32) are accepted too.
    got = metrics.sharpe_ratio(jnp.asarray(returns), risk_free=risk_free)
    assert got == pytest.approx(expected, rel=1e-5)


def test_sortino_ratio(returns):
    downside = math.sqrt(sum(min(r, 0.0) ** 2 for r in returns) / len(returns))
    expected = statistics.mean(returns) / downside * math.sqrt(P)
    assert metrics.sortino_ratio(returns) == pytest.approx(expected, rel=1e-12)


def test_max_drawdown_and_calmar(returns):
    assert metrics.max_drawdown(returns) == pytest.approx(_max_drawdown(returns), rel=1e-12)
    final = _equity(returns)[-1]
    cagr = final ** (P / len(returns)) - 1
    assert metrics.calmar_ratio(returns) == pytest.approx(
        cagr / abs(_max_drawdown(returns)), rel=1e-12
    )


def test_max_drawdown_counts_the_start_as_a_peak():
    # E = 1, 0.9, 0.99, 0.495, 0.99: the worst fall is from E_0 = 1 to 0.495.
    assert metrics.max_drawdown([-0.1, 0.1, -0.5, 1.0]) == pytest.approx(-0.505)
    assert metrics.max_drawdown([0.1, 0.2]) == 0.0


def test_trade_runs_and_returns():
    positions = [0, 1, 1, -1, -1, 0, 0.5, 2.0, 0, -1, -1]
    strategy = _random(len(positions), 3, 0.02)
    start, stop, side = metrics.trade_runs(positions)
    assert list(zip(start.tolist(), stop.tolist(), side.tolist(), strict=True)) == _runs(positions)
    assert _runs(positions) == [(1, 3, 1), (3, 5, -1), (6, 8, 1), (9, 11, -1)]
    compounded = [_equity(strategy[a:b])[-1] - 1 for a, b, _ in _runs(positions)]
    np.testing.assert_allclose(
        metrics.trade_returns(positions, strategy, include_open=True), compounded, rtol=1e-13
    )
    # The last trade is open at the end: closed trades leave it out.
    np.testing.assert_allclose(
        metrics.trade_returns(positions, strategy), compounded[:3], rtol=1e-13
    )


def test_win_rate_and_profit_factor():
    trades = [0.05, -0.02, 0.01, -0.03, 0.0]
    assert metrics.win_rate(trades) == pytest.approx(2 / 5)
    assert metrics.profit_factor(trades) == pytest.approx(0.06 / 0.05)


def test_turnover_exposure_directional_accuracy():
    positions = [0.0, 1.0, 1.0, -0.5, 0.0, 0.25]
    traded = [0.0, 1.0, 0.0, 1.5, 0.5, 0.25]
    assert metrics.turnover(positions) == pytest.approx(sum(traded) / 6 * P)
    assert metrics.exposure(positions) == pytest.approx(4 / 6)
    forecast = [0.01, -0.02, 0.0, 0.03, -0.01]
    realized = [0.02, 0.01, 0.01, 0.0, -0.02]
    # period 4 did not move (left out); period 3 forecast zero (wrong): 2 right of 4.
    assert metrics.directional_accuracy(forecast, realized) == pytest.approx(2 / 4)


def test_alpha_beta_information_ratio(returns):
    benchmark = _random(len(returns), 11, 0.012, 0.0003)
    strategy = [0.4 * b + r for b, r in zip(benchmark, returns, strict=True)]
    rf = 0.02 / P
    x = [b - rf for b in benchmark]
    y = [s - rf for s in strategy]
    mx, my = statistics.mean(x), statistics.mean(y)
    beta = sum((a - mx) * (b - my) for a, b in zip(x, y, strict=True)) / sum(
        (a - mx) ** 2 for a in x
    )
    alpha = (my - beta * mx) * P
    got_alpha, got_beta = metrics.alpha_beta(strategy, benchmark, risk_free=0.02)
    assert got_beta == pytest.approx(beta, rel=1e-10)
    assert got_alpha == pytest.approx(alpha, rel=1e-10)
    active = [s - b for s, b in zip(strategy, benchmark, strict=True)]
    assert metrics.information_ratio(strategy, benchmark) == pytest.approx(
        statistics.mean(active) / statistics.stdev(active) * math.sqrt(P), rel=1e-12
    )


def test_trading_metrics_bundle_matches_the_functions(returns):
    positions = np.sign(_random(len(returns), 5))
    asset = _random(len(returns), 6, 0.01)
    forecast = _random(len(returns), 8, 0.01)
    out = metrics.trading_metrics(
        returns, positions, asset_returns=asset, forecast_returns=forecast, risk_free=0.01
    )
    closed = metrics.trade_returns(positions, returns)
    assert out["sharpe"] == metrics.sharpe_ratio(returns, risk_free=0.01)
    assert out["sortino"] == metrics.sortino_ratio(returns)
    assert out["max_drawdown"] == metrics.max_drawdown(returns)
    assert out["calmar"] == metrics.calmar_ratio(returns)
    assert out["win_rate"] == metrics.win_rate(closed)
    assert out["profit_factor"] == metrics.profit_factor(closed)
    assert out["n_trades"] == len(_runs(positions.tolist()))
    assert out["n_closed_trades"] == closed.size
    assert out["benchmark_sharpe"] == metrics.sharpe_ratio(asset, risk_free=0.01)
    assert out["benchmark_total_return"] == metrics.total_return(asset)
    assert (out["alpha"], out["beta"]) == metrics.alpha_beta(returns, asset, risk_free=0.01)
    assert out["directional_accuracy"] == metrics.directional_accuracy(forecast, asset)
    assert out["n_periods"] == len(returns)
    with pytest.raises(ValueError, match="asset_returns"):
        metrics.trading_metrics(returns, positions, forecast_returns=forecast)


# --- trading metrics: edge cases ------------------------------------------------------------------


def test_no_trades():
    flat = np.zeros(10)
    out = metrics.trading_metrics(flat, flat, asset_returns=_random(10, 2, 0.01))
    assert out["n_trades"] == 0 and out["n_closed_trades"] == 0
    assert math.isnan(out["win_rate"]) and math.isnan(out["profit_factor"])
    assert out["total_return"] == 0.0 and out["cagr"] == 0.0
    assert out["sharpe"] == 0.0 and out["sortino"] == 0.0 and out["volatility"] == 0.0
    assert out["max_drawdown"] == 0.0 and out["calmar"] == 0.0
    assert out["turnover"] == 0.0 and out["exposure"] == 0.0
    assert out["beta"] == 0.0 and out["alpha"] == 0.0


def test_all_winning_trades():
    trades = [0.01, 0.02, 0.5]
    assert metrics.win_rate(trades) == 1.0
    assert metrics.profit_factor(trades) == math.inf
    assert metrics.profit_factor([-0.01, -0.02]) == 0.0
    assert metrics.win_rate([-0.01]) == 0.0
    assert math.isnan(metrics.win_rate([]))
    assert math.isnan(metrics.profit_factor([]))
    assert math.isnan(metrics.profit_factor([0.0, 0.0]))


@pytest.mark.parametrize("value", [0.001, 0.01, 1 / 3], ids=["0.1pct", "1pct", "third"])
def test_constant_positive_returns(value):
    r = [value] * 20
    assert metrics.volatility(r) == 0.0
    assert metrics.sharpe_ratio(r) == math.inf  # no risk, positive mean
    assert metrics.sortino_ratio(r) == math.inf  # no losing period
    assert metrics.max_drawdown(r) == 0.0
    assert metrics.calmar_ratio(r) == math.inf
    assert metrics.cagr(r) == pytest.approx((1 + value) ** P - 1, rel=1e-12)


def test_constant_negative_returns():
    r = [-0.01] * 5
    assert metrics.sharpe_ratio(r) == -math.inf
    assert metrics.sortino_ratio(r) == pytest.approx(-math.sqrt(P))
    assert metrics.max_drawdown(r) == pytest.approx(0.99**5 - 1, rel=1e-12)


def test_sharpe_with_risk_free_equal_to_constant_return_is_zero():
    assert metrics.sharpe_ratio([0.25] * 4, periods_per_year=4, risk_free=1.0) == 0.0


@pytest.mark.parametrize("r", [0.02, -0.03], ids=["gain", "loss"])
def test_single_period(r):
    assert math.isnan(metrics.sharpe_ratio([r]))  # std with ddof=1 needs two periods
    assert math.isnan(metrics.volatility([r]))
    assert metrics.total_return([r]) == pytest.approx(r)
    assert metrics.cagr([r]) == pytest.approx((1 + r) ** P - 1, rel=1e-12)
    assert metrics.max_drawdown([r]) == pytest.approx(min(r, 0.0))
    expected_sortino = math.inf if r > 0 else -math.sqrt(P)
    assert metrics.sortino_ratio([r]) == pytest.approx(expected_sortino)
    out = metrics.trading_metrics([r], [1.0], asset_returns=[r])
    assert out["n_trades"] == 1 and out["n_closed_trades"] == 0  # still open at the end
    assert math.isnan(out["win_rate"]) and math.isnan(out["beta"])


def test_empty_and_wiped_out():
    assert math.isnan(metrics.cagr([]))
    assert metrics.max_drawdown([]) == 0.0
    assert metrics.total_return([]) == 0.0
    assert metrics.cagr([0.5, -1.2]) == -1.0  # leveraged equity below zero
    assert metrics.trade_runs([])[0].size == 0


def test_trading_metrics_reject_two_dimensional_returns():
    with pytest.raises(ValueError, match="one-dimensional"):
        metrics.sharpe_ratio(np.zeros((3, 2)))
