"""``ntjax distill``: trains a student on the data and a stored teacher's quantile forecasts."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from ntjax.cli import _names
from ntjax.cli.common import json_object, load, log, open_store
from ntjax.cli.readers import add_data, read_data

HELP = "train a student model on the data and a teacher's quantile forecasts"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--teacher", required=True, help="teacher model id or alias; several comma-separated"
    )
    add_data(parser)
    parser.add_argument("--model", default="nhits", help=f"one of {', '.join(_names.MODELS)}")
    parser.add_argument("--input-size", type=int, help="past steps seen (default the teacher's)")
    parser.add_argument("--config", type=json_object, help="other model fields as JSON (@file)")
    # nt.distill's DEFAULT_ALPHA, written out: importing it would import JAX for --help.
    parser.add_argument(
        "--alpha", type=float, default=0.7, help="weight of the teacher's loss (default 0.7)"
    )
    parser.add_argument("--window-stride", type=int, default=1, help="every n-th window only")
    parser.add_argument("--max-steps", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=256, help="windows per step")
    parser.add_argument("--val-size", type=int, default=0, help="steps held out for validation")
    parser.add_argument(
        "--learning-rate", type=float, default=1e-3, help="peak rate (cosine decay to zero)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> dict[str, Any]:
    from ntjax.config import TrainingConfig, config_from_dict
    from ntjax.lifecycle import distill
    from ntjax.lifecycle.distill import STUDENT_OPTIMIZER
    from ntjax.models import CONFIGS

    store = open_store(args)
    teachers = [load(store, name.strip()) for name in args.teacher.split(",") if name.strip()]
    first = teachers[0].config
    fields = {
        **(args.config or {}),
        "kind": args.model,
        "horizon": first.horizon,
        "input_size": args.input_size or first.input_size,
        "quantiles": first.quantiles,
        "hist_exog": first.hist_exog,
        "futr_exog": first.futr_exog,
    }
    config = config_from_dict(fields, CONFIGS)
    training = TrainingConfig(
        max_steps=args.max_steps,
        batch_size=args.batch_size,
        val_size=args.val_size,
        val_check_steps=max(1, min(100, args.max_steps)),
        seed=args.seed,
        progress=not args.no_progress,
    )
    frame = read_data(args, config)
    log(f"distilling {len(teachers)} teacher(s) into {config.kind} for {training.max_steps} steps")
    record = distill(
        teachers if len(teachers) > 1 else teachers[0],
        frame,
        config,
        training=training,
        optimizer=dataclasses.replace(STUDENT_OPTIMIZER, learning_rate=args.learning_rate),
        alpha=args.alpha,
        window_stride=args.window_stride,
    )
    store.save(record)
    return {"model_id": record.id, **record.summary(), "store": str(store.root)}
