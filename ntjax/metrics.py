"""Forecast metrics and trading metrics: pure functions on arrays (numpy or jax).

Forecast metrics pool every point they are given. Percentages are fractions: ``mape`` 0.05
means 5%; ``smape`` is ``mean(2|y - yhat| / (|y| + |yhat|))`` in [0, 2]; coverage is in [0, 1].
"""

from __future__ import annotations

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
      y, y_hat: ``[n_series, ...]`` actual and predicted values.
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


def forecast_metrics(
    y: ArrayLike,
    y_hat: ArrayLike,
    *,
    mase_scale: ArrayLike,
    intervals: dict[float, tuple[ArrayLike, ArrayLike]] | None = None,
) -> dict[str, float]:
    """Every forecast metric at once.

    Args:
      y, y_hat: ``[n_series, ...]``.
      mase_scale: ``[n_series]`` naive in-sample MAE per series.
      intervals: level -> (lower, upper), each shaped like ``y``.

    Returns:
      ``mae, rmse, mse, mape, smape, r2, mase, coverage_L, width_L, n_points``.
    """
    result = {
        "mae": mae(y, y_hat),
        "rmse": rmse(y, y_hat),
        "mse": mse(y, y_hat),
        "mape": mape(y, y_hat),
        "smape": smape(y, y_hat),
        "r2": r2(y, y_hat),
        "mase": mase(y, y_hat, scale=mase_scale),
    }
    for level, (lower, upper) in (intervals or {}).items():
        result[f"coverage_{level:g}"] = coverage(y, lower, upper)
        result[f"width_{level:g}"] = interval_width(lower, upper)
    result["n_points"] = int(np.size(y))
    return result
