"""``ntjax backtest``'s handler: JSON-ready output from parsed arguments (moved here from
tests/test_backtest.py with the handler, which left ``ntjax.backtest`` for ``ntjax.cli``)."""

import argparse
import datetime as dt
import json

import numpy as np
import polars as pl
import pytest

import ntjax as nt
from ntjax.cli.backtest import backtest_command

N_ROWS = 160
FIRST_DAY = dt.datetime(2021, 1, 1)


def _prices(n: int = N_ROWS, seed: int = 0) -> pl.DataFrame:
    """A positive price path with AR(1) daily returns (something for a model to find)."""
    rng = np.random.default_rng(seed)
    returns = np.zeros(n)
    for t in range(1, n):
        returns[t] = 0.3 * returns[t - 1] + 0.01 * rng.normal()
    ds = pl.datetime_range(FIRST_DAY, FIRST_DAY + dt.timedelta(days=n - 1), "1d", eager=True)
    return pl.DataFrame({"unique_id": "ACME", "ds": ds, "y": 100 * np.exp(np.cumsum(returns))})


@pytest.fixture(scope="module")
def prices() -> pl.DataFrame:
    return _prices()


def test_backtest_command_trains_and_prints_json(prices, tmp_path):
    wide = prices.select(Date=pl.col("ds").dt.date().cast(pl.String), Close=pl.col("y"))
    long = nt.from_wide(wide, time_col="Date", value_cols="Close")
    args = argparse.Namespace(
        model_id=None, model="nhits", horizon=2, input_size=16, quantiles=(0.1, 0.5, 0.9),
        max_steps=20, batch_size=32, seed=0, no_progress=True, start="2021-04-01", end=None,
        strategy="interval", long_only=True, max_leverage=1.0, level=80.0, cost_bps=5.0,
        slippage_bps=0.0, refit_every=None, transform="log", periods_per_year=252,
        risk_free=0.0, plot=str(tmp_path / "plot.png"), embargo=0, allow_in_sample=False,
    )  # fmt: skip
    out = backtest_command(args, None, long)
    text = json.dumps(out, allow_nan=False)
    assert json.loads(text)["strategy"] == {
        "kind": "interval", "long_only": True, "max_leverage": 1.0, "level": 80.0,
    }  # fmt: skip
    assert out["model"]["input_size"] == 16
    assert out["start"].startswith("2021-04-01")
    assert out["n_periods"] == N_ROWS - 2 - 90  # decisions from row 90 to row N - h - 1
    assert (tmp_path / "plot.png").exists()
    with pytest.raises(ValueError, match="has no field"):
        backtest_command(argparse.Namespace(**{**vars(args), "strategy": "sign"}), None, long)
