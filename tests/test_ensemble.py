import dataclasses

import jax
import numpy as np
import polars as pl
import pytest
from conftest import sine_frame

import ntjax as nt
from ntjax.crossval import drop_last

SMALL = nt.NHITSConfig(
    horizon=24,
    input_size=96,
    mlp_units=64,
    n_blocks=(1, 1),
    pool_kernel_sizes=(2, 1),
    freq_downsample=(4, 1),
)


def _training(seed, **changes):
    base = dict(
        max_steps=120,
        batch_size=64,
        val_size=24 * 7,
        val_check_steps=40,
        seed=seed,
        progress=False,
        devices=1,
    )
    return nt.TrainingConfig(**{**base, **changes})


@pytest.fixture(scope="module")
def etth1():
    df = nt.load_dataset("etth1", columns="OT")
    return df, drop_last(df, 24 * 14)


@pytest.fixture(scope="module")
def members(etth1):
    _, train = etth1
    return [nt.train(train, SMALL, _training(seed)) for seed in range(5)]


def test_five_member_ensemble_beats_the_mean_member_on_the_etth1_tail(etth1, members):
    df, _ = etth1
    combined = nt.ensemble(members)
    assert combined.kind == "ensemble" and combined.config.n_members == 5
    member_mae = [nt.evaluate(m, df, test_size=24 * 14)["mae"] for m in members]
    ensemble_mae = nt.evaluate(combined, df, test_size=24 * 14)["mae"]
    assert ensemble_mae < np.mean(member_mae)


@pytest.mark.parametrize("method", ["mean", "median", "weighted"])
def test_ensemble_quantiles_are_the_combined_member_quantiles(etth1, members, method):
    df, _ = etth1
    combined = nt.ensemble(members[:3], method=method)
    out = nt.forecast(combined, df, levels=(80,))
    parts = np.stack([nt.forecast(m, df)["q_0.5"].to_numpy() for m in members[:3]])
    if method == "mean":
        expected = parts.mean(0)
    elif method == "median":
        expected = np.median(parts, 0)
    else:
        w = np.array([1 / m.metrics["val_loss"] for m in members[:3]])
        expected = (w / w.sum()) @ parts
    np.testing.assert_allclose(out["y_hat"], expected, rtol=1e-5, atol=1e-5)
    q = out.select("q_0.1", "q_0.5", "q_0.9").to_numpy()
    assert np.all(np.diff(q, axis=1) >= 0)


def test_ensemble_size_trains_members_together_as_one_program(sines=None):
    frame = sine_frame(n_series=2, length=150, noise=0.2)
    config = nt.NHITSConfig(
        horizon=6,
        input_size=24,
        mlp_units=16,
        n_blocks=(1,),
        pool_kernel_sizes=(1,),
        freq_downsample=(1,),
    )
    record = nt.train(
        frame,
        config,
        nt.TrainingConfig(max_steps=30, batch_size=16, val_check_steps=10, progress=False),
        ensemble_size=4,
    )
    leaves = jax.tree.leaves(record.params)
    assert all(leaf.shape[0] == 4 for leaf in leaves)
    first = [np.asarray(leaf[0]) for leaf in leaves]
    second = [np.asarray(leaf[1]) for leaf in leaves]
    assert not all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))
    out = nt.forecast(record, frame, levels=(80,))
    assert out.height == 12 and out["y_hat"].is_finite().all()


def test_ensemble_members_are_the_models_trained_alone_with_successive_seeds():
    # nt.train(..., ensemble_size=K) and fit_population are one program: member k is the model
    # nt.train would fit alone with seed training.seed + k (own windows, optimizer, best step).
    frame = sine_frame(n_series=2, length=150, noise=0.2)
    config = nt.NHITSConfig(
        horizon=6,
        input_size=24,
        mlp_units=16,
        n_blocks=(1,),
        pool_kernel_sizes=(1,),
        freq_downsample=(1,),
    )
    training = nt.TrainingConfig(
        max_steps=30,
        batch_size=16,
        val_size=12,
        val_check_steps=10,
        seed=5,
        progress=False,
        devices=1,
    )
    record = nt.train(frame, config, training, ensemble_size=3, ensemble_method="weighted")
    assert record.extra["member_seeds"] == [5, 6, 7]
    assert [len(losses) for losses in record.history["member_train_loss"]] == [3, 3, 3]
    for k in range(3):
        alone = nt.train(frame, config, dataclasses.replace(training, seed=5 + k))
        member = jax.tree.map(lambda leaf, k=k: leaf[k], record.params["stacked"])
        for got, want in zip(jax.tree.leaves(member), jax.tree.leaves(alone.params), strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
        assert record.extra["member_val_loss"][k] == pytest.approx(
            alone.metrics["val_loss"], rel=1e-4
        )
    inverse = 1 / np.asarray(record.extra["member_val_loss"])
    np.testing.assert_allclose(record.config.weights, inverse, rtol=1e-12)


def test_members_with_different_scalers_are_refused(etth1, members):
    df, train = etth1
    other = nt.train(train, SMALL, _training(0, max_steps=5, scaler="minmax"))
    with pytest.raises(ValueError, match="different scalers"):
        nt.ensemble([members[0], other])
    with pytest.raises(ValueError, match="at least two"):
        nt.ensemble(members[:1])
    shifted = df.with_columns(pl.col("y") + 1)
    assert nt.forecast(members[0], shifted).height == 24


def test_members_calibrated_on_one_tail_give_an_ensemble_calibrated_on_it(etth1, members):
    df, train = etth1
    assert "calibration" not in nt.ensemble(members[:3]).extra  # no data: the raw heads
    combined = nt.ensemble(members[:3], df=train)
    tail = members[0].extra["calibration"]
    calibration = combined.extra["calibration"]
    assert calibration["source"] == "calibration_tail" and calibration["n_scores"] > 0
    assert calibration["calibration_size"] == tail["calibration_size"]
    assert calibration["method"] == tail["method"] == "rolling"
    assert calibration["offsets"] != tail["offsets"]  # the ensemble's own conformity scores
    forecast = nt.forecast(combined, train, levels=(80,))
    assert (forecast["lo_80"] <= forecast["y_hat"]).all()
    assert (forecast["y_hat"] <= forecast["hi_80"]).all()
    split = nt.train(train, SMALL, _training(9, max_steps=5, calibration="split"))
    assert "calibration" not in nt.ensemble([members[0], split], df=train).extra  # two methods


@pytest.mark.parametrize("stacked", [False, True], ids=["records", "vmapped"])
def test_saved_ensemble_reloads_bit_identically(etth1, members, tmp_path, stacked):
    df, train = etth1
    if stacked:
        record = nt.train(train, SMALL, _training(0, max_steps=10), ensemble_size=3)
    else:
        record = nt.ensemble(members[:3], method="weighted")
    store = nt.Store(tmp_path / "store")
    store.save(record)
    loaded = store.load(record.id)
    assert loaded.config == record.config
    a = nt.forecast(record, df, levels=(80,))
    b = nt.forecast(loaded, df, levels=(80,))
    assert a.equals(b)


def test_ensemble_history_keeps_members_that_stop_at_different_checks():
    """Members stop early at different checks: the history runs to the last check, with the
    mean over the members still running (a member stopping before member 0 once crashed)."""
    from ntjax.train.population import ensemble_history

    histories = [
        {"step": [10, 20], "train_loss": [1.0, 0.8], "val_loss": [1.1, 0.9]},
        {"step": [10], "train_loss": [2.0], "val_loss": [2.1]},
        {"step": [10, 20, 30], "train_loss": [3.0, 2.8, 2.6], "val_loss": [3.1, 2.9, 2.7]},
    ]
    history = ensemble_history(histories, has_val=True)
    assert history["step"] == [10, 20, 30]
    assert history["train_loss"] == pytest.approx([2.0, 1.8, 2.6])
    assert history["val_loss"] == pytest.approx([2.1, 1.9, 2.7])
    assert history["member_train_loss"][2] == [None, None, 2.6]
    no_val = ensemble_history(
        [{**h, "val_loss": [None] * len(h["step"])} for h in histories], has_val=False
    )
    assert no_val["val_loss"] == [None, None, None] and no_val["member_val_loss"] == []
