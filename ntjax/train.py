"""Training: the train state, the jitted step, and the fit loop.

The series live on the device; each step samples its windows there (no host round trip), is
jitted once, donates its state and derives its randomness from one key by ``fold_in(key,
step)``, so the same seed and data give bit-identical parameters; the host only reads the
losses back at each validation check. On several devices the step runs data-parallel: windows
sharded on a ``data`` mesh axis, parameters replicated.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import polars as pl
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
from tqdm.auto import tqdm

from ntjax import _io, provenance
from ntjax._jit import jit_with
from ntjax._version import __version__
from ntjax.config import ModelConfig, OptimizerConfig, TrainingConfig
from ntjax.data.frame import validate
from ntjax.data.scalers import ScalerState, fit_scaler, transform
from ntjax.data.windows import Panel, channels, gather_windows, pack, split_window
from ntjax.models import ModelSpec, compile_options, spec_for
from ntjax.models.ensemble import EnsembleConfig
from ntjax.predict.conformal import tail_calibration
from ntjax.record import ModelRecord, new_id, utc_now


class TrainState(NamedTuple):
    """The whole mutable state of a run, as one pytree updated out of place."""

    step: jax.Array
    params: Any
    opt_state: Any


class TrainingData(NamedTuple):
    """Device-resident training data.

    Shapes are padded to buckets (time on the left with zeros, the window table at the end) so
    that refits on slightly longer data reuse the compiled step instead of recompiling.

    Attributes:
      values: ``[n_series, time, n_channels]`` float32, scaled, zeros where no data.
      windows: ``[table, 2]`` int32 (series, start) of training windows; the first
        ``n_windows`` rows are real.
      n_windows: ``[]`` int32 number of real training windows (steps sample among them).
      val_windows: ``[n_val, 2]`` int32 (series, start) of validation windows.
    """

    values: jax.Array
    windows: jax.Array
    n_windows: jax.Array
    val_windows: jax.Array


@dataclass(frozen=True)
class Prepared:
    """Host-side result of preparing a frame for training."""

    panel: Panel
    scaler: ScalerState
    data: TrainingData
    fingerprint: str
    calibration_size: int
    trained_on: pl.DataFrame


def fingerprint(panel: Panel) -> str:
    """sha256 of the series (ids, time stamps, values): what a model was trained on."""
    digest = hashlib.sha256()
    digest.update(json.dumps([panel.ids, panel.columns]).encode())
    digest.update(panel.lengths.astype(np.int64).tobytes())
    digest.update(panel.ds.tobytes())
    digest.update(np.nan_to_num(panel.values, nan=0.0).astype(np.float64).tobytes())
    return digest.hexdigest()


def validation_starts(
    panel: Panel, config: ModelConfig, val_size: int, *, end: int | None = None
) -> np.ndarray:
    """(series, start) of validation windows: forecasts whose targets lie in the last
    ``val_size`` steps before time position ``end`` (default: the end of the panel), at most
    64 cutoffs per series spread evenly."""
    if val_size == 0:
        return np.zeros((0, 2), np.int32)
    horizon, size = config.horizon, config.input_size
    n_time = panel.n_time if end is None else end
    if val_size < horizon:
        raise ValueError(f"val_size ({val_size}) must be 0 or at least the horizon ({horizon}).")
    n_cut = val_size - horizon + 1
    stride = max(1, math.ceil(n_cut / 64))
    cutoffs = np.arange(n_time - val_size, n_time - horizon + 1, stride)
    series = np.repeat(np.arange(panel.n_series), len(cutoffs))
    starts = np.tile(cutoffs - size, panel.n_series)
    return np.stack([series, starts], axis=1).astype(np.int32)


def calibration_size(config: ModelConfig, training: TrainingConfig, shortest: int) -> int:
    """Steps held out at the end of each series for interval calibration: ``training.
    calibration_size`` when set, else ten horizons, at most a fifth of what the shortest series
    has beyond one training window and the validation tail (0 without calibration)."""
    if training.calibration is None:
        return 0
    if training.calibration_size is not None:
        return training.calibration_size
    spare = shortest - (config.input_size + config.horizon + training.val_size)
    return max(0, min(10 * config.horizon, spare // 5))


def prepare(
    df: Any,
    config: ModelConfig,
    training: TrainingConfig,
    *,
    scaler: ScalerState | None = None,
) -> Prepared:
    """Validates ``df``, fits the scaler on the training part (all but the last ``val_size`` +
    calibration steps of each series) and builds the device arrays and window tables.

    The last ``calibration_size(...)`` steps of each series are left out of the gradient
    windows and of validation; the spans of each role are the record's provenance.
    """
    exog = (*config.hist_exog, *config.futr_exog)
    needed = config.input_size + config.horizon + training.val_size
    reason = "input_size + horizon" + (" + val_size" if training.val_size else "")
    if training.calibration is not None and training.calibration_size:
        needed += training.calibration_size
        reason += " + calibration_size"
    frame = validate(df, exog=exog, min_length=needed, length_reason=reason)
    panel = pack(frame, channels(config))
    n_time, window = panel.n_time, config.input_size + config.horizon
    n_calibration = calibration_size(config, training, int(panel.lengths.min()))
    fit_end = n_time - n_calibration
    train_end = fit_end - training.val_size
    if scaler is None:
        train_values = panel.values[:, :train_end]
        scaler = fit_scaler(training.scaler, train_values, ids=panel.ids, columns=panel.columns)
        loc, scale = scaler.loc, scaler.scale
    else:
        loc, scale, known = scaler.rows(panel.ids)
        if not known.all():
            missing = [u for u, k in zip(panel.ids, known, strict=True) if not k][:5]
            raise ValueError(f"series {missing} are not in the scaler of the model being tuned.")
    scaled = np.nan_to_num(transform(panel.values, loc, scale), nan=0.0).astype(np.float32)
    pad = _time_bucket(n_time) - n_time
    scaled = np.concatenate(
        [np.zeros((panel.n_series, pad, scaled.shape[2]), np.float32), scaled], 1
    )
    first = n_time - panel.lengths
    starts = [np.arange(f, max(f, train_end - window + 1)) for f in first]
    windows = np.concatenate(
        [np.stack([np.full(len(s), i), s + pad], axis=1) for i, s in enumerate(starts)]
    ).astype(np.int32)
    n_windows = len(windows)
    table = np.zeros((1 << max(0, (n_windows - 1).bit_length()), 2), np.int32)
    table[:n_windows] = windows
    val_windows = validation_starts(panel, config, training.val_size, end=fit_end)
    val_windows[:, 1] += pad
    data = TrainingData(
        values=jnp.asarray(scaled),
        windows=jnp.asarray(table),
        n_windows=jnp.asarray(n_windows, jnp.int32),
        val_windows=jnp.asarray(val_windows),
    )
    trained_on = provenance.panel_spans(
        panel,
        {
            "train": (0, train_end),
            "validation": (train_end, fit_end),
            "calibration": (fit_end, n_time),
        },
    )
    return Prepared(panel, scaler, data, fingerprint(panel), n_calibration, trained_on)


def _time_bucket(n_time: int) -> int:
    """``n_time`` rounded up to a multiple of a quarter of its power of two (<= 25% padding)."""
    granule = 1 << max(0, n_time.bit_length() - 3)
    return -(-n_time // granule) * granule


def _window_loss(spec: ModelSpec, config: ModelConfig, params, data_values, windows, key):
    window = gather_windows(
        data_values, windows[:, 0], windows[:, 1], config.input_size + config.horizon
    )
    inputs, targets = split_window(window, config)
    return spec.training_loss(config, params, inputs, targets, key=key).mean()


def train_step_fn(
    config: ModelConfig,
    tx: optax.GradientTransformationExtraArgs,
    batch_size: int,
    batch_sharding: NamedSharding | None = None,
) -> Callable[[TrainState, TrainingData, jax.Array], tuple[TrainState, jax.Array]]:
    """The pure train step: sample ``batch_size`` windows on the device, take one optimizer
    step. ``key`` is the run's key; the step's own key is ``fold_in(key, step)``."""
    spec = spec_for(config)

    def step(state: TrainState, data: TrainingData, key: jax.Array):
        sample_key, dropout_key = jax.random.split(jax.random.fold_in(key, state.step))
        pick = jax.random.randint(sample_key, (batch_size,), 0, data.n_windows)
        windows = data.windows[pick]
        if batch_sharding is not None:
            windows = jax.lax.with_sharding_constraint(windows, batch_sharding)
        loss, grads = jax.value_and_grad(_window_loss, argnums=2)(
            spec, config, state.params, data.values, windows, dropout_key
        )
        updates, opt_state = tx.update(grads, state.opt_state, state.params, value=loss)
        params = optax.apply_updates(state.params, updates)
        return TrainState(state.step + 1, params, opt_state), loss

    return step


def multi_step_fn(
    step: Callable[..., tuple[TrainState, jax.Array]],
) -> Callable[..., tuple[TrainState, jax.Array]]:
    """Wraps a jitted, donating train step into ``steps(state, data, key, n_steps, *args)``:
    ``n_steps`` dispatches of ``step(state, data, key, *args)``, returning the state and the
    step losses stacked on a new last axis (a numpy ``[..., n_steps]``).

    The loop stays on the host: dispatch costs a few microseconds per step, while a
    ``lax.fori_loop`` around the step makes XLA:CPU run convolutions (TCN) 5-40x slower.
    """

    def steps(state: TrainState, data: TrainingData, key: jax.Array, n_steps: int, *args):
        losses = []
        for _ in range(int(n_steps)):
            state, loss = step(state, data, key, *args)
            losses.append(loss)
        # Stacked on the host: a device stack would compile once per count of steps.
        return state, np.stack(jax.device_get(losses), axis=-1)

    return steps


def chunk_end(done: int, max_steps: int, *every: int) -> int:
    """The step where the next run of steps must stop for the host: the next multiple of any
    of ``every`` (validation checks, checkpoints; 0 means never) or ``max_steps``."""
    ends = [max_steps] + [(done // n + 1) * n for n in every if n]
    return min(ends)


def eval_loss_fn(config: ModelConfig) -> Callable[[Any, TrainingData], jax.Array]:
    """Deterministic mean training loss over the validation windows."""
    spec = spec_for(config)

    def evaluate(params, data: TrainingData) -> jax.Array:
        return _window_loss(spec, config, params, data.values, data.val_windows, None)

    return evaluate


def _mesh_devices(training: TrainingConfig) -> list[jax.Device]:
    devices = jax.local_devices()
    if training.devices is not None:
        if training.devices > len(devices):
            raise ValueError(
                f"training.devices={training.devices} but only {len(devices)} devices are visible."
            )
        devices = devices[: training.devices]
    n = len(devices)
    while training.batch_size % n:
        n -= 1
    return devices[:n]


class _Programs(NamedTuple):
    """The compiled pieces of a run: one step, ``steps`` (n steps, what ``fit`` runs between
    validation checks), and the validation loss."""

    tx: optax.GradientTransformationExtraArgs
    mesh: jax.sharding.Mesh | None
    step: Callable[[TrainState, TrainingData, jax.Array], tuple[TrainState, jax.Array]]
    steps: Callable[..., tuple[TrainState, jax.Array]]
    eval_loss: Callable[[Any, TrainingData], jax.Array]


@functools.lru_cache(maxsize=32)
def _programs(
    config: ModelConfig,
    optimizer: OptimizerConfig,
    batch_size: int,
    max_steps: int,
    device_ids: tuple[int, ...],
) -> _Programs:
    """The optimizer, mesh and jitted step/eval of a run, cached so that runs differing only in
    seed or data (refits, cross-validation, backtests) reuse one compiled program."""
    tx = optimizer.build(max_steps)
    mesh, batch_sharding = None, None
    if len(device_ids) > 1:
        devices = [d for d in jax.local_devices() if d.id in device_ids]
        mesh = jax.make_mesh(
            (len(devices),), ("data",), (jax.sharding.AxisType.Auto,), devices=devices
        )
        batch_sharding = NamedSharding(mesh, P("data"))
    options = compile_options(config)
    step = jit_with(
        options, train_step_fn(config, tx, batch_size, batch_sharding), donate_argnums=0
    )
    return _Programs(
        tx=tx,
        mesh=mesh,
        step=step,
        steps=multi_step_fn(step),
        eval_loss=jit_with(options, eval_loss_fn(config)),
    )


@functools.partial(jax.jit, static_argnums=0)
def _jitted_init(config: ModelConfig, key: jax.Array) -> Any:
    """A family's ``init``, compiled once per config instead of run op by op."""
    return spec_for(config).init(config, key)


class Trainer:
    """The compiled pieces of one training run: state init, the jitted step and eval.

    ``Trainer(config, training, optimizer).steps(state, data, key, n)`` runs ``n`` steps (a
    validation period) and is what ``fit`` loops over; ``step(state, data, key)`` is one step,
    for benchmarks.
    """

    def __init__(
        self, config: ModelConfig, training: TrainingConfig, optimizer: OptimizerConfig
    ) -> None:
        self.config, self.training, self.optimizer = config, training, optimizer
        self.spec = spec_for(config)
        devices = tuple(d.id for d in _mesh_devices(training))
        programs = _programs(
            config,
            optimizer,
            training.batch_size,
            training.max_steps,
            devices,
        )
        self.tx, self.mesh, self.eval_loss = programs.tx, programs.mesh, programs.eval_loss
        self.step, self.steps = programs.step, programs.steps

    @property
    def n_devices(self) -> int:
        return 1 if self.mesh is None else self.mesh.size

    def replicate(self, tree: Any) -> Any:
        """Places a pytree on every device of the mesh (a no-op on one device)."""
        if self.mesh is None:
            return jax.device_put(tree)
        return jax.device_put(tree, NamedSharding(self.mesh, P()))

    def init_state(self, key: jax.Array, params: Any | None = None) -> TrainState:
        if params is None:
            params = _jitted_init(self.config, key)
        else:  # a warm start: copies, since the step donates its state (the parent keeps its own)
            params = jax.tree.map(jnp.array, params)
        state = TrainState(jnp.zeros((), jnp.int32), params, self.tx.init(params))
        return self.replicate(state)

    def state_shape(self) -> Any:
        """Structure of the train state without allocating it (restore target)."""
        return jax.eval_shape(self.init_state, jax.random.key(0))


@dataclass(frozen=True)
class Progress:
    """What a callback sees at each validation check."""

    step: int
    train_loss: float
    val_loss: float | None


def _run_key(config, training, optimizer, data_fingerprint: str) -> str:
    skip = {"progress", "checkpoint_dir", "checkpoint_every"}
    train_fields = {k: v for k, v in training.__dict__.items() if k not in skip}
    blob = json.dumps(
        [config.to_dict(), train_fields, optimizer.__dict__, data_fingerprint],
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


class _Checkpointer:
    """Resumable checkpoints of a run: the train state (safetensors) and loop bookkeeping
    (JSON), each written atomically; a checkpoint of another run is refused."""

    def __init__(self, folder: str, run_key: str) -> None:
        self.folder = Path(folder)
        self.run_key = run_key

    @property
    def _state_path(self) -> Path:
        return self.folder / "state.safetensors"

    @property
    def _meta_path(self) -> Path:
        return self.folder / "checkpoint.json"

    def save(self, state: TrainState, best_params: Any, loop: dict) -> None:
        tree = {"state": state, "best": best_params if best_params is not None else {}}
        _io.atomic_write(self._state_path, _io.tree_to_bytes(jax.device_get(tree)))
        meta = {"run_key": self.run_key, "loop": loop, "has_best": best_params is not None}
        _io.atomic_write(self._meta_path, _io.dumps_json(meta))

    def load(self, state_shape: Any) -> tuple[TrainState, Any, dict] | None:
        if not self._meta_path.exists():
            return None
        meta = json.loads(self._meta_path.read_text())
        if meta.get("run_key") != self.run_key:
            raise ValueError(
                f"the checkpoint in {self.folder} belongs to a different run (model, training, "
                "optimizer or data differ); use another checkpoint_dir or delete it."
            )
        best_shape = state_shape.params if meta["has_best"] else {}
        tree = _io.tree_from_bytes(
            self._state_path.read_bytes(), {"state": state_shape, "best": best_shape}
        )
        best = tree["best"] if meta["has_best"] else None
        return tree["state"], best, meta["loop"]


def fit(
    df: Any,
    config: ModelConfig,
    training: TrainingConfig | None = None,
    optimizer: OptimizerConfig | None = None,
    *,
    init_from: ModelRecord | None = None,
    callbacks: Sequence[Callable[[Progress], None]] = (),
) -> ModelRecord:
    """Fits a model on every series of ``df`` and returns a new record.

    Args:
      df: long frame ``unique_id, ds, y`` (+ exogenous columns the config names).
      config: model config (e.g. ``NHITSConfig(horizon=24, input_size=96)``).
      training: ``TrainingConfig`` (default ``TrainingConfig()``).
      optimizer: ``OptimizerConfig`` (default Adam, lr 1e-3, grad clip 1.0).
      init_from: warm start (fine-tuning) from a record of the same config; its scaler is kept
        and the new record's ``parent_id`` points to it.
      callbacks: called with a ``Progress`` at each validation check; may raise to stop the run
        (e.g. ``optuna.TrialPruned``).

    Returns:
      A ``ModelRecord`` with status ``trained``, a new UUID, the best parameters (by validation
      loss when ``val_size > 0``, else the last), the scaler, metrics and loss history. A
      stacked ``EnsembleConfig`` (``size > 1``, e.g. from ``train(..., ensemble_size=K)``) is
      trained as one population by ``ntjax.population.fit_ensemble``.
    """
    training = training or TrainingConfig()
    optimizer = optimizer or OptimizerConfig()
    if init_from is not None and init_from.config != config:
        raise ValueError("init_from must have the same model config as the run (same shapes).")
    if isinstance(config, EnsembleConfig) and config.size > 1:
        # Stacked members train as one population: one vmapped step, one record.
        from ntjax.population import fit_ensemble

        return fit_ensemble(
            df, config, training, optimizer, init_from=init_from, callbacks=callbacks
        )
    started = time.perf_counter()
    prepared = prepare(
        df, config, training, scaler=init_from.scaler if init_from is not None else None
    )
    trainer = Trainer(config, training, optimizer)
    data = trainer.replicate(prepared.data)
    if int(prepared.data.n_windows) == 0:
        raise ValueError("no training windows: the series are too short for this config.")
    init_key, loop_key = jax.random.split(jax.random.key(training.seed))
    state = trainer.init_state(init_key, init_from.params if init_from is not None else None)

    has_val = training.val_size > 0
    best_params, best_val, bad_checks = None, math.inf, 0
    history: dict[str, list] = {"step": [], "train_loss": [], "val_loss": []}
    checkpointer = None
    pending_restored: list[float] = []
    if training.checkpoint_dir:
        checkpointer = _Checkpointer(
            training.checkpoint_dir, _run_key(config, training, optimizer, prepared.fingerprint)
        )
        restored = checkpointer.load(trainer.state_shape())
        if restored is not None:
            state, best_params, loop = restored
            state = trainer.replicate(state)
            best_val, bad_checks, history = loop["best_val"], loop["bad_checks"], loop["history"]
            pending_restored = loop["pending"]

    start_step = int(state.step)
    bar = tqdm(
        total=training.max_steps,
        initial=start_step,
        disable=not training.progress,
        file=sys.stderr,
        desc=f"train {config.kind}",
        dynamic_ncols=True,
    )
    pending: list[float] = list(pending_restored)
    step_times: list[float] = []
    stopped_early = False
    tick = time.perf_counter()
    checkpoint_every = training.checkpoint_every if checkpointer is not None else 0
    done = start_step
    try:
        while done < training.max_steps:
            end = chunk_end(done, training.max_steps, training.val_check_steps, checkpoint_every)
            state, losses = trainer.steps(state, data, loop_key, np.int32(end - done))
            pending.extend(np.asarray(jax.device_get(losses))[: end - done].tolist())
            done = end
            if done % training.val_check_steps == 0 or done == training.max_steps:
                train_loss = float(np.mean(pending))
                step_times.append((time.perf_counter() - tick) / len(pending))
                pending = []
                if not math.isfinite(train_loss):
                    raise FloatingPointError(f"training loss became {train_loss} at step {done}.")
                val_loss = float(trainer.eval_loss(state.params, data)) if has_val else None
                history["step"].append(done)
                history["train_loss"].append(train_loss)
                history["val_loss"].append(val_loss)
                if has_val:
                    if val_loss < best_val:
                        best_val, bad_checks = val_loss, 0
                        best_params = jax.device_get(state.params)
                    else:
                        bad_checks += 1
                postfix = {"loss": f"{train_loss:.4f}"}
                if has_val:
                    postfix["val"] = f"{val_loss:.4f}"
                bar.set_postfix(postfix, refresh=False)
                bar.update(done - bar.n)
                for callback in callbacks:
                    callback(Progress(done, train_loss, val_loss))
                patience = training.early_stopping_patience
                stopped_early = has_val and patience is not None and bad_checks >= patience
                tick = time.perf_counter()
            if checkpointer is not None and (
                stopped_early or (checkpoint_every and done % checkpoint_every == 0)
            ):
                loop = {
                    "best_val": best_val,
                    "bad_checks": bad_checks,
                    "history": history,
                    "pending": pending,
                }
                checkpointer.save(state, best_params, loop)
            if stopped_early:
                break
    finally:
        bar.close()

    final_step = int(state.step)
    params = best_params if best_params is not None else jax.device_get(state.params)
    params = jax.device_put(params, jax.local_devices()[0])
    n_steps = final_step - start_step
    step_time = float(np.median(step_times[1:] or step_times)) if step_times else float("nan")
    metrics = {
        "train_loss": history["train_loss"][-1] if history["train_loss"] else float("nan"),
        "steps": final_step,
        "stopped_early": float(stopped_early),
        "train_time_s": time.perf_counter() - started,
        "windows_per_s": training.batch_size / step_time if n_steps and step_time > 0 else 0.0,
    }
    if has_val:
        metrics["val_loss"] = best_val
        metrics["best_step"] = history["step"][
            int(np.argmin([v if v is not None else math.inf for v in history["val_loss"]]))
        ]
    return new_record(
        config,
        params,
        prepared,
        metrics=metrics,
        history=history,
        training=training,
        optimizer=optimizer,
        parent=init_from,
    )


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
