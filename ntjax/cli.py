"""The ``ntjax`` command.

    ntjax train    --data F [--time-col C --target T] --model nhits --horizon 24 [...]
    ntjax forecast --model-id ID --data F [--levels 80,95] [--output out.csv]
    ntjax evaluate --model-id ID --data F [--test-size N]
    ntjax status   [ID] [--kind K --status S --metric M --limit N]
    ntjax alias    set NAME ID | rollback NAME | show [NAME]
    ntjax demo     [--output-dir D] [--max-steps N]

Results go to stdout as JSON (``forecast`` without ``--output`` writes CSV), progress and logs
to stderr; bad input exits non-zero with one line on stderr, never a traceback (set
``NTJAX_DEBUG=1`` to see one). The store is ``--store``, else ``$NTJAX_STORE``, else
``./ntjax-store``. Each subcommand is one entry of ``COMMANDS``: a function adding its
arguments and a function running it, so new subcommands are one entry each.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

DEFAULT_STORE = "./ntjax-store"


def _read_csv(path: Path) -> pl.DataFrame:
    try:
        return pl.read_csv(path, try_parse_dates=True)
    except pl.exceptions.ComputeError:
        # A value past the rows polars guesses the types from (a "null" row, a first float
        # after integers) did not fit the guess: guess from the whole file instead.
        return pl.read_csv(path, try_parse_dates=True, infer_schema_length=None)


_READERS: dict[str, Callable[[Path], pl.DataFrame]] = {
    ".csv": _read_csv,
    ".parquet": pl.read_parquet,
    ".pq": pl.read_parquet,
}


class UsageError(Exception):
    """Bad command-line arguments."""


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (no usage block) and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: error: {message}")


# -- helpers shared by subcommands -----------------------------------------------------------


def _log(message: str) -> None:
    print(f"ntjax: {message}", file=sys.stderr, flush=True)


def _jsonable(value: Any) -> Any:
    """JSON-friendly copy: numpy to Python, NaN/inf to null (strict JSON has no NaN)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _floats(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers, got {text!r}"
        ) from None
    if not values:
        raise argparse.ArgumentTypeError("expected at least one number")
    return tuple(int(v) if v.is_integer() and v >= 1 else v for v in values)


def _json_object(text: str) -> dict[str, Any]:
    """A JSON object given inline or as ``@file.json``."""
    if text.startswith("@"):
        try:
            text = Path(text[1:]).read_text()
        except OSError as exc:
            raise argparse.ArgumentTypeError(f"cannot read {text[1:]}: {exc.strerror}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON ({exc.msg} at {exc.pos})") from None
    if not isinstance(data, dict):
        raise argparse.ArgumentTypeError("must be a JSON object of model fields")
    return data


def read_frame(
    path: str | os.PathLike[str],
    *,
    time_col: str | None = None,
    target: str | None = None,
) -> pl.DataFrame:
    """Reads a CSV or Parquet file as a long frame.

    Text columns that hold numbers and missing-value marks (empty, ``null``, ``NA``, ``N/A``,
    ``NaN``, ``None``, ``#N/A``, FRED's ``.``, ``-``; see ``ntjax.data.frame.MISSING_TOKENS``)
    are read as Float64 with those cells null, so a Yahoo Finance, FRED or Stooq export reads
    as numbers; date columns are parsed. Missing values are not handled here (``_frame``
    applies ``--missing``).

    Args:
      path: ``.csv``, ``.parquet`` or ``.pq`` file.
      time_col: for a wide file, its time column; each ``target`` column becomes a series.
      target: comma-separated value columns of a wide file (default: every numeric column).

    Returns:
      ``unique_id, ds, y`` (+ whatever other columns a long file has).
    """
    path = Path(path)
    reader = _READERS.get(path.suffix.lower())
    if reader is None:
        raise ValueError(f"{path}: unsupported file type; use .csv or .parquet.")
    if not path.is_file():
        raise ValueError(f"{path}: no such file.")
    try:
        frame = reader(path)
    except pl.exceptions.PolarsError as exc:
        reason = str(exc).strip().splitlines()[0].rstrip(".") if str(exc).strip() else ""
        raise ValueError(f"cannot read {path}: {reason or type(exc).__name__}.") from None
    from ntjax.data import coerce_numeric

    frame = coerce_numeric(frame, exclude=("unique_id", "ds", *([time_col] if time_col else [])))
    if time_col is not None:
        return _from_wide(frame, time_col=time_col, value_cols=target)
    if target is not None:
        raise ValueError("--target needs --time-col (it selects columns of a wide file).")
    missing = [c for c in ("unique_id", "ds", "y") if c not in frame.columns]
    if missing:
        raise ValueError(
            f"{path} is not a long frame (missing {missing}); for a wide file pass --time-col "
            f"and --target (columns: {frame.columns[:10]})."
        )
    return frame


def _from_wide(frame: pl.DataFrame, **kwargs: Any) -> pl.DataFrame:
    from ntjax.data import from_wide

    return from_wide(frame, **kwargs)


def _open_store(args: argparse.Namespace):
    from ntjax.store import Store

    root = args.store or os.environ.get("NTJAX_STORE") or DEFAULT_STORE
    store = Store(root)
    if os.environ.get("NTJAX_COMPILATION_CACHE", "1") != "0":
        store.enable_compilation_cache()
    return store


def _load(store, name_or_id: str):
    return store.load(store.resolve(name_or_id))


def _add_store(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--store", help=f"store folder (default: $NTJAX_STORE, else {DEFAULT_STORE})"
    )


def _add_data(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="CSV or Parquet file, long or wide")
    parser.add_argument("--time-col", help="time column of a wide file")
    parser.add_argument("--target", help="value column(s) of a wide file, comma-separated")
    parser.add_argument(
        "--missing",
        choices=("error", "drop", "ffill", "interpolate"),
        default="error",
        help="missing values (empty, null, NA, NaN, ...) in y and the model's exogenous "
        "columns: error (default) names them; drop removes their rows; ffill carries each "
        "series' last value forward; interpolate is linear in time (rows before a series' "
        "first or after its last value are dropped)",
    )
    parser.add_argument(
        "--duplicates",
        choices=("error", "drop", "first", "last"),
        default="error",
        help="repeated (series, time) rows: error (default) names them; drop removes exact "
        "duplicate rows (all values equal) and still refuses rows that differ; first / last "
        "keeps the first / last row of each",
    )
    parser.add_argument(
        "--fill-gaps",
        choices=("ffill", "interpolate"),
        help="insert the timestamps missing from each series' regular grid (its inferred "
        "frequency; business days when it has no weekends, no holiday calendar) with values "
        "carried forward or interpolated in time (default: leave them out)",
    )


def _add_leakage(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--allow-in-sample",
        action="store_true",
        help="score rows the model was fitted on anyway (the result says in_sample: true)",
    )
    parser.add_argument(
        "--embargo",
        type=int,
        default=0,
        help="steps after the model's trained end that still count as in sample",
    )


def _frame(args: argparse.Namespace, config: Any = None) -> pl.DataFrame:
    """The ``--data`` file as a long frame, with ``--duplicates``, ``--fill-gaps`` and
    ``--missing`` applied (in that order); ``--missing`` covers ``y`` and ``config``'s
    exogenous columns, or every numeric column without a config."""
    from ntjax.data import drop_duplicates, fill_gaps, fill_missing, find_gaps

    frame = read_frame(args.data, time_col=args.time_col, target=args.target)
    rows = frame.height
    frame = drop_duplicates(frame, keep="exact" if args.duplicates == "drop" else args.duplicates)
    if frame.height < rows:
        _log(f"dropped {rows - frame.height} duplicate rows (--duplicates {args.duplicates})")
    if args.fill_gaps is not None:
        inserted = find_gaps(frame).height
        frame = fill_gaps(frame, args.fill_gaps)
        if inserted:
            _log(f"inserted {inserted} missing timestamps (--fill-gaps {args.fill_gaps})")
    columns = None
    if config is not None:  # a column the model needs but the file lacks is validate's to name
        wanted = ("y", *config.hist_exog, *config.futr_exog)
        columns = [c for c in wanted if c in frame.columns]
    rows = frame.height
    frame = fill_missing(frame, args.missing, columns=columns)
    if frame.height < rows:
        _log(f"dropped {rows - frame.height} rows with missing values (--missing {args.missing})")
    n_series = frame["unique_id"].n_unique() if "unique_id" in frame.columns else 0
    _log(f"read {args.data}: {frame.height} rows, {n_series} series")
    return frame


# -- subcommands -----------------------------------------------------------------------------


def _train_arguments(parser: argparse.ArgumentParser) -> None:
    from ntjax.models import MODELS

    _add_data(parser)
    parser.add_argument("--model", default="nhits", help=f"one of {', '.join(sorted(MODELS))}")
    parser.add_argument("--horizon", type=int, required=True, help="steps to forecast")
    parser.add_argument("--input-size", type=int, help="past steps seen (default 5 x horizon)")
    parser.add_argument("--quantiles", type=_floats, help="e.g. 0.1,0.5,0.9")
    parser.add_argument("--config", type=_json_object, help="other model fields as JSON (@file)")
    parser.add_argument("--max-steps", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=256, help="windows per step")
    parser.add_argument("--val-size", type=int, default=0, help="steps held out for validation")
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--scaler", default="standard")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--calibration",
        choices=("rolling", "split", "none"),
        default="rolling",
        help="interval calibration on a held-out tail (default rolling; none: raw heads)",
    )
    parser.add_argument(
        "--calibration-size", type=int, help="steps held out for calibration (default auto)"
    )
    parser.add_argument("--init-from", help="fine-tune from this model id or alias")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _train(args: argparse.Namespace) -> dict[str, Any]:
    from ntjax.config import OptimizerConfig, TrainingConfig, config_from_dict
    from ntjax.models import CONFIGS

    fields = {**(args.config or {}), "kind": args.model, "horizon": args.horizon}
    fields["input_size"] = args.input_size if args.input_size else 5 * args.horizon
    if args.quantiles is not None:
        fields["quantiles"] = args.quantiles
    config = config_from_dict(fields, CONFIGS)
    training = TrainingConfig(
        max_steps=args.max_steps,
        batch_size=args.batch_size,
        val_size=args.val_size,
        val_check_steps=min(100, args.max_steps),
        seed=args.seed,
        scaler=args.scaler,
        progress=not args.no_progress,
        calibration=None if args.calibration == "none" else args.calibration,
        calibration_size=args.calibration_size,
    )
    optimizer = OptimizerConfig(learning_rate=args.learning_rate)
    store = _open_store(args)
    init_from = _load(store, args.init_from) if args.init_from else None
    frame = _frame(args, config)
    _log(
        f"training {config.kind} (horizon {config.horizon}, input {config.input_size}) "
        f"for {training.max_steps} steps into {store.root}"
    )
    record = store.train(frame, config, training, optimizer, init_from=init_from)
    return {"model_id": record.id, **record.summary(), "store": str(store.root)}


def _forecast_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model-id", required=True, help="model id or alias")
    _add_data(parser)
    parser.add_argument("--levels", type=_floats, help="interval levels, e.g. 80,95")
    parser.add_argument("--output", help="write the forecast here (.csv or .parquet)")


def _forecast(args: argparse.Namespace) -> dict[str, Any] | None:
    from ntjax.predict import forecast, supported_levels

    store = _open_store(args)
    record = _load(store, args.model_id)
    frame = _frame(args, record.config)
    levels = args.levels if args.levels is not None else supported_levels(record.config)
    result = forecast(record, frame, levels=levels)
    if args.output is None:
        sys.stdout.write(result.write_csv())
        return None
    output = Path(args.output)
    if output.suffix.lower() in (".parquet", ".pq"):
        result.write_parquet(output)
    elif output.suffix.lower() == ".csv":
        result.write_csv(output)
    else:
        raise ValueError(f"{output}: unsupported output type; use .csv or .parquet.")
    return {
        "model_id": record.id,
        "output": str(output),
        "rows": result.height,
        "series": result["unique_id"].n_unique(),
        "columns": result.columns,
    }


def _evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model-id", required=True, help="model id or alias")
    _add_data(parser)
    parser.add_argument("--test-size", type=int, help="steps evaluated per series (default h)")
    parser.add_argument("--step-size", type=int, help="stride between cutoffs (default h)")
    parser.add_argument("--levels", type=_floats, help="interval levels, e.g. 80")
    parser.add_argument("--season-length", type=int, default=1, help="MASE season")
    parser.add_argument(
        "--by", choices=("horizon",), help="every metric per forecast step (a list of rows)"
    )
    _add_leakage(parser)


def _evaluate(args: argparse.Namespace) -> dict[str, Any]:
    from ntjax.evaluate import evaluate

    store = _open_store(args)
    record = _load(store, args.model_id)
    frame = _frame(args, record.config)
    metrics = evaluate(
        record,
        frame,
        test_size=args.test_size,
        step_size=args.step_size,
        levels=args.levels,
        season_length=args.season_length,
        embargo=args.embargo,
        allow_in_sample=args.allow_in_sample,
    )
    store.record_evaluation(record.id, metrics)
    if args.by == "horizon":
        by_horizon = evaluate(
            record,
            frame,
            test_size=args.test_size,
            step_size=args.step_size,
            levels=args.levels,
            season_length=args.season_length,
            embargo=args.embargo,
            allow_in_sample=args.allow_in_sample,
            by="horizon",
        )
        return {"model_id": record.id, **metrics, "by_horizon": by_horizon.to_dicts()}
    return {"model_id": record.id, **metrics}


def _status_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model_id", nargs="?", help="one model id or alias (default: all)")
    parser.add_argument("--kind", help="only this model family")
    parser.add_argument("--status", choices=("training", "trained", "failed"))
    parser.add_argument("--metric", help="only models with this metric, best (lowest) first")
    parser.add_argument("--since", help="created at or after (ISO-8601, UTC)")
    parser.add_argument("--limit", type=int)


def _status(args: argparse.Namespace) -> Any:
    store = _open_store(args)
    if args.model_id is not None:
        return store.status(store.resolve(args.model_id))
    return store.query(
        kind=args.kind, status=args.status, metric=args.metric, since=args.since, limit=args.limit
    )


def _alias_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    set_parser = actions.add_parser("set", help="point NAME at a model")
    set_parser.add_argument("name")
    set_parser.add_argument("model_id", help="model id (or another alias)")
    rollback = actions.add_parser("rollback", help="point NAME back at its previous model")
    rollback.add_argument("name")
    show = actions.add_parser("show", help="current aliases, or one alias with its history")
    show.add_argument("name", nargs="?")
    for sub in (set_parser, rollback, show):
        _add_store(sub)


def _alias(args: argparse.Namespace) -> Any:
    store = _open_store(args)
    if args.action == "set":
        return store.set_alias(args.name, store.resolve(args.model_id))
    if args.action == "rollback":
        return store.rollback(args.name)
    if args.name is None:
        return store.aliases()
    return {
        "alias": args.name,
        "model_id": store.resolve(args.name),
        "history": store.alias_history(args.name),
    }


def _demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output-dir", default=".", help="where the report's plot goes")
    parser.add_argument("--max-steps", type=int, help="training steps (default: the demo's)")


def _demo(args: argparse.Namespace) -> None:
    from ntjax.demo import run_demo

    report = run_demo(output_dir=args.output_dir, max_steps=args.max_steps, progress=True)
    print(report)


@dataclass(frozen=True)
class Command:
    """A subcommand: its help, a function adding its arguments, and a function running it
    (returns what to print as JSON, or None when it wrote its own output)."""

    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], Any]
    uses_store: bool = True


def _optimize_arguments(parser: argparse.ArgumentParser) -> None:
    from ntjax.optimize import METRICS, PRUNERS, SAMPLERS

    _add_data(parser)
    parser.add_argument("--model", help="model family (overrides the space's; default nhits)")
    parser.add_argument("--method", choices=sorted(SAMPLERS), default="bayesian")
    parser.add_argument("--n-trials", type=int, default=20, help="trials (grid: the whole grid)")
    parser.add_argument("--space", help="search space JSON file (default: input size x lr)")
    parser.add_argument("--horizon", type=int, default=24, help="horizon of the default space")
    parser.add_argument("--max-steps", type=int, default=300, help="steps of the default space")
    parser.add_argument("--metric", choices=sorted(METRICS), default="mae")
    parser.add_argument("--pruner", choices=sorted(PRUNERS), default="median")
    parser.add_argument("--valid-size", type=int, help="steps held out per series (default h)")
    parser.add_argument("--cv-windows", type=int, help="score by cross-validation over N windows")
    parser.add_argument("--population", type=int, help="train up to N trials as one program")
    parser.add_argument("--workers", type=int, default=1, help="processes working on the study")
    parser.add_argument("--storage", help="optuna RDB URL (default: SQLite file in the store)")
    parser.add_argument("--study-name", help="name of the study to create or continue")
    parser.add_argument("--seed", type=int, default=0)


def _optimize(args: argparse.Namespace) -> dict[str, Any]:
    from ntjax.optimize import optimize_command

    store = _open_store(args)
    return optimize_command(args, _frame(args), store_root=store.root, save=store.save)


def _backtest_arguments(parser: argparse.ArgumentParser) -> None:
    from ntjax.backtest import PRICE_TRANSFORMS, STRATEGIES
    from ntjax.models import MODELS

    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--model-id", help="stored model (id or alias); refit only with --refit-every"
    )
    source.add_argument("--model", help=f"fit walk-forward: one of {', '.join(sorted(MODELS))}")
    _add_data(parser)
    parser.add_argument("--horizon", type=int, default=5, help="with --model (step 1 is traded)")
    parser.add_argument("--input-size", type=int, help="with --model (default 5 x horizon)")
    parser.add_argument(
        "--quantiles", type=_floats, help="with --model, e.g. 0.1,0.25,0.5,0.75,0.9"
    )
    parser.add_argument("--max-steps", type=int, default=300, help="with --model: steps per fit")
    parser.add_argument("--batch-size", type=int, default=256, help="with --model")
    parser.add_argument("--seed", type=int, default=0, help="with --model")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--strategy", choices=sorted(STRATEGIES), default="sign")
    parser.add_argument("--long-only", action="store_true", help="no short positions")
    parser.add_argument("--max-leverage", type=float, default=1.0)
    parser.add_argument("--level", type=float, help="interval level of interval/sized (default 80)")
    parser.add_argument("--cost-bps", type=float, default=0.0, help="per unit of position traded")
    parser.add_argument("--slippage-bps", type=float, default=0.0)
    parser.add_argument("--refit-every", type=int, help="refit every N periods on the data then")
    parser.add_argument("--start", help="first decision time (ISO date, or int ds)")
    parser.add_argument("--end", help="last time a period may end")
    parser.add_argument("--transform", choices=sorted(PRICE_TRANSFORMS), default="identity")
    parser.add_argument("--periods-per-year", type=float, default=252)
    parser.add_argument("--risk-free", type=float, default=0.0, help="annual rate")
    parser.add_argument("--plot", help="write the equity plot here (.png)")
    _add_leakage(parser)


def _backtest(args: argparse.Namespace) -> dict[str, Any]:
    from ntjax.backtest import backtest_command

    store = _open_store(args) if args.model_id else None
    return backtest_command(args, store, _frame(args))


COMMANDS: dict[str, Command] = {
    "train": Command("train a model into the store", _train_arguments, _train),
    "forecast": Command("forecast with a stored model", _forecast_arguments, _forecast),
    "evaluate": Command("rolling-origin evaluation", _evaluate_arguments, _evaluate),
    "status": Command("metadata of one or all models", _status_arguments, _status),
    "alias": Command("set, roll back or show aliases", _alias_arguments, _alias, False),
    "optimize": Command("hyper-parameter search with optuna", _optimize_arguments, _optimize),
    "backtest": Command(
        "walk-forward trading backtest on forecasts", _backtest_arguments, _backtest
    ),
    "demo": Command("train, forecast, evaluate, backtest on ETTh1", _demo_arguments, _demo, False),
}


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="ntjax", description="Neural forecasting for trading research.")
    from ntjax._version import __version__

    parser.add_argument("--version", action="version", version=f"ntjax {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, command in COMMANDS.items():
        sub = commands.add_parser(name, help=command.help, description=command.help)
        command.add_arguments(sub)
        if command.uses_store:
            _add_store(sub)
    return parser


def _one_line(exc: BaseException) -> str:
    message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
    message = " ".join(str(message).split()) or type(exc).__name__
    if not isinstance(exc, ValueError | UsageError | LookupError | OSError):
        message = f"{type(exc).__name__}: {message}"
    return message


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line; returns the exit status (0 ok, 1 failed, 2 bad usage)."""
    try:
        args = build_parser().parse_args(argv)
        result = COMMANDS[args.command].run(args)
    except UsageError as exc:
        print(_one_line(exc), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ntjax: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # every failure is one line unless NTJAX_DEBUG asks for more
        if os.environ.get("NTJAX_DEBUG"):
            traceback.print_exc()
        print(f"ntjax: error: {_one_line(exc)}", file=sys.stderr)
        return 1
    if result is not None:
        print(json.dumps(_jsonable(result), indent=2, allow_nan=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
