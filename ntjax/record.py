"""Model records: everything needed to forecast with a trained model and to tell where it came
from (its provenance, ``ntjax.provenance``, and how its intervals are calibrated)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from ntjax import provenance
from ntjax._ids import STATUSES, check_id, new_id, utc_now
from ntjax.config import ModelConfig, OptimizerConfig, TrainingConfig
from ntjax.data.scalers import ScalerState
from ntjax.models import count_params


@dataclass(frozen=True, eq=False)
class ModelRecord:
    """A trained (or training, or failed) model.

    Attributes:
      id: canonical UUID4.
      kind: model family name (a key of ``ntjax.models.MODELS``).
      config: the model config.
      params: pytree of arrays.
      scaler: per-series scaler statistics fitted on the training data.
      status: ``training``, ``trained`` or ``failed``.
      metrics: scalar results (losses, evaluation metrics, timings).
      history: ``{"step": [...], "train_loss": [...], "val_loss": [...]}``.
      training: the training config the model was fitted with.
      optimizer: the optimizer config the model was fitted with.
      created_at: UTC ISO-8601.
      updated_at: UTC ISO-8601.
      parent_id: the record this one was fine-tuned from.
      data_fingerprint: sha256 of the training data.
      version: ntjax version that trained it.
      error: why a failed run failed.
      extra: model-kind independent additions (e.g. calibration, ensemble weights).
      trained_on: provenance, ``unique_id, start, end, n_rows, role`` (``ntjax.provenance``):
        every row that shaped the record; None for records written before provenance existed.
    """

    id: str
    kind: str
    config: ModelConfig
    params: Any
    scaler: ScalerState | None
    status: str = "trained"
    metrics: Mapping[str, float] = field(default_factory=dict)
    history: Mapping[str, list] = field(default_factory=dict)
    training: TrainingConfig | None = None
    optimizer: OptimizerConfig | None = None
    created_at: str = field(default_factory=utc_now)
    updated_at: str = field(default_factory=utc_now)
    parent_id: str | None = None
    data_fingerprint: str | None = None
    version: str = ""
    error: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    trained_on: pl.DataFrame | None = None

    def __post_init__(self) -> None:
        check_id(self.id)
        if self.parent_id is not None:
            check_id(self.parent_id)
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}.")
        if self.kind != self.config.kind:
            raise ValueError(f"record kind {self.kind!r} does not match its config.")

    def replace(self, **changes: Any) -> ModelRecord:
        """A copy with ``changes`` and a fresh ``updated_at``."""
        changes.setdefault("updated_at", utc_now())
        return dataclasses.replace(self, **changes)

    @property
    def intervals(self) -> dict[str, Any]:
        """How the record's intervals are made: ``{"method": "raw"}`` (the quantile heads as
        trained) or the calibration's method and settings (``ntjax.calibrate``)."""
        calibration = self.extra.get("calibration")
        if not calibration:
            return {"method": "raw"}
        return {k: v for k, v in calibration.items() if k not in ("offsets", "end_offsets")}

    def uncalibrated(self) -> ModelRecord:
        """A copy with the raw quantile heads (no calibration), a new id and ``parent_id`` this
        record: to compare calibrated intervals with what the model itself predicts."""
        now = utc_now()
        return self.replace(
            id=new_id(),
            parent_id=self.id,
            created_at=now,
            updated_at=now,
            extra={k: v for k, v in self.extra.items() if k != "calibration"},
        )

    @property
    def n_params(self) -> int:
        return count_params(self.params) if self.params is not None else 0

    def summary(self) -> dict[str, Any]:
        """JSON-friendly metadata (no parameters)."""
        return {
            "id": self.id,
            "kind": self.kind,
            "status": self.status,
            "horizon": self.config.horizon,
            "input_size": self.config.input_size,
            "quantiles": list(self.config.quantiles),
            "n_params": self.n_params,
            "metrics": dict(self.metrics),
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "parent_id": self.parent_id,
            "data_fingerprint": self.data_fingerprint,
            "version": self.version,
            "error": self.error,
            "intervals": self.intervals,
            "trained_on": provenance.to_json(self.trained_on),
        }

    def __repr__(self) -> str:
        return (
            f"ModelRecord(id={self.id!r}, kind={self.kind!r}, status={self.status!r}, "
            f"horizon={self.config.horizon}, n_params={self.n_params})"
        )
