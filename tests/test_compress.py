"""Compression: int8/bfloat16 records (nt.quantize) with their accuracy gate, and distilled
students (nt.distill)."""

import contextlib
import dataclasses
import io
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import sine_frame
from test_models import FAMILIES, tiny_config

import ntjax as nt
from ntjax.cli.main import main
from ntjax.config import ConfigError
from ntjax.lifecycle.distill import teacher_targets
from ntjax.models import quantized, spec_for
from ntjax.models.ensemble import EnsembleConfig
from ntjax.predict.inputs import model_inputs
from ntjax.record import new_id
from ntjax.store import Store
from ntjax.store.errors import ArtifactError
from ntjax.store.files import PARAMS_FILE
from ntjax.train.prepare import prepare

TINY = nt.NHITSConfig(
    horizon=6,
    input_size=24,
    mlp_units=32,
    n_blocks=(1, 1),
    pool_kernel_sizes=(2, 1),
    freq_downsample=(2, 1),
)
QUICK = dict(batch_size=16, val_check_steps=10, progress=False, devices=1)


def _training(**changes):
    return nt.TrainingConfig(**{"max_steps": 40, **QUICK, **changes})


@pytest.fixture(scope="module")
def frame():
    return sine_frame(n_series=2, length=200, noise=0.05)


@pytest.fixture(scope="module")
def parent(frame):
    return nt.train(frame, TINY, _training())


def _kernels(params):
    leaves = jax.tree_util.tree_flatten_with_path(params)[0]
    return {jax.tree_util.keystr(p): np.asarray(x) for p, x in leaves if "kernel" in str(p[-1])}


def _assert_int8_within_bound(weight, member_dims=0):
    node = jax.jit(lambda w: quantized.quantize_int8(w, member_dims=member_dims))(weight)
    back = np.asarray(quantized.dequantize_int8(node))
    scale = np.asarray(node["qscale"])
    assert node["qvalue"].dtype == jnp.int8 and node["qscale"].dtype == jnp.float32
    # Stated bound: half a quantisation step per element (plus float32 rounding of w / scale).
    bound = np.broadcast_to(scale / 2 * (1 + 1e-6), weight.shape)
    assert np.all(np.abs(back - weight) <= bound)
    amax = np.max(np.abs(weight), axis=tuple(range(member_dims, weight.ndim - 1)), keepdims=True)
    np.testing.assert_allclose(scale, np.where(amax > 0, amax / 127, 1.0), rtol=1e-6)


@pytest.mark.parametrize(
    "shape, member_dims",
    [((48, 16), 0), ((3, 8, 5), 0), ((4, 32, 8), 1)],
    ids=["dense", "conv", "stacked"],
)
def test_int8_round_trip_of_random_weights(shape, member_dims, key):
    weight = np.asarray(jax.random.normal(key, shape)) * np.linspace(0.01, 3.0, shape[-1])
    _assert_int8_within_bound(weight.astype(np.float32), member_dims)


def test_int8_round_trip_of_trained_weights(parent):
    kernels = _kernels(parent.params)
    assert kernels
    for weight in kernels.values():
        _assert_int8_within_bound(weight)
    # The whole tree: only kernels change, and each within its bound.
    params = quantized.quantize_params(parent.params, "int8")
    back = quantized.dequantize_params(params)
    for (path, a), b in zip(
        jax.tree_util.tree_flatten_with_path(parent.params)[0], jax.tree.leaves(back), strict=True
    ):
        if "kernel" not in str(path[-1]):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_bfloat16_round_trip_within_its_precision(parent):
    params = quantized.quantize_params(parent.params, "bfloat16")
    back = quantized.dequantize_params(params)
    for name, weight in _kernels(parent.params).items():
        got = np.asarray(_kernels(back)[name])
        assert got.dtype == np.float32
        assert np.all(np.abs(got - weight) <= np.abs(weight) * 2.0**-8), name


def test_per_channel_scales_of_all_zero_channels():
    weight = np.random.default_rng(0).normal(size=(12, 5)).astype(np.float32)
    weight[:, 2] = 0.0
    node = quantized.quantize_int8(weight)
    np.testing.assert_array_equal(np.asarray(node["qscale"])[0, 2], 1.0)
    np.testing.assert_array_equal(np.asarray(node["qvalue"])[:, 2], 0)
    back = np.asarray(quantized.dequantize_int8(node))
    assert np.isfinite(back).all()
    np.testing.assert_array_equal(back[:, 2], 0.0)
    zeros = quantized.dequantize_int8(quantized.quantize_int8(np.zeros((4, 3), np.float32)))
    np.testing.assert_array_equal(np.asarray(zeros), 0.0)


def _quantile_columns(config):
    return [f"q_{q:g}" for q in config.quantiles]


def _assert_non_crossing(forecast, config):
    values = forecast.select(_quantile_columns(config)).to_numpy()
    assert np.isfinite(values).all()
    assert np.all(np.diff(values, axis=1) >= 0)


def _initialised_record(config, frame, key):
    """A record of ``config`` with initialised weights and the frame's scaler: every family's
    prediction path without compiling its train step (trained weights: the NHITS tests)."""
    prepared = prepare(frame, config, _training(calibration=None))
    params = jax.jit(spec_for(config).init, static_argnums=0)(config, key)
    return nt.ModelRecord(
        id=new_id(), kind=config.kind, config=config, params=params, scaler=prepared.scaler
    )


@pytest.mark.parametrize("kind", [*FAMILIES, "ensemble"])
def test_quantized_record_of_every_family_forecasts(kind, frame, key):
    if kind == "ensemble":
        member = tiny_config("nhits")
        config = EnsembleConfig(
            horizon=member.horizon, input_size=member.input_size, members=(member,), size=2
        )
    else:
        config = tiny_config(kind)
    record = _initialised_record(config, frame, key)
    reference = nt.forecast(record, frame)
    scale = float(np.abs(reference["y_hat"].to_numpy()).mean())
    for dtype in quantized.DTYPES:
        small = nt.quantize(record, dtype)
        assert small.kind == record.kind and small.parent_id == record.id
        assert quantized.nbytes(small.params) < quantized.nbytes(record.params)
        forecast = nt.forecast(small, frame, levels=(80,))
        _assert_non_crossing(forecast, small.config)
        change = np.abs(forecast["y_hat"].to_numpy() - reference["y_hat"].to_numpy())
        assert change.max() <= 0.05 * scale, (dtype, change.max(), scale)


def test_quantized_record_evaluates_streams_and_backtests(parent, frame):
    small = nt.quantize(parent, "int8")
    scores = nt.evaluate(small, frame, test_size=24, allow_in_sample=True)
    assert np.isfinite(scores["mae"])
    history = frame.filter(frame["ds"] < 199)
    streamer = nt.StreamingForecaster(small, history, levels=(80,))
    tick = frame.filter(frame["ds"] == 199)
    streamed = streamer.update(tick)
    assert streamed.height == 2 * TINY.horizon
    _assert_non_crossing(streamed, small.config)
    prices = frame.filter(frame["unique_id"] == "s0")
    result = nt.backtest(small, prices, start=150, allow_in_sample=True)
    assert np.isfinite(result.metrics["total_return"]) and result.metrics["in_sample"]


def test_gate_records_the_change_and_refuses(parent, frame):
    small = nt.quantize(parent, "int8", calibration_df=frame, test_size=24)
    metrics = small.metrics
    for name in ("mae", "wql"):
        before, after = metrics[f"quantize_parent_{name}"], metrics[f"quantize_{name}"]
        assert metrics[f"quantize_{name}_change"] == pytest.approx((after - before) / before)
    # Same parent, same frame, same cutoffs: the parent's own score, recomputed independently.
    scores = nt.evaluate(parent, frame, test_size=24, allow_in_sample=True)
    assert metrics["quantize_parent_mae"] == pytest.approx(scores["mae"])
    assert metrics["quantize_mae_change"] != 0.0  # int8 rounding moves the forecasts
    with pytest.raises(ConfigError, match=r"changes .* over max_change=0\.000%"):
        nt.quantize(parent, "int8", calibration_df=frame, test_size=24, max_change=0.0)
    loose = nt.quantize(parent, "int8", calibration_df=frame, test_size=24, max_change=0.5)
    assert loose.metrics["quantize_mae"] == pytest.approx(metrics["quantize_mae"])
    with pytest.raises(ConfigError, match="needs a calibration_df"):
        nt.quantize(parent, "int8", max_change=0.01)
    with pytest.raises(ConfigError, match="dtype must be one of"):
        nt.quantize(parent, "int4")
    with pytest.raises(ValueError, match="already quantised"):
        nt.quantize(small, "bfloat16")


@pytest.mark.parametrize("dtype", quantized.DTYPES)
def test_quantized_store_round_trip_is_bit_identical(dtype, parent, frame, tmp_path):
    small = nt.quantize(parent, dtype)
    store = Store(tmp_path / "store")
    store.save(small)
    loaded = store.load(small.id, verify=True)
    saved_leaves = jax.tree_util.tree_flatten_with_path(small.params)[0]
    loaded_leaves = jax.tree_util.tree_flatten_with_path(loaded.params)[0]
    assert [p for p, _ in saved_leaves] == [p for p, _ in loaded_leaves]
    for (path, a), (_, b) in zip(saved_leaves, loaded_leaves, strict=True):
        a, b = np.asarray(a), np.asarray(b)
        assert a.dtype == b.dtype and a.tobytes() == b.tobytes(), path
    assert loaded.extra["quantization"] == small.extra["quantization"]
    assert loaded.parent_id == parent.id
    a, b = nt.forecast(small, frame), nt.forecast(loaded, frame)
    np.testing.assert_array_equal(a["y_hat"].to_numpy(), b["y_hat"].to_numpy())


def _params_path(store, model_id):
    return store._model_dir(model_id) / PARAMS_FILE


def test_int8_artifact_is_smaller_on_disk(frame, tmp_path):
    # A model of realistic width (the tiny ones are mostly file header and biases).
    config = nt.NHITSConfig(horizon=6, input_size=24, mlp_units=256)
    parent = nt.train(frame, config, _training(max_steps=2, calibration=None))
    store = Store(tmp_path / "store")
    store.save(parent)
    small = store.save(nt.quantize(parent, "int8"))
    ratio = (
        _params_path(store, small.id).stat().st_size / _params_path(store, parent.id).stat().st_size
    )
    assert ratio < 0.3


def _truncated_error(store, record):
    store.save(record)
    path = _params_path(store, record.id)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ArtifactError) as caught:
        store.load(record.id)
    return (
        str(caught.value).replace(record.id, "ID").replace(str(store._model_dir(record.id)), "DIR")
    )


def test_truncated_int8_artifact_gets_the_same_clear_error(parent, tmp_path):
    store = Store(tmp_path / "store")
    f32 = _truncated_error(store, parent)
    int8 = _truncated_error(store, nt.quantize(parent, "int8"))
    assert "corrupt or unreadable" in int8
    # Same sentence; only the byte counts differ.
    assert int8.split("(")[0] == f32.split("(")[0]
    assert "params.safetensors has" in int8 and "the record says" in int8


def test_bad_quantization_field_is_a_corrupt_artifact(parent, tmp_path):
    store = Store(tmp_path / "store")
    small = store.save(nt.quantize(parent, "int8"))
    meta_path = store._model_dir(small.id) / "record.json"
    meta = json.loads(meta_path.read_text())
    meta["extra"]["quantization"]["dtype"] = "int4"
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match="quantization is not one of"):
        store.load(small.id)


# -- distillation ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def teacher(frame):
    return nt.train(frame, TINY, _training(max_steps=60, calibration=None), ensemble_size=2)


STUDENT = nt.NHITSConfig(
    horizon=6,
    input_size=12,
    mlp_units=8,
    n_blocks=(1, 1),
    pool_kernel_sizes=(2, 1),
    freq_downsample=(2, 1),
)


def test_teacher_targets_are_the_teachers_forecasts_in_student_units(teacher, frame):
    training = _training()
    prepared = prepare(frame, STUDENT, training)
    windows, targets = teacher_targets(teacher, prepared, STUDENT, val_size=0)
    pad = int(prepared.data.values.shape[1]) - prepared.panel.n_time
    # Windows without the teacher's 24 steps of history before their targets are left out.
    assert windows[:, 1].min() + STUDENT.input_size - pad == TINY.input_size
    values = prepared.panel.values[:, :, 0]
    spec = spec_for(teacher.config)
    for row in (0, len(windows) // 2, len(windows) - 1):
        series, start = windows[row]
        cutoff = start - pad + STUDENT.input_size
        loc, scale, _ = teacher.scaler.rows([prepared.panel.ids[series]])
        history = (values[series, cutoff - TINY.input_size : cutoff] - loc[0, 0]) / scale[0, 0]
        inputs = model_inputs(teacher.config, history[None, :, None])
        raw = np.asarray(spec.predict_quantiles(teacher.config, teacher.params, inputs))[0]
        original = raw * scale[0, 0] + loc[0, 0]
        s_loc, s_scale, _ = prepared.scaler.rows([prepared.panel.ids[series]])
        expected = (original - s_loc[0, 0]) / s_scale[0, 0]
        np.testing.assert_allclose(targets[row], expected, rtol=1e-4, atol=1e-4)


def test_quantile_distillation_loss_is_pinball_per_level(key):
    spec = spec_for(STUDENT)
    params = spec.init(STUDENT, key)
    inputs = {"y": np.asarray(jax.random.normal(key, (3, STUDENT.input_size)))}
    teacher = np.sort(np.random.default_rng(1).normal(size=(3, 6, 5)), axis=-1).astype(np.float32)
    got = np.asarray(jax.jit(lambda p: spec.distillation_loss(STUDENT, p, inputs, teacher))(params))
    predictions = np.asarray(spec.apply(STUDENT, params, inputs))
    q = np.asarray(STUDENT.quantiles)
    error = teacher - predictions
    np.testing.assert_allclose(got, np.maximum(q * error, (q - 1) * error), rtol=1e-5, atol=1e-6)


def test_distilled_student_points_to_its_teacher(teacher, frame):
    student = nt.distill(teacher, frame, STUDENT, training=_training(max_steps=20), alpha=0.7)
    assert student.kind == "nhits" and student.parent_id == teacher.id
    assert student.extra["distillation"]["teacher_ids"] == [teacher.id]
    assert student.extra["distillation"]["alpha"] == 0.7
    assert student.metrics["distill_alpha"] == 0.7
    _assert_non_crossing(nt.forecast(student, frame), STUDENT)
    # A list of records: combined as an ensemble, no single parent.
    quick = _training(max_steps=5, calibration=None)
    members = [nt.train(frame, TINY, dataclasses.replace(quick, seed=s)) for s in (0, 1)]
    listed = nt.distill(members, frame, STUDENT, training=quick)
    assert listed.parent_id is None
    assert listed.extra["distillation"]["teacher_ids"] == [m.id for m in members]
    assert listed.extra["distillation"]["teacher_kind"] == "ensemble"
    # The documented defaults: alpha 0.7, Adam 1e-3 with cosine decay over the run.
    assert listed.extra["distillation"]["alpha"] == 0.7
    assert listed.optimizer == nt.OptimizerConfig(schedule="cosine")


def test_distillation_moves_the_student_towards_the_teacher(teacher, frame):
    # alpha=1: the student learns the teacher's quantiles only; alpha=0: the data only. Both
    # must get far enough to tell: with 8 units and 80 steps the two gaps were within 1% of
    # each other and their order flipped with the schedule (constant vs the default cosine).
    student = dataclasses.replace(STUDENT, mlp_units=32)
    training = _training(max_steps=300, calibration=None)
    mimic = nt.distill(teacher, frame, student, training=training, alpha=1.0)
    alone = nt.distill(teacher, frame, student, training=training, alpha=0.0)
    prepared = prepare(frame, student, training)
    windows, targets = teacher_targets(teacher, prepared, student, val_size=0)
    spec = spec_for(student)
    values = np.asarray(prepared.data.values)

    def gap(record):
        window = np.stack(
            [np.asarray(values[s, t : t + student.input_size, 0]) for s, t in windows]
        )
        predictions = np.asarray(spec.predict_quantiles(student, record.params, {"y": window}))
        return float(np.abs(predictions - targets).mean())

    assert gap(mimic) < gap(alone)


def test_distill_refuses_mismatched_students(teacher, frame):
    with pytest.raises(ConfigError, match="horizon"):
        nt.distill(teacher, frame, nt.NHITSConfig(horizon=4, input_size=12))
    with pytest.raises(ConfigError, match="quantiles"):
        nt.distill(teacher, frame, nt.NHITSConfig(horizon=6, input_size=12, quantiles=(0.5,)))
    with pytest.raises(ConfigError, match="not an ensemble"):
        nt.distill(teacher, frame, EnsembleConfig(horizon=6, input_size=12, members=(STUDENT,)))
    with pytest.raises(ConfigError, match="alpha"):
        nt.distill(teacher, frame, STUDENT, alpha=1.5)


def test_deepar_student_distils_through_its_likelihood(teacher, frame):
    config = tiny_config("deepar")
    student = nt.distill(teacher, frame, config, training=_training(max_steps=5))
    assert student.kind == "deepar" and np.isfinite(student.metrics["train_loss"])
    _assert_non_crossing(nt.forecast(student, frame), config)


# -- command line ------------------------------------------------------------------------------


def _cli(*args):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    return code, out.getvalue(), err.getvalue()


def test_cli_quantize_and_distill(parent, frame, tmp_path):
    store = Store(tmp_path / "store")
    store.save(parent)
    data = tmp_path / "data.csv"
    frame.write_csv(data)
    common = ["--store", tmp_path / "store"]
    code, out, err = _cli("quantize", "--model-id", parent.id, "--dtype", "int8", *common)
    assert code == 0, err
    result = json.loads(out)
    assert result["parent_id"] == parent.id and result["quantization"]["dtype"] == "int8"
    assert store.load(result["model_id"]).extra["quantization"]["dtype"] == "int8"
    code, out, err = _cli(
        "quantize", "--model-id", parent.id, "--data", data, "--test-size", 24,
        "--max-change", 0, *common,
    )  # fmt: skip
    assert code == 1 and "over max_change" in err and out == ""
    code, out, err = _cli(
        "distill", "--teacher", parent.id, "--data", data, "--model", "nhits",
        "--input-size", 12, "--config", '{"mlp_units": 8}', "--max-steps", 10,
        "--batch-size", 16, "--no-progress", *common,
    )  # fmt: skip
    assert code == 0, err
    result = json.loads(out)
    assert result["parent_id"] == parent.id and result["kind"] == "nhits"
    assert store.load(result["model_id"]).extra["distillation"]["teacher_ids"] == [parent.id]
