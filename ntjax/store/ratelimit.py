"""The training rate limit: a token bucket kept in the index, so every process and CLI call
using a store shares it. Nothing here imports JAX."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from ntjax.store.errors import RateLimitError
from ntjax.store.index import Index


@dataclass(frozen=True, kw_only=True)
class RateLimit:
    """Token bucket for training requests through the store: up to ``burst`` at once, refilled
    at ``per_minute`` tokens a minute. The bucket lives in the index, so every process and CLI
    call using the store shares it."""

    burst: int = 20
    per_minute: float = 20.0

    def __post_init__(self) -> None:
        if isinstance(self.burst, bool) or not isinstance(self.burst, int) or self.burst < 1:
            raise ValueError(f"burst must be a positive integer, got {self.burst!r}.")
        rate = self.per_minute
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not rate > 0:
            raise ValueError(f"per_minute must be a positive number, got {rate!r}.")
        if not math.isfinite(rate):
            raise ValueError(f"per_minute must be finite, got {rate!r}.")


def take_token(store_index: Index, limit: RateLimit | None, *, bucket: str = "train") -> None:
    """Takes one token from ``bucket`` (None: no limit).

    Raises:
      RateLimitError: the bucket is empty; the message says when to retry.
    """
    if limit is None:
        return
    rate = limit.per_minute / 60.0
    now = time.time()
    with store_index.transaction() as db:
        row = db.execute(
            "SELECT tokens, updated FROM rate_buckets WHERE name = ?", (bucket,)
        ).fetchone()
        tokens = float(limit.burst)
        if row is not None:
            tokens = min(float(limit.burst), row[0] + max(0.0, now - row[1]) * rate)
        if tokens < 1.0:
            wait = (1.0 - tokens) / rate
            raise RateLimitError(
                f"training rate limit reached ({limit.burst} requests at once, "
                f"{limit.per_minute:g} per minute); retry in {wait:.1f} s."
            )
        db.execute(
            "INSERT OR REPLACE INTO rate_buckets (name, tokens, updated) VALUES (?, ?, ?)",
            (bucket, tokens - 1.0, now),
        )


__all__ = ["RateLimit", "take_token"]
