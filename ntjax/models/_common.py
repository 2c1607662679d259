"""Pieces every model family shares: input handling, the monotone quantile head, and the
bridge from a Flax linen module to the pure ``init``/``apply`` pair."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from ntjax.config import ModelConfig

Params = dict[str, Any]
Inputs = dict[str, jax.Array]


def as_inputs(x: ArrayLike | Mapping[str, ArrayLike]) -> Inputs:
    """Normalises model input to a dict.

    ``x`` is either ``[batch, input_size]`` (the scaled target history) or a mapping with
    ``"y"`` ``[batch, input_size]`` and, when the config names exogenous columns,
    ``"hist_exog"`` ``[batch, input_size, n_hist]`` and ``"futr_exog"``
    ``[batch, input_size + horizon, n_futr]``.
    """
    if isinstance(x, Mapping):
        return {k: jnp.asarray(v) for k, v in x.items()}
    return {"y": jnp.asarray(x)}


def dummy_inputs(config: ModelConfig, batch: int = 1) -> Inputs:
    """Zeros shaped like one batch of inputs, for ``init`` and ``jax.eval_shape``."""
    inputs = {"y": jnp.zeros((batch, config.input_size), jnp.float32)}
    if config.hist_exog:
        inputs["hist_exog"] = jnp.zeros(
            (batch, config.input_size, len(config.hist_exog)), jnp.float32
        )
    if config.futr_exog:
        inputs["futr_exog"] = jnp.zeros(
            (batch, config.input_size + config.horizon, len(config.futr_exog)), jnp.float32
        )
    return inputs


def monotone_quantiles(raw: jax.Array, median_index: int, axis: int = -1) -> jax.Array:
    """Turns unconstrained outputs into quantiles that never cross.

    The output at ``median_index`` is the point forecast; every other quantile is reached from
    it by a cumulative sum of softplus increments, so ``out[..., i] <= out[..., i + 1]``.

    Args:
      raw: unconstrained values with the quantiles on ``axis`` (the last by default).
      median_index: which entry is the anchor (the quantile closest to 0.5).
      axis: the quantile axis.

    Returns:
      ``raw``'s shape, non-decreasing along ``axis``.
    """
    m, n = median_index, raw.shape[axis]
    base = jax.lax.slice_in_dim(raw, m, m + 1, axis=axis)
    above = jax.nn.softplus(jax.lax.slice_in_dim(raw, m + 1, n, axis=axis))
    below = jnp.flip(jax.nn.softplus(jax.lax.slice_in_dim(raw, 0, m, axis=axis)), axis)
    up = jnp.cumsum(above, axis=axis)
    down = jnp.flip(jnp.cumsum(below, axis=axis), axis)
    return jnp.concatenate([base - down, base, base + up], axis=axis)


def linen_family(
    make_module: Callable[[ModelConfig], nn.Module],
) -> tuple[Callable[..., Params], Callable[..., jax.Array]]:
    """Wraps a linen module factory into the pure ``init(config, key)`` and
    ``apply(config, params, x, *, key=None)`` pair. ``key`` enables dropout (training);
    ``key=None`` is deterministic inference."""

    def init(config: ModelConfig, key: jax.Array) -> Params:
        module = make_module(config)
        variables = module.init({"params": key}, dummy_inputs(config), deterministic=True)
        return variables["params"]

    def apply(
        config: ModelConfig, params: Params, x: Any, *, key: jax.Array | None = None
    ) -> jax.Array:
        module = make_module(config)
        rngs = {} if key is None else {"dropout": key}
        return module.apply({"params": params}, as_inputs(x), deterministic=key is None, rngs=rngs)

    return init, apply


def flatten_exog(inputs: Inputs) -> jax.Array | None:
    """Flattened exogenous inputs concatenated, ``[batch, features]`` (None without any)."""
    parts = [
        inputs[name].reshape(inputs[name].shape[0], -1)
        for name in ("hist_exog", "futr_exog")
        if name in inputs
    ]
    return jnp.concatenate(parts, axis=-1) if parts else None
