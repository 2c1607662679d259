"""The immutable registry of model records: ``Registry`` maps id -> record and ``add`` returns
a new registry; ``model_status`` reads a registry or a store."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Protocol

from ntjax.record import STATUSES, ModelRecord, check_id, new_id, utc_now

__all__ = [
    "STATUSES",
    "ModelRecord",
    "Registry",
    "StatusSource",
    "check_id",
    "model_status",
    "new_id",
    "utc_now",
]


class Registry(Mapping[str, ModelRecord]):
    """Immutable mapping id -> record. ``add`` returns a new registry; ids are never reused."""

    __slots__ = ("_records",)

    def __init__(self, records: Mapping[str, ModelRecord] | None = None) -> None:
        self._records: dict[str, ModelRecord] = dict(records or {})

    def __getitem__(self, model_id: str) -> ModelRecord:
        check_id(model_id)
        if model_id not in self._records:
            raise KeyError(f"no model with id {model_id} in the registry.")
        return self._records[model_id]

    def __iter__(self) -> Iterator[str]:
        return iter(self._records)

    def __len__(self) -> int:
        return len(self._records)

    def add(self, record: ModelRecord) -> Registry:
        if record.id in self._records:
            raise ValueError(
                f"model {record.id} is already in the registry; records are immutable."
            )
        return Registry({**self._records, record.id: record})

    def lineage(self, model_id: str) -> list[ModelRecord]:
        """The record and its ancestors (``parent_id`` chain), newest first."""
        chain = [self[model_id]]
        while chain[-1].parent_id is not None and chain[-1].parent_id in self._records:
            chain.append(self._records[chain[-1].parent_id])
        return chain

    def __repr__(self) -> str:
        return f"Registry({len(self)} records)"


class StatusSource(Protocol):
    """Anything that reports model metadata the way ``ntjax.store.Store`` does."""

    def status(self, model_id: str | None = None) -> dict[str, Any] | list[dict[str, Any]]: ...


def model_status(
    source: Registry | StatusSource, model_id: str | None = None
) -> dict[str, Any] | list[dict[str, Any]]:
    """Metadata of one model, or of every model, in a registry or a store.

    Args:
      source: a ``Registry`` or a ``Store``.
      model_id: canonical UUID4 of one model (None: all models).

    Returns:
      For one model a dict: ``id, kind, status, metrics, n_params, created_at, updated_at``
      plus ``horizon, input_size, quantiles`` (registry), ``parent_id, data_fingerprint,
      version, error`` (a store adds ``evaluation`` and ``aliases``); for all models a list of
      such dicts, newest first.
    """
    if isinstance(source, Registry):
        if model_id is not None:
            return source[model_id].summary()
        records = sorted(source.values(), key=lambda r: (r.created_at, r.id), reverse=True)
        return [record.summary() for record in records]
    if model_id is not None:
        check_id(model_id)
    return source.status(model_id)
