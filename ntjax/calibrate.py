"""Split-conformal calibration of quantile intervals (conformalized quantile regression).

On calibration windows the model never trained on, the conformity score of a central interval
``[q_lo, q_hi]`` at horizon step ``h`` is ``max(q_lo - y, y - q_hi)``; its
``ceil((n + 1) * L)``-th smallest value is added to both bounds (Romano et al., 2019), so
the calibrated L% interval covers a new point with probability at least L under
exchangeability. Scores are pooled over series in scaled units; offsets live in
``record.extra["calibration"]`` and every prediction path applies them.

Coverage holds when calibration and test windows are exchangeable; under regime changes (e.g.
the ETTh1 validation and test periods) it drifts with the data: recalibrate on recent windows.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ntjax.data.frame import validate
from ntjax.data.scalers import transform
from ntjax.data.windows import channels, pack
from ntjax.evaluate import actuals_at_cutoffs, predict_at_cutoffs, rolling_cutoffs
from ntjax.predict import scaler_rows
from ntjax.registry import ModelRecord, new_id, utc_now


def conformal_offsets(
    quantiles: np.ndarray, y: np.ndarray, levels_pairs: list[tuple[int, int, float]]
) -> np.ndarray:
    """Offsets ``[horizon, n_quantiles]`` from calibration predictions.

    Args:
      quantiles: ``[n_windows, horizon, n_quantiles]`` uncalibrated predictions.
      y: ``[n_windows, horizon]`` actuals.
      levels_pairs: (lower index, upper index, level as a fraction) of each central interval.
    """
    n_windows, horizon, n_quantiles = quantiles.shape
    offsets = np.zeros((horizon, n_quantiles), np.float64)
    for lo, hi, level in levels_pairs:
        scores = np.maximum(quantiles[..., lo] - y, y - quantiles[..., hi])  # [n, horizon]
        # The ceil((n + 1) * level)-th smallest score (the largest when n is too small).
        k = min(int(np.ceil((n_windows + 1) * level - 1e-9)), n_windows)
        adjustment = np.sort(scores, axis=0)[k - 1]
        offsets[:, lo] = -adjustment
        offsets[:, hi] = adjustment
    return offsets


def interval_pairs(quantiles: tuple[float, ...]) -> list[tuple[int, int, float]]:
    """Index pairs of symmetric quantiles (q, 1 - q) and their central level 1 - 2q."""
    pairs = []
    for i, q in enumerate(quantiles):
        for j, p in enumerate(quantiles):
            if q < 0.5 and abs(p - (1 - q)) < 1e-9:
                pairs.append((i, j, 1 - 2 * q))
    return pairs


def calibration_offsets(
    record: ModelRecord, df: Any, *, calibration_size: int, step_size: int = 1
) -> dict[str, Any]:
    """Conformal offsets from rolling forecasts over the last ``calibration_size`` steps of
    each series of ``df`` (data the model was not fitted on, e.g. its validation part)."""
    config = record.config
    pairs = interval_pairs(config.quantiles)
    if not pairs:
        raise ValueError(
            f"quantiles {config.quantiles} contain no symmetric pair (q, 1 - q) to calibrate."
        )
    frame = validate(
        df,
        exog=(*config.hist_exog, *config.futr_exog),
        min_length=config.input_size + calibration_size,
        length_reason="input_size + calibration_size",
    )
    panel = pack(frame, channels(config))
    cutoffs = rolling_cutoffs(
        panel.n_time, test_size=calibration_size, horizon=config.horizon, step_size=step_size
    )
    loc, scale = scaler_rows(record.scaler, panel, fit_upto=int(cutoffs[0]))
    scaled = np.nan_to_num(transform(panel.values, loc, scale), nan=0.0)
    uncalibrated = record.replace(
        extra={k: v for k, v in record.extra.items() if k != "calibration"}
    )
    predictions = predict_at_cutoffs(uncalibrated, scaled, cutoffs)
    y = actuals_at_cutoffs(panel, cutoffs, config.horizon)
    y_scaled = (y - loc[:, None, None, 0]) / scale[:, None, None, 0]
    offsets = conformal_offsets(
        predictions.reshape(-1, config.horizon, len(config.quantiles)),
        y_scaled.reshape(-1, config.horizon),
        pairs,
    )
    return {
        "offsets": offsets.tolist(),
        "levels": [round(100 * level, 6) for _, _, level in pairs],
        "n_windows": int(len(cutoffs) * panel.n_series),
        "calibration_size": calibration_size,
    }


def calibrate(
    record: ModelRecord, df: Any, *, calibration_size: int | None = None, step_size: int = 1
) -> ModelRecord:
    """A calibrated copy of ``record`` (new id, ``parent_id`` = the record's id).

    Args:
      record: a trained quantile model.
      df: data the model was not fitted on at its end, e.g. the training frame when the model
        held out ``val_size`` steps; never the test part.
      calibration_size: steps at the end of each series used for calibration (default: the
        record's ``val_size``, else four horizons).
      step_size: stride between calibration cutoffs.
    """
    if calibration_size is None:
        val_size = record.training.val_size if record.training else 0
        calibration_size = val_size or 4 * record.config.horizon
    calibration = calibration_offsets(
        record, df, calibration_size=calibration_size, step_size=step_size
    )
    now = utc_now()
    return record.replace(
        id=new_id(),
        parent_id=record.id,
        created_at=now,
        updated_at=now,
        extra={**record.extra, "calibration": calibration},
    )
