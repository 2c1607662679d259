"""The closed table of model families: name -> (Config, init, apply, ...).

Every family exposes pure functions:
  ``init(config, key) -> params``
  ``apply(config, params, x, *, key=None) -> [batch, horizon, n_quantiles]``
and optionally its own training ``loss`` (e.g. a likelihood) and ``predict`` (e.g. sampling).
Training, forecasting and the store reach a family only through this table, so no code outside
``ntjax/models`` branches on the model name.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from ntjax._jit import EIGEN_DOTS, usable
from ntjax.config import (
    DeepARConfig,
    GRUConfig,
    LSTMAttentionConfig,
    ModelConfig,
    NBEATSConfig,
    NHITSConfig,
    TCNConfig,
    TransformerConfig,
)
from ntjax.losses import pinball_loss
from ntjax.models import deepar, ensemble, nbeats, nhits, recurrent, tcn, transformer
from ntjax.models._common import Inputs, Params, as_inputs, dummy_inputs, monotone_quantiles
from ntjax.models.quantized import dequantize_params


def quantile_loss(
    spec: ModelSpec,
    config: ModelConfig,
    params: Params,
    inputs: Inputs,
    targets: jax.Array,
    *,
    key: jax.Array | None = None,
) -> jax.Array:
    """Default training loss: pinball over all quantiles, ``[batch, horizon, n_quantiles]``."""
    predictions = spec.apply(config, params, inputs, key=key)
    return pinball_loss(predictions, targets, quantiles=config.quantiles)


def quantile_predict(
    spec: ModelSpec, config: ModelConfig, params: Params, inputs: Inputs, *, key=None
) -> jax.Array:
    """Default prediction: the deterministic quantile head, ``[batch, horizon, n_quantiles]``."""
    del key
    return spec.apply(config, params, inputs)


def quantile_distillation_loss(
    spec: ModelSpec,
    config: ModelConfig,
    params: Params,
    inputs: Inputs,
    teacher: jax.Array,
    *,
    key: jax.Array | None = None,
) -> jax.Array:
    """Distillation loss of quantile families: each predicted quantile's pinball loss against
    the teacher's forecast of the same level, ``[batch, horizon, n_quantiles]``.

    Args:
      teacher: ``[batch, horizon, n_quantiles]`` the teacher's quantiles (scaled units).
    """
    predictions = spec.apply(config, params, inputs, key=key)
    return jnp.concatenate(
        [
            pinball_loss(predictions[..., i : i + 1], teacher[..., i], quantiles=(q,))
            for i, q in enumerate(config.quantiles)
        ],
        axis=-1,
    )


def likelihood_distillation_loss(
    spec: ModelSpec,
    config: ModelConfig,
    params: Params,
    inputs: Inputs,
    teacher: jax.Array,
    *,
    key: jax.Array | None = None,
) -> jax.Array:
    """Distillation loss of likelihood families (DeepAR): the family's own loss with each of
    the teacher's quantile paths ``[batch, horizon, n_quantiles]`` as the target, averaged over
    the levels (the quantiles stand in for samples of the teacher's distribution)."""
    parts = [
        spec.loss(spec, config, params, inputs, teacher[..., i], key=key)
        for i in range(teacher.shape[-1])
    ]
    return jnp.mean(jnp.stack(parts), axis=0)


class ModelSpec(NamedTuple):
    """A model family. ``loss``/``predict`` take the spec first so families can share them."""

    config_cls: type[ModelConfig]
    init: Callable[..., Params]
    apply: Callable[..., jax.Array]
    loss: Callable[..., jax.Array] = quantile_loss
    predict: Callable[..., jax.Array] = quantile_predict
    sample: Callable[..., jax.Array] | None = None
    options: tuple[tuple[str, str], ...] = ()  # XLA compile options (``ntjax._jit``)
    distill: Callable[..., jax.Array] = quantile_distillation_loss

    def training_loss(self, config, params, inputs, targets, *, key=None) -> jax.Array:
        return self.loss(self, config, params, inputs, targets, key=key)

    def distillation_loss(self, config, params, inputs, teacher, *, key=None) -> jax.Array:
        """The loss against a teacher's quantiles ``[batch, horizon, n_quantiles]``."""
        return self.distill(self, config, params, inputs, teacher, key=key)

    def predict_quantiles(self, config, params, inputs, *, key=None) -> jax.Array:
        # Quantised records (``ntjax.models.quantized``) keep int8/bfloat16 weights; they
        # become float32 here, inside the jitted program (the identity for float32 params).
        return self.predict(self, config, dequantize_params(params), inputs, key=key)

    def is_stochastic(self, config: ModelConfig) -> bool:
        """Whether predictions need a PRNG key (sampling families, or ensembles of them)."""
        members = getattr(config, "members", ())
        return self.sample is not None or any(spec_for(m).is_stochastic(m) for m in members)

    def compile_options(self, config: ModelConfig) -> tuple[tuple[str, str], ...]:
        """XLA options the family's programs compile with; an ensemble uses its members'
        when they all agree, XLA's defaults otherwise."""
        members = getattr(config, "members", ())
        if not members:
            return self.options
        options = {spec_for(m).compile_options(m) for m in members}
        return options.pop() if len(options) == 1 else ()


def _spec_for(config: ModelConfig) -> ModelSpec:
    return spec_for(config)  # defined below, looked up when an ensemble runs


MODELS: dict[str, ModelSpec] = {
    "nhits": ModelSpec(NHITSConfig, nhits.init, nhits.apply, options=EIGEN_DOTS),
    "nbeats": ModelSpec(NBEATSConfig, nbeats.init, nbeats.apply, options=EIGEN_DOTS),
    "lstm_attention": ModelSpec(
        LSTMAttentionConfig, recurrent.lstm_attention_init, recurrent.lstm_attention_apply
    ),
    "gru": ModelSpec(GRUConfig, recurrent.gru_init, recurrent.gru_apply, options=EIGEN_DOTS),
    "tcn": ModelSpec(TCNConfig, tcn.init, tcn.apply),
    "deepar": ModelSpec(
        DeepARConfig,
        deepar.init,
        deepar.apply,
        loss=deepar.loss,
        predict=deepar.predict,
        sample=deepar.sample,
        distill=likelihood_distillation_loss,
    ),
    "transformer": ModelSpec(TransformerConfig, transformer.init, transformer.apply),
    "ensemble": ModelSpec(
        ensemble.EnsembleConfig,
        functools.partial(ensemble.init, spec_for=_spec_for),
        functools.partial(ensemble.apply, spec_for=_spec_for),
        loss=functools.partial(ensemble.loss, spec_for=_spec_for),
        predict=functools.partial(ensemble.predict, spec_for=_spec_for),
    ),
}

CONFIGS: dict[str, type[ModelConfig]] = {name: spec.config_cls for name, spec in MODELS.items()}


def get_model(name: str) -> ModelSpec:
    """The family called ``name``; a clear error for any name outside the table."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known models: {sorted(MODELS)}.")
    return MODELS[name]


def spec_for(config: ModelConfig) -> ModelSpec:
    """The family of a config instance."""
    return get_model(config.kind)


def make_config(name: str, **fields: Any) -> ModelConfig:
    """``make_config("nhits", horizon=24, input_size=96)``: a config from a model name."""
    return get_model(name).config_cls(**fields)


def compile_options(config: ModelConfig) -> tuple[tuple[str, str], ...]:
    """The XLA options ``config``'s programs compile with: its family's, where this jaxlib
    knows them and ``XLA_FLAGS`` does not set them (else XLA's defaults)."""
    return usable(spec_for(config).compile_options(config))


def count_params(params: Params) -> int:
    return int(sum(jnp.size(p) for p in jax.tree.leaves(params)))


__all__ = [
    "CONFIGS",
    "MODELS",
    "ModelSpec",
    "as_inputs",
    "compile_options",
    "count_params",
    "dummy_inputs",
    "get_model",
    "make_config",
    "monotone_quantiles",
    "spec_for",
]
