"""Transparent huge pages for XLA:CPU's buffers (Linux, glibc 2.35 or later).

XLA:CPU allocates a program's temporary buffers with ``malloc`` at every call and frees them
after it. A training step of the recurrent and attention families needs 30-130 MB of them
(the zoo benchmark's Transformer 34 MB, its GRU 133 MB), above glibc's mmap threshold, so
each step maps them afresh: the kernel faults them in 4 KiB at a time (8,400 minor faults per
Transformer step, 32,500 per GRU step) and the step then works through 4 KiB pages. glibc's
tunable ``glibc.malloc.hugetlb=1`` makes ``malloc`` ask for transparent huge pages
(``madvise``) on what it maps: 220-470 faults per step, and on the 2-core benchmark machine
the Transformer's step took 17.4-17.5 ms instead of 25.6-27.2 and the GRU's 63-65 ms instead
of 91-93; through ``nt.train`` (200 steps) 19.5-23 against 27-29 ms and 59-69 against 84-99
ms, at a peak resident memory of 725 against 739 MB and 878 against 769 MB. NHITS (small
buffers) runs the same either way. ``python experiments/zoo_speed.py [--no-hugepages]`` has
every family, both libraries under the same setting.

glibc reads its tunables when the process starts, so they cannot be switched on from inside
a running interpreter: ``relaunch()`` re-executes the running program (``sys.orig_argv``)
with the tunable added to ``GLIBC_TUNABLES``. The ``ntjax`` commands that compute do so at
start, as do the benchmarks in ``experiments/``; a script may call it on its first line, and
a notebook kernel can be started with ``GLIBC_TUNABLES=glibc.malloc.hugetlb=1`` in its
environment. ``NTJAX_HUGEPAGES=0`` keeps everything as it is.

    import ntjax.hugepages
    ntjax.hugepages.relaunch()  # first line of a script; a no-op where already on or unusable
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

TUNABLE = "glibc.malloc.hugetlb=1"
OPT_OUT = "NTJAX_HUGEPAGES"
_THP_MODE = "/sys/kernel/mm/transparent_hugepage/enabled"


def _glibc_version() -> tuple[int, int] | None:
    try:
        name, version = os.confstr("CS_GNU_LIBC_VERSION").split()  # "glibc 2.36"
        major, minor = version.split(".")[:2]
    except (AttributeError, OSError, ValueError):  # not glibc (musl, macOS, Windows)
        return None
    return (int(major), int(minor)) if name == "glibc" else None


def _thp_mode() -> str | None:
    """The kernel's transparent-huge-page mode (``always``, ``madvise``, ``never``), or None
    where the kernel has none."""
    try:
        with open(_THP_MODE) as file:
            text = file.read()
    except OSError:
        return None
    start, end = text.find("["), text.find("]")
    return text[start + 1 : end] if 0 <= start < end else None


def unusable_reason() -> str | None:
    """Why huge pages cannot be used here (one sentence), or None where they can."""
    version = _glibc_version()
    if version is None:
        return "the C library is not glibc."
    if version < (2, 35):
        return f"glibc {version[0]}.{version[1]} has no glibc.malloc.hugetlb (2.35 or later)."
    mode = _thp_mode()
    if mode is None:
        return f"the kernel has no transparent huge pages ({_THP_MODE} is missing)."
    if mode == "never":
        return f"transparent huge pages are off ({_THP_MODE} says never)."
    return None


def active(environ: Mapping[str, str] | None = None) -> bool:
    """Whether this process started with the tunable (and can use it)."""
    environ = os.environ if environ is None else environ
    tunables = environ.get("GLIBC_TUNABLES", "").split(":")
    return TUNABLE in tunables and unusable_reason() is None


def environment(environ: Mapping[str, str] | None = None) -> dict[str, str] | None:
    """The environment to relaunch with (``environ`` with the tunable added), or None where
    there is nothing to do: already on, turned off by ``NTJAX_HUGEPAGES=0``, or unusable."""
    environ = os.environ if environ is None else environ
    if environ.get(OPT_OUT, "").strip().lower() in ("0", "false", "no", "off"):
        return None
    tunables = [t for t in environ.get("GLIBC_TUNABLES", "").split(":") if t]
    # Already set, to ours or to the user's own value (theirs wins): nothing to add.
    if any(t.split("=")[0] == TUNABLE.split("=")[0] for t in tunables):
        return None
    if unusable_reason() is not None:
        return None
    return {**environ, "GLIBC_TUNABLES": ":".join([*tunables, TUNABLE])}


def _interactive() -> bool:
    return hasattr(sys, "ps1") or "ipykernel" in sys.modules or sys.flags.interactive


def relaunch() -> None:
    """Re-executes the running program with huge pages on, where they are usable and not yet
    on; returns without doing anything otherwise (and in an interactive session, whose state
    a re-execution would lose). Call it before any work: the process is replaced."""
    env = environment()
    if env is None or _interactive() or not getattr(sys, "orig_argv", None):
        return
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)
    except OSError:  # cannot re-execute (a frozen or embedded interpreter): carry on as is
        return
