"""Long-format frames: conversion at the public boundary, validation, wide -> long, frequency.

A long frame has ``unique_id`` (str), ``ds`` (datetime or int), ``y`` (float) and optional
exogenous columns. Series may be interleaved; within a series ``ds`` must strictly increase.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

REQUIRED = ("unique_id", "ds", "y")


def to_polars(df: Any) -> pl.DataFrame:
    """Accepts a polars or pandas frame (or anything ``pl.DataFrame`` takes)."""
    if isinstance(df, pl.DataFrame):
        return df
    if isinstance(df, pl.LazyFrame):
        return df.collect()
    module = type(df).__module__
    if module.startswith("pandas"):
        return pl.from_pandas(df.reset_index(drop=True))
    if isinstance(df, dict):
        return pl.DataFrame(df)
    raise ValueError(f"expected a polars or pandas DataFrame, got {type(df).__name__}.")


def _bad_series(frame: pl.DataFrame, mask: pl.Expr, limit: int = 5) -> str:
    ids = frame.filter(mask)["unique_id"].unique(maintain_order=True).head(limit).to_list()
    return ", ".join(repr(i) for i in ids)


def validate(
    df: Any,
    *,
    exog: Sequence[str] = (),
    min_length: int | None = None,
    length_reason: str = "input_size + horizon",
    require_y: bool = True,
) -> pl.DataFrame:
    """Checks a long frame and returns it normalised (``unique_id`` str, ``y`` Float64,
    ``ds`` Int64 or Datetime("us")), grouped by series with time order kept.

    Raises:
      ValueError: one sentence naming the problem and the offending series, for missing columns,
        non-numeric or NaN/inf values, duplicate ``(unique_id, ds)``, unsorted time, or a series
        shorter than ``min_length`` (``length_reason`` says why in the message).
    """
    return validate_runs(
        df, exog=exog, min_length=min_length, length_reason=length_reason, require_y=require_y
    )[0]


def validate_runs(
    df: Any,
    *,
    exog: Sequence[str] = (),
    min_length: int | None = None,
    length_reason: str = "input_size + horizon",
    require_y: bool = True,
) -> tuple[pl.DataFrame, SeriesRuns]:
    """``validate``, also returning the frame's ``SeriesRuns`` (for ``pack(..., runs=)``, so
    latency-critical paths find the series boundaries once)."""
    frame = to_polars(df)
    required = REQUIRED if require_y else ("unique_id", "ds")
    missing = [c for c in (*required, *exog) if c not in frame.columns]
    if missing:
        raise ValueError(
            f"missing column(s) {missing}; a long frame needs unique_id, ds, y"
            + (f" and the exogenous columns {list(exog)}" if exog else "")
            + f" (got {frame.columns})."
        )
    if frame.height == 0:
        raise ValueError("the frame has no rows.")
    schema = frame.schema
    casts: list[pl.Expr] = []
    if schema["unique_id"] != pl.String:
        casts.append(pl.col("unique_id").cast(pl.String))
    ds_type = schema["ds"]
    if ds_type == pl.Date:
        casts.append(pl.col("ds").cast(pl.Datetime("us")))
    elif isinstance(ds_type, pl.Datetime):
        if ds_type.time_zone is not None or ds_type.time_unit != "us":
            casts.append(pl.col("ds").dt.replace_time_zone(None).dt.cast_time_unit("us"))
    elif ds_type.is_integer():
        if ds_type != pl.Int64:
            casts.append(pl.col("ds").cast(pl.Int64))
    else:
        raise ValueError(f"ds must be a datetime, date or integer column, got {ds_type}.")
    value_cols = [c for c in (("y",) if require_y else ()) + tuple(exog)]
    for col in value_cols:
        dtype = schema[col]
        if not (dtype.is_numeric() and dtype != pl.Boolean):
            raise ValueError(f"column {col!r} must be numeric, got {dtype}.")
        if dtype != pl.Float64:
            casts.append(pl.col(col).cast(pl.Float64))
    if casts:
        frame = frame.with_columns(casts)
    if frame["unique_id"].null_count() or frame["ds"].null_count():
        raise ValueError("unique_id and ds must not contain nulls.")
    runs = SeriesRuns.of(frame)
    if not runs.contiguous:
        # Series are interleaved: group them (stable, so time order within a series stays).
        frame = frame.sort("unique_id", maintain_order=True)
        runs = SeriesRuns.of(frame)
    for col in value_cols:
        values = frame[col].to_numpy()  # nulls become NaN
        if not np.isfinite(values).all():
            raise ValueError(
                f"column {col!r} has null, NaN or infinite values in series "
                f"{runs.names(~np.isfinite(values))}."
            )
    step = runs.steps(datetime_to_us(frame["ds"]))
    if step.min() <= 0:
        if (step == 0).any():
            raise ValueError(f"duplicate (unique_id, ds) rows in series {runs.names(step == 0)}.")
        raise ValueError(
            f"ds is not increasing within series {runs.names(step < 0)}; sort each series by time."
        )
    if min_length is not None and runs.lengths.min() < min_length:
        short = np.flatnonzero(runs.lengths < min_length)[:5]
        names = ", ".join(f"{runs.ids[i]!r} ({runs.lengths[i]} rows)" for i in short)
        raise ValueError(f"series shorter than {length_reason} = {min_length}: {names}.")
    return frame, runs


@dataclass(frozen=True, eq=False)
class SeriesRuns:
    """The runs of equal ``unique_id`` in a frame's row order: one run per series when the
    frame is grouped by series.

    Attributes:
      ids: the ``unique_id`` of each run.
      starts: ``[n_runs + 1]`` first row of each run, then the row count.
      contiguous: whether every series is one run (no id appears in two runs).
    """

    ids: tuple[str, ...]
    starts: np.ndarray
    contiguous: bool

    @classmethod
    def of(cls, frame: pl.DataFrame) -> SeriesRuns:
        """The runs of a frame whose ``unique_id`` has no nulls."""
        # Comparing the column with itself shifted by one row is a plain Series kernel; an
        # ``rle`` expression costs about 50 us more per call on a forecast-sized frame.
        ids = frame["unique_id"]
        first = np.ones(len(ids), bool)  # whether each row starts a run
        first[1:] = (ids[1:] != ids[:-1]).to_numpy()
        starts = np.append(np.flatnonzero(first), len(ids))
        names = tuple(ids.filter(first).to_list())
        return cls(names, starts, len(set(names)) == len(names))

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.starts)

    def row_series(self) -> np.ndarray:
        """``[n_rows]`` run index of each row."""
        return np.repeat(np.arange(len(self.ids)), self.lengths)

    def steps(self, ds: np.ndarray) -> np.ndarray:
        """``[n_rows]`` time step from the previous row of the same run; 1 at each run's first
        row (so only real steps can be zero or negative)."""
        step = np.ones(len(ds), np.int64)
        step[1:] = np.diff(ds)
        step[self.starts[:-1]] = 1
        return step

    def names(self, rows: np.ndarray, limit: int = 5) -> str:
        """The quoted ids of the first ``limit`` series with a flagged row."""
        flagged = np.unique(self.row_series()[rows])[:limit]
        return ", ".join(repr(self.ids[i]) for i in flagged)


def from_wide(
    df: Any,
    *,
    time_col: str,
    value_cols: Sequence[str] | str | None = None,
    id_prefix: str = "",
) -> pl.DataFrame:
    """Turns a wide frame (a time column and one numeric column per series) into long format.

    Args:
      df: polars or pandas frame, e.g. ETT (``date, HUFL, ..., OT``) or OHLCV (``Date, ...``).
      time_col: the time column.
      value_cols: columns that become series (default: every numeric column but ``time_col``).
      id_prefix: prepended to each column name to form ``unique_id``.

    Returns:
      ``unique_id, ds, y`` with series in ``value_cols`` order, each sorted by time.
    """
    frame = to_polars(df)
    if time_col not in frame.columns:
        raise ValueError(f"time column {time_col!r} not in the frame (columns: {frame.columns}).")
    if isinstance(value_cols, str):
        value_cols = [c.strip() for c in value_cols.split(",") if c.strip()]
    if value_cols is None:
        value_cols = [c for c, t in frame.schema.items() if c != time_col and t.is_numeric()]
    missing = [c for c in value_cols if c not in frame.columns]
    if missing:
        raise ValueError(f"value column(s) {missing} not in the frame (columns: {frame.columns}).")
    if not value_cols:
        raise ValueError("no numeric value columns to turn into series.")
    ds = frame[time_col]
    if ds.dtype == pl.String:
        ds = ds.str.to_datetime(strict=False)
        if ds.null_count():
            raise ValueError(f"time column {time_col!r} has values that are not dates.")
    parts = []
    for col in value_cols:
        y = frame[col]
        if y.dtype == pl.String:
            y = y.cast(pl.Float64, strict=False)
        parts.append(
            pl.DataFrame(
                {
                    "unique_id": pl.repeat(f"{id_prefix}{col}", frame.height, eager=True),
                    "ds": ds,
                    "y": y,
                }
            )
        )
    return pl.concat([part.sort("ds", maintain_order=True) for part in parts])


_US = {"s": 1_000_000, "m": 60_000_000, "h": 3_600_000_000, "d": 86_400_000_000}


@dataclass(frozen=True)
class Frequency:
    """A series' step: ``unit`` is ``int`` (integer ds), ``us`` (fixed duration in
    microseconds), ``mo`` (calendar months) or ``bd`` (business days); ``step`` its count."""

    unit: str
    step: int

    def advance(self, last: int, n: int) -> np.ndarray:
        """The ``n`` time stamps after ``last``, both as int64 (microseconds for datetimes)."""
        if self.unit in ("int", "us"):
            return last + self.step * np.arange(1, n + 1, dtype=np.int64)
        base = pl.Series([last] * n, dtype=pl.Int64).cast(pl.Datetime("us")).to_frame("ds")
        counts = pl.Series("k", np.arange(1, n + 1) * self.step)
        if self.unit == "mo":
            shifted = base.select(pl.col("ds").dt.offset_by(pl.format("{}mo", counts)))
        else:
            shifted = base.select(pl.col("ds").dt.add_business_days(counts))
        return shifted.to_series().dt.epoch("us").to_numpy().astype(np.int64)


def infer_frequency(ds: np.ndarray, *, is_int: bool) -> Frequency:
    """Infers the step of one series from its ``ds`` (int64; datetimes in microseconds)."""
    if len(ds) < 2:
        raise ValueError("cannot infer the frequency of a series with fewer than two points.")
    diffs = np.diff(ds[-500:])
    values, counts = np.unique(diffs, return_counts=True)
    mode = int(values[np.argmax(counts)])
    if is_int:
        return Frequency("int", mode)
    day = _US["d"]
    if mode % day == 0:
        days = mode // day
        if 28 <= days <= 31:
            return Frequency("mo", 1)
        if 89 <= days <= 92:
            return Frequency("mo", 3)
        if 365 <= days <= 366:
            return Frequency("mo", 12)
        if days == 1:
            weekday = ((ds[-500:] // day) + 3) % 7  # 1970-01-01 was a Thursday (3)
            if not np.any(weekday >= 5) and np.any(diffs == 3 * day):
                return Frequency("bd", 1)
    return Frequency("us", mode)


def datetime_to_us(values: pl.Series) -> np.ndarray:
    """Int64 microseconds (datetime) or the integers themselves."""
    if values.dtype.is_integer():
        return values.to_numpy().astype(np.int64, copy=False)
    if values.dtype == pl.Datetime("us") and not values.null_count():
        return values.to_numpy().view(np.int64)  # datetime64[us] shares int64's layout
    return values.dt.epoch("us").to_numpy().astype(np.int64)
