"""NHITS: Neural Hierarchical Interpolation for Time Series (Challu et al., AAAI 2023).

Each block max-pools its input, runs an MLP and emits a backcast over the input window and a
few forecast coefficients per quantile, which are interpolated to the horizon. Blocks are
chained by backcast residuals; the forecast is the sum of the blocks' forecasts on top of the
last observed value (neuralforecast's "naive level"), passed through a monotone quantile head.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ntjax.config import NHITSConfig
from ntjax.models._common import Inputs, flatten_exog, linen_family, monotone_quantiles
from ntjax.models.dropout import Dropout
from ntjax.models.recurrent import window_units


def interpolation_matrix(n_in: int, n_out: int, mode: str) -> np.ndarray:
    """``[n_in, n_out]`` matrix resampling ``n_in`` knots to ``n_out`` points, matching
    ``torch.nn.functional.interpolate`` (``align_corners=False``) for linear and nearest."""
    out = np.zeros((n_in, n_out), np.float32)
    scale = n_in / n_out
    for i in range(n_out):
        if mode == "nearest":
            out[min(int(np.floor(i * scale)), n_in - 1), i] = 1.0
            continue
        src = max((i + 0.5) * scale - 0.5, 0.0)
        left = min(int(np.floor(src)), n_in - 1)
        right = min(left + 1, n_in - 1)
        frac = src - left
        out[left, i] += 1.0 - frac
        out[right, i] += frac
    return out


def _pool(y: jax.Array, kernel: int, mode: str) -> jax.Array:
    """Non-overlapping pooling over the last axis with ceil mode: ``[b, L] -> [b, ceil(L/k)]``."""
    if kernel == 1:
        return y
    length = y.shape[-1]
    pad = -length % kernel
    if pad:
        fill = y[:, :1] if mode == "max" else jnp.zeros_like(y[:, :1])
        y = jnp.concatenate([jnp.repeat(fill, pad, axis=1), y], axis=1)
    windows = y.reshape(y.shape[0], -1, kernel)
    if mode == "max":
        return windows.max(-1)
    return windows.sum(-1) / jnp.where(
        jnp.arange(windows.shape[1]) == 0, kernel - pad, kernel
    ).astype(y.dtype)


class _Block(nn.Module):
    """One NHITS block. The last block has no backcast head: its backcast would feed nothing
    (dropping it saves a tenth of the model's weights and multiply-adds)."""

    config: NHITSConfig
    pool_kernel: int
    n_coefficients: int
    last: bool = False

    @nn.compact
    def __call__(self, residual, exog, deterministic):
        cfg = self.config
        n_q = len(cfg.quantiles)
        h = _pool(residual, self.pool_kernel, cfg.pooling)
        if exog is not None:
            h = jnp.concatenate([h, exog], axis=-1)
        for _ in range(cfg.n_mlp_layers):
            h = nn.relu(nn.Dense(cfg.mlp_units)(h))
            if cfg.dropout > 0:
                h = Dropout(cfg.dropout)(h, deterministic=deterministic)
        backcast = None if self.last else nn.Dense(cfg.input_size, name="backcast")(h)
        zeros = cfg.forecast_init == "zeros"
        init = nn.initializers.zeros if zeros else nn.initializers.lecun_normal()
        coefficients = nn.Dense(self.n_coefficients * n_q, kernel_init=init, name="forecast")(h)
        # [batch, quantile, coefficient]: the interpolation is then one plain matrix product
        # and the blocks' forecasts add up in the layout the last step transposes once.
        coefficients = coefficients.reshape(-1, self.n_coefficients, n_q).transpose(0, 2, 1)
        if self.n_coefficients == cfg.horizon:  # the interpolation would be the identity
            return backcast, coefficients
        basis = jnp.asarray(
            interpolation_matrix(self.n_coefficients, cfg.horizon, cfg.interpolation)
        )
        return backcast, coefficients @ basis


class NHITS(nn.Module):
    config: NHITSConfig

    @nn.compact
    def __call__(self, inputs: Inputs, deterministic: bool = True) -> jax.Array:
        cfg = self.config
        y = inputs["y"]
        if cfg.window_norm:
            level, spread = window_units(y, cfg.input_size)
            y = (y - level) / spread
        exog = flatten_exog(inputs)
        residual = y
        raw = jnp.zeros((y.shape[0], len(cfg.quantiles), cfg.horizon), y.dtype)
        blocks = [
            (stack, max(cfg.horizon // cfg.freq_downsample[stack], 1))
            for stack, n_blocks in enumerate(cfg.n_blocks)
            for _ in range(n_blocks)
        ]
        for i, (stack, n_coefficients) in enumerate(blocks):
            last = i == len(blocks) - 1
            block = _Block(cfg, cfg.pool_kernel_sizes[stack], n_coefficients, last=last)
            backcast, forecast = block(residual, exog, deterministic)
            if not last:
                residual = residual - backcast
            raw = raw + forecast
        quantiles = monotone_quantiles(raw, cfg.median_index, axis=1).transpose(0, 2, 1)
        out = y[:, -1:, None] + quantiles
        if cfg.window_norm:
            return out * spread[:, :, None] + level[:, :, None]
        return out


init, apply = linen_family(NHITS)
