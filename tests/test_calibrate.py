import numpy as np
import polars as pl
import pytest
from conftest import sine_frame

import ntjax as nt
from ntjax.calibrate import calibrate, conformal_offsets, interval_pairs
from ntjax.crossval import drop_last

QUANTILES = (0.05, 0.1, 0.5, 0.9, 0.95)


def test_conformal_offsets_match_the_finite_sample_quantile():
    rng = np.random.default_rng(0)
    y = rng.normal(size=(199, 2))
    quantiles = np.zeros((199, 2, 3))
    quantiles[..., 0], quantiles[..., 2] = -0.5, 0.5
    offsets = conformal_offsets(quantiles, y, [(0, 2, 0.8)])
    scores = np.maximum(-0.5 - y, y - 0.5)
    k = int(np.ceil(200 * 0.8))  # the k-th smallest score
    expected = np.sort(scores, axis=0)[k - 1]
    np.testing.assert_allclose(offsets[:, 2], expected)
    np.testing.assert_allclose(offsets[:, 0], -expected)
    np.testing.assert_array_equal(offsets[:, 1], 0)


def test_interval_pairs():
    assert interval_pairs(QUANTILES) == [(0, 4, pytest.approx(0.9)), (1, 3, pytest.approx(0.8))]


def test_calibration_brings_coverage_to_nominal_on_exchangeable_data():
    # Quiet training period, noisier afterwards: the raw intervals are too narrow, and the
    # calibration and test windows (both after t = 300) are exchangeable.
    quiet = sine_frame(n_series=4, length=700, noise=0.15, seed=3)
    noisy = sine_frame(n_series=4, length=700, noise=0.6, seed=4)
    frame = quiet.with_columns(
        pl.when(pl.col("ds") < 300).then(pl.col("y")).otherwise(noisy["y"]).alias("y")
    )
    test = 200
    train = drop_last(frame, test)
    config = nt.NHITSConfig(
        horizon=4,
        input_size=24,
        quantiles=QUANTILES,
        mlp_units=32,
        n_blocks=(1,),
        pool_kernel_sizes=(1,),
        freq_downsample=(1,),
    )
    record = nt.train(
        train,
        config,
        nt.TrainingConfig(
            max_steps=150,
            batch_size=32,
            val_size=200,
            val_check_steps=20,
            progress=False,
            devices=1,
        ),
    )
    calibrated = calibrate(record, train)
    assert calibrated.parent_id == record.id and calibrated.id != record.id
    raw = nt.evaluate(record, frame, test_size=test, step_size=1, levels=(80, 90))
    cal = nt.evaluate(calibrated, frame, test_size=test, step_size=1, levels=(80, 90))
    for level in (80, 90):
        assert abs(cal[f"coverage_{level}"] - level / 100) < 0.04
        assert abs(cal[f"coverage_{level}"] - level / 100) < abs(
            raw[f"coverage_{level}"] - level / 100
        )
    assert cal["mae"] == pytest.approx(raw["mae"])  # the median is untouched
    out = nt.forecast(calibrated, frame, levels=(80, 90))
    q = out.select("q_0.05", "q_0.1", "q_0.5", "q_0.9", "q_0.95").to_numpy()
    assert np.all(np.diff(q, axis=1) >= 0)
