"""``ntjax quantize``: a stored model's int8 or bfloat16 copy, saved into the store."""

from __future__ import annotations

import argparse
from typing import Any

from ntjax.cli.common import load, log, open_store
from ntjax.cli.readers import add_data, read_data

HELP = "store an int8 or bfloat16 copy of a model (with an accuracy gate)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model-id", required=True, help="model id or alias")
    parser.add_argument(
        "--dtype", choices=("int8", "bfloat16"), default="int8", help="weight storage"
    )
    add_data(parser, required=False)
    parser.add_argument(
        "--max-change",
        type=float,
        help="refuse when MAE or wql on --data rises by more than this fraction (0.01: 1%%)",
    )
    parser.add_argument("--test-size", type=int, help="steps scored per series (default h)")
    parser.add_argument("--step-size", type=int, help="stride between cutoffs (default h)")


def run(args: argparse.Namespace) -> dict[str, Any]:
    from ntjax.lifecycle import quantize

    store = open_store(args)
    parent = load(store, args.model_id)
    frame = read_data(args, parent.config) if args.data else None
    log(f"quantising {parent.id} to {args.dtype}")
    record = quantize(
        parent,
        args.dtype,
        calibration_df=frame,
        max_change=args.max_change,
        test_size=args.test_size,
        step_size=args.step_size,
    )
    store.save(record)
    return {
        "model_id": record.id,
        **record.summary(),
        "quantization": record.extra["quantization"],
        "store": str(store.root),
    }
