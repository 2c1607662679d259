"""Aliases (``production`` -> a model id) as an append-only log of events in the index: ``set``
pushes a model onto the alias's stack, ``rollback`` pops back to the one before, so the
history is never lost and a rollback is one call. Nothing here imports JAX.
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
from collections.abc import Sequence
from typing import Any

from ntjax._ids import check_id, utc_now
from ntjax.store import index
from ntjax.store.errors import ModelNotFoundError, StoreError

_ALIAS = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,63}")


def check_alias(name: Any) -> str:
    """A valid alias name, else a ``StoreError``: a letter then up to 63 letters, digits,
    ``_``, ``.``, ``-``, and never something that reads as a model id."""
    if not isinstance(name, str) or not _ALIAS.fullmatch(name):
        raise StoreError(
            f"alias names are a letter then up to 63 letters, digits, '_', '.', '-'; got {name!r}."
        )
    try:
        check_id(name)
    except ValueError:
        return name
    raise StoreError(f"an alias cannot look like a model id: {name!r}.")


def _replay(events: Sequence[tuple[str, str]]) -> list[str]:
    """The alias's stack of targets after its events: ``set`` pushes, ``rollback`` pops."""
    stack: list[str] = []
    for action, model_id in events:
        if action == "set":
            stack.append(model_id)
        elif stack:
            stack.pop()
    return stack


def _stack(db: sqlite3.Connection, name: str) -> list[str]:
    rows = db.execute(
        "SELECT action, model_id FROM alias_events WHERE name = ? ORDER BY seq", (name,)
    ).fetchall()
    return _replay(rows)


def push(
    db: sqlite3.Connection, name: str, model_id: str, reason: str | None = None
) -> dict[str, Any]:
    """Inside a transaction: points ``name`` at a trained model, with the reason kept in its
    history; returns ``{"alias", "model_id", "previous"}``."""
    check_alias(name)
    state = index.status_of(db, model_id)
    if state is None:
        raise ModelNotFoundError(f"no model {model_id} in the store.")
    if state[0] != "trained":
        raise StoreError(f"model {model_id} is {state[0]!r}; aliases point at trained models.")
    stack = _stack(db, name)
    db.execute(
        "INSERT INTO alias_events (name, model_id, action, at, reason) VALUES (?, ?, 'set', ?, ?)",
        (name, model_id, utc_now(), reason),
    )
    return {"alias": name, "model_id": model_id, "previous": stack[-1] if stack else None}


def set_alias(
    store_index: index.Index, name: str, model_id: str, reason: str | None = None
) -> dict[str, Any]:
    """Points ``name`` at a trained model; returns ``{"alias", "model_id", "previous"}``."""
    with store_index.transaction() as db:
        return push(db, name, model_id, reason)


def rollback(store_index: index.Index, name: str, reason: str | None = None) -> dict[str, Any]:
    """Points ``name`` back at the model it named before; returns ``{"alias", "model_id"
    (restored), "previous" (rolled back from)}``."""
    check_alias(name)
    with store_index.transaction() as db:
        stack = _stack(db, name)
        if not stack:
            raise ModelNotFoundError(f"no alias {name!r} in the store {store_index.root}.")
        if len(stack) < 2:
            raise StoreError(
                f"alias {name!r} has no earlier model to roll back to (it names {stack[-1]})."
            )
        db.execute(
            "INSERT INTO alias_events (name, model_id, action, at, reason) "
            "VALUES (?, ?, 'rollback', ?, ?)",
            (name, stack[-2], utc_now(), reason),
        )
    return {"alias": name, "model_id": stack[-2], "previous": stack[-1]}


def current(db: sqlite3.Connection) -> dict[str, str]:
    """Every alias and the id it names now, by name."""
    rows = db.execute("SELECT name, action, model_id FROM alias_events ORDER BY seq").fetchall()
    events: dict[str, list[tuple[str, str]]] = {}
    for name, action, model_id in rows:
        events.setdefault(name, []).append((action, model_id))
    stacks = {name: _replay(named) for name, named in events.items()}
    return {name: stack[-1] for name, stack in sorted(stacks.items()) if stack}


def by_id(db: sqlite3.Connection) -> dict[str, list[str]]:
    """The aliases naming each id now."""
    names: dict[str, list[str]] = {}
    for name, model_id in current(db).items():
        names.setdefault(model_id, []).append(name)
    return names


def history(db: sqlite3.Connection, name: str) -> list[dict[str, Any]]:
    """Every change of alias ``name``, oldest first: ``{"action", "model_id", "at",
    "reason"}`` (the reason is None for changes made by hand without one)."""
    check_alias(name)
    rows = db.execute(
        "SELECT action, model_id, at, reason FROM alias_events WHERE name = ? ORDER BY seq",
        (name,),
    ).fetchall()
    return [{"action": a, "model_id": m, "at": at, "reason": r} for a, m, at, r in rows]


def resolve(db: sqlite3.Connection, name_or_id: str) -> str:
    """The model id an alias names now; a canonical id is returned unchanged."""
    with contextlib.suppress(ValueError):
        return check_id(name_or_id)
    target = None
    with contextlib.suppress(StoreError):
        target = current(db).get(check_alias(name_or_id))
    if target is None:
        raise ModelNotFoundError(
            f"{name_or_id!r} is neither a model id (canonical UUID4) nor an alias in the store."
        )
    return target


__all__ = [
    "by_id",
    "check_alias",
    "current",
    "history",
    "push",
    "resolve",
    "rollback",
    "set_alias",
]
