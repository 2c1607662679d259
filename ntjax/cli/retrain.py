"""``ntjax retrain``: one run of the retraining pipeline of an alias; prints the decision."""

from __future__ import annotations

import argparse
from typing import Any

from ntjax.cli.common import open_store
from ntjax.cli.readers import add_data, read_data

HELP = "retrain an alias's model on new data and promote a better challenger"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--alias", required=True, help="the alias whose model is the champion")
    add_data(parser)
    parser.add_argument(
        "--policy",
        help="a RetrainPolicy as a JSON file (or an inline JSON object), e.g. "
        '{"trigger": "auto", "method": "finetune", "significance": 0.05}',
    )


def run(args: argparse.Namespace) -> dict[str, Any]:
    import json

    from ntjax.lifecycle import RetrainPolicy, retrain

    if args.policy is None:
        policy = RetrainPolicy()
    elif args.policy.lstrip().startswith("{"):
        try:
            policy = RetrainPolicy.from_dict(json.loads(args.policy))
        except json.JSONDecodeError as error:
            raise ValueError(f"--policy is not valid JSON ({error.msg}).") from None
    else:
        policy = RetrainPolicy.from_json(args.policy)
    store = open_store(args)
    champion = store.load(store.resolve(args.alias))
    frame = read_data(args, champion.config)
    return retrain(store, args.alias, frame, policy=policy).to_dict()
