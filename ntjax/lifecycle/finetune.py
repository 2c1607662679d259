"""``nt.finetune``: continue training a record on new data (newer rows, other series, another
dataset), with fine-tuning defaults, frozen parameter groups and an explicit scaler policy."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

from ntjax.config import (
    ConfigError,
    OptimizerConfig,
    TrainingConfig,
    is_frozen,
    parameter_paths,
)
from ntjax.data.frame import validate
from ntjax.record import ModelRecord
from ntjax.train.fit import fit
from ntjax.train.loop import Progress

SCALER_POLICIES = ("keep", "refit")


def finetune(
    record: ModelRecord,
    df: Any,
    *,
    training: TrainingConfig | None = None,
    optimizer: OptimizerConfig | None = None,
    freeze: Sequence[str] = (),
    scaler: str = "keep",
    callbacks: Sequence[Callable[[Progress], None]] = (),
) -> ModelRecord:
    """Fine-tunes ``record`` on ``df`` and returns a new record (``parent_id`` = the record).

    Args:
      record: a trained record (any family, or a stacked ensemble).
      df: long frame ``unique_id, ds, y``: newer rows of the same series, other series, or
        another dataset. Series the record never saw are welcome.
      training: default ``fine_tuning_defaults(record, df)``: the parent's training with a
        quarter of its steps (at least 50) and early stopping on the new data's tail.
      optimizer: default the parent's optimizer at a tenth of its learning rate, constant.
      freeze: glob patterns over parameter paths (``ntjax.config.parameter_paths``; a stacked
        ensemble's are its members'), e.g. ``("*",)`` for everything or ``("_Block_*/Dense_*",)``
        for all but NHITS's output heads; applied as optax masking (zero updates), added to
        ``optimizer.freeze``. A pattern that matches no parameter is an error.
      scaler: ``keep`` the parent's statistics (series new to it are fitted on their training
        rows, as zero-shot forecasts do) or ``refit`` every series on ``df``'s training part.
      callbacks: as for ``nt.train``.

    Returns:
      The new record: its provenance is the parent's spans joined with ``df``'s, and
      ``extra["finetune"]`` says what was frozen and which scaler policy ran.

    Raises:
      ConfigError: an unknown scaler policy, a freeze pattern matching nothing, a record that
        is not trained, or data too short for the config.
    """
    if scaler not in SCALER_POLICIES:
        raise ConfigError(f"scaler must be one of {SCALER_POLICIES}, got {scaler!r}.")
    if record.status not in ("trained", "deployed") or record.params is None:
        raise ConfigError(
            f"model {record.id} has status {record.status!r}; only trained models can be "
            "fine-tuned."
        )
    training = training or fine_tuning_defaults(record, df)
    base = optimizer or dataclasses.replace(
        record.optimizer or OptimizerConfig(),
        learning_rate=(record.optimizer or OptimizerConfig()).learning_rate / 10,
        schedule="constant",
        warmup_steps=0,
    )
    optimizer = dataclasses.replace(base, freeze=(*base.freeze, *freeze))
    paths = parameter_paths(record.params.get("stacked", record.params))
    for pattern in optimizer.freeze:
        if not any(is_frozen(path, (pattern,)) for path in paths):
            raise ConfigError(
                f"freeze pattern {pattern!r} matches no parameter of model {record.id}; its "
                f"parameter paths look like {paths[:3]} (ntjax.config.parameter_paths)."
            )
    child = fit(
        df,
        record.config,
        training,
        optimizer,
        init_from=record,
        keep_scaler=scaler == "keep",
        callbacks=callbacks,
    )
    frozen = sum(is_frozen(path, optimizer.freeze) for path in paths)
    info = {
        "parent_id": record.id,
        "freeze": list(optimizer.freeze),
        "frozen_leaves": frozen,
        "trainable_leaves": len(paths) - frozen,
        "scaler": scaler,
    }
    return child.replace(extra={**child.extra, "finetune": info})


def fine_tuning_defaults(record: ModelRecord, df: Any) -> TrainingConfig:
    """The parent's training config adapted to fine-tuning on ``df``: a quarter of the steps
    (at least 50), validation every tenth of them with patience 3 on the last two horizons of
    each new series (no validation when the shortest series has too few rows), no
    checkpoints."""
    base = record.training or TrainingConfig()
    config = record.config
    steps = max(50, base.max_steps // 4)
    frame = validate(df, exog=(*config.hist_exog, *config.futr_exog))
    shortest = int(frame.group_by("unique_id").len()["len"].min())
    spare = shortest - (config.input_size + config.horizon)
    # Two horizons of the new rows, whatever tail the parent validated on (its default recipe
    # holds out five): new data is often short, and fine-tuning runs few steps.
    val_size = 2 * config.horizon
    if spare < val_size + config.horizon:  # keep at least a horizon of training windows
        val_size = 0
    return dataclasses.replace(
        base,
        max_steps=steps,
        val_size=val_size,
        val_check_steps=max(10, steps // 10),
        early_stopping_patience=3 if val_size else None,
        checkpoint_dir=None,
        checkpoint_every=0,
    )
