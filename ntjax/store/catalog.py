"""``Catalog``: a store root's index, aliases and evaluations, without the artifacts.

It is what ``ntjax status`` and ``ntjax alias`` need, and it imports no JAX; ``Store`` (in
``ntjax.store.store``) is a catalog that also writes, reads and trains models.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from ntjax._ids import check_id
from ntjax.store import aliases, decisions, files, index, liveness, locks
from ntjax.store.errors import ModelNotFoundError


class Catalog:
    """The metadata of a store folder: model status, evaluations and aliases.

    Example::

        catalog = ntjax.store.Catalog("ntjax-store")
        catalog.query(status="trained", metric="mae", limit=5)
        catalog.set_alias("production", model_id)

    Args:
      root: the store folder (created if missing).
      max_artifact_bytes: artifact files larger than this are never read (default 500 MB).
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        max_artifact_bytes: int = files.DEFAULT_MAX_ARTIFACT_BYTES,
    ) -> None:
        if isinstance(max_artifact_bytes, bool) or not isinstance(max_artifact_bytes, int):
            raise ValueError(f"max_artifact_bytes must be an integer, got {max_artifact_bytes!r}.")
        if max_artifact_bytes < 1:
            raise ValueError(f"max_artifact_bytes must be positive, got {max_artifact_bytes}.")
        root = Path(root)
        root.mkdir(parents=True, exist_ok=True)
        self.root = root.resolve(strict=True)
        self.max_artifact_bytes = max_artifact_bytes
        files.inside(self.root, files.MODELS_DIR).mkdir(exist_ok=True)
        self._index = index.Index(self.root)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.root)!r})"

    # -- status ----------------------------------------------------------------------------------

    def reap(self) -> list[str]:
        """Settles the rows of runs whose process died (``trained`` when their artifact was
        committed, else ``failed``); ``status`` and ``query`` call it, so a dead run never reads
        as training or trained by mistake. Returns the settled ids."""
        return self._reap_ids()

    def _reap_ids(self, ids: Sequence[str] | None = None) -> list[str]:
        return liveness.reap(self._index, max_artifact_bytes=self.max_artifact_bytes, ids=ids)

    def query(
        self,
        *,
        kind: str | None = None,
        status: str | None = None,
        since: str | dt.datetime | None = None,
        until: str | dt.datetime | None = None,
        metric: str | None = None,
        at_most: float | None = None,
        at_least: float | None = None,
        descending: bool = False,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        """Index rows, newest first (or ordered by ``metric``).

        Args:
          kind: model family, e.g. ``nhits``.
          status: ``training``, ``trained`` or ``failed``.
          since, until: bounds on ``created_at`` (ISO-8601 or datetime; naive means UTC).
          metric: keep models that have this metric (evaluation first, then training metrics)
            and order by it, ascending unless ``descending``.
          at_most, at_least: bounds on ``metric``.
          limit: at most this many rows.

        Returns:
          One dict per model: id, kind, status, horizon, input_size, n_params, metrics,
          evaluation, created_at, updated_at, parent_id, data_fingerprint, version, error,
          aliases, trained_on.
        """
        self.reap()
        with self._index.reading() as db:
            return index.query(
                db,
                aliases.by_id(db),
                kind=kind,
                status=status,
                since=since,
                until=until,
                metric=metric,
                at_most=at_most,
                at_least=at_least,
                descending=descending,
                limit=limit,
            )

    def status(self, model_id: str | None = None) -> dict[str, Any] | list[dict[str, Any]]:
        """Metadata of one model (a dict) or of all (a list, newest first); see ``query``."""
        if model_id is None:
            return self.query()
        check_id(model_id)
        self._reap_ids([model_id])
        with self._index.reading() as db:
            found = index.row(db, model_id, aliases.by_id(db))
        if found is None:
            raise ModelNotFoundError(f"no model {model_id} in the store {self.root}.")
        return found

    def __contains__(self, model_id: object) -> bool:
        if not isinstance(model_id, str):
            return False
        check_id(model_id)
        with self._index.reading() as db:
            return index.exists(db, model_id)

    def __len__(self) -> int:
        with self._index.reading() as db:
            return index.count(db)

    def _not_found(self, model_id: str) -> ModelNotFoundError:
        """Why a model has nothing to load: not in the index, still training, failed, or listed
        as trained with its artifact gone."""
        with self._index.reading() as db:
            if index.status_of(db, model_id) is None:
                return ModelNotFoundError(f"no model {model_id} in the store {self.root}.")
        self._reap_ids([model_id])
        with self._index.reading() as db:
            state, error = index.status_of(db, model_id)
        if state == "training":
            return ModelNotFoundError(f"model {model_id} is still training; nothing to load yet.")
        if state == "failed":
            return ModelNotFoundError(f"model {model_id} failed and has no artifact: {error}")
        return ModelNotFoundError(
            f"model {model_id} is listed as trained but its artifact is missing from {self.root}."
        )

    # -- evaluations -----------------------------------------------------------------------------

    def record_evaluation(self, model_id: str, metrics: Mapping[str, Any]) -> None:
        """Keeps an evaluation of a model (an ``nt.evaluate`` result) with its period and its
        ``in_sample`` flag. The out-of-sample one becomes the model's ``evaluation`` in the
        index (``status`` shows it; ``query(metric=...)`` filters and sorts by it); an in-sample
        one (or one of unknown provenance) is kept in the history (``evaluations``) only, so
        nothing presents an in-sample score as the model's score. The artifact is not touched.
        """
        check_id(model_id)
        with self._index.transaction() as db:
            if not index.exists(db, model_id):
                raise ModelNotFoundError(f"no model {model_id} in the store {self.root}.")
            index.record_evaluation(db, model_id, metrics)

    def evaluations(self, model_id: str) -> list[dict[str, Any]]:
        """Every evaluation kept for a model, oldest first: ``at``, ``period_start``,
        ``period_end``, ``in_sample`` (True, False, or None for unknown provenance), ``metrics``.
        """
        check_id(model_id)
        with self._index.reading() as db:
            return index.evaluations(db, model_id)

    # -- aliases ---------------------------------------------------------------------------------

    def set_alias(self, name: str, model_id: str, *, reason: str | None = None) -> dict[str, Any]:
        """Points alias ``name`` (e.g. ``production``) at a trained model, keeping the history
        (with ``reason``, when given).

        Returns:
          ``{"alias": name, "model_id": model_id, "previous": <id or None>}``.
        """
        aliases.check_alias(name)
        check_id(model_id)
        self._reap_ids([model_id])
        return aliases.set_alias(self._index, name, model_id, reason)

    def rollback(self, name: str, *, reason: str | None = None) -> dict[str, Any]:
        """Points ``name`` back at the model it named before the current one.

        Returns:
          ``{"alias": name, "model_id": <restored id>, "previous": <the id rolled back from>}``.
        """
        return aliases.rollback(self._index, name, reason)

    @contextlib.contextmanager
    def alias_lock(self, name: str) -> Iterator[None]:
        """Holds alias ``name``'s lock (``ntjax.store.locks``) for a ``with`` block; a second
        holder is refused with a ``LockedError`` naming the first."""
        with locks.alias_lock(self.root, aliases.check_alias(name)):
            yield

    def record_decision(self, decision: Mapping[str, Any]) -> None:
        """Keeps a retraining decision; a promoted one moves its alias in the same
        transaction (``ntjax.store.decisions``)."""
        if decision.get("challenger_id"):
            self._reap_ids([decision["challenger_id"]])
        with self._index.transaction() as db:
            decisions.record(db, decision)

    def decisions(self, name: str) -> list[dict[str, Any]]:
        """Every retraining decision about alias ``name``, oldest first."""
        with self._index.reading() as db:
            return decisions.history(db, name)

    def aliases(self) -> dict[str, str]:
        """Every alias and the id it names now."""
        with self._index.reading() as db:
            return aliases.current(db)

    def alias_history(self, name: str) -> list[dict[str, Any]]:
        """Every change of alias ``name``, oldest first: ``{"action", "model_id", "at"}``."""
        with self._index.reading() as db:
            return aliases.history(db, name)

    def resolve(self, name_or_id: str) -> str:
        """The model id an alias names now; a canonical id is returned unchanged."""
        with self._index.reading() as db:
            return aliases.resolve(db, name_or_id)


__all__ = ["Catalog"]
