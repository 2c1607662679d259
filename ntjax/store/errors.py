"""The store's errors: every refusal is a ``StoreError`` (a ``ValueError``), one sentence."""

from __future__ import annotations

_ERROR_CHARS = 2000


class StoreError(ValueError):
    """A request the store refuses (bad id, write-once violation, unknown alias, ...)."""


class ModelNotFoundError(StoreError, LookupError):
    """No model (or alias) of that name in the store."""


class ArtifactError(StoreError):
    """An artifact that cannot be used: corrupt, truncated, or over the size limit."""


class RateLimitError(StoreError):
    """Too many training requests; the message says when to retry."""


def error_text(exc: BaseException) -> str:
    """``Type: message``, cut to a size the index keeps."""
    text = f"{type(exc).__name__}: {exc}".strip()
    return text[:_ERROR_CHARS]


__all__ = ["ArtifactError", "ModelNotFoundError", "RateLimitError", "StoreError", "error_text"]
