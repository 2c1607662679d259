"""``nt.calibrate``: conformal interval calibration of a trained record on data it was not
fitted on (the maths, and the rolling offsets every scoring path applies, are in
``ntjax.predict.conformal``).

Records trained with the default ``TrainingConfig(calibration="rolling")`` are calibrated
already, on a tail of their training data; ``calibrate`` recalibrates on other data:

- ``"split"``: one set of offsets ``[horizon, n_quantiles]`` from the windows of the last
  ``calibration_size`` steps, pooled over series, the ``ceil((n + 1) * L)``-th smallest score.
- ``"rolling"``: online conformal calibration per series (see ``ntjax.predict.conformal``);
  the frame's latest valid windows give the record's fixed offsets.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ntjax import provenance
from ntjax.data.frame import validate
from ntjax.data.windows import channels, pack
from ntjax.predict.batch import actuals_at_cutoffs, raw_at_cutoffs, rolling_cutoffs
from ntjax.predict.conformal import conformal_offsets, interval_pairs, latest_offsets
from ntjax.predict.inputs import scaled_values, scaler_rows
from ntjax.record import ModelRecord, new_id, utc_now

METHODS = ("split", "rolling")


def calibration_offsets(
    record: ModelRecord,
    df: Any,
    *,
    calibration_size: int,
    step_size: int = 1,
    embargo: int = 0,
    allow_in_sample: bool = False,
) -> dict[str, Any]:
    """Split-conformal offsets from rolling forecasts over the last ``calibration_size`` steps
    of each series of ``df`` (data the model was not fitted on: the leakage guard refuses
    targets at or before a series' trained end, see ``ntjax.provenance``)."""
    config = record.config
    pairs = interval_pairs(config.quantiles)
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
    in_sample = provenance.check_out_of_sample(
        record,
        panel,
        int(cutoffs[0]),
        embargo=embargo,
        allow_in_sample=allow_in_sample,
        what="calibrate",
    )
    loc, scale, scaled = scaled_values(record.scaler, panel, fit_upto=int(cutoffs[0]))
    predictions = raw_at_cutoffs(config, record.params, scaled, cutoffs)
    y = actuals_at_cutoffs(panel, cutoffs, config.horizon)
    y_scaled = (y - loc[:, None, None, 0]) / scale[:, None, None, 0]  # the scores' units
    offsets = conformal_offsets(
        predictions.reshape(-1, config.horizon, len(config.quantiles)),
        y_scaled.reshape(-1, config.horizon),
        pairs,
    )
    spans = provenance.panel_spans(panel, {"calibration": (int(cutoffs[0]), panel.n_time)})
    return {
        "method": "split",
        "offsets": offsets.tolist(),
        "levels": [round(100 * level, 6) for _, _, level in pairs],
        "n_windows": int(len(cutoffs) * panel.n_series),
        "calibration_size": calibration_size,
        "source": "frame",
        "in_sample": in_sample,
        "_spans": spans,
    }


def calibrate(
    record: ModelRecord,
    df: Any,
    *,
    method: str = "split",
    calibration_size: int | None = None,
    step_size: int = 1,
    window: int | None = None,
    gamma: float = 0.005,
    embargo: int = 0,
    allow_in_sample: bool = False,
) -> ModelRecord:
    """A calibrated copy of ``record`` (new id, ``parent_id`` = the record's id).

    Records trained with the default ``TrainingConfig(calibration="rolling")`` are calibrated
    already, on a tail of their training data that no gradient or early-stopping check saw;
    this recalibrates on other data.

    Args:
      record: a trained quantile model with at least one symmetric pair (q, 1 - q).
      df: data the model was not fitted on at its end (the leakage guard refuses targets at or
        before a series' trained end, ``record.trained_on``): for ``split`` the windows of the
        last ``calibration_size`` steps are scored; for ``rolling`` the history up to now, whose
        latest valid windows give the record's fixed offsets.
      method: ``"split"`` (static offsets) or ``"rolling"`` (online, per series: offsets from
        the ``window`` latest resolved windows at every origin; see the module docstring).
      calibration_size: ``split``: steps at the end of each series used for calibration
        (default: the record's ``val_size``, else four horizons).
      step_size: ``split``: stride between calibration cutoffs.
      window: ``rolling``: recent windows per series and step (default ten horizons).
      gamma: ``rolling``: adaptive conformal step size (0 keeps the nominal level).
      embargo: steps after each series' trained end that still count as in sample.
      allow_in_sample: calibrate on in-sample rows anyway; the calibration is flagged
        (``extra["calibration"]["in_sample"]``).

    Returns:
      The record with ``extra["calibration"]``: ``method``, ``levels``, ``offsets``
      (``[horizon, n_quantiles]`` scaled units; for ``rolling`` the series' mean of the latest
      ones, the fallback where a window has too few valid scores), the method's settings and
      ``in_sample``; ``trained_on`` gains the calibration rows.
    """
    config = record.config
    if method not in METHODS:
        raise ValueError(f"unknown calibration method {method!r}; choose one of {METHODS}.")
    pairs = interval_pairs(config.quantiles)
    if not pairs:
        raise ValueError(
            f"quantiles {config.quantiles} contain no symmetric pair (q, 1 - q) to calibrate."
        )
    if method == "split":
        if window is not None:
            raise ValueError("window applies to method='rolling' only.")
        if calibration_size is None:
            val_size = record.training.val_size if record.training else 0
            calibration_size = val_size or 4 * config.horizon
        calibration = calibration_offsets(
            record,
            df,
            calibration_size=calibration_size,
            step_size=step_size,
            embargo=embargo,
            allow_in_sample=allow_in_sample,
        )
        spans = calibration.pop("_spans")
    else:
        if calibration_size is not None:
            raise ValueError("calibration_size applies to method='split' only.")
        window = 10 * config.horizon if window is None else window
        if isinstance(window, bool) or not isinstance(window, int) or window < 1:
            raise ValueError(f"window must be a positive integer, got {window!r}.")
        if not 0 <= gamma < 1:
            raise ValueError(f"gamma must be in [0, 1), got {gamma!r}.")
        frame = validate(df, exog=(*config.hist_exog, *config.futr_exog))
        panel = pack(frame, channels(config))
        first_scored = max(panel.n_time - window - config.horizon, config.input_size)
        in_sample = provenance.check_out_of_sample(
            record,
            panel,
            first_scored,
            embargo=embargo,
            allow_in_sample=allow_in_sample,
            what="calibrate",
        )
        n_quantiles = len(config.quantiles)
        calibration = {
            "method": "rolling",
            "window": window,
            "gamma": float(gamma),
            "levels": [round(100 * level, 6) for _, _, level in pairs],
            "offsets": np.zeros((config.horizon, n_quantiles)).tolist(),
            "source": "frame",
            "in_sample": in_sample,
        }
        rolling = record.replace(extra={**record.extra, "calibration": calibration})
        if allow_in_sample:  # every window counts, the fitted ones too (flagged above)
            rolling = rolling.replace(trained_on=None)
        _, scale = scaler_rows(record.scaler, panel)
        latest = latest_offsets(rolling, frame) / scale[:, None, :1]
        calibration["offsets"] = latest.mean(axis=0).tolist()
        spans = provenance.panel_spans(panel, {"calibration": (first_scored, panel.n_time)})
    now = utc_now()
    return record.replace(
        id=new_id(),
        parent_id=record.id,
        created_at=now,
        updated_at=now,
        extra={**record.extra, "calibration": calibration},
        trained_on=provenance.union([record.trained_on, spans]),
    )
