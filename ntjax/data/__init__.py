"""Long-format data: validation, wide -> long, repairs (missing values, duplicates, gaps),
splits, packing into arrays, scalers, and the datasets shipped in the package."""

from ntjax.data.datasets import load_dataset
from ntjax.data.frame import (
    Frequency,
    coerce_numeric,
    from_wide,
    infer_frequency,
    to_polars,
    validate,
)
from ntjax.data.missing import drop_duplicates, fill_gaps, fill_missing, find_gaps
from ntjax.data.scalers import ScalerState, fit_scaler
from ntjax.data.splits import train_test_split
from ntjax.data.windows import Panel, channels, gather_windows, pack, split_window

__all__ = [
    "Frequency",
    "Panel",
    "ScalerState",
    "channels",
    "coerce_numeric",
    "drop_duplicates",
    "fill_gaps",
    "fill_missing",
    "find_gaps",
    "fit_scaler",
    "from_wide",
    "gather_windows",
    "infer_frequency",
    "load_dataset",
    "pack",
    "split_window",
    "to_polars",
    "train_test_split",
    "validate",
]
