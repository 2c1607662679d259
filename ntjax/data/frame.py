"""Long-format frames: conversion at the public boundary, validation, wide -> long, frequency.

A long frame has ``unique_id`` (str), ``ds`` (datetime or int), ``y`` (float) and optional
exogenous columns. Series may be interleaved; within a series ``ds`` must strictly increase.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from ntjax.config import ConfigError

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
        non-numeric values, missing (null or NaN) values in ``y`` or ``exog`` (with their count
        and first dates), infinite values, duplicate ``(unique_id, ds)`` (with the first
        duplicated timestamps), unsorted time, or a series shorter than ``min_length``
        (``length_reason`` says why in the message).
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
    casts = _key_casts(schema)
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
            missing = missing_values_message(frame, value_cols)
            if missing is not None:
                raise ValueError(missing)
            infinite = _value_message(frame, value_cols, _infinite, "infinite")
            raise ValueError(
                f"{infinite}; infinite values are not treated as missing: replace or remove them."
            )
    step = runs.steps(datetime_to_us(frame["ds"]))
    if step.min() <= 0:
        if (step == 0).any():
            raise ValueError(duplicates_message(frame))
        raise ValueError(
            f"ds is not increasing within series {runs.names(step < 0)}; sort each series by time."
        )
    if min_length is not None and runs.lengths.min() < min_length:
        short = np.flatnonzero(runs.lengths < min_length)[:5]
        names = ", ".join(f"{runs.ids[i]!r} ({runs.lengths[i]} rows)" for i in short)
        raise ConfigError(f"series shorter than {length_reason} = {min_length}: {names}.")
    return frame, runs


def _key_casts(schema: pl.Schema) -> list[pl.Expr]:
    """Casts that bring ``unique_id`` to String and ``ds`` to Int64 or Datetime("us") (time zone
    dropped, wall time kept)."""
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
    return casts


def normalise_keys(df: Any) -> pl.DataFrame:
    """``unique_id`` as String and ``ds`` as Int64 or Datetime("us"), as ``validate`` leaves
    them, without validate's checks of the values (for frames that still have missing values,
    duplicates or gaps to repair)."""
    frame = to_polars(df)
    missing = [c for c in ("unique_id", "ds") if c not in frame.columns]
    if missing:
        raise ValueError(f"missing column(s) {missing}; a long frame needs unique_id, ds, y.")
    casts = _key_casts(frame.schema)
    if casts:
        frame = frame.with_columns(casts)
    if frame["unique_id"].null_count() or frame["ds"].null_count():
        raise ValueError("unique_id and ds must not contain nulls.")
    return frame


# -- messages that name the offending rows (built only when a check has failed) ----------------

_SHOWN_STAMPS = 3  # timestamps shown per series in a message
_SHOWN_ITEMS = 3  # series (or keys) shown in a message
MISSING_HINT = "pass --missing drop|ffill|interpolate (or nt.data.fill_missing(df, method=...))"


def format_stamps(values: pl.Series, ds: pl.Series) -> list[str]:
    """``values`` (taken from ``ds``) as text: integers as they are; datetimes as dates when
    every stamp of ``ds`` is at midnight, else as date and time."""
    if values.dtype.is_integer():
        return [str(v) for v in values.to_list()]
    if values.dtype == pl.Date:
        return [v.isoformat() for v in values.to_list()]
    dates_only = bool((datetime_to_us(ds) % _US["d"] == 0).all())
    return [v.date().isoformat() if dates_only else str(v) for v in values.to_list()]


def is_missing(column: str, dtype: pl.DataType) -> pl.Expr:
    """Null, or NaN in a float column: what counts as a missing value."""
    missing = pl.col(column).is_null()
    return missing | pl.col(column).is_nan() if dtype.is_float() else missing


def _value_message(
    frame: pl.DataFrame,
    columns: Sequence[str],
    flag: Callable[[str, pl.DataType], pl.Expr],
    noun: str,
) -> str | None:
    """Names, per series and column, the rows where ``flag(column, dtype)`` holds, e.g.
    ``series 'a' has 2 missing values in y (first at 1, 4)``; None when it holds nowhere.
    ``frame`` is in time order within each series, so "first" is the earliest."""
    parts: list[str] = []
    more = 0
    for col in columns:
        flagged = frame.filter(flag(col, frame.schema[col]))
        if flagged.height == 0:
            continue
        table = flagged.group_by("unique_id", maintain_order=True).agg(
            pl.len().alias("count"), pl.col("ds").head(_SHOWN_STAMPS)
        )
        for uid, count, stamps in table.iter_rows():
            if len(parts) == _SHOWN_ITEMS:
                more += 1
                continue
            shown = format_stamps(pl.Series(stamps, dtype=frame["ds"].dtype), frame["ds"])
            parts.append(
                f"series {uid!r} has {count} {noun} value{'s' if count > 1 else ''} in {col} "
                f"({'at' if count == 1 else 'first at'} {', '.join(shown)})"
            )
    if not parts:
        return None
    if more:
        parts.append(f"and {more} more series or columns")
    return ", ".join(parts)


def missing_values_message(frame: pl.DataFrame, columns: Sequence[str]) -> str | None:
    """The sentence naming missing (null or NaN) values of ``columns``: the series, the count
    and the first dates, then how to handle them; None when there are none. ``frame`` has
    ``unique_id`` and ``ds`` and is in time order within each series."""
    found = _value_message(frame, columns, is_missing, "missing")
    return None if found is None else f"{found}; {MISSING_HINT}."


def _infinite(column: str, dtype: pl.DataType) -> pl.Expr:
    return pl.col(column).is_infinite() if dtype.is_float() else pl.lit(False)


def duplicates_message(frame: pl.DataFrame, *, conflicting_only: bool = False) -> str:
    """The sentence naming the first duplicated ``(unique_id, ds)`` keys, how many rows each
    has and whether they differ, then how to handle them. With ``conflicting_only``, only the
    keys whose rows differ in some column are named."""
    keys = ["unique_id", "ds"]
    counts = (
        frame.group_by(keys, maintain_order=True)
        .agg(pl.len().alias("rows"))
        .filter(pl.col("rows") > 1)
    )
    distinct = frame.unique(maintain_order=True).group_by(keys).agg(pl.len().alias("distinct"))
    table = counts.join(distinct, on=keys, how="left", maintain_order="left")
    if conflicting_only:
        table = table.filter(pl.col("distinct") > 1)
    stamps = format_stamps(table["ds"].head(_SHOWN_ITEMS), frame["ds"])
    parts = [
        f"series {uid!r} at {stamp} ({rows} rows{', values differ' if distinct > 1 else ''})"
        for (uid, _, rows, distinct), stamp in zip(
            table.head(_SHOWN_ITEMS).iter_rows(), stamps, strict=True
        )
    ]
    if table.height > _SHOWN_ITEMS:
        parts.append(f"and {table.height - _SHOWN_ITEMS} more")
    keep_hint = (
        "keep one of each with --duplicates first|last "
        "(or nt.data.drop_duplicates(df, keep='first'|'last'))"
    )
    if conflicting_only:
        return (
            "conflicting duplicate (unique_id, ds) rows (same key, different values): "
            f"{', '.join(parts)}; {keep_hint}, or fix the data."
        )
    if (table["distinct"] > 1).any():
        return f"duplicate (unique_id, ds) rows: {', '.join(parts)}; {keep_hint}."
    return (
        f"duplicate (unique_id, ds) rows: {', '.join(parts)}; they are exact copies: drop "
        "exact duplicate rows with --duplicates drop (or nt.data.drop_duplicates(df))."
    )


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


MISSING_TOKENS = frozenset(
    ["", "null", "none", "nil", "na", "n/a", "nan", "-nan", "#n/a", "#na", "#n/a n/a"]
    + [".", "-", "--", "?"]  # FRED's ".", and marks some exports use for "no value"
)
"""Text read as a missing value (compared stripped and lower-cased) in a column whose other
values are numbers. Only such columns are converted, so a text column (a ticker ``NA``, a
label ``-``) keeps its values."""


def _parse_numbers(text: pl.Series) -> tuple[pl.Series, pl.Series]:
    """Float64 values of a text column (missing-value tokens become null) and a mask of the
    values that are neither numbers nor tokens."""
    stripped = text.str.strip_chars()
    token = stripped.is_null() | stripped.str.to_lowercase().is_in(list(MISSING_TOKENS))
    numbers = stripped.cast(pl.Float64, strict=False)
    values = pl.select(pl.when(token).then(None).otherwise(numbers)).to_series().alias(text.name)
    return values, numbers.is_null() & ~token


def coerce_numeric(df: Any, *, exclude: Sequence[str] = ("unique_id", "ds")) -> pl.DataFrame:
    """Turns text columns that hold numbers and missing-value marks into Float64 columns.

    A CSV column with a ``null``, ``NA``, ``N/A``, ``NaN``, ``.`` (FRED), ``-`` or empty cell
    among its numbers is read as text; this reads it as numbers with those cells null (see
    ``MISSING_TOKENS``). A text column with any other non-number (or with no number at all)
    is left as it is.

    Args:
      df: polars or pandas frame.
      exclude: columns never converted (ids, time stamps).

    Returns:
      The frame with those columns as Float64.
    """
    frame = to_polars(df)
    converted = []
    for name, dtype in frame.schema.items():
        if dtype != pl.String or name in exclude:
            continue
        values, not_numbers = _parse_numbers(frame[name])
        if not not_numbers.any() and values.null_count() < len(values):
            converted.append(values)
    return frame.with_columns(converted) if converted else frame


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
      ``unique_id, ds, y`` with series in ``value_cols`` order, each sorted by time. A text
      value column is read as numbers with ``MISSING_TOKENS`` as nulls (``y`` may then have
      missing values: see ``fill_missing``).

    Raises:
      ValueError: for an absent column, a time stamp that is not a date, or a value that is
        neither a number nor a missing-value mark (naming the first one and its row).
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
            bad = np.flatnonzero(ds.is_null().to_numpy())
            raise ValueError(
                f"time column {time_col!r} has {len(bad)} value(s) that are not dates (first "
                f"{frame[time_col][int(bad[0])]!r} in data row {int(bad[0]) + 1})."
            )
    parts = []
    for col in value_cols:
        y = frame[col]
        if y.dtype == pl.String:
            y, not_numbers = _parse_numbers(y)
            if not_numbers.any():
                bad = np.flatnonzero(not_numbers.to_numpy())
                raise ValueError(
                    f"value column {col!r} has {len(bad)} value(s) that are neither numbers nor "
                    f"missing-value marks (first {frame[col][int(bad[0])]!r} in data row "
                    f"{int(bad[0]) + 1})."
                )
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
