"""Calibrated forecasts at cutoffs: what evaluation, cross-validation and backtests score."""

from __future__ import annotations

import jax
import numpy as np

from ntjax.data.windows import Panel
from ntjax.predict.batch import adjust_quantiles, is_rolling_calibrated, raw_at_cutoffs
from ntjax.predict.conformal import rolling_at_cutoffs
from ntjax.record import ModelRecord


def predict_at_cutoffs(
    record: ModelRecord,
    scaled: np.ndarray,
    cutoffs: np.ndarray,
    *,
    panel: Panel,
    key: jax.Array | None = None,
) -> np.ndarray:
    """Scaled quantile forecasts of every series at every cutoff, with the record's intervals.

    Args:
      scaled: ``[n_series, time, n_channels]`` scaled values of ``panel`` (zeros where missing).
      cutoffs: ``[n_cutoffs]`` increasing first forecast positions; inputs are the
        ``input_size`` steps before each.
      panel: the packed frame behind ``scaled`` (its series' rows and time stamps).
      key: PRNG key for sampling models.

    Returns:
      ``[n_series, n_cutoffs, horizon, n_quantiles]``: for a rolling-calibrated record each
      cutoff calibrated only with windows resolved before it that the model was not fitted on;
      otherwise the record's fixed offsets (if any) applied.
    """
    if is_rolling_calibrated(record):
        return rolling_at_cutoffs(record, panel, scaled, cutoffs, key=key)
    raw = raw_at_cutoffs(record.config, record.params, scaled, cutoffs, key=key)
    return adjust_quantiles(record, raw)
