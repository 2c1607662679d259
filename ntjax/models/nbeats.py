"""N-BEATS: Neural Basis Expansion Analysis for Time Series (Oreshkin et al., ICLR 2020).

Each block runs an MLP on its input and emits coefficients of a backcast basis (over the input
window) and of a forecast basis (over the horizon, one set per quantile). Blocks are chained by
backcast residuals and the forecast is the sum of the blocks' forecasts, passed through the
monotone quantile head. The window is read, and the forecast made, in the window's local units
(relative to its last value, divided by its standard deviation:
``recurrent.window_units``).
Bases, as in neuralforecast:

- ``generic``: a free linear map (the coefficients are the values);
- ``trend``: polynomials ``t ** p``, ``p = 0..n_polynomials``, with ``t`` in [0, 1) over each
  of the window and the horizon;
- ``seasonality``: a constant and cosines/sines of frequencies ``1, 1 + 1/n_harmonics, ...``
  below ``horizon / 2`` cycles per horizon.

With ``stack_types=("trend", "seasonality")`` the model is interpretable: ``components``
splits the point forecast into level, trend and seasonality.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from ntjax.config import NBEATSConfig
from ntjax.models._common import Inputs, Params, as_inputs, linen_family, monotone_quantiles
from ntjax.models.dropout import Dropout
from ntjax.models.recurrent import to_series_units, window_units


def trend_basis(degree: int, size: int) -> np.ndarray:
    """``[degree + 1, size]`` polynomials ``(i / size) ** p``."""
    t = np.arange(size, dtype=np.float64) / size
    return np.stack([t**p for p in range(degree + 1)]).astype(np.float32)


def seasonality_frequencies(n_harmonics: int, horizon: int) -> np.ndarray:
    """Frequencies in cycles per horizon: 0, then ``1, 1 + 1/n_harmonics, ...`` below
    ``horizon / 2`` (neuralforecast's grid)."""
    above_zero = np.arange(n_harmonics, n_harmonics / 2 * horizon) / n_harmonics
    return np.concatenate([np.zeros(1), above_zero])


def seasonality_basis(n_harmonics: int, horizon: int, size: int) -> np.ndarray:
    """``[2 * n_frequencies, size]`` cosines then sines over ``size`` steps, in cycles per
    ``horizon`` steps."""
    frequency = seasonality_frequencies(n_harmonics, horizon)
    grid = 2 * np.pi * (np.arange(size)[:, None] / horizon) * frequency[None, :]
    return np.concatenate([np.cos(grid).T, np.sin(grid).T]).astype(np.float32)


def _bases(config: NBEATSConfig, stack_type: str) -> tuple[np.ndarray, np.ndarray]:
    """(backcast ``[n_basis, input_size]``, forecast ``[n_basis, horizon]``) of a stack type."""
    if stack_type == "trend":
        return (
            trend_basis(config.n_polynomials, config.input_size),
            trend_basis(config.n_polynomials, config.horizon),
        )
    return (
        seasonality_basis(config.n_harmonics, config.horizon, config.input_size),
        seasonality_basis(config.n_harmonics, config.horizon, config.horizon),
    )


class _Block(nn.Module):
    config: NBEATSConfig
    stack_type: str

    @nn.compact
    def __call__(self, residual: jax.Array, deterministic: bool) -> tuple[jax.Array, jax.Array]:
        """``[batch, input_size]`` -> backcast ``[batch, input_size]``, forecast
        ``[batch, horizon, n_quantiles]``."""
        cfg = self.config
        n_q = len(cfg.quantiles)
        h = residual
        for _ in range(cfg.n_mlp_layers):
            h = nn.relu(nn.Dense(cfg.mlp_units)(h))
            if cfg.dropout > 0:
                h = Dropout(cfg.dropout)(h, deterministic=deterministic)
        if self.stack_type == "generic":
            theta = nn.Dense(cfg.input_size + cfg.horizon * n_q, name="theta")(h)
            backcast = theta[:, : cfg.input_size]
            forecast = theta[:, cfg.input_size :].reshape(-1, cfg.horizon, n_q)
            return backcast, forecast
        backcast_basis, forecast_basis = _bases(cfg, self.stack_type)
        n_basis = backcast_basis.shape[0]
        theta = nn.Dense(n_basis * (1 + n_q), name="theta")(h)
        backcast = theta[:, :n_basis] @ jnp.asarray(backcast_basis)
        coefficients = theta[:, n_basis:].reshape(-1, n_basis, n_q)
        forecast = jnp.einsum("bnq,nh->bhq", coefficients, jnp.asarray(forecast_basis))
        return backcast, forecast


class NBEATS(nn.Module):
    config: NBEATSConfig

    def setup(self) -> None:
        cfg = self.config
        self.blocks = [
            _Block(cfg, stack_type)
            for stack_type, n_blocks in zip(cfg.stack_types, cfg.n_blocks, strict=True)
            for _ in range(n_blocks)
        ]

    def stack_forecasts(self, inputs: Inputs, deterministic: bool = True) -> dict[str, jax.Array]:
        """Raw forecasts summed per stack type in the window's local units,
        ``{type: [batch, horizon, n_quantiles]}``."""
        y = inputs["y"]
        level, spread = window_units(y, y.shape[1])
        residual = (y - level) / spread
        totals: dict[str, jax.Array] = {}
        for block in self.blocks:
            backcast, forecast = block(residual, deterministic)
            residual = residual - backcast
            totals[block.stack_type] = totals.get(block.stack_type, 0.0) + forecast
        return totals

    def __call__(self, inputs: Inputs, deterministic: bool = True) -> jax.Array:
        raw = sum(self.stack_forecasts(inputs, deterministic).values())
        return to_series_units(monotone_quantiles(raw, self.config.median_index), inputs["y"])


init, apply = linen_family(NBEATS)


def components(
    config: NBEATSConfig, params: Params, x: ArrayLike | Mapping[str, ArrayLike]
) -> dict[str, jax.Array]:
    """Splits the point forecast into the level and each stack type's contribution.

    Args:
      config: an N-BEATS config (interpretable: ``stack_types=("trend", "seasonality")``).
      params: its parameters.
      x: ``[batch, input_size]`` scaled history (or the inputs dict).

    Returns:
      ``{"level": ..., <stack type>: ...}``, each ``[batch, horizon]`` in scaled units; they
      sum to the point forecast (the median quantile of ``apply``).
    """
    inputs = as_inputs(x)
    totals: dict[str, Any] = NBEATS(config).apply(
        {"params": params}, inputs, method=NBEATS.stack_forecasts
    )
    level, spread = window_units(inputs["y"], config.input_size)
    parts = {"level": jnp.broadcast_to(level, (level.shape[0], config.horizon))}
    parts.update({name: spread * raw[..., config.median_index] for name, raw in totals.items()})
    return parts
