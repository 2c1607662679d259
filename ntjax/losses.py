"""Elementwise losses.

Each returns per-element values shaped like the prediction; the caller masks and reduces.
Hyperparameters are keyword-only.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike


def pinball_loss(
    predictions: ArrayLike, targets: ArrayLike, *, quantiles: Sequence[float]
) -> jax.Array:
    """Quantile (pinball) loss for several quantiles at once.

    Args:
      predictions: ``[..., n_quantiles]`` predicted quantiles.
      targets: ``[...]`` observed values.
      quantiles: the ``n_quantiles`` levels in (0, 1).

    Returns:
      ``[..., n_quantiles]``: ``max(q * (y - p), (q - 1) * (y - p))``.
    """
    predictions = jnp.asarray(predictions)
    # Levels broadcast over the leading axes explicitly (no implicit rank promotion).
    q = jnp.asarray(quantiles, dtype=predictions.dtype).reshape(
        (1,) * (predictions.ndim - 1) + (-1,)
    )
    error = jnp.asarray(targets)[..., None] - predictions
    return jnp.maximum(q * error, (q - 1.0) * error)


def absolute_error(predictions: ArrayLike, targets: ArrayLike) -> jax.Array:
    """``|y - p|``, shaped like the predictions."""
    return jnp.abs(jnp.asarray(targets) - jnp.asarray(predictions))


def squared_error(predictions: ArrayLike, targets: ArrayLike) -> jax.Array:
    """``(y - p) ** 2``, shaped like the predictions."""
    return jnp.square(jnp.asarray(targets) - jnp.asarray(predictions))


def huber_loss(predictions: ArrayLike, targets: ArrayLike, *, delta: float = 1.0) -> jax.Array:
    """Huber loss: quadratic within ``delta`` of the target, linear beyond."""
    error = jnp.abs(jnp.asarray(targets) - jnp.asarray(predictions))
    quadratic = jnp.minimum(error, delta)
    return 0.5 * quadratic**2 + delta * (error - quadratic)


def gaussian_nll(mean: ArrayLike, scale: ArrayLike, targets: ArrayLike) -> jax.Array:
    """Negative log-likelihood of ``targets`` under Normal(mean, scale)."""
    mean, scale, targets = jnp.asarray(mean), jnp.asarray(scale), jnp.asarray(targets)
    z = (targets - mean) / scale
    return 0.5 * z**2 + jnp.log(scale) + 0.5 * jnp.log(2.0 * jnp.pi)


def student_t_nll(
    mean: ArrayLike, scale: ArrayLike, dof: ArrayLike, targets: ArrayLike
) -> jax.Array:
    """Negative log-likelihood of ``targets`` under a location-scale Student-t."""
    mean, scale, dof, targets = (jnp.asarray(a) for a in (mean, scale, dof, targets))
    z = (targets - mean) / scale
    log_norm = (
        jax.scipy.special.gammaln((dof + 1.0) / 2.0)
        - jax.scipy.special.gammaln(dof / 2.0)
        - 0.5 * jnp.log(dof * jnp.pi)
        - jnp.log(scale)
    )
    return -(log_norm - (dof + 1.0) / 2.0 * jnp.log1p(z**2 / dof))
