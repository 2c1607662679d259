"""What several subcommands share: the store options, the leakage options, argument types,
the log line on stderr, and JSON output."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ntjax.store import Catalog

if TYPE_CHECKING:
    from ntjax.record import ModelRecord
    from ntjax.store import Store

DEFAULT_STORE = "./ntjax-store"


def log(message: str) -> None:
    print(f"ntjax: {message}", file=sys.stderr, flush=True)


def jsonable(value: Any) -> Any:
    """JSON-friendly copy: numpy to Python, NaN/inf to null (strict JSON has no NaN)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if not isinstance(value, str | bytes):
        tolist = getattr(value, "tolist", None)  # numpy arrays and scalars, without numpy
        if callable(tolist):
            return jsonable(tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def floats(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers, got {text!r}"
        ) from None
    if not values:
        raise argparse.ArgumentTypeError("expected at least one number")
    return tuple(int(v) if v.is_integer() and v >= 1 else v for v in values)


def json_object(text: str) -> dict[str, Any]:
    """A JSON object given inline or as ``@file.json``."""
    if text.startswith("@"):
        try:
            text = Path(text[1:]).read_text()
        except OSError as exc:
            raise argparse.ArgumentTypeError(f"cannot read {text[1:]}: {exc.strerror}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON ({exc.msg} at {exc.pos})") from None
    if not isinstance(data, dict):
        raise argparse.ArgumentTypeError("must be a JSON object of model fields")
    return data


def add_store(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--store", help=f"store folder (default: $NTJAX_STORE, else {DEFAULT_STORE})"
    )


def add_leakage(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--allow-in-sample",
        action="store_true",
        help="score rows the model was fitted on anyway (the result says in_sample: true)",
    )
    parser.add_argument(
        "--embargo",
        type=int,
        default=0,
        help="steps after the model's trained end that still count as in sample",
    )


def store_root(args: argparse.Namespace) -> str:
    return args.store or os.environ.get("NTJAX_STORE") or DEFAULT_STORE


def open_catalog(args: argparse.Namespace) -> Catalog:
    """The store's index and aliases, for commands that do not compute (no JAX)."""
    return Catalog(store_root(args))


def open_store(args: argparse.Namespace) -> Store:
    """The store, with JAX's compilation cache in it unless ``NTJAX_COMPILATION_CACHE=0``."""
    from ntjax.store import Store

    store = Store(store_root(args))
    if os.environ.get("NTJAX_COMPILATION_CACHE", "1") != "0":
        store.enable_compilation_cache()
    return store


def load(store: Store, name_or_id: str) -> ModelRecord:
    return store.load(store.resolve(name_or_id))
