"""Point and interval forecast metrics, and every forecast metric at once.

Forecast metrics pool every point they are given. Percentages are fractions: ``mape`` 0.05
means 5%; ``smape`` is ``mean(2|y - yhat| / (|y| + |yhat|))`` in [0, 2]; coverage is in [0, 1].
Scaled metrics (``mase``, ``crps``, ``msis``) are means over series of per-series ratios; their
first axis is the series axis.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from jax.typing import ArrayLike

from ntjax.metrics._arrays import _pair
from ntjax.metrics.probabilistic import (
    _crps_from,
    _msis_from,
    _pinball_sums,
    _quantile_inputs,
    _series_axis,
    _wql_from,
)


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
    rows = _metrics_along(y, y_hat, 2, mase_scale, intervals, quantile_preds, quantiles)
    return [{"step": h + 1, **row} for h, row in enumerate(rows)]


def forecast_metrics_by_cutoff(
    y: ArrayLike,
    y_hat: ArrayLike,
    *,
    mase_scale: ArrayLike,
    intervals: dict[float, tuple[ArrayLike, ArrayLike]] | None = None,
    quantile_preds: ArrayLike | None = None,
    quantiles: Sequence[float] | None = None,
) -> list[dict[str, float]]:
    """``forecast_metrics`` of each forecast origin separately: the paired per-window losses a
    Diebold-Mariano test compares (``ntjax.metrics.diebold_mariano``).

    Window ``k`` pools the points ``y[:, k, :]`` of every series and step; the arguments are
    those of ``forecast_metrics_by_horizon``.

    Returns:
      ``n_cutoffs`` dicts, one per origin in time order: ``window`` (0-based) and the entries
      of ``forecast_metrics`` for that origin.
    """
    rows = _metrics_along(y, y_hat, 1, mase_scale, intervals, quantile_preds, quantiles)
    return [{"window": k, **row} for k, row in enumerate(rows)]


def forecast_metrics_by_window(
    y: ArrayLike,
    y_hat: ArrayLike,
    *,
    mase_scale: ArrayLike,
    intervals: dict[float, tuple[ArrayLike, ArrayLike]] | None = None,
    quantile_preds: ArrayLike | None = None,
    quantiles: Sequence[float] | None = None,
) -> list[dict[str, float]]:
    """``forecast_metrics`` of every forecast window (one series, one origin) separately.

    The arguments are those of ``forecast_metrics_by_horizon``.

    Returns:
      ``n_series * n_cutoffs`` dicts, series by series and origins in time order within
      each: ``series`` and ``window`` (0-based indices) and the entries of
      ``forecast_metrics`` for that window.
    """
    y, y_hat = _pair(y, y_hat)
    scale = np.asarray(mase_scale, np.float64)
    quantile_preds = None if quantile_preds is None else np.asarray(quantile_preds)
    rows = []
    for i in range(y.shape[0]):  # each series alone is a panel of one
        one = slice(i, i + 1)
        windows = forecast_metrics_by_cutoff(
            y[one],
            y_hat[one],
            mase_scale=scale[one],
            intervals={
                level: (np.asarray(lo)[one], np.asarray(hi)[one])
                for level, (lo, hi) in (intervals or {}).items()
            },
            quantile_preds=None if quantile_preds is None else quantile_preds[one],
            quantiles=quantiles,
        )
        rows.extend({"series": i, **row} for row in windows)
    return rows


def _metrics_along(y, y_hat, axis, mase_scale, intervals, quantile_preds, quantiles) -> list:
    """``forecast_metrics`` of every slice of ``[n_series, n_cutoffs, horizon]`` arrays along
    ``axis`` (1: origins, 2: steps)."""
    y, y_hat = _pair(y, y_hat)
    if y.ndim != 3:
        raise ValueError(f"y must be [n_series, n_cutoffs, horizon], got shape {y.shape}.")
    bounds = {
        level: (np.asarray(lo), np.asarray(hi)) for level, (lo, hi) in (intervals or {}).items()
    }
    if quantile_preds is not None:
        quantile_preds = np.asarray(quantile_preds)

    def part(array: np.ndarray, k: int) -> np.ndarray:
        return np.take(array, k, axis=axis)

    return [
        forecast_metrics(
            part(y, k),
            part(y_hat, k),
            mase_scale=mase_scale,
            intervals={level: (part(lo, k), part(hi, k)) for level, (lo, hi) in bounds.items()},
            quantile_preds=None if quantile_preds is None else part(quantile_preds, k),
            quantiles=quantiles,
        )
        for k in range(y.shape[axis])
    ]
