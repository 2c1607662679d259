"""The ``ntjax`` command.

    ntjax train    --data F [--time-col C --target T] --model nhits --horizon 24 [...]
    ntjax forecast --model-id ID --data F [--levels 80,95] [--output out.csv]
    ntjax evaluate --model-id ID --data F [--test-size N]
    ntjax status   [ID] [--kind K --status S --metric M --limit N]
    ntjax alias    set NAME ID | rollback NAME | show [NAME]
    ntjax optimize --data F [--method grid|random|bayesian|gp --n-trials N --workers N]
    ntjax backtest --model-id ID | --model NAME --data prices.csv [--strategy S ...]
    ntjax quantize --model-id ID --dtype int8|bfloat16 [--data F --max-change X]
    ntjax distill  --teacher ID[,ID...] --data F --model nhits [--alpha A ...]
    ntjax retrain  --alias NAME --data F [--policy policy.json]
    ntjax demo     [--output-dir D] [--max-steps N]

Results go to stdout as JSON (``forecast`` without ``--output`` writes CSV), progress and logs
to stderr; bad input exits non-zero with one line on stderr, never a traceback (set
``NTJAX_DEBUG=1`` to see one). The store is ``--store``, else ``$NTJAX_STORE``, else
``./ntjax-store``. Each subcommand is one entry of ``COMMANDS``: a function adding its
arguments and a function running it (a module of this package), so new subcommands are one
entry each. Building the parser imports no JAX, and neither do ``status`` and ``alias``: the
commands that compute import the library when they run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ntjax import hugepages
from ntjax._version import __version__
from ntjax.cli import (
    alias,
    backtest,
    demo,
    distill,
    evaluate,
    forecast,
    optimize,
    quantize,
    retrain,
    status,
    train,
)
from ntjax.cli.common import add_store, jsonable


class UsageError(Exception):
    """Bad command-line arguments."""


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (no usage block) and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: error: {message}")


@dataclass(frozen=True)
class Command:
    """A subcommand: its help, a function adding its arguments, and a function running it
    (returns what to print as JSON, or None when it wrote its own output); ``computes``: it
    runs JAX programs (the ``ntjax`` program relaunches itself with huge pages for those)."""

    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], Any]
    uses_store: bool = True
    computes: bool = True


COMMANDS: dict[str, Command] = {
    "train": Command(train.HELP, train.add_arguments, train.run),
    "forecast": Command(forecast.HELP, forecast.add_arguments, forecast.run),
    "evaluate": Command(evaluate.HELP, evaluate.add_arguments, evaluate.run),
    "status": Command(status.HELP, status.add_arguments, status.run, computes=False),
    "alias": Command(alias.HELP, alias.add_arguments, alias.run, uses_store=False, computes=False),
    "optimize": Command(optimize.HELP, optimize.add_arguments, optimize.run),
    "backtest": Command(backtest.HELP, backtest.add_arguments, backtest.run),
    "quantize": Command(quantize.HELP, quantize.add_arguments, quantize.run),
    "distill": Command(distill.HELP, distill.add_arguments, distill.run),
    "retrain": Command(retrain.HELP, retrain.add_arguments, retrain.run),
    "demo": Command(demo.HELP, demo.add_arguments, demo.run, uses_store=False),
}


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="ntjax", description="Neural forecasting for trading research.")
    parser.add_argument("--version", action="version", version=f"ntjax {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, command in COMMANDS.items():
        sub = commands.add_parser(name, help=command.help, description=command.help)
        command.add_arguments(sub)
        if command.uses_store:
            add_store(sub)
    return parser


def _one_line(exc: BaseException) -> str:
    message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
    message = " ".join(str(message).split()) or type(exc).__name__
    if not isinstance(exc, ValueError | UsageError | LookupError | OSError):
        message = f"{type(exc).__name__}: {message}"
    return message


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line; returns the exit status (0 ok, 1 failed, 2 bad usage).

    Run as the ``ntjax`` program (``argv`` None), a command that computes first relaunches the
    program with huge pages for XLA:CPU's buffers where they are usable and not yet on
    (``ntjax.hugepages``)."""
    try:
        args = build_parser().parse_args(argv)
        if argv is None and COMMANDS[args.command].computes:
            hugepages.relaunch()
        args.argv = list(sys.argv[1:] if argv is None else argv)  # to start a child with
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
        print(json.dumps(jsonable(result), indent=2, allow_nan=False))
    return 0
