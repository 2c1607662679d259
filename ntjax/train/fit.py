"""``nt.train``: fit one model (a run of one member through the training loop), or a stacked
ensemble (a population)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np

from ntjax.config import ConfigError, ModelConfig, OptimizerConfig, TrainingConfig
from ntjax.models.ensemble import EnsembleConfig
from ntjax.models.quantized import is_quantized
from ntjax.record import ModelRecord
from ntjax.train import distributed, loop, shards
from ntjax.train.checkpoint import Checkpointer, run_key
from ntjax.train.loop import Progress
from ntjax.train.population import fit_ensemble
from ntjax.train.prepare import prepare
from ntjax.train.records import new_record
from ntjax.train.step import SingleEngine, Trainer


def fit(
    df: Any,
    config: ModelConfig,
    training: TrainingConfig | None = None,
    optimizer: OptimizerConfig | None = None,
    *,
    init_from: ModelRecord | None = None,
    keep_scaler: bool = True,
    callbacks: Sequence[Callable[[Progress], None]] = (),
) -> ModelRecord:
    """Fits a model on every series of ``df`` and returns a new record.

    Args:
      df: long frame ``unique_id, ds, y`` (+ exogenous columns the config names).
      config: model config (e.g. ``NHITSConfig(horizon=24, input_size=96)``).
      training: ``TrainingConfig`` (default ``TrainingConfig()``).
      optimizer: ``OptimizerConfig`` (default Adam, lr 1e-3, grad clip 1.0).
      init_from: warm start (fine-tuning) from a record of the same config; the new record's
        ``parent_id`` points to it and its provenance extends the parent's.
      keep_scaler: with ``init_from``, keep the parent's scaler statistics (series new to it
        get their own); False refits the scaler on ``df``.
      callbacks: called with a ``Progress`` at each validation check; may raise to stop the run
        (e.g. ``optuna.TrialPruned``).

    Returns:
      A ``ModelRecord`` with status ``trained``, a new UUID, the best parameters (by validation
      loss when ``val_size > 0``, else the last), the scaler, metrics and loss history. A
      stacked ``EnsembleConfig`` (``size > 1``, e.g. from ``train(..., ensemble_size=K)``) is
      trained as one population by ``ntjax.train.population.fit_ensemble``.

    Raises:
      FloatingPointError: the training loss became non-finite.
    """
    training = training or TrainingConfig()
    optimizer = optimizer or OptimizerConfig()
    if init_from is not None and init_from.config != config:
        raise ValueError("init_from must have the same model config as the run (same shapes).")
    if init_from is not None and is_quantized(init_from.params):
        raise ConfigError(
            f"model {init_from.id} has quantised parameters; warm starts and fine-tuning need "
            f"f32 ones: fine-tune its parent ({init_from.parent_id}) and quantise the result."
        )
    if isinstance(config, EnsembleConfig) and config.size > 1:
        # Stacked members train as one population: one vmapped step, one record.
        return fit_ensemble(
            df,
            config,
            training,
            optimizer,
            init_from=init_from,
            keep_scaler=keep_scaler,
            callbacks=callbacks,
        )
    started = time.perf_counter()
    scaler = init_from.scaler if init_from and keep_scaler else None
    trainer = Trainer(config, training, optimizer)
    if training.shard_series:
        prepared = shards.prepare_sharded(df, config, training, trainer.mesh, scaler=scaler)
        data = prepared.data
    else:
        prepared = prepare(df, config, training, scaler=scaler)
        data = trainer.replicate(prepared.data)
    training = prepared.training  # val_size resolved
    if shards.count_windows(prepared.data) == 0:
        raise ConfigError("no training windows: the series are too short for this config.")
    init_key, loop_key = jax.random.split(jax.random.key(training.seed))
    state = trainer.init_state(init_key, init_from.params if init_from is not None else None)
    checkpointer = None
    if training.checkpoint_dir:
        key = run_key([(config, training, optimizer)], prepared.fingerprint)
        checkpointer = Checkpointer(training.checkpoint_dir, key)

    def on_check(step: int, train_loss: np.ndarray, val_loss: np.ndarray | None) -> None:
        for callback in callbacks:
            callback(
                Progress(
                    step, float(train_loss[0]), None if val_loss is None else float(val_loss[0])
                )
            )

    result = loop.run(
        SingleEngine(trainer, loop_key, state),
        state,
        data,
        training=training,
        on_check=on_check,
        checkpointer=checkpointer,
        progress=training.progress,
        desc=f"train {config.kind}",
    )
    if result.errors[0] is not None:
        raise result.errors[0]
    history = result.histories[0]
    has_val = training.val_size > 0
    best = has_val and math.isfinite(result.best_val[0])
    params = jax.device_get(result.best if best else result.state.params)
    params = jax.device_put(params, jax.local_devices()[0])
    final_step = int(result.state.step)
    n_steps = final_step - result.start_step
    metrics = {
        "train_loss": history["train_loss"][-1] if history["train_loss"] else float("nan"),
        "steps": final_step,
        "stopped_early": float(result.stopped_early[0]),
        "train_time_s": time.perf_counter() - started,
        "windows_per_s": (
            training.batch_size / result.step_time if n_steps and result.step_time > 0 else 0.0
        ),
    }
    if has_val:
        metrics["val_loss"] = float(result.best_val[0])
        metrics["best_step"] = int(result.best_step[0])
    record = new_record(
        config,
        params,
        prepared,
        metrics=metrics,
        history=history,
        training=training,
        optimizer=optimizer,
        parent=init_from,
    )
    if distributed.is_multi_process():
        # Every process of the run trained the same model: one id for all, process 0's.
        record = record.replace(id=distributed.share_id(record.id))
    return record


def train(
    df: Any,
    config: ModelConfig,
    training: TrainingConfig | None = None,
    optimizer: OptimizerConfig | None = None,
    *,
    ensemble_size: int = 1,
    ensemble_method: str = "mean",
    **kwargs: Any,
) -> ModelRecord:
    """``nt.train``: fits ``config`` on ``df`` (see ``fit``).

    With ``ensemble_size=K > 1``, K members of ``config`` are trained together as one vmapped
    program (``ntjax.population``): member ``k`` is the model this call would train alone with
    seed ``training.seed + k`` (its own windows, optimizer state, early stopping and best
    parameters). They come back as one ``ensemble`` record whose params ``{"stacked": ...}``
    carry a leading ``[K]`` member axis, combined by ``ensemble_method`` (``mean``, ``median``,
    or ``weighted`` by inverse validation loss).
    """
    if ensemble_size > 1:
        config = EnsembleConfig(
            horizon=config.horizon,
            input_size=config.input_size,
            quantiles=config.quantiles,
            hist_exog=config.hist_exog,
            futr_exog=config.futr_exog,
            members=(config,),
            size=ensemble_size,
            method=ensemble_method,
            weights=(1.0,) * ensemble_size if ensemble_method == "weighted" else (),
        )
    return fit(df, config, training, optimizer, **kwargs)
