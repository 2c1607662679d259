"""Probabilistic forecast scores of quantile forecasts: ``wql``, ``crps``, ``msis``,
``quantile_calibration``.

Probabilistic scores take quantile forecasts ``[..., n_quantiles]`` at levels ``quantiles`` and
are built on the pinball loss ``rho_q(y, yhat) = (y - yhat)(q - 1{y < yhat})``, which is >= 0 and
equals GluonTS's ``|(yhat - y)(1{y <= yhat} - q)|``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from jax.typing import ArrayLike

from ntjax.metrics._arrays import _pair


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
