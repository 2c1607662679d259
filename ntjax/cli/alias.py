"""``ntjax alias``: set, roll back or show aliases (no JAX)."""

from __future__ import annotations

import argparse
from typing import Any

from ntjax.cli.common import add_store, open_catalog

HELP = "set, roll back or show aliases"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    set_parser = actions.add_parser("set", help="point NAME at a model")
    set_parser.add_argument("name")
    set_parser.add_argument("model_id", help="model id (or another alias)")
    rollback = actions.add_parser("rollback", help="point NAME back at its previous model")
    rollback.add_argument("name")
    show = actions.add_parser("show", help="current aliases, or one alias with its history")
    show.add_argument("name", nargs="?")
    for sub in (set_parser, rollback, show):
        add_store(sub)


def run(args: argparse.Namespace) -> Any:
    catalog = open_catalog(args)
    if args.action == "set":
        return catalog.set_alias(args.name, catalog.resolve(args.model_id))
    if args.action == "rollback":
        return catalog.rollback(args.name)
    if args.name is None:
        return catalog.aliases()
    return {
        "alias": args.name,
        "model_id": catalog.resolve(args.name),
        "history": catalog.alias_history(args.name),
    }
