"""Per-alias locks: one process at a time may change an alias through the retraining pipeline.

An advisory ``flock`` on ``locks/<alias>.lock`` under the store root: the operating system
releases it when its process ends in any way (``kill -9`` included), so a crash never leaves a
stale lock. The file holds who took it, for the refusal's message. Nothing here imports JAX.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path

from ntjax._ids import utc_now
from ntjax.store.errors import StoreError
from ntjax.store.files import inside

LOCKS_DIR = "locks"


class LockedError(StoreError):
    """Another process holds the lock (e.g. a retraining run of the same alias)."""


@contextlib.contextmanager
def alias_lock(root: Path, name: str, *, what: str = "retrained") -> Iterator[None]:
    """Holds the lock of alias ``name`` (already checked) for the ``with`` block.

    Raises:
      LockedError: another process holds it; the message names that process and since when.
    """
    folder = inside(root, LOCKS_DIR)
    folder.mkdir(exist_ok=True)
    path = inside(root, f"{LOCKS_DIR}/{name}.lock")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LockedError(
                f"alias {name!r} is being {what} by {_holder(path)}; wait for that run to end "
                "(the lock is released when its process exits, even if it is killed)."
            ) from None
        os.ftruncate(fd, 0)
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "since": utc_now()}
        os.pwrite(fd, json.dumps(holder).encode(), 0)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _holder(path: Path) -> str:
    try:
        holder = json.loads(path.read_text() or "{}")
        return f"process {holder['pid']} on {holder['host']} since {holder['since']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


__all__ = ["LOCKS_DIR", "LockedError", "alias_lock"]
