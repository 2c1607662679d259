"""Preparing a frame for training: validation, the scaler fitted on the training part, the
device-resident series and window tables, the data's fingerprint and provenance."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import polars as pl

from ntjax import provenance
from ntjax.config import ConfigError, ModelConfig, TrainingConfig
from ntjax.data.frame import validate
from ntjax.data.scalers import ScalerState, extend_scaler, fit_scaler, transform
from ntjax.data.windows import Panel, channels, pack


class TrainingData(NamedTuple):
    """Device-resident training data.

    Shapes are padded to buckets (time on the left with zeros, the window table at the end) so
    that refits on slightly longer data reuse the compiled step instead of recompiling.

    Attributes:
      values: ``[n_series, time, n_channels]`` float32, scaled, zeros where no data.
      windows: ``[table, 2]`` int32 (series, start) of training windows; the first
        ``n_windows`` rows are real.
      n_windows: ``[]`` int32 number of real training windows (steps sample among them).
      val_windows: ``[n_val, 2]`` int32 (series, start) of validation windows.
      teacher: for distillation (``nt.distill``), ``[table, horizon, n_quantiles]`` float32
        the teacher's quantile forecasts (scaled units) of each window's targets, row for row
        with ``windows``; None otherwise.
      teacher_weight: ``[]`` float32 weight of the teacher's term in the training loss
        (``alpha``; the data's term has ``1 - alpha``); None without a teacher.
      val_weights: with series-sharded training (``ntjax.train.shards``), ``[n_val]`` float32
        1 for a real validation window, 0 for padding; None otherwise (every row is real).

    Series-sharded data (``TrainingConfig.shard_series``) stacks one block per device on the
    leading axis of each array (``values`` ``[devices * series, ...]``, ``windows``
    ``[devices * table, 2]`` with series indices local to the block, ``n_windows``
    ``[devices]``), sharded over the mesh's ``data`` axis.
    """

    values: jax.Array
    windows: jax.Array
    n_windows: jax.Array
    val_windows: jax.Array
    teacher: jax.Array | None = None
    teacher_weight: jax.Array | None = None
    val_weights: jax.Array | None = None


@dataclass(frozen=True)
class Prepared:
    """Host-side result of preparing a frame for training; ``training`` is the run's config
    with its automatic ``val_size`` resolved (``resolve_training``)."""

    panel: Panel
    scaler: ScalerState
    data: TrainingData
    fingerprint: str
    calibration_size: int
    trained_on: pl.DataFrame
    training: TrainingConfig


def fingerprint(panel: Panel) -> str:
    """sha256 of the series (ids, time stamps, values): what a model was trained on."""
    digest = hashlib.sha256()
    digest.update(json.dumps([panel.ids, panel.columns]).encode())
    digest.update(panel.lengths.astype(np.int64).tobytes())
    digest.update(panel.ds.tobytes())
    digest.update(np.nan_to_num(panel.values, nan=0.0).astype(np.float64).tobytes())
    return digest.hexdigest()


def validation_starts(
    panel: Panel, config: ModelConfig, val_size: int, *, end: int | None = None
) -> np.ndarray:
    """(series, start) of validation windows: forecasts whose targets lie in the last
    ``val_size`` steps before time position ``end`` (default: the end of the panel), at most
    64 cutoffs per series spread evenly."""
    if val_size == 0:
        return np.zeros((0, 2), np.int32)
    horizon, size = config.horizon, config.input_size
    n_time = panel.n_time if end is None else end
    if val_size < horizon:
        raise ConfigError(f"val_size ({val_size}) must be 0 or at least the horizon ({horizon}).")
    n_cut = val_size - horizon + 1
    stride = max(1, math.ceil(n_cut / 64))
    cutoffs = np.arange(n_time - val_size, n_time - horizon + 1, stride)
    series = np.repeat(np.arange(panel.n_series), len(cutoffs))
    starts = np.tile(cutoffs - size, panel.n_series)
    return np.stack([series, starts], axis=1).astype(np.int32)


def resolve_training(
    training: TrainingConfig, config: ModelConfig, shortest: int
) -> TrainingConfig:
    """``training`` with ``val_size=None`` replaced by the number of rows it stands for, given
    the ``shortest`` series: five horizons, at most a fifth of what that series has beyond one
    window, and 0 when that is less than a horizon (no validation)."""
    if training.val_size is not None:
        return training
    spare = shortest - (config.input_size + config.horizon)
    val_size = min(5 * config.horizon, max(0, spare) // 5)
    return dataclasses.replace(training, val_size=val_size if val_size >= config.horizon else 0)


def calibration_size(config: ModelConfig, training: TrainingConfig, shortest: int) -> int:
    """Steps held out at the end of each series for interval calibration: ``training.
    calibration_size`` when set, else ten horizons, at most a fifth of what the shortest series
    has beyond one training window and the validation tail (0 without calibration)."""
    if training.calibration is None:
        return 0
    if training.calibration_size is not None:
        return training.calibration_size
    spare = shortest - (config.input_size + config.horizon + training.val_size)
    return max(0, min(10 * config.horizon, spare // 5))


def validate_training_frame(df: Any, config: ModelConfig, training: TrainingConfig) -> pl.DataFrame:
    """``validate`` with the columns and the shortest length a training run needs."""
    exog = (*config.hist_exog, *config.futr_exog)
    needed = config.input_size + config.horizon + (training.val_size or 0)
    reason = "input_size + horizon" + (" + val_size" if training.val_size else "")
    if training.calibration is not None and training.calibration_size:
        needed += training.calibration_size
        reason += " + calibration_size"
    return validate(df, exog=exog, min_length=needed, length_reason=reason)


def prepare(
    df: Any,
    config: ModelConfig,
    training: TrainingConfig,
    *,
    scaler: ScalerState | None = None,
    calibration_rows: int | None = None,
    padded_time: int | None = None,
    on_host: bool = False,
) -> Prepared:
    """Validates ``df``, fits the scaler on the training part (all but the last ``val_size`` +
    calibration steps of each series) and builds the device arrays and window tables.

    ``scaler`` (a warm start's) is kept for the series it has and extended, fitted on the
    training part, for series new to it. The last ``calibration_size(...)`` steps of each
    series are left out of the gradient windows and of validation; the spans of each role are
    the record's provenance.

    ``calibration_rows`` and ``padded_time`` (the length the series are left-padded to) are
    given when ``df`` is one shard of a larger panel (``ntjax.train.shards``), so that every
    shard holds out the same tail and has the same shape; by default both come from ``df``.
    ``on_host=True`` leaves the arrays of ``data`` in host memory (numpy), for a caller that
    places them itself.
    """
    if training.shard_series:
        raise ConfigError(
            "shard_series is supported when nt.train fits one model; ensembles, populations "
            "and distillation hold every series on every device (set shard_series=False)."
        )
    frame = validate_training_frame(df, config, training)
    panel = pack(frame, channels(config))
    n_time, window = panel.n_time, config.input_size + config.horizon
    training = resolve_training(training, config, int(panel.lengths.min()))
    if calibration_rows is None:
        calibration_rows = calibration_size(config, training, int(panel.lengths.min()))
    n_calibration = calibration_rows
    fit_end = n_time - n_calibration
    train_end = fit_end - training.val_size
    train_values = panel.values[:, :train_end]
    if scaler is None:
        scaler = fit_scaler(training.scaler, train_values, ids=panel.ids, columns=panel.columns)
    else:  # a warm start keeps its parent's statistics; series new to it get their own
        scaler = extend_scaler(scaler, train_values, panel.ids)
    loc, scale, _ = scaler.rows(panel.ids)
    scaled = np.nan_to_num(transform(panel.values, loc, scale), nan=0.0).astype(np.float32)
    pad = (padded_time or time_bucket(n_time)) - n_time
    scaled = np.concatenate(
        [np.zeros((panel.n_series, pad, scaled.shape[2]), np.float32), scaled], 1
    )
    first = n_time - panel.lengths
    starts = [np.arange(f, max(f, train_end - window + 1)) for f in first]
    windows = np.concatenate(
        [np.stack([np.full(len(s), i), s + pad], axis=1) for i, s in enumerate(starts)]
    ).astype(np.int32)
    n_windows = len(windows)
    table = np.zeros((1 << max(0, (n_windows - 1).bit_length()), 2), np.int32)
    table[:n_windows] = windows
    val_windows = validation_starts(panel, config, training.val_size, end=fit_end)
    val_windows[:, 1] += pad
    data = TrainingData(
        values=scaled, windows=table, n_windows=np.int32(n_windows), val_windows=val_windows
    )
    if not on_host:
        data = jax.tree.map(jnp.asarray, data)
    trained_on = provenance.panel_spans(
        panel,
        {
            "train": (0, train_end),
            "validation": (train_end, fit_end),
            "calibration": (fit_end, n_time),
        },
    )
    return Prepared(panel, scaler, data, fingerprint(panel), n_calibration, trained_on, training)


def time_bucket(n_time: int) -> int:
    """``n_time`` rounded up to a multiple of a quarter of its power of two (<= 25% padding)."""
    granule = 1 << max(0, n_time.bit_length() - 3)
    return -(-n_time // granule) * granule
