"""Batched prediction: the jitted predict function, windows at cutoffs, fixed offsets.

``predict_quantiles`` is jitted once per config (a static argument); ``raw_at_cutoffs``
predicts every series at every cutoff in large batches on the device, from scaled values.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ntjax._jit import family_jit
from ntjax.config import ModelConfig
from ntjax.data.windows import Panel, gather_windows, split_window
from ntjax.models import compile_options, spec_for
from ntjax.record import ModelRecord


@functools.partial(family_jit, options_of=compile_options, static_argnames=("config",))
def predict_quantiles(
    config: ModelConfig, params: Any, inputs: dict[str, jax.Array], key: jax.Array | None = None
) -> jax.Array:
    """Quantile forecasts in scaled units.

    Args:
      config: model config (static).
      params: model parameters.
      inputs: ``{"y": [batch, input_size], ...}`` scaled inputs (see ``ntjax.models``).
      key: randomness for sampling models (DeepAR); ignored by the others.

    Returns:
      ``[batch, horizon, n_quantiles]``.
    """
    return spec_for(config).predict_quantiles(config, params, inputs, key=key)


def quantile_offsets(record: ModelRecord) -> np.ndarray | None:
    """Split-conformal offsets ``[horizon, n_quantiles]`` (scaled units) of a calibrated
    record, None for an uncalibrated one (see ``ntjax.calibrate``)."""
    calibration = record.extra.get("calibration")
    return None if calibration is None else np.asarray(calibration["offsets"], np.float32)


def is_rolling_calibrated(record: ModelRecord) -> bool:
    """Whether the record's offsets follow each forecast origin (``nt.calibrate(...,
    method="rolling")``) rather than being fixed."""
    return (record.extra.get("calibration") or {}).get("method") == "rolling"


def adjust_quantiles(record: ModelRecord, quantiles: np.ndarray) -> np.ndarray:
    """Applies a calibrated record's offsets to scaled ``[..., horizon, n_quantiles]``
    predictions; sorting along the quantile axis keeps them non-crossing."""
    offsets = quantile_offsets(record)
    if offsets is None:
        return quantiles
    return np.sort(quantiles + offsets, axis=-1)


@functools.partial(family_jit, options_of=compile_options, static_argnames=("config",))
def _predict_windows(config: ModelConfig, params, values, series, starts, key):
    window = gather_windows(values, series, starts, config.input_size + config.horizon)
    inputs, _ = split_window(window, config)
    return spec_for(config).predict_quantiles(config, params, inputs, key=key)


def rolling_cutoffs(n_time: int, *, test_size: int, horizon: int, step_size: int) -> np.ndarray:
    """Time positions of the first forecast step of each rolling origin."""
    if test_size < horizon:
        raise ValueError(f"test_size ({test_size}) must be at least the horizon ({horizon}).")
    if step_size < 1:
        raise ValueError(f"step_size must be positive, got {step_size}.")
    return np.arange(n_time - test_size, n_time - horizon + 1, step_size)


def raw_at_cutoffs(
    config: ModelConfig,
    params: Any,
    scaled: np.ndarray,
    cutoffs: np.ndarray,
    *,
    key: jax.Array | None = None,
    batch_size: int = 2048,
) -> np.ndarray:
    """The model's own (uncalibrated) scaled quantile forecasts of every series at every cutoff.

    Args:
      scaled: ``[n_series, time, n_channels]`` scaled values (zeros where missing).
      cutoffs: ``[n_cutoffs]`` first forecast positions; inputs are the ``input_size`` steps
        before each.
      key: PRNG key of sampling models (default ``jax.random.key(0)`` for them).

    Returns:
      ``[n_series, n_cutoffs, horizon, n_quantiles]``.
    """
    n_series = scaled.shape[0]
    series = np.repeat(np.arange(n_series), len(cutoffs)).astype(np.int32)
    starts = np.tile(cutoffs - config.input_size, n_series).astype(np.int32)
    total = len(series)
    batch = min(batch_size, max(total, 1))
    pad = -total % batch
    series = np.concatenate([series, np.zeros(pad, np.int32)])
    starts = np.concatenate([starts, np.full(pad, starts[0], np.int32)])
    values = jnp.asarray(scaled, jnp.float32)
    if key is None and spec_for(config).is_stochastic(config):
        key = jax.random.key(0)  # the documented default of sampling models
    chunks = [
        _predict_windows(
            config,
            params,
            values,
            jnp.asarray(series[i : i + batch]),
            jnp.asarray(starts[i : i + batch]),
            None if key is None else jax.random.fold_in(key, i),
        )
        for i in range(0, len(series), batch)
    ]
    out = np.concatenate([np.asarray(c) for c in chunks])[:total]
    return out.reshape(n_series, len(cutoffs), config.horizon, -1)


def actuals_at_cutoffs(panel: Panel, cutoffs: np.ndarray, horizon: int) -> np.ndarray:
    """``[n_series, n_cutoffs, horizon]`` observed ``y`` after each cutoff."""
    time = cutoffs[:, None] + np.arange(horizon)[None, :]
    return panel.values[:, time, 0]
