"""Rolling-origin cross-validation.

Forecasts at ``n_windows`` cutoffs at the end of each series. With ``refit=False`` one model
(fitted on data before the first cutoff, or the record given) predicts every cutoff in one
batched pass on the device; with ``refit=k`` a fresh model is fitted every ``k`` windows on the
data available then. Scalers and training only ever see data before each cutoff.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
import polars as pl

from ntjax import provenance
from ntjax.config import ModelConfig, OptimizerConfig, TrainingConfig
from ntjax.data.frame import validate
from ntjax.data.scalers import inverse
from ntjax.data.windows import Panel, channels, pack
from ntjax.predict.batch import actuals_at_cutoffs
from ntjax.predict.cutoffs import predict_at_cutoffs
from ntjax.predict.inputs import level_quantiles, prediction_columns, quantile_index, scaled_values
from ntjax.record import ModelRecord
from ntjax.train import fit


def drop_last(frame: pl.DataFrame, n: int) -> pl.DataFrame:
    """Every series without its last ``n`` rows (of a frame grouped by series)."""
    position = pl.int_range(pl.len()).over("unique_id")
    return frame.filter(position < pl.len().over("unique_id") - n)


def window_cutoffs(n_time: int, *, n_windows: int, horizon: int, step_size: int) -> np.ndarray:
    """First forecast positions of ``n_windows`` origins, the last ending at the series end."""
    if n_windows < 1 or step_size < 1:
        raise ValueError("n_windows and step_size must be positive.")
    last = n_time - horizon
    return last - step_size * np.arange(n_windows - 1, -1, -1)


def _fit_before(
    frame: pl.DataFrame,
    panel: Panel,
    cutoff: int,
    config: ModelConfig,
    training: TrainingConfig | None,
    optimizer: OptimizerConfig | None,
) -> ModelRecord:
    return fit(drop_last(frame, panel.n_time - cutoff), config, training, optimizer)


def cross_validation(
    config_or_record: ModelConfig | ModelRecord,
    df: Any,
    *,
    n_windows: int,
    step_size: int | None = None,
    refit: bool | int = False,
    training: TrainingConfig | None = None,
    optimizer: OptimizerConfig | None = None,
    levels: Sequence[float] = (),
    embargo: int = 0,
    allow_in_sample: bool = False,
    key: jax.Array | None = None,
) -> pl.DataFrame:
    """Rolling-origin forecasts.

    Args:
      config_or_record: a model config (fitted here on data before the first cutoff) or a
        trained record (used as is when ``refit=False``; the leakage guard refuses targets at
        or before a series' trained end, ``record.trained_on``, unless ``allow_in_sample``).
      df: long frame.
      n_windows: number of cutoffs per series.
      step_size: stride between cutoffs (default: the horizon).
      refit: False for one fit; an int ``k`` to refit every ``k`` windows (True means 1).
      training: training config of the fits (default: the record's, else the defaults).
      optimizer: optimizer config of the fits (default: the record's, else the defaults).
      levels: interval levels to add as ``lo_L``/``hi_L``.
      embargo: steps after each series' trained end that still count as in sample.
      allow_in_sample: forecast targets the record was fitted on anyway, flagged per row.
      key: PRNG key for sampling models.

    Returns:
      ``unique_id, ds, cutoff, y, y_hat, q_<q>..., lo_L, hi_L, in_sample``: one row per series,
      cutoff and step; ``cutoff`` is the last time stamp the forecast could see; ``in_sample``
      is True where the target is a row the model was fitted on (only with
      ``allow_in_sample``; never for fits made here, which see data before their cutoff only).
    """
    if isinstance(config_or_record, ModelRecord):
        record: ModelRecord | None = config_or_record
        config = record.config
        training = training or record.training
        optimizer = optimizer or record.optimizer
    else:
        record, config = None, config_or_record
    step_size = config.horizon if step_size is None else step_size
    refit_every = int(refit) if refit is not False else n_windows
    if refit_every < 1:
        raise ValueError(f"refit must be False or a positive integer, got {refit!r}.")
    for level in levels:
        for q in level_quantiles(level):
            quantile_index(config, q)
    frame = validate(df, exog=(*config.hist_exog, *config.futr_exog))
    panel = pack(frame, channels(config))
    cutoffs = window_cutoffs(
        panel.n_time, n_windows=n_windows, horizon=config.horizon, step_size=step_size
    )
    first = panel.n_time - panel.lengths
    if np.any(cutoffs[0] - config.input_size < first):
        raise ValueError(
            f"series too short for {n_windows} windows of stride {step_size} with input_size "
            f"{config.input_size}: need {config.input_size + panel.n_time - cutoffs[0]} rows."
        )
    blocks, flags = [], []
    times = cutoffs[:, None] + np.arange(config.horizon)[None, :]
    for start in range(0, n_windows, refit_every):
        block = cutoffs[start : start + refit_every]
        if record is None or refit is not False:
            model = _fit_before(frame, panel, int(block[0]), config, training, optimizer)
        else:
            model = record
        # Each model's own span: a fit made here ends before its block by construction.
        provenance.check_out_of_sample(
            model,
            panel,
            int(block[0]),
            embargo=embargo,
            allow_in_sample=allow_in_sample,
            what="cross_validation",
        )
        bound = provenance.boundaries(
            model.trained_on, panel, embargo=embargo, strict=not allow_in_sample
        )
        flags.append(times[None, start : start + len(block)] <= bound[:, None, None])
        loc, scale, scaled = scaled_values(model.scaler, panel, fit_upto=int(block[0]))
        predictions = predict_at_cutoffs(model, scaled, block, key=key, panel=panel)
        blocks.append(inverse(predictions, loc[:, 0], scale[:, 0]))
    predictions = np.concatenate(blocks, axis=1)  # [series, cutoff, horizon, quantile]
    in_sample = np.concatenate(flags, axis=1)  # [series, cutoff, horizon]
    y = actuals_at_cutoffs(panel, cutoffs, config.horizon)
    return _cv_frame(config, panel, cutoffs, y, predictions, levels, in_sample)


def _cv_frame(config, panel, cutoffs, y, predictions, levels, in_sample) -> pl.DataFrame:
    n_series, n_cut, horizon = y.shape
    times = cutoffs[:, None] + np.arange(horizon)[None, :]
    flat = predictions.reshape(n_series * n_cut * horizon, -1)
    columns = [
        pl.Series(
            "unique_id", np.repeat(np.asarray(panel.ids, dtype=object), n_cut * horizon), pl.String
        ),
        panel.ds_series(panel.ds[:, times]),
        panel.ds_series(np.repeat(panel.ds[:, cutoffs - 1], horizon, axis=1), "cutoff"),
        pl.Series("y", y.reshape(-1)),
    ]
    flag = [pl.Series("in_sample", in_sample.reshape(-1), pl.Boolean)]
    return pl.DataFrame(columns + prediction_columns(config, flat, levels) + flag)
