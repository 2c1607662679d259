"""JAX's persistent compilation cache in a store (``<root>/jax-cache``), so a new process
forecasting with a model compiled before skips XLA compilation."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import jax

from ntjax.store.files import CACHE_DIR, inside


def enable_compilation_cache(root: Path) -> Path | None:
    """Turns on JAX's persistent compilation cache in ``root / jax-cache``.

    JAX runs what it finds in that folder, so the cache is used only when the folder belongs to
    this user and nobody else can write to it (it is created with mode 0700); otherwise this
    returns None and leaves JAX alone. Call it before anything compiles.

    Returns:
      The cache folder, or None when it was not safe to use.
    """
    folder = inside(root, CACHE_DIR)
    folder.mkdir(mode=0o700, exist_ok=True)
    info = folder.lstat()
    private = not info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or not private:
        return None
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return folder


__all__ = ["enable_compilation_cache"]
