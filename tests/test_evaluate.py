import numpy as np
import polars as pl
import pytest
from conftest import sine_frame

import ntjax as nt
from ntjax.crossval import cross_validation
from ntjax.evaluate import coverage_table

CONFIG = nt.NHITSConfig(
    horizon=6,
    input_size=24,
    mlp_units=16,
    n_blocks=(1,),
    pool_kernel_sizes=(1,),
    freq_downsample=(1,),
)
TRAINING = nt.TrainingConfig(
    max_steps=30, batch_size=16, val_check_steps=10, progress=False, devices=1
)


@pytest.fixture(scope="module")
def frame():
    return sine_frame(n_series=3, length=160, noise=0.2)


@pytest.fixture(scope="module")
def record(frame):
    return nt.train(frame.filter(pl.col("ds") < 124), CONFIG, TRAINING)


def test_evaluate_equals_metrics_recomputed_from_cross_validation(record, frame):
    result = nt.evaluate(record, frame, test_size=36, step_size=6, season_length=12)
    cv = cross_validation(record, frame, n_windows=6, levels=(80,))
    y, y_hat = cv["y"].to_numpy(), cv["y_hat"].to_numpy()
    assert result["n_points"] == len(y) == 3 * 36
    assert result["mae"] == pytest.approx(np.mean(np.abs(y - y_hat)), rel=1e-9)
    assert result["rmse"] == pytest.approx(np.sqrt(np.mean((y - y_hat) ** 2)), rel=1e-9)
    assert result["smape"] == pytest.approx(
        np.mean(2 * np.abs(y - y_hat) / (np.abs(y) + np.abs(y_hat))), rel=1e-9
    )
    inside = (y >= cv["lo_80"].to_numpy()) & (y <= cv["hi_80"].to_numpy())
    assert result["coverage_80"] == pytest.approx(inside.mean())
    # MASE: per-series MAE over the in-sample seasonal-naive MAE before the first cutoff.
    per_series = []
    for uid in ("s0", "s1", "s2"):
        part = cv.filter(pl.col("unique_id") == uid)
        hist = frame.filter((pl.col("unique_id") == uid) & (pl.col("ds") < 124))["y"].to_numpy()
        scale = np.mean(np.abs(hist[12:] - hist[:-12]))
        per_series.append(np.mean(np.abs(part["y"].to_numpy() - part["y_hat"].to_numpy())) / scale)
    assert result["mase"] == pytest.approx(np.mean(per_series), rel=1e-9)


def test_metrics_per_cutoff_are_those_of_each_window(record, frame):
    """by="cutoff": one row per origin, pooling series and steps (by="window": one per
    series and origin); with equal points per
    window their MAE and MSE average to the pooled ones. The same for the seasonal naive."""
    pooled = nt.evaluate(record, frame, test_size=36, step_size=6, levels=())
    rows = nt.evaluate(record, frame, test_size=36, step_size=6, levels=(), by="cutoff")
    cv = cross_validation(record, frame, n_windows=6, levels=())
    assert rows["window"].to_list() == list(range(6))
    assert rows["cutoff"].to_list() == sorted(cv["cutoff"].unique().to_list())
    for k, cutoff in enumerate(sorted(cv["cutoff"].unique())):
        part = cv.filter(pl.col("cutoff") == cutoff)
        error = part["y"].to_numpy() - part["y_hat"].to_numpy()
        assert rows["mse"][k] == pytest.approx(np.mean(error**2), rel=1e-9)
    assert rows["mae"].mean() == pytest.approx(pooled["mae"], rel=1e-9)
    windows = nt.evaluate(record, frame, test_size=36, step_size=6, levels=(), by="window")
    assert windows.height == 3 * 6 and windows["unique_id"].to_list() == [
        uid for uid in ("s0", "s1", "s2") for _ in range(6)
    ]
    first = cv.filter((pl.col("unique_id") == "s1") & (pl.col("cutoff") == cv["cutoff"].min()))
    error = first["y"].to_numpy() - first["y_hat"].to_numpy()
    assert windows["mae"][6] == pytest.approx(np.mean(np.abs(error)), rel=1e-9)
    assert windows["mse"].mean() == pytest.approx(pooled["mse"], rel=1e-9)
    naive = nt.evaluate_seasonal_naive(frame, horizon=6, test_size=36, by="cutoff")
    assert naive.height == 6
    pooled_naive = nt.evaluate_seasonal_naive(frame, horizon=6, test_size=36)
    assert naive["mse"].mean() == pytest.approx(pooled_naive["mse"], rel=1e-9)
    with pytest.raises(ValueError, match="by must be None, 'horizon', 'cutoff' or 'window'"):
        nt.evaluate_seasonal_naive(frame, horizon=6, by="series")


def test_stride_one_protocol_counts_every_window(record, frame):
    result = nt.evaluate(record, frame, test_size=20, step_size=1)
    assert result["n_windows"] == 3 * (20 - 6 + 1)
    assert result["n_points"] == 3 * 15 * 6


def test_seasonal_naive_matches_numpy(frame):
    result = nt.evaluate_seasonal_naive(
        frame, horizon=6, season_length=12, test_size=12, step_size=6
    )
    errors = []
    for uid in ("s0", "s1", "s2"):
        y = frame.filter(pl.col("unique_id") == uid)["y"].to_numpy()
        for cutoff in (148, 154):
            forecast = y[cutoff - 12 : cutoff - 6]
            errors.append(np.abs(y[cutoff : cutoff + 6] - forecast))
    assert result["mae"] == pytest.approx(np.mean(errors), rel=1e-12)


def test_evaluate_refuses_too_little_history(record, frame):
    with pytest.raises(ValueError, match="series too short"):
        nt.evaluate(record, frame, test_size=150)
    with pytest.raises(ValueError, match="at least the horizon"):
        nt.evaluate(record, frame, test_size=3)


def test_coverage_table_lists_empirical_against_nominal(record, frame):
    result = nt.evaluate(record, frame, test_size=36, step_size=6, levels=(80,))
    table = coverage_table(result)
    assert table.columns == ["level", "nominal", "coverage", "gap", "width"]
    assert table.row(0) == pytest.approx(
        (80.0, 0.8, result["coverage_80"], result["coverage_80"] - 0.8, result["width_80"])
    )
    with pytest.raises(ValueError, match="no coverage_L entries"):
        coverage_table({"mae": 1.0})
