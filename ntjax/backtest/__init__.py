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

from ntjax.backtest.simulation import (
    BacktestResult,
    backtest,
    compare_strategies,
    plot_equities,
    simulate,
)
from ntjax.backtest.strategies import (
    STRATEGIES,
    ForecastReturns,
    HoldStrategy,
    IntervalStrategy,
    SignStrategy,
    SizedStrategy,
    StrategyConfig,
    make_strategy,
)
from ntjax.backtest.walkforward import (
    PRICE_TRANSFORMS,
    PriceTransform,
    walk_forward,
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
