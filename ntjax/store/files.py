"""Where things live under a store root, and how artifact files are read safely.

    index.sqlite                     the index (``ntjax.store.index``)
    models/<id>/params.safetensors   the parameters
    models/<id>/record.json          everything else; written last, so its presence commits the
                                     artifact
    jax-cache/                       optional persistent compilation cache (``ntjax.store.cache``)

Every path is resolved (symlinks followed) and refused unless it stays inside the root; artifact
files are opened without following a final symlink, must be regular files, and are read to
exactly the size checked against the limit beforehand. No JAX here: the index and the reaper
read record files too.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
from pathlib import Path
from typing import Any

from ntjax._ids import check_id
from ntjax.store.errors import ArtifactError, StoreError

DEFAULT_MAX_ARTIFACT_BYTES = 500_000_000
PARAMS_FILE = "params.safetensors"
RECORD_FILE = "record.json"
INDEX_FILE = "index.sqlite"
MODELS_DIR = "models"
CACHE_DIR = "jax-cache"


def inside(root: Path, relative: str) -> Path:
    """``root / relative`` with every symlink resolved, refused unless it stays inside."""
    path = (root / relative).resolve()
    if not path.is_relative_to(root):
        raise StoreError(f"{relative!r} resolves to {path}, outside the store {root}.")
    return path


def model_dir(root: Path, model_id: str) -> Path:
    return inside(root, f"{MODELS_DIR}/{check_id(model_id)}")


def open_regular(path: Path, model_id: str) -> tuple[int, int]:
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


def read_exact(fd: int, size: int) -> bytes:
    """Reads exactly ``size`` bytes (the size checked beforehand) and no more."""
    chunks = [os.read(fd, size)]  # a regular file gives it all at once, in one buffer
    got = len(chunks[0])
    while got < size and chunks[-1]:
        chunks.append(os.read(fd, size - got))
        got += len(chunks[-1])
    if got != size or os.read(fd, 1):
        raise ValueError("the file changed size while being read.")
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def read_artifact(root: Path, model_id: str, *, max_bytes: int) -> tuple[bytes, bytes]:
    """The record JSON and parameter bytes of a committed artifact, refused over ``max_bytes``
    before anything is read.

    Raises:
      FileNotFoundError: a file of the artifact is missing (not committed).
      ArtifactError: over the limit, a symlink, not a regular file, or unreadable.
    """
    folder = model_dir(root, model_id)
    fds: list[int] = []
    try:
        for name in (RECORD_FILE, PARAMS_FILE):
            fds.append(open_regular(folder / name, model_id)[0])
        sizes = [os.fstat(fd).st_size for fd in fds]
        if sum(sizes) > max_bytes:
            raise ArtifactError(
                f"model {model_id}: the artifact is {sum(sizes)} bytes, over the store's "
                f"limit of {max_bytes} bytes; refusing to read it."
            )
        try:
            meta_bytes, params_bytes = (
                read_exact(fd, size) for fd, size in zip(fds, sizes, strict=True)
            )
        except (OSError, ValueError) as exc:
            raise ArtifactError(f"model {model_id}: cannot read the artifact ({exc}).") from exc
    finally:
        for fd in fds:
            os.close(fd)
    return meta_bytes, params_bytes


def committed_meta(root: Path, model_id: str, *, max_bytes: int) -> dict[str, Any] | None:
    """The record JSON of a committed artifact, or None when there is none that reads as one
    (missing, unreadable, over the limit, not JSON, or for another id)."""
    try:
        fd, size = open_regular(model_dir(root, model_id) / RECORD_FILE, model_id)
        try:
            if size > max_bytes:
                return None
            meta = json.loads(read_exact(fd, size))
        finally:
            os.close(fd)
    except (OSError, ValueError, RecursionError):  # RecursionError: JSON nested too deeply
        return None
    return meta if isinstance(meta, dict) and meta.get("id") == model_id else None


def discard_partial(root: Path, model_id: str) -> None:
    """Removes what a dead run left of an uncommitted artifact (never a committed one)."""
    folder = model_dir(root, model_id)
    if not folder.is_dir() or (folder / RECORD_FILE).exists():
        return
    for path in folder.iterdir():
        if path.name == PARAMS_FILE or path.name.endswith(".tmp"):
            path.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        folder.rmdir()


__all__ = [
    "CACHE_DIR",
    "DEFAULT_MAX_ARTIFACT_BYTES",
    "INDEX_FILE",
    "MODELS_DIR",
    "PARAMS_FILE",
    "RECORD_FILE",
    "committed_meta",
    "discard_partial",
    "inside",
    "model_dir",
    "open_regular",
    "read_artifact",
    "read_exact",
]
