"""The index: an SQLite file of one row per model (status, metrics, evaluations) and the alias
and rate-limit tables, shared safely by several processes (WAL mode, write transactions that
take the lock up front).

A row moves ``training`` -> ``trained`` | ``failed``, each move one function here: ``begin``,
``set_trained``, ``set_failed``; ``record_evaluation`` keeps an evaluation. Older indexes gain
the columns added since (``_ADDED_COLUMNS``) when opened. Nothing here imports JAX.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import sqlite3
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Final

from ntjax._ids import STATUSES, utc_now
from ntjax.store._json import dumps
from ntjax.store.errors import StoreError
from ntjax.store.files import INDEX_FILE, inside

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
    at TEXT NOT NULL,
    reason TEXT
);
CREATE INDEX IF NOT EXISTS alias_events_name ON alias_events (name, seq);
CREATE TABLE IF NOT EXISTS retrain_decisions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    alias TEXT NOT NULL,
    decided_at TEXT NOT NULL,
    promoted INTEGER NOT NULL,
    champion_id TEXT NOT NULL,
    challenger_id TEXT,
    reason TEXT NOT NULL,
    p_value REAL,
    data_end TEXT,
    data_end_key INTEGER,
    metrics TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS retrain_decisions_alias ON retrain_decisions (alias, seq);
CREATE TABLE IF NOT EXISTS rate_buckets (
    name TEXT PRIMARY KEY,
    tokens REAL NOT NULL,
    updated REAL NOT NULL
);
"""

# Columns added after the first release, (table, column) -> SQL type: older indexes gain them.
_ADDED_COLUMNS = {("models", "trained_on"): "TEXT", ("alias_events", "reason"): "TEXT"}
_STATUS_KEYS = (
    "id", "kind", "status", "horizon", "input_size", "n_params", "metrics", "evaluation",
    "aliases", "created_at", "updated_at", "parent_id", "data_fingerprint", "version", "error",
    "trained_on",
)  # fmt: skip
_COLUMNS = (
    "id, kind, status, created_at, updated_at, horizon, input_size, n_params, parent_id, "
    "data_fingerprint, version, metrics, evaluation, error, trained_on"
)
# The "trained" transition; its values come from a record's JSON (``_trained_values``).
_SET_TRAINED = (
    "status = 'trained', updated_at = ?, n_params = ?, metrics = ?, data_fingerprint = ?, "
    "version = ?, trained_on = ?, error = NULL, owner_host = NULL, owner_pid = NULL, "
    "owner_token = NULL"
)
_SET_FAILED = (
    "status = 'failed', updated_at = ?, error = ?, owner_host = NULL, owner_pid = NULL, "
    "owner_token = NULL"
)
_METRIC = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_EVALUATION_FIELDS = ("in_sample", "period_start", "period_end")
# ``owner_token`` default of the transitions: whoever owns the row.
ANY_OWNER: Final = object()


class Index:
    """The connection to a store's ``index.sqlite``, opened on first use (and again in a child
    process: a connection must not cross a fork), with the schema created or migrated.

    Args:
      root: the store root (resolved); the index is ``root / index.sqlite``.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._conn_pid = -1

    def _db(self) -> sqlite3.Connection:
        if self._conn is None or self._conn_pid != os.getpid():
            conn = sqlite3.connect(
                inside(self.root, INDEX_FILE),
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
                for (table, name), sql_type in _ADDED_COLUMNS.items():
                    present = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
                    if name not in present:
                        conn.execute(f"ALTER TABLE {table} ADD COLUMN {name} {sql_type}")
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                conn.close()
                raise
            self._conn, self._conn_pid = conn, os.getpid()
        return self._conn

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
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

    @contextlib.contextmanager
    def reading(self) -> Iterator[sqlite3.Connection]:
        """The connection, for reads outside a transaction."""
        with self._lock:
            yield self._db()


# -- transitions (inside a ``transaction``) ---------------------------------------------------


def begin(
    db: sqlite3.Connection,
    *,
    model_id: str,
    kind: str,
    horizon: int,
    input_size: int,
    created_at: str,
    parent_id: str | None,
    version: str,
    owner: tuple[str | None, int | None, str | None],
) -> None:
    """Registers a run as ``training``, owned by ``owner`` (host, pid, process token).

    Raises:
      StoreError: the id is already in the index (records are write-once).
    """
    try:
        db.execute(
            "INSERT INTO models (id, kind, status, created_at, updated_at, horizon, input_size, "
            "parent_id, version, owner_host, owner_pid, owner_token) "
            "VALUES (?, ?, 'training', ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                model_id,
                kind,
                created_at,
                utc_now(),
                horizon,
                input_size,
                parent_id,
                version,
                *owner,
            ),
        )
    except sqlite3.IntegrityError:
        raise StoreError(
            f"model {model_id} is already in the store; records are write-once."
        ) from None


def _trained_values(meta: Mapping[str, Any]) -> tuple:
    """The values of ``_SET_TRAINED`` from a record's JSON (``ntjax.store.codec``)."""
    return (
        utc_now(),
        (meta.get("params") or {}).get("n_params"),
        dumps(meta.get("metrics") or {}),
        meta.get("data_fingerprint"),
        meta.get("version") or "",
        dumps(meta["trained_on"]) if meta.get("trained_on") is not None else None,
    )


def _owner_guard(owner_token: object) -> tuple[str, tuple]:
    if owner_token is ANY_OWNER:
        return "", ()
    return " AND status = 'training' AND owner_token IS ?", (owner_token,)


def set_trained(
    db: sqlite3.Connection,
    model_id: str,
    meta: Mapping[str, Any],
    *,
    owner_token: str | None | object = ANY_OWNER,
) -> None:
    """Marks a row ``trained`` with the index fields of its committed record JSON ``meta``.

    Args:
      owner_token: settle the row only while it is still ``training`` under this owner (the
        reaper, ``ntjax.store.liveness``); by default the row is set whatever it holds (its
        own run committing).
    """
    guard, guard_args = _owner_guard(owner_token)
    db.execute(
        f"UPDATE models SET {_SET_TRAINED} WHERE id = ?{guard}",
        (*_trained_values(meta), model_id, *guard_args),
    )


def set_failed(
    db: sqlite3.Connection,
    model_id: str,
    error: str,
    *,
    owner_token: str | None | object = ANY_OWNER,
) -> None:
    """Marks a ``training`` row ``failed`` with ``error`` (``owner_token``: as ``set_trained``;
    a row no longer ``training`` is left alone)."""
    guard, guard_args = _owner_guard(owner_token)
    if not guard:
        guard = " AND status = 'training'"
    db.execute(
        f"UPDATE models SET {_SET_FAILED} WHERE id = ?{guard}",
        (utc_now(), error, model_id, *guard_args),
    )


def delete(db: sqlite3.Connection, model_id: str) -> None:
    """Drops a row (``reindex`` replacing a stale one by the committed artifact's)."""
    db.execute("DELETE FROM models WHERE id = ?", (model_id,))


def _text_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


def record_evaluation(db: sqlite3.Connection, model_id: str, metrics: Mapping[str, Any]) -> None:
    """Keeps an evaluation with its period and ``in_sample`` flag; an out-of-sample one also
    becomes the row's ``evaluation`` (see ``Catalog.record_evaluation``)."""
    in_sample = metrics.get("in_sample")
    scores = {k: v for k, v in metrics.items() if k not in _EVALUATION_FIELDS}
    now = utc_now()
    db.execute(
        "INSERT INTO evaluations (model_id, at, period_start, period_end, in_sample, metrics) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (
            model_id,
            now,
            _text_or_none(metrics.get("period_start")),
            _text_or_none(metrics.get("period_end")),
            None if in_sample is None else int(bool(in_sample)),
            dumps(scores),
        ),
    )
    if in_sample is False:
        period = {k: metrics[k] for k in ("period_start", "period_end") if k in metrics}
        db.execute(
            "UPDATE models SET evaluation = ?, updated_at = ? WHERE id = ?",
            (dumps({**scores, **period}), now, model_id),
        )


# -- queries -----------------------------------------------------------------------------------


def status_of(db: sqlite3.Connection, model_id: str) -> tuple[str, str | None] | None:
    """``(status, error)`` of a row, or None when the id is not in the index."""
    row = db.execute("SELECT status, error FROM models WHERE id = ?", (model_id,)).fetchone()
    return None if row is None else (row[0], row[1])


def training_rows(db: sqlite3.Connection) -> list[tuple[str, str | None, int | None, str | None]]:
    """``(id, owner_host, owner_pid, owner_token)`` of every ``training`` row."""
    sql = "SELECT id, owner_host, owner_pid, owner_token FROM models WHERE status = 'training'"
    return db.execute(sql).fetchall()


def count(db: sqlite3.Connection) -> int:
    return db.execute("SELECT COUNT(*) FROM models").fetchone()[0]


def _iso_utc(value: str | dt.datetime) -> str:
    """A time bound in the index's format (UTC ISO-8601, microseconds); naive means UTC."""
    when = dt.datetime.fromisoformat(value) if isinstance(value, str) else value
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.astimezone(dt.UTC).isoformat(timespec="microseconds")


def _row_dict(row: tuple, aliases: Mapping[str, list[str]]) -> dict[str, Any]:
    fields = dict(zip(_COLUMNS.split(", "), row, strict=True))
    fields["metrics"] = json.loads(fields["metrics"])
    fields["evaluation"] = json.loads(fields["evaluation"])
    fields["trained_on"] = json.loads(fields["trained_on"]) if fields["trained_on"] else None
    fields["aliases"] = aliases.get(fields["id"], [])
    return {key: fields[key] for key in _STATUS_KEYS}


def row(
    db: sqlite3.Connection, model_id: str, aliases: Mapping[str, list[str]]
) -> dict[str, Any] | None:
    """The status dict of one model (see ``query``), or None."""
    found = db.execute(f"SELECT {_COLUMNS} FROM models WHERE id = ?", (model_id,)).fetchall()
    return _row_dict(found[0], aliases) if found else None


def query(
    db: sqlite3.Connection,
    aliases: Mapping[str, list[str]],
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
    """Status dicts of the rows that match, newest first or by ``metric`` (the arguments of
    ``Catalog.query``); ``aliases`` maps an id to the aliases naming it."""
    where: list[str] = []
    args: list[Any] = []
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
    order_args: list[Any] = []
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
    sql = f"SELECT {_COLUMNS} FROM models"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += f" ORDER BY {order}"
    args += order_args
    if limit is not None:
        sql += " LIMIT ?"
        args.append(int(limit))
    return [_row_dict(found, aliases) for found in db.execute(sql, args).fetchall()]


def evaluations(db: sqlite3.Connection, model_id: str) -> list[dict[str, Any]]:
    """Every evaluation kept for a model, oldest first (see ``Catalog.evaluations``)."""
    found = db.execute(
        "SELECT at, period_start, period_end, in_sample, metrics FROM evaluations "
        "WHERE model_id = ? ORDER BY seq",
        (model_id,),
    ).fetchall()
    return [
        {
            "at": at,
            "period_start": start,
            "period_end": end,
            "in_sample": None if flag is None else bool(flag),
            "metrics": json.loads(scores),
        }
        for at, start, end, flag, scores in found
    ]


def exists(db: sqlite3.Connection, model_id: str) -> bool:
    return db.execute("SELECT 1 FROM models WHERE id = ?", (model_id,)).fetchone() is not None


__all__ = [
    "ANY_OWNER",
    "Index",
    "begin",
    "count",
    "delete",
    "evaluations",
    "exists",
    "query",
    "record_evaluation",
    "row",
    "set_failed",
    "set_trained",
    "status_of",
    "training_rows",
]
