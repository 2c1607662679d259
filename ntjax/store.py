"""Persistence: write-once model artifacts plus an SQLite index of status, metrics and aliases.

Layout of a store root::

    index.sqlite                 status, metrics, aliases (WAL mode, safe for several processes)
    models/<id>/params.safetensors   the parameters
    models/<id>/record.json          everything else; written last, so its presence commits the
                                     artifact
    jax-cache/                   optional persistent compilation cache (private to the owner)

An artifact is written once, each file atomically (temporary file, fsync, rename). The index
row of a run moves ``training`` -> ``trained`` | ``failed``; a ``training`` row whose process
died reads as ``failed`` (or ``trained`` when its artifact had been committed), so a run killed
at any moment never shows a half-written model as trained.

Safety: ids only in canonical UUID4 form, every path resolved inside the root, artifacts over
the size limit refused before they are read, configs rebuilt only from the closed model table,
nothing unpickled or evaluated, training requests rate-limited by a token bucket shared by every
process using the store.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import errno
import functools
import hashlib
import json
import math
import os
import re
import socket
import sqlite3
import stat
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import numpy as np

from ntjax import _io, provenance
from ntjax._version import __version__
from ntjax.config import (
    ModelConfig,
    OptimizerConfig,
    TrainingConfig,
    config_from_dict,
    dataclass_from_dict,
)
from ntjax.data.scalers import ScalerState
from ntjax.models import CONFIGS, spec_for
from ntjax.registry import STATUSES, ModelRecord, check_id, new_id, utc_now
from ntjax.train import Progress, fit

FORMAT = "ntjax.record/1"
DEFAULT_MAX_ARTIFACT_BYTES = 500_000_000
PARAMS_FILE = "params.safetensors"
RECORD_FILE = "record.json"
INDEX_FILE = "index.sqlite"
MODELS_DIR = "models"
CACHE_DIR = "jax-cache"

_ALIAS = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,63}")
_METRIC = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_ERROR_CHARS = 2000


class StoreError(ValueError):
    """A request the store refuses (bad id, write-once violation, unknown alias, ...)."""


class ModelNotFoundError(StoreError, LookupError):
    """No model (or alias) of that name in the store."""


class ArtifactError(StoreError):
    """An artifact that cannot be used: corrupt, truncated, or over the size limit."""


class RateLimitError(StoreError):
    """Too many training requests; the message says when to retry."""


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


_SCHEMA = """
CREATE TABLE IF NOT EXISTS models (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('training', 'trained', 'failed')),
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    horizon INTEGER NOT NULL,
    input_size INTEGER NOT NULL,
    n_params INTEGER,
    parent_id TEXT,
    data_fingerprint TEXT,
    version TEXT NOT NULL,
    metrics TEXT NOT NULL DEFAULT '{}',
    evaluation TEXT NOT NULL DEFAULT '{}',
    error TEXT,
    owner_host TEXT,
    owner_pid INTEGER,
    owner_token TEXT,
    trained_on TEXT
);
CREATE TABLE IF NOT EXISTS evaluations (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    model_id TEXT NOT NULL,
    at TEXT NOT NULL,
    period_start TEXT,
    period_end TEXT,
    in_sample INTEGER,
    metrics TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS evaluations_model ON evaluations (model_id, seq);
CREATE INDEX IF NOT EXISTS models_kind ON models (kind);
CREATE INDEX IF NOT EXISTS models_status ON models (status);
CREATE INDEX IF NOT EXISTS models_created ON models (created_at);
CREATE TABLE IF NOT EXISTS alias_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    model_id TEXT NOT NULL,
    action TEXT NOT NULL CHECK (action IN ('set', 'rollback')),
    at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS alias_events_name ON alias_events (name, seq);
CREATE TABLE IF NOT EXISTS rate_buckets (
    name TEXT PRIMARY KEY,
    tokens REAL NOT NULL,
    updated REAL NOT NULL
);
"""

# Columns added after the first release, with their SQL type: older indexes gain them.
_ADDED_COLUMNS = {"trained_on": "TEXT"}
_STATUS_KEYS = (
    "id", "kind", "status", "horizon", "input_size", "n_params", "metrics", "evaluation",
    "aliases", "created_at", "updated_at", "parent_id", "data_fingerprint", "version", "error",
    "trained_on",
)  # fmt: skip
_COLUMNS = (
    "id, kind, status, created_at, updated_at, horizon, input_size, n_params, parent_id, "
    "data_fingerprint, version, metrics, evaluation, error, trained_on"
)
# The "trained" transition, with its values: n_params, metrics, data_fingerprint, version,
# trained_on (``_trained_values``).
_SET_TRAINED = (
    "status = 'trained', updated_at = ?, n_params = ?, metrics = ?, data_fingerprint = ?, "
    "version = ?, trained_on = ?, error = NULL, owner_host = NULL, owner_pid = NULL, "
    "owner_token = NULL"
)


# -- processes: is the owner of a ``training`` row still running? ------------------------------


@functools.cache
def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _process_token(pid: int) -> str | None:
    """Identity of a live process (boot id and start time, so a reused pid does not match), or
    None when it is gone or a zombie. Without ``/proc`` it is the pid itself."""
    if not Path("/proc").is_dir():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return str(pid)
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may hold spaces and parentheses: fields start after the last ")".
    fields = stat_line[stat_line.rindex(")") + 2 :].split()
    if fields[0] in ("Z", "X"):
        return None
    return f"{_boot_id()}:{fields[19]}"


def _owner_alive(host: str | None, pid: int | None, token: str | None) -> bool:
    if pid is None:
        return False
    if host != socket.gethostname():
        return True  # another machine's run: nothing here can tell, so trust the row
    return _process_token(pid) == token


# -- JSON ------------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """JSON-friendly copy: numpy scalars and arrays to Python, tuples to lists."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray | jax.Array):
        return np.asarray(value).tolist()
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise StoreError(f"cannot store a value of type {type(value).__name__} in a record.")


def _dumps(data: Any) -> str:
    return json.dumps(_plain(data), sort_keys=True, allow_nan=True)


def _params_digest(data: bytes) -> str:
    """Fast integrity digest: sha256 of the sums (mod 2**64) of every 512-byte block read as
    little-endian uint64, plus the tail bytes. Any bit flip, truncation or block reordering
    changes it; it costs ~0.1 ms/MB against ~0.8 ms/MB for sha256 of the whole file, which
    keeps loading within budget. (Not an authentication code: the full sha256 is in the record
    too, checked by ``Store.verify``.)"""
    words = np.frombuffer(data, np.uint8, count=len(data) // 512 * 512).view("<u8")
    sums = words.reshape(-1, 64).sum(axis=1, dtype=np.uint64)
    digest = hashlib.sha256(sums.astype("<u8").tobytes())
    digest.update(data[len(data) // 512 * 512 :])
    digest.update(len(data).to_bytes(8, "little"))
    return digest.hexdigest()


def _record_json(record: ModelRecord, params_bytes: bytes) -> bytes:
    meta = {
        "format": FORMAT,
        "id": record.id,
        "kind": record.kind,
        "status": record.status,
        "config": record.config.to_dict(),
        "training": dataclasses.asdict(record.training) if record.training else None,
        "optimizer": dataclasses.asdict(record.optimizer) if record.optimizer else None,
        "scaler": record.scaler.to_dict() if record.scaler is not None else None,
        "metrics": dict(record.metrics),
        "history": dict(record.history),
        "created_at": record.created_at,
        "updated_at": record.updated_at,
        "parent_id": record.parent_id,
        "data_fingerprint": record.data_fingerprint,
        "version": record.version,
        "error": record.error,
        "extra": dict(record.extra),
        "trained_on": provenance.to_json(record.trained_on),
        "params": {
            "file": PARAMS_FILE,
            "bytes": len(params_bytes),
            "n_params": record.n_params,
            "digest": _params_digest(params_bytes),
            "sha256": hashlib.sha256(params_bytes).hexdigest(),
        },
    }
    return _dumps(meta).encode()


def _scaler_from_dict(data: Mapping[str, Any]) -> ScalerState:
    scaler = ScalerState.from_dict(dict(data))
    shape = (len(scaler.ids), len(scaler.columns))
    if scaler.loc.shape != shape or scaler.scale.shape != shape:
        raise ValueError(f"scaler statistics have shape {scaler.loc.shape}, expected {shape}.")
    if not (np.isfinite(scaler.loc).all() and np.isfinite(scaler.scale).all()):
        raise ValueError("scaler statistics are not finite.")
    return scaler


@functools.lru_cache(maxsize=64)
def _param_shapes(config: ModelConfig) -> Any:
    """The parameter structure a config's model has (shapes and dtypes, nothing allocated):
    the only structure a parameter file may restore into."""
    spec = spec_for(config)
    # The key only fixes shapes here; no randomness is drawn.
    return jax.eval_shape(lambda key: spec.init(config, key), jax.random.key(0))


def _record_from_json(meta: Mapping[str, Any], params: Any) -> ModelRecord:
    config = config_from_dict(meta["config"], CONFIGS)
    training = meta.get("training")
    optimizer = meta.get("optimizer")
    return ModelRecord(
        id=meta["id"],
        kind=meta["kind"],
        config=config,
        params=params,
        scaler=_scaler_from_dict(meta["scaler"]) if meta.get("scaler") is not None else None,
        status=meta["status"],
        metrics=dict(meta.get("metrics") or {}),
        history=dict(meta.get("history") or {}),
        training=dataclass_from_dict(TrainingConfig, training) if training else None,
        optimizer=dataclass_from_dict(OptimizerConfig, optimizer) if optimizer else None,
        created_at=meta["created_at"],
        updated_at=meta["updated_at"],
        parent_id=meta.get("parent_id"),
        data_fingerprint=meta.get("data_fingerprint"),
        version=meta.get("version") or "",
        error=meta.get("error"),
        extra=dict(meta.get("extra") or {}),
        trained_on=provenance.from_json(meta.get("trained_on")),
    )


def _trained_values(meta: Mapping[str, Any]) -> tuple:
    """The values of ``_SET_TRAINED`` from a record's JSON (``_record_json``)."""
    return (
        utc_now(),
        (meta.get("params") or {}).get("n_params"),
        _dumps(meta.get("metrics") or {}),
        meta.get("data_fingerprint"),
        meta.get("version") or "",
        _dumps(meta["trained_on"]) if meta.get("trained_on") is not None else None,
    )


_EVALUATION_FIELDS = ("in_sample", "period_start", "period_end")


def _text_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


def _iso_utc(value: str | dt.datetime) -> str:
    """A time bound in the index's format (UTC ISO-8601, microseconds); naive means UTC."""
    when = dt.datetime.fromisoformat(value) if isinstance(value, str) else value
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.astimezone(dt.UTC).isoformat(timespec="microseconds")


def _error_text(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".strip()
    return text[:_ERROR_CHARS]


# -- the store -------------------------------------------------------------------------------


class Store:
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
        max_artifact_bytes: int = DEFAULT_MAX_ARTIFACT_BYTES,
        rate_limit: RateLimit | None = RateLimit(),  # noqa: B008 (a frozen, immutable default)
    ) -> None:
        if isinstance(max_artifact_bytes, bool) or not isinstance(max_artifact_bytes, int):
            raise ValueError(f"max_artifact_bytes must be an integer, got {max_artifact_bytes!r}.")
        if max_artifact_bytes < 1:
            raise ValueError(f"max_artifact_bytes must be positive, got {max_artifact_bytes}.")
        root = Path(root)
        root.mkdir(parents=True, exist_ok=True)
        self.root = root.resolve(strict=True)
        self.max_artifact_bytes = max_artifact_bytes
        self.rate_limit = rate_limit
        self._inside(MODELS_DIR).mkdir(exist_ok=True)
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._conn_pid = -1

    def __repr__(self) -> str:
        return f"Store({str(self.root)!r})"

    # -- paths ---------------------------------------------------------------------------------

    def _inside(self, relative: str) -> Path:
        """``root / relative`` with every symlink resolved, refused unless it stays inside."""
        path = (self.root / relative).resolve()
        if not path.is_relative_to(self.root):
            raise StoreError(f"{relative!r} resolves to {path}, outside the store {self.root}.")
        return path

    def _model_dir(self, model_id: str) -> Path:
        return self._inside(f"{MODELS_DIR}/{check_id(model_id)}")

    # -- the index -----------------------------------------------------------------------------

    def _db(self) -> sqlite3.Connection:
        # A connection must not cross a fork; a child process opens its own.
        if self._conn is None or self._conn_pid != os.getpid():
            conn = sqlite3.connect(
                self._inside(INDEX_FILE),
                timeout=60.0,
                isolation_level=None,
                check_same_thread=False,
            )
            conn.execute("PRAGMA busy_timeout = 60000")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("BEGIN IMMEDIATE")
            try:
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                present = {row[1] for row in conn.execute("PRAGMA table_info(models)")}
                for name, sql_type in _ADDED_COLUMNS.items():
                    if name not in present:
                        conn.execute(f"ALTER TABLE models ADD COLUMN {name} {sql_type}")
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                conn.close()
                raise
            self._conn, self._conn_pid = conn, os.getpid()
        return self._conn

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction, taking the database's write lock up front."""
        with self._lock:
            conn = self._db()
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def _read(self, sql: str, args: Sequence[Any] = ()) -> list[tuple]:
        with self._lock:
            return self._db().execute(sql, args).fetchall()

    # -- writing -------------------------------------------------------------------------------

    def _take_token(self) -> None:
        limit = self.rate_limit
        if limit is None:
            return
        rate = limit.per_minute / 60.0
        now = time.time()
        with self._transaction() as db:
            row = db.execute(
                "SELECT tokens, updated FROM rate_buckets WHERE name = 'train'"
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
                "INSERT OR REPLACE INTO rate_buckets (name, tokens, updated) "
                "VALUES ('train', ?, ?)",
                (tokens - 1.0, now),
            )

    def _begin(
        self, model_id: str, config: ModelConfig, *, created_at: str, parent_id: str | None
    ) -> None:
        """Registers a run as ``training``, owned by this process."""
        token = _process_token(os.getpid())
        try:
            with self._transaction() as db:
                db.execute(
                    "INSERT INTO models (id, kind, status, created_at, updated_at, horizon, "
                    "input_size, parent_id, version, owner_host, owner_pid, owner_token) "
                    "VALUES (?, ?, 'training', ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        model_id,
                        config.kind,
                        created_at,
                        utc_now(),
                        config.horizon,
                        config.input_size,
                        parent_id,
                        __version__,
                        socket.gethostname(),
                        os.getpid(),
                        token,
                    ),
                )
        except sqlite3.IntegrityError:
            raise StoreError(
                f"model {model_id} is already in the store; records are write-once."
            ) from None

    def _artifact_bytes(self, record: ModelRecord) -> tuple[bytes, bytes]:
        """The parameter file and record JSON of ``record``, refused over the size limit."""
        params_bytes = _io.tree_to_bytes(jax.device_get(record.params))
        meta_bytes = _record_json(record, params_bytes)
        size = len(params_bytes) + len(meta_bytes)
        if size > self.max_artifact_bytes:
            raise ArtifactError(
                f"model {record.id}: the artifact would be {size} bytes, over the store's limit "
                f"of {self.max_artifact_bytes} bytes."
            )
        return params_bytes, meta_bytes

    def _write_artifact(self, record: ModelRecord, blobs: tuple[bytes, bytes] | None) -> None:
        """Writes the parameters, then the record JSON (the commit point), each atomically."""
        params_bytes, meta_bytes = blobs if blobs is not None else self._artifact_bytes(record)
        folder = self._model_dir(record.id)
        try:
            folder.mkdir()
        except FileExistsError:
            raise StoreError(
                f"model {record.id} already has an artifact; records are write-once."
            ) from None
        _io.atomic_write(folder / PARAMS_FILE, params_bytes)
        _io.atomic_write(folder / RECORD_FILE, meta_bytes)

    def _finish(self, record: ModelRecord) -> None:
        meta = {
            "params": {"n_params": record.n_params},
            "metrics": dict(record.metrics),
            "data_fingerprint": record.data_fingerprint,
            "version": record.version or __version__,
            "trained_on": provenance.to_json(record.trained_on),
        }
        with self._transaction() as db:
            db.execute(
                f"UPDATE models SET {_SET_TRAINED} WHERE id = ?",
                (*_trained_values(meta), record.id),
            )

    def _fail(self, model_id: str, error: str) -> None:
        with self._transaction() as db:
            db.execute(
                "UPDATE models SET status = 'failed', updated_at = ?, error = ?, "
                "owner_host = NULL, owner_pid = NULL, owner_token = NULL "
                "WHERE id = ? AND status = 'training'",
                (utc_now(), error, model_id),
            )

    def _run(
        self,
        model_id: str,
        make: Callable[[], ModelRecord],
        blobs: tuple[bytes, bytes] | None = None,
    ) -> ModelRecord:
        """Runs ``make`` for a registered ``training`` row and commits its artifact; on any
        error (interrupts included) the row becomes ``failed`` with the error."""
        try:
            record = make()
            self._write_artifact(record, blobs)
            self._finish(record)
        except BaseException as exc:
            with contextlib.suppress(Exception):  # keep the original error, not a secondary one
                self._fail(model_id, _error_text(exc))
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
        self._take_token()
        model_id = new_id()
        created_at = utc_now()
        parent_id = init_from.id if init_from is not None else None
        self._begin(model_id, config, created_at=created_at, parent_id=parent_id)

        def make() -> ModelRecord:
            record = fit(df, config, training, optimizer, init_from=init_from, callbacks=callbacks)
            return record.replace(id=model_id, created_at=created_at)

        return self._run(model_id, make)

    def record_evaluation(self, model_id: str, metrics: Mapping[str, Any]) -> None:
        """Keeps an evaluation of a model (an ``nt.evaluate`` result) with its period and its
        ``in_sample`` flag. The out-of-sample one becomes the model's ``evaluation`` in the
        index (``status`` shows it; ``query(metric=...)`` filters and sorts by it); an in-sample
        one (or one of unknown provenance) is kept in the history (``evaluations``) only, so
        nothing presents an in-sample score as the model's score. The artifact is not touched.
        """
        check_id(model_id)
        in_sample = metrics.get("in_sample")
        scores = {k: v for k, v in metrics.items() if k not in _EVALUATION_FIELDS}
        now = utc_now()
        with self._transaction() as db:
            if db.execute("SELECT 1 FROM models WHERE id = ?", (model_id,)).fetchone() is None:
                raise ModelNotFoundError(f"no model {model_id} in the store {self.root}.")
            db.execute(
                "INSERT INTO evaluations (model_id, at, period_start, period_end, in_sample, "
                "metrics) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    model_id,
                    now,
                    _text_or_none(metrics.get("period_start")),
                    _text_or_none(metrics.get("period_end")),
                    None if in_sample is None else int(bool(in_sample)),
                    _dumps(scores),
                ),
            )
            if in_sample is False:
                period = {k: metrics[k] for k in ("period_start", "period_end") if k in metrics}
                summary = {**scores, **period}
                db.execute(
                    "UPDATE models SET evaluation = ?, updated_at = ? WHERE id = ?",
                    (_dumps(summary), now, model_id),
                )

    def evaluations(self, model_id: str) -> list[dict[str, Any]]:
        """Every evaluation kept for a model, oldest first: ``at``, ``period_start``,
        ``period_end``, ``in_sample`` (True, False, or None for unknown provenance), ``metrics``.
        """
        check_id(model_id)
        rows = self._read(
            "SELECT at, period_start, period_end, in_sample, metrics FROM evaluations "
            "WHERE model_id = ? ORDER BY seq",
            (model_id,),
        )
        return [
            {
                "at": at,
                "period_start": start,
                "period_end": end,
                "in_sample": None if flag is None else bool(flag),
                "metrics": json.loads(scores),
            }
            for at, start, end, flag, scores in rows
        ]

    # -- reading -------------------------------------------------------------------------------

    @staticmethod
    def _open_file(path: Path, model_id: str) -> tuple[int, int]:
        """Opens a regular file without following a final symlink; returns (fd, size)."""
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except OSError as exc:
            if exc.errno != errno.ELOOP:
                raise
            raise ArtifactError(
                f"model {model_id}: {path.name} is a symbolic link; the store does not follow them."
            ) from None
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            os.close(fd)
            raise ArtifactError(f"model {model_id}: {path.name} is not a regular file.")
        return fd, info.st_size

    @staticmethod
    def _read_fd(fd: int, size: int) -> bytes:
        """Reads exactly ``size`` bytes (the size checked beforehand) and no more."""
        chunks = [os.read(fd, size)]  # a regular file gives it all at once, in one buffer
        got = len(chunks[0])
        while got < size and chunks[-1]:
            chunks.append(os.read(fd, size - got))
            got += len(chunks[-1])
        if got != size or os.read(fd, 1):
            raise ValueError("the file changed size while being read.")
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

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
        fds: list[int] = []
        try:
            try:
                for name in (RECORD_FILE, PARAMS_FILE):
                    fds.append(self._open_file(folder / name, model_id)[0])
            except FileNotFoundError:
                raise self._not_found(model_id) from None
            sizes = [os.fstat(fd).st_size for fd in fds]
            if sum(sizes) > self.max_artifact_bytes:
                raise ArtifactError(
                    f"model {model_id}: the artifact is {sum(sizes)} bytes, over the store's "
                    f"limit of {self.max_artifact_bytes} bytes; refusing to read it."
                )
            try:
                meta_bytes, params_bytes = (
                    self._read_fd(fd, size) for fd, size in zip(fds, sizes, strict=True)
                )
            except (OSError, ValueError) as exc:
                raise ArtifactError(f"model {model_id}: cannot read the artifact ({exc}).") from exc
        finally:
            for fd in fds:
                os.close(fd)
        try:
            return self._decode(model_id, meta_bytes, params_bytes, verify=verify)
        except (ValueError, TypeError, KeyError, AttributeError, RecursionError) as exc:
            if isinstance(exc, StoreError):
                raise
            raise ArtifactError(
                f"model {model_id}: the artifact in {folder} is corrupt or unreadable "
                f"({_error_text(exc)})."
            ) from exc

    def _decode(
        self, model_id: str, meta_bytes: bytes, params_bytes: bytes, *, verify: bool
    ) -> ModelRecord:
        meta = json.loads(meta_bytes)
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise ValueError(f"not an {FORMAT} record")
        if meta.get("id") != model_id:
            raise ValueError(f"the record is for id {meta.get('id')!r}")
        if meta.get("status") != "trained":
            raise ValueError(f"the record has status {meta.get('status')!r}")
        info = meta["params"]
        if info["bytes"] != len(params_bytes):
            raise ValueError(
                f"{PARAMS_FILE} has {len(params_bytes)} bytes, the record says {info['bytes']}"
            )
        if info["digest"] != _params_digest(params_bytes):
            raise ValueError(f"{PARAMS_FILE} does not match its digest")
        if verify and info["sha256"] != hashlib.sha256(params_bytes).hexdigest():
            raise ValueError(f"{PARAMS_FILE} does not match its sha256")
        config = config_from_dict(meta["config"], CONFIGS)
        params = _io.tree_from_bytes(params_bytes, _param_shapes(config))
        return _record_from_json(meta, jax.device_put(params))

    def verify(self, model_id: str) -> ModelRecord:
        """``load`` with the full sha256 check of the parameters."""
        return self.load(model_id, verify=True)

    def _not_found(self, model_id: str) -> ModelNotFoundError:
        sql = "SELECT status, error FROM models WHERE id = ?"
        if not self._read(sql, (model_id,)):
            return ModelNotFoundError(f"no model {model_id} in the store {self.root}.")
        self._reap_ids([model_id])
        state, error = self._read(sql, (model_id,))[0]
        if state == "training":
            return ModelNotFoundError(f"model {model_id} is still training; nothing to load yet.")
        if state == "failed":
            return ModelNotFoundError(f"model {model_id} failed and has no artifact: {error}")
        return ModelNotFoundError(
            f"model {model_id} is listed as trained but its artifact is missing from {self.root}."
        )

    # -- crash recovery ------------------------------------------------------------------------

    def _committed_meta(self, model_id: str) -> dict | None:
        """The record JSON of a committed artifact, or None."""
        try:
            path = self._model_dir(model_id) / RECORD_FILE
            fd, size = self._open_file(path, model_id)
            try:
                if size > self.max_artifact_bytes:
                    return None
                meta = json.loads(self._read_fd(fd, size))
            finally:
                os.close(fd)
        except (OSError, ValueError, RecursionError):
            return None
        return meta if isinstance(meta, dict) and meta.get("id") == model_id else None

    def _discard_partial(self, model_id: str) -> None:
        """Removes what a dead run left of an uncommitted artifact (never a committed one)."""
        folder = self._model_dir(model_id)
        if not folder.is_dir() or (folder / RECORD_FILE).exists():
            return
        for path in folder.iterdir():
            if path.name == PARAMS_FILE or path.name.endswith(".tmp"):
                path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            folder.rmdir()

    def _reap_ids(self, ids: Sequence[str] | None = None) -> list[str]:
        """Settles ``training`` rows whose process is gone: ``trained`` if the artifact was
        committed before the process died, else ``failed``. Returns the settled ids."""
        sql = "SELECT id, owner_host, owner_pid, owner_token FROM models WHERE status = 'training'"
        rows = self._read(sql)
        if ids is not None:
            wanted = set(ids)
            rows = [r for r in rows if r[0] in wanted]
        settled = []
        for model_id, host, pid, token in rows:
            if _owner_alive(host, pid, token):
                continue
            meta = self._committed_meta(model_id)
            with self._transaction() as db:
                guard = (model_id, token)
                if meta is not None:
                    db.execute(
                        f"UPDATE models SET {_SET_TRAINED} "
                        "WHERE id = ? AND status = 'training' AND owner_token IS ?",
                        (*_trained_values(meta), *guard),
                    )
                else:
                    db.execute(
                        "UPDATE models SET status = 'failed', updated_at = ?, error = ?, "
                        "owner_host = NULL, owner_pid = NULL, owner_token = NULL "
                        "WHERE id = ? AND status = 'training' AND owner_token IS ?",
                        (
                            utc_now(),
                            f"the training process (pid {pid} on {host}) stopped before the "
                            "model was saved",
                            *guard,
                        ),
                    )
            if meta is None:
                with contextlib.suppress(OSError, StoreError):
                    self._discard_partial(model_id)
            settled.append(model_id)
        return settled

    def reap(self) -> list[str]:
        """Settles the rows of runs whose process died (see ``_reap_ids``); ``status`` and
        ``query`` call it, so a dead run never reads as training or trained by mistake."""
        return self._reap_ids()

    def reindex(self) -> list[str]:
        """Rebuilds index rows from committed artifacts (e.g. after the index was lost or a
        process died between committing an artifact and updating its row). Returns the ids
        added or set to ``trained``."""
        repaired = []
        for entry in sorted(self._inside(MODELS_DIR).iterdir()):
            try:
                model_id = check_id(entry.name)
            except ValueError:
                continue
            meta = self._committed_meta(model_id)
            if meta is None:
                continue
            try:
                config = config_from_dict(meta["config"], CONFIGS)
                if "n_params" not in meta["params"]:
                    continue  # unreadable record: load() reports it with its id
                row = (
                    model_id,
                    config.kind,
                    meta["created_at"],
                    config.horizon,
                    config.input_size,
                    meta.get("parent_id"),
                    *_trained_values(meta),
                )
            except (KeyError, TypeError, ValueError):
                continue  # unreadable record: load() reports it with its id
            with self._transaction() as db:
                current = db.execute("SELECT status FROM models WHERE id = ?", (model_id,))
                current = current.fetchone()
                if current is not None and current[0] == "trained":
                    continue
                db.execute(
                    "INSERT OR REPLACE INTO models (id, kind, status, created_at, horizon, "
                    "input_size, parent_id, updated_at, n_params, metrics, data_fingerprint, "
                    "version, trained_on) VALUES (?, ?, 'trained', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    row,
                )
            repaired.append(model_id)
        return repaired

    # -- queries -------------------------------------------------------------------------------

    def _row_dict(self, row: tuple, aliases: Mapping[str, list[str]]) -> dict[str, Any]:
        row = dict(zip(_COLUMNS.split(", "), row, strict=True))
        row["metrics"] = json.loads(row["metrics"])
        row["evaluation"] = json.loads(row["evaluation"])
        row["trained_on"] = json.loads(row["trained_on"]) if row["trained_on"] else None
        row["aliases"] = aliases.get(row["id"], [])
        return {key: row[key] for key in _STATUS_KEYS}

    def _aliases_by_id(self) -> dict[str, list[str]]:
        by_id: dict[str, list[str]] = {}
        for name, model_id in self.aliases().items():
            by_id.setdefault(model_id, []).append(name)
        return by_id

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
          aliases.
        """
        self.reap()
        where, args = [], []
        if kind is not None:
            where.append("kind = ?")
            args.append(kind)
        if status is not None:
            if status not in STATUSES:
                raise StoreError(f"status must be one of {STATUSES}, got {status!r}.")
            where.append("status = ?")
            args.append(status)
        if since is not None:
            where.append("created_at >= ?")
            args.append(_iso_utc(since))
        if until is not None:
            where.append("created_at <= ?")
            args.append(_iso_utc(until))
        order = "created_at DESC, id"
        if metric is not None:
            if not isinstance(metric, str) or not _METRIC.fullmatch(metric):
                raise StoreError(f"not a metric name: {metric!r}.")
            path = f'$."{metric}"'
            value = "COALESCE(json_extract(evaluation, ?), json_extract(metrics, ?))"
            where.append(f"{value} IS NOT NULL")
            args += [path, path]
            if at_most is not None:
                where.append(f"{value} <= ?")
                args += [path, path, float(at_most)]
            if at_least is not None:
                where.append(f"{value} >= ?")
                args += [path, path, float(at_least)]
            order = f"{value} {'DESC' if descending else 'ASC'}, created_at DESC"
            order_args = [path, path]
        elif at_most is not None or at_least is not None:
            raise StoreError("at_most/at_least need a metric.")
        else:
            order_args = []
        sql = f"SELECT {_COLUMNS} FROM models"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += f" ORDER BY {order}"
        args += order_args
        if limit is not None:
            sql += " LIMIT ?"
            args.append(int(limit))
        rows = self._read(sql, args)
        aliases = self._aliases_by_id()
        return [self._row_dict(row, aliases) for row in rows]

    def status(self, model_id: str | None = None) -> dict[str, Any] | list[dict[str, Any]]:
        """Metadata of one model (a dict) or of all (a list, newest first); see ``query``."""
        if model_id is None:
            return self.query()
        check_id(model_id)
        self._reap_ids([model_id])
        rows = self._read(f"SELECT {_COLUMNS} FROM models WHERE id = ?", (model_id,))
        if not rows:
            raise ModelNotFoundError(f"no model {model_id} in the store {self.root}.")
        return self._row_dict(rows[0], self._aliases_by_id())

    def __contains__(self, model_id: object) -> bool:
        if not isinstance(model_id, str):
            return False
        return bool(self._read("SELECT 1 FROM models WHERE id = ?", (check_id(model_id),)))

    def __len__(self) -> int:
        return self._read("SELECT COUNT(*) FROM models")[0][0]

    # -- aliases -------------------------------------------------------------------------------

    @staticmethod
    def _check_alias(name: Any) -> str:
        if not isinstance(name, str) or not _ALIAS.fullmatch(name):
            raise StoreError(
                f"alias names are a letter then up to 63 letters, digits, '_', '.', '-'; "
                f"got {name!r}."
            )
        try:
            check_id(name)
        except ValueError:
            return name
        raise StoreError(f"an alias cannot look like a model id: {name!r}.")

    @staticmethod
    def _replay(events: Sequence[tuple[str, str]]) -> list[str]:
        """The alias's stack of targets after its events: ``set`` pushes, ``rollback`` pops."""
        stack: list[str] = []
        for action, model_id in events:
            if action == "set":
                stack.append(model_id)
            elif stack:
                stack.pop()
        return stack

    def _alias_stack(self, db: sqlite3.Connection, name: str) -> list[str]:
        rows = db.execute(
            "SELECT action, model_id FROM alias_events WHERE name = ? ORDER BY seq", (name,)
        ).fetchall()
        return self._replay(rows)

    def set_alias(self, name: str, model_id: str) -> dict[str, Any]:
        """Points alias ``name`` (e.g. ``production``) at a trained model, keeping the history.

        Returns:
          ``{"alias": name, "model_id": model_id, "previous": <id or None>}``.
        """
        self._check_alias(name)
        check_id(model_id)
        self._reap_ids([model_id])
        with self._transaction() as db:
            row = db.execute("SELECT status FROM models WHERE id = ?", (model_id,)).fetchone()
            if row is None:
                raise ModelNotFoundError(f"no model {model_id} in the store {self.root}.")
            if row[0] != "trained":
                raise StoreError(
                    f"model {model_id} is {row[0]!r}; aliases point at trained models."
                )
            stack = self._alias_stack(db, name)
            db.execute(
                "INSERT INTO alias_events (name, model_id, action, at) VALUES (?, ?, 'set', ?)",
                (name, model_id, utc_now()),
            )
        return {"alias": name, "model_id": model_id, "previous": stack[-1] if stack else None}

    def rollback(self, name: str) -> dict[str, Any]:
        """Points ``name`` back at the model it named before the current one.

        Returns:
          ``{"alias": name, "model_id": <restored id>, "previous": <the id rolled back from>}``.
        """
        self._check_alias(name)
        with self._transaction() as db:
            stack = self._alias_stack(db, name)
            if not stack:
                raise ModelNotFoundError(f"no alias {name!r} in the store {self.root}.")
            if len(stack) < 2:
                raise StoreError(
                    f"alias {name!r} has no earlier model to roll back to (it names {stack[-1]})."
                )
            db.execute(
                "INSERT INTO alias_events (name, model_id, action, at) "
                "VALUES (?, ?, 'rollback', ?)",
                (name, stack[-2], utc_now()),
            )
        return {"alias": name, "model_id": stack[-2], "previous": stack[-1]}

    def aliases(self) -> dict[str, str]:
        """Every alias and the id it names now."""
        rows = self._read("SELECT name, action, model_id FROM alias_events ORDER BY seq")
        events: dict[str, list[tuple[str, str]]] = {}
        for name, action, model_id in rows:
            events.setdefault(name, []).append((action, model_id))
        current = {name: self._replay(ev) for name, ev in events.items()}
        return {name: stack[-1] for name, stack in sorted(current.items()) if stack}

    def alias_history(self, name: str) -> list[dict[str, Any]]:
        """Every change of alias ``name``, oldest first: ``{"action", "model_id", "at"}``."""
        self._check_alias(name)
        rows = self._read(
            "SELECT action, model_id, at FROM alias_events WHERE name = ? ORDER BY seq", (name,)
        )
        return [{"action": a, "model_id": m, "at": at} for a, m, at in rows]

    def resolve(self, name_or_id: str) -> str:
        """The model id an alias names now; a canonical id is returned unchanged."""
        current = None
        with contextlib.suppress(ValueError):
            return check_id(name_or_id)
        with contextlib.suppress(StoreError):
            current = self.aliases().get(self._check_alias(name_or_id))
        if current is None:
            raise ModelNotFoundError(
                f"{name_or_id!r} is neither a model id (canonical UUID4) nor an alias in the store."
            )
        return current

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
        folder = self._inside(CACHE_DIR)
        folder.mkdir(mode=0o700, exist_ok=True)
        info = folder.lstat()
        private = not info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or not private:
            return None
        jax.config.update("jax_compilation_cache_dir", str(folder))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
        return folder


__all__ = [
    "ArtifactError",
    "ModelNotFoundError",
    "RateLimit",
    "RateLimitError",
    "Store",
    "StoreError",
]
