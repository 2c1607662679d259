import dataclasses
import json

import numpy as np
import polars as pl
import pytest
from conftest import sine_frame

import ntjax as nt
from ntjax.calibrate import calibrate
from ntjax.crossval import drop_last
from ntjax.data.scalers import transform
from ntjax.data.windows import pack
from ntjax.predict.conformal import (
    conformal_offsets,
    conformity_scores,
    history_needed,
    interval_pairs,
    latest_offsets,
    rolling_at_cutoffs,
    rolling_offsets,
)
from ntjax.predict.inputs import scaler_rows

QUANTILES = (0.05, 0.1, 0.5, 0.9, 0.95)
CONFIG = nt.NHITSConfig(
    horizon=4,
    input_size=24,
    quantiles=QUANTILES,
    mlp_units=32,
    n_blocks=(1,),
    pool_kernel_sizes=(1,),
    freq_downsample=(1,),
)


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


def test_conformity_scores_are_the_distance_outside_each_interval():
    quantiles = np.array([[[-1.0, 0.0, 2.0], [-1.0, 0.0, 2.0], [-1.0, 0.0, 2.0]]])
    y = np.array([[3.0, -0.5, np.nan]])
    scores = conformity_scores(quantiles, y, [(0, 2, 0.8)])
    np.testing.assert_array_equal(scores[..., 0], [[1.0, -0.5, np.nan]])


def test_calibration_brings_coverage_to_nominal_on_exchangeable_data():
    # Quiet training period, noisier afterwards: the raw intervals are too narrow, and the
    # calibration and test windows (both after t = 300) are exchangeable.
    quiet = sine_frame(n_series=4, length=700, noise=0.15, seed=3)
    noisy = sine_frame(n_series=4, length=700, noise=0.6, seed=4)
    frame = quiet.with_columns(
        pl.when(pl.col("ds") < 300).then(pl.col("y")).otherwise(noisy["y"]).alias("y")
    )
    test = 200
    # Fitted on the quiet rows only; calibrated on rows it never saw (300..499), which are
    # exchangeable with the test rows (500..699).
    fitted = drop_last(frame, 2 * test)
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
        fitted,
        config,
        nt.TrainingConfig(
            max_steps=150,
            batch_size=32,
            val_check_steps=20,
            progress=False,
            devices=1,
            calibration=None,
        ),
    )
    assert record.intervals == {"method": "raw"}
    calibrated = calibrate(record, train, calibration_size=test)
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


def _reference_rolling(scores, levels, origins, *, window, gamma, warmup):
    """Gibbs & Candès with delayed feedback, one (series, step, interval) at a time."""
    n_series, n_cutoffs, horizon, n_pairs = scores.shape
    first = min(origins) - warmup
    out = np.empty((n_series, len(origins), horizon, n_pairs))
    for s in range(n_series):
        for h in range(horizon):
            for p in range(n_pairs):
                alpha_nominal = 1 - levels[p]
                alpha, quantiles, missed = alpha_nominal, {}, {}
                for m in range(first, max(origins) + 1):
                    resolved_source = m - h - 1  # the origin whose step h resolved last
                    if gamma and resolved_source >= first:
                        alpha += gamma * (alpha_nominal - missed[resolved_source])
                    a = min(max(alpha, 0.0), 1.0)
                    k = min(max(int(np.ceil((window + 1) * (1 - a) - 1e-9)), 1), window)
                    recent = np.sort(scores[s, m - h - window : m - h, h, p])
                    quantiles[m] = recent[k - 1]
                    if m < n_cutoffs:
                        missed[m] = float(scores[s, m, h, p] > quantiles[m])
                for i, m in enumerate(origins):
                    out[s, i, h, p] = quantiles[m]
    return out


@pytest.mark.parametrize("gamma", [0.0, 0.05], ids=["fixed", "adaptive"])
def test_rolling_offsets_match_a_direct_loop(gamma):
    rng = np.random.default_rng(1)
    scores = rng.normal(size=(2, 60, 3, 2)) * np.linspace(1, 3, 60)[None, :, None, None]
    levels = np.array([0.9, 0.8])
    origins = [30, 31, 37, 45, 60]
    got = rolling_offsets(scores, levels, np.array(origins), window=8, gamma=gamma, warmup=10)
    want = _reference_rolling(scores, levels, origins, window=8, gamma=gamma, warmup=10)
    np.testing.assert_allclose(got, want)


def test_rolling_offsets_never_read_scores_resolved_at_or_after_the_origin():
    rng = np.random.default_rng(2)
    scores = rng.normal(size=(1, 80, 4, 1))
    origin = 50
    base = rolling_offsets(scores, np.array([0.8]), np.array([origin]), window=10, gamma=0.1)
    changed = scores.copy()
    cutoff, step = np.meshgrid(np.arange(80), np.arange(4), indexing="ij")
    future = cutoff + step >= origin  # actuals at or after the origin
    changed[0, future, :] = 100 + rng.normal(size=(int(future.sum()), 1))
    after = rolling_offsets(changed, np.array([0.8]), np.array([origin]), window=10, gamma=0.1)
    np.testing.assert_array_equal(base, after)


def test_rolling_offsets_refuse_origins_without_a_full_window():
    scores = np.zeros((1, 30, 4, 1))
    with pytest.raises(ValueError, match="origins must lie in"):
        rolling_offsets(scores, np.array([0.8]), np.array([12]), window=10)


@pytest.fixture(scope="module")
def shifted():
    """Quiet until t = 650, four times noisier afterwards; fitted on t < 500 (validated on
    340..499, raw heads), split-calibrated on 500..659, tested on 700..999."""
    quiet = sine_frame(n_series=3, length=1000, noise=0.15, seed=3)
    noisy = sine_frame(n_series=3, length=1000, noise=0.6, seed=4)
    frame = quiet.with_columns(
        pl.when(pl.col("ds") < 650).then(pl.col("y")).otherwise(noisy["y"]).alias("y")
    )
    train = drop_last(frame, 340)
    training = nt.TrainingConfig(
        max_steps=150,
        batch_size=32,
        val_size=160,
        val_check_steps=25,
        progress=False,
        devices=1,
        calibration=None,
    )
    # A model that reads the scaled series as they are: its raw interval widths do not follow
    # a variance shift (window_norm would rescale each window and follow part of it).
    config = dataclasses.replace(CONFIG, window_norm=False)
    return frame, train, nt.train(drop_last(frame, 500), config, training)


def test_rolling_calibration_tracks_a_variance_shift_where_split_fails(shifted):
    frame, train, record = shifted
    history = drop_last(frame, 300)
    split = calibrate(record, train)
    rolling = calibrate(record, history, method="rolling", window=60, gamma=0.0)
    adaptive = calibrate(record, history, method="rolling", window=60, gamma=0.005)
    assert rolling.parent_id == record.id and rolling.id != record.id
    assert rolling.extra["calibration"]["method"] == "rolling"
    results = {
        name: nt.evaluate(r, frame, test_size=300, step_size=1, levels=(80, 90))
        for name, r in [("raw", record), ("split", split), ("rolling", rolling)]
        + [("adaptive", adaptive)]
    }
    for level in (80, 90):
        nominal = level / 100
        assert abs(results["rolling"][f"coverage_{level}"] - nominal) < 0.03
        # The adaptive level keeps some memory of the misses while its windows still held the
        # quiet scores (its warm-up straddles the shift), hence a little over-coverage after.
        assert abs(results["adaptive"][f"coverage_{level}"] - nominal) < 0.04
        assert nominal - results["split"][f"coverage_{level}"] > 0.3
    assert results["rolling"]["mae"] == pytest.approx(results["raw"]["mae"])  # median untouched


def test_rolling_offsets_in_evaluate_are_causal_and_match_forecast_offsets(shifted):
    frame, _, record = shifted
    rolling = calibrate(record, frame, method="rolling", window=40, gamma=0.0)
    panel = pack(frame)
    loc, scale = scaler_rows(rolling.scaler, panel)
    scaled = np.nan_to_num(transform(panel.values, loc, scale), nan=0.0)
    cutoffs = np.arange(800, 997, 7)
    base = rolling_at_cutoffs(rolling, panel, scaled, cutoffs)
    t = 849  # a cutoff: changing anything at or after it must not move the forecast made there
    i = int(np.searchsorted(cutoffs, t))
    later = scaled.copy()
    later[:, t:, 0] += 50.0
    changed = rolling_at_cutoffs(rolling, panel, later, cutoffs)
    np.testing.assert_array_equal(changed[:, : i + 1], base[:, : i + 1])
    assert not np.allclose(changed[:, i + 1 :], base[:, i + 1 :])
    # Cross-validation (and so the backtest) calibrates the same way at every cutoff.
    # The frame's latest windows gave the record's fixed offsets, so these rows are in its
    # provenance; the rolling offsets at each cutoff only read windows resolved before it.
    cv = nt.cross_validation(
        rolling, frame, n_windows=len(cutoffs), step_size=7, levels=(80,), allow_in_sample=True
    )
    lo = cv["lo_80"].to_numpy().reshape(3, len(cutoffs), 4)
    expected = base[..., 1] * scale[:, None, None, 0] + loc[:, None, None, 0]
    np.testing.assert_allclose(lo, expected, rtol=1e-6)
    # nt.forecast's offsets from the frame cut at t are the ones evaluate used at t.
    offsets = latest_offsets(rolling, drop_last(frame, panel.n_time - t))
    uncalibrated = nt.cross_validation(record, drop_last(frame, panel.n_time - t - 4), n_windows=1)
    q = uncalibrated.select([f"q_{q:g}" for q in QUANTILES]).to_numpy().reshape(3, 4, -1)
    used_at_t = base[:, i] * scale[:, None, :1] + loc[:, None, :1]
    np.testing.assert_allclose(used_at_t, np.sort(q + offsets, -1), rtol=1e-5, atol=1e-5)


def test_forecast_of_a_rolling_record_uses_the_offsets_evaluate_uses_at_its_origin(shifted):
    frame, _, record = shifted
    rolling = calibrate(record, frame, method="rolling", window=40, gamma=0.0)
    panel = pack(frame)
    loc, scale = scaler_rows(rolling.scaler, panel)
    scaled = np.nan_to_num(transform(panel.values, loc, scale), nan=0.0)
    t = 900
    at_t = rolling_at_cutoffs(rolling, panel, scaled, np.array([t]))[:, 0]  # [series, h, q]
    out = nt.forecast(rolling, drop_last(frame, panel.n_time - t))
    q = out.select([f"q_{q:g}" for q in QUANTILES]).to_numpy().reshape(3, 4, -1)
    expected = at_t * scale[:, None, :1] + loc[:, None, :1]
    np.testing.assert_allclose(q, expected, rtol=1e-5, atol=1e-5)


def test_calibrated_records_survive_the_store(shifted, tmp_path):
    frame, train, record = shifted
    for calibrated in (
        calibrate(record, train),
        calibrate(record, frame, method="rolling", window=30, gamma=0.02),
    ):
        json.dumps(calibrated.extra)
        store = nt.Store(tmp_path / calibrated.extra["calibration"]["method"])
        store.save(calibrated)
        loaded = store.load(calibrated.id)
        assert loaded.extra == calibrated.extra
        before = nt.evaluate(calibrated, frame, test_size=40, step_size=4, allow_in_sample=True)
        after = nt.evaluate(loaded, frame, test_size=40, step_size=4, allow_in_sample=True)
        assert after == pytest.approx(before)


def test_calibration_errors_are_clear(shifted):
    frame, train, record = shifted
    with pytest.raises(ValueError, match="unknown calibration method 'online'"):
        calibrate(record, train, method="online")
    with pytest.raises(ValueError, match="window applies to method='rolling' only"):
        calibrate(record, train, window=10)
    with pytest.raises(ValueError, match="calibration_size applies to method='split' only"):
        calibrate(record, train, method="rolling", calibration_size=50)
    with pytest.raises(ValueError, match="window must be a positive integer"):
        calibrate(record, train, method="rolling", window=0)
    with pytest.raises(ValueError, match="gamma must be in"):
        calibrate(record, train, method="rolling", window=10, gamma=-0.1)
    with pytest.raises(ValueError, match="no symmetric pair"):
        calibrate(record.replace(config=dataclasses.replace(CONFIG, quantiles=(0.5,))), train)
    rolling = calibrate(record, train, method="rolling", window=50, gamma=0.01)
    assert history_needed(rolling) == 24 + 50 + 4 + 50
    with pytest.raises(ValueError, match="not rolling-calibrated"):
        latest_offsets(record, frame)


def test_rolling_records_fall_back_to_their_fixed_offsets_without_valid_windows(shifted):
    # Rows before t = 100 hold too few windows (and all of them were fitted on): the offsets are
    # the record's fixed ones, in the frame's units.
    frame, train, record = shifted
    rolling = calibrate(record, train, method="rolling", window=50, gamma=0.01)
    short = frame.filter(pl.col("ds") < 100)
    _, scale = scaler_rows(rolling.scaler, pack(short))
    fixed = np.asarray(rolling.extra["calibration"]["offsets"])
    np.testing.assert_allclose(latest_offsets(rolling, short), fixed[None] * scale[:, None, :1])
    early = frame.filter(pl.col("ds") < 200)
    with pytest.raises(ValueError, match="evaluate refused: model .* up to 659"):
        nt.evaluate(rolling, early, test_size=40)
    assert nt.evaluate(rolling, early, test_size=40, allow_in_sample=True)["in_sample"] is True
