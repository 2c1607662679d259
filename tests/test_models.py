"""The contract every model family meets, the exogenous-input test and DeepAR's sampling."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import polars as pl
import pytest
import scipy.stats
from conftest import sine_frame

import ntjax as nt
from ntjax.config import (
    ConfigError,
    DeepARConfig,
    GRUConfig,
    LSTMAttentionConfig,
    NBEATSConfig,
    NHITSConfig,
    OptimizerConfig,
    TCNConfig,
    TrainingConfig,
    TransformerConfig,
    tcn_receptive_field,
)
from ntjax.models import MODELS, dummy_inputs, nbeats, spec_for, tcn
from ntjax.store import Store
from ntjax.train import Trainer, prepare

HORIZON, INPUT_SIZE = 6, 24

# Tiny members of every family (the defaults are research-sized).
SIZES = {
    "nhits": dict(mlp_units=32),
    "nbeats": dict(mlp_units=32),
    "lstm_attention": dict(hidden_size=16, n_heads=2, context_size=4, decoder_hidden_size=16),
    "gru": dict(hidden_size=16, context_size=4, decoder_hidden_size=16),
    "tcn": dict(channels=16, context_size=4, decoder_hidden_size=16),
    "deepar": dict(hidden_size=16, dropout=0.0, num_samples=64),
    "transformer": dict(
        d_model=16,
        n_heads=2,
        ffn_size=32,
        patch_len=4,
        patch_stride=2,
        context_size=4,
        decoder_hidden_size=16,
        dropout=0.0,
    ),
}
# The seven forecasting families; `ensemble` combines them and has its own tests.
FAMILIES = sorted(k for k in MODELS if k != "ensemble")
EXOG_FAMILIES = ["nhits", "lstm_attention", "gru", "tcn", "transformer", "deepar"]
# One device: the sharded step is covered by the trace test, and one compiles faster.
FIT_TRAINING = TrainingConfig(
    max_steps=150, batch_size=32, val_check_steps=50, devices=1, progress=False
)
FIT_OPTIMIZER = OptimizerConfig(learning_rate=1e-2, schedule="cosine")


# Where a family starts at a fixed forecast (NHITS: the last value, through zero forecast
# layers), its untrained parameters show no wiring: these tests use the random start.
RANDOM_START = {"nhits": {"forecast_init": "lecun_normal"}}


def tiny_config(kind, **fields):
    fields = {**SIZES[kind], **fields}
    return MODELS[kind].config_cls(horizon=HORIZON, input_size=INPUT_SIZE, **fields)


def random_inputs(config, key, batch=5, scale=3.0):
    shapes = dummy_inputs(config, batch)
    keys = dict(zip(shapes, jax.random.split(key, len(shapes)), strict=True))
    return {k: scale * jax.random.normal(keys[k], v.shape) for k, v in shapes.items()}


def test_seven_families_are_in_the_table():
    assert set(FAMILIES) == {
        "nhits",
        "nbeats",
        "lstm_attention",
        "gru",
        "tcn",
        "deepar",
        "transformer",
    }


@pytest.fixture(scope="module")
def fitted():
    """Records fitted once per family on one noiseless sine, shared by the tests below."""
    records = {}

    def get(kind):
        if kind not in records:
            df = sine_frame(n_series=1, length=120)
            records[kind] = nt.train(df, tiny_config(kind), FIT_TRAINING, FIT_OPTIMIZER)
        return records[kind]

    return get


@pytest.mark.parametrize("kind", FAMILIES)
def test_output_shapes_and_non_crossing_quantiles(kind, key):
    config = tiny_config(kind, quantiles=(0.05, 0.1, 0.5, 0.8, 0.95))
    spec = spec_for(config)
    params = spec.init(config, key)
    predict = jax.jit(lambda p, x, k: spec.predict_quantiles(config, p, x, key=k))
    out = predict(params, random_inputs(config, key, batch=5), jax.random.fold_in(key, 1))
    chex.assert_shape(out, (5, HORIZON, 5))
    chex.assert_tree_all_finite(out)
    assert np.all(np.diff(np.asarray(out), axis=-1) >= 0)


VARIANTS = {
    "nbeats_interpretable": ("nbeats", dict(stack_types=("trend", "seasonality"), n_blocks=(1, 2))),
    "lstm_bidirectional_no_skip": (
        "lstm_attention",
        dict(bidirectional=True, skip_connection=False),
    ),
    "tcn_kernel_3": ("tcn", dict(kernel_size=3)),
    "deepar_student_t": ("deepar", dict(likelihood="student_t")),
    "transformer_learned_padded_patches": (
        "transformer",
        dict(positional_encoding="learned", patch_len=5, patch_stride=3),
    ),
    "transformer_one_token_per_step": ("transformer", dict(patch_len=1, patch_stride=1)),
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_variants_keep_the_output_contract(variant, key):
    kind, fields = VARIANTS[variant]
    config = tiny_config(kind, **fields)
    spec = spec_for(config)
    params = spec.init(config, key)
    out = jax.jit(lambda p, x: spec.predict_quantiles(config, p, x, key=key))(
        params, random_inputs(config, key, batch=3)
    )
    chex.assert_shape(out, (3, HORIZON, len(config.quantiles)))
    chex.assert_tree_all_finite(out)
    assert np.all(np.diff(np.asarray(out), axis=-1) >= 0)


@pytest.mark.parametrize("kind", FAMILIES)
def test_one_trace_per_jitted_step_and_identical_parameters_from_a_seed(kind, key):
    config = tiny_config(kind)
    spec = spec_for(config)
    training = TrainingConfig(max_steps=3, batch_size=8, progress=False)
    trainer = Trainer(config, training, OptimizerConfig())
    data = trainer.replicate(prepare(sine_frame(), config, training).data)

    def run():
        state = trainer.init_state(jax.random.key(7))
        for _ in range(3):
            state, loss = trainer.step(state, data, key)
        return jax.device_get(state.params), float(loss)

    (params_a, loss_a), (params_b, loss_b) = run(), run()
    assert trainer.step._cache_size() == 1
    chex.assert_trees_all_equal(params_a, params_b)
    assert loss_a == loss_b and np.isfinite(loss_a)
    chex.assert_trees_all_equal(spec.init(config, key), spec.init(config, key))
    other = spec.init(config, jax.random.fold_in(key, 1))
    assert not all(
        np.array_equal(a, b)
        for a, b in zip(
            jax.tree.leaves(other), jax.tree.leaves(spec.init(config, key)), strict=True
        )
    )

    chex.clear_trace_counter()  # the counter is keyed by code, shared across parametrisations

    @jax.jit
    @chex.assert_max_traces(n=1)
    def predict(params, inputs, k):
        return spec.predict_quantiles(config, params, inputs, key=k)

    for i in range(3):
        predict(params_a, random_inputs(config, jax.random.fold_in(key, i)), key)
    assert predict._cache_size() == 1


@pytest.mark.parametrize("kind", FAMILIES)
def test_gradients_are_finite_and_reach_every_layer(kind, key):
    config = tiny_config(kind, **RANDOM_START.get(kind, {}))
    spec = spec_for(config)
    params = spec.init(config, key)
    inputs = random_inputs(config, key, batch=4, scale=1.0)
    targets = jax.random.normal(jax.random.fold_in(key, 1), (4, HORIZON))

    @jax.jit
    def grad(params):
        def mean_loss(p):
            return spec.training_loss(config, p, inputs, targets, key=key).mean()

        return jax.grad(mean_loss)(params)

    grads = grad(params)
    chex.assert_tree_all_finite(grads)
    chex.assert_trees_all_equal_shapes(grads, params)
    norms = [float(jnp.abs(g).sum()) for g in jax.tree.leaves(grads)]
    assert sum(n > 0 for n in norms) >= 0.9 * len(norms)


@pytest.mark.parametrize("kind", FAMILIES)
def test_fits_a_tiny_series_almost_exactly(kind, fitted):
    record = fitted(kind)
    # The last horizon of the training series, forecast from the input_size steps before it:
    # in sample by design (the guard is told so).
    metrics = nt.evaluate(
        record, sine_frame(n_series=1, length=120), levels=(), allow_in_sample=True
    )
    assert metrics["in_sample"] is True
    # The sine has amplitude 1 around 10: an error of 0.1 is 5% of its range.
    assert metrics["mae"] < 0.1, metrics


@pytest.mark.parametrize("kind", FAMILIES)
def test_forecast_frame_columns(kind, fitted):
    record = fitted(kind)
    frame = nt.forecast(record, sine_frame(n_series=1, length=120), levels=(80,))
    assert frame.columns == [
        "unique_id",
        "ds",
        "y_hat",
        "q_0.025",
        "q_0.1",
        "q_0.5",
        "q_0.9",
        "q_0.975",
        "lo_80",
        "hi_80",
    ]
    assert frame.height == HORIZON
    assert frame["ds"].to_list() == list(range(120, 120 + HORIZON))
    np.testing.assert_array_equal(frame["y_hat"].to_numpy(), frame["q_0.5"].to_numpy())
    assert (frame["lo_80"] <= frame["y_hat"]).all() and (frame["y_hat"] <= frame["hi_80"]).all()


@pytest.mark.parametrize("kind", FAMILIES)
def test_store_round_trip_forecasts_identically(kind, fitted, tmp_path):
    record = fitted(kind)
    store = Store(tmp_path / "store")
    store.save(record)
    loaded = store.load(record.id, verify=True)
    assert loaded.config == record.config and loaded.kind == kind
    chex.assert_trees_all_equal(jax.device_get(loaded.params), jax.device_get(record.params))
    df = sine_frame(n_series=1, length=120)
    key = jax.random.key(5)
    expected = nt.forecast(record, df, levels=(80,), key=key)
    assert nt.forecast(loaded, df, levels=(80,), key=key).equals(expected)


def regressor_frame(length=360, n_series=2, seed=0):
    """``y = 2 x + 0.1 noise`` with ``x`` white noise: only a model that sees the future
    ``x`` can forecast ``y``."""
    rng = np.random.default_rng(seed)
    frames = []
    for i in range(n_series):
        x = rng.normal(size=length)
        y = 5.0 * i + 2.0 * x + 0.1 * rng.normal(size=length)
        frames.append(pl.DataFrame({"unique_id": f"s{i}", "ds": np.arange(length), "y": y, "x": x}))
    return pl.concat(frames)


@pytest.mark.parametrize(
    "kind",
    [
        k if k in ("nhits", "deepar") else pytest.param(k, marks=pytest.mark.slow)
        for k in EXOG_FAMILIES
    ],
)
def test_future_known_regressor_makes_the_forecast_clearly_better(kind):
    df = regressor_frame()
    train, _ = nt.train_test_split(df, 60)
    errors = {}
    for futr_exog in ((), ("x",)):
        record = nt.train(
            train.select("unique_id", "ds", "y", *futr_exog),
            tiny_config(kind, futr_exog=futr_exog),
            FIT_TRAINING,
            FIT_OPTIMIZER,
        )
        errors[futr_exog] = nt.evaluate(record, df, test_size=60, levels=())["mae"]
    # Without x the best forecast is the mean (MAE ~ 2 * 0.8); with it, the noise (~0.08).
    # 150 steps of a 32-unit NHITS reach 0.42-0.58 with x over seeds 0-2 (1.63 without).
    assert errors[("x",)] < 0.4 * errors[()], errors


@pytest.mark.parametrize("kind", EXOG_FAMILIES)
def test_exogenous_inputs_reach_the_forecast(kind, key):
    hist_exog = () if kind == "deepar" else ("h",)
    config = tiny_config(kind, hist_exog=hist_exog, futr_exog=("f",), **RANDOM_START.get(kind, {}))
    spec = spec_for(config)
    params = spec.init(config, key)
    predict = jax.jit(lambda p, x: spec.predict_quantiles(config, p, x, key=key))
    inputs = random_inputs(config, key, batch=2, scale=1.0)
    base = np.asarray(predict(params, inputs))
    chex.assert_shape(base, (2, HORIZON, len(config.quantiles)))
    names = ["futr_exog"] + (["hist_exog"] if hist_exog else [])
    for name in names:
        moved = dict(inputs)
        # Only the last step of the future part, or of the history, moves.
        moved[name] = inputs[name].at[:, -1].add(3.0)
        assert not np.allclose(np.asarray(predict(params, moved)), base), name


def test_forecast_needs_the_future_values_of_the_regressor():
    df = regressor_frame(length=120, n_series=1)
    config = tiny_config("gru", futr_exog=("x",))
    record = nt.train(
        df, config, TrainingConfig(max_steps=2, batch_size=8, devices=1, progress=False)
    )
    with pytest.raises(ValueError, match="futr_df"):
        nt.forecast(record, df)
    future = pl.DataFrame(
        {"unique_id": "s0", "ds": np.arange(120, 120 + HORIZON), "x": np.ones(HORIZON)}
    )
    frame = nt.forecast(record, df, futr_df=future)
    assert frame.height == HORIZON


@pytest.mark.parametrize("likelihood", ["gaussian", "student_t"])
def test_deepar_samples_are_keyed_and_quantiles_come_from_them(likelihood, key):
    n_paths = 2000
    config = tiny_config("deepar", likelihood=likelihood, futr_exog=("x",), num_samples=n_paths)
    spec = spec_for(config)
    params = spec.init(config, key)
    inputs = random_inputs(config, key, batch=3, scale=1.0)
    sample = jax.jit(
        lambda p, x, k, n: spec.sample(spec, config, p, x, key=k, num_samples=n),
        static_argnums=3,
    )
    paths = np.asarray(sample(params, inputs, key, n_paths))
    chex.assert_shape(paths, (n_paths, 3, HORIZON))
    chex.assert_tree_all_finite(paths)
    np.testing.assert_array_equal(paths, sample(params, inputs, key, n_paths))
    assert not np.array_equal(paths, sample(params, inputs, jax.random.fold_in(key, 1), n_paths))
    assert np.std(paths, axis=0).min() > 0
    # The first step's draws follow the distribution the network states for it.
    first = np.asarray(spec.apply(config, params, inputs))[:, -1].astype(np.float64)
    for b in range(3):
        if likelihood == "gaussian":
            law = scipy.stats.norm(first[b, 0], first[b, 1])
        else:
            law = scipy.stats.t(first[b, 2], first[b, 0], first[b, 1])
        assert scipy.stats.kstest(paths[:, b, 0], law.cdf).pvalue > 1e-3

    predict = jax.jit(lambda p, x, k: spec.predict_quantiles(config, p, x, key=k))
    quantiles = np.asarray(predict(params, inputs, key))
    np.testing.assert_array_equal(quantiles, np.asarray(predict(params, inputs, key)))
    expected = np.moveaxis(np.quantile(paths, config.quantiles, axis=0), 0, -1)
    np.testing.assert_allclose(quantiles, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("likelihood", ["gaussian", "student_t"])
def test_deepar_loss_is_the_teacher_forced_negative_log_likelihood(likelihood, key):
    config = tiny_config("deepar", likelihood=likelihood)
    spec = spec_for(config)
    params = spec.init(config, key)
    inputs = random_inputs(config, key, batch=2, scale=1.0)
    targets = jax.random.normal(jax.random.fold_in(key, 1), (2, HORIZON))
    losses = np.asarray(spec.training_loss(config, params, inputs, targets))
    # Only the horizon's values are scored: the input part's local units use its last value.
    chex.assert_shape(losses, (2, HORIZON))
    full = np.concatenate([np.asarray(inputs["y"]), np.asarray(targets)], axis=1)
    teacher = np.asarray(spec.apply(config, params, full[:, :-1]), np.float64)
    dist = teacher[:, INPUT_SIZE - 1 :]
    if likelihood == "gaussian":
        expected = -scipy.stats.norm.logpdf(targets, dist[..., 0], dist[..., 1])
    else:
        expected = -scipy.stats.t.logpdf(targets, dist[..., 2], dist[..., 0], dist[..., 1])
        assert dist[..., 2].min() > 2.0
    np.testing.assert_allclose(losses, expected, rtol=1e-4, atol=1e-4)
    # The history's own predictions do not depend on the future values.
    head = np.asarray(spec.apply(config, params, inputs["y"]))
    np.testing.assert_allclose(head, teacher[:, :INPUT_SIZE], rtol=1e-5, atol=1e-5)


def test_deepar_intervals_are_calibrated_on_ar1_processes():
    """On y_t = 0.8 y_{t-1} + e_t the sampled 80% intervals cover about 80% of held-out values
    (the true conditional quantiles cover 78% of this sample) and widen with the horizon as
    the conditional variance does (the true 80% width grows 1.6-fold from step 1 to 6)."""
    rng = np.random.default_rng(3)
    length, phi, frames = 1000, 0.8, []
    for i in range(4):
        y = np.zeros(length)
        for t in range(1, length):
            y[t] = phi * y[t - 1] + rng.normal()
        frames.append(pl.DataFrame({"unique_id": f"ar{i}", "ds": np.arange(length), "y": y}))
    df = pl.concat(frames)
    train, _ = nt.train_test_split(df, 200)
    record = nt.train(
        train,
        tiny_config("deepar", num_samples=200),
        TrainingConfig(max_steps=150, batch_size=64, devices=1, progress=False),
        OptimizerConfig(learning_rate=1e-2),
    )
    metrics = nt.evaluate(record, df, test_size=200, step_size=1, key=jax.random.key(0))
    assert 0.70 < metrics["coverage_80"] < 0.88, metrics
    frame = nt.forecast(record, df, levels=(80,), key=jax.random.key(1))
    width = (frame["hi_80"] - frame["lo_80"]).to_numpy().reshape(4, HORIZON).mean(axis=0)
    assert width[-1] > 1.3 * width[0], width


def test_nbeats_interpretable_components_sum_to_the_point_forecast(key):
    config = tiny_config("nbeats", stack_types=("trend", "seasonality"), n_blocks=(2, 1))
    params = nbeats.init(config, key)
    x = jax.random.normal(key, (3, INPUT_SIZE))
    parts = jax.jit(nbeats.components, static_argnums=0)(config, params, x)
    assert set(parts) == {"level", "trend", "seasonality"}
    for part in parts.values():
        chex.assert_shape(part, (3, HORIZON))
    point = nbeats.apply(config, params, x)[..., config.median_index]
    np.testing.assert_allclose(sum(parts.values()), point, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(parts["level"], np.repeat(np.asarray(x[:, -1:]), HORIZON, 1))


def test_nbeats_bases_match_their_definitions():
    trend = nbeats.trend_basis(2, 4)
    np.testing.assert_allclose(
        trend, [[1, 1, 1, 1], [0, 0.25, 0.5, 0.75], [0, 1 / 16, 1 / 4, 9 / 16]]
    )
    season = nbeats.seasonality_basis(1, 4, 4)
    # Frequencies 0 and 1 cycle per horizon of 4 steps: cos, cos, sin, sin.
    t = np.arange(4) / 4
    expected = [np.ones(4), np.cos(2 * np.pi * t), np.zeros(4), np.sin(2 * np.pi * t)]
    np.testing.assert_allclose(season, expected, atol=1e-6)


def test_tcn_receptive_field_covers_the_input_window():
    for input_size in (1, 24, 168, 480):
        config = TCNConfig(horizon=24, input_size=input_size)
        assert tcn_receptive_field(config.kernel_size, config.block_dilations) >= input_size
    with pytest.raises(ValueError, match="receptive field"):
        TCNConfig(horizon=24, input_size=168, dilations=(1, 2, 4))


def test_tcn_blocks_are_causal_with_the_stated_receptive_field(key):
    """A change at step 10 moves the block's outputs at steps 10 .. 10 + 2 (k - 1) d only
    after it, never before."""
    block = tcn._ResidualBlock(channels=4, kernel_size=2, dilation=2, dropout=0.0)
    x = jax.random.normal(key, (1, 20, 3))
    params = block.init(key, x, True)
    moved = x.at[:, 10].add(5.0)
    changed = np.any(block.apply(params, x, True) != block.apply(params, moved, True), axis=-1)[0]
    assert not changed[:10].any()
    assert changed[10]
    # Two stacked blocks of dilation 2 and kernel 2 see 1 + 2 * 1 * 2 = 5 steps.
    assert tcn_receptive_field(2, (2,)) == 5


def test_configs_reject_what_their_family_cannot_use():
    with pytest.raises(ValueError, match="hist_exog"):
        DeepARConfig(horizon=4, input_size=8, hist_exog=("a",))
    with pytest.raises(ValueError, match="exogenous"):
        NBEATSConfig(horizon=4, input_size=8, futr_exog=("a",))
    with pytest.raises(ValueError, match="stack_types"):
        NBEATSConfig(horizon=4, input_size=8, stack_types=("fourier",), n_blocks=(1,))
    with pytest.raises(ValueError, match="likelihood"):
        DeepARConfig(horizon=4, input_size=8, likelihood="poisson")
    with pytest.raises(ValueError, match="divisible"):
        LSTMAttentionConfig(horizon=4, input_size=8, hidden_size=10, n_heads=4)
    with pytest.raises(ValueError, match="patch_len"):
        TransformerConfig(horizon=4, input_size=8, patch_len=16)
    with pytest.raises(ValueError, match="hidden_size"):
        GRUConfig(horizon=4, input_size=8, hidden_size=10**6)
    for kind in FAMILIES:
        config = MODELS[kind].config_cls(horizon=24, input_size=96)
        assert hash(config) == hash(
            MODELS[kind].config_cls(**{k: v for k, v in config.to_dict().items() if k != "kind"})
        )
    assert NHITSConfig(horizon=1, input_size=2).kind == "nhits"


def test_nhits_window_norm_reads_each_window_in_its_own_units(key):
    config = tiny_config("nhits", window_norm=True)
    spec = spec_for(config)
    params = spec.init(config, key)
    y = jax.random.normal(key, (3, INPUT_SIZE))
    base = np.asarray(spec.predict_quantiles(config, params, {"y": y}))
    moved = np.asarray(spec.predict_quantiles(config, params, {"y": 3.0 * y + 100.0}))
    np.testing.assert_allclose(moved, 3.0 * base + 100.0, rtol=1e-4, atol=1e-3)


def test_nhits_starts_at_the_last_value_forecast(key):
    # forecast_init="zeros" (the default): the untrained model forecasts the last value; the
    # paper's random start does not.
    y = jax.random.normal(key, (3, INPUT_SIZE))
    for window_norm in (True, False):
        config = tiny_config("nhits", window_norm=window_norm, quantiles=(0.5,))
        spec = spec_for(config)
        out = np.asarray(spec.predict_quantiles(config, spec.init(config, key), {"y": y}))
        np.testing.assert_allclose(out[..., 0], np.repeat(y[:, -1:], HORIZON, axis=1), atol=1e-6)
    random = tiny_config("nhits", quantiles=(0.5,), forecast_init="lecun_normal")
    spec = spec_for(random)
    out = np.asarray(spec.predict_quantiles(random, spec.init(random, key), {"y": y}))
    assert np.abs(out[..., 0] - y[:, -1:]).max() > 1e-2
    with pytest.raises(ConfigError, match="forecast_init must be one of"):
        tiny_config("nhits", forecast_init="ones")
