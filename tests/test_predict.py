import datetime as dt
import os

import jax
import jax.numpy as jnp
import numpy as np
import polars as pl
import pytest
from conftest import sine_frame

import ntjax as nt
from ntjax._jit import EIGEN_DOTS, jit_with
from ntjax.models import compile_options, get_model, make_config, monotone_quantiles, spec_for
from ntjax.predict import level_quantiles, predict_quantiles, supported_levels

CONFIG = nt.NHITSConfig(
    horizon=6,
    input_size=24,
    quantiles=(0.025, 0.1, 0.5, 0.9, 0.975),
    mlp_units=16,
    n_blocks=(1, 1),
    pool_kernel_sizes=(2, 1),
    freq_downsample=(2, 1),
)
TRAINING = nt.TrainingConfig(
    max_steps=30, batch_size=16, val_check_steps=10, progress=False, devices=1
)


@pytest.fixture(scope="module")
def record():
    return nt.train(sine_frame(), CONFIG, TRAINING)


def test_monotone_head_never_crosses(key):
    raw = 10 * jax.random.normal(key, (64, 7, 5))
    out = jax.jit(monotone_quantiles, static_argnums=1)(raw, 2)
    assert bool(jnp.all(jnp.diff(out, axis=-1) >= 0))
    np.testing.assert_array_equal(out[..., 2], raw[..., 2])


def test_nhits_quantiles_never_cross_for_random_parameters_and_inputs(key):
    spec = get_model("nhits")
    params = spec.init(CONFIG, key)
    params = jax.tree.map(lambda p: p * 5.0, params)
    x = jax.random.normal(jax.random.fold_in(key, 1), (32, CONFIG.input_size)) * 3
    out = predict_quantiles(CONFIG, params, {"y": x})
    assert out.shape == (32, CONFIG.horizon, 5)
    assert bool(jnp.all(jnp.diff(out, axis=-1) >= 0))


def test_forecast_frame_has_the_design_columns_in_original_units(record):
    frame = sine_frame()
    out = nt.forecast(record, frame, levels=(80, 95))
    assert out.columns == [
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
        "lo_95",
        "hi_95",
    ]
    assert out.height == 2 * CONFIG.horizon
    assert out.filter(pl.col("unique_id") == "s1")["ds"].to_list() == list(range(200, 206))
    np.testing.assert_array_equal(out["y_hat"], out["q_0.5"])
    np.testing.assert_array_equal(out["lo_80"], out["q_0.1"])
    # s1 lives around 20, s0 around 10: forecasts must be in those units, not scaled ones.
    means = out.group_by("unique_id").agg(pl.col("y_hat").mean()).sort("unique_id")["y_hat"]
    assert 7 < means[0] < 13 and 16 < means[1] < 24


def test_forecast_continues_datetime_frequency(record):
    frame = sine_frame().with_columns(
        (pl.lit(dt.datetime(2020, 1, 1)) + pl.duration(hours=pl.col("ds"))).alias("ds")
    )
    out = nt.forecast(record, frame)
    assert out["ds"][0] == dt.datetime(2020, 1, 1) + dt.timedelta(hours=200)
    assert out["ds"][CONFIG.horizon - 1] == dt.datetime(2020, 1, 1) + dt.timedelta(hours=205)


def test_forecast_uses_only_the_last_input_size_points(record):
    frame = sine_frame()
    early = frame.with_columns(
        pl.when(pl.col("ds") < 150).then(pl.col("y") * 100).otherwise(pl.col("y")).alias("y")
    )
    a = nt.forecast(record, frame)
    b = nt.forecast(record, early)
    np.testing.assert_array_equal(a["y_hat"], b["y_hat"])


def test_levels_outside_the_quantiles_get_a_clear_error(record):
    with pytest.raises(ValueError, match="quantile 0.25 is not among them"):
        nt.forecast(record, sine_frame(), levels=(50,))


def test_level_quantiles_and_supported_levels():
    assert level_quantiles(80) == pytest.approx((0.1, 0.9))
    assert supported_levels(CONFIG) == (80, 95)
    # The default quantiles bound the 80% and 95% intervals.
    assert supported_levels(nt.NHITSConfig(horizon=2, input_size=4)) == (80, 95)
    assert supported_levels(nt.NHITSConfig(horizon=2, input_size=4, quantiles=(0.1, 0.5, 0.9))) == (
        80,
    )


def test_short_history_is_refused(record):
    short = sine_frame(length=10)
    with pytest.raises(ValueError, match="shorter than"):
        nt.forecast(record, short)


def test_new_series_are_scaled_on_their_own_history(record):
    frame = sine_frame(n_series=1).with_columns(pl.lit("new").alias("unique_id"), pl.col("y") * 10)
    out = nt.forecast(record, frame)
    assert 80 < out["y_hat"].mean() < 120


def test_futr_exog_model_needs_future_values():
    rng = np.random.default_rng(0)
    frame = sine_frame(n_series=1, length=120).with_columns(
        pl.Series("promo", rng.integers(0, 2, 120).astype(float))
    )
    config = nt.NHITSConfig(horizon=4, input_size=12, mlp_units=8, futr_exog=("promo",))
    record = nt.train(frame, config, TRAINING)
    with pytest.raises(ValueError, match="pass their values over the horizon as futr_df"):
        nt.forecast(record, frame)
    futr = pl.DataFrame(
        {"unique_id": ["s0"] * 4, "ds": [120, 121, 122, 123], "promo": [1.0, 0, 1, 0]}
    )
    out = nt.forecast(record, frame, futr_df=futr)
    assert out.height == 4
    with pytest.raises(ValueError, match="lacks future values"):
        nt.forecast(record, frame, futr_df=futr.head(2))


def test_mlp_families_compile_with_eigen_dots_and_match_xla_defaults():
    """NHITS (and the GRU) compile with the YNNPACK dot fusion off (where this jaxlib has the
    option) and predict what the XLA-default program predicts; other families keep the
    defaults."""
    config = nt.NHITSConfig(horizon=6, input_size=24, mlp_units=32)
    assert compile_options(make_config("tcn", horizon=6, input_size=24)) == ()
    gru = make_config("gru", horizon=6, input_size=24)
    assert compile_options(gru) == compile_options(config)
    # What this jaxlib and environment allow, found without ntjax's own probe.
    try:
        jax.jit(lambda x: x + 1, compiler_options=dict(EIGEN_DOTS)).lower(1.0).compile()
        known = EIGEN_DOTS[0][0] not in os.environ.get("XLA_FLAGS", "")
    except jax.errors.JaxRuntimeError:
        known = False
    assert compile_options(config) == (EIGEN_DOTS if known else ())
    params = spec_for(config).init(config, jax.random.key(0))
    inputs = {"y": np.random.default_rng(0).normal(size=(5, 24)).astype(np.float32)}

    def predict(params, inputs):
        return spec_for(config).predict_quantiles(config, params, inputs)

    tuned = jit_with(compile_options(config), predict)
    if compile_options(config):
        assert "ynn_fusion" not in tuned.lower(params, inputs).compile().as_text()
    np.testing.assert_allclose(
        np.asarray(tuned(params, inputs)),
        np.asarray(jax.jit(predict)(params, inputs)),
        rtol=1e-5,
        atol=1e-5,
    )
    np.testing.assert_array_equal(
        np.asarray(predict_quantiles(config, params, inputs)),
        np.asarray(tuned(params, inputs)),
    )
