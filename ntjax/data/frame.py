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
    ``ds`` Int64 or Datetime), grouped by series with time order kept.

    Raises:
      ValueError: one sentence naming the problem and the offending series, for missing columns,
        non-numeric or NaN/inf values, duplicate ``(unique_id, ds)``, unsorted time, or a series
        shorter than ``min_length`` (``length_reason`` says why in the message).
    """
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
    casts: list[pl.Expr] = []
    if frame.schema["unique_id"] != pl.String:
        casts.append(pl.col("unique_id").cast(pl.String))
    ds_type = frame.schema["ds"]
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
        dtype = frame.schema[col]
        if not (dtype.is_numeric() and dtype != pl.Boolean):
            raise ValueError(f"column {col!r} must be numeric, got {dtype}.")
        if dtype != pl.Float64:
            casts.append(pl.col(col).cast(pl.Float64))
    if casts:
        frame = frame.with_columns(casts)
    if frame["unique_id"].null_count() or frame["ds"].null_count():
        raise ValueError("unique_id and ds must not contain nulls.")
    checks = frame.select(_checks(frame, value_cols))
    if checks["runs"].item() != checks["series"].item():
        # Series are interleaved: group them (stable, so time order within a series stays).
        frame = frame.sort("unique_id", maintain_order=True)
        checks = frame.select(_checks(frame, value_cols))
    for col in value_cols:
        if checks[f"bad_{col}"].item():
            bad = pl.col(col).is_null() | ~pl.col(col).is_finite()
            raise ValueError(
                f"column {col!r} has null, NaN or infinite values in series "
                f"{_bad_series(frame, bad)}."
            )
    if checks["dup"].item():
        raise ValueError(
            f"duplicate (unique_id, ds) rows in series {_bad_series(frame, _step() == 0)}."
        )
    if checks["back"].item():
        raise ValueError(
            f"ds is not increasing within series {_bad_series(frame, _step() < 0)}; "
            "sort each series by time."
        )
    if min_length is not None and checks["shortest"].item() < min_length:
        lengths = frame.group_by("unique_id", maintain_order=True).len()
        short = lengths.filter(pl.col("len") < min_length)
        names = ", ".join(f"{u!r} ({n} rows)" for u, n in short.head(5).iter_rows())
        raise ValueError(f"series shorter than {length_reason} = {min_length}: {names}.")
    return frame


def _step() -> pl.Expr:
    """Time step to the previous row of the same series (null at each series' first row)."""
    ds_int = pl.col("ds").to_physical()
    same = pl.col("unique_id") == pl.col("unique_id").shift(1)
    return pl.when(same).then(ds_int - ds_int.shift(1))


def _checks(frame: pl.DataFrame, value_cols: Sequence[str]) -> list[pl.Expr]:
    """Every validation check as one aggregate each, computed in a single pass."""
    step = _step()
    exprs = [
        pl.col("unique_id").rle_id().max().alias("runs") + 1,
        pl.col("unique_id").n_unique().alias("series"),
        (step == 0).any().alias("dup"),
        (step < 0).any().alias("back"),
        pl.col("unique_id").rle().struct.field("len").min().alias("shortest"),
    ]
    exprs += [
        (pl.col(c).is_null() | ~pl.col(c).is_finite()).any().alias(f"bad_{c}") for c in value_cols
    ]
    return exprs


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
        return values.to_numpy().astype(np.int64)
    return values.dt.epoch("us").to_numpy().astype(np.int64)
