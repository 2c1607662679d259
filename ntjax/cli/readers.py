"""Reading ``--data``: CSV or Parquet files, long or wide, and the options every command that
reads data takes to repair them (``--missing``, ``--duplicates``, ``--fill-gaps``).

polars and ``ntjax.data`` are imported when a file is read, so building the parser (``--help``,
``ntjax status``) stays light.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ntjax.cli.common import log

if TYPE_CHECKING:
    import polars as pl


def _read_csv(path: Path) -> pl.DataFrame:
    import polars as pl

    try:
        return pl.read_csv(path, try_parse_dates=True)
    except pl.exceptions.ComputeError:
        # A value past the rows polars guesses the types from (a "null" row, a first float
        # after integers) did not fit the guess: guess from the whole file instead.
        return pl.read_csv(path, try_parse_dates=True, infer_schema_length=None)


def _read_parquet(path: Path) -> pl.DataFrame:
    import polars as pl

    return pl.read_parquet(path)


_READERS: dict[str, Callable[[Path], pl.DataFrame]] = {
    ".csv": _read_csv,
    ".parquet": _read_parquet,
    ".pq": _read_parquet,
}


def add_data(parser: argparse.ArgumentParser, *, required: bool = True) -> None:
    """``--data`` (optional with ``required=False``) and how to read and repair it."""
    parser.add_argument("--data", required=required, help="CSV or Parquet file, long or wide")
    parser.add_argument("--time-col", help="time column of a wide file")
    parser.add_argument("--target", help="value column(s) of a wide file, comma-separated")
    parser.add_argument(
        "--missing",
        choices=("error", "drop", "ffill", "interpolate"),
        default="error",
        help="missing values (empty, null, NA, NaN, ...) in y and the model's exogenous "
        "columns: error (default) names them; drop removes their rows; ffill carries each "
        "series' last value forward; interpolate is linear in time (rows before a series' "
        "first or after its last value are dropped)",
    )
    parser.add_argument(
        "--duplicates",
        choices=("error", "drop", "first", "last"),
        default="error",
        help="repeated (series, time) rows: error (default) names them; drop removes exact "
        "duplicate rows (all values equal) and still refuses rows that differ; first / last "
        "keeps the first / last row of each",
    )
    parser.add_argument(
        "--fill-gaps",
        choices=("ffill", "interpolate"),
        help="insert the timestamps missing from each series' regular grid (its inferred "
        "frequency; business days when it has no weekends, no holiday calendar) with values "
        "carried forward or interpolated in time (default: leave them out)",
    )


def read_frame(
    path: str | os.PathLike[str],
    *,
    time_col: str | None = None,
    target: str | None = None,
) -> pl.DataFrame:
    """Reads a CSV or Parquet file as a long frame.

    Text columns that hold numbers and missing-value marks (empty, ``null``, ``NA``, ``N/A``,
    ``NaN``, ``None``, ``#N/A``, FRED's ``.``, ``-``; see ``ntjax.data.frame.MISSING_TOKENS``)
    are read as Float64 with those cells null, so a Yahoo Finance, FRED or Stooq export reads
    as numbers; date columns are parsed. Missing values are not handled here (``read_data``
    applies ``--missing``).

    Args:
      path: ``.csv``, ``.parquet`` or ``.pq`` file.
      time_col: for a wide file, its time column; each ``target`` column becomes a series.
      target: comma-separated value columns of a wide file (default: every numeric column).

    Returns:
      ``unique_id, ds, y`` (+ whatever other columns a long file has).
    """
    import polars as pl

    from ntjax.data import coerce_numeric, from_wide

    path = Path(path)
    reader = _READERS.get(path.suffix.lower())
    if reader is None:
        raise ValueError(f"{path}: unsupported file type; use .csv or .parquet.")
    if not path.is_file():
        raise ValueError(f"{path}: no such file.")
    try:
        frame = reader(path)
    except pl.exceptions.PolarsError as exc:
        reason = str(exc).strip().splitlines()[0].rstrip(".") if str(exc).strip() else ""
        raise ValueError(f"cannot read {path}: {reason or type(exc).__name__}.") from None
    frame = coerce_numeric(frame, exclude=("unique_id", "ds", *([time_col] if time_col else [])))
    if time_col is not None:
        return from_wide(frame, time_col=time_col, value_cols=target)
    if target is not None:
        raise ValueError("--target needs --time-col (it selects columns of a wide file).")
    missing = [c for c in ("unique_id", "ds", "y") if c not in frame.columns]
    if missing:
        raise ValueError(
            f"{path} is not a long frame (missing {missing}); for a wide file pass --time-col "
            f"and --target (columns: {frame.columns[:10]})."
        )
    return frame


def read_data(args: argparse.Namespace, config: Any = None) -> pl.DataFrame:
    """The ``--data`` file as a long frame, with ``--duplicates``, ``--fill-gaps`` and
    ``--missing`` applied (in that order); ``--missing`` covers ``y`` and ``config``'s
    exogenous columns, or every numeric column without a config."""
    from ntjax.data import drop_duplicates, fill_gaps, fill_missing, find_gaps

    frame = read_frame(args.data, time_col=args.time_col, target=args.target)
    rows = frame.height
    frame = drop_duplicates(frame, keep="exact" if args.duplicates == "drop" else args.duplicates)
    if frame.height < rows:
        log(f"dropped {rows - frame.height} duplicate rows (--duplicates {args.duplicates})")
    if args.fill_gaps is not None:
        inserted = find_gaps(frame).height
        frame = fill_gaps(frame, args.fill_gaps)
        if inserted:
            log(f"inserted {inserted} missing timestamps (--fill-gaps {args.fill_gaps})")
    columns = None
    if config is not None:  # a column the model needs but the file lacks is validate's to name
        wanted = ("y", *config.hist_exog, *config.futr_exog)
        columns = [c for c in wanted if c in frame.columns]
    rows = frame.height
    frame = fill_missing(frame, args.missing, columns=columns)
    if frame.height < rows:
        log(f"dropped {rows - frame.height} rows with missing values (--missing {args.missing})")
    n_series = frame["unique_id"].n_unique() if "unique_id" in frame.columns else 0
    log(f"read {args.data}: {frame.height} rows, {n_series} series")
    return frame
