"""``ntjax status``: metadata of one or all models, from the index alone (no JAX)."""

from __future__ import annotations

import argparse
from typing import Any

from ntjax.cli.common import open_catalog

HELP = "metadata of one or all models"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model_id", nargs="?", help="one model id or alias (default: all)")
    parser.add_argument("--kind", help="only this model family")
    parser.add_argument("--status", choices=("training", "trained", "failed"))
    parser.add_argument("--metric", help="only models with this metric, best (lowest) first")
    parser.add_argument("--since", help="created at or after (ISO-8601, UTC)")
    parser.add_argument("--limit", type=int)


def run(args: argparse.Namespace) -> Any:
    catalog = open_catalog(args)
    if args.model_id is not None:
        return catalog.status(catalog.resolve(args.model_id))
    return catalog.query(
        kind=args.kind, status=args.status, metric=args.metric, since=args.since, limit=args.limit
    )
