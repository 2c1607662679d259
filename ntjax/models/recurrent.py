"""Recurrent encoders with a direct multi-horizon decoder: LSTM with attention and GRU.

Both read the input window as a sequence of step features (the target, the historical
exogenous columns and the past part of the future-known ones), summarise it with stacked
recurrent layers and decode the whole horizon at once (MQ-RNN, Wen et al., 2017): a per-step
context vector from the summary, joined with each step's future-known exogenous values, goes
through an MLP shared across the horizon to the raw quantiles. The encoders read the window in
local units (relative to its last value, divided by its standard deviation: ``window_units``)
and the monotone quantile head's output is mapped back to the series' units.

``encoder_features``, ``future_features`` and ``MultiHorizonDecoder`` are shared with the TCN
and Transformer families.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.linen.recurrent import DenseParams

from ntjax.config import GRUConfig, LSTMAttentionConfig
from ntjax.models._common import Inputs, linen_family, monotone_quantiles
from ntjax.models.dropout import Dropout

# Smallest spread of a window, in scaled units (a hundredth of the series' standard deviation
# under the default scaler), so that flat windows are not blown up.
MIN_SPREAD = 1e-2


def window_units(y: jax.Array, input_size: int) -> tuple[jax.Array, jax.Array]:
    """Level and spread ``[batch, 1]`` of windows ``[batch, time]``, from their first
    ``input_size`` steps (the input part): its last value and its standard deviation.

    Models read ``(y - level) / spread`` and map their outputs back with ``* spread + level``:
    a level or volatility never seen in training does not push them out of their range, and
    interval widths follow the recent volatility. The standard deviation keeps the window and
    the horizon within a few units; the mean absolute step, used before, is small for a smooth
    series at a fine resolution (ETTm2's OT: local values of 17 in the median window, 80 at the
    99th percentile), which saturates recurrent gates and asks every head for large outputs.
    """
    context = y[:, :input_size]
    level = context[:, -1:]
    if context.shape[1] < 2:
        return level, jnp.ones_like(level)
    return level, jnp.maximum(context.std(axis=1, keepdims=True), MIN_SPREAD)


def encoder_features(inputs: Inputs) -> jax.Array:
    """Per-step features of the input window.

    Args:
      inputs: ``{"y": [batch, input_size], "hist_exog": [batch, input_size, n_hist],
        "futr_exog": [batch, input_size + horizon, n_futr]}`` (exogenous keys optional).

    Returns:
      ``[batch, input_size, 1 + n_hist + n_futr]``: the target in the window's local units
      (``window_units``), the historical and the past part of the future-known columns.
    """
    y = inputs["y"]
    input_size = y.shape[1]
    level, spread = window_units(y, input_size)
    parts = [((y - level) / spread)[..., None]]
    if "hist_exog" in inputs:
        parts.append(inputs["hist_exog"])
    if "futr_exog" in inputs:
        parts.append(inputs["futr_exog"][:, :input_size])
    return jnp.concatenate(parts, axis=-1)


def to_series_units(local: jax.Array, y: jax.Array) -> jax.Array:
    """Maps ``[batch, horizon, n]`` forecasts in the local units of the windows ``y``
    ``[batch, input_size]`` back to the series' units."""
    level, spread = window_units(y, y.shape[1])
    return local * spread[:, :, None] + level[:, :, None]


def decoder_summary(summary: jax.Array, inputs: Inputs) -> jax.Array:
    """The window summary ``[batch, f]`` handed to the decoder. With exogenous inputs it also
    gets the window's level and log spread ``[batch, 2]``: the target's values relative to the
    regressors' are then within reach, which local units alone would hide."""
    if "hist_exog" not in inputs and "futr_exog" not in inputs:
        return summary
    level, spread = window_units(inputs["y"], inputs["y"].shape[1])
    return jnp.concatenate([summary, level, jnp.log(spread)], axis=-1)


def future_features(inputs: Inputs) -> jax.Array | None:
    """``[batch, horizon, n_futr]`` future-known exogenous values over the horizon, or None."""
    if "futr_exog" not in inputs:
        return None
    return inputs["futr_exog"][:, inputs["y"].shape[1] :]


class MultiHorizonDecoder(nn.Module):
    """MQ-RNN's decoder: a context vector per horizon step from a summary of the input window,
    joined with the step's future-known values (and optional extra per-step features), mapped by
    an MLP shared across steps to ``n_outputs`` raw values per step."""

    horizon: int
    n_outputs: int
    context_size: int
    hidden_size: int
    n_layers: int
    dropout: float = 0.0

    @nn.compact
    def __call__(
        self,
        summary: jax.Array,
        future: jax.Array | None,
        extra: jax.Array | None = None,
        *,
        deterministic: bool = True,
    ) -> jax.Array:
        """Decodes the horizon.

        Args:
          summary: ``[batch, features]`` summary of the input window.
          future: ``[batch, horizon, n_futr]`` future-known values, or None.
          extra: ``[batch, horizon, n_extra]`` other per-step features, or None.
          deterministic: disables dropout.

        Returns:
          ``[batch, horizon, n_outputs]``.
        """
        batch = summary.shape[0]
        context = nn.Dense(self.horizon * self.context_size, name="context")(summary)
        parts = [context.reshape(batch, self.horizon, self.context_size)]
        parts += [p for p in (future, extra) if p is not None]
        h = jnp.concatenate(parts, axis=-1)
        for _ in range(self.n_layers):
            h = nn.relu(nn.Dense(self.hidden_size)(h))
            if self.dropout > 0:
                h = Dropout(self.dropout)(h, deterministic=deterministic)
        return nn.Dense(self.n_outputs, name="output")(h)


def decoder_for(config, n_outputs: int) -> MultiHorizonDecoder:
    """The multi-horizon decoder a config describes (``context_size``, ``decoder_*``)."""
    return MultiHorizonDecoder(
        horizon=config.horizon,
        n_outputs=n_outputs,
        context_size=config.context_size,
        hidden_size=config.decoder_hidden_size,
        n_layers=config.decoder_layers,
        dropout=config.dropout,
        name="decoder",
    )


# ---------------------------------------------------------------------------------------------
# Fused recurrent layers.
#
# A layer runs in three parts: the input projections of every step, before the recurrence
# (``[time * batch, f] @ [f, hidden]`` per gate; inside the step for narrow inputs, see
# ``INSIDE_FEATURES``); the recurrence, a ``lax.scan`` whose step is one fused ``h @ W_hh``
# (``[batch, hidden] @ [hidden, gates * hidden]``) and the gate arithmetic; and, in the backward
# pass (a custom VJP), a reverse scan with one ``[batch, gates * hidden] @ [gates * hidden,
# hidden]`` matmul per step, after which the weight gradients and the input gradient are one
# matmul each over all ``time * batch`` rows. Automatic differentiation of the scan accumulates
# the weight gradients inside the loop, a second, badly shaped matmul per step. Arrays inside
# the layers are time-major, ``[time, batch, ...]``; the parameters are flax's cells' (names,
# shapes, initialisers), so records saved with ``nn.RNN`` over those cells load unchanged.
#
# Measured on the 2-core CPU (GRU train step, batch 64, 168 steps, hidden 128, 2 layers): in a
# profile the four scans (two layers, forward and backward) took 46 ms against 124 ms for
# flax's ``nn.RNN``, but the whole step gained only 0.95-1.15x over alternated blocks at loads
# of 2-4: XLA:CPU spends the difference on the large per-step residual and gradient arrays
# around the loops (zero-filled, then written step by step) and the matmuls over them.
# ---------------------------------------------------------------------------------------------

# Scan unroll, by measurement (same setting; time of the 2-layer forward and backward relative
# to unroll 1): GRU 1.16x at unroll 2, 1.21x at 4, 1.58x at 8; LSTM 1.04x, 1.23x, 1.81x; a full
# unroll compiles for minutes and runs 10x slower. XLA:CPU's per-step cost is in the step's
# operations, not in the loop.
UNROLL = 1


def _shift_in(first: jax.Array, steps: jax.Array) -> jax.Array:
    """``[first, steps[0], ..., steps[-2]]``: the value before each step, ``[time, ...]``."""
    return jnp.concatenate([first[None], steps[:-1]], axis=0)


# Input features narrower than this are projected inside the recurrence (``x_t @ W_x``, a few
# multiply-adds per unit for the target and a few exogenous columns) rather than before it:
# ``[time, batch, hidden]`` arrays built from a one-column input cost XLA:CPU more (memory and an
# element-wise transpose) than the step arithmetic they save.
INSIDE_FEATURES = 8


def _gate_inputs(x, w_x, b_x, n_gates: int):
    """What the scan reads per step: the features themselves (projected inside the step) or
    each gate's input projection of every step, one matmul per gate before the scan (a tuple of
    ``[time, batch, hidden]``: XLA:CPU runs a step several times slower when it slices the gates
    out of one dynamically indexed array)."""
    if x.shape[-1] < INSIDE_FEATURES:
        return x
    hidden = w_x.shape[-1] // n_gates
    return tuple(
        x @ w_x[:, k * hidden : (k + 1) * hidden] + b_x[None, None, k * hidden : (k + 1) * hidden]
        for k in range(n_gates)
    )


def _step_gates(inputs_t, w_x, b_x, n_gates: int):
    """The gates' input projections at one step, each ``[batch, hidden]``."""
    if isinstance(inputs_t, tuple):
        return inputs_t
    hidden = w_x.shape[-1] // n_gates
    gx = inputs_t @ w_x + b_x[None]
    return tuple(gx[:, k * hidden : (k + 1) * hidden] for k in range(n_gates))


def _rows(a: jax.Array) -> jax.Array:
    """``[time, batch, f]`` as ``[time * batch, f]``."""
    return a.reshape(-1, a.shape[-1])


def _t_matmul(a: jax.Array, b: jax.Array) -> jax.Array:
    """``a.T @ b`` for row-major ``[n, p]`` and ``[n, q]``, contracting the rows (no copy of
    the transpose)."""
    return jax.lax.dot_general(a, b, (((0,), (0,)), ((), ())))


@functools.partial(jax.custom_vjp, nondiff_argnums=(6,))
def gru_recurrence(
    x: jax.Array,
    w_x: jax.Array,
    b_x: jax.Array,
    w_h: jax.Array,
    b_hn: jax.Array,
    h0: jax.Array,
    unroll: int = UNROLL,
) -> jax.Array:
    """GRU states over time (flax ``GRUCell``'s equations).

    Args:
      x: ``[time, batch, f]`` the layer's input features.
      w_x: ``[f, 3 * hidden]`` the reset, update and candidate gates' input kernels side by side.
      b_x: ``[3 * hidden]`` their biases.
      w_h: ``[hidden, 3 * hidden]`` the gates' recurrent kernels side by side.
      b_hn: ``[hidden]`` the candidate's recurrent bias (inside the reset gate's product).
      h0: ``[batch, hidden]`` initial state.
      unroll: scan unroll.

    Returns:
      ``[time, batch, hidden]`` the state after each step.
    """
    return _gru_scan(_gate_inputs(x, w_x, b_x, 3), w_x, b_x, w_h, b_hn, h0, unroll, keep=False)


def _gru_scan(inputs, w_x, b_x, w_h, b_hn, h0, unroll, keep):
    hidden = h0.shape[-1]

    def step(h, inputs_t):
        x_r, x_z, x_n = _step_gates(inputs_t, w_x, b_x, 3)
        gh = h @ w_h
        r = jax.nn.sigmoid(x_r + gh[:, :hidden])
        z = jax.nn.sigmoid(x_z + gh[:, hidden : 2 * hidden])
        hn = gh[:, 2 * hidden :] + b_hn[None]
        n = jnp.tanh(x_n + r * hn)
        h_new = n + z * (h - n)
        return h_new, ((h_new, r, z, n, hn) if keep else h_new)

    _, out = jax.lax.scan(step, h0, inputs, unroll=unroll)
    return out


def _gru_fwd(x, w_x, b_x, w_h, b_hn, h0, unroll):
    inputs = _gate_inputs(x, w_x, b_x, 3)
    hs, r, z, n, hn = _gru_scan(inputs, w_x, b_x, w_h, b_hn, h0, unroll, keep=True)
    return hs, (x, w_x, hs, r, z, n, hn, w_h, h0)


def _gru_bwd(unroll, residuals, d_hs):
    x, w_x, hs, r, z, n, hn, w_h, h0 = residuals
    time, batch, hidden = hs.shape
    previous = _shift_in(h0, hs)
    w_t = w_h.T

    def step(d_next, inputs_t):
        d_out, h_prev, r, z, n, hn = inputs_t
        d_h = d_out + d_next
        d_n = d_h * (1 - z) * (1 - n * n)  # the candidate's pre-activation
        d_z = d_h * (h_prev - n) * z * (1 - z)
        d_r = d_n * hn * r * (1 - r)
        d_gh = jnp.concatenate([d_r, d_z, d_n * r], axis=-1)
        return d_h * z + d_gh @ w_t, (d_gh, d_n)

    d_h0, (d_gh, d_n) = jax.lax.scan(
        step, jnp.zeros_like(h0), (d_hs, previous, r, z, n, hn), reverse=True, unroll=unroll
    )
    d_gh, d_n = _rows(d_gh), _rows(d_n)
    d_w_h = _t_matmul(_rows(previous), d_gh)
    # The input side sees the candidate's gradient without the reset gate's factor.
    d_rz = d_gh[:, : 2 * hidden]
    rows = _rows(x)
    d_w_x = jnp.concatenate([_t_matmul(rows, d_rz), _t_matmul(rows, d_n)], axis=1)
    d_b_x = jnp.concatenate([d_rz.sum(axis=0), d_n.sum(axis=0)])
    d_x = d_rz @ w_x[:, : 2 * hidden].T + d_n @ w_x[:, 2 * hidden :].T
    d_b_hn = d_gh[:, 2 * hidden :].sum(axis=0)
    return d_x.reshape(x.shape), d_w_x, d_b_x, d_w_h, d_b_hn, d_h0


gru_recurrence.defvjp(_gru_fwd, _gru_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(5,))
def lstm_recurrence(
    x: jax.Array,
    w_x: jax.Array,
    b_x: jax.Array,
    w_h: jax.Array,
    carry: tuple[jax.Array, jax.Array],
    unroll: int = UNROLL,
) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
    """LSTM states over time (flax ``OptimizedLSTMCell``'s equations).

    Args:
      x: ``[time, batch, f]`` the layer's input features.
      w_x: ``[f, 4 * hidden]`` the input, forget, cell and output gates' input kernels side by
        side.
      b_x: ``[4 * hidden]`` the gates' biases.
      w_h: ``[hidden, 4 * hidden]`` the gates' recurrent kernels side by side.
      carry: ``(c, h)`` initial cell and hidden state, each ``[batch, hidden]``.
      unroll: scan unroll.

    Returns:
      ``[time, batch, hidden]`` hidden states and the final ``(c, h)``.
    """
    inputs = _gate_inputs(x, w_x, b_x, 4)
    final, hs = _lstm_scan(inputs, w_x, b_x, w_h, carry, unroll, keep=False)
    return hs, final


def _lstm_scan(inputs, w_x, b_x, w_h, carry, unroll, keep):
    hidden = carry[1].shape[-1]

    def step(carry, inputs_t):
        c, h = carry
        x_i, x_f, x_g, x_o = _step_gates(inputs_t, w_x, b_x, 4)
        gh = h @ w_h
        i = jax.nn.sigmoid(x_i + gh[:, :hidden])
        f = jax.nn.sigmoid(x_f + gh[:, hidden : 2 * hidden])
        g = jnp.tanh(x_g + gh[:, 2 * hidden : 3 * hidden])
        o = jax.nn.sigmoid(x_o + gh[:, 3 * hidden :])
        c = f * c + i * g
        h = o * jnp.tanh(c)
        return (c, h), ((h, c, i, f, g, o) if keep else h)

    return jax.lax.scan(step, carry, inputs, unroll=unroll)


def _lstm_fwd(x, w_x, b_x, w_h, carry, unroll):
    inputs = _gate_inputs(x, w_x, b_x, 4)
    final, steps = _lstm_scan(inputs, w_x, b_x, w_h, carry, unroll, keep=True)
    return (steps[0], final), (x, w_x, steps, w_h, carry)


def _lstm_bwd(unroll, residuals, cotangents):
    d_hs, (d_c_last, d_h_last) = cotangents
    x, w_x, (hs, cs, i, f, g, o), w_h, (c0, h0) = residuals
    w_t = w_h.T

    def step(carry, inputs_t):
        d_c_next, d_h_next = carry
        d_out, c_prev, c, i, f, g, o = inputs_t
        tanh_c = jnp.tanh(c)
        d_h = d_out + d_h_next
        d_c = d_c_next + d_h * o * (1 - tanh_c * tanh_c)
        d_pre = jnp.concatenate(
            [
                d_c * g * i * (1 - i),
                d_c * c_prev * f * (1 - f),
                d_c * i * (1 - g * g),
                d_h * tanh_c * o * (1 - o),
            ],
            axis=-1,
        )
        return (d_c * f, d_pre @ w_t), d_pre

    (d_c0, d_h0), d_pre = jax.lax.scan(
        step,
        (d_c_last, d_h_last),
        (d_hs, _shift_in(c0, cs), cs, i, f, g, o),
        reverse=True,
        unroll=unroll,
    )
    d_pre = _rows(d_pre)
    d_w_h = _t_matmul(_rows(_shift_in(h0, hs)), d_pre)
    d_w_x = _t_matmul(_rows(x), d_pre)
    d_x = (d_pre @ w_x.T).reshape(x.shape)
    return d_x, d_w_x, d_pre.sum(axis=0), d_w_h, (d_c0, d_h0)


lstm_recurrence.defvjp(_lstm_fwd, _lstm_bwd)


def fused_kernels(kernels: list[jax.Array], biases: list[jax.Array]) -> tuple[jax.Array, jax.Array]:
    """The gates' input kernels ``[f, hidden]`` and biases ``[hidden]`` side by side."""
    return jnp.concatenate(kernels, axis=1), jnp.concatenate(biases)


def _dense_params(name: str, features: int, x: jax.Array, use_bias: bool, init) -> tuple:
    return DenseParams(features, use_bias=use_bias, kernel_init=init, name=name)(x)


class FusedGRU(nn.Module):
    """One GRU layer over ``[time, batch, f]`` (time-major), with the parameters of flax's
    ``GRUCell`` (same names, shapes and initialisers, so records saved with ``nn.RNN(GRUCell)``
    load unchanged); returns the states ``[time, batch, hidden]``."""

    hidden_size: int
    unroll: int = UNROLL

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        hidden = self.hidden_size
        h = jnp.zeros((x.shape[1], hidden), x.dtype)
        lecun, orthogonal = nn.initializers.lecun_normal(), nn.initializers.orthogonal()
        inputs = [_dense_params(f"i{g}", hidden, x, True, lecun) for g in "rzn"]
        (w_hr, _), (w_hz, _) = (_dense_params(f"h{g}", hidden, h, False, orthogonal) for g in "rz")
        w_hn, b_hn = _dense_params("hn", hidden, h, True, orthogonal)
        w_x, b_x = fused_kernels([k for k, _ in inputs], [b for _, b in inputs])
        w_h = jnp.concatenate([w_hr, w_hz, w_hn], axis=1)
        return gru_recurrence(x, w_x, b_x, w_h, b_hn, h, self.unroll)


def lstm_kernels(
    params: dict,
) -> tuple[list[jax.Array], list[jax.Array], jax.Array]:
    """From ``OptimizedLSTMCell`` parameters (``ii``..``io``, ``hi``..``ho``): the input kernels
    and biases per gate and the fused recurrent kernel ``[hidden, 4 * hidden]``."""
    kernels = [params[f"i{g}"]["kernel"] for g in "ifgo"]
    biases = [params[f"h{g}"]["bias"] for g in "ifgo"]
    w_h = jnp.concatenate([params[f"h{g}"]["kernel"] for g in "ifgo"], axis=1)
    return kernels, biases, w_h


def lstm_param_module(hidden: int, x: jax.Array, h: jax.Array) -> dict:
    """Declares ``OptimizedLSTMCell``'s parameters in the current module, returns them."""
    lecun, orthogonal = nn.initializers.lecun_normal(), nn.initializers.orthogonal()
    params = {}
    for g in "ifgo":
        kernel, _ = _dense_params(f"i{g}", hidden, x, False, lecun)
        params[f"i{g}"] = {"kernel": kernel}
        kernel, bias = _dense_params(f"h{g}", hidden, h, True, orthogonal)
        params[f"h{g}"] = {"kernel": kernel, "bias": bias}
    return params


class FusedLSTM(nn.Module):
    """One LSTM layer over ``[time, batch, f]`` (time-major) with the parameters of flax's
    ``OptimizedLSTMCell``; ``reverse`` reads the steps backwards and returns the states in the
    original order (``nn.RNN(..., reverse=True, keep_order=True)``)."""

    hidden_size: int
    reverse: bool = False
    unroll: int = UNROLL

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        zeros = jnp.zeros((x.shape[1], self.hidden_size), x.dtype)
        kernels, biases, w_h = lstm_kernels(lstm_param_module(self.hidden_size, x, zeros))
        if self.reverse:
            x = jnp.flip(x, axis=0)
        w_x, b_x = fused_kernels(kernels, biases)
        hs, _ = lstm_recurrence(x, w_x, b_x, w_h, (zeros, zeros), self.unroll)
        return jnp.flip(hs, axis=0) if self.reverse else hs


def _stacked_rnn(
    make_layer, features: jax.Array, n_layers: int, dropout: float, deterministic: bool
) -> jax.Array:
    """Runs ``n_layers`` recurrent layers (dropout between them) over ``[batch, time, f]``;
    returns the last layer's states time-major, ``[time, batch, hidden]``."""
    h = jnp.swapaxes(features, 0, 1)
    for layer in range(n_layers):
        h = make_layer(layer)(h)
        if dropout > 0 and layer < n_layers - 1:
            h = Dropout(dropout)(h, deterministic=deterministic)
    return h


class _Bidirectional(nn.Module):
    """A forward and a backward layer side by side (``nn.Bidirectional``'s output order)."""

    forward: nn.Module
    backward: nn.Module

    def __call__(self, x: jax.Array) -> jax.Array:
        return jnp.concatenate([self.forward(x), self.backward(x)], axis=-1)


class LSTMAttention(nn.Module):
    config: LSTMAttentionConfig

    @nn.compact
    def __call__(self, inputs: Inputs, deterministic: bool = True) -> jax.Array:
        cfg = self.config
        y = inputs["y"]
        batch, n_q = y.shape[0], len(cfg.quantiles)
        hidden = cfg.hidden_size
        # Names as flax gave them to the cells of nn.RNN / nn.Bidirectional, so that records
        # saved before the fused layers load unchanged.
        cells = iter(range(2 * cfg.n_layers))

        def layer(index: int) -> nn.Module:
            forward = FusedLSTM(hidden, name=f"OptimizedLSTMCell_{next(cells)}")
            if not cfg.bidirectional:
                return forward
            backward = FusedLSTM(hidden, reverse=True, name=f"OptimizedLSTMCell_{next(cells)}")
            return _Bidirectional(forward, backward)

        states = _stacked_rnn(
            layer, encoder_features(inputs), cfg.n_layers, cfg.dropout, deterministic
        )
        if cfg.bidirectional:
            # The forward pass ends at the last step, the backward pass at the first.
            summary = jnp.concatenate([states[-1, :, :hidden], states[0, :, hidden:]], axis=-1)
        else:
            summary = states[-1]
        states = jnp.swapaxes(states, 0, 1)
        summary = decoder_summary(summary, inputs)
        future = future_features(inputs)

        # One query per horizon step: a learned step embedding, the summary and the step's
        # future-known values; keys and values are the encoder states.
        step_embedding = self.param(
            "step_embedding", nn.initializers.normal(0.02), (cfg.horizon, hidden)
        )
        query_parts = [
            jnp.broadcast_to(step_embedding, (batch, cfg.horizon, hidden)),
            jnp.broadcast_to(summary[:, None], (batch, cfg.horizon, summary.shape[-1])),
        ]
        if future is not None:
            query_parts.append(future)
        queries = nn.Dense(hidden, name="query")(jnp.concatenate(query_parts, axis=-1))
        attended = nn.MultiHeadDotProductAttention(
            num_heads=cfg.n_heads,
            qkv_features=hidden,
            dropout_rate=cfg.dropout,
            deterministic=deterministic,
            name="attention",
        )(queries, states)
        attended = nn.LayerNorm(name="attention_norm")(queries + attended)

        raw = decoder_for(cfg, n_q)(summary, future, attended, deterministic=deterministic)
        if cfg.skip_connection:
            local = encoder_features({"y": y})[..., 0]
            skip = nn.Dense(cfg.horizon * n_q, name="skip")(local)
            raw = raw + skip.reshape(batch, cfg.horizon, n_q)
        return to_series_units(monotone_quantiles(raw, cfg.median_index), y)


class GRU(nn.Module):
    config: GRUConfig

    @nn.compact
    def __call__(self, inputs: Inputs, deterministic: bool = True) -> jax.Array:
        cfg = self.config
        y = inputs["y"]
        states = _stacked_rnn(
            lambda i: FusedGRU(cfg.hidden_size, name=f"GRUCell_{i}"),
            encoder_features(inputs),
            cfg.n_layers,
            cfg.dropout,
            deterministic,
        )
        raw = decoder_for(cfg, len(cfg.quantiles))(
            decoder_summary(states[-1], inputs),
            future_features(inputs),
            deterministic=deterministic,
        )
        return to_series_units(monotone_quantiles(raw, cfg.median_index), y)


lstm_attention_init, lstm_attention_apply = linen_family(LSTMAttention)
gru_init, gru_apply = linen_family(GRU)
