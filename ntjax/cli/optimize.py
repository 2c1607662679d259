"""``ntjax optimize``: a hyper-parameter search with optuna, optionally over several worker
processes (``ntjax.optimize.optimize_workers``); the refit best model goes into the store."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ntjax.cli import _names
from ntjax.cli.common import open_store
from ntjax.cli.readers import add_data, read_data

if TYPE_CHECKING:
    import polars as pl

    from ntjax.record import ModelRecord

HELP = "hyper-parameter search with optuna"


def significance(text: str) -> float | None:
    """``--baseline-significance``: a number in (0, 1), or ``none``."""
    if text.lower() == "none":
        return None
    value = float(text)
    if not 0 < value < 1:
        raise ValueError(text)
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_data(parser)
    parser.add_argument("--model", help="model family (overrides the space's; default nhits)")
    parser.add_argument("--method", choices=_names.SAMPLERS, default="bayesian")
    parser.add_argument("--n-trials", type=int, default=20, help="trials (grid: the whole grid)")
    parser.add_argument("--space", help="search space JSON file (default: input size x lr)")
    parser.add_argument(
        "--auto",
        nargs="?",
        const="default",
        choices=("default", "quick"),
        help="the family's Auto space (nt.auto_space) for --horizon instead of --space, its "
        "first trials at the library's defaults and, for NHITS, the last value "
        "(nt.auto_first_trials); optionally its budget: "
        "default (neuralforecast's Auto* ranges) or quick",
    )
    parser.add_argument("--timeout", type=float, help="time budget of the trials in seconds")
    parser.add_argument(
        "--baseline-significance",
        type=significance,
        default=0.05,
        help="the best trial must beat the last value on the held-out windows with a "
        "Diebold-Mariano p-value below this (default 0.05; none: a better mean decides)",
    )
    parser.add_argument(
        "--ensemble",
        type=int,
        help="refit the K best trained trials that share a scaler and save their mean as one "
        "ensemble model (default 5 with --auto, else 1)",
    )
    parser.add_argument("--horizon", type=int, default=24, help="horizon of the default space")
    parser.add_argument("--max-steps", type=int, default=300, help="steps of the default space")
    parser.add_argument("--metric", choices=_names.METRICS, default="mae")
    parser.add_argument("--pruner", choices=_names.PRUNERS, default="median")
    parser.add_argument("--valid-size", type=int, help="steps held out per series (default h)")
    parser.add_argument("--cv-windows", type=int, help="score by cross-validation over N windows")
    parser.add_argument("--population", type=int, help="train up to N trials as one program")
    parser.add_argument("--workers", type=int, default=1, help="processes working on the study")
    parser.add_argument("--storage", help="optuna RDB URL (default: SQLite file in the store)")
    parser.add_argument("--study-name", help="name of the study to create or continue")
    parser.add_argument("--seed", type=int, default=0)


def optimize_command(
    args: argparse.Namespace,
    frame: pl.DataFrame,
    *,
    store_root: str | os.PathLike,
    save: Callable[[ModelRecord], Any] | None = None,
) -> dict[str, Any]:
    """Runs a study on ``frame`` (with ``--workers N`` processes), hands the refit best model to
    ``save`` (the store's) and returns the result as JSON data.

    ``args`` carries ``model, method, n_trials, space (a JSON file or None), workers, storage,
    study_name, metric, seed, pruner, valid_size, cv_windows, population, horizon,
    max_steps, auto, timeout``; the study lives in ``storage``, else in ``store_root``'s
    SQLite file.
    """
    from ntjax.optimize import (
        AUTO_ENSEMBLE,
        auto_first_trials,
        auto_space,
        default_space,
        default_storage,
        optimize,
        optimize_workers,
    )

    auto = getattr(args, "auto", None)  # callers building their own namespace may omit it
    if auto is not None and args.space is not None:
        raise ValueError("--auto and --space are two ways to give the space; pass one.")
    first_trials = []
    ensemble = getattr(args, "ensemble", None)
    if ensemble is None:  # the Auto recipe averages its best trials
        ensemble = AUTO_ENSEMBLE if auto is not None else 1
    if auto is not None:
        family = args.model or "nhits"
        space = auto_space(family, args.horizon, budget=auto)
        first_trials = auto_first_trials(family, args.horizon, budget=auto)
    elif args.space is not None:
        space = json.loads(Path(args.space).read_text())
        if not isinstance(space, dict):
            raise ValueError(f"{args.space} must hold a JSON object (the search space).")
        if args.model is not None:
            space["model"] = args.model
    else:
        space = default_space(args.model or "nhits", horizon=args.horizon, max_steps=args.max_steps)
    options = {
        "method": args.method,
        "n_trials": args.n_trials,
        "metric": args.metric,
        "storage": args.storage or default_storage(store_root),
        "study_name": args.study_name,
        "seed": args.seed,
        "pruner": args.pruner,
        "valid_size": args.valid_size,
        "cv_windows": args.cv_windows,
        "population": args.population,
        "timeout": getattr(args, "timeout", None),
        "first_trials": first_trials,
        "baseline_significance": getattr(args, "baseline_significance", 0.05),
        "ensemble": ensemble,
    }
    if args.workers > 1:
        result = optimize_workers(frame, space, workers=args.workers, **options)
    else:
        result = optimize(frame, space, **options)
    if save is not None and result.best is not None:
        save(result.best)
    return result.to_dict()


def run(args: argparse.Namespace) -> dict[str, Any]:
    store = open_store(args)
    return optimize_command(args, read_data(args), store_root=store.root, save=store.save)
