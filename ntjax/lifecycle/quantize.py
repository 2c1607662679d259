"""``nt.quantize``: a record whose weight matrices are int8 (per-output-channel float32 scales)
or bfloat16, with a measured accuracy gate against its parent.

The quantised record is a record of the same family and config: its params hold the quantised
nodes of ``ntjax.models.quantized`` and ``extra["quantization"]`` says how they were made, so
it saves and loads through the store (the codec restores the quantised structure), and it
forecasts, evaluates, streams, calibrates and backtests like any record: every prediction
path reaches the model through ``ModelSpec.predict_quantiles``, which dequantises inside the
jitted program. The record keeps the small arrays resident; the float32 weights exist only
while a prediction runs.

Storage only: XLA:CPU has no faster int8 or bfloat16 matmul for these shapes (see
``experiments/compression.py`` for the measurement), so prediction runs in float32.
"""

from __future__ import annotations

from typing import Any

import jax

from ntjax._ids import new_id, utc_now
from ntjax._version import __version__
from ntjax.config import ConfigError
from ntjax.evaluate import evaluate
from ntjax.models.quantized import DTYPES, is_quantized, nbytes, quantize_params
from ntjax.record import ModelRecord

# Metrics the accuracy gate compares (relative change of the quantised record against its
# parent on the same frame and cutoffs).
GATED_METRICS = ("mae", "wql")


def quantize(
    record: ModelRecord,
    dtype: str = "int8",
    *,
    calibration_df: Any = None,
    max_change: float | None = None,
    test_size: int | None = None,
    step_size: int | None = None,
) -> ModelRecord:
    """A new record with ``record``'s weight matrices quantised to ``dtype``.

    Weight matrices (every ``kernel``) become int8 with per-output-channel float32 scales
    (symmetric, max-abs; an all-zero channel stays exactly zero) or bfloat16; biases,
    normalisation, embeddings, the scaler and the interval calibration stay as they are. The
    new record has a new id, ``parent_id`` = ``record.id``, the parent's provenance, and
    ``extra["quantization"]`` = ``{"dtype", "scheme", "n_weights", "bytes", "parent_bytes"}``.

    With ``calibration_df``, both records are evaluated on it (``nt.evaluate`` with
    ``test_size``/``step_size``, the same cutoffs for both) and the record's metrics hold
    ``quantize_<m>`` and ``quantize_parent_<m>`` and the relative change
    ``quantize_<m>_change`` = (quantised - parent) / parent for ``m`` in ``mae`` and ``wql``,
    plus ``quantize_in_sample`` (1.0 when some scored target was in the parent's training
    span: the comparison is still like for like, but not an out-of-sample score).

    Args:
      record: a trained record of any family (a stacked or listed ensemble too).
      dtype: ``int8`` or ``bfloat16``.
      calibration_df: long frame to measure the accuracy change on.
      max_change: largest relative change of MAE or wql allowed, either way (e.g. ``0.01``
        for 1%); needs ``calibration_df``. The gate is two-sided: a quantised record is meant
        to forecast like its parent, and one that scores much better on a frame differs as
        much as one that scores worse (an improvement from rounding is noise of that frame).
      test_size: steps scored per series of ``calibration_df`` (default one horizon).
      step_size: stride between its cutoffs (default the horizon).

    Returns:
      The quantised ``ModelRecord`` (not saved: ``store.save(...)`` it).

    Raises:
      ConfigError: an unknown ``dtype``; ``max_change`` without ``calibration_df``; the
        measured change of MAE or wql is over ``max_change`` (the gate).
      ValueError: the record is not trained, or is already quantised.
    """
    if dtype not in DTYPES:
        raise ConfigError(f"dtype must be one of {DTYPES}, got {dtype!r}.")
    if max_change is not None and calibration_df is None:
        raise ConfigError("max_change needs a calibration_df to measure the change on.")
    if max_change is not None and not max_change >= 0:
        raise ConfigError(f"max_change must be a non-negative fraction, got {max_change!r}.")
    if record.status != "trained":
        raise ValueError(f"model {record.id} has status {record.status!r}, not 'trained'.")
    if is_quantized(record.params) or "quantization" in record.extra:
        raise ValueError(f"model {record.id} is already quantised; quantise its parent.")
    params = jax.device_put(quantize_params(record.params, dtype))
    stored = "int8" if dtype == "int8" else "bfloat16"
    n_weights = sum(1 for leaf in jax.tree.leaves(params) if leaf.dtype == stored)
    now = utc_now()
    quantization = {
        "dtype": dtype,
        "scheme": (
            "symmetric per-output-channel max-abs, float32 scales"
            if dtype == "int8"
            else "round to nearest even"
        ),
        "n_weights": n_weights,
        "bytes": nbytes(params),
        "parent_bytes": nbytes(record.params),
    }
    quantized = record.replace(
        id=new_id(),
        params=params,
        parent_id=record.id,
        created_at=now,
        updated_at=now,
        version=__version__,
        metrics={},
        history={},
        extra={**record.extra, "quantization": quantization},
    )
    if calibration_df is None:
        return quantized
    options = {"test_size": test_size, "step_size": step_size, "allow_in_sample": True}
    parent_scores = evaluate(record, calibration_df, **options)
    scores = evaluate(quantized, calibration_df, **options)
    metrics: dict[str, float] = {"quantize_in_sample": float(bool(scores["in_sample"]))}
    changes = {}
    for name in GATED_METRICS:
        before, after = float(parent_scores[name]), float(scores[name])
        changes[name] = (after - before) / before if before else 0.0 if after == before else 1.0
        metrics[f"quantize_parent_{name}"] = before
        metrics[f"quantize_{name}"] = after
        metrics[f"quantize_{name}_change"] = changes[name]
    if max_change is not None:
        over = {name: change for name, change in changes.items() if abs(change) > max_change}
        if over:
            said = " and ".join(f"{name} by {change:+.3%}" for name, change in over.items())
            raise ConfigError(
                f"quantising model {record.id} to {dtype} changes {said} on the calibration "
                f"frame, over max_change={max_change:.3%}; keep the float32 model, try "
                "bfloat16, or allow a larger change."
            )
    return quantized.replace(metrics=metrics, updated_at=now)


__all__ = ["GATED_METRICS", "quantize"]
