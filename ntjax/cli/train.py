"""``ntjax train``: trains a model into the store."""

from __future__ import annotations

import argparse
import os
import sys
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
    parser.add_argument(
        "--val-size",
        type=int,
        help="steps held out for validation (default: five horizons where the data allow; 0: none)",
    )
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
    parser.add_argument("--checkpoint-dir", help="folder of resumable checkpoints")
    parser.add_argument("--checkpoint-every", type=int, default=0, help="steps between checkpoints")
    group = parser.add_argument_group("multi-process training (see docs/scaling.md)")
    group.add_argument("--coordinator", help="HOST:PORT of process 0 (it listens there only)")
    group.add_argument("--num-processes", type=int, help="processes of the job")
    group.add_argument("--process-id", type=int, help="this process's rank, 0..N-1")
    group.add_argument(
        "--shard-series",
        action="store_true",
        help="each process trains on its own series: the series of --data that are its share "
        "(nt.distributed.local_series), or, when --data contains {process_id}, all of that "
        "process's own file; in one process the series are split over its devices",
    )
    group.add_argument(
        "--heartbeat-timeout", type=int, default=10, help="seconds before a silent peer is lost"
    )
    group.add_argument(
        "--init-timeout", type=int, default=60, help="seconds to wait for every process to join"
    )


def _distributed(args: argparse.Namespace) -> bool:
    return any(v is not None for v in (args.coordinator, args.num_processes, args.process_id))


def run(args: argparse.Namespace) -> dict[str, Any] | None:
    if not _distributed(args):
        return _train(args)
    from ntjax.train import distributed

    label = f"process {args.process_id} of {args.num_processes}"
    if not os.environ.get(distributed.SUPERVISED_VARIABLE):
        # JAX's runtime aborts a process whose peer is lost (from a C++ thread, with a stack
        # trace): the job runs in a child, and this process sums such an end up in a sentence.
        command = [sys.executable, "-m", "ntjax.cli", *args.argv]
        code, sentence = distributed.supervise(command, label=label)
        if sentence is not None:
            raise distributed.DistributedError(sentence)
        if code != 0:
            raise SystemExit(code)  # the child printed its own one-line error
        return None  # the child printed the JSON
    try:
        distributed.initialize(
            args.coordinator,
            args.num_processes,
            args.process_id,
            initialization_timeout=args.init_timeout,
            heartbeat_timeout=args.heartbeat_timeout,
        )
        import jax

        rank = jax.process_index()
        result = _train(args, write=rank == 0, rank=rank)
        result["model_id"] = distributed.share_id(result["model_id"])
        result["process_id"], result["num_processes"] = jax.process_index(), jax.process_count()
        return result
    except Exception as exc:
        # One line, then out at once: at a normal exit JAX would wait for the lost peer at its
        # shutdown barrier and abort.
        message = " ".join(str(exc).split()) or type(exc).__name__
        print(f"ntjax: error: {message}", file=sys.stderr, flush=True)
        sys.stdout.flush()
        os._exit(1)


def _with_data(args: argparse.Namespace, path: str) -> argparse.Namespace:
    return argparse.Namespace(**{**vars(args), "data": path})


def _train(args: argparse.Namespace, *, write: bool = True, rank: int = 0) -> dict[str, Any]:
    """Trains; ``write=False`` (processes other than 0 of a job) trains without the store;
    ``rank`` is this process's index in the job."""
    import ntjax as nt
    from ntjax.config import OptimizerConfig, TrainingConfig, config_from_dict
    from ntjax.models import CONFIGS
    from ntjax.train.checkpoint import Checkpointer

    fields = {**(args.config or {}), "kind": args.model, "horizon": args.horizon}
    fields["input_size"] = args.input_size if args.input_size else 5 * args.horizon
    if args.quantiles is not None:
        fields["quantiles"] = args.quantiles
    config = config_from_dict(fields, CONFIGS)
    training = TrainingConfig(
        max_steps=args.max_steps,
        batch_size=args.batch_size,
        val_size=args.val_size,
        val_check_steps=max(1, min(50, args.max_steps)),
        seed=args.seed,
        scaler=args.scaler,
        progress=not args.no_progress,
        calibration=None if args.calibration == "none" else args.calibration,
        calibration_size=args.calibration_size,
        checkpoint_dir=args.checkpoint_dir,
        checkpoint_every=args.checkpoint_every,
        shard_series=args.shard_series,
    )
    optimizer = OptimizerConfig(learning_rate=args.learning_rate)
    store = open_store(args) if write or args.init_from else None
    init_from = load(store, args.init_from) if args.init_from else None
    if args.shard_series and "{process_id}" in args.data:  # one file per process
        frame = read_data(_with_data(args, args.data.replace("{process_id}", str(rank))), config)
    elif args.shard_series:
        frame = nt.distributed.local_series(read_data(args, config))
    else:
        frame = read_data(args, config)
    log(
        f"training {config.kind} (horizon {config.horizon}, input {config.input_size}) "
        f"for {training.max_steps} steps" + (f" into {store.root}" if write else "")
    )
    if args.checkpoint_dir:
        step = Checkpointer(args.checkpoint_dir, "").saved_step()
        if step is not None:
            log(f"resuming from the checkpoint at step {step} in {args.checkpoint_dir}")
    if not write:
        record = nt.train(frame, config, training, optimizer, init_from=init_from)
        return {"model_id": record.id, **record.summary(), "store": None}
    record = store.train(frame, config, training, optimizer, init_from=init_from)
    return {"model_id": record.id, **record.summary(), "store": str(store.root)}
