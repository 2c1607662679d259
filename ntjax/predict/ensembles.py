"""Ensembles of trained records: one record whose quantiles combine the members'."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ntjax import provenance
from ntjax.data.frame import validate
from ntjax.data.windows import channels, pack
from ntjax.models.ensemble import EnsembleConfig
from ntjax.predict.conformal import tail_calibration
from ntjax.record import ModelRecord, new_id

# What must agree between the members' out-of-the-box calibrations for the ensemble to be
# calibrated on the same tail.
_CALIBRATION_KEYS = ("method", "source", "calibration_size", "window", "gamma")


def same_scaler(a: ModelRecord, b: ModelRecord) -> bool:
    """Whether two records scale their data alike (kind, series and statistics), as the
    members of one ensemble must."""
    return (
        a.scaler.kind == b.scaler.kind
        and a.scaler.ids == b.scaler.ids
        and np.allclose(a.scaler.loc, b.scaler.loc)
        and np.allclose(a.scaler.scale, b.scaler.scale)
    )


def ensemble(
    records: Sequence[ModelRecord],
    *,
    method: str = "mean",
    weights: Sequence[float] | None = None,
    df: Any = None,
) -> ModelRecord:
    """Combines trained records of one horizon into one ensemble record.

    Quantiles are averaged level by level across members (mean, median, or a weighted mean),
    which keeps them non-crossing. The result forecasts, evaluates, saves and loads like any
    record.

    Args:
      records: members sharing the horizon, the quantiles, the exogenous columns and the scaler
        (i.e. trained on the same data with the same scaler kind).
      method: ``mean``, ``median`` or ``weighted``.
      weights: member weights for ``weighted`` (default: inverse validation loss, which every
        member must then have, from training with ``val_size > 0``).
      df: the members' training data. Where every member was calibrated out of the box on the
        same tail of it (``TrainingConfig.calibration``, the same calibration rows), the
        ensemble's intervals are calibrated on that tail too, which no member's gradient or
        early-stopping check saw; otherwise (or without ``df``) the ensemble is not calibrated
        and its intervals are the averaged raw heads.
    """
    records = list(records)
    if len(records) < 2:
        raise ValueError("an ensemble needs at least two records.")
    for r in records:
        if r.status != "trained":
            raise ValueError(f"model {r.id} has status {r.status!r}, not 'trained'.")
        if r.kind == "ensemble":
            raise ValueError(f"model {r.id} is already an ensemble; ensembles cannot be nested.")
    first = records[0]
    for r in records[1:]:
        if not same_scaler(r, first):
            raise ValueError(
                f"models {first.id} and {r.id} were fitted with different scalers (different "
                "data or scaler kinds); ensemble members must share them."
            )
    if method == "weighted" and weights is None:
        missing = [r.id for r in records if "val_loss" not in r.metrics]
        if missing:
            raise ValueError(
                f"weights from validation error need val_loss in every member; {missing[0]} has "
                "none (train with val_size > 0) — or pass weights."
            )
        weights = [1.0 / max(r.metrics["val_loss"], 1e-12) for r in records]
    configs = [r.config for r in records]
    config = EnsembleConfig(
        horizon=first.config.horizon,
        input_size=max(c.input_size for c in configs),
        quantiles=first.config.quantiles,
        hist_exog=first.config.hist_exog,
        futr_exog=first.config.futr_exog,
        members=tuple(configs),
        method=method,
        weights=tuple(weights or ()),
    )
    combined = ModelRecord(
        id=new_id(),
        kind=config.kind,
        config=config,
        params={f"m{i}": r.params for i, r in enumerate(records)},
        scaler=first.scaler,
        metrics={},
        version=first.version,
        data_fingerprint=first.data_fingerprint,
        extra={"members": [r.id for r in records]},
        trained_on=provenance.union(r.trained_on for r in records),
    )
    return combined if df is None else _tail_calibrated(combined, records, df)


def _tail_calibrated(combined: ModelRecord, members: list[ModelRecord], df: Any) -> ModelRecord:
    """``combined`` calibrated on the tail its members were calibrated on, where they all
    were on the same one; else as it is."""
    found = [m.extra.get("calibration") or {} for m in members]
    if found[0].get("source") != "calibration_tail":
        return combined
    settings = [tuple(c.get(k) for k in _CALIBRATION_KEYS) for c in found]
    if len(set(settings)) > 1:
        return combined
    config = combined.config
    panel = pack(validate(df, exog=(*config.hist_exog, *config.futr_exog)), channels(config))
    calibration = tail_calibration(
        combined,
        panel,
        method=found[0]["method"],
        calibration_size=found[0]["calibration_size"],
        window=found[0].get("window"),
        gamma=found[0].get("gamma", 0.005),
    )
    if not calibration:
        return combined
    return combined.replace(extra={**combined.extra, "calibration": calibration})
