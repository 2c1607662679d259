"""Persistence: write-once model artifacts plus an SQLite index of status, metrics and aliases.

``Store`` is the facade; its parts, one concern each:

    files      where things live under the root, and safe reads (no symlinks, size limit)
    codec      a record <-> its two files (safetensors parameters, JSON), digests
    index      the SQLite index: schema and migration, one function per status transition,
               queries
    aliases    alias events: set, roll back, history, resolve
    liveness   whose process owns a training row, and settling the rows of dead runs
    ratelimit  the token bucket for training requests
    cache      JAX's persistent compilation cache in the store
    catalog    ``Catalog``: index, aliases and evaluations without the artifacts
    store      ``Store``: a catalog that also saves, loads and trains models

Everything but ``codec``, ``cache`` and ``store`` works without JAX, and ``Store`` is imported
on first use, so ``ntjax status`` and ``ntjax alias`` (a ``Catalog``) never import JAX.
"""

from typing import Any

from ntjax.store.catalog import Catalog
from ntjax.store.errors import ArtifactError, ModelNotFoundError, RateLimitError, StoreError
from ntjax.store.files import DEFAULT_MAX_ARTIFACT_BYTES
from ntjax.store.ratelimit import RateLimit

__all__ = [
    "DEFAULT_MAX_ARTIFACT_BYTES",
    "ArtifactError",
    "Catalog",
    "ModelNotFoundError",
    "RateLimit",
    "RateLimitError",
    "Store",
    "StoreError",
]


def __getattr__(name: str) -> Any:
    # PEP 562: ``Store`` needs JAX (codec, training); load it when it is first asked for.
    if name == "Store":
        from ntjax.store.store import Store

        globals()["Store"] = Store
        return Store
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
