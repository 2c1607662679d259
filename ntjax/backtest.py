"""Trading backtest on forecasts: walk-forward forecasts -> positions -> costs -> metrics.

``backtest`` walks forward through one price series. At each decision time ``t`` (a row of the
series) the model forecasts from data up to ``t`` only, the strategy turns the forecast into a
position, the position is held from ``t`` to ``t + 1`` and earns the asset's simple return
``p[t + 1] / p[t] - 1``, and costs are paid on every change of position. The forecasts come from
``ntjax.crossval.cross_validation`` with one cutoff per period (a refit every ``refit_every``
periods on the data available then), so the no-look-ahead rules are those of cross-validation.

The forecast return of period ``t`` is the model's median forecast of the next price against
the last price, ``y_hat[t + 1] / p[t] - 1``; interval bounds become returns the same way. With
``transform="log"`` the model is fitted on and forecasts ``log(price)`` and its quantiles are
mapped back with ``exp`` (quantiles commute with monotone maps, so ``exp`` of the median is the
median price).

Two steps are public so that several strategies can share one (expensive) walk-forward:
``walk_forward`` (forecasts) and ``simulate`` (positions, costs, metrics); ``backtest`` is the
two in a row.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

import jax
import numpy as np
import polars as pl

from ntjax import metrics as trading
from ntjax import provenance
from ntjax.config import ModelConfig, OptimizerConfig, TrainingConfig
from ntjax.crossval import cross_validation
from ntjax.data.frame import to_polars, validate
from ntjax.data.windows import pack
from ntjax.predict.inputs import quantile_columns
from ntjax.registry import ModelRecord

if TYPE_CHECKING:
    from matplotlib.figure import Figure


class PriceTransform(NamedTuple):
    """How the model sees prices: ``forward`` maps prices to the model's ``y``, ``inverse`` maps
    its forecast quantiles back (monotone, so quantiles stay quantiles); ``positive``: the
    whole history must be positive."""

    forward: Callable[[np.ndarray], np.ndarray]
    inverse: Callable[[np.ndarray], np.ndarray]
    positive: bool


PRICE_TRANSFORMS: dict[str, PriceTransform] = {
    "identity": PriceTransform(lambda price: price, lambda value: value, positive=False),
    "log": PriceTransform(np.log, np.exp, positive=True),
}

# Interval widths below this count as this (a model sure of its forecast sizes at the cap).
_MIN_WIDTH = 1e-12


class ForecastReturns(NamedTuple):
    """Forecast simple returns of the next period, each ``[n_periods]``.

    Attributes:
      median: median forecast return ``y_hat[t + 1] / p[t] - 1``.
      lower: lower bound of the strategy's central interval as returns (None for strategies
        without an interval).
      upper: upper bound of that interval as returns (None likewise).
    """

    median: np.ndarray
    lower: np.ndarray | None = None
    upper: np.ndarray | None = None


@dataclass(frozen=True, kw_only=True)
class StrategyConfig:
    """Fields every strategy shares.

    Attributes:
      long_only: positions in ``[0, max_leverage]`` (a short signal means flat) instead of
        ``[-max_leverage, max_leverage]``.
      max_leverage: the largest absolute position, in multiples of equity.
    """

    kind: ClassVar[str] = ""
    long_only: bool = False
    max_leverage: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.long_only, bool):
            raise ValueError(f"long_only must be True or False, got {self.long_only!r}.")
        _check_number("max_leverage", self.max_leverage, 1e-6, 100.0)

    @property
    def interval_levels(self) -> tuple[float, ...]:
        """Central interval levels the strategy reads (their quantiles must be predicted)."""
        return ()

    def target(self, forecast: ForecastReturns) -> np.ndarray:
        """``[n_periods]`` positions before the long-only and leverage bounds."""
        raise NotImplementedError(f"{type(self).__name__} defines no target positions.")

    def build(self) -> Callable[[ForecastReturns], np.ndarray]:
        """The position rule: forecast returns -> ``[n_periods]`` bounded positions."""
        low = 0.0 if self.long_only else -self.max_leverage
        high = self.max_leverage
        target = self.target

        def positions(forecast: ForecastReturns) -> np.ndarray:
            return np.clip(target(forecast), low, high)

        return positions

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **dataclasses.asdict(self)}

    def describe(self) -> str:
        mode = "long-only" if self.long_only else "long/short"
        fields = {k: v for k, v in dataclasses.asdict(self).items() if k != "long_only"}
        extras = ", ".join(f"{k}={v:g}" for k, v in fields.items())
        return f"{self.kind} {mode} ({extras})"


@dataclass(frozen=True, kw_only=True)
class SignStrategy(StrategyConfig):
    """Long ``max_leverage`` when the median forecast return is positive, short (or flat when
    long-only) when it is negative, flat when it is zero."""

    kind: ClassVar[str] = "sign"

    def target(self, forecast: ForecastReturns) -> np.ndarray:
        return self.max_leverage * np.sign(forecast.median)


@dataclass(frozen=True, kw_only=True)
class IntervalStrategy(StrategyConfig):
    """Trades only when the central ``level``% forecast interval of the return excludes zero:
    long ``max_leverage`` when its lower bound is positive, short when its upper bound is
    negative, flat otherwise.

    Attributes:
      level: interval level in percent (the model must predict its two quantiles).
    """

    kind: ClassVar[str] = "interval"
    level: float = 80.0

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_number("level", self.level, 1e-6, 100.0 - 1e-6)

    @property
    def interval_levels(self) -> tuple[float, ...]:
        return (self.level,)

    def target(self, forecast: ForecastReturns) -> np.ndarray:
        long = (forecast.lower > 0).astype(np.float64)
        short = (forecast.upper < 0).astype(np.float64)
        return self.max_leverage * (long - short)


@dataclass(frozen=True, kw_only=True)
class SizedStrategy(StrategyConfig):
    """Position ``scale * median / (upper - lower)``, capped at ``max_leverage``: the forecast
    return per unit of forecast uncertainty (the ``level``% interval width).

    Attributes:
      level: interval level in percent whose width measures the uncertainty.
      scale: position per unit of ``median / width``; with the default 10 a forecast return of
        a tenth of the interval width takes a full unit position.
    """

    kind: ClassVar[str] = "sized"
    level: float = 80.0
    scale: float = 10.0

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_number("level", self.level, 1e-6, 100.0 - 1e-6)
        _check_number("scale", self.scale, 1e-9, 1e9)

    @property
    def interval_levels(self) -> tuple[float, ...]:
        return (self.level,)

    def target(self, forecast: ForecastReturns) -> np.ndarray:
        width = np.maximum(forecast.upper - forecast.lower, _MIN_WIDTH)
        return self.scale * forecast.median / width


@dataclass(frozen=True, kw_only=True)
class HoldStrategy(StrategyConfig):
    """Always long ``max_leverage``, whatever the forecast: buy-and-hold as a strategy (it pays
    the entry cost), the baseline of a comparison table."""

    kind: ClassVar[str] = "hold"

    def target(self, forecast: ForecastReturns) -> np.ndarray:
        return np.full_like(forecast.median, self.max_leverage)

    def describe(self) -> str:
        return f"hold (max_leverage={self.max_leverage:g})"


STRATEGIES: dict[str, type[StrategyConfig]] = {
    "hold": HoldStrategy,
    "sign": SignStrategy,
    "interval": IntervalStrategy,
    "sized": SizedStrategy,
}


def make_strategy(name: str, **fields: Any) -> StrategyConfig:
    """``make_strategy("sized", long_only=True, scale=5)``: a strategy config from its name."""
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; known strategies: {sorted(STRATEGIES)}.")
    cls = STRATEGIES[name]
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(fields) - known)
    if unknown:
        raise ValueError(
            f"strategy {name!r} has no field(s) {unknown}; its fields: {sorted(known)}."
        )
    return cls(**fields)


def _check_number(name: str, value: Any, low: float, high: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}.")
    if not low <= value <= high:
        raise ValueError(f"{name} must be between {low:g} and {high:g}, got {value}.")


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


def _position(times: np.ndarray, value: Any, *, side: str) -> int:
    """Index of ``value`` in sorted ``times`` (``left``: first >= value; ``right``: last <=)."""
    if np.issubdtype(times.dtype, np.integer):
        point = np.int64(value)
    else:
        try:
            point = np.datetime64(value).astype(times.dtype)
        except ValueError as error:
            raise ValueError(f"cannot read {value!r} as a date: {error}") from None
    found = int(np.searchsorted(times, point, side=side))
    return found if side == "left" else found - 1


def _min_history(
    record_or_config: ModelConfig | ModelRecord, refits: bool, training: TrainingConfig | None
) -> int:
    """Rows needed up to and including the first decision time."""
    if isinstance(record_or_config, ModelRecord) and not refits:
        return record_or_config.config.input_size
    config = (
        record_or_config.config if isinstance(record_or_config, ModelRecord) else record_or_config
    )
    if training is None and isinstance(record_or_config, ModelRecord):
        training = record_or_config.training
    val_size = training.val_size if training is not None else 0
    return config.input_size + config.horizon + val_size


def walk_forward(
    record_or_config: ModelConfig | ModelRecord,
    df: Any,
    *,
    refit_every: int | None = None,
    start: Any = None,
    end: Any = None,
    levels: Sequence[float] = (),
    transform: str = "identity",
    training: TrainingConfig | None = None,
    optimizer: OptimizerConfig | None = None,
    embargo: int = 0,
    allow_in_sample: bool = False,
    key: jax.Array | None = None,
) -> pl.DataFrame:
    """One-step-ahead forecasts at every decision time, each from data up to that time only.

    Args:
      record_or_config: a trained record (used as is without ``refit_every``: it must not have
        seen data after ``start``) or a model config (fitted on the data up to the first
        decision time).
      df: long frame holding one price series (``y`` the price), e.g.
        ``nt.from_wide(ohlcv, time_col="Date", value_cols="Close")``.
      refit_every: fit a fresh model every this many periods on the data available then
        (None: one model for the whole walk).
      start: first decision time (a date, ISO string or int, like ``ds``; the first row on or
        after it). Default: the earliest row with enough history for the model (and its fit).
      end: last time a period may end (the last row on or before it). Default and at most:
        ``horizon - 1`` rows before the end of ``df``, since cross-validation scores the whole
        horizon of every forecast against observed rows.
      levels: central interval levels to add as ``lo_L``/``hi_L`` (prices).
      transform: how the model sees prices: ``identity`` or ``log`` (see the module docstring).
      training: training config of the fits (default: the record's, else the defaults).
      optimizer: optimizer config of the fits (default: the record's, else the defaults).
      embargo: steps after the record's trained end that still count as in sample.
      allow_in_sample: trade on forecasts of periods the record was fitted on anyway (flagged
        in ``in_sample``); without it a ``start`` inside the record's training span is refused
        with one sentence. Fits from a config never see their own periods.
      key: PRNG key for sampling models.

    Returns:
      One row per period: ``unique_id, ds`` (decision time), ``next_ds``, ``price``,
      ``next_price``, ``y_hat`` (median forecast of ``next_price``), ``q_<q>...``,
      ``lo_L, hi_L`` (in prices), ``forecast_return = y_hat / price - 1`` and ``in_sample``.
    """
    if transform not in PRICE_TRANSFORMS:
        raise ValueError(f"transform must be one of {sorted(PRICE_TRANSFORMS)}, got {transform!r}.")
    if refit_every is not None and (
        isinstance(refit_every, bool) or not isinstance(refit_every, int) or refit_every < 1
    ):
        raise ValueError(f"refit_every must be None or a positive integer, got {refit_every!r}.")
    config = (
        record_or_config.config if isinstance(record_or_config, ModelRecord) else record_or_config
    )
    frame = validate(df, exog=(*config.hist_exog, *config.futr_exog))
    ids = frame["unique_id"].unique(maintain_order=True).to_list()
    if len(ids) != 1:
        shown = ", ".join(repr(i) for i in ids[:5])
        raise ValueError(
            f"a backtest trades one price series; df holds {len(ids)} ({shown}): filter it to one."
        )
    times = frame["ds"].to_numpy()
    prices = frame["y"].to_numpy()
    n_rows, horizon = len(times), config.horizon
    history = _min_history(record_or_config, refit_every is not None, training)
    first = history - 1 if start is None else _position(times, start, side="left")
    if first < history - 1:
        raise ValueError(
            f"start {start} leaves {first + 1} rows up to the first decision; the model needs "
            f"{history} (input_size + horizon + val_size to fit, input_size to forecast)."
        )
    last = (
        n_rows - horizon
        if end is None
        else min(_position(times, end, side="right"), n_rows - horizon)
    )
    n_periods = last - first
    if n_periods < 1:
        raise ValueError(
            f"no period to trade between start={start} and end={end} ({n_rows} rows, horizon "
            f"{horizon}: the last period ends {horizon - 1} rows before the end of df)."
        )
    used = prices[: last + horizon]
    price_map = PRICE_TRANSFORMS[transform]
    checked = used if price_map.positive else prices[first : last + 1]
    if np.any(checked <= 0):
        raise ValueError(
            f"prices must be positive (for returns, and for the {transform!r} transform over the "
            f"whole history); series {ids[0]!r} has {int(np.sum(checked <= 0))} values <= 0."
        )
    if isinstance(record_or_config, ModelRecord) and refit_every is None:
        # The first forecast, made at decision ``first``, targets the next row on.
        provenance.check_out_of_sample(
            record_or_config,
            pack(frame),
            first + 1,
            embargo=embargo,
            allow_in_sample=allow_in_sample,
            what="backtest",
        )
    model_frame = frame.head(last + horizon).with_columns(pl.Series("y", price_map.forward(used)))
    cv = cross_validation(
        record_or_config,
        model_frame,
        n_windows=n_periods,
        step_size=1,
        refit=False if refit_every is None else refit_every,
        training=training,
        optimizer=optimizer,
        levels=levels,
        embargo=embargo,
        allow_in_sample=allow_in_sample,
        key=key,
    )
    next_step = cv.gather_every(horizon)  # rows are cutoff-major: the first step of each
    bounds = [f"{side}_{level:g}" for level in levels for side in ("lo", "hi")]
    forecast_cols = ["y_hat", *quantile_columns(config), *bounds]
    out = pl.DataFrame(
        {
            "unique_id": pl.repeat(ids[0], n_periods, eager=True, dtype=pl.String),
            "ds": frame["ds"].slice(first, n_periods),
            "next_ds": frame["ds"].slice(first + 1, n_periods),
            "price": prices[first:last],
            "next_price": prices[first + 1 : last + 1],
            **{c: price_map.inverse(next_step[c].to_numpy()) for c in forecast_cols},
            "in_sample": next_step["in_sample"],
        }
    )
    return out.with_columns(forecast_return=pl.col("y_hat") / pl.col("price") - 1)


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


__all__ = [
    "PRICE_TRANSFORMS",
    "PriceTransform",
    "STRATEGIES",
    "BacktestResult",
    "HoldStrategy",
    "ForecastReturns",
    "IntervalStrategy",
    "SignStrategy",
    "SizedStrategy",
    "StrategyConfig",
    "backtest",
    "compare_strategies",
    "make_strategy",
    "plot_equities",
    "simulate",
    "walk_forward",
]
