"""The JSON text the store writes (record files and the index's JSON columns).

Without importing numpy or JAX: their arrays and scalars are recognised by ``tolist``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ntjax.store.errors import StoreError


def plain(value: Any) -> Any:
    """JSON-friendly copy: arrays and numpy scalars to Python, tuples to lists."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    tolist = getattr(value, "tolist", None)  # numpy and JAX arrays, numpy scalars
    if callable(tolist):
        return plain(tolist())
    raise StoreError(f"cannot store a value of type {type(value).__name__} in a record.")


def dumps(data: Any) -> str:
    return json.dumps(plain(data), sort_keys=True, allow_nan=True)


__all__ = ["dumps", "plain"]
