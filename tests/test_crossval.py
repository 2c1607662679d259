import numpy as np
import polars as pl
import pytest
from conftest import sine_frame

import ntjax as nt
from ntjax.crossval import cross_validation, drop_last, window_cutoffs

TINY = nt.NHITSConfig(
    horizon=4,
    input_size=16,
    mlp_units=16,
    n_blocks=(1, 1),
    pool_kernel_sizes=(2, 1),
    freq_downsample=(2, 1),
)
TRAINING = nt.TrainingConfig(max_steps=20, batch_size=16, val_check_steps=10, progress=False)


def _frame(length: int = 96) -> pl.DataFrame:
    return sine_frame(n_series=2, length=length, noise=0.1)


def test_window_cutoffs_end_at_the_series_end():
    cutoffs = window_cutoffs(50, n_windows=3, horizon=4, step_size=2)
    np.testing.assert_array_equal(cutoffs, [42, 44, 46])
    with pytest.raises(ValueError, match="positive"):
        window_cutoffs(50, n_windows=0, horizon=4, step_size=2)


def test_drop_last_drops_rows_of_every_series():
    frame = _frame(30)
    kept = drop_last(frame, 5)
    assert kept.group_by("unique_id").len()["len"].to_list() == [25, 25]
    assert kept["ds"].max() == 24


@pytest.mark.parametrize("refit", [False, 2], ids=["one-fit", "refit-every-2"])
def test_forecast_at_a_cutoff_ignores_data_after_it(refit):
    frame = _frame()
    kwargs = dict(n_windows=4, step_size=4, refit=refit, training=TRAINING, levels=(80,))
    before = cross_validation(TINY, frame, **kwargs)
    cutoffs = before["cutoff"].unique().sort().to_list()
    changed_after = cutoffs[1]
    # Everything after the second cutoff changes: level shift plus noise.
    rng = np.random.default_rng(0)
    shifted = frame.with_columns(
        pl.when(pl.col("ds") > changed_after)
        .then(pl.col("y") * 3.0 + 50.0 + pl.Series(rng.normal(size=frame.height)))
        .otherwise(pl.col("y"))
        .alias("y")
    )
    after = cross_validation(TINY, shifted, **kwargs)
    columns = ["y_hat", "q_0.1", "q_0.5", "q_0.9", "lo_80", "hi_80"]
    early = pl.col("cutoff") <= changed_after
    assert before.filter(early).height == 2 * 2 * TINY.horizon
    np.testing.assert_array_equal(
        before.filter(early).select(columns).to_numpy(),
        after.filter(early).select(columns).to_numpy(),
    )
    # The later forecasts see the changed data (their inputs), so they do change.
    late = ~early
    assert not np.allclose(
        before.filter(late)["y_hat"].to_numpy(), after.filter(late)["y_hat"].to_numpy()
    )


def test_one_fit_equals_a_forecast_from_each_cutoff():
    frame = _frame()
    horizon, n_windows = TINY.horizon, 3
    holdout = horizon + 2 * (n_windows - 1)
    record = nt.train(drop_last(frame, holdout), TINY, TRAINING)
    cv = cross_validation(record, frame, n_windows=n_windows, step_size=2, levels=(80,))
    assert cv.columns == [
        "unique_id", "ds", "cutoff", "y", "y_hat", "q_0.025", "q_0.1", "q_0.5", "q_0.9",
        "q_0.975", "lo_80", "hi_80", "in_sample",
    ]  # fmt: skip
    assert not cv["in_sample"].any()
    assert cv.height == 2 * n_windows * horizon
    cutoffs = cv["cutoff"].unique().sort().to_list()
    assert len(cutoffs) == n_windows
    for cutoff in cutoffs:
        history = frame.filter(pl.col("ds") <= cutoff)
        expected = nt.forecast(record, history, levels=(80,))
        got = cv.filter(pl.col("cutoff") == cutoff).drop("cutoff", "y", "in_sample")
        assert got["ds"].to_list() == expected["ds"].to_list()
        assert got["unique_id"].to_list() == expected["unique_id"].to_list()
        np.testing.assert_allclose(
            got.drop("unique_id", "ds").to_numpy(),
            expected.drop("unique_id", "ds").to_numpy(),
            rtol=1e-5,
            atol=1e-5,
        )
    actual = cv.join(frame, on=["unique_id", "ds"], suffix="_true")
    np.testing.assert_array_equal(actual["y"].to_numpy(), actual["y_true"].to_numpy())
    assert (cv["ds"] > cv["cutoff"]).all()


def test_cross_validation_rejects_bad_requests():
    frame = _frame(40)
    with pytest.raises(ValueError, match="too short"):
        cross_validation(TINY, frame, n_windows=10, training=TRAINING)
    with pytest.raises(ValueError, match="refit"):
        cross_validation(TINY, frame, n_windows=2, refit=0, training=TRAINING)
    with pytest.raises(ValueError, match="quantile"):
        cross_validation(TINY, frame, n_windows=2, training=TRAINING, levels=(50,))
