"""Repairs for messy long frames: missing values, duplicate rows, missing timestamps.

Each function takes a long frame (``unique_id``, ``ds``, ``y`` and optional exogenous columns;
polars or pandas), works within each series (never across two) and returns a new frame; the
input is never changed. Nothing is repaired unless asked: ``validate`` (and so ``nt.train``,
``nt.forecast``) refuses missing values and duplicates with a sentence naming them, and these
are the explicit options that sentence points to (the CLI's ``--missing``, ``--duplicates``,
``--fill-gaps``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import polars as pl

from ntjax.data.frame import (
    Frequency,
    SeriesRuns,
    datetime_to_us,
    duplicates_message,
    infer_frequency,
    is_missing,
    missing_values_message,
    normalise_keys,
    to_polars,
)

MissingMethod = Literal["error", "drop", "ffill", "interpolate"]
MISSING_METHODS: tuple[str, ...] = ("error", "drop", "ffill", "interpolate")
DuplicateKeep = Literal["exact", "first", "last", "error"]
DUPLICATE_KEEPS: tuple[str, ...] = ("exact", "first", "last", "error")
GapMethod = Literal["null", "ffill", "interpolate"]
GAP_METHODS: tuple[str, ...] = ("null", "ffill", "interpolate")

_KEYS = ("unique_id", "ds")
_DAY_US = 86_400_000_000
_ROW = "__ntjax_row"
_FIRST = "__ntjax_first_row"
_INSERTED = "__ntjax_inserted"


def _choice(value: str, choices: Sequence[str], what: str) -> None:
    if value not in choices:
        raise ValueError(f"{what} must be one of {', '.join(choices)}; got {value!r}.")


def _value_columns(frame: pl.DataFrame, columns: Sequence[str] | None) -> list[str]:
    if columns is None:
        return [
            name
            for name, dtype in frame.schema.items()
            if name not in _KEYS and dtype.is_numeric() and dtype != pl.Boolean
        ]
    absent = [c for c in columns if c not in frame.columns]
    if absent:
        raise ValueError(f"column(s) {absent} not in the frame (columns: {frame.columns}).")
    return list(dict.fromkeys(columns))


def fill_missing(
    df: Any,
    method: MissingMethod = "error",
    *,
    columns: Sequence[str] | None = None,
) -> pl.DataFrame:
    """Handles missing values (null or NaN) in ``y`` and the exogenous columns, per series.

    Args:
      df: long frame (polars or pandas) with ``unique_id``, ``ds`` and the value columns.
      method: what to do with a missing value:

        * ``"error"``: raise a ``ValueError`` naming, per series, the count of missing values
          and their first dates (the frame comes back unchanged when nothing is missing).
        * ``"drop"``: remove every row with a missing value in one of ``columns``.
        * ``"ffill"``: carry the series' last known value forward (in time order). Missing
          values before a series' first known value cannot be filled: those rows are dropped.
        * ``"interpolate"``: linear interpolation in time (by ``ds``, so uneven steps are
          weighted by their length) between the known values before and after. Missing
          values before a series' first or after its last known value have only one
          neighbour: those rows are dropped (use ``"ffill"`` to carry the last value to the
          end instead).

        A row is dropped when any of its ``columns`` stays missing.
      columns: the value columns to check and fill (default: ``y`` and every other numeric
        column except ``ds``).

    Returns:
      A new frame with the input's columns and row order, less the dropped rows; after
      ``drop``, ``ffill`` or ``interpolate`` no value of ``columns`` is null or NaN
      (``interpolate`` makes integer columns Float64).

    Raises:
      ValueError: with ``method="error"`` when a value is missing, e.g. "series 'BTC-USD' has
        3 missing values in y (first at 2020-04-17, 2020-10-09, 2020-10-12); pass --missing
        drop|ffill|interpolate (or nt.data.fill_missing(df, method=...))."; or for an unknown
        ``method`` or column.
    """
    _choice(method, MISSING_METHODS, "method")
    frame = to_polars(df)
    absent = [c for c in _KEYS if c not in frame.columns]
    if absent:
        raise ValueError(f"missing column(s) {absent}; a long frame needs unique_id, ds, y.")
    value_cols = _value_columns(frame, columns)
    masks = [is_missing(c, frame.schema[c]) for c in value_cols]
    any_missing = pl.any_horizontal(masks) if masks else pl.lit(False)
    if not value_cols or not frame.select(any_missing.any()).item():
        return frame.clone()
    if method == "drop":
        return frame.filter(~any_missing)
    # Fill in time order within each series, then put the rows back in their input order.
    work = _series_order(frame.with_row_index(_ROW))
    if method == "error":
        raise ValueError(missing_values_message(work, value_cols))
    filled = []
    for name in value_cols:
        values = pl.col(name)
        if frame.schema[name].is_float():
            values = values.fill_nan(None)
        values = values.forward_fill() if method == "ffill" else values.interpolate_by("ds")
        filled.append(values.over("unique_id").alias(name))
    work = work.with_columns(filled)
    still_missing = pl.any_horizontal(pl.col(c).is_null() for c in value_cols)
    return work.filter(~still_missing).sort(_ROW).drop(_ROW)


def drop_duplicates(df: Any, *, keep: DuplicateKeep = "exact") -> pl.DataFrame:
    """Removes repeated ``(unique_id, ds)`` rows.

    Args:
      df: long frame (polars or pandas).
      keep: which rows stay:

        * ``"exact"``: drop rows that are exact copies (every column equal, NaN equal to
          NaN) of an earlier row; rows with the same ``(unique_id, ds)`` but different
          values are refused (``ValueError`` naming them), since no copy is the right one.
        * ``"first"`` / ``"last"``: keep the first / last row (in frame order) of each
          ``(unique_id, ds)``, whatever its values.
        * ``"error"``: drop nothing; refuse any duplicate (what ``validate`` does), naming
          the first duplicated stamps and whether their rows are exact copies.

    Returns:
      A new frame with the remaining rows in their input order.

    Raises:
      ValueError: with ``keep="error"`` for any duplicate, e.g. "duplicate (unique_id, ds)
        rows: series 'OT' at 2016-07-01 00:00:00 (2 rows); they are exact copies: drop exact
        duplicate rows with --duplicates drop (or nt.data.drop_duplicates(df))."; with
        ``keep="exact"``, for conflicting duplicates, e.g. "conflicting
        duplicate (unique_id, ds) rows (same key, different values): series 'OT' at
        2016-07-01 00:00:00 (2 rows, values differ); keep one of each with --duplicates
        first|last (or nt.data.drop_duplicates(df, keep='first'|'last')), or fix the data."
    """
    _choice(keep, DUPLICATE_KEEPS, "keep")
    frame = to_polars(df)
    absent = [c for c in _KEYS if c not in frame.columns]
    if absent:
        raise ValueError(f"missing column(s) {absent}; a long frame needs unique_id, ds, y.")
    if keep == "error":
        if frame.select(pl.struct(_KEYS).is_duplicated().any()).item():
            raise ValueError(duplicates_message(_series_order(frame)))
        return frame.clone()
    if keep != "exact":
        return frame.unique(subset=list(_KEYS), keep=keep, maintain_order=True)
    kept = frame.unique(maintain_order=True)
    if kept.select(pl.struct(_KEYS).is_duplicated().any()).item():
        raise ValueError(duplicates_message(kept, conflicting_only=True))
    return kept


def _series_order(frame: pl.DataFrame) -> pl.DataFrame:
    """Series in order of first appearance, each sorted by time (stable). Keeps a ``_ROW``
    column (the input row index) when the frame has one."""
    keep_row = _ROW in frame.columns
    if not keep_row:
        frame = frame.with_row_index(_ROW)
    ordered = (
        frame.with_columns(pl.col(_ROW).min().over("unique_id").alias(_FIRST))
        .sort([_FIRST, "ds", _ROW])
        .drop(_FIRST)
    )
    return ordered if keep_row else ordered.drop(_ROW)


def _gaps_of_series(ds: np.ndarray, frequency: Frequency) -> np.ndarray:
    """The stamps missing from one series' regular grid, int64 (microseconds for datetimes).

    ``ds`` is sorted and unique. Fixed steps (integers, durations): each step longer than the
    frequency and a whole number of it gets the stamps in between (an off-grid step is left
    alone). Business days: the weekdays strictly between two stamps. Months: the months of
    the grid from the first stamp that have no stamp.
    """
    starts, ends = ds[:-1], ds[1:]
    if frequency.unit in ("int", "us"):
        diffs = ends - starts
        gap = (diffs > frequency.step) & (diffs % frequency.step == 0)
        counts = diffs[gap] // frequency.step - 1
        return _runs(starts[gap], counts, frequency.step)
    day = _DAY_US
    if frequency.unit == "bd":
        start_days = (starts // day).astype("datetime64[D]")
        counts = np.busday_count(start_days + 1, (ends // day).astype("datetime64[D]"))
        gap = counts > 0
        offsets = _runs(np.zeros(int(gap.sum()), np.int64), counts[gap], 1)
        first_days = np.repeat(start_days[gap], counts[gap])
        days = np.busday_offset(first_days, offsets, roll="forward").astype(np.int64)
        return days * day + np.repeat(starts[gap] % day, counts[gap])  # keep the time of day
    # Calendar months: the grid is the first stamp plus whole periods (clamped to the month's
    # length, so Jan 31 gives Feb 28, Mar 31); a month-end series keeps to month ends.
    months = ds.astype("datetime64[us]").astype("datetime64[M]").astype(np.int64)
    offsets = months - months[0]
    grid = np.arange(0, offsets[-1] + 1, frequency.step, dtype=np.int64)
    absent = np.setdiff1d(grid, offsets)
    if len(absent) == 0:
        return np.zeros(0, np.int64)
    stamps = pl.select(
        pl.lit(int(ds[0]), pl.Int64)
        .cast(pl.Datetime("us"))
        .dt.offset_by(pl.format("{}mo", pl.Series(absent)))
    ).to_series()
    month_ends = pl.Series(ds).cast(pl.Datetime("us"))
    if (month_ends == month_ends.dt.month_end()).all():
        stamps = stamps.dt.month_end()
    return stamps.dt.epoch("us").to_numpy().astype(np.int64)


def _runs(starts: np.ndarray, counts: np.ndarray, step: int) -> np.ndarray:
    """``start + step * k`` for ``k = 1..count`` of each ``(start, count)``, concatenated."""
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, np.int64)
    first_of_run = np.repeat(np.cumsum(counts) - counts, counts)
    k = np.arange(total, dtype=np.int64) - first_of_run + 1
    return np.repeat(starts, counts) + step * k


def find_gaps(df: Any) -> pl.DataFrame:
    """The timestamps missing from each series' regular grid.

    Each series' frequency is inferred from its own ``ds`` (``infer_frequency``: the most
    common step; calendar months, quarters and years; business days for a daily series with
    no weekend stamps, so a stock's weekends are not gaps while a crypto series that trades
    every day is plainly daily). Stamps are missing where a step is longer than that frequency.
    The business-day grid has no holiday calendar: an exchange holiday counts as a gap. Series
    with fewer than two distinct stamps have no frequency and no gaps.

    Args:
      df: long frame (polars or pandas) with ``unique_id`` and ``ds``; values are not looked at.

    Returns:
      ``unique_id, ds``: one row per missing stamp, series in order of first appearance, each
      in time order; ``ds`` as ``validate`` leaves it (Int64, or Datetime("us")).
    """
    keys = _series_order(normalise_keys(df).select(_KEYS).unique(maintain_order=True))
    runs = SeriesRuns.of(keys)
    ds = datetime_to_us(keys["ds"])
    is_int = keys.schema["ds"].is_integer()
    ids: list[str] = []
    stamps: list[np.ndarray] = []
    for uid, start, end in zip(runs.ids, runs.starts[:-1], runs.starts[1:], strict=True):
        if end - start < 2:
            continue
        series_ds = ds[start:end]
        missing = _gaps_of_series(series_ds, infer_frequency(series_ds, is_int=is_int))
        ids.extend([uid] * len(missing))
        stamps.append(missing)
    values = pl.Series("ds", np.concatenate([np.zeros(0, np.int64), *stamps]), pl.Int64)
    return pl.DataFrame(
        {
            "unique_id": pl.Series(ids, dtype=pl.String),
            "ds": values if is_int else values.cast(pl.Datetime("us")),
        }
    )


def fill_gaps(df: Any, method: GapMethod = "null") -> pl.DataFrame:
    """Inserts the rows missing from each series' regular grid (the stamps ``find_gaps``
    reports) and gives them values.

    Args:
      df: long frame (polars or pandas).
      method: the values of the inserted rows, in every column but ``unique_id`` and ``ds``:

        * ``"null"``: nulls (for ``fill_missing``, or to look at).
        * ``"ffill"``: the series' last known value before the gap.
        * ``"interpolate"``: numeric columns linear in time between the known values before
          and after the gap (integer columns become Float64); other columns forward-filled.

        Only inserted rows are filled; missing values already in the frame stay for
        ``fill_missing``. An inserted row with no known value on a side it needs stays null.

    Returns:
      A new frame: series in order of first appearance, each in time order, ``unique_id`` and
      ``ds`` as ``validate`` leaves them, with the inserted rows.
    """
    _choice(method, GAP_METHODS, "method")
    frame = normalise_keys(df)
    gaps = find_gaps(frame)
    marked = pl.concat(
        [frame.with_columns(pl.lit(False).alias(_INSERTED)), gaps], how="diagonal_relaxed"
    ).with_columns(pl.col(_INSERTED).fill_null(True))
    marked = _series_order(marked)
    if method != "null" and gaps.height:
        fills = []
        for name, dtype in frame.schema.items():
            if name in _KEYS:
                continue
            values = pl.col(name).fill_nan(None) if dtype.is_float() else pl.col(name)
            if method == "interpolate" and dtype.is_numeric() and dtype != pl.Boolean:
                values = values.interpolate_by("ds")
            else:
                values = values.forward_fill()
            fills.append(
                pl.when(pl.col(_INSERTED))
                .then(values.over("unique_id"))
                .otherwise(pl.col(name))
                .alias(name)
            )
        marked = marked.with_columns(fills)
    return marked.drop(_INSERTED)
