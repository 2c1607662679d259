"""DeepAR: probabilistic forecasting with autoregressive recurrent networks (Salinas et al.,
International Journal of Forecasting, 2020).

At each step a stacked LSTM reads the previous value and the step's future-known exogenous
values and outputs the parameters of the current value's distribution (Gaussian, or Student-t
with more than two degrees of freedom). Training maximises the likelihood of every value of
the window after its first one, the network always fed the observed previous value (teacher
forcing). Forecasting runs the network over the input window, then draws ``num_samples`` sample
paths ancestrally (each step fed the value drawn at the step before), all paths at once inside
one ``lax.scan``, from an explicit key; the quantiles of the config are read off the paths.

Values are in the scaled units the model is trained on (``TrainingConfig.scaler``). The network
reads each window in local units, ``(y - level) / spread`` with the last value of the input part
as level and the mean absolute step of the input part as spread, and its distributions are
mapped back (``loc * spread + level``, ``scale * spread``): a level or a volatility never seen
in training does not push it out of its range, and interval widths follow the recent volatility
(the paper divides by the window's mean instead; here the series are already scaled per series).

The family fits ``ntjax.models.ModelSpec``: ``apply`` returns distribution parameters,
``loss`` the per-step negative log-likelihood, ``predict`` quantiles ``[batch, horizon,
n_quantiles]`` and ``sample`` the paths ``[num_samples, batch, horizon]``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from ntjax.config import DeepARConfig
from ntjax.losses import gaussian_nll, student_t_nll
from ntjax.models._common import Inputs, Params, as_inputs, dummy_inputs
from ntjax.models.recurrent import window_units

# Keeps the likelihood finite when the network fits a series exactly (in local units).
MIN_SCALE = 1e-3
# Student-t degrees of freedom stay above 2 so that the variance exists.
MIN_DOF = 2.0


class Likelihood(NamedTuple):
    """A distribution family: parameter names, the map from raw network outputs to them, the
    elementwise negative log-likelihood and a sampler."""

    names: tuple[str, ...]
    nll: Callable[[dict[str, jax.Array], jax.Array], jax.Array]
    draw: Callable[[jax.Array, dict[str, jax.Array]], jax.Array]


def _gaussian_draw(key: jax.Array, dist: dict[str, jax.Array]) -> jax.Array:
    return dist["loc"] + dist["scale"] * jax.random.normal(key, dist["loc"].shape)


def _student_t_draw(key: jax.Array, dist: dict[str, jax.Array]) -> jax.Array:
    return dist["loc"] + dist["scale"] * jax.random.t(key, dist["dof"], dist["loc"].shape)


LIKELIHOODS: dict[str, Likelihood] = {
    "gaussian": Likelihood(
        ("loc", "scale"),
        lambda d, y: gaussian_nll(d["loc"], d["scale"], y),
        _gaussian_draw,
    ),
    "student_t": Likelihood(
        ("loc", "scale", "dof"),
        lambda d, y: student_t_nll(d["loc"], d["scale"], d["dof"], y),
        _student_t_draw,
    ),
}


def distribution(config: DeepARConfig, raw: jax.Array) -> dict[str, jax.Array]:
    """Distribution parameters from raw network outputs ``[..., n_params]``: ``loc``,
    ``scale`` (> 0) and for Student-t ``dof`` (> 2), each ``[...]``."""
    dist = {
        "loc": raw[..., 0],
        "scale": jax.nn.softplus(raw[..., 1]) + MIN_SCALE,
    }
    if config.likelihood == "student_t":
        dist["dof"] = jax.nn.softplus(raw[..., 2]) + MIN_DOF
    return dist


def _to_series_units(
    dist: dict[str, jax.Array], level: jax.Array, spread: jax.Array
) -> dict[str, jax.Array]:
    return dict(dist, loc=dist["loc"] * spread + level, scale=dist["scale"] * spread)


def _step_features(
    previous: jax.Array, exog: jax.Array | None, level: jax.Array, spread: jax.Array
) -> jax.Array:
    """Network inputs ``[batch, time, f]``: the previous value in local units and, with
    exogenous columns, the current step's values and the window's level and log spread (the
    target's values relative to the regressors' are then within reach)."""
    local = ((previous - level) / spread)[..., None]
    if exog is None:
        return local
    statistics = jnp.concatenate([level, jnp.log(spread)], axis=-1)[:, None]
    statistics = jnp.broadcast_to(statistics, (*local.shape[:2], 2))
    return jnp.concatenate([local, exog, statistics], axis=-1)


class DeepARNetwork(nn.Module):
    """The recurrent network; ``__call__`` is teacher-forced, ``sample`` ancestral."""

    config: DeepARConfig

    def setup(self) -> None:
        cfg = self.config
        self.cells = [
            nn.OptimizedLSTMCell(cfg.hidden_size, name=f"lstm_{i}") for i in range(cfg.n_layers)
        ]
        self.dropout = nn.Dropout(cfg.dropout)
        self.head = nn.Dense(len(LIKELIHOODS[cfg.likelihood].names), name="head")

    def initial_carry(self, batch: int) -> tuple[Any, ...]:
        zeros = jnp.zeros((batch, self.config.hidden_size), jnp.float32)
        return tuple((zeros, zeros) for _ in self.cells)

    def step(
        self, carry: tuple[Any, ...], features: jax.Array, deterministic: bool
    ) -> tuple[tuple[Any, ...], jax.Array]:
        """One time step: ``[batch, f]`` -> new carry and raw outputs ``[batch, n_params]``."""
        h = features
        new_carry = []
        for i, cell in enumerate(self.cells):
            layer_carry, h = cell(carry[i], h)
            new_carry.append(layer_carry)
            if self.config.dropout > 0 and i < len(self.cells) - 1:
                h = self.dropout(h, deterministic=deterministic)
        return tuple(new_carry), self.head(h)

    def unroll(self, features: jax.Array, deterministic: bool) -> tuple[tuple[Any, ...], jax.Array]:
        """Teacher-forced pass over ``[batch, time, f]``: final carry, raw ``[batch, time, p]``."""

        def body(module: DeepARNetwork, carry, x):
            return module.step(carry, x, deterministic)

        scan = nn.scan(
            body,
            variable_broadcast="params",
            split_rngs={"params": False, "dropout": True},
            in_axes=1,
            out_axes=1,
        )
        return scan(self, self.initial_carry(features.shape[0]), features)

    def __call__(self, inputs: Inputs, deterministic: bool = True) -> dict[str, jax.Array]:
        """Teacher-forced distributions of the values after each observed one: ``y``
        ``[batch, time]`` (time up to ``input_size + horizon - 1``) gives parameters
        ``[batch, time]`` each, entry ``t`` for the value at ``t + 1``, in series units."""
        y = inputs["y"]
        time = y.shape[1]
        level, spread = window_units(y, self.config.input_size)
        exog = inputs.get("futr_exog")
        exog = None if exog is None else exog[:, 1 : time + 1]
        _, raw = self.unroll(_step_features(y, exog, level, spread), deterministic)
        return _to_series_units(distribution(self.config, raw), level, spread)

    def sample(self, inputs: Inputs, num_samples: int) -> jax.Array:
        """``[num_samples, batch, horizon]`` ancestral sample paths, drawn with the ``sample``
        rng; all paths advance together as one batch of ``num_samples * batch`` rows."""
        cfg = self.config
        likelihood = LIKELIHOODS[cfg.likelihood]
        y = inputs["y"]
        batch, size = y.shape
        exog = inputs.get("futr_exog")
        context_exog = None if exog is None else exog[:, 1 : size + 1]
        # Paths are drawn in the window's local units and mapped back at the end.
        level, spread = window_units(y, size)
        carry, raw = self.unroll(_step_features(y, context_exog, level, spread), True)

        def repeat(a: jax.Array) -> jax.Array:
            return jnp.tile(a, (num_samples,) + (1,) * (a.ndim - 1))

        carry = jax.tree.map(repeat, carry)
        first = repeat(raw[:, -1])
        # The inputs fed beside each drawn value: the next step's exogenous values (zeros after
        # the last step, whose output is not used) and the window statistics.
        next_exog = None
        if exog is not None:
            next_exog = jnp.concatenate([exog[:, size + 1 :], jnp.zeros_like(exog[:, :1])], 1)
        placeholder = jnp.zeros((batch, cfg.horizon), y.dtype)
        after = repeat(_step_features(placeholder, next_exog, level, spread)[..., 1:])

        def body(module: DeepARNetwork, state, x):
            carry, raw = state
            value = likelihood.draw(module.make_rng("sample"), distribution(cfg, raw))
            features = jnp.concatenate([value[:, None], x], axis=-1)
            carry, raw = module.step(carry, features, True)
            return (carry, raw), value

        scan = nn.scan(
            body,
            variable_broadcast="params",
            split_rngs={"params": False, "sample": True},
            in_axes=1,
            out_axes=1,
        )
        _, paths = scan(self, (carry, first), after)
        return paths.reshape(num_samples, batch, cfg.horizon) * spread[None] + level[None]


def init(config: DeepARConfig, key: jax.Array) -> Params:
    """Parameters of the network, from ``key``."""
    variables = DeepARNetwork(config).init(
        {"params": key}, dummy_inputs(config), deterministic=True
    )
    return variables["params"]


def apply(
    config: DeepARConfig,
    params: Params,
    x: ArrayLike | Mapping[str, ArrayLike],
    *,
    key: jax.Array | None = None,
) -> jax.Array:
    """Teacher-forced distribution parameters.

    Args:
      config: the DeepAR config.
      params: its parameters.
      x: ``[batch, time]`` scaled values (or the inputs dict; ``futr_exog`` ``[batch,
        input_size + horizon, n_futr]``), ``time <= input_size + horizon - 1``.
      key: enables dropout (training); None is deterministic.

    Returns:
      ``[batch, time, n_params]``: for each step ``t`` the parameters of the value at ``t + 1``
      (``loc``, ``scale`` and for Student-t ``dof``, in that order); the last entry describes
      the first step after the history.
    """
    rngs = {} if key is None else {"dropout": key}
    dist = DeepARNetwork(config).apply(
        {"params": params}, as_inputs(x), deterministic=key is None, rngs=rngs
    )
    return jnp.stack([dist[name] for name in LIKELIHOODS[config.likelihood].names], axis=-1)


def loss(
    spec: Any,
    config: DeepARConfig,
    params: Params,
    inputs: Inputs,
    targets: jax.Array,
    *,
    key: jax.Array | None = None,
) -> jax.Array:
    """Teacher-forced negative log-likelihood of every value of the window after the first.

    Args:
      inputs: ``{"y": [batch, input_size], "futr_exog": ...}`` scaled.
      targets: ``[batch, horizon]`` scaled values after the history.
      key: dropout key (None: deterministic, e.g. validation).

    Returns:
      ``[batch, input_size + horizon - 1]`` per-step losses (the caller averages).
    """
    del spec
    full = jnp.concatenate([inputs["y"], targets], axis=1)
    teacher = dict(inputs, y=full[:, :-1])
    rngs = {} if key is None else {"dropout": key}
    dist = DeepARNetwork(config).apply(
        {"params": params}, teacher, deterministic=key is None, rngs=rngs
    )
    return LIKELIHOODS[config.likelihood].nll(dist, full[:, 1:])


def sample(
    spec: Any,
    config: DeepARConfig,
    params: Params,
    inputs: ArrayLike | Mapping[str, ArrayLike],
    *,
    key: jax.Array,
    num_samples: int | None = None,
) -> jax.Array:
    """Ancestral sample paths over the horizon.

    Args:
      inputs: ``[batch, input_size]`` scaled history or the inputs dict.
      key: PRNG key of the draws; the same key gives the same paths.
      num_samples: paths per series (default ``config.num_samples``); static under jit.

    Returns:
      ``[num_samples, batch, horizon]`` in scaled units.
    """
    del spec
    if key is None:
        raise ValueError("DeepAR draws sample paths: pass a PRNG key (jax.random.key(seed)).")
    n = config.num_samples if num_samples is None else num_samples
    return DeepARNetwork(config).apply(
        {"params": params},
        as_inputs(inputs),
        n,
        method=DeepARNetwork.sample,
        rngs={"sample": key},
    )


def predict(
    spec: Any,
    config: DeepARConfig,
    params: Params,
    inputs: ArrayLike | Mapping[str, ArrayLike],
    *,
    key: jax.Array | None = None,
) -> jax.Array:
    """Quantiles of ``config.num_samples`` sample paths, ``[batch, horizon, n_quantiles]``.

    Non-crossing: empirical quantiles are non-decreasing in the level (a running maximum
    removes any rounding step backwards).
    """
    paths = sample(spec, config, params, inputs, key=key)
    levels = jnp.asarray(config.quantiles, paths.dtype)
    quantiles = jnp.moveaxis(jnp.quantile(paths, levels, axis=0), 0, -1)
    return jax.lax.cummax(quantiles, axis=quantiles.ndim - 1)
