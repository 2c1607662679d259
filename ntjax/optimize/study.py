"""One optuna study run in this process: storage, samplers, pruners, the objective, trials
alone or as populations, and ``optimize`` with its result.

Each trial trains on every series without its last ``valid_size`` steps and scores the metric
of rolling forecasts over those steps, each made from earlier data only (or, with
``cv_windows``, of a cross-validation over the same tail). Trials report their validation loss
during training so that a pruner can stop the bad ones; a trial whose loss becomes NaN or whose
config is invalid is recorded as failed and the study goes on. The study lives in an optuna
storage (an RDB URL such as SQLite or PostgreSQL), so several processes can work on one study
(``optimize_workers``). With ``population=K``, trials are asked K at a time and trained as one
vmapped program (``ntjax.train.population``): when the space also varies keys that change the
model or the program (input size, widths, steps), the K trials of a round share the first one's
values of those keys and differ in seed, learning rate and dropout.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import random
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import polars as pl
import sqlalchemy.exc
from sqlalchemy.engine import make_url

from ntjax.config import (
    ConfigError,
    ModelConfig,
    OptimizerConfig,
    TrainingConfig,
)
from ntjax.crossval import cross_validation, drop_last
from ntjax.data.frame import validate
from ntjax.evaluate import evaluate, evaluate_seasonal_naive
from ntjax.metrics.comparison import diebold_mariano
from ntjax.metrics.forecast import forecast_metrics, naive_scale
from ntjax.optimize.space import (
    POPULATION_KEYS,
    Dimension,
    configs_from_params,
    parse_space,
)
from ntjax.predict.ensembles import ensemble as ensemble_of
from ntjax.predict.ensembles import same_scaler
from ntjax.registry import ModelRecord, new_id
from ntjax.train import Progress, fit
from ntjax.train.population import Member, PopulationError, fit_population, incompatibility

_log = logging.getLogger("ntjax.optimize")  # one logger for the whole package

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


class _GridSampler(optuna.samplers.GridSampler):
    """optuna's GridSampler without its ``study.stop()``: ntjax runs exactly as many trials as
    the grid has points, and ``stop`` is refused outside ``study.optimize`` (population rounds
    use ask/tell)."""

    def after_trial(self, study, trial, state, values) -> None:
        del study, trial, state, values


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
      baseline_score: the last value's metric on the same held-out tail and windows as every
        trial (the naive forecast, ``nt.evaluate_seasonal_naive`` with season 1) at the best
        trial's horizon: the score a search must beat to have learnt anything.
      baseline_p_value: one-sided Diebold-Mariano p-value (HLN correction) of the best
        trained trial (the best whose score is not the last value's own) forecasting better
        than the last value, from the metric of each held-out window (one series, one
        origin; series are taken as independent, which overstates the evidence where they
        move together) (None: fewer than 3 windows, or no baseline).
      beats_baseline: whether the result beats the last value: a better score and, where
        there are 3 windows or more, a p-value below ``baseline_significance``. Where the best
        trained trial does not, a study that holds a trial scoring the last value itself (the
        NHITS Auto space's point at 0 steps, ``nt.auto_first_trials``) returns that trial;
        without one it returns the best trial and logs a warning.
      members: the trial numbers refit into ``best``: the best trial alone, or with
        ``ensemble=k`` the k best trained trials that share its scaler, averaged.
    """

    best_params: dict[str, Any]
    best_score: float
    trials: pl.DataFrame
    best: ModelRecord | None
    study_name: str
    storage: str | None
    metric: str
    baseline_score: float | None = None
    baseline_p_value: float | None = None
    beats_baseline: bool | None = None
    members: tuple[int, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly summary (the storage URL without its password)."""
        states = self.trials["state"].value_counts(sort=True).iter_rows()
        return {
            "best_params": self.best_params,
            "best_score": self.best_score,
            "metric": self.metric,
            "baseline_score": self.baseline_score,
            "baseline_p_value": self.baseline_p_value,
            "beats_baseline": self.beats_baseline,
            "members": list(self.members),
            "best_model_id": self.best.id if self.best is not None else None,
            "best_metrics": dict(self.best.metrics) if self.best is not None else None,
            "study_name": self.study_name,
            "storage": _redacted(self.storage),
            "n_trials": self.trials.height,
            "states": {state: count for state, count in states},
            "trials": list(self.trials.iter_rows(named=True)),
        }


def check_significance(value: float | None) -> None:
    """Refuses a ``baseline_significance`` that is not None or a number in (0, 1)."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1:
        raise ValueError(
            f"baseline_significance must be None or a number between 0 and 1, got {value!r}."
        )


def check_ensemble(size: int) -> None:
    """Refuses an ensemble size that is not a positive integer."""
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"ensemble must be a positive number of trials, got {size!r}.")


def _differs(score: float, baseline: float) -> bool:
    """Whether two scores differ beyond float rounding (a model that forecasts the last value
    scores the naive forecast's metric up to float32 error)."""
    return not math.isclose(score, baseline, rel_tol=1e-5, abs_tol=1e-12)


def _beats(score: float, baseline: float, metric: str) -> bool:
    """Whether ``score`` is better than ``baseline`` beyond float rounding."""
    if not _differs(score, baseline):
        return False
    return score < baseline if METRICS[metric] == "minimize" else score > baseline


def _redacted(url: str | None) -> str | None:
    if url is None:
        return None
    return make_url(url).render_as_string(hide_password=True)


def default_storage(store_root: str | os.PathLike) -> str:
    """The SQLite URL of the study database inside a store root (created if needed)."""
    root = Path(store_root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{root / 'optuna.sqlite3'}"


# Errors of optuna's schema and study creation when processes open a fresh storage at the same
# moment (optuna#1092): SQLite's "table ... already exists" (OperationalError), PostgreSQL's
# duplicate pg_type row (IntegrityError) or "relation ... already exists" (ProgrammingError).
# The creation is idempotent (tables are created if missing, the study is loaded if it exists),
# so the loser retries; anything that is still failing after the retries is raised as it is.
_CREATION_RACE = (
    sqlalchemy.exc.IntegrityError,
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.ProgrammingError,
)
_CREATION_ATTEMPTS = 8


def _open_storage(
    url: str | None, *, heartbeat_interval: int | None = None
) -> optuna.storages.BaseStorage | None:
    if url is None:
        return None
    engine_kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        # Several processes write one file: wait for the lock instead of failing at once.
        engine_kwargs["connect_args"] = {"timeout": 120}
    heartbeat: dict[str, Any] = {}
    # Built in two steps so that a constructor that fails half-way (the creation race) still
    # lets us close the connections it opened.
    storage = optuna.storages.RDBStorage.__new__(optuna.storages.RDBStorage)
    try:
        with warnings.catch_warnings():
            # optuna marks the heartbeat experimental (since 2.8/2.9); ntjax relies on it.
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            if heartbeat_interval is not None:
                # A killed worker's trial goes FAIL once its heartbeat is older than the grace
                # period (checked by the others before each trial) and runs again once (a new
                # WAITING trial with the same parameters).
                heartbeat = {
                    "heartbeat_interval": heartbeat_interval,
                    "grace_period": 3 * heartbeat_interval,
                    "heartbeat_stale_trial_callback": (
                        optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1)
                    ),
                }
            storage.__init__(url, engine_kwargs=engine_kwargs, **heartbeat)
    except BaseException:
        if hasattr(storage, "engine"):
            storage.engine.dispose()
        raise
    return storage


def close_study(study: optuna.Study) -> None:
    """Closes the pooled database connections of ``study``'s RDB storage (a no-op otherwise);
    the study object must not be used afterwards."""
    storage = study._storage
    backend = getattr(storage, "_backend", storage)  # optuna wraps an RDBStorage in a cache
    if isinstance(backend, optuna.storages.RDBStorage):
        backend.engine.dispose()


def open_study(
    storage: str | None,
    *,
    study_name: str,
    direction: str = "minimize",
    sampler: optuna.samplers.BaseSampler | None = None,
    pruner: optuna.pruners.BasePruner | None = None,
    heartbeat_interval: int | None = None,
) -> optuna.Study:
    """Creates the study ``study_name`` in ``storage``, or joins it when it exists.

    Safe for independent processes that start together on a fresh storage (several machines
    each running ``nt.optimize(..., storage=URL, study_name=NAME)``): a process that loses
    optuna's schema or study creation race (optuna#1092) retries with a randomised backoff
    and joins the study the winner created. ``close_study`` releases its connections.

    Args:
      storage: an optuna RDB URL, or None for an in-memory study.
      study_name: the study's name.
      direction: ``minimize`` or ``maximize`` (of a new study).
      sampler: the sampler this process asks trials from.
      pruner: the pruner this process prunes with.
      heartbeat_interval: seconds between the heartbeats of a running trial (RDB storages);
        a trial silent for three intervals is failed by the other workers and run again once.

    Raises:
      sqlalchemy.exc.SQLAlchemyError: the storage still fails after the retries (a server that
        cannot be reached, a bad URL).
    """
    for attempt in range(_CREATION_ATTEMPTS):
        rdb = None
        try:
            rdb = _open_storage(storage, heartbeat_interval=heartbeat_interval)
            return optuna.create_study(
                storage=rdb,
                sampler=sampler,
                pruner=pruner,
                study_name=study_name,
                direction=direction,
                load_if_exists=True,
            )
        except _CREATION_RACE as error:
            if rdb is not None:
                rdb.engine.dispose()
            if attempt == _CREATION_ATTEMPTS - 1:
                raise
            delay = 0.05 * 2**attempt * (1 + random.random())
            _log.info(
                "opening study %r: %s; retrying in %.2fs (another process is creating it).",
                study_name,
                type(error.orig).__name__ if error.orig is not None else type(error).__name__,
                delay,
            )
            time.sleep(delay)
    raise AssertionError("unreachable")


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
    deadline: float | None = None  # time.monotonic() after which no trial starts or goes on

    def close(self) -> None:
        close_study(self.study)

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

    def score(self, record: ModelRecord, trial: optuna.Trial) -> float:
        """The metric of ``record`` on the held-out tail, from earlier data only. The metric of
        each held-out window (series by series, origins in time order) is kept as the trial's
        ``window_scores``, for the baseline test."""
        holdout, step = self.holdout(record.config)
        if self.cv_windows is None:
            options = {"test_size": holdout, "step_size": step, "levels": ()}
            value = evaluate(record, self.frame, **options)[self.metric]
            windows = evaluate(record, self.frame, **options, by="window")[self.metric].to_list()
        else:
            cv = cross_validation(record, self.frame, n_windows=self.cv_windows, step_size=step)
            history = drop_last(self.frame, holdout)
            value = _frame_metrics(cv, history)[self.metric]
            order = {
                u: i for i, u in enumerate(self.frame["unique_id"].unique(maintain_order=True))
            }
            parts = cv.partition_by("unique_id", "cutoff", as_dict=True)
            keys = sorted(parts, key=lambda key: (order[key[0]], key[1]))  # as evaluate's
            windows = [_frame_metrics(parts[key], history)[self.metric] for key in keys]
        if not math.isfinite(value):
            raise FloatingPointError(f"the {self.metric} of the trial is {value}.")
        trial.set_user_attr("window_scores", [float(w) for w in windows])
        return float(value)

    def baseline(self, config: ModelConfig) -> tuple[float, list[float]] | None:
        """The last value's metric on the tail and windows ``score`` uses, pooled and per
        window (None where the series are too short for it)."""
        holdout, step = self.holdout(config)
        options = {"horizon": config.horizon, "test_size": holdout, "step_size": step}
        try:
            pooled = evaluate_seasonal_naive(self.frame, **options)[self.metric]
            windows = evaluate_seasonal_naive(self.frame, **options, by="window")[self.metric]
        except ValueError:
            return None
        return float(pooled), windows.to_list()

    def out_of_time(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline

    def remaining(self) -> float | None:
        """Seconds left of the time budget (None: no budget)."""
        return None if self.deadline is None else max(0.0, self.deadline - time.monotonic())

    def reporter(self, trial: optuna.Trial) -> Callable[[Progress], None]:
        """Reports the validation loss (train loss without validation) and prunes."""

        def report(progress: Progress) -> None:
            loss = progress.val_loss if progress.val_loss is not None else progress.train_loss
            if not math.isfinite(loss):
                raise FloatingPointError(f"loss became {loss} at step {progress.step}.")
            trial.report(self.sign * loss, progress.step)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned at step {progress.step} (loss {loss:.6g}).")
            if self.out_of_time():
                raise optuna.TrialPruned(
                    f"stopped at step {progress.step}: the search's time budget ran out."
                )

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
            return setup.score(record, trial)
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
        value = setup.score(record, trial)
    except optuna.TrialPruned:
        setup.study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    except _TRIAL_ERRORS as error:
        _fail(setup.study, trial, error)
    else:
        setup.study.tell(trial, value)


def _run_population_round(setup: _Study, size: int, shared: tuple[str, ...] = ()) -> None:
    """Asks ``size`` trials and trains them as populations: each group of compatible trials
    (equal but for seed, learning rate and dropout) as one vmapped program, a trial that fits
    no group on its own.

    ``shared`` names the varying keys that change the model or the program (the input size,
    the widths, the steps): the trials after the first are asked with the first one's values of
    those keys (``enqueue_trial``), the sampler choosing only their seed, learning rate and
    dropout, so that the round trains as one population. A trial that still differs (another
    worker of the study took the enqueued values) trains in its own group.
    """
    study = setup.study
    members: list[tuple[optuna.Trial, Member]] = []
    anchor: dict[str, Any] | None = None
    for _ in range(size):
        if anchor is not None:
            study.enqueue_trial(anchor, skip_if_exists=False)
        trial = study.ask()
        trial.set_user_attr("pid", os.getpid())
        try:
            members.append((trial, Member(*setup.configs(setup.sample(trial)))))
        except ConfigError as error:
            _fail(study, trial, error)
            continue
        if anchor is None and shared:
            anchor = {name: trial.params[name] for name in shared if name in trial.params}
    groups: list[list[tuple[optuna.Trial, Member]]] = []
    for trial, member in members:
        group = next((g for g in groups if incompatibility([g[0][1], member]) is None), None)
        if group is None:
            groups.append([(trial, member)])
        else:
            group.append((trial, member))
    for group in groups:
        if len(group) == 1:
            _run_alone(setup, *group[0])
        else:
            _train_population(setup, group)


def _train_population(setup: _Study, members: list[tuple[optuna.Trial, Member]]) -> None:
    """Trains compatible asked trials as one population and tells their outcomes."""
    study = setup.study
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
                    value = setup.score(record, trial)
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
        if not blockers or not setup.grid:
            _log.info(
                "population mode: %d trials in rounds of up to %d members%s.",
                n_trials,
                population,
                f" sharing their values of {blockers}" if blockers else "",
            )
            for start in range(0, n_trials, population):
                if setup.out_of_time():
                    return
                _run_population_round(
                    setup, min(population, n_trials - start), shared=tuple(blockers)
                )
            return
        _log.warning(
            "population=%d on a grid needs every varying key to be one of %s; %s change the "
            "model or the shared program, so the %d grid points run one by one.",
            population,
            sorted(POPULATION_KEYS),
            blockers,
            n_trials,
        )
    if setup.grid and n_jobs == 1:
        # One trial at a time while the grid has a point nobody took: independent processes
        # on one grid stop together instead of each re-running points the others ran.
        for _ in range(n_trials):
            if setup.out_of_time() or not _grid_left(setup):
                return
            setup.study.optimize(_objective(setup), n_trials=1, catch=_TRIAL_ERRORS)
        return
    setup.study.optimize(
        _objective(setup),
        n_trials=n_trials,
        n_jobs=n_jobs,
        catch=_TRIAL_ERRORS,
        timeout=setup.remaining(),
    )


def _grid_left(setup: _Study) -> bool:
    """Whether the grid has a point no trial has taken, or a trial waiting to run (a retry).

    optuna gives trial ``n < size`` grid point ``n`` (its number is set when it is created,
    its point a moment later), so the trials numbered below the size are the points taken.
    Two processes checking at the same instant may still both ask at the end of the grid:
    one point then runs twice."""
    size = math.prod(len(d.grid()) for d in setup.dimensions.values() if d.varies)
    trials = setup.study.get_trials(deepcopy=False)
    taken = sum(t.number < size for t in trials)
    waiting = any(t.state == optuna.trial.TrialState.WAITING for t in trials)
    return taken < size or waiting


def _grid_sampler(dimensions: Mapping[str, Dimension], seed: int) -> optuna.samplers.BaseSampler:
    space = {name: dim.grid() for name, dim in dimensions.items() if dim.varies}
    if not space:
        raise ValueError("grid search needs at least one key with several values.")
    # optuna shuffles the grid with the sampler's seed and trial n takes point n of that order:
    # every process working the study (worker seeds differ) must shuffle it the same way, or two
    # of them run one point twice and another never.
    del seed
    return _GridSampler(space, seed=0)


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
    heartbeat_interval: int | None = None,
    deadline: float | None = None,
    first_trials: Sequence[Mapping[str, Any]] = (),
) -> _Study:
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {sorted(METRICS)}, got {metric!r}.")
    if heartbeat_interval is not None and (
        isinstance(heartbeat_interval, bool)
        or not isinstance(heartbeat_interval, int)
        or heartbeat_interval < 1
    ):
        raise ValueError(
            f"heartbeat_interval must be a positive integer (seconds), got {heartbeat_interval!r}."
        )
    for name, value in (("valid_size", valid_size), ("cv_windows", cv_windows)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise ValueError(f"{name} must be a positive integer, got {value!r}.")
        if value is not None and value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    if population is not None and population < 1:
        raise ValueError(f"population must be a positive integer, got {population!r}.")
    dimensions = parse_space(space)
    firsts = _first_points(dimensions, first_trials, grid=method == "grid")
    sampler = _sampler(method, dimensions, seed)
    study = open_study(
        storage,
        study_name=study_name,
        direction=METRICS[metric],
        sampler=sampler,
        pruner=_pruner(pruner),
        heartbeat_interval=heartbeat_interval,
    )
    for point in firsts:  # a continued study that holds the point already skips it
        study.enqueue_trial(point, skip_if_exists=True)
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
        deadline=deadline,
    )


def _first_points(
    dimensions: Mapping[str, Dimension], first_trials: Sequence[Mapping[str, Any]], *, grid: bool
) -> list[dict[str, Any]]:
    """``first_trials`` checked against the space, in optuna's encoding of each varying key.

    Raises:
      ValueError: a grid search, a point that is not a mapping, a key the space does not
        have, or a value outside its dimension.
    """
    if isinstance(first_trials, Mapping) or not isinstance(first_trials, Sequence):
        raise ValueError(
            f"first_trials must be a list of points (mappings of space keys to values), "
            f"got {type(first_trials).__name__}."
        )
    if first_trials and grid:
        raise ValueError("first_trials has no use in a grid search, which runs every point once.")
    points = []
    for point in first_trials:
        if not isinstance(point, Mapping):
            raise ValueError(
                f"each of first_trials must map space keys to values, got {type(point).__name__}."
            )
        encoded = {}
        for name, value in point.items():
            if name not in dimensions:
                raise ValueError(
                    f"first_trials sets {name!r}, which is not a key of the search space "
                    f"(keys: {sorted(dimensions)})."
                )
            dimension = dimensions[name]
            own = dimension.match(value)
            if dimension.varies:
                encoded[name] = dimension.encode(own)
        points.append(encoded)
    return points


def _trial_count(setup: _Study, n_trials: int) -> int:
    """Trials still to run: the unfinished part of the grid, else ``n_trials``."""
    if not setup.grid:
        return n_trials
    size = math.prod(len(d.grid()) for d in setup.dimensions.values() if d.varies)
    finished = sum(t.state.is_finished() for t in setup.study.get_trials(deepcopy=False))
    return max(size - finished, 0)


def _result(
    setup: _Study,
    storage: str | None,
    *,
    refit: bool,
    baseline_significance: float | None,
    ensemble: int = 1,
) -> OptimizeResult:
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
        if setup.out_of_time():
            raise ValueError(
                f"no trial of study {study.study_name!r} completed within the time budget "
                f"({len(trials)} trials started); give it a larger timeout or fewer steps."
            )
        raise ValueError(
            f"no trial of study {study.study_name!r} completed ({len(trials)} trials); "
            f"errors: {errors or 'none recorded (all pruned?)'}."
        )
    best_trial = study.best_trial
    gate = _baseline_gate(setup, best_trial, completed, baseline_significance)
    best_trial = gate.trial
    best_params = setup.decode(best_trial)
    members = [best_trial]
    floor = gate.score is not None and not _differs(best_trial.value, gate.score)
    if ensemble > 1 and not floor:
        members = _ensemble_members(setup, best_trial, completed, gate.score, ensemble)
    best = None
    if refit:
        records, members = _refit(setup, members)
        best = (
            records[0] if len(records) == 1 else ensemble_of(records, method="mean", df=setup.frame)
        )
        best = best.replace(
            extra={
                **best.extra,
                "study_name": study.study_name,
                "trial": best_trial.number,
                "trials": [t.number for t in members],
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
        baseline_score=gate.score,
        baseline_p_value=gate.p_value,
        beats_baseline=gate.beaten,
        members=tuple(t.number for t in members),
    )


def _refit(
    setup: _Study, members: list[optuna.trial.FrozenTrial]
) -> tuple[list[ModelRecord], list[optuna.trial.FrozenTrial]]:
    """Refits the trials on the whole frame. The first one's validation and calibration rows
    are given to the others, so that every member fits its scaler on the same rows (how many
    rows a fit holds out depends on its input size); a member that still scales differently,
    or whose input no longer fits the series, is left out with a log line."""
    first = fit(setup.frame, *setup.configs(setup.decode(members[0])))
    held_out = first.trained_on.filter(pl.col("role") == "calibration")["n_rows"]
    rows = {
        "val_size": first.training.val_size,
        "calibration_size": int(held_out.max()) if held_out.len() else 0,
    }
    records, kept = [first], [members[0]]
    for trial in members[1:]:
        config, training, optimizer = setup.configs(setup.decode(trial))
        try:
            record = fit(setup.frame, config, dataclasses.replace(training, **rows), optimizer)
        except ValueError as error:
            _log.info("trial %d is left out of the ensemble: %s", trial.number, error)
            continue
        if not same_scaler(record, first):
            _log.info("trial %d is left out of the ensemble: its scaler differs.", trial.number)
            continue
        records.append(record)
        kept.append(trial)
    return records, kept


def _ensemble_members(
    setup: _Study,
    best: optuna.trial.FrozenTrial,
    completed: list[optuna.trial.FrozenTrial],
    baseline: float | None,
    size: int,
) -> list[optuna.trial.FrozenTrial]:
    """The best trial and the next best trained trials (not scoring the last value itself)
    that an ensemble record can hold with it: the same horizon, quantiles, exogenous columns
    and scaler kind (an ensemble record has one scaler), up to ``size`` in all."""

    def signature(trial: optuna.trial.FrozenTrial) -> tuple:
        config, training, _ = setup.configs(setup.decode(trial))
        return (
            config.horizon,
            config.quantiles,
            config.hist_exog,
            config.futr_exog,
            training.scaler,
        )

    wanted = signature(best)
    others = sorted(
        (
            t
            for t in completed
            if t.number != best.number
            and (baseline is None or _differs(t.value, baseline))
            and math.isfinite(t.value)
        ),
        key=lambda t: setup.sign * t.value,
    )
    members = [best]
    for trial in others:
        if len(members) == size:
            break
        if signature(trial) == wanted:
            members.append(trial)
    return members


@dataclass(frozen=True)
class _Gate:
    """The baseline test's outcome: the trial to return and what the test found."""

    trial: optuna.trial.FrozenTrial
    score: float | None = None
    p_value: float | None = None
    beaten: bool | None = None


def _baseline_gate(
    setup: _Study,
    best: optuna.trial.FrozenTrial,
    completed: list[optuna.trial.FrozenTrial],
    significance: float | None,
) -> _Gate:
    """Tests the best trial that does not score the last value itself against the last value
    on the held-out windows; where it does not beat it, a trial that scores the last value
    (a floor, such as the NHITS Auto space's point at 0 steps) is the result if there is one."""
    config = setup.configs(setup.decode(best))[0]
    baseline = setup.baseline(config)
    if baseline is None:
        return _Gate(best)
    score, baseline_windows = baseline
    floors = [t for t in completed if not _differs(t.value, score)]
    learnt = [t for t in completed if _differs(t.value, score)]
    if not learnt:
        return _Gate(floors[0], score, None, False)
    challenger = min(learnt, key=lambda t: setup.sign * t.value)
    p_value = None
    windows = challenger.user_attrs.get("window_scores")
    if windows is not None and len(windows) == len(baseline_windows) >= 3:
        _, step = setup.holdout(config)
        lags = -(-config.horizon // step)  # overlapping windows share errors up to this lag
        losses = [[setup.sign * v for v in w] for w in (baseline_windows, windows)]
        p_value = diebold_mariano(*losses, horizon=lags).p_value
    beaten = _beats(challenger.value, score, setup.metric) and (
        significance is None or p_value is None or p_value < significance
    )
    if beaten:
        return _Gate(challenger, score, p_value, True)
    test = "" if p_value is None else f", one-sided Diebold-Mariano p = {p_value:.3g}"
    if floors:
        _log.info(
            "study %r: the best trained trial (%d, %s %.6g) does not beat the last value "
            "(%.6g%s); the result is trial %d, which forecasts the last value.",
            setup.study.study_name, challenger.number, setup.metric, challenger.value, score,
            test, floors[0].number,
        )  # fmt: skip
        return _Gate(floors[0], score, p_value, False)
    _log.warning(
        "study %r: the best trial's %s (%.6g) does not beat the last value's (%.6g%s) on the "
        "same held-out windows; nothing the search trained is shown to forecast better than "
        "the naive forecast there.",
        setup.study.study_name, setup.metric, challenger.value, score, test,
    )  # fmt: skip
    return _Gate(challenger, score, p_value, False)


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
    heartbeat_interval: int | None = 10,
    timeout: float | None = None,
    first_trials: Sequence[Mapping[str, Any]] = (),
    baseline_significance: float | None = 0.05,
    ensemble: int = 1,
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
      population: train up to this many trials at once as one vmapped program. Where the
        space varies other keys too (input size, widths, steps), each round of trials shares
        the first trial's values of those and varies seed, learning rate and dropout (a grid
        with such keys runs one by one).
      training: base training config the space overrides (default: trials hold out one
        horizon of the training part for their validation loss, with no progress bar).
      optimizer: base optimizer config the space overrides.
      store_root: folder whose ``optuna.sqlite3`` holds the study when ``storage`` is None.
      refit: refit the best parameters on all of ``df`` (``OptimizeResult.best``).
      heartbeat_interval: seconds between the heartbeats of a running trial in an RDB storage
        (None: no heartbeat); the trial of a worker that died is failed once it has been silent
        for three intervals and runs again once.
      timeout: time budget of this call's trials in seconds (None: none). No trial starts
        after it, and a trial running at the deadline is stopped (pruned) at its next
        validation check, so the search ends within one validation period of the budget; the
        refit of the best trial comes after.
      first_trials: points tried before the sampler's own, in order, each a mapping of space
        keys to values inside the space (keys it leaves out are sampled), e.g.
        ``[nt.auto_start("nhits", 96)]``: the library's defaults as the first trial of an Auto
        search. A continued study that already holds a point does not run it again.
      baseline_significance: the best trial must beat the last value (the naive forecast, on
        the same held-out windows) with a one-sided Diebold-Mariano p-value below this, over
        the windows of every series and origin (where there are 3 or more; a better mean
        otherwise); where it does not, a trial that scores the last value itself is returned
        if the study holds one (see ``OptimizeResult.beats_baseline``). None: the better mean
        decides.
      ensemble: refit the ``ensemble`` best trained trials and return their mean (an
        ensemble record, ``nt.ensemble``) as ``best``: the best trial and the next best that
        share its horizon, quantiles, exogenous columns and scaler kind (fewer where the study
        holds fewer). Averaging the top trials takes out part of the luck of which one
        validated best. Not where the result is the last value. The refit costs ``ensemble``
        fits instead of one.

    Several processes or machines may start together on a fresh storage with the same
    ``study_name``: they all join one study (``open_study``).

    Returns:
      An ``OptimizeResult``.

    Raises:
      ValueError: a malformed space or option, or no trial completed.
    """
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0
    ):
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}.")
    deadline = None if timeout is None else time.monotonic() + timeout
    check_significance(baseline_significance)
    check_ensemble(ensemble)
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
        heartbeat_interval=heartbeat_interval if storage is not None else None,
        deadline=deadline,
        first_trials=first_trials,
    )
    try:
        _run_trials(setup, _trial_count(setup, n_trials), n_jobs=n_jobs)
        return _result(
            setup,
            storage,
            refit=refit,
            baseline_significance=baseline_significance,
            ensemble=ensemble,
        )
    finally:
        setup.close()
