"""The fast formulations of the recurrent and convolutional families against plain references.

Each rewritten piece (the fused GRU and LSTM recurrences with their custom gradients, the TCN's
causal convolutions evaluated at chosen steps, the TCN's receptive cone) is compared with a
reference written the slow, obvious way: a Python loop over time steps with flax's cell
equations, a direct convolution in numpy, the full-sequence network. Forward values and
gradients, through ``jax.jit``. Parameters keep flax's names and shapes, so records saved before
the rewrite load and forecast the same: the last tests check that on the families' own
references (the modules the families were built from before).
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntjax.config import DeepARConfig, GRUConfig, LSTMAttentionConfig, TCNConfig, TransformerConfig
from ntjax.models import deepar, dummy_inputs, recurrent, spec_for, tcn, transformer
from ntjax.models._common import linen_family, monotone_quantiles
from ntjax.models.dropout import Dropout, dropout_mask

RTOL, ATOL = 2e-5, 2e-5


def assert_trees_close(actual, expected):
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(np.asarray(a), np.asarray(b), RTOL, ATOL),
        actual,
        expected,
    )


def randomised(params, key, scale=0.3):
    """``params`` with every leaf replaced by random values (biases non-zero)."""
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(key, len(leaves))
    return jax.tree.unflatten(
        tree,
        [scale * jax.random.normal(k, leaf.shape) for k, leaf in zip(keys, leaves, strict=True)],
    )


# ------------------------------------------------------------------------------------------
# Recurrences: a Python loop over time steps with flax's equations.
# ------------------------------------------------------------------------------------------


def gru_loop(params, x, h):
    """flax ``GRUCell``'s equations, one step at a time; ``x`` ``[batch, time, f]``."""
    p = jax.tree.map(lambda a: a[None] if a.ndim == 1 else a, params)  # biases [1, hidden]
    states = []
    for t in range(x.shape[1]):
        x_t = x[:, t]
        r = jax.nn.sigmoid(x_t @ p["ir"]["kernel"] + p["ir"]["bias"] + h @ p["hr"]["kernel"])
        z = jax.nn.sigmoid(x_t @ p["iz"]["kernel"] + p["iz"]["bias"] + h @ p["hz"]["kernel"])
        hn = h @ p["hn"]["kernel"] + p["hn"]["bias"]
        n = jnp.tanh(x_t @ p["in"]["kernel"] + p["in"]["bias"] + r * hn)
        h = (1 - z) * n + z * h
        states.append(h)
    return jnp.stack(states, axis=1)


def lstm_loop(params, x, carry, reverse=False):
    """flax ``OptimizedLSTMCell``'s equations, one step at a time (backwards with
    ``reverse``, states returned in the original order); returns states and final carry."""
    p = jax.tree.map(lambda a: a[None] if a.ndim == 1 else a, params)  # biases [1, hidden]
    c, h = carry
    steps = range(x.shape[1])
    states = {}
    for t in reversed(steps) if reverse else steps:
        x_t = x[:, t]

        def gate(name, x_t=x_t, h=h):
            return (
                x_t @ p[f"i{name}"]["kernel"] + h @ p[f"h{name}"]["kernel"] + p[f"h{name}"]["bias"]
            )

        i, f, o = (jax.nn.sigmoid(gate(g)) for g in "ifo")
        g = jnp.tanh(gate("g"))
        c = f * c + i * g
        h = o * jnp.tanh(c)
        states[t] = h
    return jnp.stack([states[t] for t in steps], axis=1), (c, h)


FEATURES = {"inside projection": 3, "projection before the scan": recurrent.INSIDE_FEATURES + 2}


@pytest.mark.parametrize("features", FEATURES.values(), ids=FEATURES.keys())
def test_fused_gru_matches_a_loop_over_time_steps(features, key):
    batch, time, hidden = 3, 7, 5
    x_key, h_key, p_key, w_key = jax.random.split(key, 4)
    x = jax.random.normal(x_key, (batch, time, features))
    layer = recurrent.FusedGRU(hidden)
    params = randomised(layer.init(p_key, jnp.swapaxes(x, 0, 1))["params"], p_key)
    weights = jax.random.normal(w_key, (batch, time, hidden))
    h0 = jnp.zeros((batch, hidden))
    del h_key

    def fused(params, x):
        states = layer.apply({"params": params}, jnp.swapaxes(x, 0, 1))
        return (jnp.swapaxes(states, 0, 1) * weights).sum(), states

    def loop(params, x):
        states = gru_loop(params, x, h0)
        return (states * weights).sum(), jnp.swapaxes(states, 0, 1)

    (value, states), grads = jax.jit(jax.value_and_grad(fused, (0, 1), has_aux=True))(params, x)
    (ref_value, ref_states), ref_grads = jax.jit(jax.value_and_grad(loop, (0, 1), has_aux=True))(
        params, x
    )
    assert_trees_close(states, ref_states)
    assert_trees_close(value, ref_value)
    assert_trees_close(grads, ref_grads)


@pytest.mark.parametrize("features", FEATURES.values(), ids=FEATURES.keys())
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
def test_fused_lstm_matches_a_loop_over_time_steps(features, reverse, key):
    batch, time, hidden = 3, 6, 4
    x_key, p_key, w_key = jax.random.split(key, 3)
    x = jax.random.normal(x_key, (batch, time, features))
    layer = recurrent.FusedLSTM(hidden, reverse=reverse)
    params = randomised(layer.init(p_key, jnp.swapaxes(x, 0, 1))["params"], p_key)
    weights = jax.random.normal(w_key, (batch, time, hidden))
    zeros = jnp.zeros((batch, hidden))

    def fused(params, x):
        states = jnp.swapaxes(layer.apply({"params": params}, jnp.swapaxes(x, 0, 1)), 0, 1)
        return (states * weights).sum(), states

    def loop(params, x):
        states, _ = lstm_loop(params, x, (zeros, zeros), reverse)
        return (states * weights).sum(), states

    (value, states), grads = jax.jit(jax.value_and_grad(fused, (0, 1), has_aux=True))(params, x)
    (ref_value, ref_states), ref_grads = jax.jit(jax.value_and_grad(loop, (0, 1), has_aux=True))(
        params, x
    )
    assert_trees_close(states, ref_states)
    assert_trees_close(value, ref_value)
    assert_trees_close(grads, ref_grads)


@pytest.mark.parametrize("features", FEATURES.values(), ids=FEATURES.keys())
def test_lstm_recurrence_final_carry_and_its_gradient(features, key):
    """The final ``(c, h)`` (DeepAR's hand-over to sampling) and gradients through it and the
    initial carry."""
    batch, time, hidden = 2, 5, 3
    keys = jax.random.split(key, 6)
    x = jax.random.normal(keys[0], (batch, time, features))
    params = randomised(
        recurrent.FusedLSTM(hidden).init(keys[1], jnp.swapaxes(x, 0, 1))["params"], keys[1]
    )
    carry = (
        jax.random.normal(keys[2], (batch, hidden)),
        jax.random.normal(keys[3], (batch, hidden)),
    )
    weights = jax.random.normal(keys[4], (batch, time, hidden))

    def fused(params, x, carry):
        kernels, biases, w_h = recurrent.lstm_kernels(params)
        w_x, b_x = recurrent.fused_kernels(kernels, biases)
        states, (c, h) = recurrent.lstm_recurrence(jnp.swapaxes(x, 0, 1), w_x, b_x, w_h, carry)
        return (jnp.swapaxes(states, 0, 1) * weights).sum() + (c**2).sum() + 3 * h.sum()

    def loop(params, x, carry):
        states, (c, h) = lstm_loop(params, x, carry)
        return (states * weights).sum() + (c**2).sum() + 3 * h.sum()

    value, grads = jax.jit(jax.value_and_grad(fused, (0, 1, 2)))(params, x, carry)
    ref_value, ref_grads = jax.jit(jax.value_and_grad(loop, (0, 1, 2)))(params, x, carry)
    assert_trees_close(value, ref_value)
    assert_trees_close(grads, ref_grads)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_the_loop_references_are_flax_cells(cell, key):
    """The references above are what ``nn.RNN`` over flax's cells computes (the layers the
    families were built from before, and so what their saved records hold)."""
    batch, time, features, hidden = 2, 5, 3, 4
    x = jax.random.normal(key, (batch, time, features))
    flax_cell = nn.GRUCell(hidden) if cell == "gru" else nn.OptimizedLSTMCell(hidden)
    rnn = nn.RNN(flax_cell)
    params = randomised(rnn.init(key, x)["params"]["cell"], key)
    expected = rnn.apply({"params": {"cell": params}}, x)
    zeros = jnp.zeros((batch, hidden))
    actual = (
        gru_loop(params, x, zeros) if cell == "gru" else lstm_loop(params, x, (zeros, zeros))[0]
    )
    assert_trees_close(actual, expected)


# ------------------------------------------------------------------------------------------
# TCN: the causal convolution at chosen steps against a direct convolution.
# ------------------------------------------------------------------------------------------


def direct_causal_conv(x, kernel, bias, dilation):
    """numpy: ``out[t] = bias + sum_k x[t - (K - 1 - k) d] @ kernel[k]`` (zero before 0)."""
    batch, time, _ = x.shape
    size = kernel.shape[0]
    out = np.broadcast_to(bias, (batch, time, kernel.shape[-1])).astype(np.float64).copy()
    for t in range(time):
        for k in range(size):
            source = t - (size - 1 - k) * dilation
            if source >= 0:
                out[:, t] += x[:, source] @ kernel[k]
    return out


def jnp_direct_causal_conv(x, kernel, bias, dilation):
    """The same direct convolution in jnp (for gradients), by shifted copies per tap."""
    size = kernel.shape[0]
    out = bias[None, None]
    for k in range(size):
        back = (size - 1 - k) * dilation
        shifted = jnp.pad(x, ((0, 0), (back, 0), (0, 0)))[:, : x.shape[1]]
        out = out + shifted @ kernel[k]
    return out


CONVOLUTIONS = {
    "kernel 2 dilation 1": (2, 1),
    "kernel 2 dilation 4": (2, 4),
    "kernel 3 dilation 2": (3, 2),
    "kernel 2 dilation 16 (mostly padding)": (2, 16),
}
STEP_SETS = {
    "every step": lambda time: tuple(range(time)),
    "the last step": lambda time: (time - 1,),
    "evenly spaced": lambda time: tuple(range(time - 1, -1, -3))[::-1],
    "irregular": lambda time: (0, 2, 3, 7, time - 1),
}


@pytest.mark.parametrize("kernel_size,dilation", CONVOLUTIONS.values(), ids=CONVOLUTIONS.keys())
@pytest.mark.parametrize("steps", STEP_SETS.values(), ids=STEP_SETS.keys())
def test_causal_conv_at_chosen_steps_is_the_direct_convolution(kernel_size, dilation, steps, key):
    batch, time, features, channels = 2, 12, 3, 4
    x_key, k_key, b_key, w_key = jax.random.split(key, 4)
    x = jax.random.normal(x_key, (batch, time, features))
    kernel = jax.random.normal(k_key, (kernel_size, features, channels))
    bias = jax.random.normal(b_key, (channels,))
    outputs = steps(time)
    taps = tcn.tap_indices(tuple(range(time)), outputs, kernel_size, dilation)
    expected = direct_causal_conv(np.asarray(x), np.asarray(kernel), np.asarray(bias), dilation)
    actual = jax.jit(lambda x, k, b: tcn.causal_conv(x, k, b, taps))(x, kernel, bias)
    np.testing.assert_allclose(actual, expected[:, list(outputs)], RTOL, ATOL)

    weights = jax.random.normal(w_key, (batch, len(outputs), channels))
    index = np.asarray(outputs)

    def fast(x, k, b):
        return (tcn.causal_conv(x, k, b, taps) * weights).sum()

    def direct(x, k, b):
        return (jnp_direct_causal_conv(x, k, b, dilation)[:, index] * weights).sum()

    grads = jax.jit(jax.grad(fast, (0, 1, 2)))(x, kernel, bias)
    assert_trees_close(grads, jax.jit(jax.grad(direct, (0, 1, 2)))(x, kernel, bias))


def test_receptive_cone_of_doubling_dilations():
    """Input 168, dilations 1..64, kernel 2: the last block at one step, each block before it
    at steps spaced by its dilation, the first convolution at every step."""
    cone = tcn.receptive_cone(168, 2, (1, 2, 4, 8, 16, 32, 64))
    assert cone[-1].outputs == (167,)
    assert cone[-1].first == (103, 167)
    assert cone[-1].inputs == (39, 103, 167)
    for block, dilation in zip(cone, (1, 2, 4, 8, 16, 32, 64), strict=True):
        assert all((167 - p) % dilation == 0 for p in block.inputs)
    assert cone[0].first == tuple(range(168))
    for earlier, later in zip(cone[:-1], cone[1:], strict=True):
        assert earlier.outputs == later.inputs
    convolved = sum(len(b.first) + len(b.outputs) for b in cone)
    assert convolved < 2 * 7 * 168 / 4


class FullSequenceBlock(nn.Module):
    """A residual block as it was written before the receptive cone: ``nn.Conv`` over every
    step."""

    channels: int
    kernel_size: int
    dilation: int

    @nn.compact
    def __call__(self, x):
        causal = [((self.kernel_size - 1) * self.dilation, 0)]
        h = x
        for _ in range(2):
            conv = nn.Conv(
                self.channels, (self.kernel_size,), padding=causal, kernel_dilation=self.dilation
            )
            h = nn.relu(conv(h))
        residual = x if x.shape[-1] == self.channels else nn.Dense(self.channels)(x)
        return nn.relu(h + residual)


class FullSequenceTCN(nn.Module):
    """The TCN family before the receptive cone (same parameter names)."""

    config: TCNConfig

    @nn.compact
    def __call__(self, inputs, deterministic=True):
        cfg = self.config
        h = recurrent.encoder_features(inputs)
        for index, dilation in enumerate(cfg.block_dilations):
            block = FullSequenceBlock(
                cfg.channels, cfg.kernel_size, dilation, name=f"_ResidualBlock_{index}"
            )
            h = block(h)
        raw = recurrent.decoder_for(cfg, len(cfg.quantiles))(
            recurrent.decoder_summary(h[:, -1], inputs), recurrent.future_features(inputs)
        )
        return recurrent.to_series_units(monotone_quantiles(raw, cfg.median_index), inputs["y"])


TCN_CONFIGS = {
    "doubling dilations": dict(horizon=4, input_size=40, channels=6),
    "kernel 3": dict(horizon=4, input_size=30, channels=5, kernel_size=3),
    "irregular dilations with exogenous columns": dict(
        horizon=3,
        input_size=20,
        channels=4,
        dilations=(1, 3, 2, 5),
        hist_exog=("a",),
        futr_exog=("b",),
    ),
}


@pytest.mark.parametrize("fields", TCN_CONFIGS.values(), ids=TCN_CONFIGS.keys())
def test_tcn_on_its_receptive_cone_is_the_full_sequence_network(fields, key):
    """Same parameters (names, shapes, initial values) as the ``nn.Conv`` network, and the
    same forecasts and gradients: records saved before load unchanged."""
    config = TCNConfig(context_size=3, decoder_hidden_size=8, **fields)
    reference_init, reference_apply = linen_family(FullSequenceTCN)
    spec = spec_for(config)
    params = spec.init(config, key)
    assert_trees_close(params, reference_init(config, key))
    params = randomised(params, key)
    shapes = dummy_inputs(config, 3)
    inputs = {
        k: jax.random.normal(jax.random.fold_in(key, i), v.shape)
        for i, (k, v) in enumerate(shapes.items())
    }

    def loss(apply):
        return lambda p, x: (apply(config, p, x) ** 2).sum()

    forecast = jax.jit(lambda p, x: spec.apply(config, p, x))(params, inputs)
    reference = jax.jit(lambda p, x: reference_apply(config, p, x))(params, inputs)
    assert_trees_close(forecast, reference)
    grads = jax.jit(jax.grad(loss(spec.apply)))(params, inputs)
    assert_trees_close(grads, jax.jit(jax.grad(loss(reference_apply)))(params, inputs))


# ------------------------------------------------------------------------------------------
# The recurrent families against the flax modules they were built from.
# ------------------------------------------------------------------------------------------


class FlaxGRU(nn.Module):
    config: GRUConfig

    @nn.compact
    def __call__(self, inputs, deterministic=True):
        cfg = self.config
        h = recurrent.encoder_features(inputs)
        for i in range(cfg.n_layers):
            h = nn.RNN(nn.GRUCell(cfg.hidden_size), name=f"gru_{i}")(h)
        raw = recurrent.decoder_for(cfg, len(cfg.quantiles))(
            recurrent.decoder_summary(h[:, -1], inputs), recurrent.future_features(inputs)
        )
        return recurrent.to_series_units(monotone_quantiles(raw, cfg.median_index), inputs["y"])


RECURRENT_CONFIGS = {
    "gru": GRUConfig(horizon=3, input_size=9, hidden_size=6, context_size=2, decoder_hidden_size=8),
    "gru with exogenous columns, 3 layers": GRUConfig(
        horizon=3,
        input_size=9,
        hidden_size=5,
        n_layers=3,
        context_size=2,
        decoder_hidden_size=8,
        hist_exog=tuple("abcdefgh"),
        futr_exog=("z",),
    ),
}


@pytest.mark.parametrize("config", RECURRENT_CONFIGS.values(), ids=RECURRENT_CONFIGS.keys())
def test_gru_family_keeps_flax_parameters_and_numbers(config, key):
    reference_init, reference_apply = linen_family(FlaxGRU)
    spec = spec_for(config)
    params = spec.init(config, key)
    assert_trees_close(params, reference_init(config, key))
    params = randomised(params, key)
    shapes = dummy_inputs(config, 4)
    inputs = {
        k: jax.random.normal(jax.random.fold_in(key, i), v.shape)
        for i, (k, v) in enumerate(shapes.items())
    }
    assert_trees_close(
        jax.jit(lambda p, x: spec.apply(config, p, x))(params, inputs),
        jax.jit(lambda p, x: reference_apply(config, p, x))(params, inputs),
    )

    def loss(apply):
        return lambda p, x: (apply(config, p, x) ** 2).sum()

    assert_trees_close(
        jax.jit(jax.grad(loss(spec.apply)))(params, inputs),
        jax.jit(jax.grad(loss(reference_apply)))(params, inputs),
    )


class FlaxSelfAttention(nn.Module):
    """flax's attention module on one input (the reference), or ``SelfAttention`` in its
    place: each inside a parent, as in the encoder layer, so that both draw their initial
    values from the same paths."""

    heads: int
    features: int
    flax_module: bool

    @nn.compact
    def __call__(self, x):
        if self.flax_module:
            attention = nn.MultiHeadDotProductAttention(
                num_heads=self.heads, qkv_features=self.features
            )
            return attention(x, x)
        name = "MultiHeadDotProductAttention_0"
        return transformer.SelfAttention(self.heads, self.features, name=name)(x, True)


def test_self_attention_is_flax_attention_with_one_qkv_matmul(key):
    x = jax.random.normal(key, (3, 5, 7, 16))  # two batch axes, 7 tokens, 16 features
    ours, reference = FlaxSelfAttention(4, 24, False), FlaxSelfAttention(4, 24, True)
    params = ours.init(key, x)["params"]
    assert_trees_close(params, reference.init(key, x)["params"])  # names, shapes, values
    params = randomised(params, key)

    def forward(module):
        return lambda p, x: module.apply({"params": p}, x)

    assert_trees_close(jax.jit(forward(ours))(params, x), jax.jit(forward(reference))(params, x))

    def gradient(module):
        return jax.jit(jax.grad(lambda p, x: (forward(module)(p, x) ** 2).sum(), (0, 1)))

    # Sums of squares over 1,680 outputs: compare at the gradients' scale (the key bias's
    # is zero in exact arithmetic, rounding noise in both).
    ours_gradient, reference_gradient = gradient(ours)(params, x), gradient(reference)(params, x)
    scale = max(float(np.abs(g).max()) for g in jax.tree.leaves(reference_gradient))
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6 * scale),
        ours_gradient,
        reference_gradient,
    )


class FlaxEncoderLayer(nn.Module):
    """The encoder layer as it was built on flax's attention module (records saved before)."""

    d_model: int
    n_heads: int
    ffn_size: int
    dropout: float

    @nn.compact
    def __call__(self, x, deterministic):
        h = nn.LayerNorm()(x)
        h = nn.MultiHeadDotProductAttention(num_heads=self.n_heads, qkv_features=self.d_model)(h, h)
        x = x + h
        h = nn.LayerNorm()(x)
        h = nn.gelu(nn.Dense(self.ffn_size)(h))
        return x + nn.Dense(self.d_model)(h)


def test_transformer_records_forecast_as_with_flax_attention(key, monkeypatch):
    config = TransformerConfig(horizon=6, input_size=32, d_model=16, n_heads=4, ffn_size=24)
    spec = spec_for(config)
    params = randomised(spec.init(config, key), key, scale=0.2)
    inputs = {"y": jax.random.normal(key, (5, 32))}
    forecast = spec.apply(config, params, inputs)
    with monkeypatch.context() as patched:
        patched.setattr(
            transformer, "_EncoderLayer", type("_EncoderLayer", (FlaxEncoderLayer,), {})
        )
        assert jax.tree.structure(spec.init(config, key)) == jax.tree.structure(params)
        before = spec.apply(config, params, inputs)
    np.testing.assert_allclose(np.asarray(forecast), np.asarray(before), RTOL, ATOL)


LSTM_CONFIGS = {
    "lstm attention": dict(),
    "bidirectional with exogenous columns": dict(
        bidirectional=True, hist_exog=("a",), futr_exog=("b",)
    ),
}


@pytest.mark.parametrize("fields", LSTM_CONFIGS.values(), ids=LSTM_CONFIGS.keys())
def test_lstm_attention_keeps_flax_parameter_names(fields, key):
    """The fused layers declare the parameters ``nn.RNN(OptimizedLSTMCell)`` had, under the
    names flax gave them (``OptimizedLSTMCell_<k>``), with the same initial values."""
    config = LSTMAttentionConfig(
        horizon=3,
        input_size=8,
        hidden_size=4,
        n_heads=2,
        context_size=2,
        decoder_hidden_size=6,
        **fields,
    )
    params = spec_for(config).init(config, key)
    cells = sorted(k for k in params if k.startswith("OptimizedLSTMCell_"))
    assert cells == [f"OptimizedLSTMCell_{i}" for i in range(2 * (1 + config.bidirectional))]
    x = jax.random.normal(
        key, (1, config.input_size, 1 + len(config.hist_exog) + len(config.futr_exog))
    )
    cell_params = nn.RNN(nn.OptimizedLSTMCell(config.hidden_size)).init(key, x)["params"]["cell"]
    assert jax.tree.structure(params["OptimizedLSTMCell_0"]) == jax.tree.structure(cell_params)
    assert jax.tree.map(jnp.shape, params["OptimizedLSTMCell_0"]) == jax.tree.map(
        jnp.shape, cell_params
    )


# ------------------------------------------------------------------------------------------
# DeepAR against the network it was before: flax cells stepped by nn.scan.
# ------------------------------------------------------------------------------------------


class CellDeepAR(nn.Module):
    """DeepAR's network as written before the fused layers: ``OptimizedLSTMCell``s stepped by
    ``nn.scan``, the same rng streams (``make_rng("sample")`` once per step)."""

    config: DeepARConfig

    def setup(self):
        cfg = self.config
        self.cells = [
            nn.OptimizedLSTMCell(cfg.hidden_size, name=f"lstm_{i}") for i in range(cfg.n_layers)
        ]
        self.head = nn.Dense(len(deepar.LIKELIHOODS[cfg.likelihood].names), name="head")

    def step(self, carry, features):
        h, new = features, []
        for i, cell in enumerate(self.cells):
            layer_carry, h = cell(carry[i], h)
            new.append(layer_carry)
        return tuple(new), self.head(h)

    def unroll(self, features):
        zeros = jnp.zeros((features.shape[0], self.config.hidden_size))
        scan = nn.scan(
            lambda module, carry, x: module.step(carry, x),
            variable_broadcast="params",
            split_rngs={"params": False},
            in_axes=1,
            out_axes=1,
        )
        return scan(self, tuple((zeros, zeros) for _ in self.cells), features)

    def __call__(self, inputs):
        cfg, y = self.config, inputs["y"]
        level, spread = deepar._window_units(y, cfg.input_size)
        exog = inputs.get("futr_exog")
        exog = None if exog is None else exog[:, 1 : y.shape[1] + 1]
        lags = deepar.seasonal_lags(cfg)
        lagged = deepar._teacher_lagged(y, lags) if lags else None
        features = deepar._step_features(y, exog, level, spread, lagged)
        dist = deepar.distribution(cfg, self.unroll(features)[1], features[..., 0])
        return dict(dist, loc=dist["loc"] * spread + level, scale=dist["scale"] * spread)

    def sample(self, inputs, num_samples):
        cfg, y = self.config, inputs["y"]
        batch, size = y.shape
        exog = inputs.get("futr_exog")
        level, spread = deepar._window_units(y, size)
        lags = deepar.seasonal_lags(cfg)
        lagged = deepar._teacher_lagged(y, lags) if lags else None
        context_exog = None if exog is None else exog[:, 1 : size + 1]
        carry, raw = self.unroll(deepar._step_features(y, context_exog, level, spread, lagged))

        def repeat(a):
            return jnp.tile(a, (num_samples,) + (1,) * (a.ndim - 1))

        next_exog = None
        if exog is not None:
            next_exog = jnp.concatenate([exog[:, size + 1 :], jnp.zeros_like(exog[:, :1])], 1)
        future_lagged = deepar._forecast_lagged(y, lags, cfg.horizon) if lags else None
        after = deepar._step_features(
            jnp.zeros((batch, cfg.horizon)), next_exog, level, spread, future_lagged
        )
        likelihood = deepar.LIKELIHOODS[cfg.likelihood]

        def body(module, state, x):
            carry, raw, previous = state
            value = likelihood.draw(
                module.make_rng("sample"), deepar.distribution(cfg, raw, previous)
            )
            carry, raw = module.step(carry, jnp.concatenate([value[:, None], x], axis=-1))
            return (carry, raw, value), value

        scan = nn.scan(
            body,
            variable_broadcast="params",
            split_rngs={"params": False, "sample": True},
            in_axes=1,
            out_axes=1,
        )
        state = (jax.tree.map(repeat, carry), repeat(raw[:, -1]), jnp.zeros(num_samples * batch))
        _, paths = scan(self, state, repeat(after[..., 1:]))
        return paths.reshape(num_samples, batch, cfg.horizon) * spread[None] + level[None]


DEEPAR_CONFIGS = {
    "gaussian": DeepARConfig(horizon=4, input_size=12, hidden_size=6, dropout=0.0, num_samples=7),
    "student-t, 3 layers, future exogenous": DeepARConfig(
        horizon=4,
        input_size=12,
        hidden_size=5,
        n_layers=3,
        dropout=0.0,
        likelihood="student_t",
        futr_exog=("a", "b"),
        num_samples=5,
    ),
    "horizon beyond the window (no lag)": DeepARConfig(
        horizon=14, input_size=12, hidden_size=4, dropout=0.0, num_samples=4
    ),
}


@pytest.mark.parametrize("config", DEEPAR_CONFIGS.values(), ids=DEEPAR_CONFIGS.keys())
def test_deepar_matches_its_cell_network(config, key):
    """Same parameters, likelihood, gradients and, from the same key, the same sample paths:
    records saved before forecast the same numbers."""
    reference = CellDeepAR(config)
    spec = spec_for(config)
    shapes = dummy_inputs(config, 3)
    inputs = {
        k: jax.random.normal(jax.random.fold_in(key, i), v.shape)
        for i, (k, v) in enumerate(shapes.items())
    }
    params = spec.init(config, key)
    assert_trees_close(params, reference.init(key, dummy_inputs(config))["params"])
    params = randomised(params, key)
    targets = jax.random.normal(jax.random.fold_in(key, 99), (3, config.horizon))

    def loss(p):
        return spec.training_loss(config, p, inputs, targets).mean()

    def reference_loss(p):
        full = jnp.concatenate([inputs["y"], targets], axis=1)
        dist = reference.apply({"params": p}, dict(inputs, y=full[:, :-1]))
        nll = deepar.LIKELIHOODS[config.likelihood].nll(dist, full[:, 1:])
        return nll[:, config.input_size - 1 :].mean()

    assert_trees_close(jax.jit(loss)(params), jax.jit(reference_loss)(params))
    assert_trees_close(jax.jit(jax.grad(loss))(params), jax.jit(jax.grad(reference_loss))(params))
    sample_key = jax.random.fold_in(key, 7)
    paths = jax.jit(lambda p: spec.sample(spec, config, p, inputs, key=sample_key))(params)
    expected = jax.jit(
        lambda p: reference.apply(
            {"params": p},
            inputs,
            config.num_samples,
            method=CellDeepAR.sample,
            rngs={"sample": sample_key},
        )
    )(params)
    assert_trees_close(paths, expected)


# ------------------------------------------------------------------------------------------
# Dropout: a counter-based mask instead of Threefry bits.
# ------------------------------------------------------------------------------------------


def test_dropout_mask_keeps_the_asked_share_independently_and_is_a_function_of_the_key():

    key = jax.random.key(3)
    mask = np.asarray(jax.jit(dropout_mask, static_argnums=2)(key, 0.9, (256, 1024)))
    n = mask.size
    assert abs(mask.mean() - 0.9) < 4 * np.sqrt(0.9 * 0.1 / n)
    # Neighbours along either axis and the two halves of the mask are uncorrelated.
    centred = mask.astype(np.float64) - mask.mean()
    for a, b in (
        (centred[:, 1:], centred[:, :-1]),
        (centred[1:], centred[:-1]),
        (centred[:128], centred[128:]),
    ):
        assert abs(np.corrcoef(a.ravel(), b.ravel())[0, 1]) < 0.01
    np.testing.assert_array_equal(mask, np.asarray(dropout_mask(key, 0.9, (256, 1024))))
    other = np.asarray(dropout_mask(jax.random.key(4), 0.9, (256, 1024)))
    assert 0.15 < np.mean(mask != other) < 0.2  # 2 * 0.9 * 0.1 for independent masks
    traced = jax.jit(lambda p: dropout_mask(key, p, (64, 64)))(jnp.float32(0.25))
    assert abs(float(traced.mean()) - 0.25) < 0.03


def test_dropout_module_scales_what_it_keeps_and_shares_masks_over_broadcast_dims():

    x = jnp.arange(1.0, 1 + 8 * 16 * 4).reshape(8, 16, 4)
    key = jax.random.key(0)
    out = Dropout(0.25, broadcast_dims=(2,)).apply(
        {}, x, deterministic=False, rngs={"dropout": key}
    )
    kept = np.asarray(out) != 0
    assert np.all(kept == kept[..., :1])  # one mask over the broadcast axis
    np.testing.assert_allclose(np.asarray(out)[kept], np.asarray(x)[kept] / 0.75, rtol=1e-6)
    assert np.array_equal(np.asarray(Dropout(0.25).apply({}, x, deterministic=True)), np.asarray(x))
    # A subclass of nn.Dropout (what population training looks for), drawing dropout_mask.
    assert isinstance(Dropout(0.5), nn.Dropout)
    apply = jax.jit(lambda k: Dropout(0.5).apply({}, x, deterministic=False, rngs={"dropout": k}))
    assert np.mean(np.asarray(apply(key)) != 0) == pytest.approx(0.5, abs=0.05)
    assert not np.array_equal(np.asarray(apply(key)), np.asarray(apply(jax.random.key(1))))
