"""TCN: temporal convolutional network (Bai, Kolter and Koltun, 2018).

Residual blocks of two dilated causal convolutions (ReLU, dropout) read the step features of the
input window; the dilations double from block to block until the receptive field of the last
step covers the whole window. The last step's features feed the multi-horizon decoder shared
with the recurrent families. The window is read, and the forecast made, in the window's local
units (``recurrent.window_units``).

Only the last step's features reach the decoder, so the network computes each block at the
steps that the last step's receptive field reaches and nowhere else (``receptive_cone``): with
dilations 1, 2, 4, ... the last block is evaluated at one step, the one before at three, and
each block at steps spaced by its dilation. It is the same function as the convolutions over
every step (same parameters, same forecasts) at a sixth of the work for input 168 and dilations
up to 64: the convolutions that read 128 channels run at 334 steps instead of 2,184. Each
convolution is an im2col matmul: the kernel's taps gathered side by side (strided slices for
evenly spaced steps, a gather otherwise), ``[batch * steps, kernel_size * features] @
[kernel_size * features, channels]``.
Over every step, on the 2-core CPU (batch 64, 168 steps, 128 channels, forward and backward),
this ran in 25-58 ms against 42-45 ms for ``lax.conv_general_dilated`` with feature-last
layouts and 21-47 ms with channels first, depending on the dilation: no layout wins
throughout, while the cone cuts the work itself (training 8-10x faster than before).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ntjax.config import TCNConfig
from ntjax.models._common import Inputs, linen_family, monotone_quantiles
from ntjax.models.dropout import Dropout
from ntjax.models.recurrent import (
    decoder_for,
    decoder_summary,
    encoder_features,
    future_features,
    to_series_units,
)


class BlockSteps(NamedTuple):
    """The steps (ascending positions in the window) where one residual block is evaluated:
    its input, its first convolution and its output (its second convolution)."""

    inputs: tuple[int, ...]
    first: tuple[int, ...]
    outputs: tuple[int, ...]


def _reached(outputs: np.ndarray, kernel_size: int, dilation: int) -> np.ndarray:
    """Steps a causal convolution reads to produce ``outputs`` (padding steps left out)."""
    taps = np.arange(kernel_size) * dilation
    reached = (outputs[None, :] - taps[:, None]).ravel()
    return np.unique(reached[reached >= 0])


@functools.cache
def receptive_cone(
    time: int, kernel_size: int, dilations: tuple[int, ...], outputs: tuple[int, ...] | None = None
) -> tuple[BlockSteps, ...]:
    """Per block, the steps that the blocks' outputs at ``outputs`` (default: the last step)
    depend on, from the last block back to the first.

    Args:
      time: steps in the window.
      kernel_size: taps of every convolution.
      dilations: one per block.
      outputs: positions of the last block's outputs wanted (ascending).

    Returns:
      One ``BlockSteps`` per block, in block order.
    """
    wanted = np.asarray((time - 1,) if outputs is None else outputs)
    plan = []
    for dilation in reversed(dilations):
        first = _reached(wanted, kernel_size, dilation)
        inputs = np.union1d(_reached(first, kernel_size, dilation), wanted)
        plan.append(BlockSteps(*(tuple(int(p) for p in a) for a in (inputs, first, wanted))))
        wanted = inputs
    return tuple(reversed(plan))


def select_steps(x: jax.Array, index: np.ndarray) -> jax.Array:
    """``x[:, index]`` for ``x`` ``[batch, steps, f]`` with static ``index`` (``-1``: a zero
    step, the causal padding). Evenly spaced indices after leading padding are a strided slice
    and a pad (cheap forward and backward); others fall back to a gather."""
    index = np.asarray(index)
    pad = int(np.sum(index < 0))
    if np.any(index[pad:] < 0):
        raise ValueError("padding steps must come first")
    rest = index[pad:]
    steps = np.diff(rest)
    if rest.size and (rest.size == 1 or (steps[0] > 0 and np.all(steps == steps[0]))):
        stride = int(steps[0]) if rest.size > 1 else 1
        picked = jax.lax.slice_in_dim(x, int(rest[0]), int(rest[-1]) + 1, stride, axis=1)
    elif rest.size:
        picked = jnp.take(x, rest, axis=1)
    else:
        picked = x[:, :0]
    if pad:
        picked = jnp.pad(picked, ((0, 0), (pad, 0), (0, 0)))
    return picked


def tap_indices(
    inputs: tuple[int, ...], outputs: tuple[int, ...], kernel_size: int, dilation: int
) -> list[np.ndarray]:
    """For each tap ``k`` of a causal convolution (flax's order: tap ``k`` reads the step
    ``(kernel_size - 1 - k) * dilation`` before), the index into ``inputs`` of the step each
    output reads, or -1 where it reads the padding before the window."""
    position = {p: i for i, p in enumerate(inputs)}
    taps = []
    for k in range(kernel_size):
        back = (kernel_size - 1 - k) * dilation
        taps.append(np.asarray([position[p - back] if p >= back else -1 for p in outputs]))
    return taps


def causal_conv(
    x: jax.Array,
    kernel: jax.Array,
    bias: jax.Array,
    taps: list[np.ndarray],
) -> jax.Array:
    """A causal convolution evaluated at chosen steps, as one im2col matmul.

    Args:
      x: ``[batch, n_in, f]`` the input at the steps it is known at.
      kernel: ``[kernel_size, f, channels]`` (flax ``nn.Conv`` layout).
      bias: ``[channels]``.
      taps: ``tap_indices`` into ``x``'s steps, one ``[n_out]`` array per tap.

    Returns:
      ``[batch, n_out, channels]``.
    """
    columns = jnp.concatenate([select_steps(x, index) for index in taps], axis=-1)
    return columns @ kernel.reshape(-1, kernel.shape[-1]) + bias[None, None]


class _CausalConv(nn.Module):
    """The parameters of ``nn.Conv`` (same names, shapes and initialisers), applied by
    ``causal_conv`` at chosen steps."""

    features: int
    kernel_size: int

    @nn.compact
    def __call__(self, x: jax.Array, taps: list[np.ndarray]) -> jax.Array:
        kernel = self.param(
            "kernel",
            nn.initializers.lecun_normal(),
            (self.kernel_size, x.shape[-1], self.features),
        )
        bias = self.param("bias", nn.initializers.zeros_init(), (self.features,))
        return causal_conv(x, kernel, bias, taps)


class _ResidualBlock(nn.Module):
    channels: int
    kernel_size: int
    dilation: int
    dropout: float

    @nn.compact
    def __call__(
        self, x: jax.Array, deterministic: bool, steps: BlockSteps | None = None
    ) -> jax.Array:
        """``[batch, n_in, features] -> [batch, n_out, channels]``; output t sees inputs <= t.

        ``steps`` says where ``x`` is given and which outputs to compute (``receptive_cone``);
        None: ``x`` is the whole window and every step is computed.
        """
        if steps is None:
            every = tuple(range(x.shape[1]))
            steps = BlockSteps(every, every, every)
        h = x
        for index, (inputs, outputs) in enumerate(
            ((steps.inputs, steps.first), (steps.first, steps.outputs))
        ):
            taps = tap_indices(inputs, outputs, self.kernel_size, self.dilation)
            h = _CausalConv(self.channels, self.kernel_size, name=f"Conv_{index}")(h, taps)
            h = nn.relu(h)
            if self.dropout > 0:
                h = Dropout(self.dropout)(h, deterministic=deterministic)
        position = {p: i for i, p in enumerate(steps.inputs)}
        residual = select_steps(x, np.asarray([position[p] for p in steps.outputs]))
        if residual.shape[-1] != self.channels:
            residual = nn.Dense(self.channels)(residual)
        return nn.relu(h + residual)


class TCN(nn.Module):
    config: TCNConfig

    @nn.compact
    def __call__(self, inputs: Inputs, deterministic: bool = True) -> jax.Array:
        cfg = self.config
        y = inputs["y"]
        features = encoder_features(inputs)
        cone = receptive_cone(features.shape[1], cfg.kernel_size, cfg.block_dilations)
        h = select_steps(features, np.asarray(cone[0].inputs))
        for dilation, steps in zip(cfg.block_dilations, cone, strict=True):
            h = _ResidualBlock(cfg.channels, cfg.kernel_size, dilation, cfg.dropout)(
                h, deterministic, steps
            )
        raw = decoder_for(cfg, len(cfg.quantiles))(
            decoder_summary(h[:, -1], inputs), future_features(inputs), deterministic=deterministic
        )
        return to_series_units(monotone_quantiles(raw, cfg.median_index), y)


init, apply = linen_family(TCN)
