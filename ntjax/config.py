"""Frozen, typed configs: models, training and optimisation.

Every config is a frozen, hashable dataclass (a static argument of jitted functions), varied with
``dataclasses.replace``. Values are bounded on construction so that a request cannot exhaust
memory. ``OptimizerConfig.build`` is the one place an optimizer name becomes an optax chain.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import optax

DEFAULT_QUANTILES = (0.1, 0.5, 0.9)

# Upper bounds that keep a single request from exhausting memory; generous for research use.
MAX_HORIZON = 10_000
MAX_INPUT_SIZE = 100_000
MAX_WIDTH = 8_192
MAX_LAYERS = 64
MAX_STEPS = 10_000_000
MAX_BATCH = 1_000_000


def _check_int(name: str, value: Any, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer, got {value!r}.")
    if not low <= value <= high:
        raise ValueError(f"{name} must be between {low} and {high}, got {value}.")


def _check_float(name: str, value: Any, low: float, high: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}.")
    if not low <= value <= high:
        raise ValueError(f"{name} must be between {low} and {high}, got {value}.")


def _as_tuple(obj: Any, name: str) -> None:
    """Turns list fields into tuples so configs stay hashable (JSON gives lists)."""
    value = getattr(obj, name)
    if isinstance(value, list):
        object.__setattr__(obj, name, tuple(_as_tuple_deep(v) for v in value))


def _as_tuple_deep(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_as_tuple_deep(v) for v in value)
    return value


@dataclass(frozen=True, kw_only=True)
class ModelConfig:
    """Fields every model family shares.

    Attributes:
      horizon: number of future steps predicted at once.
      input_size: number of past steps the model sees.
      quantiles: predicted quantile levels, strictly increasing in (0, 1).
      hist_exog: names of exogenous columns known only up to the forecast origin.
      futr_exog: names of exogenous columns known over the horizon too (calendar, schedules).
    """

    kind: ClassVar[str] = ""
    horizon: int
    input_size: int
    quantiles: tuple[float, ...] = DEFAULT_QUANTILES
    hist_exog: tuple[str, ...] = ()
    futr_exog: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            _as_tuple(self, f.name)
        _check_int("horizon", self.horizon, 1, MAX_HORIZON)
        _check_int("input_size", self.input_size, 1, MAX_INPUT_SIZE)
        qs = self.quantiles
        if not isinstance(qs, tuple) or not qs or len(qs) > 99:
            raise ValueError(f"quantiles must be a non-empty tuple of at most 99 levels, got {qs!r}.")
        for q in qs:
            _check_float("each quantile", q, 1e-6, 1 - 1e-6)
        if any(b <= a for a, b in zip(qs, qs[1:], strict=False)):
            raise ValueError(f"quantiles must be strictly increasing, got {qs}.")
        for name in ("hist_exog", "futr_exog"):
            cols = getattr(self, name)
            if not all(isinstance(c, str) and c for c in cols):
                raise ValueError(f"{name} must be a tuple of column names, got {cols!r}.")
            if set(cols) & {"unique_id", "ds", "y"}:
                raise ValueError(f"{name} cannot name unique_id, ds or y.")
        if set(self.hist_exog) & set(self.futr_exog):
            raise ValueError("a column cannot be both in hist_exog and futr_exog.")

    @property
    def median_index(self) -> int:
        """Index of the quantile closest to 0.5 (the point forecast)."""
        return min(range(len(self.quantiles)), key=lambda i: abs(self.quantiles[i] - 0.5))

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **dataclasses.asdict(self)}


@dataclass(frozen=True, kw_only=True)
class NHITSConfig(ModelConfig):
    """NHITS (Challu et al., 2023): stacks of MLP blocks on pooled inputs, each predicting a few
    forecast coefficients that are interpolated to the horizon; blocks subtract their backcast.

    Defaults follow neuralforecast: three stacks of one block, two 512-unit layers, pooling kernels
    (2, 2, 1), downsampling (4, 2, 1) of the forecast coefficients.
    """

    kind: ClassVar[str] = "nhits"
    n_blocks: tuple[int, ...] = (1, 1, 1)
    mlp_units: int = 512
    n_mlp_layers: int = 2
    pool_kernel_sizes: tuple[int, ...] = (2, 2, 1)
    freq_downsample: tuple[int, ...] = (4, 2, 1)
    pooling: str = "max"
    interpolation: str = "linear"
    dropout: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        n_stacks = len(self.n_blocks)
        _check_int("number of stacks", n_stacks, 1, MAX_LAYERS)
        for b in self.n_blocks:
            _check_int("n_blocks per stack", b, 1, MAX_LAYERS)
        if len(self.pool_kernel_sizes) != n_stacks or len(self.freq_downsample) != n_stacks:
            raise ValueError(
                "n_blocks, pool_kernel_sizes and freq_downsample must have one entry per stack."
            )
        for k in self.pool_kernel_sizes:
            _check_int("pool kernel size", k, 1, self.input_size)
        for d in self.freq_downsample:
            _check_int("freq_downsample", d, 1, MAX_HORIZON)
        _check_int("mlp_units", self.mlp_units, 1, MAX_WIDTH)
        _check_int("n_mlp_layers", self.n_mlp_layers, 1, MAX_LAYERS)
        if self.pooling not in ("max", "avg"):
            raise ValueError(f"pooling must be 'max' or 'avg', got {self.pooling!r}.")
        if self.interpolation not in ("linear", "nearest"):
            raise ValueError(
                f"interpolation must be 'linear' or 'nearest', got {self.interpolation!r}."
            )
        _check_float("dropout", self.dropout, 0.0, 0.95)


SCALERS = ("identity", "standard", "robust", "minmax")


@dataclass(frozen=True, kw_only=True)
class TrainingConfig:
    """How a model is fitted.

    Attributes:
      max_steps: optimisation steps.
      batch_size: windows sampled per step (split across devices on a data-parallel mesh).
      val_size: steps at the end of each series held out for validation (0: no validation).
      val_check_steps: steps between validation checks (and progress-bar updates).
      early_stopping_patience: validation checks without improvement before stopping
        (None: never stop early). The best parameters seen are restored at the end.
      seed: seed of the one PRNG key of the run.
      scaler: per-series scaler fitted on the training part: identity, standard, robust, minmax.
      checkpoint_dir: folder for resumable checkpoints (None: no checkpoints).
      checkpoint_every: steps between checkpoints.
      devices: number of local devices to train on data-parallel (None: as many as divide
        batch_size).
      progress: show a tqdm progress bar on stderr.
    """

    max_steps: int = 1000
    batch_size: int = 256
    val_size: int = 0
    val_check_steps: int = 100
    early_stopping_patience: int | None = None
    seed: int = 0
    scaler: str = "standard"
    checkpoint_dir: str | None = None
    checkpoint_every: int = 0
    devices: int | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        _check_int("max_steps", self.max_steps, 1, MAX_STEPS)
        _check_int("batch_size", self.batch_size, 1, MAX_BATCH)
        _check_int("val_size", self.val_size, 0, 10 * MAX_INPUT_SIZE)
        _check_int("val_check_steps", self.val_check_steps, 1, MAX_STEPS)
        if self.early_stopping_patience is not None:
            _check_int("early_stopping_patience", self.early_stopping_patience, 1, MAX_STEPS)
        _check_int("seed", self.seed, 0, 2**31 - 1)
        if self.scaler not in SCALERS:
            raise ValueError(f"scaler must be one of {SCALERS}, got {self.scaler!r}.")
        _check_int("checkpoint_every", self.checkpoint_every, 0, MAX_STEPS)
        if self.devices is not None:
            _check_int("devices", self.devices, 1, 4096)


def _schedule_constant(cfg: OptimizerConfig, total_steps: int) -> optax.Schedule:
    return optax.constant_schedule(cfg.learning_rate)


def _schedule_cosine(cfg: OptimizerConfig, total_steps: int) -> optax.Schedule:
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0 if cfg.warmup_steps else cfg.learning_rate,
        peak_value=cfg.learning_rate,
        warmup_steps=cfg.warmup_steps,
        decay_steps=max(total_steps, cfg.warmup_steps + 1),
        end_value=cfg.learning_rate * cfg.final_lr_fraction,
    )


def _schedule_step(cfg: OptimizerConfig, total_steps: int) -> optax.Schedule:
    # neuralforecast's default: decay by `decay_rate` a few times over the run.
    every = cfg.decay_every or max(1, total_steps // 3)
    return optax.exponential_decay(
        cfg.learning_rate, transition_steps=every, decay_rate=cfg.decay_rate, staircase=True
    )


SCHEDULES: dict[str, Callable[[OptimizerConfig, int], optax.Schedule]] = {
    "constant": _schedule_constant,
    "cosine": _schedule_cosine,
    "step": _schedule_step,
    # plateau runs a constant base rate scaled by optax.contrib.reduce_on_plateau (see build).
    "plateau": _schedule_constant,
}

OPTIMIZERS: dict[str, Callable[[optax.Schedule, OptimizerConfig], optax.GradientTransformation]] = {
    "adam": lambda lr, cfg: optax.adam(lr),
    "adamw": lambda lr, cfg: optax.adamw(lr, weight_decay=cfg.weight_decay),
    "sgd": lambda lr, cfg: optax.sgd(lr, momentum=cfg.momentum or None),
    "rmsprop": lambda lr, cfg: optax.rmsprop(lr, momentum=cfg.momentum),
}


@dataclass(frozen=True, kw_only=True)
class OptimizerConfig:
    """The optimizer, its learning-rate schedule and gradient clipping.

    ``weight_decay`` is decoupled for ``adamw`` and added to the gradient (L2) for the others.
    ``plateau`` scales the rate by ``decay_rate`` after ``plateau_patience`` steps without a
    better training loss (optax.contrib.reduce_on_plateau).
    """

    name: str = "adam"
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.0
    grad_clip: float | None = 1.0
    schedule: str = "constant"
    warmup_steps: int = 0
    final_lr_fraction: float = 0.0
    decay_every: int | None = None
    decay_rate: float = 0.5
    plateau_patience: int = 50

    def __post_init__(self) -> None:
        if self.name not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {sorted(OPTIMIZERS)}, got {self.name!r}.")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {sorted(SCHEDULES)}, got {self.schedule!r}.")
        _check_float("learning_rate", self.learning_rate, 1e-9, 10.0)
        _check_float("weight_decay", self.weight_decay, 0.0, 10.0)
        _check_float("momentum", self.momentum, 0.0, 0.9999)
        if self.grad_clip is not None:
            _check_float("grad_clip", self.grad_clip, 1e-6, 1e6)
        _check_int("warmup_steps", self.warmup_steps, 0, MAX_STEPS)
        _check_float("final_lr_fraction", self.final_lr_fraction, 0.0, 1.0)
        if self.decay_every is not None:
            _check_int("decay_every", self.decay_every, 1, MAX_STEPS)
        _check_float("decay_rate", self.decay_rate, 1e-6, 1.0)
        _check_int("plateau_patience", self.plateau_patience, 1, MAX_STEPS)

    def build(self, total_steps: int) -> optax.GradientTransformationExtraArgs:
        """The optax chain: clipping, (L2), optimizer with schedule, (plateau scaling).

        The chain's ``update`` accepts ``value=loss`` (used by the plateau schedule).
        """
        lr = SCHEDULES[self.schedule](self, total_steps)
        parts: list[optax.GradientTransformation] = []
        if self.grad_clip is not None:
            parts.append(optax.clip_by_global_norm(self.grad_clip))
        if self.weight_decay and self.name != "adamw":
            parts.append(optax.add_decayed_weights(self.weight_decay))
        parts.append(OPTIMIZERS[self.name](lr, self))
        if self.schedule == "plateau":
            parts.append(
                optax.contrib.reduce_on_plateau(
                    factor=self.decay_rate, patience=self.plateau_patience
                )
            )
        return optax.chain(*parts)


def config_from_dict(data: dict[str, Any], table: dict[str, type[ModelConfig]]) -> ModelConfig:
    """Rebuilds a model config from ``to_dict`` output, accepting only kinds from ``table``."""
    data = dict(data)
    kind = data.pop("kind", None)
    if kind not in table:
        raise ValueError(f"unknown model kind {kind!r}; known kinds: {sorted(table)}.")
    cls = table[kind]
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ValueError(f"unknown fields for {kind}: {sorted(unknown)}.")
    return cls(**data)


def dataclass_from_dict(cls: type, data: dict[str, Any]) -> Any:
    """Builds TrainingConfig/OptimizerConfig from a dict, refusing unknown fields."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ValueError(f"unknown fields for {cls.__name__}: {sorted(unknown)}.")
    return cls(**data)


__all__ = [
    "DEFAULT_QUANTILES",
    "ModelConfig",
    "NHITSConfig",
    "OptimizerConfig",
    "TrainingConfig",
]
