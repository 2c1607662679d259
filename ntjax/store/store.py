"""``Store``: write-once model artifacts and their index under one root folder.

A ``Catalog`` (index, aliases, evaluations) that also saves, loads and trains models. An
artifact is written once, each file atomically (temporary file, fsync, rename), the record
JSON last: its presence commits the artifact. The index row of a run moves ``training`` ->
``trained`` | ``failed``; a ``training`` row whose process died reads as ``failed`` (or
``trained`` when its artifact had been committed), so a run killed at any moment never shows a
half-written model as trained.

Safety: ids only in canonical UUID4 form, every path resolved inside the root, artifacts over
the size limit refused before they are read, configs rebuilt only from the closed model table,
nothing unpickled or evaluated, training requests rate-limited by a token bucket shared by every
process using the store.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ntjax import _io
from ntjax._ids import check_id, new_id, utc_now
from ntjax._version import __version__
from ntjax.config import ModelConfig, OptimizerConfig, TrainingConfig
from ntjax.models import spec_for
from ntjax.record import ModelRecord
from ntjax.store import cache, codec, files, index, liveness
from ntjax.store.catalog import Catalog
from ntjax.store.errors import ArtifactError, StoreError, error_text
from ntjax.store.ratelimit import RateLimit, take_token
from ntjax.train import Progress, fit


class Store(Catalog):
    """Write-once model artifacts and their index under one root folder.

    Example::

        store = nt.Store("ntjax-store")
        record = store.train(df, nt.NHITSConfig(horizon=24, input_size=96))
        store.set_alias("production", record.id)
        same = store.load(store.resolve("production"))

    Args:
      root: the store folder (created if missing).
      max_artifact_bytes: artifacts larger than this are neither written nor read (default
        500 MB).
      rate_limit: token bucket for ``train`` requests (None: unlimited).
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        max_artifact_bytes: int = files.DEFAULT_MAX_ARTIFACT_BYTES,
        rate_limit: RateLimit | None = RateLimit(),  # noqa: B008 (a frozen, immutable default)
    ) -> None:
        super().__init__(root, max_artifact_bytes=max_artifact_bytes)
        self.rate_limit = rate_limit

    # -- writing -------------------------------------------------------------------------------

    def _model_dir(self, model_id: str) -> Path:
        return files.model_dir(self.root, model_id)

    def _artifact_bytes(self, record: ModelRecord) -> tuple[bytes, bytes]:
        """The parameter file and record JSON of ``record``, refused over the size limit."""
        return codec.encode(record, max_bytes=self.max_artifact_bytes)

    def _begin(
        self, model_id: str, config: ModelConfig, *, created_at: str, parent_id: str | None
    ) -> None:
        """Registers a run as ``training``, owned by this process."""
        with self._index.transaction() as db:
            index.begin(
                db,
                model_id=model_id,
                kind=config.kind,
                horizon=config.horizon,
                input_size=config.input_size,
                created_at=created_at,
                parent_id=parent_id,
                version=__version__,
                owner=liveness.this_process(),
            )

    def _write_artifact(self, record: ModelRecord, blobs: tuple[bytes, bytes]) -> None:
        """Writes the parameters, then the record JSON (the commit point), each atomically."""
        params_bytes, meta_bytes = blobs
        folder = self._model_dir(record.id)
        try:
            folder.mkdir()
        except FileExistsError:
            raise StoreError(
                f"model {record.id} already has an artifact; records are write-once."
            ) from None
        _io.atomic_write(folder / files.PARAMS_FILE, params_bytes)
        _io.atomic_write(folder / files.RECORD_FILE, meta_bytes)

    def _run(
        self,
        model_id: str,
        make: Callable[[], ModelRecord],
        blobs: tuple[bytes, bytes] | None = None,
    ) -> ModelRecord:
        """Runs ``make`` for a registered ``training`` row, commits its artifact and marks the
        row ``trained`` from the committed record JSON; on any error (interrupts included) the
        row becomes ``failed`` with the error, which is re-raised."""
        try:
            record = make()
            blobs = blobs if blobs is not None else self._artifact_bytes(record)
            self._write_artifact(record, blobs)
            with self._index.transaction() as db:
                index.set_trained(db, record.id, json.loads(blobs[1]))
        except BaseException as exc:
            # Keep the original error: a failure to record it must not replace it.
            with (
                contextlib.suppress(sqlite3.Error, OSError, StoreError),
                self._index.transaction() as db,
            ):
                index.set_failed(db, model_id, error_text(exc))
            raise
        return record

    def save(self, record: ModelRecord) -> ModelRecord:
        """Stores a trained record (e.g. from ``nt.train``) under its id. Write-once: an id
        already in the store is refused."""
        if record.status != "trained":
            raise StoreError(f"only trained records are saved; {record.id} is {record.status!r}.")
        blobs = self._artifact_bytes(record)
        self._begin(
            record.id, record.config, created_at=record.created_at, parent_id=record.parent_id
        )
        return self._run(record.id, lambda: record, blobs)

    def train(
        self,
        df: Any,
        config: ModelConfig,
        training: TrainingConfig | None = None,
        optimizer: OptimizerConfig | None = None,
        *,
        init_from: ModelRecord | None = None,
        callbacks: Sequence[Callable[[Progress], None]] = (),
    ) -> ModelRecord:
        """Trains a model into the store (rate-limited): registers a ``training`` row, runs
        ``ntjax.train.fit``, writes the artifact and marks the row ``trained`` -- or
        ``failed`` with the error, which is re-raised.

        Args:
          df: long frame ``unique_id, ds, y`` (see ``ntjax.train.fit``).
          config, training, optimizer, init_from, callbacks: as for ``ntjax.train.fit``.

        Returns:
          The trained record, whose id is the one registered when training began.

        Raises:
          RateLimitError: when the store's training rate limit is exhausted.
        """
        if not isinstance(config, ModelConfig):
            raise StoreError(f"config must be a model config, got {type(config).__name__}.")
        spec_for(config)  # only kinds from the closed table
        take_token(self._index, self.rate_limit)
        model_id = new_id()
        created_at = utc_now()
        parent_id = init_from.id if init_from is not None else None
        self._begin(model_id, config, created_at=created_at, parent_id=parent_id)

        def make() -> ModelRecord:
            record = fit(df, config, training, optimizer, init_from=init_from, callbacks=callbacks)
            return record.replace(id=model_id, created_at=created_at)

        return self._run(model_id, make)

    # -- reading -------------------------------------------------------------------------------

    def load(self, model_id: str, *, verify: bool = False) -> ModelRecord:
        """Loads a trained record; it forecasts bit-identically to the one saved.

        Args:
          model_id: canonical UUID4 (use ``resolve`` for an alias).
          verify: also check the full sha256 of the parameter file (the fast block digest is
            always checked).

        Raises:
          ModelNotFoundError: no committed artifact (the message gives the index status:
            still training, or failed with its error).
          ArtifactError: the artifact is over the size limit (refused before reading), or is
            corrupt or truncated; the message names the id.
        """
        folder = self._model_dir(model_id)
        try:
            meta_bytes, params_bytes = files.read_artifact(
                self.root, model_id, max_bytes=self.max_artifact_bytes
            )
        except FileNotFoundError:
            raise self._not_found(model_id) from None
        try:
            return codec.decode(model_id, meta_bytes, params_bytes, verify=verify)
        except codec.CORRUPT as exc:
            if isinstance(exc, StoreError):
                raise
            raise ArtifactError(
                f"model {model_id}: the artifact in {folder} is corrupt or unreadable "
                f"({error_text(exc)})."
            ) from exc

    def verify(self, model_id: str) -> ModelRecord:
        """``load`` with the full sha256 check of the parameters."""
        return self.load(model_id, verify=True)

    # -- crash recovery ------------------------------------------------------------------------

    def reindex(self) -> list[str]:
        """Rebuilds index rows from committed artifacts (e.g. after the index was lost or a
        process died between committing an artifact and updating its row). Returns the ids
        added or set to ``trained``."""
        repaired = []
        for entry in sorted(files.inside(self.root, files.MODELS_DIR).iterdir()):
            try:
                model_id = check_id(entry.name)
            except ValueError:
                continue
            meta = files.committed_meta(self.root, model_id, max_bytes=self.max_artifact_bytes)
            if meta is None:
                continue
            try:
                codec.check_meta(meta, model_id)
                config = codec.config_of(meta)
            except ValueError:
                continue  # unreadable record: load() reports it with its id
            with self._index.transaction() as db:
                state = index.status_of(db, model_id)
                if state is not None and state[0] == "trained":
                    continue
                index.delete(db, model_id)  # a stale training/failed row
                index.begin(
                    db,
                    model_id=model_id,
                    kind=config.kind,
                    horizon=config.horizon,
                    input_size=config.input_size,
                    created_at=meta["created_at"],
                    parent_id=meta.get("parent_id"),
                    version=__version__,
                    owner=(None, None, None),
                )
                index.set_trained(db, model_id, meta)
            repaired.append(model_id)
        return repaired

    # -- compilation cache ---------------------------------------------------------------------

    def enable_compilation_cache(self) -> Path | None:
        """Turns on JAX's persistent compilation cache in ``<root>/jax-cache``, so a new process
        forecasting with a model compiled before skips XLA compilation.

        JAX runs what it finds in that folder, so the cache is used only when the folder
        belongs to this user and nobody else can write to it (it is created with mode 0700);
        otherwise this returns None and leaves JAX alone. Call it before anything compiles.

        Returns:
          The cache folder, or None when it was not safe to use.
        """
        return cache.enable_compilation_cache(self.root)


__all__ = ["Store"]
