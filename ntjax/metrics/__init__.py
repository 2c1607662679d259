"""Forecast metrics and trading metrics: pure functions on arrays (numpy or jax).

Forecast metrics pool every point they are given. Percentages are fractions: ``mape`` 0.05
means 5%; ``smape`` is ``mean(2|y - yhat| / (|y| + |yhat|))`` in [0, 2]; coverage is in [0, 1].
Scaled metrics (``mase``, ``crps``, ``msis``) are means over series of per-series ratios; their
first axis is the series axis.

Probabilistic scores take quantile forecasts ``[..., n_quantiles]`` at levels ``quantiles`` and
are built on the pinball loss ``rho_q(y, yhat) = (y - yhat)(q - 1{y < yhat})``, which is >= 0 and
equals GluonTS's ``|(yhat - y)(1{y <= yhat} - q)|``.
"""

from ntjax.metrics.comparison import diebold_mariano, page_hinkley
from ntjax.metrics.forecast import (
    coverage,
    forecast_metrics,
    forecast_metrics_by_cutoff,
    forecast_metrics_by_horizon,
    forecast_metrics_by_window,
    interval_width,
    mae,
    mape,
    mase,
    mse,
    naive_scale,
    r2,
    rmse,
    smape,
)
from ntjax.metrics.probabilistic import (
    crps,
    msis,
    quantile_calibration,
    wql,
)
from ntjax.metrics.trading import (
    alpha_beta,
    cagr,
    calmar_ratio,
    directional_accuracy,
    drawdowns,
    equity_curve,
    exposure,
    information_ratio,
    max_drawdown,
    profit_factor,
    sharpe_ratio,
    sortino_ratio,
    total_return,
    trade_returns,
    trade_runs,
    trading_metrics,
    turnover,
    volatility,
    win_rate,
)

__all__ = [
    "diebold_mariano",
    "page_hinkley",
    "mae",
    "mse",
    "rmse",
    "mape",
    "smape",
    "r2",
    "naive_scale",
    "mase",
    "coverage",
    "interval_width",
    "wql",
    "crps",
    "msis",
    "quantile_calibration",
    "forecast_metrics",
    "forecast_metrics_by_cutoff",
    "forecast_metrics_by_horizon",
    "forecast_metrics_by_window",
    "equity_curve",
    "total_return",
    "cagr",
    "volatility",
    "sharpe_ratio",
    "sortino_ratio",
    "drawdowns",
    "max_drawdown",
    "calmar_ratio",
    "trade_runs",
    "trade_returns",
    "win_rate",
    "profit_factor",
    "turnover",
    "exposure",
    "directional_accuracy",
    "alpha_beta",
    "information_ratio",
    "trading_metrics",
]
