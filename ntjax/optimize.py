"""Hyper-parameter search with optuna.

The search space is plain JSON: each key names the config field it sets (``"model"`` for the
family, ``"model.<field>"``, ``"training.<field>"``, ``"optimizer.<field>"``) and each value is
a fixed value, ``{"choice": [...]}`` or a range ``{"low": a, "high": b, "log": bool, "step": s}``
(integers when ``low``, ``high`` and ``step`` are integers)::

    {"model": "nhits", "model.horizon": 24,
     "model.input_size": {"choice": [48, 96, 168]},
     "optimizer.learning_rate": {"low": 1e-4, "high": 1e-2, "log": true},
     "training.max_steps": 300}

Each trial trains on every series without its last ``valid_size`` steps and scores the metric
of rolling forecasts over those steps, each made from earlier data only (or, with
``cv_windows``, of a cross-validation over the same tail). Trials report their validation loss
during training so that a pruner can stop the bad ones; a trial whose loss becomes NaN or whose
config is invalid is recorded as failed and the study goes on. The study lives in an optuna
storage (an RDB URL such as SQLite or PostgreSQL), so several processes can work on one study
(``optimize_workers``). With ``population=K``, trials that differ only in seed, learning rate
and dropout are trained K at a time as one vmapped program (``ntjax.train.population``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import polars as pl
from sqlalchemy.engine import make_url

from ntjax.config import (
    ConfigError,
    ModelConfig,
    OptimizerConfig,
    TrainingConfig,
    dataclass_from_dict,
)
from ntjax.crossval import cross_validation, drop_last
from ntjax.data.frame import validate
from ntjax.evaluate import evaluate
from ntjax.metrics import forecast_metrics, naive_scale
from ntjax.models import CONFIGS, make_config
from ntjax.registry import ModelRecord, new_id
from ntjax.train import Progress, fit
from ntjax.train.population import PER_MEMBER_FIELDS, Member, PopulationError, fit_population

_log = logging.getLogger(__name__)

# Metric -> direction of the study. Every key is an output of ntjax.evaluate.
METRICS = {
    "mae": "minimize",
    "mse": "minimize",
    "rmse": "minimize",
    "mape": "minimize",
    "smape": "minimize",
    "mase": "minimize",
    "r2": "maximize",
}

PRUNERS: dict[str, Callable[[], optuna.pruners.BasePruner]] = {
    "median": lambda: optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=0),
    "halving": lambda: optuna.pruners.SuccessiveHalvingPruner(),
    "none": lambda: optuna.pruners.NopPruner(),
}

SECTIONS = {"training": TrainingConfig, "optimizer": OptimizerConfig}
# Fields a trial must not set: they would make trials write over each other or print bars.
_RESERVED = {"training.checkpoint_dir", "training.checkpoint_every", "training.progress"}
# The keys a population may vary: each member holds its own value (see ntjax.train.population).
POPULATION_KEYS = frozenset(
    f"{section}.{name}" for section, names in PER_MEMBER_FIELDS.items() for name in names
)
_PRIMITIVE = (type(None), bool, int, float, str)


class _GridSampler(optuna.samplers.GridSampler):
    """optuna's GridSampler without its ``study.stop()``: ntjax runs exactly as many trials as
    the grid has points, and ``stop`` is refused outside ``study.optimize`` (population rounds
    use ask/tell)."""

    def after_trial(self, study, trial, state, values) -> None:
        del study, trial, state, values


@dataclass(frozen=True)
class Dimension:
    """One key of a search space.

    Attributes:
      name: the space key, e.g. ``optimizer.learning_rate``.
      value: the fixed value (when ``choices`` and ``low`` are None).
      choices: candidate values of a ``choice``.
      low: lower end of a range; the range is integer when ``low``, ``high`` (and ``step``)
        are ints.
      high: upper end of a range.
      log: sample the range on a log scale.
      step: spacing of a discretised range.
    """

    name: str
    value: Any = None
    choices: tuple[Any, ...] | None = None
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None

    @property
    def varies(self) -> bool:
        return self.choices is not None or self.low is not None

    @property
    def is_int(self) -> bool:
        values = [v for v in (self.low, self.high, self.step) if v is not None]
        return self.low is not None and all(
            isinstance(v, int) and not isinstance(v, bool) for v in values
        )

    @property
    def _json_choices(self) -> bool:
        # optuna stores categorical choices only as primitives: lists travel as JSON text.
        return self.choices is not None and not all(isinstance(c, _PRIMITIVE) for c in self.choices)

    def grid(self) -> list[Any]:
        """Every value of this dimension in a grid search (in optuna's encoding)."""
        if self.choices is not None:
            return [self.encode(c) for c in self.choices]
        if self.is_int:
            return list(range(int(self.low), int(self.high) + 1, int(self.step or 1)))
        if self.step is None:
            raise ValueError(
                f"grid search needs a choice or a stepped range for {self.name!r}; "
                f"got the continuous range [{self.low}, {self.high}]."
            )
        count = int(math.floor((self.high - self.low) / self.step + 1e-9)) + 1
        return [float(f"{self.low + i * self.step:.12g}") for i in range(count)]

    def encode(self, value: Any) -> Any:
        return json.dumps(value) if self._json_choices else value

    def decode(self, value: Any) -> Any:
        return json.loads(value) if self._json_choices else value

    def suggest(self, trial: optuna.Trial, *, grid: bool) -> Any:
        """The trial's value of this dimension (decoded)."""
        if not self.varies:
            return self.value
        if self.choices is not None or grid:
            return self.decode(trial.suggest_categorical(self.name, self.grid()))
        if self.is_int:
            return trial.suggest_int(
                self.name, int(self.low), int(self.high), step=int(self.step or 1), log=self.log
            )
        return trial.suggest_float(self.name, self.low, self.high, step=self.step, log=self.log)


def _parse_dimension(name: str, spec: Any) -> Dimension:
    if not isinstance(spec, Mapping):
        if isinstance(spec, list | tuple):
            return Dimension(name, value=list(spec))
        if not isinstance(spec, _PRIMITIVE):
            raise ValueError(
                f"{name!r}: a fixed value must be JSON data, got {type(spec).__name__}."
            )
        return Dimension(name, value=spec)
    keys = set(spec)
    if keys == {"choice"}:
        choices = spec["choice"]
        if not isinstance(choices, list | tuple) or not choices:
            raise ValueError(f"{name!r}: 'choice' must be a non-empty list, got {choices!r}.")
        return Dimension(name, choices=tuple(choices))
    if {"low", "high"} <= keys <= {"low", "high", "log", "step"}:
        low, high, log, step = spec["low"], spec["high"], spec.get("log", False), spec.get("step")
        for bound in (low, high, *([step] if step is not None else [])):
            if isinstance(bound, bool) or not isinstance(bound, int | float):
                raise ValueError(f"{name!r}: range bounds and step must be numbers, got {bound!r}.")
        if not low < high:
            raise ValueError(f"{name!r}: low ({low}) must be below high ({high}).")
        if not isinstance(log, bool):
            raise ValueError(f"{name!r}: 'log' must be true or false, got {log!r}.")
        if log and (step is not None or low <= 0):
            raise ValueError(f"{name!r}: a log range needs low > 0 and no step.")
        if step is not None and step <= 0:
            raise ValueError(f"{name!r}: step must be positive, got {step}.")
        return Dimension(name, low=low, high=high, log=log, step=step)
    raise ValueError(
        f"{name!r}: expected a fixed value, {{'choice': [...]}} or "
        f"{{'low', 'high'[, 'log', 'step']}}, got keys {sorted(keys)}."
    )


def parse_space(space: Mapping[str, Any]) -> dict[str, Dimension]:
    """Checks a search space and returns its dimensions by key.

    Raises:
      ValueError: an unknown key or field, a malformed value, or no ``model``.
    """
    if not isinstance(space, Mapping):
        raise ValueError(f"the search space must be a mapping, got {type(space).__name__}.")
    if "model" not in space:
        raise ValueError(f"the search space needs a 'model' key (one of {sorted(CONFIGS)}).")
    dimensions = {name: _parse_dimension(name, spec) for name, spec in space.items()}
    model = dimensions["model"]
    kinds = model.choices if model.choices is not None else (model.value,)
    for kind in kinds:
        if kind not in CONFIGS:
            raise ValueError(f"unknown model {kind!r}; known models: {sorted(CONFIGS)}.")
    if model.low is not None:
        raise ValueError("'model' must be a name or a choice of names.")
    for name in dimensions:
        if name == "model":
            continue
        section, _, field = name.partition(".")
        if name in _RESERVED:
            raise ValueError(f"{name!r} cannot be set by a search space.")
        if section == "model":
            classes = [CONFIGS[kind] for kind in kinds]
        elif section in SECTIONS:
            classes = [SECTIONS[section]]
        else:
            raise ValueError(
                f"unknown key {name!r}: keys are 'model', 'model.<field>', 'training.<field>' "
                "or 'optimizer.<field>'."
            )
        for cls in classes:
            if field not in {f.name for f in dataclasses.fields(cls)}:
                raise ValueError(f"unknown key {name!r}: {cls.__name__} has no field {field!r}.")
    return dimensions


def configs_from_params(
    params: Mapping[str, Any],
    *,
    training: TrainingConfig | None = None,
    optimizer: OptimizerConfig | None = None,
) -> tuple[ModelConfig, TrainingConfig, OptimizerConfig]:
    """The configs one point of a space stands for.

    Fields the space does not set come from ``training``/``optimizer``; without a base
    training config, trials run without a progress bar and hold out one horizon for the
    validation loss they report.

    Raises:
      ValueError: a value out of bounds or an inconsistent config.
    """
    fields: dict[str, dict[str, Any]] = {"model": {}, "training": {}, "optimizer": {}}
    for name, value in params.items():
        if name != "model":
            section, _, field = name.partition(".")
            fields[section][field] = value
    config = make_config(params["model"], **fields["model"])
    if training is None:
        train_fields = {"progress": False, "val_size": config.horizon, **fields["training"]}
    else:
        train_fields = {**dataclasses.asdict(training), **fields["training"]}
    training_config = dataclass_from_dict(TrainingConfig, train_fields)
    base_optimizer = dataclasses.asdict(optimizer) if optimizer is not None else {}
    optimizer_config = dataclass_from_dict(
        OptimizerConfig, {**base_optimizer, **fields["optimizer"]}
    )
    return config, training_config, optimizer_config


@dataclass(frozen=True, eq=False)
class OptimizeResult:
    """Outcome of a study.

    Attributes:
      best_params: the best trial's values, one per key of the space.
      best_score: its metric value.
      trials: one row per trial: ``number, state, value, params`` (a struct, one field per
        key), ``error``, ``duration_s``.
      best: the model refit on all of ``df`` with ``best_params`` (None with ``refit=False``).
      study_name: the optuna study.
      storage: the storage URL (None: in memory).
      metric: the metric optimised.
    """

    best_params: dict[str, Any]
    best_score: float
    trials: pl.DataFrame
    best: ModelRecord | None
    study_name: str
    storage: str | None
    metric: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly summary (the storage URL without its password)."""
        states = self.trials["state"].value_counts(sort=True).iter_rows()
        return {
            "best_params": self.best_params,
            "best_score": self.best_score,
            "metric": self.metric,
            "best_model_id": self.best.id if self.best is not None else None,
            "best_metrics": dict(self.best.metrics) if self.best is not None else None,
            "study_name": self.study_name,
            "storage": _redacted(self.storage),
            "n_trials": self.trials.height,
            "states": {state: count for state, count in states},
            "trials": list(self.trials.iter_rows(named=True)),
        }


def _redacted(url: str | None) -> str | None:
    if url is None:
        return None
    return make_url(url).render_as_string(hide_password=True)


def default_storage(store_root: str | os.PathLike) -> str:
    """The SQLite URL of the study database inside a store root (created if needed)."""
    root = Path(store_root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{root / 'optuna.sqlite3'}"


def _open_storage(url: str | None) -> optuna.storages.BaseStorage | None:
    if url is None:
        return None
    engine_kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        # Several processes write one file: wait for the lock instead of failing at once.
        engine_kwargs["connect_args"] = {"timeout": 120}
    return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs)


@dataclass(frozen=True, eq=False)
class _Study:
    """Everything a process needs to run trials of one study."""

    frame: pl.DataFrame
    dimensions: dict[str, Dimension]
    method: str
    metric: str
    valid_size: int | None
    cv_windows: int | None
    cv_step_size: int | None
    population: int | None
    training: TrainingConfig | None
    optimizer: OptimizerConfig | None
    study: optuna.Study

    @property
    def grid(self) -> bool:
        return self.method == "grid"

    @property
    def sign(self) -> float:
        """+1 when the study minimises; reported losses are multiplied by it."""
        return 1.0 if METRICS[self.metric] == "minimize" else -1.0

    def sample(self, trial: optuna.Trial) -> dict[str, Any]:
        return {name: dim.suggest(trial, grid=self.grid) for name, dim in self.dimensions.items()}

    def decode(self, trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
        """The full parameter dict of a stored trial (fixed values included)."""
        return {
            name: dim.decode(trial.params[name]) if name in trial.params else dim.value
            for name, dim in self.dimensions.items()
        }

    def configs(self, params: Mapping[str, Any]):
        return configs_from_params(params, training=self.training, optimizer=self.optimizer)

    def holdout(self, config: ModelConfig) -> tuple[int, int]:
        """Steps held out at the end of each series and the stride between forecasts."""
        if self.cv_windows is not None:
            step = self.cv_step_size or config.horizon
            return config.horizon + step * (self.cv_windows - 1), step
        return self.valid_size or config.horizon, config.horizon

    def score(self, record: ModelRecord) -> float:
        """The metric of ``record`` on the held-out tail, from earlier data only."""
        holdout, step = self.holdout(record.config)
        if self.cv_windows is None:
            value = evaluate(record, self.frame, test_size=holdout, step_size=step)[self.metric]
        else:
            cv = cross_validation(record, self.frame, n_windows=self.cv_windows, step_size=step)
            value = _frame_metrics(cv, drop_last(self.frame, holdout))[self.metric]
        if not math.isfinite(value):
            raise FloatingPointError(f"the {self.metric} of the trial is {value}.")
        return float(value)

    def reporter(self, trial: optuna.Trial) -> Callable[[Progress], None]:
        """Reports the validation loss (train loss without validation) and prunes."""

        def report(progress: Progress) -> None:
            loss = progress.val_loss if progress.val_loss is not None else progress.train_loss
            if not math.isfinite(loss):
                raise FloatingPointError(f"loss became {loss} at step {progress.step}.")
            trial.report(self.sign * loss, progress.step)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned at step {progress.step} (loss {loss:.6g}).")

        return report


def _frame_metrics(cv: pl.DataFrame, history: pl.DataFrame) -> dict[str, float]:
    """Forecast metrics of a cross-validation frame; MASE scaled by ``history`` (the data
    before the first cutoff)."""
    ids = cv["unique_id"].unique(maintain_order=True).to_list()
    n_series = len(ids)
    y = cv["y"].to_numpy().reshape(n_series, -1)
    y_hat = cv["y_hat"].to_numpy().reshape(n_series, -1)
    scale = [naive_scale(history.filter(pl.col("unique_id") == uid)["y"].to_numpy()) for uid in ids]
    return forecast_metrics(y, y_hat, mase_scale=scale)


def _error_text(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


def _objective(setup: _Study) -> Callable[[optuna.Trial], float]:
    def objective(trial: optuna.Trial) -> float:
        trial.set_user_attr("pid", os.getpid())
        try:
            params = setup.sample(trial)
            config, training, optimizer = setup.configs(params)
            holdout, _ = setup.holdout(config)
            record = fit(
                drop_last(setup.frame, holdout),
                config,
                training,
                optimizer,
                callbacks=[setup.reporter(trial)],
            )
            trial.set_user_attr("model_id", record.id)
            return setup.score(record)
        except _TRIAL_ERRORS as error:
            trial.set_user_attr("error", _error_text(error))
            raise

    return objective


# Errors that fail one trial and let the study go on: a diverging run, or a config that cannot
# run on the data (out of bounds, inconsistent, windows too long). Anything else (a bug) stops
# the study with its own traceback.
_TRIAL_ERRORS = (FloatingPointError, ConfigError)


def _fail(study: optuna.Study, trial: optuna.Trial, error: BaseException) -> None:
    trial.set_user_attr("error", _error_text(error))
    study.tell(trial, state=optuna.trial.TrialState.FAIL)


def _run_alone(setup: _Study, trial: optuna.Trial, member: Member) -> None:
    """Trains and tells one asked trial on its own."""
    holdout, _ = setup.holdout(member.config)
    try:
        record = fit(drop_last(setup.frame, holdout), *member, callbacks=[setup.reporter(trial)])
        trial.set_user_attr("model_id", record.id)
        value = setup.score(record)
    except optuna.TrialPruned:
        setup.study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    except _TRIAL_ERRORS as error:
        _fail(setup.study, trial, error)
    else:
        setup.study.tell(trial, value)


def _run_population_round(setup: _Study, size: int) -> None:
    """Asks ``size`` trials, trains them as one population, tells their outcomes."""
    study = setup.study
    members: list[tuple[optuna.Trial, Member]] = []
    for _ in range(size):
        trial = study.ask()
        trial.set_user_attr("pid", os.getpid())
        try:
            members.append((trial, Member(*setup.configs(setup.sample(trial)))))
        except ConfigError as error:
            _fail(study, trial, error)
    if not members:
        return
    holdout, _ = setup.holdout(members[0][1].config)
    reporters = [setup.reporter(trial) for trial, _ in members]

    def report(member: int, progress: Progress) -> None:
        reporters[member](progress)

    pending = {trial.number: trial for trial, _ in members}
    try:
        try:
            population = fit_population(
                drop_last(setup.frame, holdout), [m for _, m in members], callbacks=[report]
            )
        except PopulationError as error:
            _log.warning("%s The %d trials of this round run one by one.", error, len(members))
            for trial, member in members:
                _run_alone(setup, trial, member)
                del pending[trial.number]
            return
        except _TRIAL_ERRORS as error:
            for number, trial in list(pending.items()):
                _fail(study, trial, error)
                del pending[number]
            return
        for (trial, _), record, error in zip(
            members, population.records, population.errors, strict=True
        ):
            if isinstance(error, optuna.TrialPruned):
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            else:
                try:
                    if error is not None:
                        raise error
                    trial.set_user_attr("model_id", record.id)
                    value = setup.score(record)
                except _TRIAL_ERRORS as failure:
                    _fail(study, trial, failure)
                else:
                    study.tell(trial, value)
            del pending[trial.number]
    finally:
        # An unexpected error stops the study; no trial of the round is left running.
        for trial in pending.values():
            study.tell(trial, state=optuna.trial.TrialState.FAIL)


def _population_blocker(dimensions: Mapping[str, Dimension]) -> list[str]:
    """The varying keys that would change parameter shapes or the shared program."""
    return sorted(n for n, d in dimensions.items() if d.varies and n not in POPULATION_KEYS)


def _run_trials(setup: _Study, n_trials: int, *, n_jobs: int = 1) -> None:
    if n_trials <= 0:
        return
    population = setup.population
    if population is not None and population > 1:
        blockers = _population_blocker(setup.dimensions)
        if not blockers:
            _log.info(
                "population mode: %d trials in rounds of up to %d members.", n_trials, population
            )
            for start in range(0, n_trials, population):
                _run_population_round(setup, min(population, n_trials - start))
            return
        _log.warning(
            "population=%d needs every varying key to be one of %s; %s change the model or "
            "the shared program, so the %d trials run one by one.",
            population,
            sorted(POPULATION_KEYS),
            blockers,
            n_trials,
        )
    setup.study.optimize(
        _objective(setup),
        n_trials=n_trials,
        n_jobs=n_jobs,
        catch=_TRIAL_ERRORS,
    )


def _grid_sampler(dimensions: Mapping[str, Dimension], seed: int) -> optuna.samplers.BaseSampler:
    space = {name: dim.grid() for name, dim in dimensions.items() if dim.varies}
    if not space:
        raise ValueError("grid search needs at least one key with several values.")
    return _GridSampler(space, seed=seed)


def _gp_sampler(dimensions: Mapping[str, Dimension], seed: int) -> optuna.samplers.BaseSampler:
    del dimensions
    try:
        import torch  # noqa: F401
    except ImportError as error:
        raise ValueError("method 'gp' needs torch installed (optuna's GPSampler).") from error
    return optuna.samplers.GPSampler(seed=seed)


# method -> sampler factory(dimensions, seed).
SAMPLERS: dict[str, Callable[[Mapping[str, Dimension], int], optuna.samplers.BaseSampler]] = {
    "grid": _grid_sampler,
    "random": lambda dimensions, seed: optuna.samplers.RandomSampler(seed=seed),
    "bayesian": lambda dimensions, seed: optuna.samplers.TPESampler(seed=seed),
    "gp": _gp_sampler,
}


def _sampler(method: str, dimensions: Mapping[str, Dimension], seed: int):
    if method not in SAMPLERS:
        raise ValueError(f"method must be one of {sorted(SAMPLERS)}; got {method!r}.")
    return SAMPLERS[method](dimensions, seed)


def _pruner(pruner: str | optuna.pruners.BasePruner | None) -> optuna.pruners.BasePruner:
    if pruner is None:
        return optuna.pruners.NopPruner()
    if isinstance(pruner, optuna.pruners.BasePruner):
        return pruner
    if pruner not in PRUNERS:
        raise ValueError(f"pruner must be one of {sorted(PRUNERS)} or an optuna pruner.")
    return PRUNERS[pruner]()


def grid_size(space: Mapping[str, Any]) -> int:
    """Number of points of the grid over a space."""
    dimensions = parse_space(space)
    return math.prod(len(d.grid()) for d in dimensions.values() if d.varies)


def _setup(
    df: Any,
    space: Mapping[str, Any],
    *,
    method: str,
    metric: str,
    storage: str | None,
    study_name: str,
    seed: int,
    pruner: str | optuna.pruners.BasePruner | None,
    valid_size: int | None,
    cv_windows: int | None,
    cv_step_size: int | None,
    population: int | None,
    training: TrainingConfig | None,
    optimizer: OptimizerConfig | None,
) -> _Study:
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {sorted(METRICS)}, got {metric!r}.")
    for name, value in (("valid_size", valid_size), ("cv_windows", cv_windows)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise ValueError(f"{name} must be a positive integer, got {value!r}.")
        if value is not None and value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    if population is not None and population < 1:
        raise ValueError(f"population must be a positive integer, got {population!r}.")
    dimensions = parse_space(space)
    sampler = _sampler(method, dimensions, seed)
    study = optuna.create_study(
        storage=_open_storage(storage),
        sampler=sampler,
        pruner=_pruner(pruner),
        study_name=study_name,
        direction=METRICS[metric],
        load_if_exists=True,
    )
    return _Study(
        frame=validate(df),
        dimensions=dimensions,
        method=method,
        metric=metric,
        valid_size=valid_size,
        cv_windows=cv_windows,
        cv_step_size=cv_step_size,
        population=population,
        training=training,
        optimizer=optimizer,
        study=study,
    )


def _trial_count(setup: _Study, n_trials: int) -> int:
    """Trials still to run: the unfinished part of the grid, else ``n_trials``."""
    if not setup.grid:
        return n_trials
    size = math.prod(len(d.grid()) for d in setup.dimensions.values() if d.varies)
    finished = sum(t.state.is_finished() for t in setup.study.get_trials(deepcopy=False))
    return max(size - finished, 0)


def _result(setup: _Study, storage: str | None, *, refit: bool) -> OptimizeResult:
    study = setup.study
    trials = study.get_trials(deepcopy=False)
    rows = [
        {
            "number": t.number,
            "state": t.state.name,
            "value": t.value,
            "params": setup.decode(t),
            "error": t.user_attrs.get("error"),
            "duration_s": t.duration.total_seconds() if t.duration is not None else None,
        }
        for t in trials
    ]
    schema = {"number": pl.Int64, "state": pl.String, "value": pl.Float64}
    frame = pl.DataFrame(rows, schema_overrides=schema, strict=False)
    completed = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not completed:
        errors = [t.user_attrs["error"] for t in trials if "error" in t.user_attrs][:3]
        raise ValueError(
            f"no trial of study {study.study_name!r} completed ({len(trials)} trials); "
            f"errors: {errors or 'none recorded (all pruned?)'}."
        )
    best_trial = study.best_trial
    best_params = setup.decode(best_trial)
    best = None
    if refit:
        config, training, optimizer = setup.configs(best_params)
        best = fit(setup.frame, config, training, optimizer)
        best = best.replace(
            extra={
                **best.extra,
                "study_name": study.study_name,
                "trial": best_trial.number,
                setup.metric: best_trial.value,
            }
        )
    return OptimizeResult(
        best_params=best_params,
        best_score=float(best_trial.value),
        trials=frame,
        best=best,
        study_name=study.study_name,
        storage=storage,
        metric=setup.metric,
    )


def optimize(
    df: Any,
    space: Mapping[str, Any],
    *,
    method: str = "bayesian",
    n_trials: int = 20,
    metric: str = "mae",
    storage: str | None = None,
    study_name: str | None = None,
    n_jobs: int = 1,
    seed: int = 0,
    pruner: str | optuna.pruners.BasePruner | None = "median",
    valid_size: int | None = None,
    cv_windows: int | None = None,
    cv_step_size: int | None = None,
    population: int | None = None,
    training: TrainingConfig | None = None,
    optimizer: OptimizerConfig | None = None,
    store_root: str | os.PathLike | None = None,
    refit: bool = True,
) -> OptimizeResult:
    """Runs an optuna study over ``space`` and refits the best model.

    Args:
      df: long frame ``unique_id, ds, y``.
      space: the JSON search space (see the module docstring).
      method: ``grid`` (every point of the grid, exactly once; ``n_trials`` is ignored),
        ``random``, ``bayesian`` (TPE) or ``gp`` (Gaussian process; needs torch).
      n_trials: trials to run in this call.
      metric: ``mae``, ``mse``, ``rmse``, ``mape``, ``smape``, ``mase`` (minimised) or ``r2``
        (maximised), over the held-out tail of each series.
      storage: an optuna RDB URL (``sqlite:///path.db``, ``postgresql://...``); a study of the
        same name there is continued. Default: ``store_root``'s SQLite file, else in memory.
      study_name: default a new ``ntjax-<uuid>``.
      n_jobs: threads running trials at once in this process.
      seed: seed of the sampler.
      pruner: ``median``, ``halving`` (successive halving), ``none`` or an optuna pruner; it
        sees the validation loss each trial reports at every validation check.
      valid_size: steps held out at the end of each series for the metric (default one
        horizon), forecast every horizon from earlier data only.
      cv_windows: score by cross-validation over this many windows at the end instead.
      cv_step_size: stride of those windows (default the horizon).
      population: train up to this many trials at once as one vmapped program when every
        varying key is a seed, learning rate or dropout; otherwise trials run one by one.
      training: base training config the space overrides (default: trials hold out one
        horizon of the training part for their validation loss, with no progress bar).
      optimizer: base optimizer config the space overrides.
      store_root: folder whose ``optuna.sqlite3`` holds the study when ``storage`` is None.
      refit: refit the best parameters on all of ``df`` (``OptimizeResult.best``).

    Returns:
      An ``OptimizeResult``.

    Raises:
      ValueError: a malformed space or option, or no trial completed.
    """
    if storage is None and store_root is not None:
        storage = default_storage(store_root)
    setup = _setup(
        df,
        space,
        method=method,
        metric=metric,
        storage=storage,
        study_name=study_name or f"ntjax-{new_id()}",
        seed=seed,
        pruner=pruner,
        valid_size=valid_size,
        cv_windows=cv_windows,
        cv_step_size=cv_step_size,
        population=population,
        training=training,
        optimizer=optimizer,
    )
    _run_trials(setup, _trial_count(setup, n_trials), n_jobs=n_jobs)
    return _result(setup, storage, refit=refit)


# --- Several processes on one study. -------------------------------------------------------


# A worker's command line (not ``-m ntjax.optimize``, which would import the module twice).
_WORKER = "import sys; from ntjax.optimize import worker_main; sys.exit(worker_main(sys.argv[1:]))"


def _shares(total: int, workers: int) -> list[int]:
    return [total // workers + (i < total % workers) for i in range(workers)]


def optimize_workers(
    df: Any,
    space: Mapping[str, Any],
    *,
    workers: int,
    storage: str | None = None,
    store_root: str | os.PathLike | None = None,
    study_name: str | None = None,
    method: str = "bayesian",
    n_trials: int = 20,
    metric: str = "mae",
    seed: int = 0,
    pruner: str | None = "median",
    valid_size: int | None = None,
    cv_windows: int | None = None,
    cv_step_size: int | None = None,
    population: int | None = None,
    training: TrainingConfig | None = None,
    optimizer: OptimizerConfig | None = None,
    refit: bool = True,
) -> OptimizeResult:
    """Runs one study with ``workers`` processes sharing its storage, then refits the best.

    The trials are split between the workers (their counts add up to ``n_trials``, or to the
    grid); each worker is a new Python process (``worker_main([JOB, WORKER])``) that reads
    the data from a Parquet copy and samples with seed ``seed + worker + 1``. Other
    machines can join the same study with ``optimize(..., storage=URL, study_name=NAME)``.
    The other arguments are those of ``optimize``.

    Args:
      workers: number of processes.
      storage: an optuna RDB URL every worker can reach (default ``store_root``'s SQLite file).

    Raises:
      ValueError: no storage, a bad option, or no trial completed.
      RuntimeError: a worker process failed.
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive integer, got {workers!r}.")
    if storage is None and store_root is not None:
        storage = default_storage(store_root)
    if storage is None:
        raise ValueError("several workers need a shared storage: pass storage= or store_root=.")
    if pruner is not None and not isinstance(pruner, str):
        raise ValueError("workers take a pruner by name (median, halving, none).")
    options = {
        "method": method,
        "metric": metric,
        "storage": storage,
        "study_name": study_name or f"ntjax-{new_id()}",
        "seed": seed,
        "pruner": pruner,
        "valid_size": valid_size,
        "cv_windows": cv_windows,
        "cv_step_size": cv_step_size,
        "population": population,
        "training": dataclasses.asdict(training) if training is not None else None,
        "optimizer": dataclasses.asdict(optimizer) if optimizer is not None else None,
    }
    setup = _setup(df, space, **_decode_options(options))
    total = _trial_count(setup, n_trials)
    shares = [s for s in _shares(total, workers) if s > 0]
    with tempfile.TemporaryDirectory(prefix="ntjax-study-") as folder:
        data_path = Path(folder) / "data.parquet"
        setup.frame.write_parquet(data_path)
        job_path = Path(folder) / "job.json"
        job = {"data": str(data_path), "space": dict(space), "options": options, "shares": shares}
        job_path.write_text(json.dumps(job))
        started = time.perf_counter()
        processes = [
            subprocess.Popen([sys.executable, "-c", _WORKER, str(job_path), str(index)])
            for index in range(len(shares))
        ]
        codes = [process.wait() for process in processes]
    failed = [i for i, code in enumerate(codes) if code != 0]
    if failed:
        raise RuntimeError(f"optimize worker(s) {failed} exited with codes {codes}.")
    _log.info(
        "%d workers ran %d trials in %.1fs.", len(shares), total, time.perf_counter() - started
    )
    return _result(setup, storage, refit=refit)


def _decode_options(options: Mapping[str, Any]) -> dict[str, Any]:
    decoded = dict(options)
    for name, cls in (("training", TrainingConfig), ("optimizer", OptimizerConfig)):
        if decoded[name] is not None:
            decoded[name] = dataclass_from_dict(cls, decoded[name])
    return decoded


def _worker_main(job_path: str, index: int) -> None:
    """One worker process: runs its share of the trials of the job's study."""
    job = json.loads(Path(job_path).read_text())
    options = _decode_options(job["options"])
    options["seed"] = options["seed"] + index + 1
    setup = _setup(pl.read_parquet(job["data"]), job["space"], **options)
    _run_trials(setup, job["shares"][index])


# --- The default search space of `ntjax optimize`; a worker process's entry point. ----------


def default_space(model: str, *, horizon: int, max_steps: int = 300) -> dict[str, Any]:
    """A small space for ``ntjax optimize`` without ``--space``: input size x learning rate."""
    return {
        "model": model,
        "model.horizon": horizon,
        "model.input_size": {"choice": [2 * horizon, 4 * horizon, 7 * horizon]},
        "optimizer.learning_rate": {"choice": [3e-4, 1e-3, 3e-3]},
        "training.max_steps": max_steps,
    }


def worker_main(argv: Sequence[str]) -> int:
    """Entry point of a worker process: ``argv`` is ``[JOB.json, WORKER_INDEX]``."""
    if len(argv) != 2:
        print("usage: worker_main([JOB.json, WORKER_INDEX])", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    _worker_main(argv[0], int(argv[1]))
    return 0


__all__ = [
    "METRICS",
    "PRUNERS",
    "SAMPLERS",
    "Dimension",
    "OptimizeResult",
    "configs_from_params",
    "default_space",
    "default_storage",
    "grid_size",
    "optimize",
    "optimize_workers",
    "parse_space",
    "worker_main",
]
