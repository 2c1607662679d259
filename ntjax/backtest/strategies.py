"""Trading strategies: forecast returns -> bounded positions, and their name table."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import numpy as np

# Interval widths below this count as this (a model sure of its forecast sizes at the cap).
_MIN_WIDTH = 1e-12


class ForecastReturns(NamedTuple):
    """Forecast simple returns of the next period, each ``[n_periods]``.

    Attributes:
      median: median forecast return ``y_hat[t + 1] / p[t] - 1``.
      lower: lower bound of the strategy's central interval as returns (None for strategies
        without an interval).
      upper: upper bound of that interval as returns (None likewise).
    """

    median: np.ndarray
    lower: np.ndarray | None = None
    upper: np.ndarray | None = None


@dataclass(frozen=True, kw_only=True)
class StrategyConfig:
    """Fields every strategy shares.

    Attributes:
      long_only: positions in ``[0, max_leverage]`` (a short signal means flat) instead of
        ``[-max_leverage, max_leverage]``.
      max_leverage: the largest absolute position, in multiples of equity.
    """

    kind: ClassVar[str] = ""
    long_only: bool = False
    max_leverage: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.long_only, bool):
            raise ValueError(f"long_only must be True or False, got {self.long_only!r}.")
        _check_number("max_leverage", self.max_leverage, 1e-6, 100.0)

    @property
    def interval_levels(self) -> tuple[float, ...]:
        """Central interval levels the strategy reads (their quantiles must be predicted)."""
        return ()

    def target(self, forecast: ForecastReturns) -> np.ndarray:
        """``[n_periods]`` positions before the long-only and leverage bounds."""
        raise NotImplementedError(f"{type(self).__name__} defines no target positions.")

    def build(self) -> Callable[[ForecastReturns], np.ndarray]:
        """The position rule: forecast returns -> ``[n_periods]`` bounded positions."""
        low = 0.0 if self.long_only else -self.max_leverage
        high = self.max_leverage
        target = self.target

        def positions(forecast: ForecastReturns) -> np.ndarray:
            return np.clip(target(forecast), low, high)

        return positions

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **dataclasses.asdict(self)}

    def describe(self) -> str:
        mode = "long-only" if self.long_only else "long/short"
        fields = {k: v for k, v in dataclasses.asdict(self).items() if k != "long_only"}
        extras = ", ".join(f"{k}={v:g}" for k, v in fields.items())
        return f"{self.kind} {mode} ({extras})"


@dataclass(frozen=True, kw_only=True)
class SignStrategy(StrategyConfig):
    """Long ``max_leverage`` when the median forecast return is positive, short (or flat when
    long-only) when it is negative, flat when it is zero."""

    kind: ClassVar[str] = "sign"

    def target(self, forecast: ForecastReturns) -> np.ndarray:
        return self.max_leverage * np.sign(forecast.median)


@dataclass(frozen=True, kw_only=True)
class IntervalStrategy(StrategyConfig):
    """Trades only when the central ``level``% forecast interval of the return excludes zero:
    long ``max_leverage`` when its lower bound is positive, short when its upper bound is
    negative, flat otherwise.

    Attributes:
      level: interval level in percent (the model must predict its two quantiles).
    """

    kind: ClassVar[str] = "interval"
    level: float = 80.0

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_number("level", self.level, 1e-6, 100.0 - 1e-6)

    @property
    def interval_levels(self) -> tuple[float, ...]:
        return (self.level,)

    def target(self, forecast: ForecastReturns) -> np.ndarray:
        long = (forecast.lower > 0).astype(np.float64)
        short = (forecast.upper < 0).astype(np.float64)
        return self.max_leverage * (long - short)


@dataclass(frozen=True, kw_only=True)
class SizedStrategy(StrategyConfig):
    """Position ``scale * median / (upper - lower)``, capped at ``max_leverage``: the forecast
    return per unit of forecast uncertainty (the ``level``% interval width).

    Attributes:
      level: interval level in percent whose width measures the uncertainty.
      scale: position per unit of ``median / width``; with the default 10 a forecast return of
        a tenth of the interval width takes a full unit position.
    """

    kind: ClassVar[str] = "sized"
    level: float = 80.0
    scale: float = 10.0

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_number("level", self.level, 1e-6, 100.0 - 1e-6)
        _check_number("scale", self.scale, 1e-9, 1e9)

    @property
    def interval_levels(self) -> tuple[float, ...]:
        return (self.level,)

    def target(self, forecast: ForecastReturns) -> np.ndarray:
        width = np.maximum(forecast.upper - forecast.lower, _MIN_WIDTH)
        return self.scale * forecast.median / width


@dataclass(frozen=True, kw_only=True)
class HoldStrategy(StrategyConfig):
    """Always long ``max_leverage``, whatever the forecast: buy-and-hold as a strategy (it pays
    the entry cost), the baseline of a comparison table."""

    kind: ClassVar[str] = "hold"

    def target(self, forecast: ForecastReturns) -> np.ndarray:
        return np.full_like(forecast.median, self.max_leverage)

    def describe(self) -> str:
        return f"hold (max_leverage={self.max_leverage:g})"


STRATEGIES: dict[str, type[StrategyConfig]] = {
    "hold": HoldStrategy,
    "sign": SignStrategy,
    "interval": IntervalStrategy,
    "sized": SizedStrategy,
}


def make_strategy(name: str, **fields: Any) -> StrategyConfig:
    """``make_strategy("sized", long_only=True, scale=5)``: a strategy config from its name."""
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; known strategies: {sorted(STRATEGIES)}.")
    cls = STRATEGIES[name]
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(fields) - known)
    if unknown:
        raise ValueError(
            f"strategy {name!r} has no field(s) {unknown}; its fields: {sorted(known)}."
        )
    return cls(**fields)


def _check_number(name: str, value: Any, low: float, high: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}.")
    if not low <= value <= high:
        raise ValueError(f"{name} must be between {low:g} and {high:g}, got {value}.")
