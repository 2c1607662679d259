"""Frozen, typed configs: models, training and optimisation.

Every config is a frozen, hashable dataclass (a static argument of jitted functions), varied with
``dataclasses.replace``. Values are bounded on construction so that a request cannot exhaust
memory. ``OptimizerConfig.build`` is the one place an optimizer name becomes an optax chain.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import jax
import optax


class ConfigError(ValueError):
    """A config that cannot run: a value out of bounds, inconsistent fields, or a window too
    long for the data. A tuning trial with such a config fails; the study goes on."""


DEFAULT_QUANTILES = (0.025, 0.1, 0.5, 0.9, 0.975)

# Upper bounds that keep a single request from exhausting memory; generous for research use.
MAX_HORIZON = 10_000
MAX_INPUT_SIZE = 100_000
MAX_WIDTH = 8_192
MAX_LAYERS = 64
MAX_STEPS = 10_000_000
MAX_BATCH = 1_000_000


def _check_int(name: str, value: Any, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name} must be an integer, got {value!r}.")
    if not low <= value <= high:
        raise ConfigError(f"{name} must be between {low} and {high}, got {value}.")


def _check_float(name: str, value: Any, low: float, high: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number, got {value!r}.")
    if not low <= value <= high:
        raise ConfigError(f"{name} must be between {low} and {high}, got {value}.")


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
            raise ConfigError(
                f"quantiles must be a non-empty tuple of at most 99 levels, got {qs!r}."
            )
        for q in qs:
            _check_float("each quantile", q, 1e-6, 1 - 1e-6)
        if any(b <= a for a, b in zip(qs, qs[1:], strict=False)):
            raise ConfigError(f"quantiles must be strictly increasing, got {qs}.")
        for name in ("hist_exog", "futr_exog"):
            cols = getattr(self, name)
            if not all(isinstance(c, str) and c for c in cols):
                raise ConfigError(f"{name} must be a tuple of column names, got {cols!r}.")
            if set(cols) & {"unique_id", "ds", "y"}:
                raise ConfigError(f"{name} cannot name unique_id, ds or y.")
        if set(self.hist_exog) & set(self.futr_exog):
            raise ConfigError("a column cannot be both in hist_exog and futr_exog.")

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
    (2, 2, 1), downsampling (4, 2, 1) of the forecast coefficients. ``window_norm`` reads each
    window in its local units (relative to its last value, divided by its standard deviation),
    as N-BEATS and the recurrent families do: robust to levels never seen in training. On by
    default: it gave the lowest validation error on all four long-horizon datasets
    (``experiments/default_recipe.py``); ``window_norm=False`` reads the scaled series as is.
    ``forecast_init`` initialises the blocks' forecast layers: ``zeros`` (default) starts the
    model at the last-value forecast (its output is a change from the last value), which
    training leaves only where validation improves; ``lecun_normal`` is flax's default, as in
    the paper. Zeros gave lower test MSE in both seeds on 6 of 8 long-horizon cells and within
    2.4% on the other two (ETTm2; ``experiments/forecast_init.py``).
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
    window_norm: bool = True
    forecast_init: str = "zeros"

    def __post_init__(self) -> None:
        super().__post_init__()
        n_stacks = len(self.n_blocks)
        _check_int("number of stacks", n_stacks, 1, MAX_LAYERS)
        for b in self.n_blocks:
            _check_int("n_blocks per stack", b, 1, MAX_LAYERS)
        if len(self.pool_kernel_sizes) != n_stacks or len(self.freq_downsample) != n_stacks:
            raise ConfigError(
                "n_blocks, pool_kernel_sizes and freq_downsample must have one entry per stack."
            )
        for k in self.pool_kernel_sizes:
            _check_int("pool kernel size", k, 1, self.input_size)
        for d in self.freq_downsample:
            _check_int("freq_downsample", d, 1, MAX_HORIZON)
        _check_int("mlp_units", self.mlp_units, 1, MAX_WIDTH)
        _check_int("n_mlp_layers", self.n_mlp_layers, 1, MAX_LAYERS)
        if self.pooling not in ("max", "avg"):
            raise ConfigError(f"pooling must be 'max' or 'avg', got {self.pooling!r}.")
        if self.interpolation not in ("linear", "nearest"):
            raise ConfigError(
                f"interpolation must be 'linear' or 'nearest', got {self.interpolation!r}."
            )
        _check_float("dropout", self.dropout, 0.0, 0.95)
        if self.forecast_init not in FORECAST_INITS:
            raise ConfigError(
                f"forecast_init must be one of {FORECAST_INITS}, got {self.forecast_init!r}."
            )


FORECAST_INITS = ("zeros", "lecun_normal")
SCALERS = ("identity", "standard", "robust", "minmax")
CALIBRATIONS = ("rolling", "split")


@dataclass(frozen=True, kw_only=True)
class TrainingConfig:
    """How a model is fitted.

    Attributes:
      max_steps: optimisation steps. 0 keeps the model as initialised (no gradient step):
        with NHITS's zero forecast start and ``window_norm`` that model forecasts each
        window's last value, the floor an Auto search scores (``nt.auto_first_trials``).
      batch_size: windows sampled per step (split across devices on a data-parallel mesh).
      val_size: steps at the end of each series held out for validation (0: no validation).
        None (the default): five horizons, at most a fifth of the rows the shortest series has
        beyond one window (0 where that is less than a horizon); the record keeps the number.
      val_check_steps: steps between validation checks (and progress-bar updates).
      early_stopping_patience: validation checks without improvement before stopping
        (None: never stop early). The best parameters seen are restored at the end.

    The defaults are ntjax's training recipe, chosen on the validation splits of ETTh1, ETTm1,
    ETTm2 and exchange_rate (``experiments/default_recipe.py``): a validation tail of five
    horizons checked every 50 steps, the best parameters kept, patience 5; with
    ``OptimizerConfig``'s step schedule and NHITS's ``window_norm``.
      seed: seed of the one PRNG key of the run.
      scaler: per-series scaler fitted on the training part: identity, standard, robust, minmax.
      checkpoint_dir: folder for resumable checkpoints (None: no checkpoints).
      checkpoint_every: steps between checkpoints.
      devices: number of local devices to train on data-parallel (None: as many as divide
        batch_size).
      progress: show a tqdm progress bar on stderr.
      calibration: how intervals are calibrated out of the box (``ntjax.calibrate``):
        ``rolling`` (default: conformal offsets from the latest windows the model did not fit,
        updated as observations resolve), ``split`` (fixed offsets from the calibration tail),
        or None (the raw quantile heads).
      calibration_size: steps at the end of each series held out of training (no gradient, no
        early stopping) whose conformity scores start the calibration. None: ten horizons, at
        most a fifth of the rows the shortest series has beyond one training window and the
        validation tail. 0 with ``rolling``: scores come only from rows after training.
      shard_series: each device holds and samples only its own series
        (``ntjax.train.shards``): over several processes each passes only its series
        (``nt.distributed.local_series``); in one process the series are split over its
        devices. Scalers are per series; validation and calibration are pooled over every
        shard. For one model's fit (not ensembles, populations or distillation).
    """

    max_steps: int = 1000
    batch_size: int = 256
    val_size: int | None = None
    val_check_steps: int = 50
    early_stopping_patience: int | None = 5
    seed: int = 0
    scaler: str = "standard"
    checkpoint_dir: str | None = None
    checkpoint_every: int = 0
    devices: int | None = None
    progress: bool = True
    calibration: str | None = "rolling"
    calibration_size: int | None = None
    shard_series: bool = False

    def __post_init__(self) -> None:
        _check_int("max_steps", self.max_steps, 0, MAX_STEPS)
        if self.calibration is not None and self.calibration not in CALIBRATIONS:
            raise ConfigError(
                f"calibration must be one of {CALIBRATIONS} or None, got {self.calibration!r}."
            )
        if self.calibration_size is not None:
            _check_int("calibration_size", self.calibration_size, 0, 10 * MAX_INPUT_SIZE)
        _check_int("batch_size", self.batch_size, 1, MAX_BATCH)
        if self.val_size is not None:
            _check_int("val_size", self.val_size, 0, 10 * MAX_INPUT_SIZE)
        _check_int("val_check_steps", self.val_check_steps, 1, MAX_STEPS)
        if self.early_stopping_patience is not None:
            _check_int("early_stopping_patience", self.early_stopping_patience, 1, MAX_STEPS)
        _check_int("seed", self.seed, 0, 2**31 - 1)
        if self.scaler not in SCALERS:
            raise ConfigError(f"scaler must be one of {SCALERS}, got {self.scaler!r}.")
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
    The default schedule, ``step``, halves the rate three times over the run (``decay_rate``
    every ``decay_every``, default a third of the steps): part of the default recipe (see
    ``TrainingConfig``); ``constant`` keeps it fixed. ``plateau`` scales the rate by
    ``decay_rate`` after ``plateau_patience`` steps without a better training loss
    (optax.contrib.reduce_on_plateau).

    ``freeze`` holds glob patterns over parameter paths (``"_Block_0/Dense_1/kernel"``, see
    ``parameter_paths``): matching parameters get zero updates (``optax.partition`` with
    ``set_to_zero``), so they stay bit-identical; clipping and weight decay see only the
    trainable rest. ``("*",)`` freezes everything.
    """

    name: str = "adam"
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.0
    grad_clip: float | None = 1.0
    schedule: str = "step"
    warmup_steps: int = 0
    final_lr_fraction: float = 0.0
    decay_every: int | None = None
    decay_rate: float = 0.5
    plateau_patience: int = 50
    freeze: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # A list (from JSON) becomes a tuple: the config is a cache key and must hash.
        object.__setattr__(self, "freeze", tuple(self.freeze))
        if not all(isinstance(p, str) and p for p in self.freeze):
            raise ConfigError(f"freeze takes non-empty glob patterns, got {self.freeze!r}.")
        if self.name not in OPTIMIZERS:
            raise ConfigError(f"optimizer must be one of {sorted(OPTIMIZERS)}, got {self.name!r}.")
        if self.schedule not in SCHEDULES:
            raise ConfigError(
                f"schedule must be one of {sorted(SCHEDULES)}, got {self.schedule!r}."
            )
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
        chain = optax.chain(*parts)
        if not self.freeze:
            return chain
        return optax.partition(
            {"trainable": chain, "frozen": optax.set_to_zero()},
            lambda params: jax.tree.map(
                lambda frozen: "frozen" if frozen else "trainable", frozen_mask(params, self.freeze)
            ),
        )


def parameter_paths(params: Any) -> list[str]:
    """The ``/``-joined path of every leaf of a parameter tree, in leaf order (what
    ``OptimizerConfig.freeze`` patterns match), e.g. ``decoder/output/kernel``."""
    leaves = jax.tree_util.tree_flatten_with_path(params)[0]
    return [jax.tree_util.keystr(path, simple=True, separator="/") for path, _ in leaves]


def is_frozen(path: str, patterns: tuple[str, ...]) -> bool:
    """Whether a parameter path matches one of the glob ``patterns`` (``*`` spans ``/``)."""
    return any(fnmatch.fnmatchcase(path, pattern) for pattern in patterns)


def frozen_mask(params: Any, patterns: tuple[str, ...]) -> Any:
    """A tree like ``params`` of bools: True where a leaf's path matches one of ``patterns``."""
    flags = [is_frozen(path, patterns) for path in parameter_paths(params)]
    return jax.tree.unflatten(jax.tree.structure(params), flags)


def config_from_dict(data: dict[str, Any], table: dict[str, type[ModelConfig]]) -> ModelConfig:
    """Rebuilds a model config from ``to_dict`` output, accepting only kinds from ``table``."""
    data = dict(data)
    kind = data.pop("kind", None)
    if kind not in table:
        raise ConfigError(f"unknown model kind {kind!r}; known kinds: {sorted(table)}.")
    cls = table[kind]
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ConfigError(f"unknown fields for {kind}: {sorted(unknown)}.")
    if "members" in data:  # an ensemble's member configs, kinds from the same table
        data["members"] = tuple(
            config_from_dict(m, table) if isinstance(m, dict) else m for m in data["members"]
        )
    return cls(**data)


def dataclass_from_dict(cls: type, data: dict[str, Any]) -> Any:
    """Builds TrainingConfig/OptimizerConfig from a dict, refusing unknown fields."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ConfigError(f"unknown fields for {cls.__name__}: {sorted(unknown)}.")
    return cls(**data)


__all__ = [
    "ConfigError",
    "DEFAULT_QUANTILES",
    "ModelConfig",
    "NHITSConfig",
    "OptimizerConfig",
    "TrainingConfig",
]


# --- The model zoo: N-BEATS, LSTM with attention, GRU, TCN, DeepAR, Transformer. ---

NBEATS_BASES = ("generic", "trend", "seasonality")


def _check_no_exog(config: ModelConfig, *, allow_futr: bool = False) -> None:
    if config.hist_exog:
        raise ConfigError(
            f"{config.kind} takes no historical exogenous columns (hist_exog); "
            "use nhits, lstm_attention, gru, tcn or transformer."
        )
    if config.futr_exog and not allow_futr:
        raise ConfigError(
            f"{config.kind} takes no exogenous columns; "
            "use nhits, lstm_attention, gru, tcn, transformer or deepar."
        )


def _check_decoder(config: Any) -> None:
    """Bounds of the multi-horizon (MQ) decoder fields shared by the sequence encoders."""
    _check_int("context_size", config.context_size, 1, MAX_WIDTH)
    _check_int("decoder_hidden_size", config.decoder_hidden_size, 1, MAX_WIDTH)
    _check_int("decoder_layers", config.decoder_layers, 0, MAX_LAYERS)
    _check_float("dropout", config.dropout, 0.0, 0.95)


@dataclass(frozen=True, kw_only=True)
class NBEATSConfig(ModelConfig):
    """N-BEATS (Oreshkin et al., ICLR 2020): stacks of MLP blocks that each emit basis
    coefficients for a backcast (subtracted from the block's input) and a forecast.

    ``stack_types`` picks each stack's basis: ``generic`` (a free linear map), ``trend``
    (polynomials of degree ``n_polynomials``) or ``seasonality`` (Fourier terms, ``n_harmonics``
    per cycle of the horizon). ``("trend", "seasonality")`` is the interpretable N-BEATS, whose
    components ``ntjax.models.nbeats.components`` returns. Defaults follow neuralforecast: one
    block per stack of types generic (identity), trend, seasonality; two 512-unit layers.
    """

    kind: ClassVar[str] = "nbeats"
    stack_types: tuple[str, ...] = ("generic", "trend", "seasonality")
    n_blocks: tuple[int, ...] = (1, 1, 1)
    mlp_units: int = 512
    n_mlp_layers: int = 2
    n_harmonics: int = 2
    n_polynomials: int = 2
    dropout: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_no_exog(self)
        _check_int("number of stacks", len(self.stack_types), 1, MAX_LAYERS)
        for stack_type in self.stack_types:
            if stack_type not in NBEATS_BASES:
                raise ConfigError(f"stack_types must be among {NBEATS_BASES}, got {stack_type!r}.")
        if len(self.n_blocks) != len(self.stack_types):
            raise ConfigError("n_blocks must have one entry per stack type.")
        for b in self.n_blocks:
            _check_int("n_blocks per stack", b, 1, MAX_LAYERS)
        _check_int("mlp_units", self.mlp_units, 1, MAX_WIDTH)
        _check_int("n_mlp_layers", self.n_mlp_layers, 1, MAX_LAYERS)
        _check_int("n_harmonics", self.n_harmonics, 1, 64)
        _check_int("n_polynomials", self.n_polynomials, 0, 16)
        _check_float("dropout", self.dropout, 0.0, 0.95)


@dataclass(frozen=True, kw_only=True)
class LSTMAttentionConfig(ModelConfig):
    """LSTM encoder (optionally bidirectional) with multi-head attention from each horizon step
    over the encoder states, decoding the whole horizon at once (MQ-RNN, Wen et al., 2017), plus
    a linear skip connection from the input window to the forecast.

    Defaults follow neuralforecast's LSTM: two 128-unit layers, context 10, a two-layer
    128-unit decoder MLP.
    """

    kind: ClassVar[str] = "lstm_attention"
    hidden_size: int = 128
    n_layers: int = 2
    bidirectional: bool = False
    n_heads: int = 4
    context_size: int = 10
    decoder_hidden_size: int = 128
    decoder_layers: int = 2
    skip_connection: bool = True
    dropout: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_int("hidden_size", self.hidden_size, 1, MAX_WIDTH)
        _check_int("n_layers", self.n_layers, 1, MAX_LAYERS)
        _check_int("n_heads", self.n_heads, 1, 64)
        if self.hidden_size % self.n_heads:
            raise ConfigError(
                f"hidden_size ({self.hidden_size}) must be divisible by n_heads ({self.n_heads})."
            )
        if not isinstance(self.bidirectional, bool) or not isinstance(self.skip_connection, bool):
            raise ConfigError("bidirectional and skip_connection must be booleans.")
        _check_decoder(self)


@dataclass(frozen=True, kw_only=True)
class GRUConfig(ModelConfig):
    """GRU encoder over the input window and a multi-horizon MLP decoder fed with a
    per-step context and the future-known exogenous values. Defaults follow neuralforecast."""

    kind: ClassVar[str] = "gru"
    hidden_size: int = 128
    n_layers: int = 2
    context_size: int = 10
    decoder_hidden_size: int = 128
    decoder_layers: int = 2
    dropout: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_int("hidden_size", self.hidden_size, 1, MAX_WIDTH)
        _check_int("n_layers", self.n_layers, 1, MAX_LAYERS)
        _check_decoder(self)


def tcn_receptive_field(kernel_size: int, dilations: tuple[int, ...]) -> int:
    """Steps seen by the last output of residual blocks of two causal convolutions each."""
    return 1 + 2 * (kernel_size - 1) * sum(dilations)


@dataclass(frozen=True, kw_only=True)
class TCNConfig(ModelConfig):
    """Temporal convolutional network (Bai et al., 2018): residual blocks of two dilated causal
    convolutions, then the multi-horizon decoder.

    ``dilations`` (one per block) default to 1, 2, 4, ... with as many blocks as it takes for
    the receptive field to cover ``input_size``; given explicitly they must cover it too.
    """

    kind: ClassVar[str] = "tcn"
    kernel_size: int = 2
    dilations: tuple[int, ...] | None = None
    channels: int = 128
    context_size: int = 10
    decoder_hidden_size: int = 128
    decoder_layers: int = 2
    dropout: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_int("kernel_size", self.kernel_size, 2, 64)
        _check_int("channels", self.channels, 1, MAX_WIDTH)
        if self.dilations is not None:
            _check_int("number of dilations", len(self.dilations), 1, MAX_LAYERS)
            for d in self.dilations:
                _check_int("dilation", d, 1, MAX_INPUT_SIZE)
            field = tcn_receptive_field(self.kernel_size, self.dilations)
            if field < self.input_size:
                raise ConfigError(
                    f"the receptive field of dilations {self.dilations} ({field} steps) does not "
                    f"cover input_size ({self.input_size}); add blocks or leave dilations unset."
                )
        _check_decoder(self)

    @property
    def block_dilations(self) -> tuple[int, ...]:
        """The dilation of each residual block."""
        if self.dilations is not None:
            return self.dilations
        dilations = (1,)
        while tcn_receptive_field(self.kernel_size, dilations) < self.input_size:
            dilations = (*dilations, 2 * dilations[-1])
        return dilations


DEEPAR_LIKELIHOODS = ("gaussian", "student_t")


@dataclass(frozen=True, kw_only=True)
class DeepARConfig(ModelConfig):
    """DeepAR (Salinas et al., 2020): an autoregressive LSTM that outputs the parameters of the
    next value's distribution (Gaussian or Student-t), trained by negative log-likelihood with
    teacher forcing; forecasts are quantiles of ``num_samples`` ancestral sample paths.

    Takes future-known exogenous columns (``futr_exog``) only. Defaults follow neuralforecast:
    two 128-unit layers, dropout 0.1, 100 sample paths.
    """

    kind: ClassVar[str] = "deepar"
    hidden_size: int = 128
    n_layers: int = 2
    dropout: float = 0.1
    likelihood: str = "gaussian"
    num_samples: int = 100

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_no_exog(self, allow_futr=True)
        _check_int("hidden_size", self.hidden_size, 1, MAX_WIDTH)
        _check_int("n_layers", self.n_layers, 1, MAX_LAYERS)
        _check_float("dropout", self.dropout, 0.0, 0.95)
        if self.likelihood not in DEEPAR_LIKELIHOODS:
            raise ConfigError(
                f"likelihood must be one of {DEEPAR_LIKELIHOODS}, got {self.likelihood!r}."
            )
        _check_int("num_samples", self.num_samples, 1, 100_000)


POSITIONAL_ENCODINGS = ("sinusoidal", "learned")


@dataclass(frozen=True, kw_only=True)
class TransformerConfig(ModelConfig):
    """Transformer encoder over the input window with a direct multi-horizon head.

    The window is cut into patches of ``patch_len`` steps every ``patch_stride`` steps
    (PatchTST, Nie et al., 2023; ``patch_len=1`` gives one token per step), embedded, given
    positional encodings and run through ``n_layers`` pre-norm encoder layers; the flattened
    tokens feed the multi-horizon decoder. Dropout draws from the key passed to ``apply``.
    """

    kind: ClassVar[str] = "transformer"
    d_model: int = 128
    n_heads: int = 4
    n_layers: int = 2
    ffn_size: int = 256
    patch_len: int = 16
    patch_stride: int = 8
    positional_encoding: str = "sinusoidal"
    context_size: int = 10
    decoder_hidden_size: int = 128
    decoder_layers: int = 2
    dropout: float = 0.1

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_int("d_model", self.d_model, 1, MAX_WIDTH)
        _check_int("n_heads", self.n_heads, 1, 64)
        if self.d_model % self.n_heads:
            raise ConfigError(
                f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})."
            )
        _check_int("n_layers", self.n_layers, 1, MAX_LAYERS)
        _check_int("ffn_size", self.ffn_size, 1, 4 * MAX_WIDTH)
        _check_int("patch_len", self.patch_len, 1, self.input_size)
        _check_int("patch_stride", self.patch_stride, 1, self.patch_len)
        if self.positional_encoding not in POSITIONAL_ENCODINGS:
            raise ConfigError(
                f"positional_encoding must be one of {POSITIONAL_ENCODINGS}, "
                f"got {self.positional_encoding!r}."
            )
        _check_decoder(self)

    @property
    def n_patches(self) -> int:
        """Tokens per window (the window is left-padded so that the last patch ends at its
        last step)."""
        return -(-(self.input_size - self.patch_len) // self.patch_stride) + 1


__all__ += [
    "DeepARConfig",
    "GRUConfig",
    "LSTMAttentionConfig",
    "NBEATSConfig",
    "TCNConfig",
    "TransformerConfig",
]
