"""Plots (matplotlib). Each function returns a Figure; nothing is shown or saved implicitly."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg", force=False)

import matplotlib.pyplot as plt  # noqa: E402
import polars as pl  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from ntjax.data.frame import to_polars  # noqa: E402


def forecast_fan(
    history: Any,
    forecasts: Any,
    *,
    levels: Sequence[float] = (),
    unique_id: str | None = None,
    actual: Any = None,
    title: str | None = None,
) -> Figure:
    """Fan chart of one series: history, the point forecast and its interval bands.

    Args:
      history: long frame (``unique_id, ds, y``) of past values to draw.
      forecasts: a forecast or cross-validation frame (``unique_id, ds, y_hat, lo_L, hi_L``).
      levels: interval levels to shade (widest first looks best: they are sorted).
      unique_id: which series (default: the first in ``forecasts``).
      actual: optional long frame of the realised values over the forecast span.
    """
    forecasts = to_polars(forecasts)
    unique_id = unique_id or forecasts["unique_id"][0]
    fc = forecasts.filter(pl.col("unique_id") == unique_id).sort("ds")
    hist = to_polars(history).filter(pl.col("unique_id") == unique_id)
    fig, ax = plt.subplots(figsize=(10, 4), layout="constrained")
    ax.plot(hist["ds"], hist["y"], color="0.25", lw=1.0, label="history")
    for i, level in enumerate(sorted(levels, reverse=True)):
        ax.fill_between(
            fc["ds"],
            fc[f"lo_{level:g}"],
            fc[f"hi_{level:g}"],
            color="tab:blue",
            alpha=0.15 + 0.15 * i,
            lw=0,
            label=f"{level:g}% interval",
        )
    ax.plot(fc["ds"], fc["y_hat"], color="tab:blue", lw=1.4, label="forecast (median)")
    if actual is not None:
        act = to_polars(actual).filter(pl.col("unique_id") == unique_id)
        ax.plot(act["ds"], act["y"], color="tab:red", lw=1.0, label="actual")
    ax.set_title(title or f"{unique_id}")
    ax.legend(loc="upper left", fontsize=8, ncols=2)
    ax.grid(alpha=0.3)
    return fig


def loss_curves(history: dict[str, list], *, title: str = "training") -> Figure:
    """Training and validation loss against step (``ModelRecord.history``)."""
    fig, ax = plt.subplots(figsize=(6, 3.5), layout="constrained")
    ax.plot(history["step"], history["train_loss"], label="train loss")
    val = [
        (s, v) for s, v in zip(history["step"], history["val_loss"], strict=True) if v is not None
    ]
    if val:
        ax.plot(*zip(*val, strict=True), label="validation loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.legend()
    ax.grid(alpha=0.3)
    return fig


def calibration_curve(
    coverages: dict[float, float] | Any, *, title: str = "interval calibration"
) -> Figure:
    """Empirical against nominal coverage of central intervals.

    Args:
      coverages: level (e.g. 80) -> empirical coverage in [0, 1], or an ``nt.evaluate`` result
        (its ``coverage_L`` entries are used).
    """
    if not isinstance(coverages, dict):
        raise ValueError("coverages must be a dict of level -> coverage or an evaluate result.")
    points = {
        float(k.removeprefix("coverage_")) if isinstance(k, str) else float(k): float(v)
        for k, v in coverages.items()
        if not isinstance(k, str) or k.startswith("coverage_")
    }
    if not points:
        raise ValueError("no coverage values to plot.")
    levels = sorted(points)
    fig, ax = plt.subplots(figsize=(4.5, 4.5), layout="constrained")
    ax.plot([0, 100], [0, 100], color="0.6", ls="--", lw=1, label="perfect calibration")
    ax.plot(levels, [100 * points[lv] for lv in levels], "o-", color="tab:blue", label="empirical")
    ax.set_xlabel("nominal coverage (%)")
    ax.set_ylabel("empirical coverage (%)")
    ax.set_xlim(0, 100)
    ax.set_ylim(0, 100)
    ax.set_title(title)
    ax.legend(loc="upper left")
    ax.grid(alpha=0.3)
    return fig


def quantile_calibration_curve(
    calibration: dict[float, float] | Any, *, title: str = "quantile calibration"
) -> Figure:
    """Observed frequency of ``y <= yhat_q`` against the nominal quantile level ``q``.

    Args:
      calibration: level (e.g. 0.1) -> observed frequency in [0, 1]
        (``metrics.quantile_calibration``), or an ``nt.evaluate`` / ``forecast_metrics`` result
        (its ``calibration_q`` entries are used).
    """
    if not isinstance(calibration, dict):
        raise ValueError("calibration must be a dict of level -> frequency or an evaluate result.")
    points = {
        float(k.removeprefix("calibration_")) if isinstance(k, str) else float(k): float(v)
        for k, v in calibration.items()
        if not isinstance(k, str) or k.startswith("calibration_")
    }
    if not points:
        raise ValueError("no calibration values to plot.")
    levels = sorted(points)
    fig, ax = plt.subplots(figsize=(4.5, 4.5), layout="constrained")
    ax.plot([0, 1], [0, 1], color="0.6", ls="--", lw=1, label="perfect calibration")
    ax.plot(levels, [points[q] for q in levels], "o-", color="tab:blue", label="observed")
    ax.set_xlabel("nominal quantile level")
    ax.set_ylabel("observed frequency of y <= quantile")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_title(title)
    ax.legend(loc="upper left")
    ax.grid(alpha=0.3)
    return fig
