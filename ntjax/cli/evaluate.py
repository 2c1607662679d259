"""``ntjax evaluate``: rolling-origin evaluation of a stored model, kept in the store."""

from __future__ import annotations

import argparse
from typing import Any

from ntjax.cli.common import add_leakage, floats, load, open_store
from ntjax.cli.readers import add_data, read_data

HELP = "rolling-origin evaluation"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model-id", required=True, help="model id or alias")
    add_data(parser)
    parser.add_argument("--test-size", type=int, help="steps evaluated per series (default h)")
    parser.add_argument("--step-size", type=int, help="stride between cutoffs (default h)")
    parser.add_argument("--levels", type=floats, help="interval levels, e.g. 80")
    parser.add_argument("--season-length", type=int, default=1, help="MASE season")
    parser.add_argument(
        "--by",
        choices=("horizon", "cutoff", "window"),
        help="every metric per forecast step, per origin, or per series and origin (rows)",
    )
    add_leakage(parser)


def run(args: argparse.Namespace) -> dict[str, Any]:
    from ntjax.evaluate import evaluate

    store = open_store(args)
    record = load(store, args.model_id)
    frame = read_data(args, record.config)
    options = {
        "test_size": args.test_size,
        "step_size": args.step_size,
        "levels": args.levels,
        "season_length": args.season_length,
        "embargo": args.embargo,
        "allow_in_sample": args.allow_in_sample,
    }
    metrics = evaluate(record, frame, **options)
    store.record_evaluation(record.id, metrics)
    if args.by is not None:
        rows = evaluate(record, frame, **options, by=args.by)
        return {"model_id": record.id, **metrics, f"by_{args.by}": rows.to_dicts()}
    return {"model_id": record.id, **metrics}
