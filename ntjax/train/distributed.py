"""Multi-process training (``nt.distributed``): one SPMD program on every process, over JAX's
own multi-controller runtime (``jax.distributed``: gloo collectives on CPU, NCCL on GPUs).

Every process runs the same ``nt.train`` on the same frame after ``initialize``. The mesh
spans the devices of all processes (``jax.devices()``); parameters, optimizer state and the
series are replicated on every device; each step draws its global batch of windows from
``fold_in(key, step)`` over the global window table, so the batch is a function of the seed
and the step only, and each device computes the loss of its slice of it (the ``data`` axis).
N processes x 1 device thus train exactly what 1 process x N devices trains. Process 0
writes checkpoints (and, in ``ntjax train``, the record); every process ends with the same
record id (``share_id``).

A process whose peer dies is ended by JAX's runtime (an abort from a C++ thread, exit code
134, with a stack trace) within about ``heartbeat_timeout`` seconds; ``supervise`` runs a
command as a child process and turns that into one sentence and exit code 1 (what
``ntjax train --coordinator ...`` does).
"""

from __future__ import annotations

import ctypes
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from typing import IO, Any

import jax
import numpy as np
import polars as pl
from jax.experimental import multihost_utils

from ntjax.data.frame import to_polars

# Set on the child that ``supervise`` starts, so that it does not supervise itself.
SUPERVISED_VARIABLE = "NTJAX_SUPERVISED"

# Lines of JAX's C++ runtime (absl log lines, check-failure stack traces) that a supervised
# child writes on its way down: kept out of the user's terminal, summed up in one sentence.
_NATIVE_LINE = re.compile(
    r"^([EFWI]\d{4} \d\d:\d\d:\d\d\.\d+\s+\d+ \S+:\d+\]|\s+@\s+0x|\*\*\* Check failure|"
    r"terminate called|\s*what\(\):|\[Gloo\]|RPC: /|Barrier result:|This suggests that|"
    r"The tasks have crashed|Aborted|\d+$)"
)
# What the runtime says when a peer is gone (heartbeats stopped, a collective's socket
# closed, the coordinator unreachable).
_PEER_LOST = re.compile(
    r"heartbeat timeout|stopped sending heartbeats|Connection closed by peer|"
    r"Gloo [a-z_-]+ failed|distributed service detected fatal errors|"
    r"CoordinationService|Connection reset by peer|Socket closed|failed to connect|"
    r"DEADLINE_EXCEEDED",
    re.IGNORECASE,
)


_JOIN_FAILED = "could not join the job"


class DistributedError(RuntimeError):
    """The processes of a job could not start together, or one of them was lost."""


def initialize(
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    local_device_ids: Sequence[int] | None = None,
    bind_address: str | None = None,
    initialization_timeout: int = 60,
    heartbeat_timeout: int = 10,
    shutdown_timeout: int = 30,
) -> None:
    """Joins this process to a multi-process job; call it before any other JAX work.

    Without arguments, JAX detects the cluster (SLURM, Open MPI, Cloud TPU, the
    ``JAX_COORDINATOR_ADDRESS`` variable, ...). CPU devices talk through gloo collectives.

    Args:
      coordinator: ``HOST:PORT`` of process 0, where the coordination service listens.
      num_processes: the number of processes of the job.
      process_id: this process's rank, ``0 .. num_processes - 1``.
      local_device_ids: the local devices this process uses (default: all).
      bind_address: ``HOST:PORT`` the coordinator binds (process 0); default the
        ``coordinator`` address itself, never every interface.
      initialization_timeout: seconds to wait for every process to join.
      heartbeat_timeout: seconds without a heartbeat after which a process counts as lost
        (every survivor is then ended by the runtime).
      shutdown_timeout: seconds a finishing process waits for the others at exit.

    Raises:
      DistributedError: the processes did not all join within ``initialization_timeout``
        (the coordinator unreachable, a peer that never started), or a bad address.
    """
    if coordinator is not None and not re.fullmatch(r"\[?[^\s\]]+\]?:\d+", coordinator):
        raise DistributedError(f"coordinator must be HOST:PORT, got {coordinator!r}.")
    # Before the CPU backend exists: the default CPU collectives cannot cross processes.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    if bind_address is None and coordinator is not None:
        bind_address = coordinator
    started = time.monotonic()
    try:
        jax.distributed.initialize(
            coordinator_address=coordinator,
            num_processes=num_processes,
            process_id=process_id,
            local_device_ids=list(local_device_ids) if local_device_ids is not None else None,
            initialization_timeout=initialization_timeout,
            heartbeat_timeout_seconds=heartbeat_timeout,
            shutdown_timeout_seconds=shutdown_timeout,
            coordinator_bind_address=bind_address,
        )
    except (RuntimeError, ValueError) as error:  # XlaRuntimeError is a RuntimeError
        if "should only be called once" in str(error):
            raise
        first = str(error).strip().splitlines()[0][:300] if str(error).strip() else repr(error)
        where = coordinator or "the detected coordinator"
        raise DistributedError(
            f"process {process_id} of {num_processes} {_JOIN_FAILED} at {where} "
            f"within {time.monotonic() - started:.0f}s (is every process started, with the "
            f"same --coordinator and --num-processes?): {first}"
        ) from error


def is_multi_process() -> bool:
    """Whether this process is one of several (``initialize`` was called with N > 1)."""
    return jax.process_count() > 1


def share_id(value: str) -> str:
    """Process 0's UUID ``value``, on every process (a collective: all processes call it)."""
    if not is_multi_process():
        return value
    local = np.frombuffer(uuid.UUID(value).bytes, np.uint8)
    shared = multihost_utils.broadcast_one_to_all(local)
    return str(uuid.UUID(bytes=bytes(np.asarray(shared, np.uint8))))


def allgather_bytes(blob: bytes) -> list[bytes]:
    """Every process's ``blob``, in process order (a collective: all processes call it; in
    one process, ``[blob]``)."""
    if not is_multi_process():
        return [blob]
    lengths = np.asarray(multihost_utils.process_allgather(np.array([len(blob)], np.int64)))
    lengths = lengths.reshape(-1)
    padded = np.zeros(max(1, int(lengths.max())), np.uint8)
    padded[: len(blob)] = np.frombuffer(blob, np.uint8)
    gathered = np.asarray(multihost_utils.process_allgather(padded)).reshape(len(lengths), -1)
    return [bytes(gathered[p, : lengths[p]]) for p in range(len(lengths))]


def series_shards(ids: Sequence[str], n_shards: int) -> list[list[str]]:
    """``ids`` sorted and cut into ``n_shards`` contiguous runs whose sizes differ by at most
    one (the first runs are the longer): the split every series-sharded run uses."""
    ordered = sorted(set(ids))
    return [list(run) for run in np.array_split(np.asarray(ordered, dtype=object), n_shards)]


def local_series(
    df: Any, *, process_id: int | None = None, num_processes: int | None = None
) -> pl.DataFrame:
    """This process's share of the series of ``df`` for a series-sharded run
    (``TrainingConfig(shard_series=True)``): the ``process_id``-th of ``num_processes``
    contiguous runs of the sorted series ids (default: this process of the job).

    Every process may read the whole frame and keep its share, or read only its own series
    from its own files; what the run needs is that no series is on two processes.
    """
    frame = to_polars(df)
    if "unique_id" not in frame.columns:
        raise ValueError("local_series needs a long frame with a unique_id column.")
    process_id = jax.process_index() if process_id is None else process_id
    num_processes = jax.process_count() if num_processes is None else num_processes
    if not 0 <= process_id < num_processes:
        raise ValueError(f"process_id must be in [0, {num_processes}), got {process_id}.")
    ids = frame["unique_id"].cast(pl.String).unique().to_list()
    if len(ids) < num_processes:
        raise ValueError(
            f"{len(ids)} series cannot be shared by {num_processes} processes: each needs at "
            "least one."
        )
    mine = series_shards(ids, num_processes)[process_id]
    return frame.filter(pl.col("unique_id").cast(pl.String).is_in(mine))


def supervise(
    command: Sequence[str],
    *,
    label: str,
    stdout: IO[str] | None = None,
    stderr: IO[str] | None = None,
) -> tuple[int, str | None]:
    """Runs ``command`` (one process of a job) as a child, passing its output through, and
    sums up a death caused by a lost peer in one sentence.

    The child's stdout is passed through (without gloo's connection notices, which gloo prints
    there); its stderr line by line, without the C++ runtime's log lines and stack traces.

    Args:
      command: the child's command line; it runs with ``NTJAX_SUPERVISED=1``.
      label: how the sentence names this process, e.g. ``process 1 of 2``.
      stdout: where the child's stdout goes (default ``sys.stdout``).
      stderr: where its filtered stderr goes (default ``sys.stderr``).

    Returns:
      The child's exit code (0, or 1 when it died of a lost peer) and None, or that one
      sentence when the child failed because a peer was lost.
    """
    out, err = stdout or sys.stdout, stderr or sys.stderr
    started = time.monotonic()
    env = {**os.environ, SUPERVISED_VARIABLE: "1", "PYTHONUNBUFFERED": "1"}
    native: list[str] = []  # the runtime's lines, kept to name the reason
    errors: list[str] = []  # the child's own one-line errors, held back until it ends
    with subprocess.Popen(
        list(command),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=env,
        preexec_fn=_die_with_parent if sys.platform == "linux" else None,
    ) as child:

        def pass_stdout() -> None:
            for line in child.stdout:
                if line.startswith("[Gloo] "):  # gloo's connection notices, on stdout
                    continue
                out.write(line)
                out.flush()

        reader = threading.Thread(target=pass_stdout, daemon=True)
        reader.start()
        for line in child.stderr:
            if line.startswith("ntjax: error:"):
                errors.append(line)
            elif _NATIVE_LINE.match(line) or not line.strip() or _PEER_LOST.search(line):
                native.append(line)
            else:
                err.write(line)
                err.flush()
        reader.join()
        code = child.wait()
    if code == 0:
        return 0, None
    reasons = [line for line in native + errors if _PEER_LOST.search(line)]
    if not reasons or any(_JOIN_FAILED in line for line in errors):
        err.writelines(errors)
        err.flush()
        return code, None
    return 1, (
        f"{label} stopped {time.monotonic() - started:.0f}s after it started: "
        f"{_reason(reasons)}; no model was saved; start the same command on every process "
        "again to resume from the last checkpoint."
    )


def _die_with_parent() -> None:
    """In the child, before exec: SIGKILL when the supervising parent dies, so that killing
    one process of the job (the process a user sees) kills its JAX process too."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


_PR_SET_PDEATHSIG = 1


def _reason(lines: Sequence[str]) -> str:
    text = " ".join(lines)
    lost = "a peer process was lost"
    for pattern, reason in (
        (r"Task (\d+) heartbeat timeout", lost + " (process {0} stopped sending heartbeats)"),
        (r"unhealthy[^:]*:\s*(\d+)", lost + " (process {0} stopped sending heartbeats)"),
        (r"Connection (closed|reset) by peer", lost + " (its connection closed during a step)"),
        (
            r"RegisterTask|DEADLINE_EXCEEDED",
            "not every process joined within the initialization timeout (is every process "
            "started, with the same --coordinator and --num-processes?)",
        ),
        (r"failed to connect|Socket closed", "the coordinator could not be reached"),
    ):
        found = re.search(pattern, text, re.IGNORECASE)
        if found:
            return reason.format(*found.groups())
    return lost + " (the JAX distributed service reported a fatal error)"
