"""The search space of ``optimize``: its dimensions, its grid, the configs of one point.

The search space is plain JSON: each key names the config field it sets (``"model"`` for the
family, ``"model.<field>"``, ``"training.<field>"``, ``"optimizer.<field>"``) and each value is
a fixed value, ``{"choice": [...]}`` or a range ``{"low": a, "high": b, "log": bool, "step": s}``
(integers when ``low``, ``high`` and ``step`` are integers)::

    {"model": "nhits", "model.horizon": 24,
     "model.input_size": {"choice": [48, 96, 168]},
     "optimizer.learning_rate": {"low": 1e-4, "high": 1e-2, "log": true},
     "training.max_steps": 300}
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import optuna

from ntjax.config import (
    ModelConfig,
    OptimizerConfig,
    TrainingConfig,
    dataclass_from_dict,
)
from ntjax.models import CONFIGS, make_config
from ntjax.train.population import PER_MEMBER_FIELDS

SECTIONS = {"training": TrainingConfig, "optimizer": OptimizerConfig}
# Fields a trial must not set: they would make trials write over each other or print bars.
_RESERVED = {"training.checkpoint_dir", "training.checkpoint_every", "training.progress"}
# The keys a population may vary: each member holds its own value (see ntjax.train.population).
POPULATION_KEYS = frozenset(
    f"{section}.{name}" for section, names in PER_MEMBER_FIELDS.items() for name in names
)
_PRIMITIVE = (type(None), bool, int, float, str)


@dataclass(frozen=True)
class Dimension:
    """One key of a search space.

    Attributes:
      name: the space key, e.g. ``optimizer.learning_rate``.
      value: the fixed value (when ``choices`` and ``low`` are None).
      choices: candidate values of a ``choice``.
      low: lower end of a range; the range is integer when ``low``, ``high`` (and ``step``)
        are ints.
      high: upper end of a range.
      log: sample the range on a log scale.
      step: spacing of a discretised range.
    """

    name: str
    value: Any = None
    choices: tuple[Any, ...] | None = None
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None

    @property
    def varies(self) -> bool:
        return self.choices is not None or self.low is not None

    @property
    def is_int(self) -> bool:
        values = [v for v in (self.low, self.high, self.step) if v is not None]
        return self.low is not None and all(
            isinstance(v, int) and not isinstance(v, bool) for v in values
        )

    @property
    def _json_choices(self) -> bool:
        # optuna stores categorical choices only as primitives: lists travel as JSON text.
        return self.choices is not None and not all(isinstance(c, _PRIMITIVE) for c in self.choices)

    def grid(self) -> list[Any]:
        """Every value of this dimension in a grid search (in optuna's encoding)."""
        if self.choices is not None:
            return [self.encode(c) for c in self.choices]
        if self.is_int:
            return list(range(int(self.low), int(self.high) + 1, int(self.step or 1)))
        if self.step is None:
            raise ValueError(
                f"grid search needs a choice or a stepped range for {self.name!r}; "
                f"got the continuous range [{self.low}, {self.high}]."
            )
        count = int(math.floor((self.high - self.low) / self.step + 1e-9)) + 1
        return [float(f"{self.low + i * self.step:.12g}") for i in range(count)]

    def encode(self, value: Any) -> Any:
        return json.dumps(value) if self._json_choices else value

    def decode(self, value: Any) -> Any:
        return json.loads(value) if self._json_choices else value

    def match(self, value: Any) -> Any:
        """This dimension's own form of ``value``: the equal choice, the range's number.

        Raises:
          ValueError: ``value`` is not one of this dimension's values.
        """
        if not self.varies:
            if _plain(value) == _plain(self.value):
                return self.value
        elif self.choices is not None:
            for choice in self.choices:
                if _plain(choice) == _plain(value):
                    return choice
        elif (
            not isinstance(value, bool)
            and isinstance(value, int | float)
            and self.low <= value <= self.high
            and (not self.is_int or value == int(value))
            and (self.step is None or _on_step(value, self.low, self.step))
        ):
            return int(value) if self.is_int else float(value)
        raise ValueError(
            f"{self.name!r} = {value!r} is not in the search space ({self.describe()})."
        )

    def nearest(self, value: Any) -> Any:
        """The value of this dimension nearest ``value``: the closest choice (numbers compared
        on a log scale, lists element by element; the first choice where none compares), or
        ``value`` clipped into the range and rounded onto its step."""
        if not self.varies:
            return self.value
        if self.choices is not None:
            return min(self.choices, key=lambda choice: _distance(value, choice))
        if isinstance(value, bool) or not isinstance(value, int | float):
            value = self.low
        value = min(max(value, self.low), self.high)
        if self.step is not None:
            value = min(self.low + round((value - self.low) / self.step) * self.step, self.high)
        return int(round(value)) if self.is_int else float(value)

    def describe(self) -> str:
        """The dimension in words, for error messages."""
        if self.choices is not None:
            return f"one of {list(self.choices)}"
        if self.low is not None:
            step = f" in steps of {self.step}" if self.step is not None else ""
            return f"from {self.low} to {self.high}{step}"
        return f"fixed at {self.value!r}"

    def suggest(self, trial: optuna.Trial, *, grid: bool) -> Any:
        """The trial's value of this dimension (decoded)."""
        if not self.varies:
            return self.value
        if self.choices is not None or grid:
            return self.decode(trial.suggest_categorical(self.name, self.grid()))
        if self.is_int:
            return trial.suggest_int(
                self.name, int(self.low), int(self.high), step=int(self.step or 1), log=self.log
            )
        return trial.suggest_float(self.name, self.low, self.high, step=self.step, log=self.log)


def _plain(value: Any) -> Any:
    """``value`` with tuples as lists, so that a config's tuple equals a space's list."""
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _on_step(value: float, low: float, step: float) -> bool:
    steps = (value - low) / step
    return abs(steps - round(steps)) < 1e-9


def _distance(a: Any, b: Any) -> float:
    """How far apart two values of a dimension are: 0 when equal, numbers on a log scale
    (absolute where not both positive), lists of one length element by element, else inf."""
    if _plain(a) == _plain(b):
        return 0.0
    if isinstance(a, bool) or isinstance(b, bool):
        return math.inf
    if isinstance(a, int | float) and isinstance(b, int | float):
        return abs(math.log(a / b)) if a > 0 and b > 0 else abs(a - b)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple) and len(a) == len(b):
        return sum(_distance(x, y) for x, y in zip(a, b, strict=True))
    return math.inf


def _parse_dimension(name: str, spec: Any) -> Dimension:
    if not isinstance(spec, Mapping):
        if isinstance(spec, list | tuple):
            return Dimension(name, value=list(spec))
        if not isinstance(spec, _PRIMITIVE):
            raise ValueError(
                f"{name!r}: a fixed value must be JSON data, got {type(spec).__name__}."
            )
        return Dimension(name, value=spec)
    keys = set(spec)
    if keys == {"choice"}:
        choices = spec["choice"]
        if not isinstance(choices, list | tuple) or not choices:
            raise ValueError(f"{name!r}: 'choice' must be a non-empty list, got {choices!r}.")
        return Dimension(name, choices=tuple(choices))
    if {"low", "high"} <= keys <= {"low", "high", "log", "step"}:
        low, high, log, step = spec["low"], spec["high"], spec.get("log", False), spec.get("step")
        for bound in (low, high, *([step] if step is not None else [])):
            if isinstance(bound, bool) or not isinstance(bound, int | float):
                raise ValueError(f"{name!r}: range bounds and step must be numbers, got {bound!r}.")
        if not low < high:
            raise ValueError(f"{name!r}: low ({low}) must be below high ({high}).")
        if not isinstance(log, bool):
            raise ValueError(f"{name!r}: 'log' must be true or false, got {log!r}.")
        if log and (step is not None or low <= 0):
            raise ValueError(f"{name!r}: a log range needs low > 0 and no step.")
        if step is not None and step <= 0:
            raise ValueError(f"{name!r}: step must be positive, got {step}.")
        return Dimension(name, low=low, high=high, log=log, step=step)
    raise ValueError(
        f"{name!r}: expected a fixed value, {{'choice': [...]}} or "
        f"{{'low', 'high'[, 'log', 'step']}}, got keys {sorted(keys)}."
    )


def parse_space(space: Mapping[str, Any]) -> dict[str, Dimension]:
    """Checks a search space and returns its dimensions by key.

    Raises:
      ValueError: an unknown key or field, a malformed value, or no ``model``.
    """
    if not isinstance(space, Mapping):
        raise ValueError(f"the search space must be a mapping, got {type(space).__name__}.")
    if "model" not in space:
        raise ValueError(f"the search space needs a 'model' key (one of {sorted(CONFIGS)}).")
    dimensions = {name: _parse_dimension(name, spec) for name, spec in space.items()}
    model = dimensions["model"]
    kinds = model.choices if model.choices is not None else (model.value,)
    for kind in kinds:
        if kind not in CONFIGS:
            raise ValueError(f"unknown model {kind!r}; known models: {sorted(CONFIGS)}.")
    if model.low is not None:
        raise ValueError("'model' must be a name or a choice of names.")
    for name in dimensions:
        if name == "model":
            continue
        section, _, field = name.partition(".")
        if name in _RESERVED:
            raise ValueError(f"{name!r} cannot be set by a search space.")
        if section == "model":
            classes = [CONFIGS[kind] for kind in kinds]
        elif section in SECTIONS:
            classes = [SECTIONS[section]]
        else:
            raise ValueError(
                f"unknown key {name!r}: keys are 'model', 'model.<field>', 'training.<field>' "
                "or 'optimizer.<field>'."
            )
        for cls in classes:
            if field not in {f.name for f in dataclasses.fields(cls)}:
                raise ValueError(f"unknown key {name!r}: {cls.__name__} has no field {field!r}.")
    return dimensions


def configs_from_params(
    params: Mapping[str, Any],
    *,
    training: TrainingConfig | None = None,
    optimizer: OptimizerConfig | None = None,
) -> tuple[ModelConfig, TrainingConfig, OptimizerConfig]:
    """The configs one point of a space stands for.

    Fields the space does not set come from ``training``/``optimizer``; without a base
    training config, trials run without a progress bar and hold out one horizon for the
    validation loss they report.

    Raises:
      ValueError: a value out of bounds or an inconsistent config.
    """
    fields: dict[str, dict[str, Any]] = {"model": {}, "training": {}, "optimizer": {}}
    for name, value in params.items():
        if name != "model":
            section, _, field = name.partition(".")
            fields[section][field] = value
    config = make_config(params["model"], **fields["model"])
    if training is None:
        train_fields = {"progress": False, "val_size": config.horizon, **fields["training"]}
    else:
        train_fields = {**dataclasses.asdict(training), **fields["training"]}
    training_config = dataclass_from_dict(TrainingConfig, train_fields)
    base_optimizer = dataclasses.asdict(optimizer) if optimizer is not None else {}
    optimizer_config = dataclass_from_dict(
        OptimizerConfig, {**base_optimizer, **fields["optimizer"]}
    )
    return config, training_config, optimizer_config


def grid_size(space: Mapping[str, Any]) -> int:
    """Number of points of the grid over a space."""
    dimensions = parse_space(space)
    return math.prod(len(d.grid()) for d in dimensions.values() if d.varies)


def default_space(model: str, *, horizon: int, max_steps: int = 300) -> dict[str, Any]:
    """A small space for ``ntjax optimize`` without ``--space``: input size x learning rate."""
    return {
        "model": model,
        "model.horizon": horizon,
        "model.input_size": {"choice": [2 * horizon, 4 * horizon, 7 * horizon]},
        "optimizer.learning_rate": {"choice": [3e-4, 1e-3, 3e-3]},
        "training.max_steps": max_steps,
    }
