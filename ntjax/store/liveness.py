"""Is the process that owns a ``training`` row still running? And settling the rows of runs
that died (``reap``): a run killed at any moment never shows a half-written model as trained.

A process is named by its host, pid and a token (boot id and start time, so a reused pid does
not match). Nothing here imports JAX.
"""

from __future__ import annotations

import contextlib
import functools
import os
import socket
from collections.abc import Sequence
from pathlib import Path

from ntjax.store import files, index
from ntjax.store.errors import StoreError


@functools.cache
def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def process_token(pid: int) -> str | None:
    """Identity of a live process (boot id and start time), or None when it is gone or a
    zombie. Without ``/proc`` it is the pid itself."""
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


def this_process() -> tuple[str, int, str | None]:
    """``(host, pid, token)`` of the running process: the owner ``index.begin`` records."""
    pid = os.getpid()
    return socket.gethostname(), pid, process_token(pid)


def owner_alive(host: str | None, pid: int | None, token: str | None) -> bool:
    if pid is None:
        return False
    if host != socket.gethostname():
        return True  # another machine's run: nothing here can tell, so trust the row
    return process_token(pid) == token


def reap(
    store_index: index.Index, *, max_artifact_bytes: int, ids: Sequence[str] | None = None
) -> list[str]:
    """Settles ``training`` rows (all, or those in ``ids``) whose process is gone: ``trained``
    when the artifact was committed before the process died, else ``failed`` (and what the run
    left of its artifact is removed). Returns the settled ids."""
    root = store_index.root
    with store_index.reading() as db:
        rows = index.training_rows(db)
    if ids is not None:
        wanted = set(ids)
        rows = [r for r in rows if r[0] in wanted]
    settled = []
    for model_id, host, pid, token in rows:
        if owner_alive(host, pid, token):
            continue
        meta = files.committed_meta(root, model_id, max_bytes=max_artifact_bytes)
        with store_index.transaction() as db:
            if meta is not None:
                index.set_trained(db, model_id, meta, owner_token=token)
            else:
                error = (
                    f"the training process (pid {pid} on {host}) stopped before the model was saved"
                )
                index.set_failed(db, model_id, error, owner_token=token)
        if meta is None:
            with contextlib.suppress(OSError, StoreError):
                files.discard_partial(root, model_id)
        settled.append(model_id)
    return settled


__all__ = ["owner_alive", "process_token", "reap", "this_process"]
