"""Forecast metrics and trading metrics: pure functions on arrays (numpy or jax).

Forecast metrics pool every point they are given. Percentages are fractions: ``mape`` 0.05
means 5%; ``smape`` is ``mean(2|y - yhat| / (|y| + |yhat|))`` in [0, 2]; coverage is in [0, 1].
Scaled metrics (``mase``, ``crps``, ``msis``) are means over series of per-series ratios; their
first axis is the series axis.

Probabilistic scores take quantile forecasts ``[..., n_quantiles]`` at levels ``quantiles`` and
are built on the pinball loss ``rho_q(y, yhat) = (y - yhat)(q - 1{y < yhat})``, which is >= 0 and
equals GluonTS's ``|(yhat - y)(1{y <= yhat} - q)|``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from jax.typing import ArrayLike


def _pair(y: ArrayLike, y_hat: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    y, y_hat = np.asarray(y, np.float64), np.asarray(y_hat, np.float64)
    if y.shape != y_hat.shape:
        raise ValueError(f"y has shape {y.shape} but y_hat has shape {y_hat.shape}.")
    return y, y_hat


def mae(y: ArrayLike, y_hat: ArrayLike) -> float:
    """Mean absolute error."""
    y, y_hat = _pair(y, y_hat)
    return float(np.mean(np.abs(y - y_hat)))


def mse(y: ArrayLike, y_hat: ArrayLike) -> float:
    """Mean squared error."""
    y, y_hat = _pair(y, y_hat)
    return float(np.mean((y - y_hat) ** 2))


def rmse(y: ArrayLike, y_hat: ArrayLike) -> float:
    """Root mean squared error."""
    return float(np.sqrt(mse(y, y_hat)))


def mape(y: ArrayLike, y_hat: ArrayLike) -> float:
    """Mean absolute percentage error, as a fraction, over points where ``y != 0``."""
    y, y_hat = _pair(y, y_hat)
    nonzero = y != 0
    if not nonzero.any():
        return float("nan")
    return float(np.mean(np.abs(y - y_hat)[nonzero] / np.abs(y[nonzero])))


def smape(y: ArrayLike, y_hat: ArrayLike) -> float:
    """Symmetric MAPE ``mean(2|y - yhat| / (|y| + |yhat|))`` in [0, 2]; 0/0 points count 0."""
    y, y_hat = _pair(y, y_hat)
    denominator = np.abs(y) + np.abs(y_hat)
    ratio = np.divide(
        2 * np.abs(y - y_hat), denominator, out=np.zeros_like(y), where=denominator > 0
    )
    return float(np.mean(ratio))


def r2(y: ArrayLike, y_hat: ArrayLike) -> float:
    """Coefficient of determination ``1 - SSE / SST`` (SST around the mean of ``y``)."""
    y, y_hat = _pair(y, y_hat)
    total = np.sum((y - y.mean()) ** 2)
    if total == 0:
        return float("nan")
    return float(1.0 - np.sum((y - y_hat) ** 2) / total)


def naive_scale(history: ArrayLike, *, season_length: int = 1) -> float:
    """In-sample MAE of the seasonal-naive forecast ``y[t - m]``: the MASE denominator."""
    history = np.asarray(history, np.float64)
    if history.size <= season_length:
        return float("nan")
    return float(np.mean(np.abs(history[season_length:] - history[:-season_length])))


def mase(y: ArrayLike, y_hat: ArrayLike, *, scale: ArrayLike) -> float:
    """Mean absolute scaled error.

    Args:
      y: ``[n_series, ...]`` actual values.
      y_hat: ``[n_series, ...]`` predicted values.
      scale: ``[n_series]`` in-sample naive MAE of each series (``naive_scale``).

    Returns:
      The mean over series of ``MAE_s / scale_s``.
    """
    y, y_hat = _pair(y, y_hat)
    scale = np.asarray(scale, np.float64)
    per_series = np.abs(y - y_hat).reshape(len(scale), -1).mean(axis=1)
    return float(np.mean(per_series / np.where(scale > 0, scale, np.nan)))


def coverage(y: ArrayLike, lower: ArrayLike, upper: ArrayLike) -> float:
    """Share of points with ``lower <= y <= upper``."""
    y, lower = _pair(y, lower)
    upper = np.asarray(upper, np.float64)
    return float(np.mean((y >= lower) & (y <= upper)))


def interval_width(lower: ArrayLike, upper: ArrayLike) -> float:
    """Mean width ``upper - lower``."""
    lower, upper = _pair(lower, upper)
    return float(np.mean(upper - lower))


# --- Probabilistic forecast scores ---------------------------------------------------------------


def _quantile_inputs(
    y: ArrayLike, quantile_preds: ArrayLike, quantiles: Sequence[float]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    y = np.asarray(y, np.float64)
    # A float32 [..., n_quantiles] array is not copied whole to float64: each quantile is
    # promoted against the float64 y one at a time.
    quantile_preds = np.asarray(quantile_preds)
    if not np.issubdtype(quantile_preds.dtype, np.floating):
        quantile_preds = quantile_preds.astype(np.float64)
    levels = np.asarray(quantiles, np.float64)
    if levels.ndim != 1 or levels.size == 0 or not np.all((levels > 0) & (levels < 1)):
        raise ValueError(f"quantiles must be a non-empty sequence in (0, 1), got {quantiles}.")
    if quantile_preds.shape != (*y.shape, levels.size):
        raise ValueError(
            f"quantile_preds has shape {quantile_preds.shape} but y {y.shape} and "
            f"{levels.size} quantiles need {(*y.shape, levels.size)}."
        )
    return y, quantile_preds, levels


def _series_axis(y: np.ndarray, scale: np.ndarray | None = None) -> int:
    if y.ndim == 0:
        raise ValueError("y needs a leading series axis [n_series, ...], got a scalar.")
    if scale is not None and scale.shape != (y.shape[0],):
        raise ValueError(f"scale has shape {scale.shape} but y has {y.shape[0]} series.")
    return y.shape[0]


def _pinball_sums(
    y: np.ndarray, quantile_preds: np.ndarray, levels: np.ndarray, n_series: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per-series pinball sums ``[n_series, n_quantiles]`` and shares of ``y <= yhat_q``
    ``[n_quantiles]``, one quantile at a time (no ``[..., n_quantiles]`` temporary)."""
    y = y.reshape(n_series, -1)
    quantile_preds = quantile_preds.reshape(n_series, -1, levels.size)
    sums = np.empty((n_series, levels.size))
    below = np.empty(levels.size)
    for i, q in enumerate(levels):
        error = y - quantile_preds[..., i]
        sums[:, i] = (error * (q - (error < 0))).sum(axis=1)
        # With gradual underflow, y - yhat <= 0 exactly when y <= yhat.
        below[i] = np.count_nonzero(error <= 0) / error.size
    return sums, below


def _wql_from(pinball_sums: np.ndarray, abs_y_total: float) -> float:
    if abs_y_total == 0:
        return float("nan")
    return float(np.mean(2 * pinball_sums.sum(axis=0) / abs_y_total))


def _crps_from(pinball_sums: np.ndarray, abs_y_per_series: np.ndarray) -> float:
    scored = abs_y_per_series > 0
    if not scored.any():
        return float("nan")
    per_series = 2 * pinball_sums[scored].mean(axis=1) / abs_y_per_series[scored]
    return float(np.mean(per_series))


def _msis_from(
    y: np.ndarray, lower: np.ndarray, upper: np.ndarray, scale: np.ndarray, alpha: float
) -> float:
    penalty = 2 / alpha
    score = (upper - lower) + penalty * (np.maximum(lower - y, 0.0) + np.maximum(y - upper, 0.0))
    per_series = score.reshape(len(scale), -1).mean(axis=1)
    return float(np.mean(per_series / np.where(scale > 0, scale, np.nan)))


def wql(y: ArrayLike, quantile_preds: ArrayLike, *, quantiles: Sequence[float]) -> float:
    """Mean weighted quantile loss (GluonTS ``mean_wQuantileLoss``), pooling every point.

    ``wQL_q = 2 * sum(rho_q(y, yhat_q)) / sum(|y|)`` over all series and steps, then the mean of
    ``wQL_q`` over the quantiles.

    Args:
      y: ``[...]`` actual values.
      quantile_preds: ``[..., n_quantiles]`` predicted quantiles.
      quantiles: ``[n_quantiles]`` levels in (0, 1).

    Returns:
      The mean wQL; NaN when ``sum(|y|) == 0``.
    """
    y, quantile_preds, levels = _quantile_inputs(y, quantile_preds, quantiles)
    sums, _ = _pinball_sums(y, quantile_preds, levels, n_series=1)
    return _wql_from(sums, float(np.abs(y).sum()))


def crps(y: ArrayLike, quantile_preds: ArrayLike, *, quantiles: Sequence[float]) -> float:
    """Scaled CRPS from quantiles, per series as utilsforecast's ``scaled_crps``.

    For series ``s``: ``sCRPS_s = 2 * sum_t mean_q rho_q(y_t, yhat_q,t) / sum_t |y_t|``, ``t``
    running over every point of the series (all its cutoffs and steps); the result is the mean of
    ``sCRPS_s`` over series. The mean over the quantile levels approximates the integral of the
    quantile loss over ``q`` in (0, 1), i.e. CRPS / 2 (hence the 2). Series with
    ``sum_t |y_t| == 0`` are left out of the mean (utilsforecast divides by ``eps`` instead); NaN
    when every series is. With a single series this equals ``wql``.

    Args:
      y: ``[n_series, ...]`` actual values.
      quantile_preds: ``[n_series, ..., n_quantiles]`` predicted quantiles.
      quantiles: ``[n_quantiles]`` levels in (0, 1).

    Returns:
      The mean over series of ``sCRPS_s``.
    """
    y, quantile_preds, levels = _quantile_inputs(y, quantile_preds, quantiles)
    n_series = _series_axis(y)
    sums, _ = _pinball_sums(y, quantile_preds, levels, n_series)
    return _crps_from(sums, np.abs(y).reshape(n_series, -1).sum(axis=1))


def msis(
    y: ArrayLike,
    lower: ArrayLike,
    upper: ArrayLike,
    *,
    scale: ArrayLike,
    alpha: float = 0.05,
) -> float:
    """Mean scaled interval score (M4) of the central ``1 - alpha`` interval.

    Per point ``IS = (U - L) + (2 / alpha)(L - y) 1{y < L} + (2 / alpha)(y - U) 1{y > U}``; per
    series ``MSIS_s = mean_t IS_t / scale_s``; the result is the mean over series. As in ``mase``,
    a series with ``scale_s <= 0`` (or NaN) is NaN, and so is then the mean.

    Args:
      y: ``[n_series, ...]`` actual values.
      lower: ``[n_series, ...]`` lower interval bounds (the ``alpha / 2`` quantiles).
      upper: ``[n_series, ...]`` upper interval bounds (the ``1 - alpha / 2`` quantiles).
      scale: ``[n_series]`` in-sample seasonal-naive MAE of each series (``naive_scale``).
      alpha: miss rate of the interval, in (0, 1) (0.05 for a 95% interval).

    Returns:
      The mean over series of ``MSIS_s``.
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}.")
    y, lower = _pair(y, lower)
    _, upper = _pair(y, upper)
    scale = np.asarray(scale, np.float64)
    _series_axis(y, scale)
    return _msis_from(y, lower, upper, scale, alpha)


def quantile_calibration(
    y: ArrayLike, quantile_preds: ArrayLike, *, quantiles: Sequence[float]
) -> dict[float, float]:
    """Observed frequency of ``y <= yhat_q`` per quantile level (a calibrated model gives ~q).

    Args:
      y: ``[...]`` actual values.
      quantile_preds: ``[..., n_quantiles]`` predicted quantiles.
      quantiles: ``[n_quantiles]`` levels in (0, 1).

    Returns:
      Level ``q`` -> share of points with ``y <= yhat_q``, in [0, 1].
    """
    y, quantile_preds, levels = _quantile_inputs(y, quantile_preds, quantiles)
    return {float(q): float(np.mean(y <= quantile_preds[..., i])) for i, q in enumerate(levels)}


def _level_index(levels: np.ndarray, level: float) -> int | None:
    # Tolerant match: 0.025 may arrive as (1 - 0.95) / 2.
    matches = np.flatnonzero(np.abs(levels - level) < 1e-9)
    return int(matches[0]) if matches.size else None


def forecast_metrics(
    y: ArrayLike,
    y_hat: ArrayLike,
    *,
    mase_scale: ArrayLike,
    intervals: dict[float, tuple[ArrayLike, ArrayLike]] | None = None,
    quantile_preds: ArrayLike | None = None,
    quantiles: Sequence[float] | None = None,
) -> dict[str, float]:
    """Every forecast metric at once.

    Args:
      y: ``[n_series, ...]`` actual values.
      y_hat: ``[n_series, ...]`` point forecasts.
      mase_scale: ``[n_series]`` naive in-sample MAE per series.
      intervals: level -> (lower, upper), each shaped like ``y``.
      quantile_preds: ``[n_series, ..., n_quantiles]`` predicted quantiles (with ``quantiles``).
      quantiles: ``[n_quantiles]`` levels of ``quantile_preds``, in (0, 1).

    Returns:
      ``mae, rmse, mse, mape, smape, r2, mase, coverage_L, width_L``; with quantiles also
      ``wql, crps, msis`` (``msis`` only when 0.025 and 0.975 are among the quantiles: the 95%
      interval, scaled by ``mase_scale``) and ``calibration_q`` per level (``calibration_0.1``);
      then ``n_points``.
    """
    if (quantile_preds is None) != (quantiles is None):
        raise ValueError("quantile_preds and quantiles must be given together.")
    # The functions above, fused: the error is computed once (long-horizon test sets hold
    # tens of millions of points).
    y, y_hat = _pair(y, y_hat)
    abs_error = np.abs(y - y_hat)
    mse_value = float(np.vdot(abs_error, abs_error)) / abs_error.size
    abs_y = np.abs(y)
    nonzero = abs_y > 0
    denominator = abs_y + np.abs(y_hat)
    ratio = np.divide(2 * abs_error, denominator, out=np.zeros_like(y), where=denominator > 0)
    centred = y - y.mean()
    total = float(np.vdot(centred, centred))
    scale = np.asarray(mase_scale, np.float64)
    per_series = abs_error.reshape(len(scale), -1).mean(axis=1)
    result = {
        "mae": float(abs_error.mean()),
        "rmse": float(np.sqrt(mse_value)),
        "mse": mse_value,
        "mape": float(np.mean(abs_error[nonzero] / abs_y[nonzero])) if nonzero.any() else np.nan,
        "smape": float(np.mean(ratio)),
        "r2": 1.0 - mse_value * abs_error.size / total if total else np.nan,
        "mase": float(np.mean(per_series / np.where(scale > 0, scale, np.nan))),
    }
    for level, (lower, upper) in (intervals or {}).items():
        result[f"coverage_{level:g}"] = coverage(y, lower, upper)
        result[f"width_{level:g}"] = interval_width(lower, upper)
    if quantile_preds is not None:
        result |= _quantile_metrics(y, abs_y, quantile_preds, quantiles, scale)
    result["n_points"] = int(np.size(y))
    return result


def _quantile_metrics(
    y: np.ndarray,
    abs_y: np.ndarray,
    quantile_preds: ArrayLike,
    quantiles: Sequence[float],
    scale: np.ndarray,
) -> dict[str, float]:
    """``forecast_metrics``' probabilistic entries, sharing one pass of pinball sums."""
    y, quantile_preds, levels = _quantile_inputs(y, quantile_preds, quantiles)
    n_series = _series_axis(y)
    sums, below = _pinball_sums(y, quantile_preds, levels, n_series)
    abs_y_per_series = abs_y.reshape(n_series, -1).sum(axis=1)
    result = {
        "wql": _wql_from(sums, float(abs_y_per_series.sum())),
        "crps": _crps_from(sums, abs_y_per_series),
    }
    lower, upper = _level_index(levels, 0.025), _level_index(levels, 0.975)
    if lower is not None and upper is not None:
        _series_axis(y, scale)
        bounds = [np.asarray(quantile_preds[..., i], np.float64) for i in (lower, upper)]
        result["msis"] = _msis_from(y, *bounds, scale, alpha=0.05)
    for q, share in zip(levels, below, strict=True):
        result[f"calibration_{q:g}"] = float(share)
    return result


def forecast_metrics_by_horizon(
    y: ArrayLike,
    y_hat: ArrayLike,
    *,
    mase_scale: ArrayLike,
    intervals: dict[float, tuple[ArrayLike, ArrayLike]] | None = None,
    quantile_preds: ArrayLike | None = None,
    quantiles: Sequence[float] | None = None,
) -> list[dict[str, float]]:
    """``forecast_metrics`` of each forecast step separately (how accuracy decays with lead).

    Step ``h`` pools the points ``y[:, :, h]`` of every series and cutoff; ``mase`` and ``msis``
    divide by the same per-series ``mase_scale`` at every step.

    Args:
      y: ``[n_series, n_cutoffs, horizon]`` actual values.
      y_hat: ``[n_series, n_cutoffs, horizon]`` point forecasts.
      mase_scale: ``[n_series]`` naive in-sample MAE per series.
      intervals: level -> (lower, upper), each ``[n_series, n_cutoffs, horizon]``.
      quantile_preds: ``[n_series, n_cutoffs, horizon, n_quantiles]`` (with ``quantiles``).
      quantiles: ``[n_quantiles]`` levels of ``quantile_preds``, in (0, 1).

    Returns:
      ``horizon`` dicts, one per step: ``step`` (1-based) and the entries of
      ``forecast_metrics`` for that step.
    """
    y, y_hat = _pair(y, y_hat)
    if y.ndim != 3:
        raise ValueError(f"y must be [n_series, n_cutoffs, horizon], got shape {y.shape}.")
    bounds = {
        level: (np.asarray(lo), np.asarray(hi)) for level, (lo, hi) in (intervals or {}).items()
    }
    if quantile_preds is not None:
        quantile_preds = np.asarray(quantile_preds)
    rows = []
    for h in range(y.shape[2]):
        step = forecast_metrics(
            y[:, :, h],
            y_hat[:, :, h],
            mase_scale=mase_scale,
            intervals={level: (lo[:, :, h], hi[:, :, h]) for level, (lo, hi) in bounds.items()},
            quantile_preds=None if quantile_preds is None else quantile_preds[:, :, h],
            quantiles=quantiles,
        )
        rows.append({"step": h + 1, **step})
    return rows


# --- Trading metrics ---------------------------------------------------------------------------
#
# Definitions (DESIGN.md, "Backtest"), for per-period simple returns ``r`` (n periods, ``P`` per
# year) and equity ``E_t = prod_{s<=t} (1 + r_s)`` with ``E_0 = 1``. A ratio whose denominator is
# exactly zero (constant returns, no losing period, no drawdown) is 0.0 when its numerator is 0
# too and +-inf otherwise; a statistic that needs more data than it has (a standard deviation of
# one period, a win rate without closed trades) is NaN.


def _series(values: ArrayLike, what: str = "returns") -> np.ndarray:
    x = np.asarray(values, np.float64)
    if x.ndim != 1:
        raise ValueError(f"{what} must be one-dimensional [n_periods], got shape {x.shape}.")
    return x


def _ratio(numerator: float, denominator: float) -> float:
    """``numerator / denominator`` with the zero-denominator rule above."""
    if np.isnan(numerator) or np.isnan(denominator):
        return float("nan")
    if denominator != 0:
        return float(numerator / denominator)
    if numerator == 0:
        return 0.0
    return float(np.copysign(np.inf, numerator))


def _std(x: np.ndarray) -> float:
    """Sample standard deviation (ddof=1); exactly 0.0 for constant values, NaN below 2."""
    if x.size < 2:
        return float("nan")
    if np.all(x == x[0]):
        return 0.0
    return float(np.std(x, ddof=1))


def equity_curve(returns: ArrayLike) -> np.ndarray:
    """``[n + 1]`` equity ``E_0 = 1, E_t = prod_{s<=t} (1 + r_s)`` of ``[n]`` returns."""
    r = _series(returns)
    return np.concatenate([[1.0], np.cumprod(1.0 + r)])


def total_return(returns: ArrayLike) -> float:
    """``E_n - 1``."""
    return float(equity_curve(returns)[-1] - 1.0)


def cagr(returns: ArrayLike, *, periods_per_year: float = 252) -> float:
    """Compound annual growth rate ``E_n ** (P / n) - 1``; -1 when equity is wiped out
    (``E_n <= 0``), NaN without periods."""
    r = _series(returns)
    if r.size == 0:
        return float("nan")
    final = equity_curve(r)[-1]
    if final <= 0:
        return -1.0
    with np.errstate(over="ignore"):
        return float(np.float64(final) ** (periods_per_year / r.size) - 1.0)


def volatility(returns: ArrayLike, *, periods_per_year: float = 252) -> float:
    """Annualised volatility ``std(r, ddof=1) * sqrt(P)``."""
    return _std(_series(returns)) * float(np.sqrt(periods_per_year))


def sharpe_ratio(
    returns: ArrayLike, *, periods_per_year: float = 252, risk_free: float = 0.0
) -> float:
    """Annualised Sharpe ratio ``mean(r - rf/P) / std(r - rf/P, ddof=1) * sqrt(P)``.

    Args:
      returns: ``[n_periods]`` simple returns.
      periods_per_year: ``P``, e.g. 252 for daily bars.
      risk_free: annual risk-free rate ``rf`` (a fraction).
    """
    excess = _series(returns) - risk_free / periods_per_year
    if excess.size < 2:
        return float("nan")
    return _ratio(float(np.mean(excess)), _std(excess)) * float(np.sqrt(periods_per_year))


def sortino_ratio(returns: ArrayLike, *, periods_per_year: float = 252) -> float:
    """Annualised Sortino ratio ``mean(r) / sqrt(mean(min(r, 0) ** 2)) * sqrt(P)``."""
    r = _series(returns)
    if r.size == 0:
        return float("nan")
    downside = float(np.sqrt(np.mean(np.minimum(r, 0.0) ** 2)))
    return _ratio(float(np.mean(r)), downside) * float(np.sqrt(periods_per_year))


def drawdowns(returns: ArrayLike) -> np.ndarray:
    """``[n + 1]`` drawdown ``E_t / max_{s<=t} E_s - 1`` (fractions <= 0), ``t = 0..n``."""
    equity = equity_curve(returns)
    return equity / np.maximum.accumulate(equity) - 1.0


def max_drawdown(returns: ArrayLike) -> float:
    """Maximum drawdown ``min_t (E_t / max_{s<=t} E_s - 1)`` over ``t = 0..n``: a fraction <= 0
    (0.0 for no periods or an equity that never falls)."""
    return float(np.min(drawdowns(returns)))


def calmar_ratio(returns: ArrayLike, *, periods_per_year: float = 252) -> float:
    """``cagr / abs(max_drawdown)``."""
    return _ratio(cagr(returns, periods_per_year=periods_per_year), abs(max_drawdown(returns)))


def trade_runs(positions: ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The trades of a position path: maximal runs of periods holding a position of one sign.

    Args:
      positions: ``[n_periods]`` position held over each period (0 is flat; a change of size
        without a change of sign stays within the trade).

    Returns:
      ``(start, stop, side)``, each ``[n_trades]``: the run is periods ``start:stop``; ``side``
      is +1 (long) or -1 (short). A run with ``stop == n_periods`` is still open at the end.
    """
    side = np.sign(_series(positions, "positions"))
    if side.size == 0:
        empty = np.zeros(0, np.int64)
        return empty, empty, empty
    edges = np.flatnonzero(side[1:] != side[:-1]) + 1
    start = np.concatenate([[0], edges])
    stop = np.concatenate([edges, [side.size]])
    held = side[start] != 0
    return start[held], stop[held], side[start][held].astype(np.int64)


def trade_returns(
    positions: ArrayLike, returns: ArrayLike, *, include_open: bool = False
) -> np.ndarray:
    """Compounded strategy return of each trade, ``prod(1 + r[start:stop]) - 1``.

    Costs are in ``returns`` where they were paid: entering or resizing a trade in its own
    periods, the exit in the period the position is closed (the next trade's or a flat one).

    Args:
      positions: ``[n_periods]`` position held over each period.
      returns: ``[n_periods]`` strategy returns of those periods.
      include_open: also return the trade still open at the end (marked to market).

    Returns:
      ``[n_trades]`` trade returns, closed trades only unless ``include_open``.
    """
    r = _series(returns)
    if np.shape(positions) != r.shape:
        raise ValueError(f"positions {np.shape(positions)} and returns {r.shape} differ in shape.")
    start, stop, _ = trade_runs(positions)
    if not include_open:
        closed = stop < r.size
        start, stop = start[closed], stop[closed]
    return np.array([np.prod(1.0 + r[a:b]) - 1.0 for a, b in zip(start, stop, strict=True)])


def win_rate(trade_returns: ArrayLike) -> float:
    """Share of trades with a positive return (NaN without trades)."""
    t = _series(trade_returns, "trade returns")
    if t.size == 0:
        return float("nan")
    return float(np.mean(t > 0))


def profit_factor(trade_returns: ArrayLike) -> float:
    """Sum of winning trade returns over the absolute sum of losing ones: inf with wins and no
    losses, 0.0 with losses and no wins, NaN without trades or with only zero-return trades."""
    t = _series(trade_returns, "trade returns")
    wins, losses = float(np.sum(t[t > 0])), float(-np.sum(t[t < 0]))
    if wins == 0 and losses == 0:
        return float("nan")
    return _ratio(wins, losses)


def turnover(positions: ArrayLike, *, periods_per_year: float = 252) -> float:
    """Annualised turnover ``mean(|p_t - p_{t-1}|) * P`` with ``p_{-1} = 0``: equity traded per
    year, in multiples of equity (a daily long/short flip of one unit is ``2 * P``)."""
    p = _series(positions, "positions")
    if p.size == 0:
        return float("nan")
    return float(np.mean(np.abs(np.diff(p, prepend=0.0))) * periods_per_year)


def exposure(positions: ArrayLike) -> float:
    """Share of periods holding a non-zero position."""
    p = _series(positions, "positions")
    if p.size == 0:
        return float("nan")
    return float(np.mean(p != 0))


def directional_accuracy(forecast_returns: ArrayLike, realized_returns: ArrayLike) -> float:
    """Share of periods where the forecast return has the sign of the realised one, over the
    periods whose realised return is not zero (a zero forecast counts as wrong)."""
    f, a = _pair(forecast_returns, realized_returns)
    moved = a != 0
    if not moved.any():
        return float("nan")
    return float(np.mean(np.sign(f[moved]) == np.sign(a[moved])))


def alpha_beta(
    returns: ArrayLike,
    benchmark_returns: ArrayLike,
    *,
    periods_per_year: float = 252,
    risk_free: float = 0.0,
) -> tuple[float, float]:
    """CAPM regression of excess returns on the benchmark's excess returns.

    ``beta = cov(r - rf/P, b - rf/P) / var(b - rf/P)`` and the annualised intercept
    ``alpha = (mean(r - rf/P) - beta * mean(b - rf/P)) * P``; NaN for fewer than two periods or
    a constant benchmark.
    """
    r, b = _pair(returns, benchmark_returns)
    r, b = r - risk_free / periods_per_year, b - risk_free / periods_per_year
    if r.size < 2 or _std(b) == 0:
        return float("nan"), float("nan")
    beta = float(np.cov(r, b, ddof=1)[0, 1] / np.var(b, ddof=1))
    alpha = float((np.mean(r) - beta * np.mean(b)) * periods_per_year)
    return alpha, beta


def information_ratio(
    returns: ArrayLike, benchmark_returns: ArrayLike, *, periods_per_year: float = 252
) -> float:
    """``mean(r - b) / std(r - b, ddof=1) * sqrt(P)``: the Sharpe ratio of the active return."""
    r, b = _pair(returns, benchmark_returns)
    return sharpe_ratio(r - b, periods_per_year=periods_per_year)


def trading_metrics(
    returns: ArrayLike,
    positions: ArrayLike,
    *,
    asset_returns: ArrayLike | None = None,
    forecast_returns: ArrayLike | None = None,
    periods_per_year: float = 252,
    risk_free: float = 0.0,
) -> dict[str, float]:
    """Every trading metric of a backtest at once.

    Args:
      returns: ``[n_periods]`` strategy returns (after costs).
      positions: ``[n_periods]`` position held over each period.
      asset_returns: ``[n_periods]`` returns of the traded asset, i.e. of buy-and-hold: adds
        ``benchmark_*``, ``alpha``, ``beta``, ``information_ratio``.
      forecast_returns: ``[n_periods]`` forecast returns: adds ``directional_accuracy``
        (against ``asset_returns``).
      periods_per_year: ``P``.
      risk_free: annual risk-free rate (Sharpe, alpha and beta).

    Returns:
      ``total_return, cagr, volatility, sharpe, sortino, max_drawdown, calmar, win_rate,
      profit_factor, n_trades`` (open one included), ``n_closed_trades, turnover, exposure,
      n_periods`` and the benchmark entries above.
    """
    r = _series(returns)
    yearly = {"periods_per_year": periods_per_year}
    closed = trade_returns(positions, r)
    result = {
        "total_return": total_return(r),
        "cagr": cagr(r, **yearly),
        "volatility": volatility(r, **yearly),
        "sharpe": sharpe_ratio(r, risk_free=risk_free, **yearly),
        "sortino": sortino_ratio(r, **yearly),
        "max_drawdown": max_drawdown(r),
        "calmar": calmar_ratio(r, **yearly),
        "win_rate": win_rate(closed),
        "profit_factor": profit_factor(closed),
        "n_trades": int(trade_runs(positions)[0].size),
        "n_closed_trades": int(closed.size),
        "turnover": turnover(positions, **yearly),
        "exposure": exposure(positions),
        "n_periods": int(r.size),
    }
    if asset_returns is not None:
        b = _series(asset_returns)
        alpha, beta = alpha_beta(r, b, risk_free=risk_free, **yearly)
        result |= {
            "benchmark_total_return": total_return(b),
            "benchmark_cagr": cagr(b, **yearly),
            "benchmark_sharpe": sharpe_ratio(b, risk_free=risk_free, **yearly),
            "benchmark_max_drawdown": max_drawdown(b),
            "alpha": alpha,
            "beta": beta,
            "information_ratio": information_ratio(r, b, **yearly),
        }
        if forecast_returns is not None:
            result["directional_accuracy"] = directional_accuracy(forecast_returns, b)
    elif forecast_returns is not None:
        raise ValueError("directional_accuracy needs asset_returns (the realised returns).")
    return result
