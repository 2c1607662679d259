"""Model inputs from frames and back: the scaler rows of a panel, scaled inputs, interval
levels and quantile columns, and the forecast frame's columns.

One pipeline from a frame to model inputs and back to original units: ``scaled_values`` (the
record's scaler, or statistics fitted before a cutoff for series it never saw), the model, then
``ntjax.data.scalers.inverse``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl

from ntjax.config import ModelConfig
from ntjax.data.frame import validate
from ntjax.data.scalers import ScalerState, fit_scaler, transform
from ntjax.data.windows import Panel


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


def scaled_values(
    scaler: ScalerState, panel: Panel, fit_upto: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``loc``, ``scale`` ``[n_series, n_channels]`` (``scaler_rows``) and the panel's values
    scaled with them, ``[n_series, time, n_channels]``, zeros where a series has no data."""
    loc, scale = scaler_rows(scaler, panel, fit_upto=fit_upto)
    return loc, scale, np.nan_to_num(transform(panel.values, loc, scale), nan=0.0)
