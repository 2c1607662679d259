"""The record of a training run (``fit``, population members, stacked ensembles): the one
place such records are made, with their provenance and out-of-the-box calibration."""

from __future__ import annotations

from typing import Any

from ntjax import provenance
from ntjax._version import __version__
from ntjax.config import ModelConfig, OptimizerConfig, TrainingConfig
from ntjax.predict.conformal import tail_calibration
from ntjax.record import ModelRecord, new_id, utc_now
from ntjax.train.prepare import Prepared


def new_record(
    config: ModelConfig,
    params: Any,
    prepared: Prepared,
    *,
    metrics: dict[str, float],
    history: dict[str, list],
    training: TrainingConfig,
    optimizer: OptimizerConfig,
    parent: ModelRecord | None = None,
    error: BaseException | None = None,
    created_at: str | None = None,
    extra: dict[str, Any] | None = None,
) -> ModelRecord:
    """The record of a training run (``fit``, population members, stacked ensembles): a new id,
    both timestamps ``created_at`` (default now), the data's scaler, fingerprint and provenance
    (joined with the spans of ``parent``, the record warm-started from), this version; the
    out-of-the-box interval calibration of ``training.calibration`` from the calibration tail;
    status ``failed`` with the error's text when ``error`` is given."""
    now = created_at or utc_now()
    record = ModelRecord(
        id=new_id(),
        kind=config.kind,
        config=config,
        params=params,
        scaler=prepared.scaler,
        status="failed" if error is not None else "trained",
        metrics=metrics,
        history=history,
        training=training,
        optimizer=optimizer,
        created_at=now,
        updated_at=now,
        parent_id=parent.id if parent is not None else None,
        data_fingerprint=prepared.fingerprint,
        version=__version__,
        error=f"{type(error).__name__}: {error}" if error is not None else None,
        extra=extra or {},
        trained_on=provenance.union(
            [parent.trained_on if parent is not None else None, prepared.trained_on]
        ),
    )
    if error is not None or training.calibration is None:
        return record
    calibration = tail_calibration(
        record,
        prepared.panel,
        method=training.calibration,
        calibration_size=prepared.calibration_size,
    )
    if not calibration:  # no symmetric quantile pair: no interval to calibrate
        return record
    return record.replace(extra={**record.extra, "calibration": calibration}, updated_at=now)
