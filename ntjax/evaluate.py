"""Rolling-origin evaluation.

Forecasts are made at cutoffs over the last ``test_size`` steps of each series, each from data
before its cutoff only, all windows predicted in large batches on the device.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
import polars as pl

from ntjax import provenance
from ntjax.config import ConfigError
from ntjax.data.frame import validate
from ntjax.data.scalers import inverse
from ntjax.data.windows import Panel, channels, pack
from ntjax.metrics.forecast import (
    forecast_metrics,
    forecast_metrics_by_cutoff,
    forecast_metrics_by_horizon,
    forecast_metrics_by_window,
    naive_scale,
)
from ntjax.predict.batch import actuals_at_cutoffs, rolling_cutoffs
from ntjax.predict.cutoffs import predict_at_cutoffs
from ntjax.predict.inputs import level_quantiles, quantile_index, scaled_values, supported_levels
from ntjax.record import ModelRecord


def _check_history(panel: Panel, needed: int, what: str) -> None:
    short = [(u, int(n)) for u, n in zip(panel.ids, panel.lengths, strict=True) if n < needed]
    if short:
        names = ", ".join(f"{u!r} ({n} rows)" for u, n in short[:5])
        raise ConfigError(f"series too short for {what} (need {needed} rows): {names}.")


def evaluate(
    record: ModelRecord,
    df: Any,
    *,
    test_size: int | None = None,
    step_size: int | None = None,
    levels: Sequence[float] | None = None,
    season_length: int = 1,
    embargo: int = 0,
    allow_in_sample: bool = False,
    by: str | None = None,
    key: jax.Array | None = None,
) -> dict[str, Any] | pl.DataFrame:
    """Rolling-origin evaluation over the last ``test_size`` steps of each series.

    Args:
      record: a trained model. A rolling-calibrated one (the default of training) is
        calibrated at every cutoff from the windows resolved before it that it was not fitted
        on only.
      df: long frame; the last ``test_size`` steps of each series are the test part and every
        forecast uses only data before its cutoff.
      test_size: steps evaluated per series (default: one horizon).
      step_size: stride between cutoffs (default: the horizon; 1 for the long-horizon protocol).
      levels: interval levels for coverage and width (default: every level the model's
        quantiles bound, e.g. 80 and 95 for the default quantiles).
      season_length: seasonal period of the MASE and MSIS denominators (in-sample seasonal
        naive on data before the first cutoff).
      embargo: steps after each series' trained end (``record.trained_on``) that still count
        as in sample.
      allow_in_sample: score targets the model was fitted on anyway; the result says so
        (``in_sample`` True). Without it such a test part is refused with one sentence.
      by: None for pooled metrics; ``"horizon"`` for a frame with every metric per forecast
        step (column ``step``, 1 = the first step after a cutoff); ``"cutoff"`` for a frame
        with every metric per forecast origin, pooled over series and steps (columns
        ``window``, 0-based, and ``cutoff``, the last time before it); ``"window"`` for a
        frame with every metric per series and origin (``unique_id``, ``window``,
        ``cutoff``): the paired losses of a Diebold-Mariano test
        (``ntjax.metrics.diebold_mariano``).
      key: PRNG key for sampling models (DeepAR); default ``jax.random.key(0)``.

    Returns:
      ``mae, rmse, mse, mape, smape, r2, mase, coverage_L, width_L`` (per level), ``wql``,
      ``crps``, ``msis`` (with the 0.025/0.975 quantiles), ``calibration_<q>`` (observed
      frequency of ``y <= q``), ``n_points``, ``n_windows``, ``in_sample`` (None for a record
      without provenance), ``period_start``/``period_end`` (first and last scored time), in
      the units of ``df``; ``coverage_table`` turns the coverages into a coverage-vs-nominal
      table. With ``by="horizon"`` a polars frame, one row per step.
    """
    _check_by(by)
    config = record.config
    test_size = config.horizon if test_size is None else test_size
    step_size = config.horizon if step_size is None else step_size
    levels = supported_levels(config) if levels is None else tuple(levels)
    bounds = {
        level: [quantile_index(config, q) for q in level_quantiles(level)] for level in levels
    }
    frame = validate(df, exog=(*config.hist_exog, *config.futr_exog))
    panel = pack(frame, channels(config))
    cutoffs = rolling_cutoffs(
        panel.n_time, test_size=test_size, horizon=config.horizon, step_size=step_size
    )
    _check_history(panel, config.input_size + test_size, "input_size + test_size")
    first_cutoff = int(cutoffs[0])
    in_sample = provenance.check_out_of_sample(
        record, panel, first_cutoff, embargo=embargo, allow_in_sample=allow_in_sample
    )
    loc, scale, scaled = scaled_values(record.scaler, panel, fit_upto=first_cutoff)
    predictions = predict_at_cutoffs(record, scaled, cutoffs, key=key, panel=panel)
    predictions = inverse(predictions, loc[:, 0], scale[:, 0])
    y = actuals_at_cutoffs(panel, cutoffs, config.horizon)
    mase_scale = [
        naive_scale(
            panel.values[i, panel.n_time - n : first_cutoff, 0], season_length=season_length
        )
        for i, n in enumerate(panel.lengths)
    ]
    intervals = {
        level: (predictions[..., lo], predictions[..., hi]) for level, (lo, hi) in bounds.items()
    }
    scores = {
        "mase_scale": mase_scale,
        "intervals": intervals,
        "quantile_preds": predictions,
        "quantiles": config.quantiles,
    }
    median = predictions[..., config.median_index]
    extra = {
        "n_windows": int(len(cutoffs) * panel.n_series),
        "in_sample": in_sample,
        "period_start": _stamp(panel, first_cutoff),
        "period_end": _stamp(panel, panel.n_time - 1),
    }
    return _metrics(y, median, scores, extra, by=by, panel=panel, cutoffs=cutoffs)


BY = (None, "horizon", "cutoff", "window")


def _check_by(by: str | None) -> None:
    if by not in BY:
        raise ValueError(f"by must be None, 'horizon', 'cutoff' or 'window', got {by!r}.")


def _metrics(
    y: np.ndarray,
    y_hat: np.ndarray,
    scores: dict[str, Any],
    extra: dict[str, Any],
    *,
    by: str | None,
    panel: Panel,
    cutoffs: np.ndarray,
) -> dict[str, Any] | pl.DataFrame:
    """Pooled metrics, or a frame of them per forecast step, origin or window."""
    if by == "horizon":
        rows = forecast_metrics_by_horizon(y, y_hat, **scores)
        return pl.DataFrame([{**row, **extra} for row in rows])
    if by is None:
        return {**forecast_metrics(y, y_hat, **scores), **extra}
    stamps = [_stamp(panel, int(c) - 1) for c in cutoffs]
    if by == "cutoff":
        rows = forecast_metrics_by_cutoff(y, y_hat, **scores)
        return pl.DataFrame(
            [{**row, "cutoff": stamp, **extra} for row, stamp in zip(rows, stamps, strict=True)]
        )
    rows = forecast_metrics_by_window(y, y_hat, **scores)
    return pl.DataFrame(
        [
            {"unique_id": panel.ids[row.pop("series")], **row,
             "cutoff": stamps[row["window"]], **extra}
            for row in rows
        ]
    )  # fmt: skip


def _stamp(panel: Panel, position: int) -> str | int:
    """The latest series' time stamp at ``position`` (JSON-friendly)."""
    value = panel.ds_series(panel.ds[:, position].max(keepdims=True))[0]
    return value if panel.ds_is_int else value.isoformat()


def coverage_table(result: dict[str, float]) -> pl.DataFrame:
    """Empirical against nominal coverage of an ``evaluate`` result: one row per level with
    ``level, nominal, coverage, gap`` (coverage - nominal) and ``width`` (mean interval width)."""
    levels = sorted(float(k.removeprefix("coverage_")) for k in result if k.startswith("coverage_"))
    if not levels:
        raise ValueError("the result holds no coverage_L entries (evaluate with levels=...).")
    rows = []
    for level in levels:
        coverage = result[f"coverage_{level:g}"]
        rows.append(
            {
                "level": level,
                "nominal": level / 100,
                "coverage": coverage,
                "gap": coverage - level / 100,
                "width": result.get(f"width_{level:g}", float("nan")),
            }
        )
    return pl.DataFrame(rows)


def evaluate_seasonal_naive(
    df: Any,
    *,
    horizon: int,
    season_length: int = 1,
    test_size: int | None = None,
    step_size: int | None = None,
    by: str | None = None,
) -> dict[str, float] | pl.DataFrame:
    """The same rolling-origin protocol for the seasonal-naive forecast
    ``y_hat[c + h] = y[c - m + (h mod m)]`` (naive for ``m = 1``): the baseline to beat.
    ``by`` as in ``evaluate`` (None, ``"horizon"``, ``"cutoff"`` or ``"window"``)."""
    _check_by(by)
    test_size = horizon if test_size is None else test_size
    step_size = horizon if step_size is None else step_size
    panel = pack(validate(df))
    cutoffs = rolling_cutoffs(
        panel.n_time, test_size=test_size, horizon=horizon, step_size=step_size
    )
    _check_history(panel, season_length + test_size, "season_length + test_size")
    source = cutoffs[:, None] - season_length + (np.arange(horizon) % season_length)[None, :]
    y_hat = panel.values[:, source, 0]
    y = actuals_at_cutoffs(panel, cutoffs, horizon)
    first_cutoff = int(cutoffs[0])
    mase_scale = [
        naive_scale(
            panel.values[i, panel.n_time - n : first_cutoff, 0], season_length=season_length
        )
        for i, n in enumerate(panel.lengths)
    ]
    extra = {"n_windows": int(len(cutoffs) * panel.n_series)}
    scores = {"mase_scale": mase_scale}
    return _metrics(y, y_hat, scores, extra, by=by, panel=panel, cutoffs=cutoffs)
