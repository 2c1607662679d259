"""Ensembles of trained records: one record whose quantiles combine the members'."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ntjax import provenance
from ntjax.models.ensemble import EnsembleConfig
from ntjax.record import ModelRecord, new_id


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
    return ModelRecord(
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
