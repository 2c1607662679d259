"""Comparing forecasts over time: the Diebold-Mariano test with the Harvey-Leybourne-Newbold
small-sample correction, and the Page-Hinkley test for an upward shift in a stream of errors.

References: Diebold & Mariano (1995), "Comparing predictive accuracy", JBES 13(3); Harvey,
Leybourne & Newbold (1997), "Testing the equality of prediction mean squared errors", IJF
13(2); Page (1954), "Continuous inspection schemes", Biometrika 41.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np
from jax.scipy.special import betainc
from numpy.typing import ArrayLike


class DMResult(NamedTuple):
    """A Diebold-Mariano comparison of loss series ``a`` (the incumbent) and ``b``.

    Attributes:
      statistic: the HLN-corrected statistic; positive when ``b`` has the lower mean loss.
      p_value: one-sided p-value of ``b`` being more accurate (Student t, ``n - 1`` df).
      mean_difference: mean of ``loss_a - loss_b``.
      n: number of paired losses.
    """

    statistic: float
    p_value: float
    mean_difference: float
    n: int


def student_t_sf(t: float, df: int) -> float:
    """``P(T > t)`` for Student's t with ``df`` degrees of freedom."""
    if not math.isfinite(t):
        return 0.0 if t > 0 else 1.0
    x = df / (df + t * t)
    tail = 0.5 * float(betainc(jnp.float32(df / 2), jnp.float32(0.5), jnp.float32(x)))
    return tail if t > 0 else 1.0 - tail


def diebold_mariano(loss_a: ArrayLike, loss_b: ArrayLike, *, horizon: int = 1) -> DMResult:
    """Tests whether forecasts ``b`` are more accurate than ``a`` from their losses.

    Args:
      loss_a: ``[n]`` losses of the incumbent forecast at ``n`` origins, in time order (e.g.
        absolute or squared errors, or their means over series and steps).
      loss_b: ``[n]`` losses of the other forecast at the same origins.
      horizon: forecast horizon ``h``: the loss differential of ``h``-step forecasts is
        autocorrelated up to lag ``h - 1``, which the long-run variance includes.

    Returns:
      ``DMResult``. The variance is ``gamma_0 + 2 sum_{k<h} gamma_k`` (falling back to
      ``gamma_0`` where that is not positive), the statistic is multiplied by HLN's
      ``sqrt((n + 1 - 2h + h(h - 1)/n) / n)`` and compared with ``t_{n-1}``. Equal losses give
      statistic 0 and p-value 0.5.
    """
    d = np.asarray(loss_a, np.float64) - np.asarray(loss_b, np.float64)
    if d.ndim != 1 or d.shape != np.shape(loss_b):
        raise ValueError(f"losses must be two [n] series of one shape, got {d.shape}.")
    n = d.size
    if n < 3:
        raise ValueError(f"the Diebold-Mariano test needs at least 3 paired losses, got {n}.")
    if not np.isfinite(d).all():
        raise ValueError("the losses must be finite.")
    h = max(1, min(int(horizon), n - 1))
    mean = float(d.mean())
    centred = d - mean
    gammas = [float(centred[k:] @ centred[: n - k]) / n for k in range(h)]
    variance = gammas[0] + 2.0 * sum(gammas[1:])
    if variance <= 0:
        variance = gammas[0]
    if variance <= 0:  # identical differences: no noise
        statistic = 0.0 if mean == 0 else math.copysign(math.inf, mean)
    else:
        correction = math.sqrt(max(n + 1 - 2 * h + h * (h - 1) / n, 1e-12) / n)
        statistic = correction * mean / math.sqrt(variance / n)
    return DMResult(statistic, student_t_sf(statistic, n - 1), mean, n)


class PageHinkley(NamedTuple):
    """The Page-Hinkley test's outcome on a stream.

    Attributes:
      alarm: whether the cumulative deviation above the running mean exceeded the threshold.
      at: index of the first alarm (None without one).
      statistic: the largest ``m_t - min_{s<=t} m_s`` reached.
    """

    alarm: bool
    at: int | None
    statistic: float


def page_hinkley(values: ArrayLike, *, delta: float, threshold: float) -> PageHinkley:
    """Page-Hinkley test for an increase in the mean of ``values`` (e.g. scaled errors).

    ``m_t = sum_{s<=t} (x_s - mean_{<=s} - delta)``; an alarm when ``m_t - min_{s<=t} m_s >
    threshold``. ``delta`` is the tolerated drift per step, ``threshold`` the alarm level, both
    in the units of ``values``.
    """
    x = np.asarray(values, np.float64)
    if x.ndim != 1 or not np.isfinite(x).all():
        raise ValueError("page_hinkley takes a finite [n] stream.")
    running = np.cumsum(x) / np.arange(1, x.size + 1)
    m = np.cumsum(x - running - delta)
    gap = m - np.minimum.accumulate(np.minimum(m, 0.0))
    above = np.flatnonzero(gap > threshold)
    return PageHinkley(
        bool(above.size), int(above[0]) if above.size else None, float(gap.max(initial=0.0))
    )


__all__ = ["DMResult", "PageHinkley", "diebold_mariano", "page_hinkley", "student_t_sf"]
