"""The train state, the jitted train step and validation loss, for one model (optionally
data-parallel over a ``data`` mesh axis) and for a population of members (vmapped), and the
engines the training loop runs them through.

The series live on the device; each step samples its windows there (no host round trip), is
jitted once, donates its state and derives its randomness from one key by ``fold_in(key,
step)``, so the same seed and data give bit-identical parameters.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from ntjax._jit import jit_with
from ntjax.config import ConfigError, ModelConfig, OptimizerConfig, TrainingConfig
from ntjax.data.windows import gather_windows, split_window
from ntjax.models import ModelSpec, compile_options, spec_for
from ntjax.models.dropout import drop
from ntjax.train.prepare import TrainingData


class TrainState(NamedTuple):
    """The whole mutable state of a run, as one pytree updated out of place."""

    step: jax.Array
    params: Any
    opt_state: Any


def _windows(config: ModelConfig, data_values, windows):
    """The model inputs and ``[batch, horizon]`` targets of ``windows`` (series, start)."""
    window = gather_windows(
        data_values, windows[:, 0], windows[:, 1], config.input_size + config.horizon
    )
    return split_window(window, config)


def _window_loss(
    spec: ModelSpec,
    config: ModelConfig,
    params,
    data_values,
    windows,
    key,
    teacher=None,
    teacher_weight=None,
):
    inputs, targets = _windows(config, data_values, windows)
    loss = spec.training_loss(config, params, inputs, targets, key=key).mean()
    if teacher is None:
        return loss
    # Distillation: the data's loss mixed with the loss against the teacher's quantiles.
    distilled = spec.distillation_loss(config, params, inputs, teacher, key=key).mean()
    return (1.0 - teacher_weight) * loss + teacher_weight * distilled


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
        teacher = None if data.teacher is None else data.teacher[pick]
        if batch_sharding is not None:
            windows = jax.lax.with_sharding_constraint(windows, batch_sharding)
        loss, grads = jax.value_and_grad(_window_loss, argnums=2)(
            spec,
            config,
            state.params,
            data.values,
            windows,
            dropout_key,
            teacher,
            data.teacher_weight,
        )
        updates, opt_state = tx.update(grads, state.opt_state, state.params, value=loss)
        params = optax.apply_updates(state.params, updates)
        return TrainState(state.step + 1, params, opt_state), loss

    return step


def sharded_train_step_fn(
    config: ModelConfig,
    tx: optax.GradientTransformationExtraArgs,
    batch_size: int,
    mesh: jax.sharding.Mesh,
) -> Callable[[TrainState, TrainingData, jax.Array], tuple[TrainState, jax.Array]]:
    """The train step of series-sharded data (``ntjax.train.shards``): each device samples
    ``batch_size / devices`` windows of its own series from ``fold_in(fold_in(key, step),
    device)``; losses and gradients are averaged over the ``data`` axis, so every device takes
    the same optimizer step on replicated parameters."""
    spec = spec_for(config)
    local_batch = batch_size // mesh.size

    def local_step(state: TrainState, data: TrainingData, key: jax.Array):
        device = jax.lax.axis_index("data")
        step_key = jax.random.fold_in(jax.random.fold_in(key, state.step), device)
        sample_key, dropout_key = jax.random.split(step_key)
        pick = jax.random.randint(sample_key, (local_batch,), 0, data.n_windows[0])
        loss, grads = jax.value_and_grad(_window_loss, argnums=2)(
            spec, config, state.params, data.values, data.windows[pick], dropout_key
        )
        loss, grads = jax.lax.pmean((loss, grads), "data")
        updates, opt_state = tx.update(grads, state.opt_state, state.params, value=loss)
        params = optax.apply_updates(state.params, updates)
        return TrainState(state.step + 1, params, opt_state), loss

    return jax.shard_map(
        local_step,
        mesh=mesh,
        in_specs=(P(), _sharded_specs(), P()),
        out_specs=(P(), P()),
        check_vma=False,
    )


def sharded_eval_loss_fn(
    config: ModelConfig, mesh: jax.sharding.Mesh
) -> Callable[[Any, TrainingData], jax.Array]:
    """Deterministic mean training loss over every real validation window of every device."""
    spec = spec_for(config)

    def local_eval(params, data: TrainingData) -> jax.Array:
        inputs, targets = _windows(config, data.values, data.val_windows)
        losses = spec.training_loss(config, params, inputs, targets, key=None)
        per_window = losses.reshape(losses.shape[0], -1).mean(axis=1)
        total = jax.lax.psum(jnp.sum(per_window * data.val_weights), "data")
        return total / jax.lax.psum(jnp.sum(data.val_weights), "data")

    return jax.shard_map(
        local_eval, mesh=mesh, in_specs=(P(), _sharded_specs()), out_specs=P(), check_vma=False
    )


def _sharded_specs() -> TrainingData:
    return TrainingData(
        values=P("data"),
        windows=P("data"),
        n_windows=P("data"),
        val_windows=P("data"),
        teacher=None,
        teacher_weight=None,
        val_weights=P("data"),
    )


def multi_step_fn(
    step: Callable[..., tuple[TrainState, jax.Array]],
    *,
    wait_each_step: bool = False,
) -> Callable[..., tuple[TrainState, jax.Array]]:
    """Wraps a jitted, donating train step into ``steps(state, data, key, n_steps, *args)``:
    ``n_steps`` dispatches of ``step(state, data, key, *args)``, returning the state and the
    step losses stacked on a new last axis (a numpy ``[..., n_steps]``).

    The loop stays on the host: dispatch costs a few microseconds per step, while a
    ``lax.fori_loop`` around the step makes XLA:CPU run convolutions (TCN) 5-40x slower.
    ``wait_each_step`` waits for each step before dispatching the next: on several CPU devices
    of one process, steps dispatched ahead take the thread pool's threads into their in-process
    all-reduce and wait there for a device that has no thread left (XLA aborts after 40 s).
    """

    def steps(state: TrainState, data: TrainingData, key: jax.Array, n_steps: int, *args):
        losses = []
        for _ in range(int(n_steps)):
            state, loss = step(state, data, key, *args)
            if wait_each_step:
                loss.block_until_ready()
            losses.append(loss)
        # Stacked on the host: a device stack would compile once per count of steps.
        return state, np.stack(jax.device_get(losses), axis=-1)

    return steps


def eval_loss_fn(config: ModelConfig) -> Callable[[Any, TrainingData], jax.Array]:
    """Deterministic mean training loss over the validation windows."""
    spec = spec_for(config)

    def evaluate(params, data: TrainingData) -> jax.Array:
        return _window_loss(spec, config, params, data.values, data.val_windows, None)

    return evaluate


def _mesh_devices(training: TrainingConfig) -> list[jax.Device]:
    # Every device of every process (one process: its local devices).
    devices = jax.devices()
    if jax.process_count() > 1:
        # Each process must hold a share of the mesh: all devices, the batch split evenly.
        if training.devices not in (None, len(devices)) or training.batch_size % len(devices):
            raise ConfigError(
                f"a run over {jax.process_count()} processes uses all their {len(devices)} "
                f"devices: training.devices must be None and batch_size "
                f"({training.batch_size}) a multiple of {len(devices)}."
            )
        return devices
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
    shard_series: bool = False,
) -> _Programs:
    """The optimizer, mesh and jitted step/eval of a run, cached so that runs differing only in
    seed or data (refits, cross-validation, backtests) reuse one compiled program."""
    tx = optimizer.build(max_steps)
    mesh, batch_sharding = None, None
    if len(device_ids) > 1 or shard_series:
        devices = [d for d in jax.devices() if d.id in device_ids]
        mesh = jax.make_mesh(
            (len(devices),), ("data",), (jax.sharding.AxisType.Auto,), devices=devices
        )
        batch_sharding = NamedSharding(mesh, P("data"))
    options = compile_options(config)
    if shard_series:
        step_fn = sharded_train_step_fn(config, tx, batch_size, mesh)
        eval_fn = sharded_eval_loss_fn(config, mesh)
    else:
        step_fn = train_step_fn(config, tx, batch_size, batch_sharding)
        eval_fn = eval_loss_fn(config)
    step = jit_with(options, step_fn, donate_argnums=0)
    local_cpu = [d for d in jax.devices() if d.id in device_ids and d.platform == "cpu"]
    local_cpu = [d for d in local_cpu if d.process_index == jax.process_index()]
    return _Programs(
        tx=tx,
        mesh=mesh,
        step=step,
        steps=multi_step_fn(step, wait_each_step=len(local_cpu) > 1),
        eval_loss=jit_with(options, eval_fn),
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
            training.shard_series,
        )
        self.tx, self.mesh, self.eval_loss = programs.tx, programs.mesh, programs.eval_loss
        self.step, self.steps = programs.step, programs.steps

    @property
    def n_devices(self) -> int:
        return 1 if self.mesh is None else self.mesh.size

    def replicate(self, tree: Any) -> Any:
        """Places a pytree on every device of the mesh (a no-op on one device), committed.

        Over several processes every process passes the same values (same seed, same data)
        and the result is one global array per leaf."""
        if self.mesh is None:
            return jax.device_put(tree)
        sharding = NamedSharding(self.mesh, P())
        if jax.process_count() == 1:
            return jax.device_put(tree, sharding)
        return jax.tree.map(lambda leaf: _global_replica(leaf, sharding), tree)

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


def _global_replica(leaf: Any, sharding: NamedSharding) -> jax.Array:
    """``leaf`` (the same value on every process) as a global array replicated on every
    device of ``sharding``'s mesh."""
    if isinstance(leaf, jax.Array) and jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
        data = _global_replica(jax.random.key_data(leaf), sharding)
        return jax.random.wrap_key_data(data, impl=jax.random.key_impl(leaf))
    value = np.asarray(jax.device_get(leaf))
    return jax.make_array_from_callback(value.shape, sharding, lambda index: value[index])


def _member_dropout(keep_prob: jax.Array):
    """Method interceptor running every ``nn.Dropout`` with keep probability ``keep_prob``
    (a traced per-member value) instead of its static rate; the mask and scaling follow
    ``ntjax.models.dropout.Dropout`` exactly (its ``drop``), so a member equals the model built
    with its own rate."""

    def interceptor(next_fun, args, kwargs, context):
        module = context.module
        if not isinstance(module, nn.Dropout) or context.method_name != "__call__":
            return next_fun(*args, **kwargs)
        inputs = args[0]
        deterministic = nn.merge_param(
            "deterministic",
            module.deterministic,
            kwargs.get("deterministic", args[1] if len(args) > 1 else None),
        )
        if deterministic:
            return inputs
        rng = kwargs.get("rng", args[2] if len(args) > 2 else None)
        if rng is None:
            rng = module.make_rng(module.rng_collection)
        return drop(inputs, keep_prob, rng, module.broadcast_dims)

    return nn.intercept_methods(interceptor)


def _population_tx(optimizer: OptimizerConfig, total_steps: int, learning_rate) -> Any:
    # Every schedule and optimizer is linear in the learning rate, so the chain is built at
    # rate 1 and each member's rate is a scale held in its optimizer state.
    unit = dataclasses.replace(optimizer, learning_rate=1.0).build(total_steps)
    return optax.chain(unit, optax.inject_hyperparams(optax.scale)(step_size=learning_rate))


def _stacked(trees: Sequence[Any]) -> Any:
    """Pytrees of equal structure stacked leaf by leaf on a new leading axis, on the host:
    ``jnp.stack`` would compile a program per leaf shape (1.6 s for NHITS's 22 leaves)."""
    return jax.tree.map(lambda *leaves: jnp.asarray(np.stack(jax.device_get(leaves))), *trees)


@functools.partial(jax.jit, donate_argnums=0)
def _keep_best(best: Any, params: Any, improved: jax.Array) -> Any:
    def pick(old, new):
        return jnp.where(improved.reshape((-1,) + (1,) * (new.ndim - 1)), new, old)

    return jax.tree.map(pick, best, params)


class PopulationPrograms(NamedTuple):
    """The compiled pieces of a population, each vmapped over the member axis."""

    init: Callable[[Any, jax.Array], TrainState]
    steps: Callable[..., tuple[TrainState, jax.Array]]
    eval_loss: Callable[[Any, TrainingData], jax.Array]


@functools.lru_cache(maxsize=16)
def population_programs(
    config: ModelConfig, training: TrainingConfig, optimizer: OptimizerConfig
) -> PopulationPrograms:
    """The jitted population init, steps and eval of a template config, cached so that
    successive populations of the same program (rounds of a study, refitted ensembles)
    compile once.

    ``training`` and ``optimizer`` come with their per-member fields normalised. ``steps``
    runs a validation period of vmapped steps (``ntjax.train.multi_step_fn``).
    """
    step = train_step_fn(
        config, _population_tx(optimizer, training.max_steps, 1.0), training.batch_size
    )
    uses_dropout = getattr(config, "dropout", 0.0) > 0

    def member_state(params, learning_rate):
        member_tx = _population_tx(optimizer, training.max_steps, learning_rate)
        return TrainState(jnp.zeros((), jnp.int32), params, member_tx.init(params))

    def member_step(state, data, key, keep_prob):
        if not uses_dropout:
            return step(state, data, key)
        with _member_dropout(keep_prob):
            return step(state, data, key)

    options = compile_options(config)
    population_step = jit_with(
        options, jax.vmap(member_step, in_axes=(0, None, 0, 0)), donate_argnums=0
    )
    return PopulationPrograms(
        init=jax.jit(jax.vmap(member_state)),
        steps=multi_step_fn(population_step),
        eval_loss=jit_with(options, jax.vmap(eval_loss_fn(config), in_axes=(0, None))),
    )


def _shapes(tree: Any) -> Any:
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x), x.dtype), tree)


class SingleEngine:
    """One model's run for the training loop: the plain jitted step (data-parallel on the
    trainer's mesh), its losses seen as a member axis of one."""

    n_members = 1

    def __init__(self, trainer: Trainer, key: jax.Array, state: TrainState) -> None:
        # Over several processes every input of the step must be a global array; in one
        # process the key stays as it was (uncommitted), as before multi-process training.
        self.trainer = trainer
        self.key = trainer.replicate(key) if jax.process_count() > 1 else key
        self._shape = _shapes(state)

    def steps(self, state: TrainState, data: TrainingData, n_steps: int) -> tuple[Any, Any]:
        state, losses = self.trainer.steps(state, data, self.key, np.int32(n_steps))
        return state, np.asarray(losses)[None, :]

    def eval_loss(self, params: Any, data: TrainingData) -> np.ndarray:
        return np.asarray([float(self.trainer.eval_loss(params, data))])

    def keep_best(self, best: Any, params: Any, improved: np.ndarray) -> Any:
        # A copy: the next step donates the state's buffers.
        return jax.tree.map(jnp.copy, params) if best is None or improved[0] else best

    def state_shape(self) -> Any:
        return self._shape

    def place(self, tree: Any) -> Any:
        return self.trainer.replicate(tree)


class PopulationEngine:
    """A population's run for the training loop: every member stepped by one vmapped program,
    each from its own key, with its own keep probability of dropout."""

    def __init__(
        self,
        programs: PopulationPrograms,
        keys: jax.Array,
        keep_probs: jax.Array,
        state: TrainState,
    ) -> None:
        self.programs, self.keys, self.keep_probs = programs, keys, keep_probs
        self.n_members = int(keys.shape[0])
        self._shape = _shapes(state)

    def steps(self, state: TrainState, data: TrainingData, n_steps: int) -> tuple[Any, Any]:
        return self.programs.steps(state, data, self.keys, np.int32(n_steps), self.keep_probs)

    def eval_loss(self, params: Any, data: TrainingData) -> np.ndarray:
        return np.asarray(self.programs.eval_loss(params, data))

    def keep_best(self, best: Any, params: Any, improved: np.ndarray) -> Any:
        if best is None:
            return jax.tree.map(jnp.copy, params)
        return _keep_best(best, params, jnp.asarray(improved))

    def state_shape(self) -> Any:
        return self._shape

    def place(self, tree: Any) -> Any:
        return jax.device_put(tree)
