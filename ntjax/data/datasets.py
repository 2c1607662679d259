"""Datasets shipped inside the package."""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources

import polars as pl

from ntjax.data.frame import from_wide

# name -> (file in ntjax/data/files, time column, every value column)
_DATASETS = {
    "etth1": ("ETTh1.csv", "date", ("HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL", "OT")),
}


def load_dataset(
    name: str, *, columns: Sequence[str] | str | None = None, wide: bool = False
) -> pl.DataFrame:
    """A dataset shipped with ntjax.

    ``etth1``: Electricity Transformer Temperature, hourly, 17,420 rows, 2016-07-01 to
    2018-06-26 (Zhou et al., Informer, AAAI 2021; CC BY-ND 4.0, shipped unmodified; see
    ``ntjax/data/files/ETTh1.NOTICE.md``). ``OT`` (oil temperature) is the usual target.

    Args:
      name: dataset name (``etth1``).
      columns: series to return (default all), e.g. ``"OT"``.
      wide: return the file's wide frame instead of long format.

    Returns:
      A long frame ``unique_id, ds, y`` (one series per column), or the wide frame.
    """
    key = name.lower()
    if key not in _DATASETS:
        raise ValueError(f"unknown dataset {name!r}; shipped datasets: {sorted(_DATASETS)}.")
    filename, time_col, all_columns = _DATASETS[key]
    with resources.files("ntjax.data").joinpath("files", filename).open("rb") as handle:
        wide_frame = pl.read_csv(handle, try_parse_dates=True)
    if isinstance(columns, str):
        columns = [columns]
    columns = list(columns or all_columns)
    unknown = [c for c in columns if c not in all_columns]
    if unknown:
        raise ValueError(f"{name} has no column(s) {unknown}; it has {list(all_columns)}.")
    if wide:
        return wide_frame.select(time_col, *columns)
    return from_wide(wide_frame, time_col=time_col, value_cols=columns)
