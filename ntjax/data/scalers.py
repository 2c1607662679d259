"""Per-series affine scalers, fitted on training data only and inverted exactly.

Every scaler maps ``x -> (x - loc) / scale`` per series and channel, so one state
(``loc``, ``scale``) serves all kinds; ``inverse`` is ``x * scale + loc``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

# Statistics of one kind, over the time axis of ``[series, time, channel]`` NaN-padded data.
_FITS: dict[str, Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]] = {
    "identity": lambda x: (np.zeros(x.shape[::2]), np.ones(x.shape[::2])),
    "standard": lambda x: (np.nanmean(x, axis=1), np.nanstd(x, axis=1)),
    "robust": lambda x: (
        np.nanmedian(x, axis=1),
        np.nanquantile(x, 0.75, axis=1) - np.nanquantile(x, 0.25, axis=1),
    ),
    "minmax": lambda x: (np.nanmin(x, axis=1), np.nanmax(x, axis=1) - np.nanmin(x, axis=1)),
}


@dataclass(frozen=True, eq=False)
class ScalerState:
    """Fitted statistics: ``loc`` and ``scale`` are ``[n_series, n_channels]`` float64."""

    kind: str
    ids: tuple[str, ...]
    columns: tuple[str, ...]
    loc: np.ndarray
    scale: np.ndarray

    def rows(self, ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``loc``/``scale`` rows for ``ids`` and a mask of which ids were fitted."""
        index = {u: i for i, u in enumerate(self.ids)}
        known = np.array([u in index for u in ids], bool)
        pos = np.array([index.get(u, 0) for u in ids], np.int64)
        return self.loc[pos], self.scale[pos], known

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "ids": list(self.ids),
            "columns": list(self.columns),
            "loc": self.loc.tolist(),
            "scale": self.scale.tolist(),
        }

    @classmethod
    def from_dict(cls, data: dict) -> ScalerState:
        n_cols = len(data["columns"])
        return cls(
            kind=data["kind"],
            ids=tuple(data["ids"]),
            columns=tuple(data["columns"]),
            loc=np.asarray(data["loc"], np.float64).reshape(-1, n_cols),
            scale=np.asarray(data["scale"], np.float64).reshape(-1, n_cols),
        )


def fit_scaler(
    kind: str, values: np.ndarray, *, ids: Sequence[str], columns: Sequence[str]
) -> ScalerState:
    """Fits per-series statistics.

    Args:
      kind: identity, standard, robust or minmax.
      values: ``[n_series, time, n_channels]`` with NaN where a series has no data.
      ids: names of the series.
      columns: names of the channels.
    """
    if kind not in _FITS:
        raise ValueError(f"scaler must be one of {sorted(_FITS)}, got {kind!r}.")
    loc, scale = _FITS[kind](np.asarray(values, np.float64))
    # A constant series has no spread: leave it unscaled rather than divide by zero.
    scale = np.where(np.isfinite(scale) & (scale > 1e-12), scale, 1.0)
    loc = np.where(np.isfinite(loc), loc, 0.0)
    return ScalerState(kind, tuple(ids), tuple(columns), loc, scale)


def extend_scaler(state: ScalerState, values: np.ndarray, ids: Sequence[str]) -> ScalerState:
    """``state`` with rows added for the series of ``ids`` it does not have, fitted (same kind)
    on their rows of ``values`` ``[len(ids), time, n_channels]``; known series keep theirs."""
    _, _, known = state.rows(ids)
    if known.all():
        return state
    new = [i for i, k in enumerate(known) if not k]
    fresh = fit_scaler(
        state.kind, np.asarray(values)[new], ids=[ids[i] for i in new], columns=state.columns
    )
    return ScalerState(
        state.kind,
        (*state.ids, *fresh.ids),
        state.columns,
        np.concatenate([state.loc, fresh.loc]),
        np.concatenate([state.scale, fresh.scale]),
    )


def transform(values: np.ndarray, loc: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """``(values - loc) / scale``; values ``[series, time, channel]``, loc/scale ``[series,
    channel]``."""
    return (values - loc[:, None, :]) / scale[:, None, :]


def inverse(values: np.ndarray, loc: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """``values * scale + loc`` with loc/scale ``[series]`` broadcast over the other axes."""
    extra = (None,) * (values.ndim - 1)
    return values * scale[(slice(None), *extra)] + loc[(slice(None), *extra)]
