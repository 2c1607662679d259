"""Decisions of the retraining pipeline, kept in the index with their evidence: one row per
run that looked at new data (``nt.retrain``), promoted or not. A promotion is written in the
same transaction as the alias change it makes. Nothing here imports JAX.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from typing import Any

from ntjax.store import aliases
from ntjax.store._json import dumps

_FIELDS = (
    "alias", "decided_at", "promoted", "champion_id", "challenger_id", "reason", "p_value",
    "data_end", "data_end_key", "metrics",
)  # fmt: skip


def record(db: sqlite3.Connection, decision: Mapping[str, Any]) -> None:
    """Inside a transaction: keeps ``decision`` (keys ``_FIELDS``); when it is ``promoted``
    the alias moves to the challenger in the same transaction, with the reason."""
    if decision["promoted"]:
        aliases.push(db, decision["alias"], decision["challenger_id"], decision["reason"])
    values = [decision.get(field) for field in _FIELDS]
    values[_FIELDS.index("promoted")] = int(bool(decision["promoted"]))
    values[_FIELDS.index("metrics")] = dumps(decision.get("metrics") or {})
    db.execute(
        f"INSERT INTO retrain_decisions ({', '.join(_FIELDS)}) "
        f"VALUES ({', '.join('?' * len(_FIELDS))})",
        values,
    )


def history(db: sqlite3.Connection, alias: str) -> list[dict[str, Any]]:
    """Every decision about ``alias``, oldest first."""
    rows = db.execute(
        f"SELECT {', '.join(_FIELDS)} FROM retrain_decisions WHERE alias = ? ORDER BY seq",
        (aliases.check_alias(alias),),
    ).fetchall()
    out = []
    for row in rows:
        item = dict(zip(_FIELDS, row, strict=True))
        item["promoted"] = bool(item["promoted"])
        item["metrics"] = json.loads(item["metrics"])
        out.append(item)
    return out


__all__ = ["history", "record"]
