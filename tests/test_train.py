import importlib

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import polars as pl
import pytest
from conftest import TINY_NHITS, sine_frame

import ntjax as nt
from ntjax.config import OPTIMIZERS, SCHEDULES
from ntjax.train import prepare
from ntjax.train.prepare import resolve_training

train_module = importlib.import_module("ntjax.train.step")  # the step and its programs

TINY = TINY_NHITS


def _training(**changes):
    defaults = dict(max_steps=40, batch_size=16, val_check_steps=10, progress=False, devices=1)
    return nt.TrainingConfig(**{**defaults, **changes})


def _leaves(params):
    return [np.asarray(x) for x in jax.tree.leaves(params)]


def test_same_seed_gives_identical_parameters(sines):
    a = nt.train(sines, TINY, _training(seed=3))
    b = nt.train(sines, TINY, _training(seed=3))
    c = nt.train(sines, TINY, _training(seed=4))
    assert all(
        np.array_equal(x, y) for x, y in zip(_leaves(a.params), _leaves(b.params), strict=True)
    )
    assert not all(
        np.array_equal(x, y) for x, y in zip(_leaves(a.params), _leaves(c.params), strict=True)
    )
    assert a.id != b.id


def test_train_step_is_traced_once_across_runs_and_refits(sines, monkeypatch):
    original = train_module.train_step_fn
    monkeypatch.setattr(
        train_module,
        "train_step_fn",
        lambda *a, **k: chex.assert_max_traces(original(*a, **k), n=1),
    )
    train_module._programs.cache_clear()
    try:
        # No calibration tail: its size follows the data's length, which would move the count
        # of training windows across a table bucket here.
        training = _training(max_steps=25, val_size=12, val_check_steps=5, calibration=None)
        record = nt.train(sines, TINY, training)
        assert record.metrics["steps"] == 25
        # Another seed and slightly longer data (a refit): same compiled step, no new trace.
        longer = pl.concat([sines, sine_frame(length=210).filter(pl.col("ds") >= 200)])
        again = nt.train(longer, TINY, nt.TrainingConfig(**{**training.__dict__, "seed": 7}))
        assert again.metrics["steps"] == 25
    finally:
        train_module._programs.cache_clear()


def test_tiny_series_is_fitted_almost_exactly():
    frame = sine_frame(n_series=1, length=240, period=12)
    config = nt.NHITSConfig(
        horizon=12,
        input_size=24,
        mlp_units=64,
        n_blocks=(1, 1),
        pool_kernel_sizes=(1, 1),
        freq_downsample=(1, 1),
    )
    record = nt.train(
        frame,
        config,
        _training(max_steps=400, batch_size=32, val_check_steps=100),
        nt.OptimizerConfig(learning_rate=3e-3),
    )
    result = nt.evaluate(record, frame, test_size=12, allow_in_sample=True)  # fits its data
    amplitude = 1.0
    assert result["mae"] < 0.05 * amplitude


def test_killed_run_resumes_and_ends_where_an_uninterrupted_run_ends(sines, tmp_path):
    training = _training(max_steps=60, val_size=12, val_check_steps=10, checkpoint_every=20)
    uninterrupted = nt.train(sines, TINY, training)

    class Killed(Exception):
        pass

    def kill_at_step_30(progress):
        if progress.step == 30:
            raise Killed

    folder = str(tmp_path / "ckpt")
    resumable = nt.TrainingConfig(**{**training.__dict__, "checkpoint_dir": folder})
    with pytest.raises(Killed):
        nt.train(sines, TINY, resumable, callbacks=[kill_at_step_30])
    resumed = nt.train(sines, TINY, resumable)
    assert all(
        np.array_equal(x, y)
        for x, y in zip(_leaves(uninterrupted.params), _leaves(resumed.params), strict=True)
    )
    assert resumed.history["val_loss"] == uninterrupted.history["val_loss"]
    assert resumed.history["train_loss"] == pytest.approx(
        uninterrupted.history["train_loss"], rel=1e-6
    )


def test_checkpoint_of_another_run_is_refused(sines, tmp_path):
    folder = str(tmp_path / "ckpt")
    nt.train(sines, TINY, _training(max_steps=20, checkpoint_dir=folder, checkpoint_every=10))
    with pytest.raises(ValueError, match="belongs to a different run"):
        nt.train(
            sines, TINY, _training(max_steps=20, seed=9, checkpoint_dir=folder, checkpoint_every=10)
        )


def test_four_devices_give_the_same_loss_as_one(sines):
    assert jax.local_device_count() == 4
    one = nt.train(sines, TINY, _training(devices=1, val_size=12))
    four = nt.train(sines, TINY, _training(devices=4, val_size=12))
    np.testing.assert_allclose(four.history["train_loss"], one.history["train_loss"], rtol=1e-4)
    np.testing.assert_allclose(four.history["val_loss"], one.history["val_loss"], rtol=1e-4)
    for x, y in zip(_leaves(one.params), _leaves(four.params), strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-3, atol=1e-5)


def test_data_parallel_step_shards_the_batch_and_replicates_params(sines):
    trainer = train_module.Trainer(TINY, _training(devices=4), nt.OptimizerConfig())
    assert trainer.n_devices == 4
    state = trainer.init_state(jax.random.key(0))
    leaf = jax.tree.leaves(state.params)[0]
    assert len(leaf.sharding.device_set) == 4 and leaf.sharding.is_fully_replicated


def test_early_stopping_restores_the_best_parameters(sines):
    record = nt.train(
        sines,
        TINY,
        _training(max_steps=400, val_size=12, val_check_steps=5, early_stopping_patience=2),
        nt.OptimizerConfig(learning_rate=3e-2),
    )
    history = record.history
    best = int(np.argmin(history["val_loss"]))
    assert record.metrics["best_step"] == history["step"][best]
    assert record.metrics["val_loss"] == min(history["val_loss"])
    assert record.metrics["stopped_early"] == 1.0 and record.metrics["steps"] < 400
    # The restored parameters are the best ones: their validation loss is the best one.
    prepared = prepare(sines, TINY, _training(val_size=12))
    loss = train_module.eval_loss_fn(TINY)(record.params, prepared.data)
    assert float(loss) == pytest.approx(record.metrics["val_loss"], rel=1e-5)


def test_warm_start_records_the_parent(sines):
    parent = nt.train(sines, TINY, _training(max_steps=10))
    child = nt.train(sines, TINY, _training(max_steps=10), init_from=parent)
    assert child.parent_id == parent.id
    assert child.history["train_loss"][0] < parent.history["train_loss"][0]


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
@pytest.mark.parametrize("schedule", sorted(SCHEDULES))
def test_every_optimizer_and_schedule_builds_an_optax_chain(name, schedule):
    config = nt.OptimizerConfig(name=name, schedule=schedule, weight_decay=1e-4, momentum=0.5)
    tx = config.build(total_steps=100)
    params = {"w": jnp.ones(3)}
    grads = {"w": jnp.full(3, 0.5)}
    updates, _ = tx.update(grads, tx.init(params), params, value=jnp.float32(1.0))
    new = optax.apply_updates(params, updates)
    assert bool(jnp.all(new["w"] < 1.0))


def test_bad_training_values_are_refused():
    with pytest.raises(ValueError, match="batch_size"):
        nt.TrainingConfig(batch_size=0)
    with pytest.raises(ValueError, match="scaler"):
        nt.TrainingConfig(scaler="log")
    with pytest.raises(ValueError, match="optimizer"):
        nt.OptimizerConfig(name="lbfgs")
    with pytest.raises(ValueError, match="mlp_units"):
        nt.NHITSConfig(horizon=4, input_size=8, mlp_units=10**6)


def test_the_default_recipe_is_resolved_and_recorded(sines, tmp_path):
    # Defaults only (a short run): five horizons of validation where the data allow it.
    record = nt.train(sines, TINY, nt.TrainingConfig(max_steps=20, progress=False, devices=1))
    horizon = TINY.horizon
    assert record.training.val_size == 5 * horizon
    assert record.training.val_check_steps == 50 and record.training.early_stopping_patience == 5
    assert record.optimizer.schedule == "step"
    assert nt.NHITSConfig(horizon=6, input_size=24).window_norm
    assert record.history["val_loss"][0] is not None and "best_step" in record.metrics
    validation = record.trained_on.filter(pl.col("role") == "validation")
    assert validation["n_rows"].to_list() == [5 * horizon] * 2
    # The store keeps the resolved number, not "automatic".
    store = nt.Store(tmp_path / "store")
    store.save(record)
    assert store.load(record.id).training.val_size == 5 * horizon


@pytest.mark.parametrize(
    ("length", "expected"),
    [(200, 30), (24 + 6 + 5 * 12, 12), (24 + 6 + 5 * 6 - 1, 0)],
    ids=["five horizons", "a fifth of the spare rows", "too short: none"],
)
def test_the_automatic_validation_tail_fits_the_data(length, expected):
    assert resolve_training(nt.TrainingConfig(), TINY, length).val_size == expected
    assert resolve_training(nt.TrainingConfig(val_size=7), TINY, 10).val_size == 7


def test_zero_steps_keep_the_start_and_nhits_forecasts_the_last_value():
    """max_steps=0: the record holds the model as initialised, its validation loss measured
    once; NHITS's zero forecast start with window_norm forecasts each window's last value."""
    df = sine_frame(n_series=2, length=160, noise=0.3)
    training = nt.TrainingConfig(max_steps=0, batch_size=8, progress=False)
    record = nt.train(df, TINY_NHITS, training=training)
    assert record.metrics["steps"] == 0 and record.metrics["best_step"] == 0
    assert np.isfinite(record.metrics["val_loss"])
    forecast = nt.forecast(record, df).join(
        df.group_by("unique_id").agg(pl.col("y").last().alias("last")), on="unique_id"
    )
    np.testing.assert_allclose(forecast["y_hat"], forecast["last"], rtol=1e-5)
