"""Array coercion shared by the metrics modules."""

from __future__ import annotations

import numpy as np
from jax.typing import ArrayLike


def _pair(y: ArrayLike, y_hat: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    y, y_hat = np.asarray(y, np.float64), np.asarray(y_hat, np.float64)
    if y.shape != y_hat.shape:
        raise ValueError(f"y has shape {y.shape} but y_hat has shape {y_hat.shape}.")
    return y, y_hat
