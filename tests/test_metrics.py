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


# --- probabilistic scores: independent references --------------------------------------------


def _pinball(y, y_hat, q):
    """Quantile loss of one point, by cases."""
    return q * (y - y_hat) if y >= y_hat else (1 - q) * (y_hat - y)


def _wql(y, preds, quantiles):
    """GluonTS mean_wQuantileLoss over flat lists of points (preds: one list per point)."""
    denominator = sum(abs(a) for a in y)
    losses = []
    for i, q in enumerate(quantiles):
        numerator = sum(
            abs((p[i] - a) * ((1.0 if a <= p[i] else 0.0) - q))
            for a, p in zip(y, preds, strict=True)
        )
        losses.append(2 * numerator / denominator)
    return sum(losses) / len(losses)


def _crps(y, preds, quantiles):
    """utilsforecast scaled_crps, one series at a time, then the mean of the scored series."""
    scores = []
    for ys, ps in zip(y, preds, strict=True):
        numerator = sum(
            sum(_pinball(a, p[i], q) for i, q in enumerate(quantiles)) / len(quantiles)
            for a, p in zip(ys, ps, strict=True)
        )
        denominator = sum(abs(a) for a in ys)
        if denominator > 0:
            scores.append(2 * numerator / denominator)
    return sum(scores) / len(scores)


def _msis(y, lower, upper, scale, alpha):
    per_series = []
    for ys, ls, us, s in zip(y, lower, upper, scale, strict=True):
        total = 0.0
        for a, lo, hi in zip(ys, ls, us, strict=True):
            total += hi - lo
            if a < lo:
                total += 2 / alpha * (lo - a)
            if a > hi:
                total += 2 / alpha * (a - hi)
        per_series.append(total / len(ys) / s)
    return sum(per_series) / len(per_series)


def _quantile_case(n_series, n_points, quantiles, seed):
    """y [n_series, n_points] and sorted quantile predictions [n_series, n_points, n_quantiles]."""
    rng = np.random.default_rng(seed)
    y = 10 + 3 * rng.normal(size=(n_series, n_points))
    centre = y + rng.normal(size=(n_series, n_points))
    spread = np.sort(rng.normal(size=(n_series, n_points, len(quantiles))), axis=-1)
    return y, centre[..., None] + 2 * spread


def _flat(y, preds):
    return np.ravel(y).tolist(), np.reshape(preds, (-1, preds.shape[-1])).tolist()


QUANTILE_SETS = pytest.mark.parametrize(
    "quantiles",
    [(0.5,), (0.1, 0.5, 0.9), (0.025, 0.1, 0.25, 0.5, 0.75, 0.9, 0.975)],
    ids=["median", "deciles", "seven"],
)


@QUANTILE_SETS
def test_wql_matches_a_loop(quantiles):
    y, preds = _quantile_case(3, 8, quantiles, seed=1)
    expected = _wql(*_flat(y, preds), quantiles)
    assert metrics.wql(y, preds, quantiles=quantiles) == pytest.approx(expected, rel=1e-12)
    # float32 jax arrays are accepted too.
    got = metrics.wql(jnp.asarray(y), jnp.asarray(preds), quantiles=quantiles)
    assert got == pytest.approx(expected, rel=1e-5)


def test_wql_by_hand():
    # q=0.1: 0.1*1 + 0.1*1; q=0.5: 0 + 0.5*1; q=0.9: 0.1*1 + 0.1*2; sum|y| = 4.
    y = [1.0, 3.0]
    preds = [[0.0, 1.0, 2.0], [2.0, 4.0, 5.0]]
    expected = (2 * 0.2 / 4 + 2 * 0.5 / 4 + 2 * 0.3 / 4) / 3
    assert metrics.wql(y, preds, quantiles=(0.1, 0.5, 0.9)) == pytest.approx(expected)
    assert metrics.wql(y, [[1.0] * 3, [3.0] * 3], quantiles=(0.1, 0.5, 0.9)) == 0.0
    assert math.isnan(metrics.wql([0.0, 0.0], preds, quantiles=(0.1, 0.5, 0.9)))


def test_quantile_scores_reject_bad_shapes_and_levels():
    with pytest.raises(ValueError, match="shape"):
        metrics.wql([1.0, 2.0], [[1.0, 2.0], [1.0, 2.0]], quantiles=(0.1, 0.5, 0.9))
    with pytest.raises(ValueError, match=r"\(0, 1\)"):
        metrics.wql([1.0], [[1.0]], quantiles=(1.0,))


@QUANTILE_SETS
def test_crps_matches_a_loop_per_series(quantiles):
    y, preds = _quantile_case(4, 6, quantiles, seed=2)
    expected = _crps(y.tolist(), preds.tolist(), quantiles)
    assert metrics.crps(y, preds, quantiles=quantiles) == pytest.approx(expected, rel=1e-12)
    # Extra axes after the series axis (cutoffs, steps) pool into the series.
    got = metrics.crps(y.reshape(4, 2, 3), preds.reshape(4, 2, 3, -1), quantiles=quantiles)
    assert got == pytest.approx(expected, rel=1e-12)
    # One series: the scaled CRPS is the weighted quantile loss.
    single = metrics.crps(y[:1], preds[:1], quantiles=quantiles)
    assert single == pytest.approx(metrics.wql(y[:1], preds[:1], quantiles=quantiles), rel=1e-12)


def test_crps_skips_series_without_scale():
    quantiles = (0.1, 0.5, 0.9)
    y, preds = _quantile_case(3, 5, quantiles, seed=3)
    y[1] = 0.0
    expected = _crps(y.tolist(), preds.tolist(), quantiles)  # the loop leaves series 1 out
    assert metrics.crps(y, preds, quantiles=quantiles) == pytest.approx(expected, rel=1e-12)
    assert math.isnan(metrics.crps(np.zeros_like(y), preds, quantiles=quantiles))


@pytest.mark.parametrize("alpha", [0.05, 0.2], ids=["95pct", "80pct"])
def test_msis_matches_a_loop(alpha):
    y, bounds = _quantile_case(3, 10, (alpha / 2, 1 - alpha / 2), seed=4)
    lower, upper = bounds[..., 0], bounds[..., 1]
    assert (y < lower).any() and (y > upper).any()  # both penalties are exercised
    scale = [0.5, 2.0, 1.5]
    expected = _msis(y.tolist(), lower.tolist(), upper.tolist(), scale, alpha)
    got = metrics.msis(y, lower, upper, scale=scale, alpha=alpha)
    assert got == pytest.approx(expected, rel=1e-12)


def test_msis_by_hand():
    # alpha 0.5: penalty 2 / 0.5 = 4. Series 0: y below L (6 + 4*1), inside (6), above U
    # (6 + 4*2): mean 10, scale 2. Series 1: y on L counts inside: width 1, scale 0.5.
    y = [[1.0, 5.0, 10.0], [3.0, 3.0, 3.0]]
    lower = [[2.0, 2.0, 2.0], [3.0, 3.0, 3.0]]
    upper = [[8.0, 8.0, 8.0], [4.0, 4.0, 4.0]]
    got = metrics.msis(y, lower, upper, scale=[2.0, 0.5], alpha=0.5)
    assert got == pytest.approx((10 / 2 + 1 / 0.5) / 2)
    assert math.isnan(metrics.msis(y, lower, upper, scale=[2.0, 0.0], alpha=0.5))
    with pytest.raises(ValueError, match="alpha"):
        metrics.msis(y, lower, upper, scale=[2.0, 0.5], alpha=1.5)
    with pytest.raises(ValueError, match="series"):
        metrics.msis(y, lower, upper, scale=[2.0, 0.5, 1.0])


def test_quantile_calibration_counts_y_at_or_below_each_quantile():
    y = np.arange(10.0)  # 0..9
    preds = np.broadcast_to([0.0, 4.5, 8.0], (10, 3))  # ties count as below
    got = metrics.quantile_calibration(y, preds, quantiles=(0.1, 0.5, 0.9))
    assert got == {0.1: pytest.approx(0.1), 0.5: pytest.approx(0.5), 0.9: pytest.approx(0.9)}
    out = metrics.forecast_metrics(
        y[None],
        preds[None, :, 1],
        mase_scale=[1.0],
        quantile_preds=preds[None],
        quantiles=(0.1, 0.5, 0.9),
    )
    assert [out[f"calibration_{q}"] for q in (0.1, 0.5, 0.9)] == pytest.approx([0.1, 0.5, 0.9])


def test_quantile_calibration_of_the_true_quantiles_is_near_nominal():
    quantiles = (0.05, 0.25, 0.5, 0.75, 0.95)
    y = np.random.default_rng(5).normal(size=20_000)
    true = [statistics.NormalDist().inv_cdf(q) for q in quantiles]
    preds = np.broadcast_to(true, (y.size, len(quantiles)))
    got = metrics.quantile_calibration(y, preds, quantiles=quantiles)
    assert list(got) == list(quantiles)
    for q in quantiles:  # 4 standard errors of a binomial share at n = 20000
        assert abs(got[q] - q) < 4 * math.sqrt(q * (1 - q) / y.size)


@pytest.mark.parametrize(
    ("quantiles", "has_msis"),
    [((0.025, 0.1, 0.5, 0.9, 0.975), True), ((0.1, 0.5, 0.9), False)],
    ids=["with_95pct", "without_95pct"],
)
def test_forecast_metrics_with_quantiles(quantiles, has_msis):
    y, preds = _quantile_case(3, 8, quantiles, seed=6)
    y, preds = y.reshape(3, 2, 4), preds.reshape(3, 2, 4, -1)
    y_hat = preds[..., quantiles.index(0.5)]
    scale = [0.8, 1.2, 2.0]
    plain = metrics.forecast_metrics(y, y_hat, mase_scale=scale)
    out = metrics.forecast_metrics(
        y, y_hat, mase_scale=scale, quantile_preds=preds, quantiles=quantiles
    )
    assert plain.items() <= out.items()  # the point metrics are unchanged
    assert list(out)[-1] == "n_points"
    assert out["wql"] == pytest.approx(_wql(*_flat(y, preds), quantiles), rel=1e-12)
    flat_y, flat_preds = y.reshape(3, -1).tolist(), preds.reshape(3, 8, -1).tolist()
    assert out["crps"] == pytest.approx(_crps(flat_y, flat_preds, quantiles), rel=1e-12)
    assert ("msis" in out) == has_msis
    if has_msis:
        lower = preds[..., 0].reshape(3, -1).tolist()
        upper = preds[..., -1].reshape(3, -1).tolist()
        assert out["msis"] == pytest.approx(_msis(flat_y, lower, upper, scale, 0.05), rel=1e-12)
    calibration = metrics.quantile_calibration(y, preds, quantiles=quantiles)
    for q in quantiles:
        assert out[f"calibration_{q:g}"] == calibration[q]
    assert "calibration_0.1" in out
    with pytest.raises(ValueError, match="together"):
        metrics.forecast_metrics(y, y_hat, mase_scale=scale, quantiles=quantiles)


def test_forecast_metrics_by_horizon_matches_each_step():
    quantiles = (0.025, 0.5, 0.975)
    y, preds = _quantile_case(3, 10, quantiles, seed=7)
    y, preds = y.reshape(3, 2, 5), preds.reshape(3, 2, 5, -1)
    y_hat = preds[..., 1]
    lower, upper = y_hat - 1.0, y_hat + 1.0
    scale = [0.8, 1.2, 2.0]
    rows = metrics.forecast_metrics_by_horizon(
        y,
        y_hat,
        mase_scale=scale,
        intervals={80: (lower, upper)},
        quantile_preds=preds,
        quantiles=quantiles,
    )
    assert [row["step"] for row in rows] == [1, 2, 3, 4, 5]
    for h, row in enumerate(rows):
        step = metrics.forecast_metrics(
            y[:, :, h],
            y_hat[:, :, h],
            mase_scale=scale,
            intervals={80: (lower[:, :, h], upper[:, :, h])},
            quantile_preds=preds[:, :, h],
            quantiles=quantiles,
        )
        assert row == {"step": h + 1, **step}
        errors = [abs(y[s, c, h] - y_hat[s, c, h]) for s in range(3) for c in range(2)]
        assert row["mae"] == pytest.approx(sum(errors) / 6, rel=1e-12)
        assert row["n_points"] == 6
        assert {"wql", "crps", "msis", "coverage_80", "calibration_0.975"} <= row.keys()
    with pytest.raises(ValueError, match="n_cutoffs"):
        metrics.forecast_metrics_by_horizon(y[:, 0], y_hat[:, 0], mase_scale=scale)


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
