"""``ntjax demo``: train, forecast, evaluate and backtest on the shipped ETTh1 data."""

from __future__ import annotations

import argparse

HELP = "train, forecast, evaluate, backtest on ETTh1"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output-dir", default=".", help="where the report's plot goes")
    parser.add_argument("--max-steps", type=int, help="training steps (default: the demo's)")


def run(args: argparse.Namespace) -> None:
    from ntjax.demo import run_demo

    report = run_demo(output_dir=args.output_dir, max_steps=args.max_steps, progress=True)
    print(report)
