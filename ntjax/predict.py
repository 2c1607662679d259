"""Prediction: the jitted predict function and ``forecast``.

``predict_quantiles`` is jitted once per config (a static argument); ``forecast`` turns a frame
into model inputs (last ``input_size`` points of each series, scaled with the record's
statistics), predicts, inverts the scaling and returns the forecast frame of DESIGN.md.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
import polars as pl

from ntjax import provenance
from ntjax._compile import family_jit
from ntjax.config import ModelConfig
from ntjax.data.frame import validate, validate_runs
from ntjax.data.scalers import ScalerState, fit_scaler
from ntjax.data.windows import Panel, channels, pack
from ntjax.models import spec_for
from ntjax.registry import ModelRecord


@functools.partial(family_jit, static_argnames=("config",))
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


def level_quantiles(level: float) -> tuple[float, float]:
    """The quantiles bounding a central ``level``% interval: 80 -> (0.1, 0.9)."""
    if not 0 < level < 100:
        raise ValueError(f"interval levels must be between 0 and 100, got {level}.")
    return (100 - level) / 200, (100 + level) / 200


def quantile_index(config: ModelConfig, q: float) -> int:
    for i, have in enumerate(config.quantiles):
        if abs(have - q) < 1e-9:
            return i
    raise ValueError(
        f"the model predicts quantiles {config.quantiles}; quantile {q:g} is not among them "
        "(train with quantiles that include it, e.g. 0.025 and 0.975 for a 95% interval)."
    )


def supported_levels(config: ModelConfig) -> tuple[int | float, ...]:
    """Central interval levels whose two bounds the model predicts, e.g. (80,) for the
    default quantiles (0.1, 0.5, 0.9)."""
    levels = []
    for q in config.quantiles:
        if q < 0.5 and any(abs(p - (1 - q)) < 1e-9 for p in config.quantiles):
            level = round((1 - 2 * q) * 100, 6)
            levels.append(int(level) if float(level).is_integer() else level)
    return tuple(sorted(levels))


def scaler_rows(
    scaler: ScalerState, panel: Panel, fit_upto: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``loc``/``scale`` ``[n_series, n_channels]`` for a panel: the record's statistics for
    series it was trained on; for new series, statistics fitted on their data before
    ``fit_upto`` (all of it by default), so nothing after a cutoff leaks in."""
    loc, scale, known = scaler.rows(panel.ids)
    if not known.all():
        fresh = fit_scaler(
            scaler.kind, panel.values[:, :fit_upto], ids=panel.ids, columns=panel.columns
        )
        loc = np.where(known[:, None], loc, fresh.loc)
        scale = np.where(known[:, None], scale, fresh.scale)
    return loc, scale


def model_inputs(
    config: ModelConfig, scaled: np.ndarray, futr: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """Inputs from scaled ``[batch, input_size, n_channels]`` history and, for future-known
    exogenous columns, their scaled ``[batch, horizon, n_futr]`` future values."""
    n_hist = len(config.hist_exog)
    inputs = {"y": scaled[:, :, 0].astype(np.float32)}
    if n_hist:
        inputs["hist_exog"] = scaled[:, :, 1 : 1 + n_hist].astype(np.float32)
    if config.futr_exog:
        past = scaled[:, :, 1 + n_hist :]
        inputs["futr_exog"] = np.concatenate([past, futr], axis=1).astype(np.float32)
    return inputs


def _future_exog(
    config: ModelConfig, panel: Panel, futr_df: Any, future_ds: np.ndarray
) -> np.ndarray:
    """``[n_series, horizon, n_futr]`` future values of the future-known columns.

    Args:
      future_ds: ``[n_series, horizon]`` int64 time stamps (``Panel.future_ds``).
    """
    if futr_df is None:
        raise ValueError(
            f"the model uses future-known columns {list(config.futr_exog)}: pass their values "
            "over the horizon as futr_df (unique_id, ds and those columns)."
        )
    futr = validate(futr_df, exog=config.futr_exog, require_y=False)
    wanted = pl.DataFrame(
        [
            pl.Series("unique_id", np.repeat(np.asarray(panel.ids, object), config.horizon)),
            panel.ds_series(future_ds).cast(futr.schema["ds"]),
        ]
    )
    joined = wanted.join(futr, on=["unique_id", "ds"], how="left", maintain_order="left")
    missing = joined.filter(pl.any_horizontal(pl.col(config.futr_exog).is_null()))
    if missing.height:
        first = missing.row(0, named=True)
        raise ValueError(
            f"futr_df lacks future values for {missing.height} (unique_id, ds) pairs, e.g. "
            f"{first['unique_id']!r} at {first['ds']}; it must cover the whole horizon."
        )
    values = joined.select(config.futr_exog).to_numpy().astype(np.float64)
    return values.reshape(panel.n_series, config.horizon, len(config.futr_exog))


def quantile_columns(config: ModelConfig) -> list[str]:
    return [f"q_{q:g}" for q in config.quantiles]


def forecast_frame(
    config: ModelConfig,
    panel: Panel,
    future_ds: np.ndarray,
    quantiles: np.ndarray,
    levels: Sequence[float],
) -> pl.DataFrame:
    """The forecast frame: ``unique_id, ds, y_hat, q_*, lo_L, hi_L``.

    Args:
      future_ds: ``[n_series, horizon]`` int64 time stamps.
      quantiles: ``[n_series, horizon, n_quantiles]`` in original units.
    """
    n_series, horizon, _ = quantiles.shape
    flat = quantiles.reshape(n_series * horizon, -1)
    return pl.DataFrame(key_columns(panel, future_ds) + prediction_columns(config, flat, levels))


def key_columns(panel: Panel, future_ds: np.ndarray) -> list[pl.Series]:
    """``unique_id`` and ``ds`` of a forecast frame, one row per series and future step.

    Args:
      future_ds: ``[n_series, horizon]`` int64 time stamps.
    """
    ids: list[str] = []
    for uid in panel.ids:
        ids += [uid] * future_ds.shape[1]
    return [pl.Series("unique_id", ids, pl.String), panel.ds_series(future_ds)]


def prediction_columns(
    config: ModelConfig, flat: np.ndarray, levels: Sequence[float]
) -> list[pl.Series]:
    """``y_hat``, ``q_<q>`` and ``lo_L``/``hi_L`` columns from ``[rows, n_quantiles]``."""
    columns = [pl.Series("y_hat", flat[:, config.median_index])]
    columns += [
        pl.Series(name, column)
        for name, column in zip(quantile_columns(config), flat.T, strict=True)
    ]
    for level in levels:
        lo, hi = level_quantiles(level)
        columns.append(pl.Series(f"lo_{level:g}", flat[:, quantile_index(config, lo)]))
        columns.append(pl.Series(f"hi_{level:g}", flat[:, quantile_index(config, hi)]))
    return columns


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
        rolling-calibrated record needs ``ntjax.calibrate.history_needed(record)`` (input_size +
        horizon + window, + window when gamma > 0).
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
        from ntjax.calibrate import end_offsets, latest_offsets  # deferred: builds on predict

        stored = end_offsets(record, panel)
        if stored is not None:
            offsets = stored * scale[:, None, :1]
        else:
            offsets = latest_offsets(record, frame, key=key)
        quantiles = raw * scale[:, None, None, 0] + loc[:, None, None, 0]
        quantiles = np.sort(quantiles + offsets, axis=-1)
    else:
        quantiles = adjust_quantiles(record, raw) * scale[:, None, None, 0] + loc[:, None, None, 0]
    flat = quantiles.reshape(-1, quantiles.shape[-1])
    return pl.DataFrame(keys + prediction_columns(config, flat, levels))


def ensemble(
    records: Sequence[ModelRecord],
    *,
    method: str = "mean",
    weights: Sequence[float] | None = None,
) -> ModelRecord:
    """Combines trained records of one horizon into one ensemble record.

    Quantiles are averaged level by level across members (mean, median, or a weighted mean),
    which keeps them non-crossing. The result forecasts, evaluates, saves and loads like any
    record.

    Args:
      records: members sharing the horizon, the quantiles, the exogenous columns and the scaler
        (i.e. trained on the same data with the same scaler kind).
      method: ``mean``, ``median`` or ``weighted``.
      weights: member weights for ``weighted`` (default: inverse validation loss, which every
        member must then have, from training with ``val_size > 0``).
    """
    from ntjax.models.ensemble import EnsembleConfig
    from ntjax.registry import new_id

    records = list(records)
    if len(records) < 2:
        raise ValueError("an ensemble needs at least two records.")
    for r in records:
        if r.status != "trained":
            raise ValueError(f"model {r.id} has status {r.status!r}, not 'trained'.")
        if r.kind == "ensemble":
            raise ValueError(f"model {r.id} is already an ensemble; ensembles cannot be nested.")
    first = records[0]
    for r in records[1:]:
        same = (
            r.scaler.kind == first.scaler.kind
            and r.scaler.ids == first.scaler.ids
            and np.allclose(r.scaler.loc, first.scaler.loc)
            and np.allclose(r.scaler.scale, first.scaler.scale)
        )
        if not same:
            raise ValueError(
                f"models {first.id} and {r.id} were fitted with different scalers (different "
                "data or scaler kinds); ensemble members must share them."
            )
    if method == "weighted" and weights is None:
        missing = [r.id for r in records if "val_loss" not in r.metrics]
        if missing:
            raise ValueError(
                f"weights from validation error need val_loss in every member; {missing[0]} has "
                "none (train with val_size > 0) — or pass weights."
            )
        weights = [1.0 / max(r.metrics["val_loss"], 1e-12) for r in records]
    configs = [r.config for r in records]
    config = EnsembleConfig(
        horizon=first.config.horizon,
        input_size=max(c.input_size for c in configs),
        quantiles=first.config.quantiles,
        hist_exog=first.config.hist_exog,
        futr_exog=first.config.futr_exog,
        members=tuple(configs),
        method=method,
        weights=tuple(weights or ()),
    )
    return ModelRecord(
        id=new_id(),
        kind=config.kind,
        config=config,
        params={f"m{i}": r.params for i, r in enumerate(records)},
        scaler=first.scaler,
        metrics={},
        version=first.version,
        data_fingerprint=first.data_fingerprint,
        extra={"members": [r.id for r in records]},
        trained_on=provenance.union(r.trained_on for r in records),
    )
