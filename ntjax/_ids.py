"""Model ids, timestamps and statuses: the vocabulary records and the store's index share.

Nothing here imports JAX, so the parts of the store that only read its index (``ntjax status``,
``ntjax alias``) can use it.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from typing import Any

STATUSES = ("training", "trained", "failed")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")


def new_id() -> str:
    return str(uuid.uuid4())


def check_id(model_id: Any) -> str:
    """Accepts only canonical lowercase UUID4 strings (the only ids ntjax issues)."""
    if not isinstance(model_id, str) or not _UUID.fullmatch(model_id):
        raise ValueError(f"model id must be a canonical lowercase UUID4, got {model_id!r}.")
    return model_id


def utc_now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")


__all__ = ["STATUSES", "check_id", "new_id", "utc_now"]
