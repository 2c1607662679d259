"""Real-time streaming inference.

``StreamingForecaster`` keeps each series' last ``input_size`` scaled points in a
device-resident ring buffer. ``update`` writes new observations into the buffers and returns the
new forecasts of the series that ticked from one jitted call: no window is rebuilt on the host.
Optionally, every ``adapt_every`` ticks a background thread fine-tunes the model for a few steps
on the recent data and swaps in the new record (new id, ``parent_id`` set) without blocking
forecasts.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import threading
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import polars as pl

from ntjax._jit import family_jit
from ntjax.config import ModelConfig, TrainingConfig
from ntjax.data.frame import datetime_to_us, to_polars, validate, validate_runs
from ntjax.data.windows import channels, pack
from ntjax.models import compile_options, spec_for
from ntjax.predict.batch import adjust_quantiles
from ntjax.predict.inputs import forecast_frame, level_quantiles, quantile_index, scaler_rows
from ntjax.record import ModelRecord
from ntjax.train import fit


@functools.partial(
    family_jit,
    options_of=compile_options,
    static_argnames=("config",),
    donate_argnames=("buffer", "head"),
)
def _tick(
    config: ModelConfig, params, buffer, head, rows, values, key, tick
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Writes one observation for each of ``rows`` and predicts those series.

    Args:
      buffer: ``[n_series, input_size, n_channels]`` ring buffers (scaled).
      head: ``[n_series]`` int32 position of each buffer's oldest point.
      rows: ``[k]`` int32 series indices; ``n_series`` marks padding.
      values: ``[k, n_channels]`` scaled observations.
      key, tick: the stream's key and tick counter (sampling models use ``fold_in(key, tick)``).

    Returns:
      New ``buffer``, ``head`` and ``[k, horizon, n_quantiles]`` scaled forecasts.
    """
    n_series, size = buffer.shape[0], buffer.shape[1]
    safe = jnp.minimum(rows, n_series - 1)
    buffer = buffer.at[rows, head[safe]].set(values, mode="drop")
    head = head.at[rows].set((head[safe] + 1) % size, mode="drop")
    order = (head[safe][:, None] + jnp.arange(size)[None, :]) % size
    windows = buffer[safe[:, None], order]  # [k, input_size, n_channels], oldest first
    inputs = {"y": windows[..., 0]}
    if config.hist_exog:
        inputs["hist_exog"] = windows[..., 1:]
    spec = spec_for(config)
    key = jax.random.fold_in(key, tick) if spec.is_stochastic(config) else None
    return buffer, head, spec.predict_quantiles(config, params, inputs, key=key)


def _bucket(n: int, n_series: int) -> int:
    """Padded batch size: every series (the usual tick of a live feed) is its own size;
    otherwise powers of two up to 16, then multiples of 16, so a handful of compiled shapes
    cover every tick size with little padding."""
    if n == n_series:
        return n
    return 1 << max(0, (n - 1).bit_length()) if n <= 16 else -(-n // 16) * 16


class StreamingForecaster:
    """Forecasts that follow a live feed, one jitted call per tick.

    A calibrated record's intervals take its fixed offsets (``extra["calibration"]["offsets"]``:
    for the default rolling calibration, those of its calibration tail); ``nt.forecast`` of a
    rolling-calibrated record recomputes them from the latest resolved windows instead.

    Args:
      record: a trained model (without future-known exogenous inputs).
      history_df: long frame with at least ``input_size`` points per series.
      levels: interval levels returned with each forecast.
      adapt_every: fine-tune every this many ticks (None: never).
      adapt_steps: gradient steps of each fine-tuning.
      adapt_window: recent points per series kept for fine-tuning.
      key: PRNG key for sampling models (default ``jax.random.key(0)``, a documented seed).

    Example:
      stream = nt.StreamingForecaster(record, history)
      frame = stream.update(pl.DataFrame({"unique_id": ["OT"], "ds": [t], "y": [21.3]}))
    """

    def __init__(
        self,
        record: ModelRecord,
        history_df: Any,
        *,
        levels: Sequence[float] = (),
        adapt_every: int | None = None,
        adapt_steps: int = 20,
        adapt_window: int = 2000,
        key: jax.Array | None = None,
    ) -> None:
        config = record.config
        if config.futr_exog:
            raise ValueError(
                "streaming needs future values a tick does not carry: the model uses futr_exog "
                f"{list(config.futr_exog)}; use nt.forecast with futr_df instead."
            )
        for level in levels:
            for q in level_quantiles(level):
                quantile_index(config, q)
        frame = validate(
            history_df,
            exog=config.hist_exog,
            min_length=config.input_size,
            length_reason="input_size",
        )
        keep = max(config.input_size, adapt_window if adapt_every else 0, 2)
        panel = pack(frame, channels(config), tail=keep)
        self.record = record
        self.levels = tuple(levels)
        self._panel = panel
        self._index = {u: i for i, u in enumerate(panel.ids)}
        self._loc, self._scale = scaler_rows(record.scaler, panel)
        scaled = (panel.values[:, -config.input_size :] - self._loc[:, None]) / self._scale[:, None]
        self._buffer = jnp.asarray(scaled, jnp.float32)
        self._head = jnp.zeros(panel.n_series, jnp.int32)
        self._last_ds = panel.ds[:, -1].copy()
        self._frequencies = panel.frequencies()
        self._key = jax.random.key(0) if key is None else key
        self._ticks = 0
        self._lock = threading.Lock()
        self.adapt_every, self.adapt_steps = adapt_every, adapt_steps
        self._recent = [
            collections.deque(
                zip(
                    panel.ds[i, panel.n_time - n :],
                    panel.values[i, panel.n_time - n :],
                    strict=True,
                ),
                maxlen=keep,
            )
            for i, n in enumerate(panel.lengths)
        ]
        self._adapter: threading.Thread | None = None
        self._adapt_error: BaseException | None = None
        self.records: list[ModelRecord] = [record]

    @property
    def ids(self) -> tuple[str, ...]:
        return self._panel.ids

    def update_arrays(
        self, unique_ids: Sequence[str], ds: Sequence[Any], values: np.ndarray
    ) -> np.ndarray:
        """Fast path: ``values`` ``[n_ticks, n_channels]`` (``y`` then ``hist_exog``) observed at
        ``ds`` (int, or datetimes) for ``unique_ids``; at most one tick per series.

        Returns:
          ``[n_ticks, horizon, n_quantiles]`` forecasts in original units, in tick order.
        """
        rows, stamps, values = self._check(unique_ids, ds, values)
        with self._lock:
            quantiles = self._advance(rows, stamps, values)
        self._maybe_adapt()
        return quantiles

    def update(self, ticks: Any) -> pl.DataFrame:
        """Takes new observations (a long frame ``unique_id, ds, y`` + ``hist_exog`` columns,
        any number of ticks per series, each series in time order) and returns the forecast
        frame (as ``nt.forecast``) of every series that ticked, from its newest point.

        Raises:
          ValueError: for unknown series, NaN/inf values, or a time stamp not after the series'
            last one; the state is then unchanged.
        """
        self._raise_adaptation_error()
        config = self.record.config
        frame = to_polars(ticks)
        missing = [c for c in ("unique_id", "ds", *channels(config)) if c not in frame.columns]
        if missing:
            raise ValueError(f"ticks lack column(s) {missing}.")
        frame, runs = validate_runs(frame, exog=config.hist_exog)
        expected = pl.Int64 if self._panel.ds_is_int else pl.Datetime("us")
        if frame.schema["ds"] != expected:
            raise ValueError(
                f"tick ds must be {expected} like the history, got {frame.schema['ds']}."
            )
        raw = np.stack([frame[c].to_numpy() for c in channels(config)], axis=1)
        ds = datetime_to_us(frame["ds"])
        rank = np.arange(frame.height) - np.repeat(runs.starts[:-1], runs.lengths)
        rows, ds, raw = self._check(frame["unique_id"].to_list(), ds, raw, allow_repeats=True)
        latest: dict[int, np.ndarray] = {}
        with self._lock:
            for k in range(int(rank.max()) + 1):  # the k-th tick of every series, in order
                pick = rank == k
                quantiles = self._advance(rows[pick], ds[pick], raw[pick])
                latest.update(zip(rows[pick].tolist(), quantiles, strict=True))
        self._maybe_adapt()
        ticked = np.array(list(latest), np.int64)
        return self._frame(ticked, np.stack([latest[r] for r in latest]))

    def _check(self, unique_ids, ds, values, allow_repeats: bool = False):
        config = self.record.config
        values = np.asarray(values, np.float64).reshape(len(unique_ids), -1)
        if values.shape[1] != len(channels(config)):
            raise ValueError(f"each tick needs {len(channels(config))} values {channels(config)}.")
        unknown = [u for u in unique_ids if u not in self._index]
        if unknown:
            raise ValueError(f"ticks for unknown series {sorted(set(unknown))[:5]}.")
        if not np.isfinite(values).all():
            raise ValueError("ticks contain NaN or infinite values.")
        rows = np.fromiter((self._index[u] for u in unique_ids), np.int64, len(unique_ids))
        repeats = len(set(unique_ids)) != len(rows)
        if repeats and not allow_repeats:
            raise ValueError("update_arrays takes at most one tick per series; use update().")
        if not isinstance(ds, np.ndarray):
            ds = pl.Series(list(ds)).to_physical().to_numpy()
        stamps = np.asarray(ds, np.int64)
        first = np.unique(rows, return_index=True)[1] if repeats else slice(None)
        late = stamps[first] <= self._last_ds[rows[first]]
        if late.any():
            bad = self.ids[rows[first][late][0]]
            raise ValueError(f"out-of-order tick for series {bad!r}: ds is not after its last one.")
        return rows, stamps, values

    def _advance(self, rows: np.ndarray, stamps: np.ndarray, raw: np.ndarray) -> np.ndarray:
        config = self.record.config
        n, size = len(rows), _bucket(len(rows), self._panel.n_series)
        scaled = (raw - self._loc[rows]) / self._scale[rows]
        padded_rows = np.full(size, self._panel.n_series, np.int32)
        padded_rows[:n] = rows
        padded = np.zeros((size, raw.shape[1]), np.float32)
        padded[:n] = scaled
        self._ticks += 1
        self._buffer, self._head, quantiles = _tick(
            config,
            self.record.params,
            self._buffer,
            self._head,
            padded_rows,
            padded,
            self._key,
            np.int32(self._ticks),
        )
        self._last_ds[rows] = stamps
        if self.adapt_every:  # recent data only matters to fine-tuning
            for r, d, v in zip(rows, stamps, raw, strict=True):
                self._recent[r].append((d, v))
        out = adjust_quantiles(self.record, np.asarray(quantiles)[:n])
        return out * self._scale[rows, None, None, 0] + self._loc[rows, None, None, 0]

    def _frame(self, rows: np.ndarray, quantiles: np.ndarray) -> pl.DataFrame:
        config = self.record.config
        future = np.stack(
            [self._frequencies[r].advance(int(self._last_ds[r]), config.horizon) for r in rows]
        )
        sub = dataclasses.replace(self._panel, ids=tuple(self.ids[r] for r in rows))
        return forecast_frame(config, sub, future, quantiles, self.levels)

    def recent_frame(self) -> pl.DataFrame:
        """The recent observations kept per series (history tail + ticks) as a long frame."""
        parts = []
        for uid, points in zip(self.ids, self._recent, strict=True):
            ds = np.array([p[0] for p in points], np.int64)
            values = np.stack([p[1] for p in points])
            columns = {"unique_id": [uid] * len(ds), "ds": self._panel.ds_series(ds)}
            for j, name in enumerate(channels(self.record.config)):
                columns[name] = values[:, j]
            parts.append(pl.DataFrame(columns))
        return pl.concat(parts)

    def _maybe_adapt(self) -> None:
        if not self.adapt_every or self._ticks % self.adapt_every:
            return
        if self._adapter is not None and self._adapter.is_alive():
            return  # the previous adaptation is still running: never queue up work
        recent = self.recent_frame()
        parent = self.record

        def adapt() -> None:
            training = TrainingConfig(
                max_steps=self.adapt_steps,
                batch_size=min(parent.training.batch_size if parent.training else 64, 64),
                val_check_steps=self.adapt_steps,
                scaler=parent.scaler.kind,
                progress=False,
                seed=self._ticks,
            )
            try:
                child = fit(recent, parent.config, training, parent.optimizer, init_from=parent)
            except BaseException as error:  # noqa: BLE001 - handed to the caller's next call
                with self._lock:
                    self._adapt_error = error
                return
            with self._lock:
                self.record = child
                self.records.append(child)

        self._adapter = threading.Thread(target=adapt, name="ntjax-adapt", daemon=True)
        self._adapter.start()

    def wait_for_adaptation(self, timeout: float | None = None) -> None:
        """Blocks until a running fine-tuning has swapped in its record (for tests, scripts);
        raises the error of an adaptation that failed."""
        if self._adapter is not None:
            self._adapter.join(timeout)
        self._raise_adaptation_error()

    def _raise_adaptation_error(self) -> None:
        """An exception of the background fine-tuning reaches the caller once, at its next
        call; the stream keeps forecasting with the record it had."""
        with self._lock:
            error, self._adapt_error = self._adapt_error, None
        if error is not None:
            raise RuntimeError(
                f"the background fine-tuning of the stream failed: {error}"
            ) from error
