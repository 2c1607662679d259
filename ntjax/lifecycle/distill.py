"""``nt.distill``: a student model trained on a mix of the data and a teacher's quantile
forecasts.

The teacher (a record, a stacked ensemble record, or a list of records combined by
``nt.ensemble``) forecasts the targets of every training window of the student once, before
training, in its own scaled units from its own ``input_size`` of history; the forecasts are
put into the student's scaled units and travel with the windows
(``ntjax.train.prepare.TrainingData.teacher``), so each step's loss sees the teacher's
quantiles of the windows it samples. The loss is ``(1 - alpha) * data loss + alpha * teacher
loss``, the teacher loss being the family's ``ModelSpec.distillation_loss`` (quantile
families: each quantile's pinball loss against the teacher's forecast of the same level;
DeepAR: its likelihood of the teacher's quantile paths). Training runs through the one
training loop (``ntjax.train.loop.run``), validation and early stopping on the data's loss
alone, and the student gets its own scaler and its own interval calibration like any fit.

The student's record points to its teacher: ``parent_id`` is the teacher's id when the teacher
is one record (an ensemble record included), and ``extra["distillation"]`` always holds
``{"teacher_ids": [...], "teacher_kind", "alpha", "window_stride", "n_windows"}`` (for a
list, the ids of its records; the in-memory ensemble built from them has no id of its own).
Its provenance joins the teacher's (the teacher's training rows shaped the student too).

Defaults, chosen on the validation split of the long-horizon protocol (ETTm2 and ETTh1, h96,
a K=8 NHITS ensemble distilled into a quarter-width NHITS; ``experiments/compression.py``,
docs/compression.md) and never on its test split:

- ``alpha`` 0.7 (the teacher's term weighs more than the data's). Students 3000 steps long,
  seeds 1-3, validation MAE relative to the ensemble's: alpha 0.5 / 0.7 / 1.0 gave +1.12% /
  +1.15% / +2.16% on ETTm2 and +0.47% / -0.22% / -0.58% on ETTh1; 0.7 has the best mean of
  the two.
- the optimizer ``STUDENT_OPTIMIZER``: Adam, learning rate 1e-3, cosine decay to zero over
  ``training.max_steps`` (``nt.train``'s default rate is constant). Same runs, alpha 0.5:
  distilled students 0.2403 against 0.2429 (ETTm2) and 0.5774 against 0.5770 (ETTh1, a
  tie); the same students trained alone 0.2484 against 0.2506 and 0.5992 against 0.6037.
- A student is cheap per step and has a teacher label for every window, so it gains from
  more steps than its teacher had: 3000 steps instead of 1000 (validation and early stopping
  on the data's loss, patience 4 checks of 50 steps) took ETTm2 students from +3.2% to +1.1%
  of the ensemble's validation MAE (alpha 0.5, cosine). Give ``training`` a ``max_steps``
  long enough, with ``val_size`` and a patience, so the best validated parameters are kept.
- ``window_stride`` stays 1, but a stride costs little: teacher labels on every ETTm2 window
  gave no better students than on every 4th (+1.56% against +1.15%, alpha 0.7, seeds 1-3;
  neighbouring windows share all but a few steps), at 4x the labelling time and memory.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ntjax.config import ConfigError, ModelConfig, OptimizerConfig, TrainingConfig
from ntjax.data.scalers import inverse, transform
from ntjax.models.ensemble import EnsembleConfig
from ntjax.predict.batch import raw_at_cutoffs
from ntjax.predict.ensembles import ensemble
from ntjax.predict.inputs import scaler_rows
from ntjax.record import ModelRecord
from ntjax.train import loop
from ntjax.train.checkpoint import Checkpointer, run_key
from ntjax.train.prepare import Prepared, TrainingData, prepare
from ntjax.train.records import new_record
from ntjax.train.step import SingleEngine, Trainer


def _teacher_record(teacher: ModelRecord | Sequence[ModelRecord]) -> tuple[ModelRecord, list[str]]:
    """The teacher as one record, and the ids of the records it was given as."""
    if isinstance(teacher, ModelRecord):
        records = [teacher]
    else:
        records = list(teacher)
        if not records or not all(isinstance(r, ModelRecord) for r in records):
            raise ConfigError("the teacher is a record, an ensemble record or a list of records.")
    for record in records:
        if record.status != "trained":
            raise ValueError(f"model {record.id} has status {record.status!r}, not 'trained'.")
    if len(records) == 1:
        return records[0], [records[0].id]
    return ensemble(records), [r.id for r in records]


def _check_pair(teacher: ModelConfig, student: ModelConfig) -> None:
    if isinstance(student, EnsembleConfig):
        raise ConfigError("the student is one model of any family, not an ensemble.")
    if student.horizon != teacher.horizon:
        raise ConfigError(
            f"the student's horizon ({student.horizon}) must be the teacher's ({teacher.horizon})."
        )
    if student.quantiles != teacher.quantiles:
        raise ConfigError(
            f"the student's quantiles {student.quantiles} must be the teacher's "
            f"{teacher.quantiles} (each level learns from the teacher's forecast of it)."
        )
    if (student.hist_exog, student.futr_exog) != (teacher.hist_exog, teacher.futr_exog):
        raise ConfigError("the student must use the teacher's exogenous columns.")


def teacher_targets(
    teacher: ModelRecord,
    prepared: Prepared,
    config: ModelConfig,
    *,
    val_size: int,
    window_stride: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """The training windows of ``prepared`` the teacher can forecast and its forecasts of them.

    A window is kept when the teacher's ``input_size`` of real history precedes its targets
    (and, with ``window_stride > 1``, when it is every ``window_stride``-th window of its
    series). Teacher inputs are scaled with the teacher's scaler (statistics fitted before the
    validation tail for series it never saw); its forecasts are put back into original units
    and then into the student's scaled units.

    Returns:
      ``windows`` ``[n, 2]`` int32 (series, start) in the padded time of ``prepared.data`` and
      ``targets`` ``[n, horizon, n_quantiles]`` float32.
    """
    panel, data = prepared.panel, prepared.data
    n_windows = int(data.n_windows)
    windows = np.asarray(jax.device_get(data.windows))[:n_windows]
    pad = int(data.values.shape[1]) - panel.n_time
    first = pad + (panel.n_time - panel.lengths)  # first real position of each series
    cutoffs = windows[:, 1] + config.input_size
    keep = cutoffs - teacher.config.input_size >= first[windows[:, 0]]
    if window_stride > 1:
        keep &= (windows[:, 1] - first[windows[:, 0]]) % window_stride == 0
    windows, cutoffs = windows[keep], cutoffs[keep]
    if not len(windows):
        raise ConfigError(
            f"no training window has the teacher's input_size ({teacher.config.input_size}) of "
            "history before its targets: the series are too short for this teacher."
        )
    fit_upto = panel.n_time - prepared.calibration_size - val_size
    loc_t, scale_t = scaler_rows(teacher.scaler, panel, fit_upto=fit_upto)
    scaled_t = np.nan_to_num(transform(panel.values, loc_t, scale_t), nan=0.0)
    scaled_t = np.concatenate(
        [np.zeros((panel.n_series, pad, scaled_t.shape[2])), scaled_t], axis=1
    ).astype(np.float32)
    unique = np.unique(cutoffs)
    raw = raw_at_cutoffs(teacher.config, teacher.params, scaled_t, unique)
    # [n_series, n_cutoffs, horizon, n_quantiles], teacher units -> original -> student units.
    original = inverse(raw, loc_t[:, 0], scale_t[:, 0])
    loc_s, scale_s, _ = prepared.scaler.rows(panel.ids)
    student = (original - loc_s[:, 0, None, None, None]) / scale_s[:, 0, None, None, None]
    targets = student[windows[:, 0], np.searchsorted(unique, cutoffs)].astype(np.float32)
    return windows.astype(np.int32), targets


def _distillation_data(
    data: TrainingData, windows: np.ndarray, targets: np.ndarray, alpha: float
) -> TrainingData:
    """``data`` with only ``windows`` to sample from, each with its teacher targets."""
    n = len(windows)
    size = 1 << max(0, (n - 1).bit_length())
    table = np.zeros((size, 2), np.int32)
    table[:n] = windows
    teacher = np.zeros((size, *targets.shape[1:]), np.float32)
    teacher[:n] = targets
    return data._replace(
        windows=jnp.asarray(table),
        n_windows=jnp.asarray(n, jnp.int32),
        teacher=jnp.asarray(teacher),
        teacher_weight=jnp.asarray(alpha, jnp.float32),
    )


#: The student's default optimizer: Adam at 1e-3 with cosine decay to zero over the run's
#: ``max_steps`` (see the module docstring for the measurements behind it).
STUDENT_OPTIMIZER = OptimizerConfig(schedule="cosine")

#: The default weight of the teacher's term (see the module docstring).
DEFAULT_ALPHA = 0.7


def distill(
    teacher: ModelRecord | Sequence[ModelRecord],
    df: Any,
    student_config: ModelConfig,
    *,
    training: TrainingConfig | None = None,
    optimizer: OptimizerConfig | None = None,
    alpha: float = DEFAULT_ALPHA,
    window_stride: int = 1,
) -> ModelRecord:
    """Trains ``student_config`` on ``df`` and on the teacher's quantile forecasts.

    Args:
      teacher: a trained record (any family, a stacked ensemble from ``nt.train(...,
        ensemble_size=K)`` included) or a list of records (combined by ``nt.ensemble``: they
        must share their scaler).
      df: long frame ``unique_id, ds, y`` the student trains on (the teacher forecasts its
        training windows).
      student_config: the student's config, any single family, with the teacher's horizon,
        quantiles and exogenous columns (``input_size`` may differ).
      training: ``TrainingConfig`` (default ``TrainingConfig()``).
      optimizer: ``OptimizerConfig`` (default ``STUDENT_OPTIMIZER``: Adam, lr 1e-3, cosine
        decay to zero over ``training.max_steps``; to compare with the same student trained
        alone, train it with the distilled record's ``optimizer``).
      alpha: weight of the teacher's term, in [0, 1] (default 0.7; 0: plain training on the
        windows the teacher can forecast; 1: the teacher's quantiles only).
      window_stride: train on every ``window_stride``-th window of each series only (the
        teacher forecasts each window once, before training: a stride cuts that cost and the
        memory of the targets, ``n_windows x horizon x n_quantiles`` float32).

    Returns:
      The student's ``ModelRecord`` (see the module docstring for how it points to the
      teacher); metrics as ``nt.train``'s plus ``distill_alpha``.

    Raises:
      ConfigError: an ensemble student, a horizon/quantiles/exogenous mismatch, ``alpha``
        outside [0, 1], or no window with enough history for the teacher.
      FloatingPointError: the training loss became non-finite.
    """
    training = training or TrainingConfig()
    optimizer = optimizer or STUDENT_OPTIMIZER
    if not 0.0 <= alpha <= 1.0:
        raise ConfigError(f"alpha must be in [0, 1], got {alpha!r}.")
    if not isinstance(window_stride, int) or window_stride < 1:
        raise ConfigError(f"window_stride must be a positive integer, got {window_stride!r}.")
    teacher_record, teacher_ids = _teacher_record(teacher)
    _check_pair(teacher_record.config, student_config)
    started = time.perf_counter()
    prepared = prepare(df, student_config, training)
    training = prepared.training  # val_size resolved
    if int(prepared.data.n_windows) == 0:
        raise ConfigError("no training windows: the series are too short for this config.")
    windows, targets = teacher_targets(
        teacher_record,
        prepared,
        student_config,
        val_size=training.val_size,
        window_stride=window_stride,
    )
    trainer = Trainer(student_config, training, optimizer)
    data = trainer.replicate(_distillation_data(prepared.data, windows, targets, alpha))
    init_key, loop_key = jax.random.split(jax.random.key(training.seed))
    state = trainer.init_state(init_key)
    checkpointer = None
    if training.checkpoint_dir:
        digest = f"{prepared.fingerprint}:distill:{','.join(teacher_ids)}:{alpha}:{window_stride}"
        checkpointer = Checkpointer(
            training.checkpoint_dir, run_key([(student_config, training, optimizer)], digest)
        )
    result = loop.run(
        SingleEngine(trainer, loop_key, state),
        state,
        data,
        training=training,
        checkpointer=checkpointer,
        progress=training.progress,
        desc=f"distill {student_config.kind}",
    )
    if result.errors[0] is not None:
        raise result.errors[0]
    history = result.histories[0]
    has_val = training.val_size > 0
    use_best = has_val and math.isfinite(result.best_val[0])
    params = jax.device_get(result.best if use_best else result.state.params)
    params = jax.device_put(params, jax.local_devices()[0])
    n_steps = int(result.state.step) - result.start_step
    metrics = {
        "train_loss": history["train_loss"][-1] if history["train_loss"] else float("nan"),
        "steps": int(result.state.step),
        "stopped_early": float(result.stopped_early[0]),
        "train_time_s": time.perf_counter() - started,
        "windows_per_s": (
            training.batch_size / result.step_time if n_steps and result.step_time > 0 else 0.0
        ),
        "distill_alpha": float(alpha),
    }
    if has_val:
        metrics["val_loss"] = float(result.best_val[0])
    record = new_record(
        student_config,
        params,
        prepared,
        metrics=metrics,
        history=history,
        training=training,
        optimizer=optimizer,
        parent=teacher_record,
        extra={
            "distillation": {
                "teacher_ids": teacher_ids,
                "teacher_kind": teacher_record.kind,
                "alpha": float(alpha),
                "window_stride": window_stride,
                "n_windows": len(windows),
            }
        },
    )
    parent_id = teacher_record.id if len(teacher_ids) == 1 else None
    return record.replace(parent_id=parent_id, updated_at=record.updated_at)


__all__ = ["DEFAULT_ALPHA", "STUDENT_OPTIMIZER", "distill", "teacher_targets"]
