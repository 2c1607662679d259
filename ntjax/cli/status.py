"""``ntjax status``: metadata of one or all models, from the index alone (no JAX)."""

from __future__ import annotations

import argparse
from typing import Any

from ntjax.cli.common import open_catalog

HELP = "metadata of one or all models"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "model_id",
        nargs="?",
        help="one model id, or an alias (then with its history and retraining decisions); "
        "default: all",
    )
    parser.add_argument("--kind", help="only this model family")
    parser.add_argument("--status", choices=("training", "trained", "failed"))
    parser.add_argument("--metric", help="only models with this metric, best (lowest) first")
    parser.add_argument("--since", help="created at or after (ISO-8601, UTC)")
    parser.add_argument("--limit", type=int)


def run(args: argparse.Namespace) -> Any:
    catalog = open_catalog(args)
    if args.model_id is not None:
        model_id = catalog.resolve(args.model_id)
        found = catalog.status(model_id)
        if model_id == args.model_id:
            return found
        # An alias: its history (with the reasons of promotions) and retraining decisions.
        return {
            **found,
            "alias": args.model_id,
            "alias_history": catalog.alias_history(args.model_id),
            "retrain_decisions": catalog.decisions(args.model_id),
        }
    return catalog.query(
        kind=args.kind, status=args.status, metric=args.metric, since=args.since, limit=args.limit
    )
