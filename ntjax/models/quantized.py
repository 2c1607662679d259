"""Quantised parameters: the weight matrices of any family stored as int8 with per-output-channel
float32 scales, or as bfloat16, and dequantised to float32 inside the jitted prediction.

A weight matrix is every floating ``kernel`` leaf of a parameter tree (the kernels of Dense,
DenseGeneral and Conv layers: 95-99% of every family's parameters). Biases, normalisation
scales, embeddings and everything else stay float32, and so does the record's scaler.

int8 (symmetric, max-abs, round to nearest): a kernel ``w`` ``[..., out]`` becomes the node
``{"qvalue": int8 [..., out], "qscale": float32 [1, ..., 1, out]}`` with
``qscale = max|w| / 127`` over every axis but the last (the output channel), and
``qvalue = round(w / qscale)`` in ``[-127, 127]``; an all-zero channel gets ``qscale = 1`` and
``qvalue = 0``, so it dequantises to exact zeros. Under a stacked ensemble's ``stacked`` key
the leading member axis keeps its own scales too (``[K, 1, ..., out]``). The dequantised
weight ``qvalue * qscale`` is within ``qscale / 2`` of ``w`` element by element (at most
``max|w| / 254`` of its channel's largest weight).

bfloat16: a kernel becomes ``w.astype(bfloat16)`` (round to nearest even, 8 bits of
mantissa: relative error at most 2**-9).

``dequantize_params`` is what prediction calls (``ntjax.models.ModelSpec.predict_quantiles``):
inside the jitted program it turns every quantised node back into float32, so the record keeps
the small arrays resident and the float32 copy only lives while the program runs. It is the
identity on a float32 tree.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

DTYPES = ("int8", "bfloat16")
WEIGHT_NAME = "kernel"
QVALUE, QSCALE = "qvalue", "qscale"
INT8_MAX = 127
# Subtrees whose leaves carry a leading member axis (stacked ensembles).
MEMBER_AXIS_KEYS = ("stacked",)


def _path_names(path: tuple[Any, ...]) -> list[str]:
    return [str(getattr(k, "key", getattr(k, "name", k))) for k in path]


def _is_weight(path: tuple[Any, ...], leaf: Any) -> bool:
    names = _path_names(path)
    return (
        bool(names)
        and names[-1] == WEIGHT_NAME
        and len(leaf.shape) >= 2
        and jnp.issubdtype(leaf.dtype, jnp.floating)
    )


def _member_dims(path: tuple[Any, ...]) -> int:
    names = _path_names(path)
    return 1 if names and names[0] in MEMBER_AXIS_KEYS else 0


def int8_scales(weight: jax.typing.ArrayLike, *, member_dims: int = 0) -> jax.Array:
    """Per-output-channel scales ``[m..., 1, ..., 1, out]`` of a kernel ``[m..., ..., out]``
    (``member_dims`` leading axes keep their own scales): ``max|w| / 127`` over the other axes,
    1 where a channel is all zeros."""
    weight = jnp.asarray(weight, jnp.float32)
    axes = tuple(range(member_dims, weight.ndim - 1))
    amax = jnp.max(jnp.abs(weight), axis=axes, keepdims=True)
    return jnp.where(amax > 0, amax / INT8_MAX, 1.0).astype(jnp.float32)


def quantize_int8(weight: jax.typing.ArrayLike, *, member_dims: int = 0) -> dict[str, jax.Array]:
    """``{"qvalue": int8, "qscale": float32}`` of one kernel (see the module docstring)."""
    weight = jnp.asarray(weight, jnp.float32)
    scale = int8_scales(weight, member_dims=member_dims)
    value = jnp.clip(jnp.round(weight / scale), -INT8_MAX, INT8_MAX).astype(jnp.int8)
    return {QVALUE: value, QSCALE: scale}


def dequantize_int8(node: Mapping[str, jax.Array]) -> jax.Array:
    """The float32 kernel of a ``quantize_int8`` node."""
    return node[QVALUE].astype(jnp.float32) * node[QSCALE]


def quantize_params(params: Any, dtype: str) -> Any:
    """``params`` with every weight matrix quantised to ``dtype`` (``int8`` or ``bfloat16``);
    other leaves unchanged. Works on arrays and on ``jax.ShapeDtypeStruct`` trees under
    ``jax.eval_shape``."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}.")

    def one(path, leaf):
        if not _is_weight(path, leaf):
            return leaf
        if dtype == "bfloat16":
            return jnp.asarray(leaf).astype(jnp.bfloat16)
        return quantize_int8(leaf, member_dims=_member_dims(path))

    return jax.tree_util.tree_map_with_path(one, params)


def _is_int8_node(node: Any) -> bool:
    return isinstance(node, Mapping) and set(node) == {QVALUE, QSCALE}


def dequantize_params(params: Any) -> Any:
    """Every int8 node and bfloat16 leaf of ``params`` as float32; the identity on a float32
    tree (so every prediction path may call it)."""
    if _is_int8_node(params):
        return dequantize_int8(params)
    if isinstance(params, Mapping):
        return {k: dequantize_params(v) for k, v in params.items()}
    if isinstance(params, list | tuple):
        return type(params)(dequantize_params(v) for v in params)
    dtype = getattr(params, "dtype", None)
    if dtype is not None and dtype == jnp.bfloat16:
        return params.astype(jnp.float32)
    return params


def is_quantized(params: Any) -> bool:
    """Whether any weight of ``params`` is stored quantised."""
    leaves = jax.tree.leaves(params)
    return any(getattr(leaf, "dtype", None) in (jnp.int8, jnp.bfloat16) for leaf in leaves)


@functools.lru_cache(maxsize=64)
def _shapes_cached(treedef: Any, leaves: tuple[Any, ...], dtype: str) -> Any:
    tree = jax.tree_util.tree_unflatten(treedef, leaves)
    return jax.eval_shape(functools.partial(quantize_params, dtype=dtype), tree)


def quantized_shapes(shapes: Any, dtype: str) -> Any:
    """The structure (``jax.ShapeDtypeStruct`` leaves) that ``quantize_params(params, dtype)``
    has for parameters of structure ``shapes``: what a quantised parameter file restores
    into."""
    leaves, treedef = jax.tree_util.tree_flatten(shapes)
    return _shapes_cached(treedef, tuple(leaves), dtype)


def nbytes(params: Any) -> int:
    """Bytes held by the arrays of ``params``."""
    return int(sum(leaf.size * leaf.dtype.itemsize for leaf in jax.tree.leaves(params)))


__all__ = [
    "DTYPES",
    "dequantize_int8",
    "dequantize_params",
    "int8_scales",
    "is_quantized",
    "nbytes",
    "quantize_int8",
    "quantize_params",
    "quantized_shapes",
]
