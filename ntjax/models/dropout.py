"""Dropout whose mask costs a few integer operations per element instead of a Threefry block.

``flax.linen.Dropout`` draws its mask with ``jax.random.bernoulli``: one Threefry-2x32 (20
rounds) per pair of elements. On the CPU that was most of a Transformer's training step (the
zoo benchmark's Transformer, 64 windows: its loss and gradients took 36-45 ms with Threefry
masks, 16-18 ms with these). Here the key gives one Threefry draw of two 32-bit seeds per
call, and each element's bits come from its position through two rounds of MurmurHash3's
32-bit finaliser (a bijection with full avalanche), keyed by the seeds: a counter-based
generator of the kind dropout kernels use, cheap enough to fuse with the multiply it masks.

``Dropout`` is ``nn.Dropout`` with that mask (same fields, same scaling, a subclass, so code
that looks for ``nn.Dropout`` modules finds it); ``drop`` is its arithmetic at any keep
probability, for code that applies a module's dropout at another rate (``ntjax.train.step``'s
population members).
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

_GOLDEN = np.uint32(0x9E3779B9)


def _finalise(h: jax.Array) -> jax.Array:
    """MurmurHash3's 32-bit finaliser ``fmix32``."""
    h = h ^ (h >> 16)
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> 13)
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> 16)


def dropout_mask(key: jax.Array, keep_prob: ArrayLike, shape: Sequence[int]) -> jax.Array:
    """Boolean mask of ``shape``, each element True with probability ``keep_prob``
    (to 2**-24), independently; a function of ``key`` alone.

    Args:
      key: a PRNG key (typed or raw).
      keep_prob: probability of keeping an element, a float or a traced scalar.
      shape: the mask's shape (at most 2**32 elements).
    """
    shape = tuple(int(d) for d in shape)
    size = int(np.prod(shape, dtype=np.int64))
    if size > 2**32:
        raise ValueError(f"a dropout mask of {size} elements is larger than 2**32")
    seeds = jax.random.bits(key, (2,), jnp.uint32)
    counter = jax.lax.iota(jnp.uint32, size).reshape(shape)
    bits = _finalise(_finalise((counter * _GOLDEN) ^ seeds[0]) ^ seeds[1])
    uniform = (bits >> 8).astype(jnp.float32) * np.float32(2.0**-24)
    return uniform < jnp.asarray(keep_prob, jnp.float32)


def drop(
    inputs: jax.Array, keep_prob: ArrayLike, rng: jax.Array, broadcast_dims: Sequence[int] = ()
) -> jax.Array:
    """``inputs`` with each element kept with probability ``keep_prob`` (one draw shared over
    ``broadcast_dims``) and scaled by ``1 / keep_prob``, the others zero: ``nn.Dropout``'s
    arithmetic with ``dropout_mask``'s draw."""
    shape = list(inputs.shape)
    for dim in broadcast_dims:
        shape[dim] = 1
    mask = jnp.broadcast_to(dropout_mask(rng, keep_prob, shape), inputs.shape)
    scaled = inputs / jnp.asarray(keep_prob, inputs.dtype)
    return jax.lax.select(mask, scaled, jnp.zeros_like(inputs))


class Dropout(nn.Dropout):
    """``nn.Dropout`` (same fields and behaviour: inputs scaled by ``1 / (1 - rate)`` where
    kept, zero elsewhere, ``broadcast_dims`` sharing a mask) drawing ``dropout_mask``."""

    @nn.compact
    def __call__(
        self, inputs: jax.Array, deterministic: bool | None = None, rng: jax.Array | None = None
    ) -> jax.Array:
        deterministic = nn.merge_param("deterministic", self.deterministic, deterministic)
        if self.rate == 0.0 or deterministic:
            return inputs
        if self.rate == 1.0:
            return jnp.zeros_like(inputs)
        if rng is None:
            rng = self.make_rng(self.rng_collection)
        return drop(inputs, 1.0 - self.rate, rng, self.broadcast_dims)
