"""Chronological splits: the test part of each series comes after its training part."""

from __future__ import annotations

from typing import Any

import polars as pl

from ntjax.data.frame import validate


def train_test_split(df: Any, test_size: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Splits each series into all but its last ``test_size`` rows and those rows.

    Raises:
      ValueError: if ``test_size`` < 1 or a series has no more than ``test_size`` rows.
    """
    if isinstance(test_size, bool) or not isinstance(test_size, int) or test_size < 1:
        raise ValueError(f"test_size must be a positive integer, got {test_size!r}.")
    frame = validate(df, min_length=test_size + 1)
    position = pl.int_range(pl.len()).over("unique_id")
    length = pl.len().over("unique_id")
    is_test = position >= length - test_size
    return frame.filter(~is_test), frame.filter(is_test)
