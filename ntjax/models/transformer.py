"""Transformer encoder over the input window with a direct multi-horizon head.

The step features of the window (target, historical and past future-known exogenous values)
are cut into patches (PatchTST, Nie et al., ICLR 2023; one step per token with
``patch_len=1``), embedded, given sinusoidal or learned positional encodings and run through
pre-norm encoder layers (multi-head self-attention and a feed-forward net, each with dropout and
a residual connection). The attention is flax's with its query, key and value projections as
one matmul (``SelfAttention``: same parameters, so older records load and forecast the same;
the step of the zoo benchmark's Transformer took 3-16% less time). The flattened tokens feed
the multi-horizon decoder shared with the recurrent families. The window is read, and the
forecast made, in the window's local units (``recurrent.window_units``), through a monotone
quantile head.
Dropout draws from the ``dropout`` key that ``apply(..., key=...)`` passes in.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ntjax.config import TransformerConfig
from ntjax.models._common import Inputs, linen_family, monotone_quantiles
from ntjax.models.dropout import Dropout
from ntjax.models.recurrent import (
    decoder_for,
    decoder_summary,
    encoder_features,
    future_features,
    to_series_units,
)


def sinusoidal_encoding(n_positions: int, d_model: int) -> np.ndarray:
    """``[n_positions, d_model]`` fixed encodings of Vaswani et al. (2017): sines on even
    features, cosines on odd ones, wavelengths from 2*pi to 10000*2*pi."""
    position = np.arange(n_positions)[:, None]
    rate = np.exp(-np.log(10_000.0) * (np.arange(0, d_model, 2) / d_model))
    encoding = np.zeros((n_positions, d_model), np.float32)
    encoding[:, 0::2] = np.sin(position * rate)
    encoding[:, 1::2] = np.cos(position * rate)[:, : d_model // 2]
    return encoding


def patches(features: jax.Array, patch_len: int, stride: int) -> jax.Array:
    """Cuts ``[batch, time, f]`` into ``[batch, n_patches, patch_len * f]``.

    The window is left-padded with its first step so that the last patch ends at the last step
    (the most recent values are never dropped).
    """
    time = features.shape[1]
    n_patches = -(-(time - patch_len) // stride) + 1
    pad = (n_patches - 1) * stride + patch_len - time
    if pad:
        first = jnp.repeat(features[:, :1], pad, axis=1)
        features = jnp.concatenate([first, features], axis=1)
    index = np.arange(n_patches)[:, None] * stride + np.arange(patch_len)[None, :]
    cut = features[:, index]
    return cut.reshape(features.shape[0], n_patches, -1)


class _HeadProjection(nn.Module):
    """The ``kernel`` ``[d_in, heads, head_dim]`` and ``bias`` ``[heads, head_dim]`` of one of
    flax's attention projections (its ``DenseGeneral``: same names, shapes and initial
    values), returned instead of applied."""

    heads: int
    head_dim: int

    @nn.compact
    def __call__(self, d_in: int) -> tuple[jax.Array, jax.Array]:
        shape = (d_in, self.heads, self.head_dim)

        def kernel_init(key: jax.Array) -> jax.Array:
            # DenseGeneral initialises the flattened [d_in, heads * head_dim] kernel.
            flat = (d_in, self.heads * self.head_dim)
            return nn.initializers.lecun_normal()(key, flat).reshape(shape)

        kernel = self.param("kernel", kernel_init)
        bias = self.param("bias", nn.initializers.zeros_init(), (self.heads, self.head_dim))
        return kernel, bias


class SelfAttention(nn.Module):
    """flax's ``MultiHeadDotProductAttention`` over one input (self-attention), with the
    query, key and value projections as one ``[d_in, 3 * features]`` matmul.

    The parameters are flax's (``query``, ``key``, ``value``, ``out``; names, shapes, initial
    values), so records trained with flax's module load and forecast the same. Attention
    dropout is ``Dropout`` on the weights, one mask shared over the batch and the heads
    (flax's ``broadcast_dropout``). Module name: pass ``MultiHeadDotProductAttention_0``
    where flax's module stood.
    """

    num_heads: int
    qkv_features: int
    dropout_rate: float = 0.0

    @nn.compact
    def __call__(self, x: jax.Array, deterministic: bool) -> jax.Array:
        d_in, heads = x.shape[-1], self.num_heads
        head_dim = self.qkv_features // heads
        projections = [
            _HeadProjection(heads, head_dim, name=n)(d_in) for n in ("query", "key", "value")
        ]
        kernel = jnp.concatenate([k.reshape(d_in, heads * head_dim) for k, _ in projections], 1)
        bias = jnp.concatenate([b.reshape(heads * head_dim) for _, b in projections])
        qkv = (x @ kernel + bias[(None,) * (x.ndim - 1)]).reshape(*x.shape[:-1], 3, heads, head_dim)
        query, key, value = qkv[..., 0, :, :], qkv[..., 1, :, :], qkv[..., 2, :, :]
        query = query / jnp.sqrt(head_dim).astype(query.dtype)
        weights = jax.nn.softmax(jnp.einsum("...qhd,...khd->...hqk", query, key))
        if self.dropout_rate > 0:
            shared = tuple(range(weights.ndim - 2))  # batch and heads
            weights = Dropout(self.dropout_rate, broadcast_dims=shared)(
                weights, deterministic=deterministic
            )
        attended = jnp.einsum("...hqk,...khd->...qhd", weights, value)
        return nn.DenseGeneral(d_in, axis=(-2, -1), name="out")(attended)


class _EncoderLayer(nn.Module):
    d_model: int
    n_heads: int
    ffn_size: int
    dropout: float

    @nn.compact
    def __call__(self, x: jax.Array, deterministic: bool) -> jax.Array:
        h = nn.LayerNorm()(x)
        h = SelfAttention(
            self.n_heads, self.d_model, self.dropout, name="MultiHeadDotProductAttention_0"
        )(h, deterministic)
        x = x + Dropout(self.dropout)(h, deterministic=deterministic)
        h = nn.LayerNorm()(x)
        h = nn.Dense(self.ffn_size)(h)
        h = nn.gelu(h)
        h = Dropout(self.dropout)(h, deterministic=deterministic)
        h = nn.Dense(self.d_model)(h)
        return x + Dropout(self.dropout)(h, deterministic=deterministic)


class Transformer(nn.Module):
    config: TransformerConfig

    @nn.compact
    def __call__(self, inputs: Inputs, deterministic: bool = True) -> jax.Array:
        cfg = self.config
        y = inputs["y"]
        tokens = patches(encoder_features(inputs), cfg.patch_len, cfg.patch_stride)
        h = nn.Dense(cfg.d_model, name="embed")(tokens)
        if cfg.positional_encoding == "learned":
            position = self.param(
                "position", nn.initializers.normal(0.02), (cfg.n_patches, cfg.d_model)
            )
        else:
            position = jnp.asarray(sinusoidal_encoding(cfg.n_patches, cfg.d_model))
        h = Dropout(cfg.dropout)(h + position[None], deterministic=deterministic)
        for _ in range(cfg.n_layers):
            h = _EncoderLayer(cfg.d_model, cfg.n_heads, cfg.ffn_size, cfg.dropout)(h, deterministic)
        h = nn.LayerNorm(name="final_norm")(h)
        raw = decoder_for(cfg, len(cfg.quantiles))(
            decoder_summary(h.reshape(h.shape[0], -1), inputs),
            future_features(inputs),
            deterministic=deterministic,
        )
        return to_series_units(monotone_quantiles(raw, cfg.median_index), y)


init, apply = linen_family(Transformer)
