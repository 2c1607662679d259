"""Series packed into dense arrays, and the windows cut from them.

A ``Panel`` holds every series right-aligned in one ``[series, time, channel]`` array (NaN
before a series starts), so "the last ``n`` steps" is the same slice for every series and a
window is ``(series, start)``. Channels are ``y``, then ``hist_exog``, then ``futr_exog``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import polars as pl

from ntjax.config import ModelConfig
from ntjax.data.frame import Frequency, SeriesRuns, datetime_to_us, infer_frequency

_DAY_US = 86_400_000_000


@dataclass(frozen=True, eq=False)
class Panel:
    """Series of a validated long frame as arrays.

    Attributes:
      ids: series names, in frame order.
      columns: channel names (``y`` first).
      values: ``[n_series, time, n_channels]`` float64, right-aligned, NaN-padded on the left.
      lengths: ``[n_series]`` observed points per series.
      ds: ``[n_series, time]`` int64 time stamps (microseconds for datetimes), right-aligned.
      ds_is_int: whether ``ds`` was an integer column.
    """

    ids: tuple[str, ...]
    columns: tuple[str, ...]
    values: np.ndarray
    lengths: np.ndarray
    ds: np.ndarray
    ds_is_int: bool

    @property
    def n_series(self) -> int:
        return len(self.ids)

    @property
    def n_time(self) -> int:
        return self.values.shape[1]

    def _fixed_steps(self) -> tuple[np.ndarray, np.ndarray]:
        """``[n_series]`` last time step of each series, and whether it is the series' fixed
        step: all its steps among the last 500 points are equal and, for datetimes, not whole
        days (those may be business days or months, which ``infer_frequency`` tells apart)."""
        tail = min(500, self.n_time)
        steps = np.diff(self.ds[:, -tail:], axis=1)  # [n_series, tail - 1]
        last = steps[:, -1]
        same = steps == last[:, None]
        if self.lengths.min() < tail:  # steps into a series' left padding do not count
            observed = np.arange(tail - 1) >= (tail - np.minimum(self.lengths, tail))[:, None]
            same |= ~observed
        fixed = same.all(axis=1) & (self.lengths >= 2)
        if not self.ds_is_int:
            fixed &= last % _DAY_US != 0
        return last, fixed

    def frequencies(self) -> list[Frequency]:
        """Each series' step (``infer_frequency`` on its last 500 points). Series with a fixed
        step (``_fixed_steps``), the common case, are read off in one vectorised pass."""
        last, fixed = self._fixed_steps()
        unit = "int" if self.ds_is_int else "us"
        return [
            Frequency(unit, int(step))
            if is_fixed
            else infer_frequency(self.ds[i, self.n_time - n :], is_int=self.ds_is_int)
            for i, (step, is_fixed, n) in enumerate(zip(last, fixed, self.lengths, strict=True))
        ]

    def ds_series(self, values: np.ndarray, name: str = "ds") -> pl.Series:
        """int64 time stamps as a polars Series of this panel's ``ds`` type."""
        series = pl.Series(name, np.asarray(values, np.int64).reshape(-1))
        return series if self.ds_is_int else series.cast(pl.Datetime("us"))

    def future_ds(self, horizon: int) -> np.ndarray:
        """``[n_series, horizon]`` int64 time stamps after each series' last one."""
        offsets = np.arange(1, horizon + 1, dtype=np.int64)
        last, fixed = self._fixed_steps()
        if fixed.all():  # the common case: one broadcast, no Frequency objects
            return self.ds[:, -1:] + last[:, None] * offsets
        frequencies = self.frequencies()
        if all(f.unit in ("int", "us") for f in frequencies):
            steps = np.array([f.step for f in frequencies], np.int64)
            return self.ds[:, -1:] + steps[:, None] * offsets
        return np.stack(
            [
                f.advance(int(last), horizon)
                for f, last in zip(frequencies, self.ds[:, -1], strict=True)
            ]
        )

    def head(self, n_time: int) -> Panel:
        """The panel cut to its first ``n_time`` steps (as if later data did not exist)."""
        drop = self.n_time - n_time
        lengths = np.maximum(self.lengths - drop, 0)
        pad = np.full((self.n_series, drop, len(self.columns)), np.nan)
        values = np.concatenate([pad, self.values[:, :n_time]], axis=1)
        ds = np.concatenate([np.zeros((self.n_series, drop), np.int64), self.ds[:, :n_time]], 1)
        return Panel(self.ids, self.columns, values, lengths, ds, self.ds_is_int)


def pack(
    frame: pl.DataFrame,
    columns: Sequence[str] = ("y",),
    *,
    tail: int | None = None,
    runs: SeriesRuns | None = None,
) -> Panel:
    """Packs a validated long frame (rows grouped by series, time-ordered).

    Args:
      frame: output of ``ntjax.data.validate``.
      columns: value columns to pack, ``y`` first.
      tail: keep only the last ``tail`` rows of each series (fast path for forecasting).
      runs: the frame's runs when already known (``validate_runs``).
    """
    runs = SeriesRuns.of(frame) if runs is None else runs
    if not runs.contiguous:
        raise ValueError("rows of each series must be contiguous; pass the frame through validate.")
    ends = runs.starts[1:]
    lengths = runs.lengths if tail is None else np.minimum(runs.lengths, tail)
    n_time = int(lengths.max())
    is_int = frame["ds"].dtype.is_integer()
    if (lengths == n_time).all():  # no padding (e.g. a forecast's tails): one gather per column
        rows = (ends - n_time)[:, None] + np.arange(n_time)[None, :]
        values = np.stack([frame[name].to_numpy()[rows] for name in columns], axis=-1)
        ds = datetime_to_us(frame["ds"])[rows]
        return Panel(
            runs.ids, tuple(columns), values.astype(np.float64, copy=False), lengths, ds, is_int
        )
    # Row r of series s lands at time position n_time - (end_s - r).
    series_of_row = np.repeat(np.arange(len(runs.ids)), lengths)
    offset = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    row_index = np.repeat(ends - lengths, lengths) + offset  # the kept rows, series by series
    time_pos = np.repeat(n_time - lengths, lengths) + offset
    values = np.full((len(runs.ids), n_time, len(columns)), np.nan)
    for j, name in enumerate(columns):
        values[series_of_row, time_pos, j] = frame[name].to_numpy()[row_index]
    ds = np.zeros((len(runs.ids), n_time), np.int64)
    ds[series_of_row, time_pos] = datetime_to_us(frame["ds"])[row_index]
    return Panel(runs.ids, tuple(columns), values, lengths, ds, is_int)


def channels(config: ModelConfig) -> tuple[str, ...]:
    """The channel layout a config trains on."""
    return ("y", *config.hist_exog, *config.futr_exog)


def gather_windows(
    values: jax.Array, series: jax.Array, starts: jax.Array, length: int
) -> jax.Array:
    """Cuts windows on the device.

    Args:
      values: ``[n_series, time, n_channels]``.
      series: ``[batch]`` series index of each window.
      starts: ``[batch]`` first time index of each window.
      length: window length (static).

    Returns:
      ``[batch, length, n_channels]``.
    """
    time = starts[:, None] + jnp.arange(length)[None, :]
    return values[series[:, None], time]


def split_window(window: jax.Array, config: ModelConfig) -> tuple[dict[str, jax.Array], jax.Array]:
    """Splits ``[batch, input_size + horizon, n_channels]`` windows into model inputs and
    ``[batch, horizon]`` targets."""
    size = config.input_size
    n_hist = len(config.hist_exog)
    inputs = {"y": window[:, :size, 0]}
    if n_hist:
        inputs["hist_exog"] = window[:, :size, 1 : 1 + n_hist]
    if config.futr_exog:
        inputs["futr_exog"] = window[:, :, 1 + n_hist :]
    return inputs, window[:, size:, 0]
