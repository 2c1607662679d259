"""Atomic file writes and pytree <-> safetensors conversion, shared by checkpoints and the store."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from safetensors import deserialize
from safetensors.numpy import save as st_save

# safetensors dtype names -> numpy dtypes; ``safetensors.numpy.load`` has no BF16 (it writes
# it), so files are read here, bfloat16 (quantised records) included.
_DTYPES = {
    "F64": np.float64,
    "F32": np.float32,
    "F16": np.float16,
    "BF16": jnp.bfloat16,
    "I64": np.int64,
    "U64": np.uint64,
    "I32": np.int32,
    "U32": np.uint32,
    "I16": np.int16,
    "U16": np.uint16,
    "I8": np.int8,
    "U8": np.uint8,
    "BOOL": np.bool_,
}


def atomic_write(path: Path, data: bytes) -> None:
    """Writes ``data`` to ``path`` so that readers see either the old file or the whole new one:
    a temporary file in the same folder, fsync, rename, fsync of the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def dumps_json(data: Any) -> bytes:
    return json.dumps(data, indent=1, sort_keys=True, allow_nan=True).encode()


def tree_to_bytes(tree: Any, metadata: dict[str, str] | None = None) -> bytes:
    """Serialises a pytree of arrays as safetensors, keyed by each leaf's path."""
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    tensors = {
        jax.tree_util.keystr(path): np.ascontiguousarray(np.asarray(leaf)) for path, leaf in leaves
    }
    return st_save(tensors, metadata=metadata)


def load_tensors(data: bytes) -> dict[str, np.ndarray]:
    """The tensors of a safetensors file's bytes (read-only views), any dtype of ``_DTYPES``.

    Raises:
      SafetensorError: the bytes are not a safetensors file (truncated, corrupt header).
      ValueError: a tensor has a dtype outside ``_DTYPES``.
    """
    tensors = {}
    for name, view in deserialize(data):
        if view["dtype"] not in _DTYPES:
            raise ValueError(f"parameter {name} has unsupported dtype {view['dtype']!r}.")
        dtype = np.dtype(_DTYPES[view["dtype"]])
        tensors[name] = np.frombuffer(view["data"], dtype=dtype).reshape(view["shape"])
    return tensors


def tree_from_bytes(data: bytes, target: Any) -> Any:
    """Restores a pytree shaped like ``target`` (arrays or ``jax.ShapeDtypeStruct`` leaves, e.g.
    from ``jax.eval_shape``) from ``tree_to_bytes`` output, checking every key, shape and dtype."""
    tensors = load_tensors(data)
    paths, treedef = jax.tree_util.tree_flatten_with_path(target)
    leaves = []
    for path, spec in paths:
        name = jax.tree_util.keystr(path)
        if name not in tensors:
            raise ValueError(f"parameter {name} is missing from the file.")
        value = tensors.pop(name)
        if spec.shape == () and value.shape == (1,):
            value = value.reshape(())  # safetensors stores scalars as one-element vectors
        if tuple(value.shape) != tuple(spec.shape) or value.dtype != np.dtype(spec.dtype):
            raise ValueError(
                f"parameter {name} has shape {value.shape} {value.dtype}, "
                f"expected {tuple(spec.shape)} {np.dtype(spec.dtype)}."
            )
        leaves.append(value)
    if tensors:
        raise ValueError(f"unexpected parameters in the file: {sorted(tensors)[:5]}.")
    return jax.tree_util.tree_unflatten(treedef, leaves)
