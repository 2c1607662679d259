"""Several processes on one study: ``optimize_workers`` and a worker process's entry point
``worker_main``."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import polars as pl

from ntjax.config import (
    OptimizerConfig,
    TrainingConfig,
    dataclass_from_dict,
)
from ntjax.optimize.study import (
    OptimizeResult,
    _result,
    _run_trials,
    _setup,
    _Study,
    _trial_count,
    check_ensemble,
    check_significance,
    default_storage,
)
from ntjax.registry import new_id

_log = logging.getLogger("ntjax.optimize")  # one logger for the whole package

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
    heartbeat_interval: int | None = 10,
    timeout: float | None = None,
    first_trials: Sequence[Mapping[str, Any]] = (),
    baseline_significance: float | None = 0.05,
    ensemble: int = 1,
) -> OptimizeResult:
    """Runs one study with ``workers`` processes sharing its storage, then refits the best.

    The trials are split between the workers (their counts add up to ``n_trials``, or to the
    grid); each worker is a new Python process (``worker_main([JOB, WORKER])``) that reads
    the data from a Parquet copy and samples with seed ``seed + worker + 1``. Other
    machines can join the same study with ``optimize(..., storage=URL, study_name=NAME)``.
    The other arguments are those of ``optimize`` (``timeout`` is one budget shared by all
    the workers, counted from this call; ``first_trials`` are queued once, here, and the
    first workers to ask take them).

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
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0
    ):
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}.")
    check_significance(baseline_significance)
    check_ensemble(ensemble)
    # Wall-clock time: the workers are other processes (their monotonic clocks differ).
    ends_at = None if timeout is None else time.time() + timeout
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
        "heartbeat_interval": heartbeat_interval,
    }
    # The study is created here, once, before the workers start (they join it).
    setup = _setup(df, space, **_decode_options(options), first_trials=first_trials)
    try:
        _run_workers(setup, space, options, n_trials, workers, ends_at)
        return _result(
            setup,
            storage,
            refit=refit,
            baseline_significance=baseline_significance,
            ensemble=ensemble,
        )
    finally:
        setup.close()


def _run_workers(
    setup: _Study,
    space: Mapping[str, Any],
    options: Mapping[str, Any],
    n_trials: int,
    workers: int,
    ends_at: float | None = None,
) -> None:
    total = _trial_count(setup, n_trials)
    shares = [s for s in _shares(total, workers) if s > 0]
    with tempfile.TemporaryDirectory(prefix="ntjax-study-") as folder:
        data_path = Path(folder) / "data.parquet"
        setup.frame.write_parquet(data_path)
        job_path = Path(folder) / "job.json"
        job = {
            "data": str(data_path),
            "space": dict(space),
            "options": options,
            "shares": shares,
            "ends_at": ends_at,
        }
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
    ends_at = job.get("ends_at")
    deadline = None if ends_at is None else time.monotonic() + (ends_at - time.time())
    setup = _setup(pl.read_parquet(job["data"]), job["space"], **options, deadline=deadline)
    try:
        _run_trials(setup, job["shares"][index])
    finally:
        setup.close()


def worker_main(argv: Sequence[str]) -> int:
    """Entry point of a worker process: ``argv`` is ``[JOB.json, WORKER_INDEX]``."""
    if len(argv) != 2:
        print("usage: worker_main([JOB.json, WORKER_INDEX])", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    _worker_main(argv[0], int(argv[1]))
    return 0
