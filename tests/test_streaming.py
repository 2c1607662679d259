import numpy as np
import polars as pl
import pytest
from conftest import sine_frame

import ntjax as nt

CONFIG = nt.NHITSConfig(
    horizon=4,
    input_size=16,
    mlp_units=16,
    n_blocks=(1,),
    pool_kernel_sizes=(2,),
    freq_downsample=(1,),
)
# Split calibration: fixed offsets, which streaming and nt.forecast apply alike (a rolling
# record's nt.forecast recomputes them from the latest windows).
TRAINING = nt.TrainingConfig(
    max_steps=20, batch_size=16, val_check_steps=10, progress=False, devices=1, calibration="split"
)


@pytest.fixture(scope="module")
def setup():
    full = sine_frame(n_series=3, length=120, noise=0.1)
    history = full.filter(pl.col("ds") < 100)
    record = nt.train(history, CONFIG, TRAINING)
    return full, history, record


def test_streaming_equals_batch_forecast_after_each_tick(setup):
    full, history, record = setup
    stream = nt.StreamingForecaster(record, history, levels=(80,))
    for t in range(100, 106):
        ticks = full.filter(pl.col("ds") == t)
        if t == 102:  # one series misses a tick: it keeps its older forecast origin
            ticks = ticks.filter(pl.col("unique_id") != "s2")
        out = stream.update(ticks).sort("unique_id", "ds")
        seen = full.filter(
            (pl.col("ds") <= t) & ~((pl.col("unique_id") == "s2") & (pl.col("ds") == 102))
        )
        batch = nt.forecast(record, seen, levels=(80,))
        batch = batch.filter(pl.col("unique_id").is_in(ticks["unique_id"].implode())).sort(
            "unique_id", "ds"
        )
        assert out["ds"].to_list() == batch["ds"].to_list()
        for column in ("y_hat", "lo_80", "hi_80"):
            np.testing.assert_allclose(out[column], batch[column], rtol=1e-5, atol=1e-5)


def test_several_ticks_per_series_in_one_update(setup):
    full, history, record = setup
    stream = nt.StreamingForecaster(record, history)
    out = stream.update(full.filter(pl.col("ds").is_between(100, 103)))
    batch = nt.forecast(record, full.filter(pl.col("ds") <= 103))
    np.testing.assert_allclose(
        out.sort("unique_id", "ds")["y_hat"],
        batch.sort("unique_id", "ds")["y_hat"],
        rtol=1e-5,
        atol=1e-5,
    )


def test_update_arrays_fast_path(setup):
    full, history, record = setup
    stream = nt.StreamingForecaster(record, history)
    y = full.filter((pl.col("ds") == 100) & (pl.col("unique_id") == "s1"))["y"].to_numpy()
    quantiles = stream.update_arrays(["s1"], np.array([100]), y[:, None])
    batch = nt.forecast(record, full.filter((pl.col("ds") <= 100) & (pl.col("unique_id") == "s1")))
    median = quantiles[0, :, record.config.median_index]
    np.testing.assert_allclose(median, batch["y_hat"], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "ticks,message",
    [
        (pl.DataFrame({"unique_id": ["nope"], "ds": [100], "y": [1.0]}), "unknown series"),
        (
            pl.DataFrame({"unique_id": ["s0"], "ds": [100], "y": [float("nan")]}),
            "series 's0' has 1 missing value in y",
        ),
        (
            pl.DataFrame({"unique_id": ["s0"], "ds": [99], "y": [1.0]}),
            "out-of-order tick for series 's0'",
        ),
        (
            pl.DataFrame({"unique_id": ["s0", "s1"], "ds": [100, 50], "y": [1.0, 2.0]}),
            "out-of-order",
        ),
        (pl.DataFrame({"unique_id": ["s0"], "ds": [100]}), "lack column"),
    ],
    ids=["unknown", "nan", "late", "late-second", "no-y"],
)
def test_bad_ticks_are_refused_and_leave_state_unchanged(setup, ticks, message):
    full, history, record = setup
    stream = nt.StreamingForecaster(record, history)
    buffer, head, last = (
        np.asarray(stream._buffer),
        np.asarray(stream._head),
        stream._last_ds.copy(),
    )
    with pytest.raises(ValueError, match=message):
        stream.update(ticks)
    np.testing.assert_array_equal(np.asarray(stream._buffer), buffer)
    np.testing.assert_array_equal(np.asarray(stream._head), head)
    np.testing.assert_array_equal(stream._last_ds, last)
    # and it still forecasts like the batch path afterwards
    out = stream.update(full.filter(pl.col("ds") == 100))
    batch = nt.forecast(record, full.filter(pl.col("ds") <= 100))
    np.testing.assert_allclose(
        out.sort("unique_id", "ds")["y_hat"],
        batch.sort("unique_id", "ds")["y_hat"],
        rtol=1e-5,
        atol=1e-5,
    )


def test_online_adaptation_makes_a_child_record_without_blocking(setup):
    full, history, record = setup
    stream = nt.StreamingForecaster(record, history, adapt_every=3, adapt_steps=5)
    for t in range(100, 103):
        stream.update(full.filter(pl.col("ds") == t))
    stream.wait_for_adaptation(timeout=300)
    assert len(stream.records) == 2
    child = stream.records[-1]
    assert child.parent_id == record.id and child.id != record.id
    assert stream.record is child
    out = stream.update(full.filter(pl.col("ds") == 103))
    assert out.height == 3 * CONFIG.horizon
