"""DeepAR: probabilistic forecasting with autoregressive recurrent networks (Salinas et al.,
International Journal of Forecasting, 2020).

At each step a stacked LSTM reads the previous value and the step's future-known exogenous
values and outputs the parameters of the current value's distribution (Gaussian, or Student-t
with more than two degrees of freedom); its location is the previous value plus a predicted
change. Training runs the network over the whole window, always fed the observed previous value
(teacher forcing), and maximises the likelihood of the horizon's values. Forecasting runs the
network over the input window, then draws ``num_samples`` sample paths ancestrally (each step
fed the value drawn at the step before), all paths at once inside one ``lax.scan``, from an
explicit key; the quantiles of the config are read off the paths.

Values are in the scaled units the model is trained on (``TrainingConfig.scaler``). The network
reads each window in local units, ``(y - level) / spread`` with the last value of the input part
as level and its standard deviation as spread (``recurrent.window_units``, at least
``MIN_SPREAD``), and its distributions are mapped back (``loc * spread + level``, ``scale *
spread``): a level or a volatility never seen in training does not push it out of its range,
and interval widths follow the recent volatility (ETTh1's test tail is a third as volatile as
its training part; the paper divides by the window's mean instead).

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
import numpy as np
from jax.typing import ArrayLike

from ntjax.config import DeepARConfig
from ntjax.losses import gaussian_nll, student_t_nll
from ntjax.models._common import Inputs, Params, as_inputs, dummy_inputs
from ntjax.models.dropout import Dropout
from ntjax.models.recurrent import (
    fused_kernels,
    lstm_kernels,
    lstm_param_module,
    lstm_recurrence,
    window_units,
)

# Keeps the likelihood finite when the network fits a series exactly (in local units).
MIN_SCALE = 1e-3
# Student-t degrees of freedom stay above 2 so that the variance exists.
MIN_DOF = 2.0
# Smallest spread of a window in scaled units (a tenth of the series' standard deviation): a
# likelihood of one-step changes in the units of a flat window is dominated by the few windows
# where such a segment ends in a jump (ETTm2's MUFL, LUFL, LULL: changes of 200-370 window
# standard deviations at the direct families' floor of a hundredth).
MIN_SPREAD = 0.1


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


def distribution(config: DeepARConfig, raw: jax.Array, previous: jax.Array) -> dict[str, jax.Array]:
    """Distribution parameters of the next value from raw network outputs ``[..., n_params]``
    and the previous value ``[...]`` (relative to the window's level): ``loc`` (the previous
    value plus the first output), ``scale`` (> 0) and for Student-t ``dof`` (> 2), each
    ``[...]``.

    The network predicts the change from the previous value: at a fine time resolution the next
    value is close to the last one, and an LSTM that had to copy its input through its
    saturating gates would add a small bias at every step, which ancestral sampling compounds
    over a long horizon.
    """
    dist = {
        "loc": previous + raw[..., 0],
        "scale": jax.nn.softplus(raw[..., 1]) + MIN_SCALE,
    }
    if config.likelihood == "student_t":
        dist["dof"] = jax.nn.softplus(raw[..., 2]) + MIN_DOF
    return dist


def _window_units(y: jax.Array, input_size: int) -> tuple[jax.Array, jax.Array]:
    """Level and spread ``[batch, 1]`` of windows ``[batch, time]`` (``recurrent.window_units``)
    with the spread at least ``MIN_SPREAD``."""
    level, spread = window_units(y, input_size)
    return level, jnp.maximum(spread, MIN_SPREAD)


def seasonal_lags(config: DeepARConfig) -> tuple[int, ...]:
    """Lags whose values are fed beside the previous one: one horizon, when the input window
    reaches that far (GluonTS's DeepAR feeds lags too, picked from the frequency).

    Without it the network sees one step at a time, and at a fine resolution a daily cycle is a
    drift far smaller than a step's noise: it learns a random walk, whose paths miss the cycle
    over a long horizon (ETTm2, horizon 96: validation MAE 1.20 x seasonal naive without the
    lag, 0.95 x with it). The value one horizon back is observed for every step of a forecast,
    so the sampled paths never have to feed it back, and horizons are usually whole periods (a
    day of hours or of quarter-hours).
    """
    return (config.horizon,) if config.horizon <= config.input_size else ()


def _teacher_lagged(y: jax.Array, lags: tuple[int, ...]) -> jax.Array:
    """``[batch, time, n_lags]``: entry ``t`` holds ``y[t + 1 - lag]``, the value ``lag`` steps
    before the one predicted at ``t`` (the first value where that is before the window)."""
    time = y.shape[1]
    return jnp.stack(
        [jnp.pad(y, ((0, 0), (lag - 1, 0)), mode="edge")[:, :time] for lag in lags], axis=-1
    )


def _forecast_lagged(y: jax.Array, lags: tuple[int, ...], horizon: int) -> jax.Array:
    """``[batch, horizon, n_lags]``: for the horizon's step ``k + 1`` the value ``lag`` steps
    before, from the observed window ``y`` ``[batch, input_size]`` (lags >= horizon)."""
    size = y.shape[1]
    index = np.minimum(size + np.arange(horizon)[:, None] + 1 - np.asarray(lags)[None], size - 1)
    return y[:, index]


def _step_features(
    previous: jax.Array,
    exog: jax.Array | None,
    level: jax.Array,
    spread: jax.Array,
    lagged: jax.Array | None = None,
) -> jax.Array:
    """Network inputs ``[batch, time, f]``: the previous and the lagged values relative to the
    window's level ``[batch, 1]`` and, with exogenous columns, the current step's values and the
    level itself (the target's values relative to the regressors' are then within reach)."""
    local = ((previous - level) / spread)[..., None]
    if lagged is not None:
        local = jnp.concatenate([local, (lagged - level[..., None]) / spread[..., None]], -1)
    if exog is None:
        return local
    statistics = jnp.concatenate([level, jnp.log(spread)], axis=-1)[:, None]
    statistics = jnp.broadcast_to(statistics, (*local.shape[:2], 2))
    return jnp.concatenate([local, exog, statistics], axis=-1)


class _LSTMParams(nn.Module):
    """The parameters of flax's ``OptimizedLSTMCell`` (names, shapes and initialisers, so that
    records saved with the cells load unchanged), declared for inputs ``[..., f]`` and
    returned as the cell's parameter dict."""

    hidden_size: int

    @nn.compact
    def __call__(self, x: jax.Array) -> dict:
        zeros = jnp.zeros((1, self.hidden_size), x.dtype)
        return lstm_param_module(self.hidden_size, x, zeros)


class DeepARNetwork(nn.Module):
    """The recurrent network; ``__call__`` is teacher-forced, ``sample`` ancestral.

    The teacher-forced pass runs layer by layer, each one ``recurrent.lstm_recurrence`` (input
    projections before the scan or inside it for a narrow input, one fused ``h @ W_hh`` per
    step, a custom backward pass) and the head on all steps at once. Sampling runs the layers
    step by step (each step's input is the value drawn at the one before) with the kernels
    fused once before the scan, two matmuls per layer and step over all ``num_samples *
    batch`` paths, and the projection of the known inputs of every step computed before.
    """

    config: DeepARConfig

    def setup(self) -> None:
        cfg = self.config
        self.layers = [_LSTMParams(cfg.hidden_size, name=f"lstm_{i}") for i in range(cfg.n_layers)]
        self.dropout = Dropout(cfg.dropout)
        self.head = nn.Dense(len(LIKELIHOODS[cfg.likelihood].names), name="head")

    def unroll(self, features: jax.Array, deterministic: bool) -> tuple[tuple[Any, ...], jax.Array]:
        """Teacher-forced pass over ``[batch, time, f]``: the final ``(c, h)`` of each layer and
        raw outputs ``[batch, time, n_params]``."""
        cfg = self.config
        h = jnp.swapaxes(features, 0, 1)
        zeros = jnp.zeros((features.shape[0], cfg.hidden_size), features.dtype)
        carry = []
        for index, layer in enumerate(self.layers):
            kernels, biases, w_h = lstm_kernels(layer(h))
            w_x, b_x = fused_kernels(kernels, biases)
            h, final = lstm_recurrence(h, w_x, b_x, w_h, (zeros, zeros))
            carry.append(final)
            if cfg.dropout > 0 and index < len(self.layers) - 1:
                h = self.dropout(h, deterministic=deterministic)
        return tuple(carry), jnp.swapaxes(self.head(h), 0, 1)

    def fused_kernels(self, n_features: int) -> list[tuple[jax.Array, jax.Array, jax.Array]]:
        """Per layer ``(w_x [f, 4 * hidden], b [4 * hidden], w_h [hidden, 4 * hidden])``, the
        gates' kernels side by side (``f``: the layer's input features)."""
        fused = []
        for layer in self.layers:
            kernels, biases, w_h = lstm_kernels(layer(jnp.zeros((1, n_features))))
            fused.append((*fused_kernels(kernels, biases), w_h))
            n_features = self.config.hidden_size
        return fused

    def __call__(self, inputs: Inputs, deterministic: bool = True) -> dict[str, jax.Array]:
        """Teacher-forced distributions of the values after each observed one: ``y``
        ``[batch, time]`` (time up to ``input_size + horizon - 1``) gives parameters
        ``[batch, time]`` each, entry ``t`` for the value at ``t + 1``, in series units."""
        y = inputs["y"]
        time = y.shape[1]
        level, spread = _window_units(y, self.config.input_size)
        exog = inputs.get("futr_exog")
        exog = None if exog is None else exog[:, 1 : time + 1]
        lags = seasonal_lags(self.config)
        lagged = _teacher_lagged(y, lags) if lags else None
        features = _step_features(y, exog, level, spread, lagged)
        _, raw = self.unroll(features, deterministic)
        dist = distribution(self.config, raw, features[..., 0])
        return dict(dist, loc=dist["loc"] * spread + level, scale=dist["scale"] * spread)

    def sample(self, inputs: Inputs, num_samples: int) -> jax.Array:
        """``[num_samples, batch, horizon]`` ancestral sample paths, drawn with the ``sample``
        rng; all paths advance together as one batch of ``num_samples * batch`` rows."""
        cfg = self.config
        hidden = cfg.hidden_size
        likelihood = LIKELIHOODS[cfg.likelihood]
        y = inputs["y"]
        batch, size = y.shape
        exog = inputs.get("futr_exog")
        context_exog = None if exog is None else exog[:, 1 : size + 1]
        # Paths are drawn relative to the window's level and shifted back at the end.
        level, spread = _window_units(y, size)
        lags = seasonal_lags(cfg)
        lagged = _teacher_lagged(y, lags) if lags else None
        context = _step_features(y, context_exog, level, spread, lagged)
        carry, raw = self.unroll(context, True)

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
        future_lagged = _forecast_lagged(y, lags, cfg.horizon) if lags else None
        after = _step_features(placeholder, next_exog, level, spread, future_lagged)[..., 1:]
        kernels = self.fused_kernels(context.shape[-1])
        w_x, b_x, _ = kernels[0]
        # The known inputs' share of the first layer's gates, per series (the same for all of
        # its paths): ``[batch, horizon, 4 * hidden]``.
        known = after @ w_x[1:] + b_x[None, None]
        value_kernel = w_x[:1]

        def gates(lower, w_x, b_x, h, w_h):
            return lower @ w_x + h @ w_h + b_x[None]

        def cell(a, c):
            i = jax.nn.sigmoid(a[:, :hidden])
            f = jax.nn.sigmoid(a[:, hidden : 2 * hidden])
            g = jnp.tanh(a[:, 2 * hidden : 3 * hidden])
            o = jax.nn.sigmoid(a[:, 3 * hidden :])
            c = f * c + i * g
            return c, o * jnp.tanh(c)

        def body(module: DeepARNetwork, state, known_t):
            carry, raw, previous = state
            value = likelihood.draw(module.make_rng("sample"), distribution(cfg, raw, previous))
            (c, h), *upper = carry
            share = (value[:, None] @ value_kernel).reshape(num_samples, batch, -1)
            a = (share + known_t[None]).reshape(num_samples * batch, -1) + h @ kernels[0][2]
            new = [cell(a, c)]
            for (c, h), (w_x, b_x, w_h) in zip(upper, kernels[1:], strict=True):
                new.append(cell(gates(new[-1][1], w_x, b_x, h, w_h), c))
            return (tuple(new), module.head(new[-1][1]), value), value

        scan = nn.scan(
            body,
            variable_broadcast="params",
            split_rngs={"params": False, "sample": True},
            in_axes=1,
            out_axes=1,
        )
        # The last observed value is the level: 0 relative to it.
        last = jnp.zeros((num_samples * batch,), first.dtype)
        _, paths = scan(self, (carry, first, last), known)
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
    """Teacher-forced negative log-likelihood of the horizon's values.

    The network reads the whole window, fed the observed previous value at every step, and
    only the horizon's values are scored: the values are read relative to the input part's last
    value, so the likelihood of an input value would be conditioned on a later one, and the
    network would learn to pull its paths back to the level (ETTm2 OT, horizon 96: validation
    80% coverage 0.48 with every value scored, 0.63 with the horizon's).

    Args:
      inputs: ``{"y": [batch, input_size], "futr_exog": ...}`` scaled.
      targets: ``[batch, horizon]`` scaled values after the history.
      key: dropout key (None: deterministic, e.g. validation).

    Returns:
      ``[batch, horizon]`` per-step losses (the caller averages).
    """
    del spec
    full = jnp.concatenate([inputs["y"], targets], axis=1)
    teacher = dict(inputs, y=full[:, :-1])
    rngs = {} if key is None else {"dropout": key}
    dist = DeepARNetwork(config).apply(
        {"params": params}, teacher, deterministic=key is None, rngs=rngs
    )
    nll = LIKELIHOODS[config.likelihood].nll(dist, full[:, 1:])
    return nll[:, config.input_size - 1 :]


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
