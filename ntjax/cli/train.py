"""``ntjax train``: trains a model into the store."""

from __future__ import annotations

import argparse
from typing import Any

from ntjax.cli import _names
from ntjax.cli.common import floats, json_object, load, log, open_store
from ntjax.cli.readers import add_data, read_data

HELP = "train a model into the store"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_data(parser)
    parser.add_argument("--model", default="nhits", help=f"one of {', '.join(_names.MODELS)}")
    parser.add_argument("--horizon", type=int, required=True, help="steps to forecast")
    parser.add_argument("--input-size", type=int, help="past steps seen (default 5 x horizon)")
    parser.add_argument("--quantiles", type=floats, help="e.g. 0.1,0.5,0.9")
    parser.add_argument("--config", type=json_object, help="other model fields as JSON (@file)")
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


def run(args: argparse.Namespace) -> dict[str, Any]:
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
    store = open_store(args)
    init_from = load(store, args.init_from) if args.init_from else None
    frame = read_data(args, config)
    log(
        f"training {config.kind} (horizon {config.horizon}, input {config.input_size}) "
        f"for {training.max_steps} steps into {store.root}"
    )
    record = store.train(frame, config, training, optimizer, init_from=init_from)
    return {"model_id": record.id, **record.summary(), "store": str(store.root)}
