"""``nt.forecast``: the next ``horizon`` steps of every series of a frame, with intervals."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
import polars as pl

from ntjax.data.frame import validate_runs
from ntjax.data.scalers import inverse
from ntjax.data.windows import channels, pack
from ntjax.models import spec_for
from ntjax.predict.batch import adjust_quantiles, is_rolling_calibrated, predict_quantiles
from ntjax.predict.conformal import end_offsets, latest_offsets
from ntjax.predict.inputs import (
    _future_exog,
    key_columns,
    level_quantiles,
    model_inputs,
    prediction_columns,
    quantile_index,
    scaler_rows,
)
from ntjax.record import ModelRecord


def forecast(
    record: ModelRecord,
    df: Any,
    *,
    levels: Sequence[float] = (),
    futr_df: Any = None,
    key: jax.Array | None = None,
) -> pl.DataFrame:
    """Forecasts the next ``horizon`` steps of every series in ``df``.

    Args:
      record: a trained ``ModelRecord``.
      df: long frame with at least ``input_size`` points per series (+ exogenous columns); a
        rolling-calibrated record needs ``ntjax.predict.conformal.history_needed(record)``
        (input_size + horizon + window, + window when gamma > 0).
      levels: central interval levels, e.g. ``(80, 95)``; the model's quantiles must include
        their bounds.
      futr_df: future values of the config's ``futr_exog`` columns over the horizon.
      key: PRNG key for sampling models (DeepAR); default ``jax.random.key(0)``.

    Returns:
      One row per series and future step: ``unique_id, ds, y_hat, q_<q>..., lo_L, hi_L``, in the
      units of ``df``; ``ds`` continues each series' frequency.
    """
    config = record.config
    if record.status != "trained":
        raise ValueError(f"model {record.id} has status {record.status!r}, not 'trained'.")
    for level in levels:
        for q in level_quantiles(level):
            quantile_index(config, q)
    frame, runs = validate_runs(
        df, exog=(*config.hist_exog, *config.futr_exog), min_length=config.input_size
    )
    panel = pack(frame, channels(config), tail=max(config.input_size, 2), runs=runs)
    loc, scale = scaler_rows(record.scaler, panel)
    history = (panel.values[:, -config.input_size :] - loc[:, None]) / scale[:, None]
    futr = future_ds = None
    if config.futr_exog:  # the model reads these columns' values over the horizon
        n_hist = len(config.hist_exog)
        future_ds = panel.future_ds(config.horizon)
        raw = _future_exog(config, panel, futr_df, future_ds)
        futr = (raw - loc[:, None, 1 + n_hist :]) / scale[:, None, 1 + n_hist :]
    inputs = model_inputs(config, history, futr)
    if key is None and spec_for(config).is_stochastic(config):
        key = jax.random.key(0)
    pending = predict_quantiles(config, record.params, inputs, key)
    # jax runs the model asynchronously: the frame's keys are built meanwhile.
    if future_ds is None:
        future_ds = panel.future_ds(config.horizon)
    keys = key_columns(panel, future_ds)
    raw = np.asarray(pending)
    if is_rolling_calibrated(record):
        # Offsets from the latest resolved windows of df (stored by training for its end).
        stored = end_offsets(record, panel)
        if stored is None:
            offsets = latest_offsets(record, frame, key=key)
        else:
            offsets = inverse(stored, np.zeros_like(loc[:, 0]), scale[:, 0])
        quantiles = np.sort(inverse(raw, loc[:, 0], scale[:, 0]) + offsets, axis=-1)
    else:
        quantiles = inverse(adjust_quantiles(record, raw), loc[:, 0], scale[:, 0])
    flat = quantiles.reshape(-1, quantiles.shape[-1])
    return pl.DataFrame(keys + prediction_columns(config, flat, levels))
