"""TCN: temporal convolutional network (Bai, Kolter and Koltun, 2018).

Residual blocks of two dilated causal convolutions (ReLU, dropout) read the step features of the
input window; the dilations double from block to block until the receptive field of the last
step covers the whole window. The last step's features feed the multi-horizon decoder shared
with the recurrent families. The window is read, and the forecast made, in the window's local
units (``recurrent.window_units``).
"""

from __future__ import annotations

import flax.linen as nn
import jax

from ntjax.config import TCNConfig
from ntjax.models._common import Inputs, linen_family, monotone_quantiles
from ntjax.models.recurrent import (
    decoder_for,
    decoder_summary,
    encoder_features,
    future_features,
    to_series_units,
)


class _ResidualBlock(nn.Module):
    channels: int
    kernel_size: int
    dilation: int
    dropout: float

    @nn.compact
    def __call__(self, x: jax.Array, deterministic: bool) -> jax.Array:
        """``[batch, time, features] -> [batch, time, channels]``; output t sees inputs <= t."""
        # Left padding only: no step sees the future.
        causal = [((self.kernel_size - 1) * self.dilation, 0)]
        h = x
        for _ in range(2):
            h = nn.Conv(
                self.channels,
                (self.kernel_size,),
                padding=causal,
                kernel_dilation=(self.dilation,),
            )(h)
            h = nn.relu(h)
            if self.dropout > 0:
                h = nn.Dropout(self.dropout)(h, deterministic=deterministic)
        residual = x if x.shape[-1] == self.channels else nn.Dense(self.channels)(x)
        return nn.relu(h + residual)


class TCN(nn.Module):
    config: TCNConfig

    @nn.compact
    def __call__(self, inputs: Inputs, deterministic: bool = True) -> jax.Array:
        cfg = self.config
        y = inputs["y"]
        h = encoder_features(inputs)
        for dilation in cfg.block_dilations:
            h = _ResidualBlock(cfg.channels, cfg.kernel_size, dilation, cfg.dropout)(
                h, deterministic
            )
        raw = decoder_for(cfg, len(cfg.quantiles))(
            decoder_summary(h[:, -1], inputs), future_features(inputs), deterministic=deterministic
        )
        return to_series_units(monotone_quantiles(raw, cfg.median_index), y)


init, apply = linen_family(TCN)
