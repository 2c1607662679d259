"""Walk-forward forecasts -> positions -> costs -> metrics: ``simulate``, ``compare_strategies``,
``backtest`` (``walk_forward`` then ``simulate``) and the result with its plots."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import jax
import numpy as np
import polars as pl

from ntjax.backtest.strategies import ForecastReturns, StrategyConfig, _check_number, make_strategy
from ntjax.backtest.walkforward import walk_forward
from ntjax.config import ModelConfig, OptimizerConfig, TrainingConfig
from ntjax.data.frame import to_polars
from ntjax.metrics import trading
from ntjax.registry import ModelRecord

if TYPE_CHECKING:
    from matplotlib.figure import Figure


@dataclass(frozen=True, eq=False)
class BacktestResult:
    """The outcome of a backtest.

    Attributes:
      metrics: ``nt.metrics.trading_metrics`` of the strategy returns (after costs) with the
        asset as buy-and-hold benchmark, plus ``costs`` (sum of the costs paid, a fraction of
        equity).
      equity: one row per period ``t -> t + 1``: ``ds`` (the period's end, when its return is
        realised), ``position`` (held over the period, decided at its start), ``return`` (after
        costs), ``equity``, ``benchmark_return``, ``benchmark_equity`` (buy-and-hold, no costs),
        ``cost`` (paid at the period's start).
      trades: ``entry_ds`` (decision time of entry), ``exit_ds`` (end of the last period held),
        ``side`` (``long``/``short``), ``return`` (compounded, after costs), ``closed`` (False
        for a trade still open at the end, marked to market).
      forecasts: the walk-forward forecasts the positions were decided on (``walk_forward``).
      strategy: the strategy config.
      cost_bps: costs plus slippage per unit of position traded, in basis points.
    """

    metrics: dict[str, float]
    equity: pl.DataFrame
    trades: pl.DataFrame
    forecasts: pl.DataFrame
    strategy: StrategyConfig
    cost_bps: float

    def plot(self, *, title: str | None = None) -> Figure:
        """Equity of the strategy against buy-and-hold, with the drawdowns underneath."""
        m = self.metrics
        series = self.forecasts["unique_id"][0]
        title = title or (
            f"{series}: {self.strategy.describe()}, {self.cost_bps:g} bps; Sharpe "
            f"{m['sharpe']:.2f} (buy and hold {m['benchmark_sharpe']:.2f})"
        )
        return plot_equities({self.strategy.describe(): self}, title=title)


def plot_equities(results: Mapping[str, BacktestResult], *, title: str | None = None) -> Figure:
    """Equity curves of several results on the same periods (e.g. strategies sharing one
    ``walk_forward``) against buy-and-hold, with their drawdowns underneath.

    Args:
      results: label -> result; the first one's asset is the buy-and-hold curve.
      title: figure title (default: the series name).
    """
    from matplotlib.figure import Figure  # imported here: keeps `import ntjax` light

    if not results:
        raise ValueError("plot_equities needs at least one result.")
    first = next(iter(results.values()))
    ds = np.concatenate([first.forecasts["ds"].head(1).to_numpy(), first.equity["ds"].to_numpy()])
    benchmark = trading.equity_curve(first.equity["benchmark_return"].to_numpy())
    fig = Figure(figsize=(10, 6), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(3, 1))
    top.plot(ds, benchmark, color="0.4", lw=1.0, label="buy and hold")
    bottom.plot(
        ds, trading.drawdowns(first.equity["benchmark_return"].to_numpy()), color="0.4", lw=0.8
    )
    for label, result in results.items():
        returns = result.equity["return"].to_numpy()
        (line,) = top.plot(ds, trading.equity_curve(returns), lw=1.1, label=label)
        drawdown = trading.drawdowns(returns)
        if len(results) == 1:
            bottom.fill_between(ds, drawdown, 0, color=line.get_color(), alpha=0.35, lw=0)
        else:
            bottom.plot(ds, drawdown, color=line.get_color(), lw=0.8)
    top.set_ylabel("equity (start = 1)")
    top.set_title(title or str(first.forecasts["unique_id"][0]))
    top.legend(loc="upper left", fontsize=8)
    top.grid(alpha=0.3)
    bottom.set_ylabel("drawdown")
    bottom.grid(alpha=0.3)
    return fig


def _forecast_returns(forecasts: pl.DataFrame, strategy: StrategyConfig) -> ForecastReturns:
    price = forecasts["price"].to_numpy()
    median = forecasts["y_hat"].to_numpy() / price - 1
    if not strategy.interval_levels:
        return ForecastReturns(median)
    (level,) = strategy.interval_levels
    lo, hi = f"lo_{level:g}", f"hi_{level:g}"
    if lo not in forecasts.columns or hi not in forecasts.columns:
        raise ValueError(
            f"strategy {strategy.kind!r} reads the {level:g}% interval: the forecasts need "
            f"{lo} and {hi} (walk_forward(..., levels=({level:g},)))."
        )
    return ForecastReturns(
        median, forecasts[lo].to_numpy() / price - 1, forecasts[hi].to_numpy() / price - 1
    )


def simulate(
    forecasts: Any,
    *,
    strategy: StrategyConfig | str = "sign",
    cost_bps: float = 0.0,
    slippage_bps: float = 0.0,
    periods_per_year: float = 252,
    risk_free: float = 0.0,
) -> BacktestResult:
    """Trades a strategy on walk-forward forecasts.

    The position ``w_t`` is decided at ``t`` from the forecast made at ``t``, held to ``t + 1``
    and earns ``w_t * (p[t + 1] / p[t] - 1)``; trading costs
    ``(cost_bps + slippage_bps) / 1e4 * |w_t - w_{t-1}|`` (``w_{-1} = 0``; no closing cost at
    the end) are taken from the same period's return. Short positions earn the negative of the
    asset's return each period (rebalanced daily, no borrow fee); cash earns nothing.

    Args:
      forecasts: output of ``walk_forward`` (with the strategy's interval level).
      strategy: a ``StrategyConfig`` or a name in ``STRATEGIES`` (its defaults).
      cost_bps: commission per unit of position traded, in basis points.
      slippage_bps: slippage per unit of position traded, in basis points.
      periods_per_year: ``P`` for annualising (252 for daily bars).
      risk_free: annual risk-free rate of the Sharpe ratio, alpha and beta.
    """
    strategy = make_strategy(strategy) if isinstance(strategy, str) else strategy
    _check_number("cost_bps", cost_bps, 0.0, 10_000.0)
    _check_number("slippage_bps", slippage_bps, 0.0, 10_000.0)
    forecasts = to_polars(forecasts)
    asset = forecasts["next_price"].to_numpy() / forecasts["price"].to_numpy() - 1
    signal = _forecast_returns(forecasts, strategy)
    positions = strategy.build()(signal).astype(np.float64)
    rate = (cost_bps + slippage_bps) / 10_000
    cost = rate * np.abs(np.diff(positions, prepend=0.0))
    returns = positions * asset - cost
    equity = pl.DataFrame(
        {
            "ds": forecasts["next_ds"],
            "position": positions,
            "return": returns,
            "equity": trading.equity_curve(returns)[1:],
            "benchmark_return": asset,
            "benchmark_equity": trading.equity_curve(asset)[1:],
            "cost": cost,
        }
    )
    start, stop, side = trading.trade_runs(positions)
    trades = pl.DataFrame(
        {
            "entry_ds": forecasts["ds"].gather(start),
            "exit_ds": forecasts["next_ds"].gather(stop - 1),
            "side": pl.Series(np.where(side > 0, "long", "short").tolist(), dtype=pl.String),
            "return": trading.trade_returns(positions, returns, include_open=True),
            "closed": stop < len(positions),
        }
    )
    result = trading.trading_metrics(
        returns,
        positions,
        asset_returns=asset,
        forecast_returns=signal.median,
        periods_per_year=periods_per_year,
        risk_free=risk_free,
    )
    result["costs"] = float(np.sum(cost))
    if "in_sample" in forecasts.columns:  # walk-forward forecasts say whether a record saw them
        result["in_sample"] = bool(forecasts["in_sample"].any())
    return BacktestResult(result, equity, trades, forecasts, strategy, cost_bps + slippage_bps)


def compare_strategies(
    forecasts: Any,
    strategies: Sequence[StrategyConfig | str],
    **simulate_args: Any,
) -> tuple[pl.DataFrame, dict[str, BacktestResult]]:
    """Simulates several strategies on the same walk-forward forecasts.

    Args:
      forecasts: output of ``walk_forward`` (with every interval level the strategies read).
      strategies: configs or names; add ``"hold"`` for a buy-and-hold row that pays costs.
      **simulate_args: ``cost_bps``, ``slippage_bps``, ``periods_per_year``, ``risk_free``.

    Returns:
      A table with one row per strategy (``strategy`` = ``StrategyConfig.describe()``, then
      every metric) and the results by that label.
    """
    results = {}
    for strategy in strategies:
        strategy = make_strategy(strategy) if isinstance(strategy, str) else strategy
        results[strategy.describe()] = simulate(forecasts, strategy=strategy, **simulate_args)
    table = pl.DataFrame(
        [{"strategy": label, **result.metrics} for label, result in results.items()]
    )
    return table, results


def backtest(
    record_or_config: ModelConfig | ModelRecord,
    df: Any,
    *,
    strategy: StrategyConfig | str = "sign",
    cost_bps: float = 0.0,
    slippage_bps: float = 0.0,
    refit_every: int | None = None,
    start: Any = None,
    end: Any = None,
    levels: Sequence[float] = (),
    transform: str = "identity",
    periods_per_year: float = 252,
    risk_free: float = 0.0,
    training: TrainingConfig | None = None,
    optimizer: OptimizerConfig | None = None,
    embargo: int = 0,
    allow_in_sample: bool = False,
    key: jax.Array | None = None,
) -> BacktestResult:
    """Walk-forward trading backtest of a forecasting model on one price series.

    ``walk_forward`` then ``simulate``: see both for the arguments. Every forecast at decision
    time ``t`` uses data up to ``t`` only; a refit every ``refit_every`` periods uses only the
    data available then; positions earn the return from ``t`` to ``t + 1`` and pay
    ``cost_bps + slippage_bps`` on each change. A record is never traded on periods it was
    fitted on unless ``allow_in_sample=True``, and then ``metrics["in_sample"]`` is True.

    Example::

        prices = nt.from_wide(pl.read_csv("AAPL.csv"), time_col="Date", value_cols="Close")
        result = nt.backtest(nt.NHITSConfig(horizon=5, input_size=60), prices,
                             strategy=nt.SizedStrategy(level=80), cost_bps=5, refit_every=63,
                             start="2010-01-01", transform="log")
        result.metrics["sharpe"], result.plot().savefig("equity.png")
    """
    strategy = make_strategy(strategy) if isinstance(strategy, str) else strategy
    levels = tuple(dict.fromkeys((*levels, *strategy.interval_levels)))
    forecasts = walk_forward(
        record_or_config,
        df,
        refit_every=refit_every,
        start=start,
        end=end,
        levels=levels,
        transform=transform,
        training=training,
        optimizer=optimizer,
        embargo=embargo,
        allow_in_sample=allow_in_sample,
        key=key,
    )
    return simulate(
        forecasts,
        strategy=strategy,
        cost_bps=cost_bps,
        slippage_bps=slippage_bps,
        periods_per_year=periods_per_year,
        risk_free=risk_free,
    )
