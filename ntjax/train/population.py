"""Population training: K models with parameters of the same shapes, trained as one program.

Members may differ in their seed, learning rate and dropout rate; everything else (model
shapes, data, batch size, steps, schedule) is shared. Their parameters and optimizer states are
stacked on a leading member axis and the train step runs under ``jax.vmap`` in one jitted,
donated program, through the same training loop as a single fit (``ntjax.train.loop``), so K
trials cost one compilation and one stream of batched kernels instead of K. Each member samples
its own windows on the device from its own key, exactly as ``fit`` would, so a member matches
the same model trained alone up to floating-point reassociation.

``fit_population`` returns one record per member (trials of a study), ``fit_ensemble`` one
``ensemble`` record whose params carry the member axis (``nt.train(..., ensemble_size=K)``).

    population = train_seeds(df, config, training, seeds=range(8))  # 8 records
    population.params   # the stacked parameters, [8, ...] on every leaf
    ensemble = nt.train(df, config, training, ensemble_size=8)  # one record, same 8 models
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ntjax.config import ConfigError, ModelConfig, OptimizerConfig, TrainingConfig
from ntjax.data.scalers import ScalerState
from ntjax.models import dummy_inputs, spec_for
from ntjax.record import ModelRecord, utc_now
from ntjax.train import loop
from ntjax.train.checkpoint import Checkpointer, run_key
from ntjax.train.loop import Progress
from ntjax.train.prepare import Prepared, TrainingData, prepare
from ntjax.train.records import new_record
from ntjax.train.step import (
    PopulationEngine,
    _jitted_init,
    _keep_best,
    _member_dropout,
    _stacked,
    population_programs,
)

# Fields that may differ between members, per config: none of them changes a parameter shape.
PER_MEMBER_FIELDS = {
    "model": ("dropout",),
    "training": ("seed",),
    "optimizer": ("learning_rate",),
}


class PopulationError(ValueError):
    """The members cannot share one program (train them one by one instead)."""


class Member(NamedTuple):
    """One model of a population: its model, training and optimizer configs."""

    config: ModelConfig
    training: TrainingConfig
    optimizer: OptimizerConfig


@dataclass(frozen=True, eq=False)
class Population:
    """Result of ``fit_population``.

    Attributes:
      records: one ``ModelRecord`` per member, in member order; a member stopped by a callback
        or by a non-finite loss has status ``failed`` and no parameters.
      params: the members' final parameters stacked on a leading ``[n_members]`` axis (the best
        by validation loss when ``val_size > 0``); rows of failed members are meaningless.
      errors: per member, the exception that stopped it (``None`` for trained members).
    """

    records: tuple[ModelRecord, ...]
    params: Any
    errors: tuple[Exception | None, ...]


def _normalised(member: Member) -> tuple[ModelConfig, TrainingConfig, OptimizerConfig]:
    """A member with its per-member fields (and its progress bar) set to fixed values: equal
    for compatible members."""
    config = member.config
    if hasattr(config, "dropout"):
        config = dataclasses.replace(config, dropout=0.0)
    training = dataclasses.replace(member.training, seed=0, progress=False)
    optimizer = dataclasses.replace(member.optimizer, learning_rate=1.0)
    return config, training, optimizer


def incompatibility(members: Sequence[Member]) -> str | None:
    """Why ``members`` cannot train as one population, or None when they can.

    They can when they differ only in ``PER_MEMBER_FIELDS`` (seed, learning rate, dropout).
    """
    if not members:
        return "a population needs at least one member"
    reference = _normalised(members[0])
    names = ("model", "training", "optimizer")
    for index, member in enumerate(members[1:], start=1):
        for name, mine, theirs in zip(names, _normalised(member), reference, strict=True):
            if mine != theirs:
                fields = [
                    f.name
                    for f in dataclasses.fields(mine)
                    if getattr(mine, f.name) != getattr(theirs, f.name)
                ] or ["kind"]
                return (
                    f"member {index} differs from member 0 in {name} field(s) {fields}; only "
                    f"{PER_MEMBER_FIELDS[name]} may differ"
                )
    return None


def _keep_probs(members: Sequence[Member]) -> np.ndarray:
    # 1 - rate in float64 then float32: the value nn.Dropout itself would use.
    rates = [getattr(m.config, "dropout", 0.0) for m in members]
    return np.asarray([np.float32(1.0 - r) for r in rates], np.float32)


def _template(members: Sequence[Member]) -> ModelConfig:
    """The static config the population is traced with: dropout layers exist when any member
    uses dropout; their rate comes from each member at run time."""
    config = members[0].config
    if hasattr(config, "dropout"):
        config = dataclasses.replace(config, dropout=max(m.config.dropout for m in members))
    return config


def _check_dropout_is_per_member(
    template: ModelConfig, members: Sequence[Member], params: Any
) -> None:
    """Refuses a family whose dropout does not all go through ``nn.Dropout`` (e.g. attention
    dropout with a static rate): one training forward at the smallest member rate, built with
    that rate and with the template's layers run at it, must agree."""
    rates = {getattr(m.config, "dropout", 0.0) for m in members}
    if len(rates) == 1:
        return
    rate = min(rates)
    spec = spec_for(template)
    input_key, dropout_key = jax.random.split(jax.random.key(0))
    inputs = jax.tree.map(
        lambda x: jax.random.normal(input_key, x.shape, x.dtype), dummy_inputs(template, 4)
    )
    own_config = dataclasses.replace(template, dropout=rate)
    own = jax.jit(lambda p, x: spec.apply(own_config, p, x, key=dropout_key))(params, inputs)

    def shared_apply(p, x):
        with _member_dropout(jnp.float32(1.0 - rate)):
            return spec.apply(template, p, x, key=dropout_key)

    shared = jax.jit(shared_apply)(params, inputs)
    if not np.array_equal(np.asarray(own), np.asarray(shared)):
        raise PopulationError(
            f"{template.kind} applies dropout outside nn.Dropout, so members cannot differ in "
            "dropout; train them one by one."
        )


@dataclass(frozen=True, eq=False)
class _Run:
    """What the population loop leaves behind; arrays have a leading member axis."""

    prepared: Prepared
    params: Any
    histories: list[dict[str, list]]
    best_val: np.ndarray
    best_step: np.ndarray
    stop_step: np.ndarray
    stopped_early: np.ndarray
    errors: list[Exception | None]
    elapsed: float
    step_time: float


def _run(
    df: Any,
    members: Sequence[Member],
    *,
    member_callbacks: Sequence[Callable[[int, Progress], None]] = (),
    on_check: Callable[[int, np.ndarray, np.ndarray | None], None] | None = None,
    init_params: Any | None = None,
    scaler: ScalerState | None = None,
    desc: str = "population",
) -> _Run:
    """Every member stepped at once by one vmapped, jitted, donated program, through the one
    training loop (``ntjax.train.loop``).

    ``member_callbacks`` are called per running member at each check and stop their member
    when they raise; ``on_check(step, train_loss, val_loss)`` sees every member's ``[n_members]``
    losses at each check and stops the whole run when it raises. ``init_params`` (stacked,
    ``[n_members, ...]``) warm-starts the members; ``scaler`` replaces fitting one. With
    ``checkpoint_dir`` the run saves and resumes like a single fit.
    """
    members = list(members)
    reason = incompatibility(members)
    if reason is not None:
        raise PopulationError(f"these members cannot train as one population: {reason}.")
    started = time.perf_counter()
    config = _template(members)
    _, training, optimizer = _normalised(members[0])
    programs = population_programs(config, training, optimizer)
    prepared = prepare(df, config, members[0].training, scaler=scaler)
    training = prepared.training  # val_size resolved
    data: TrainingData = prepared.data
    if int(data.n_windows) == 0:
        raise ConfigError("no training windows: the series are too short for this config.")

    # The keys of each member are those fit() derives from its seed.
    init_keys, run_keys = zip(
        *(jax.random.split(jax.random.key(m.training.seed)) for m in members), strict=True
    )
    learning_rates = np.asarray([m.optimizer.learning_rate for m in members], np.float32)
    if init_params is None:
        # Each member's parameters from the init key and the compiled init fit() uses: K runs
        # of one small program, where a vmapped init would compile a larger one.
        init_params = _stacked([_jitted_init(config, key) for key in init_keys])
    # Copies: the step donates its state, and a warm start's parent keeps its own parameters.
    state = programs.init(jax.tree.map(jnp.array, init_params), learning_rates)
    _check_dropout_is_per_member(config, members, jax.tree.map(lambda x: x[0], state.params))
    checkpointer = None
    if training.checkpoint_dir:
        key = run_key([tuple(m) for m in members], prepared.fingerprint)
        checkpointer = Checkpointer(training.checkpoint_dir, key)
    engine = PopulationEngine(
        programs, jnp.stack(run_keys), jnp.asarray(_keep_probs(members)), state
    )
    result = loop.run(
        engine,
        state,
        data,
        training=training,
        member_callbacks=member_callbacks,
        on_check=on_check,
        checkpointer=checkpointer,
        progress=any(m.training.progress for m in members),
        desc=f"{desc} {len(members)}x{config.kind}",
    )
    if result.best is not None:
        # A member whose validation loss never improved keeps its last parameters, as in fit.
        keep = jnp.asarray(np.isfinite(result.best_val))
        final = _keep_best(result.state.params, result.best, keep)
    else:
        final = result.state.params
    return _Run(
        prepared=prepared,
        params=jax.device_get(final),
        histories=result.histories,
        best_val=result.best_val,
        best_step=result.best_step,
        stop_step=result.stop_step,
        stopped_early=result.stopped_early,
        errors=result.errors,
        elapsed=time.perf_counter() - started,
        step_time=result.step_time,
    )


def fit_population(
    df: Any,
    members: Sequence[Member],
    *,
    callbacks: Sequence[Callable[[int, Progress], None]] = (),
) -> Population:
    """Trains every member at once as one vmapped, jitted program.

    Args:
      df: long frame ``unique_id, ds, y`` (+ exogenous columns the configs name).
      members: models that differ only in seed, learning rate and dropout (see
        ``incompatibility``).
      callbacks: called as ``callback(member, progress)`` at each validation check of each
        running member; raising stops that member (e.g. ``optuna.TrialPruned``) and the
        exception lands in ``Population.errors`` while the others go on.

    Returns:
      A ``Population``: one record per member and the stacked parameters.

    Raises:
      PopulationError: members that cannot share a program (a ``ValueError``).
      ValueError: data too short for the config.
    """
    members = list(members)
    run = _run(df, members, member_callbacks=callbacks)
    training = run.prepared.training
    has_val = training.val_size > 0
    device = jax.local_devices()[0]
    now = utc_now()
    records = []
    for k, member in enumerate(members):
        history = run.histories[k]
        metrics: dict[str, float] = {
            "train_loss": history["train_loss"][-1] if history["train_loss"] else float("nan"),
            "steps": int(run.stop_step[k]),
            "stopped_early": float(run.stopped_early[k]),
            "train_time_s": run.elapsed,
            "windows_per_s": training.batch_size / run.step_time if run.step_time > 0 else 0.0,
            "population_size": len(members),
        }
        if has_val and history["val_loss"]:
            metrics["val_loss"] = float(run.best_val[k])
            metrics["best_step"] = int(run.best_step[k])
        error = run.errors[k]
        member_params = None
        if error is None:
            member_params = jax.device_put(jax.tree.map(lambda x, k=k: x[k], run.params), device)
        records.append(
            new_record(
                member.config,
                member_params,
                run.prepared,
                metrics=metrics,
                history=history,
                training=dataclasses.replace(member.training, val_size=training.val_size),
                optimizer=member.optimizer,
                error=error,
                created_at=now,
                extra={"population_member": k},
            )
        )
    return Population(tuple(records), run.params, tuple(run.errors))


def ensemble_members(config: Any, training: TrainingConfig, optimizer: OptimizerConfig):
    """The members of a stacked ``EnsembleConfig`` (``size`` copies of ``members[0]``): member
    ``k`` is the model ``fit`` would train with seed ``training.seed + k``."""
    last = training.seed + config.size - 1
    if last > 2**31 - 1:
        raise ValueError(
            f"an ensemble of {config.size} needs seeds up to {last}; use a smaller seed."
        )
    member = config.members[0]
    return [
        Member(member, dataclasses.replace(training, seed=training.seed + k), optimizer)
        for k in range(config.size)
    ]


def fit_ensemble(
    df: Any,
    config: Any,
    training: TrainingConfig,
    optimizer: OptimizerConfig,
    *,
    init_from: ModelRecord | None = None,
    keep_scaler: bool = True,
    callbacks: Sequence[Callable[[Progress], None]] = (),
) -> ModelRecord:
    """Trains a stacked ensemble (``EnsembleConfig`` with ``size`` K > 1) as one population and
    returns one record whose params ``{"stacked": ...}`` carry a leading ``[K]`` member axis.

    ``ntjax.train.fit`` calls this for stacked ensembles, so ``nt.train(...,
    ensemble_size=K)``, refits and fine-tuning all go through the one vmapped step.
    Member ``k`` trains as ``fit`` would with seed ``training.seed + k``, on its own windows,
    optimizer state, early stopping and best parameters. A ``weighted`` ensemble gets weights
    from the members' inverse validation loss (equal without validation data).

    Args:
      df: long frame ``unique_id, ds, y``.
      config: the stacked ``EnsembleConfig``.
      training: shared by the members (checkpoints as for a single fit).
      optimizer: shared by the members.
      init_from: a record of the same config to warm-start from.
      keep_scaler: keep ``init_from``'s scaler (extended to new series) or refit it.
      callbacks: called with the members' mean ``Progress`` at each validation check; may raise
        to stop the run.

    Raises:
      FloatingPointError: a member's training loss became non-finite.
      ValueError: data too short for the config.
    """
    members = ensemble_members(config, training, optimizer)

    def check(step: int, train_loss: np.ndarray, val_loss: np.ndarray | None) -> None:
        bad = np.flatnonzero(~np.isfinite(train_loss))
        if bad.size:
            raise FloatingPointError(
                f"training loss of ensemble member {int(bad[0])} became "
                f"{train_loss[bad[0]]} at step {step}."
            )
        mean_val = float(np.mean(val_loss)) if val_loss is not None else None
        for callback in callbacks:
            callback(Progress(step, float(np.mean(train_loss)), mean_val))

    run = _run(
        df,
        members,
        on_check=check,
        init_params=init_from.params["stacked"] if init_from is not None else None,
        scaler=init_from.scaler if init_from is not None and keep_scaler else None,
        desc="ensemble",
    )
    training = run.prepared.training  # val_size resolved
    has_val = training.val_size > 0
    history = ensemble_history(run.histories, has_val=has_val)
    final_train = [h["train_loss"][-1] for h in run.histories if h["train_loss"]]
    metrics: dict[str, float] = {
        "train_loss": float(np.mean(final_train)) if final_train else float("nan"),
        "steps": int(run.stop_step.max()),
        "stopped_early": float(run.stopped_early.all()),
        "train_time_s": run.elapsed,
        "windows_per_s": (
            training.batch_size * len(members) / run.step_time if run.step_time > 0 else 0.0
        ),
        "ensemble_size": len(members),
    }
    extra: dict[str, Any] = {"member_seeds": [m.training.seed for m in members]}
    if has_val:
        metrics["val_loss"] = float(np.mean(run.best_val))
        extra["member_val_loss"] = [float(v) for v in run.best_val]
        extra["member_best_step"] = [int(step) for step in run.best_step]
        if config.method == "weighted":
            config = dataclasses.replace(
                config, weights=tuple(1.0 / max(float(v), 1e-12) for v in run.best_val)
            )
    return new_record(
        config,
        {"stacked": jax.device_put(run.params, jax.local_devices()[0])},
        run.prepared,
        metrics=metrics,
        history=history,
        training=training,
        optimizer=optimizer,
        parent=init_from,
        extra=extra,
    )


def ensemble_history(histories: Sequence[dict[str, list]], *, has_val: bool) -> dict[str, list]:
    """One history from the members' (``_run`` histories): the checks of the longest-running
    member, the mean losses of the members still running at each check, and every member's
    losses per check (``None`` once a member stopped early; members stop at different checks).
    """
    steps = max((h["step"] for h in histories), key=len)

    def at_checks(name: str) -> list[list[float | None]]:
        return [
            [h[name][i] if i < len(h[name]) else None for h in histories] for i in range(len(steps))
        ]

    def mean(values: list[float | None]) -> float | None:
        present = [v for v in values if v is not None]
        return float(np.mean(present)) if present else None

    member_train = at_checks("train_loss")
    member_val = at_checks("val_loss") if has_val else []
    return {
        "step": list(steps),
        "train_loss": [mean(losses) for losses in member_train],
        "val_loss": [mean(losses) for losses in member_val] if has_val else [None] * len(steps),
        "member_train_loss": member_train,
        "member_val_loss": member_val,
    }


def train_seeds(
    df: Any,
    config: ModelConfig,
    training: TrainingConfig | None = None,
    optimizer: OptimizerConfig | None = None,
    *,
    seeds: Iterable[int],
) -> Population:
    """Trains one model per seed as one population (e.g. the members of a deep ensemble).

    Args:
      df: long frame.
      config: shared by every member.
      training: shared by every member; its ``seed`` is replaced by each of ``seeds``.
      optimizer: shared by every member.
      seeds: one seed per member.

    Returns:
      A ``Population``; ``population.params`` is the stacked ``[n_seeds, ...]`` parameters.
    """
    training = training or TrainingConfig()
    optimizer = optimizer or OptimizerConfig()
    members = [Member(config, dataclasses.replace(training, seed=int(s)), optimizer) for s in seeds]
    return fit_population(df, members)


def stack_params(records: Sequence[ModelRecord]) -> Any:
    """Stacks the parameters of records of one config on a leading ``[n_records]`` axis."""
    if not records or any(r.params is None for r in records):
        raise ValueError("stack_params needs trained records with parameters.")
    shapes = {jax.tree.structure(r.params) for r in records}
    if len(shapes) != 1:
        raise ValueError("the records' parameters have different structures.")
    return _stacked([r.params for r in records])
