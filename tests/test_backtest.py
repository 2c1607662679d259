"""Walk-forward backtest: no look-ahead, exact accounting, strategies, plot, CLI handler."""

import datetime as dt
import importlib.util
import math
import statistics
from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from conftest import shared_data

import ntjax as nt
from ntjax import metrics
from ntjax.backtest import (
    BacktestResult,
    IntervalStrategy,
    SignStrategy,
    SizedStrategy,
    backtest,
    compare_strategies,
    make_strategy,
    simulate,
    walk_forward,
)
from ntjax.predict import forecast
from ntjax.train import fit

N_ROWS = 160
FIRST_DAY = dt.datetime(2021, 1, 1)
START = dt.datetime(2021, 3, 1)  # row 59
CONFIG = nt.NHITSConfig(
    horizon=2, input_size=16, mlp_units=16, quantiles=(0.1, 0.25, 0.5, 0.75, 0.9)
)
TRAINING = nt.TrainingConfig(max_steps=40, batch_size=32, progress=False)


def _prices(n: int = N_ROWS, seed: int = 0) -> pl.DataFrame:
    """A positive price path with AR(1) daily returns (something for a model to find)."""
    rng = np.random.default_rng(seed)
    returns = np.zeros(n)
    for t in range(1, n):
        returns[t] = 0.3 * returns[t - 1] + 0.01 * rng.normal()
    ds = pl.datetime_range(FIRST_DAY, FIRST_DAY + dt.timedelta(days=n - 1), "1d", eager=True)
    return pl.DataFrame({"unique_id": "ACME", "ds": ds, "y": 100 * np.exp(np.cumsum(returns))})


def _log(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.with_columns(pl.col("y").log())


def _scrambled_after(frame: pl.DataFrame, cut: dt.datetime, seed: int = 1) -> pl.DataFrame:
    after = (frame["ds"] > cut).to_numpy()
    y = frame["y"].to_numpy().copy()
    y[after] = np.random.default_rng(seed).permutation(y[after]) * 1.1
    return frame.with_columns(pl.Series("y", y))


@pytest.fixture(scope="module")
def prices() -> pl.DataFrame:
    return _prices()


@pytest.fixture(scope="module")
def record(prices):
    """NHITS fitted on log prices strictly before START (so it has not seen the test span)."""
    return fit(_log(prices).filter(pl.col("ds") < START), CONFIG, TRAINING)


@pytest.fixture(scope="module")
def forecasts(record, prices):
    return walk_forward(record, prices, start=START, levels=(50, 80), transform="log")


def _same(a: dict, b: dict) -> bool:
    """Dict equality where NaN equals NaN."""
    return a.keys() == b.keys() and all(
        a[k] == b[k] or (isinstance(a[k], float) and math.isnan(a[k]) and math.isnan(b[k]))
        for k in a
    )


# --- walk-forward forecasts ----------------------------------------------------------------------


def test_walk_forward_rows_line_up_with_the_prices(forecasts, prices):
    ds, y = prices["ds"].to_list(), prices["y"].to_numpy()
    first = ds.index(START)
    last = N_ROWS - CONFIG.horizon  # the last period ends horizon - 1 rows before the data end
    assert forecasts.height == last - first
    assert forecasts["ds"].to_list() == ds[first:last]
    assert forecasts["next_ds"].to_list() == ds[first + 1 : last + 1]
    np.testing.assert_array_equal(forecasts["price"].to_numpy(), y[first:last])
    np.testing.assert_array_equal(forecasts["next_price"].to_numpy(), y[first + 1 : last + 1])
    q = forecasts.select("q_0.1", "q_0.25", "q_0.5", "q_0.75", "q_0.9").to_numpy()
    assert np.all(np.diff(q, axis=1) >= 0)
    np.testing.assert_array_equal(forecasts["lo_80"].to_numpy(), q[:, 0])
    np.testing.assert_array_equal(forecasts["hi_50"].to_numpy(), q[:, 3])
    np.testing.assert_allclose(
        forecasts["forecast_return"].to_numpy(), q[:, 2] / y[first:last] - 1, rtol=1e-12
    )


def test_walk_forward_equals_forecasting_from_the_history_alone(record, forecasts, prices):
    """Each row is what nt.forecast gives on the data up to its decision time, in prices."""
    for row in (0, 17, forecasts.height - 1):
        t = forecasts["ds"][row]
        history = _log(prices).filter(pl.col("ds") <= t)
        expected = forecast(record, history)
        assert expected["ds"][0] == forecasts["next_ds"][row]
        assert forecasts["y_hat"][row] == pytest.approx(math.exp(expected["y_hat"][0]), rel=1e-5)


def test_integer_time_stamps_give_the_same_forecasts(record, prices):
    stepped = prices.with_columns(ds=pl.int_range(pl.len(), dtype=pl.Int64))
    # The record knows datetimes: integer stamps cannot be told apart from its training rows,
    # so the run must be allowed, and is flagged.
    with pytest.raises(ValueError, match="trained on datetime time stamps"):
        walk_forward(record, stepped, start=59, levels=(50, 80), transform="log")
    # The model's forecasts are the same; compared on raw quantile heads, because the rolling
    # calibration is keyed by the record's time stamps and cannot place integer ones (its
    # offsets, and the calibrated median where a sorted offset crosses it, then differ).
    raw = fit(
        _log(prices).filter(pl.col("ds") < START), CONFIG, replace(TRAINING, calibration=None)
    )
    expected = walk_forward(raw, prices, start=START, levels=(50, 80), transform="log")
    again = walk_forward(
        raw, stepped, start=59, levels=(50, 80), transform="log", allow_in_sample=True
    )
    assert again["in_sample"].all()
    assert again["ds"].to_list() == list(range(59, N_ROWS - CONFIG.horizon))
    for column in ("y_hat", "lo_80", "hi_80"):
        np.testing.assert_array_equal(again[column].to_numpy(), expected[column].to_numpy())


@pytest.mark.parametrize(
    "refit_every", [None, 20], ids=["record-no-refit", "config-refit-every-20"]
)
def test_no_look_ahead_positions_before_a_scramble_are_unchanged(record, prices, refit_every):
    cut = START + dt.timedelta(days=27)  # inside the second refit block
    end = START + dt.timedelta(days=40)
    model = record if refit_every is None else CONFIG
    run = dict(
        start=START, end=end, refit_every=refit_every, levels=(80,), transform="log",
        training=TRAINING,
    )  # fmt: skip
    strategy = SizedStrategy(level=80, scale=2.0)
    original = simulate(walk_forward(model, prices, **run), strategy=strategy)
    scrambled = simulate(
        walk_forward(model, _scrambled_after(prices, cut), **run), strategy=strategy
    )
    decided = (original.forecasts["ds"] <= cut).to_numpy()
    assert 20 < decided.sum() < len(decided)
    np.testing.assert_array_equal(
        original.equity["position"].to_numpy()[decided],
        scrambled.equity["position"].to_numpy()[decided],
    )
    np.testing.assert_array_equal(
        original.forecasts["y_hat"].to_numpy()[decided],
        scrambled.forecasts["y_hat"].to_numpy()[decided],
    )
    # The test has power: forecasts after the cut do see the scrambled prices.
    assert not np.array_equal(
        original.forecasts["y_hat"].to_numpy()[~decided],
        scrambled.forecasts["y_hat"].to_numpy()[~decided],
    )


# --- accounting ----------------------------------------------------------------------------------


def test_metrics_recompute_exactly_from_the_equity_frame(forecasts):
    result = simulate(forecasts, strategy="sized", cost_bps=5, risk_free=0.02)
    eq = result.equity
    again = metrics.trading_metrics(
        eq["return"].to_numpy(),
        eq["position"].to_numpy(),
        asset_returns=eq["benchmark_return"].to_numpy(),
        forecast_returns=result.forecasts["forecast_return"].to_numpy(),
        risk_free=0.02,
    )
    recomputed = again | {"costs": float(eq["cost"].sum()), "in_sample": False}
    assert _same(recomputed, result.metrics)
    # ... and from first principles, in plain Python.
    r = eq["return"].to_list()
    excess = [x - 0.02 / 252 for x in r]
    assert result.metrics["sharpe"] == pytest.approx(
        statistics.mean(excess) / statistics.stdev(excess) * math.sqrt(252), rel=1e-12
    )
    equity, peak, worst = 1.0, 1.0, 0.0
    for x in r:
        equity *= 1 + x
        peak = max(peak, equity)
        worst = min(worst, equity / peak - 1)
    assert result.metrics["total_return"] == pytest.approx(equity - 1, rel=1e-12)
    assert result.metrics["max_drawdown"] == pytest.approx(worst, rel=1e-12)
    np.testing.assert_allclose(eq["equity"].to_numpy(), np.cumprod(1 + np.array(r)), rtol=1e-13)
    asset = forecasts["next_price"].to_numpy() / forecasts["price"].to_numpy() - 1
    np.testing.assert_array_equal(eq["benchmark_return"].to_numpy(), asset)
    assert eq["ds"].to_list() == forecasts["next_ds"].to_list()


def test_costs_reduce_returns_by_exactly_the_traded_amount(forecasts):
    free = simulate(forecasts, strategy="sized")
    paid = simulate(forecasts, strategy="sized", cost_bps=3, slippage_bps=2)
    position = paid.equity["position"].to_numpy()
    np.testing.assert_array_equal(position, free.equity["position"].to_numpy())
    traded = np.abs(np.diff(position, prepend=0.0))
    assert traded.sum() > 0
    gap = free.equity["return"].to_numpy() - paid.equity["return"].to_numpy()
    np.testing.assert_allclose(gap, 5e-4 * traded, rtol=0, atol=1e-15)
    np.testing.assert_allclose(paid.equity["cost"].to_numpy(), 5e-4 * traded, rtol=0, atol=0)
    assert paid.metrics["costs"] == pytest.approx(5e-4 * traded.sum(), rel=1e-12)
    assert paid.cost_bps == 5


def _handmade(median, lo50, hi50, lo80, hi80, next_price=None) -> pl.DataFrame:
    """A forecasts frame by hand: price 100, forecast prices 100 * (1 + return)."""
    n = len(median)
    ds = [FIRST_DAY + dt.timedelta(days=i) for i in range(n + 1)]
    as_price = lambda r: [100 * (1 + x) for x in r]
    return pl.DataFrame(
        {
            "unique_id": ["X"] * n,
            "ds": ds[:-1],
            "next_ds": ds[1:],
            "price": [100.0] * n,
            "next_price": next_price or [101.0] * n,
            "y_hat": as_price(median),
            "lo_50": as_price(lo50),
            "hi_50": as_price(hi50),
            "lo_80": as_price(lo80),
            "hi_80": as_price(hi80),
        }
    )


HANDMADE = dict(
    median=[0.01, -0.01, 0.002, -0.002, 0.0],
    lo50=[0.004, -0.02, -0.001, -0.004, -0.01],
    hi50=[0.02, -0.003, 0.005, 0.001, 0.01],
    lo80=[-0.01, -0.04, -0.018, -0.012, -0.02],
    hi80=[0.03, 0.01, 0.022, 0.008, 0.02],
)


@pytest.mark.parametrize(
    ("strategy", "expected"),
    [
        (SignStrategy(), [1, -1, 1, -1, 0]),
        (SignStrategy(long_only=True), [1, 0, 1, 0, 0]),
        (SignStrategy(max_leverage=2.0), [2, -2, 2, -2, 0]),
        (IntervalStrategy(level=50), [1, -1, 0, 0, 0]),
        (IntervalStrategy(level=50, long_only=True), [1, 0, 0, 0, 0]),
        (IntervalStrategy(level=80), [0, 0, 0, 0, 0]),
        # scale * median / width80: 10*0.01/0.04=2.5 -> cap 1, -10*0.01/0.05=-2 -> -1, 0.5, -1, 0
        (SizedStrategy(), [1, -1, 0.5, -1, 0]),
        (SizedStrategy(scale=2.0, max_leverage=0.3), [0.3, -0.3, 0.1, -0.2, 0]),
        (SizedStrategy(scale=2.0, long_only=True), [0.5, 0, 0.1, 0, 0]),
        (make_strategy("hold"), [1, 1, 1, 1, 1]),
    ],
    ids=lambda v: v.describe() if hasattr(v, "describe") else "",
)
def test_strategies_turn_forecasts_into_positions(strategy, expected):
    result = simulate(_handmade(**HANDMADE), strategy=strategy)
    np.testing.assert_allclose(result.equity["position"].to_numpy(), expected, rtol=1e-12)


def test_trades_frame_from_runs_of_one_sign():
    median = [0.01, 0.01, -0.01, 0.0, 0.0, 0.01, -0.01, -0.01]
    zeros = [0.0] * len(median)
    next_price = [102.0, 99.0, 98.0, 100.0, 100.0, 101.0, 97.0, 103.0]
    frame = _handmade(median, zeros, zeros, zeros, zeros, next_price=next_price)
    result = simulate(frame, strategy="sign", cost_bps=10)
    t = result.trades
    day = lambda i: FIRST_DAY + dt.timedelta(days=i)
    assert t["entry_ds"].to_list() == [day(0), day(2), day(5), day(6)]
    assert t["exit_ds"].to_list() == [day(2), day(3), day(6), day(8)]
    assert t["side"].to_list() == ["long", "short", "long", "short"]
    assert t["closed"].to_list() == [True, True, True, False]
    # long 2 days: (1 + 0.02 - 0.001)(1 - 0.01) - 1 ; short: 1 + 0.02 - 0.002 (flip costs 2 units)
    assert t["return"][0] == pytest.approx((1.019) * (0.99) - 1, rel=1e-12)
    assert t["return"][1] == pytest.approx(0.018, rel=1e-12)
    assert result.metrics["n_trades"] == 4 and result.metrics["n_closed_trades"] == 3
    # flat period 3 pays the exit of the short: -1 unit at 10 bps
    assert result.equity["return"][3] == pytest.approx(-0.001, rel=1e-12)


# --- end to end ----------------------------------------------------------------------------------


def test_backtest_end_to_end_and_plot(record, prices, tmp_path):
    end = dt.datetime(2021, 5, 1)
    result = backtest(
        record, prices, strategy=IntervalStrategy(level=50), cost_bps=5, start="2021-03-01",
        end="2021-05-01", transform="log",
    )  # fmt: skip
    assert isinstance(result, BacktestResult)
    assert result.forecasts["ds"][0] == START
    assert result.equity["ds"][-1] == end
    assert set(result.equity.columns) >= {
        "ds", "position", "return", "equity", "benchmark_return", "benchmark_equity",
    }  # fmt: skip
    assert result.trades.columns[:4] == ["entry_ds", "exit_ds", "side", "return"]
    for name in ("sharpe", "sortino", "max_drawdown", "win_rate", "profit_factor", "calmar",
                 "n_trades", "turnover", "exposure", "benchmark_total_return",
                 "benchmark_sharpe", "alpha", "beta", "information_ratio",
                 "directional_accuracy"):  # fmt: skip
        assert name in result.metrics
    path = tmp_path / "equity.png"
    result.plot().savefig(path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table, results = compare_strategies(
        result.forecasts, ["hold", IntervalStrategy(level=50)], cost_bps=5
    )
    assert table["strategy"].to_list() == list(results)
    assert (
        table.filter(pl.col("strategy").str.starts_with("interval"))["sharpe"][0]
        == (result.metrics["sharpe"])
    )


def test_bad_inputs_give_clear_errors(record, prices, forecasts):
    two = pl.concat([prices, prices.with_columns(unique_id=pl.lit("OTHER"))])
    with pytest.raises(ValueError, match="one price series"):
        walk_forward(record, two, start=START, transform="log")
    negative = prices.with_columns(pl.col("y") - 200)
    with pytest.raises(ValueError, match="positive"):
        walk_forward(record, negative, start=START, transform="log")
    with pytest.raises(ValueError, match="rows up to the first decision"):
        walk_forward(CONFIG, prices, start=FIRST_DAY + dt.timedelta(days=5), training=TRAINING)
    with pytest.raises(ValueError, match="no period to trade"):
        walk_forward(record, prices, start=START, end=START, transform="log")
    with pytest.raises(ValueError, match="unknown strategy"):
        make_strategy("momentum")
    with pytest.raises(ValueError, match="lo_95"):
        simulate(forecasts, strategy=IntervalStrategy(level=95))
    with pytest.raises(ValueError, match="quantile 0.025"):
        backtest(record, prices, strategy=IntervalStrategy(level=95), start=START, transform="log")
    with pytest.raises(ValueError, match="refit_every"):
        walk_forward(CONFIG, prices, refit_every=0)
    with pytest.raises(ValueError, match="transform"):
        walk_forward(record, prices, transform="sqrt")
    with pytest.raises(ValueError, match="max_leverage"):
        SignStrategy(max_leverage=-1.0)
    with pytest.raises(ValueError, match="cost_bps"):
        simulate(forecasts, cost_bps=-1)


# --- the experiment, shrunk ----------------------------------------------------------------------


@pytest.mark.shared_data
def test_trading_backtest_experiment_smoke(tmp_path):
    shared_data("AAPL_2006-01-01_to_2018-01-01.csv")
    path = Path(__file__).resolve().parents[1] / "experiments" / "trading_backtest.py"
    spec = importlib.util.spec_from_file_location("trading_backtest", path)
    experiment = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(experiment)
    table = experiment.run(
        tickers=("AAPL",), start="2017-10-02", max_steps=10, mlp_units=8, output_dir=tmp_path
    )
    assert table.height == len(experiment.strategies())
    for name in ("trading_backtest.csv", "trading_backtest.md", "trading_backtest_AAPL.png"):
        assert (tmp_path / name).stat().st_size > 0
    # Buy-and-hold from the raw file: the hold row is it, less one 5 bps entry cost.
    close = experiment.load_close("AAPL")
    span = close.filter(pl.col("ds") >= dt.date(2017, 10, 2))["y"].to_numpy()[:-4]
    asset = span[1:] / span[:-1] - 1
    expected = (1 + asset[0] - 5e-4) * np.prod(1 + asset[1:]) - 1
    hold = table.filter(pl.col("strategy").str.starts_with("hold"))
    assert hold["total_return"][0] == pytest.approx(expected, rel=1e-10)
    assert hold["benchmark_total_return"][0] == pytest.approx(np.prod(1 + asset) - 1, rel=1e-10)
