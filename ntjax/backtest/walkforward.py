"""Walk-forward one-step-ahead forecasts of one price series, from data up to each decision
time only.

The forecast return of period ``t`` is the model's median forecast of the next price against
the last price, ``y_hat[t + 1] / p[t] - 1``; interval bounds become returns the same way. With
``transform="log"`` the model is fitted on and forecasts ``log(price)`` and its quantiles are
mapped back with ``exp`` (quantiles commute with monotone maps, so ``exp`` of the median is the
median price).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import numpy as np
import polars as pl

from ntjax import provenance
from ntjax.config import ModelConfig, OptimizerConfig, TrainingConfig
from ntjax.crossval import cross_validation
from ntjax.data.frame import validate
from ntjax.data.windows import pack
from ntjax.predict.inputs import quantile_columns
from ntjax.registry import ModelRecord


class PriceTransform(NamedTuple):
    """How the model sees prices: ``forward`` maps prices to the model's ``y``, ``inverse`` maps
    its forecast quantiles back (monotone, so quantiles stay quantiles); ``positive``: the
    whole history must be positive."""

    forward: Callable[[np.ndarray], np.ndarray]
    inverse: Callable[[np.ndarray], np.ndarray]
    positive: bool


PRICE_TRANSFORMS: dict[str, PriceTransform] = {
    "identity": PriceTransform(lambda price: price, lambda value: value, positive=False),
    "log": PriceTransform(np.log, np.exp, positive=True),
}


def _position(times: np.ndarray, value: Any, *, side: str) -> int:
    """Index of ``value`` in sorted ``times`` (``left``: first >= value; ``right``: last <=)."""
    if np.issubdtype(times.dtype, np.integer):
        point = np.int64(value)
    else:
        try:
            point = np.datetime64(value).astype(times.dtype)
        except ValueError as error:
            raise ValueError(f"cannot read {value!r} as a date: {error}") from None
    found = int(np.searchsorted(times, point, side=side))
    return found if side == "left" else found - 1


def _min_history(
    record_or_config: ModelConfig | ModelRecord, refits: bool, training: TrainingConfig | None
) -> int:
    """Rows needed up to and including the first decision time."""
    if isinstance(record_or_config, ModelRecord) and not refits:
        return record_or_config.config.input_size
    config = (
        record_or_config.config if isinstance(record_or_config, ModelRecord) else record_or_config
    )
    if training is None and isinstance(record_or_config, ModelRecord):
        training = record_or_config.training
    # An automatic val_size (None) is 0 on series too short for it.
    val_size = (training.val_size or 0) if training is not None else 0
    return config.input_size + config.horizon + val_size


def walk_forward(
    record_or_config: ModelConfig | ModelRecord,
    df: Any,
    *,
    refit_every: int | None = None,
    start: Any = None,
    end: Any = None,
    levels: Sequence[float] = (),
    transform: str = "identity",
    training: TrainingConfig | None = None,
    optimizer: OptimizerConfig | None = None,
    embargo: int = 0,
    allow_in_sample: bool = False,
    key: jax.Array | None = None,
) -> pl.DataFrame:
    """One-step-ahead forecasts at every decision time, each from data up to that time only.

    Args:
      record_or_config: a trained record (used as is without ``refit_every``: it must not have
        seen data after ``start``) or a model config (fitted on the data up to the first
        decision time).
      df: long frame holding one price series (``y`` the price), e.g.
        ``nt.from_wide(ohlcv, time_col="Date", value_cols="Close")``.
      refit_every: fit a fresh model every this many periods on the data available then
        (None: one model for the whole walk).
      start: first decision time (a date, ISO string or int, like ``ds``; the first row on or
        after it). Default: the earliest row with enough history for the model (and its fit).
      end: last time a period may end (the last row on or before it). Default and at most:
        ``horizon - 1`` rows before the end of ``df``, since cross-validation scores the whole
        horizon of every forecast against observed rows.
      levels: central interval levels to add as ``lo_L``/``hi_L`` (prices).
      transform: how the model sees prices: ``identity`` or ``log`` (see the module docstring).
      training: training config of the fits (default: the record's, else the defaults).
      optimizer: optimizer config of the fits (default: the record's, else the defaults).
      embargo: steps after the record's trained end that still count as in sample.
      allow_in_sample: trade on forecasts of periods the record was fitted on anyway (flagged
        in ``in_sample``); without it a ``start`` inside the record's training span is refused
        with one sentence. Fits from a config never see their own periods.
      key: PRNG key for sampling models.

    Returns:
      One row per period: ``unique_id, ds`` (decision time), ``next_ds``, ``price``,
      ``next_price``, ``y_hat`` (median forecast of ``next_price``), ``q_<q>...``,
      ``lo_L, hi_L`` (in prices), ``forecast_return = y_hat / price - 1`` and ``in_sample``.
    """
    if transform not in PRICE_TRANSFORMS:
        raise ValueError(f"transform must be one of {sorted(PRICE_TRANSFORMS)}, got {transform!r}.")
    if refit_every is not None and (
        isinstance(refit_every, bool) or not isinstance(refit_every, int) or refit_every < 1
    ):
        raise ValueError(f"refit_every must be None or a positive integer, got {refit_every!r}.")
    config = (
        record_or_config.config if isinstance(record_or_config, ModelRecord) else record_or_config
    )
    frame = validate(df, exog=(*config.hist_exog, *config.futr_exog))
    ids = frame["unique_id"].unique(maintain_order=True).to_list()
    if len(ids) != 1:
        shown = ", ".join(repr(i) for i in ids[:5])
        raise ValueError(
            f"a backtest trades one price series; df holds {len(ids)} ({shown}): filter it to one."
        )
    times = frame["ds"].to_numpy()
    prices = frame["y"].to_numpy()
    n_rows, horizon = len(times), config.horizon
    history = _min_history(record_or_config, refit_every is not None, training)
    first = history - 1 if start is None else _position(times, start, side="left")
    if first < history - 1:
        raise ValueError(
            f"start {start} leaves {first + 1} rows up to the first decision; the model needs "
            f"{history} (input_size + horizon + val_size to fit, input_size to forecast)."
        )
    last = (
        n_rows - horizon
        if end is None
        else min(_position(times, end, side="right"), n_rows - horizon)
    )
    n_periods = last - first
    if n_periods < 1:
        raise ValueError(
            f"no period to trade between start={start} and end={end} ({n_rows} rows, horizon "
            f"{horizon}: the last period ends {horizon - 1} rows before the end of df)."
        )
    used = prices[: last + horizon]
    price_map = PRICE_TRANSFORMS[transform]
    checked = used if price_map.positive else prices[first : last + 1]
    if np.any(checked <= 0):
        raise ValueError(
            f"prices must be positive (for returns, and for the {transform!r} transform over the "
            f"whole history); series {ids[0]!r} has {int(np.sum(checked <= 0))} values <= 0."
        )
    if isinstance(record_or_config, ModelRecord) and refit_every is None:
        # The first forecast, made at decision ``first``, targets the next row on.
        provenance.check_out_of_sample(
            record_or_config,
            pack(frame),
            first + 1,
            embargo=embargo,
            allow_in_sample=allow_in_sample,
            what="backtest",
        )
    model_frame = frame.head(last + horizon).with_columns(pl.Series("y", price_map.forward(used)))
    cv = cross_validation(
        record_or_config,
        model_frame,
        n_windows=n_periods,
        step_size=1,
        refit=False if refit_every is None else refit_every,
        training=training,
        optimizer=optimizer,
        levels=levels,
        embargo=embargo,
        allow_in_sample=allow_in_sample,
        key=key,
    )
    next_step = cv.gather_every(horizon)  # rows are cutoff-major: the first step of each
    bounds = [f"{side}_{level:g}" for level in levels for side in ("lo", "hi")]
    forecast_cols = ["y_hat", *quantile_columns(config), *bounds]
    out = pl.DataFrame(
        {
            "unique_id": pl.repeat(ids[0], n_periods, eager=True, dtype=pl.String),
            "ds": frame["ds"].slice(first, n_periods),
            "next_ds": frame["ds"].slice(first + 1, n_periods),
            "price": prices[first:last],
            "next_price": prices[first + 1 : last + 1],
            **{c: price_map.inverse(next_step[c].to_numpy()) for c in forecast_cols},
            "in_sample": next_step["in_sample"],
        }
    )
    return out.with_columns(forecast_return=pl.col("y_hat") / pl.col("price") - 1)
