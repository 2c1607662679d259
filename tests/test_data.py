import datetime as dt

import numpy as np
import polars as pl
import pytest
from conftest import sine_frame

import ntjax as nt
from ntjax.data import Frequency, fit_scaler, infer_frequency, pack, validate
from ntjax.data.frame import SeriesRuns
from ntjax.data.scalers import inverse, transform


def test_validate_accepts_pandas_and_normalises_types():
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"unique_id": [1, 1, 2, 2], "ds": [0, 1, 0, 1], "y": [1, 2, 3, 4]})
    out = validate(frame)
    assert out.schema["unique_id"] == pl.String
    assert out.schema["y"] == pl.Float64
    assert out.schema["ds"] == pl.Int64


def test_validate_keeps_interleaved_series_and_groups_them():
    frame = pl.DataFrame(
        {"unique_id": ["a", "b", "a", "b"], "ds": [0, 0, 1, 1], "y": [1.0, 5, 2, 6]}
    )
    out = validate(frame)
    assert out["unique_id"].to_list() == ["a", "a", "b", "b"]
    assert out["y"].to_list() == [1.0, 2.0, 5.0, 6.0]


@pytest.mark.parametrize(
    "ids",
    [["a"], ["a", "a", "b"], ["a", "b", "a", "b"], ["x"] * 3 + ["y"] * 2 + ["x"], ["", "", "b"]],
    ids=["one_row", "grouped", "interleaved", "id_returns", "empty_string"],
)
def test_series_runs_match_a_plain_loop(ids):
    runs = SeriesRuns.of(pl.DataFrame({"unique_id": ids}))
    expected_ids, expected_starts = [], []
    for row, uid in enumerate(ids):
        if row == 0 or uid != ids[row - 1]:
            expected_ids.append(uid)
            expected_starts.append(row)
    assert runs.ids == tuple(expected_ids)
    np.testing.assert_array_equal(runs.starts, [*expected_starts, len(ids)])
    assert runs.contiguous == (len(set(ids)) == len(expected_ids))


BAD_INPUTS = {
    "missing_column": (
        pl.DataFrame({"unique_id": ["a"], "ds": [0]}),
        {},
        "missing column",
    ),
    "non_numeric_y": (
        pl.DataFrame({"unique_id": ["a", "a"], "ds": [0, 1], "y": ["x", "y"]}),
        {},
        "must be numeric",
    ),
    "nan_y": (
        pl.DataFrame({"unique_id": ["a", "a", "b"], "ds": [0, 1, 0], "y": [1.0, float("nan"), 2]}),
        {},
        "series 'a' has 1 missing value in y (at 1); pass --missing",
    ),
    "inf_y": (
        pl.DataFrame({"unique_id": ["b", "b"], "ds": [0, 1], "y": [1.0, float("inf")]}),
        {},
        "series 'b' has 1 infinite value in y (at 1)",
    ),
    "duplicate": (
        pl.DataFrame({"unique_id": ["a", "a", "c", "c"], "ds": [0, 1, 5, 5], "y": [1.0, 2, 3, 4]}),
        {},
        "duplicate (unique_id, ds) rows: series 'c' at 5 (2 rows, values differ)",
    ),
    "unsorted": (
        pl.DataFrame({"unique_id": ["a", "a", "a"], "ds": [0, 2, 1], "y": [1.0, 2, 3]}),
        {},
        "not increasing within series 'a'",
    ),
    "too_short": (
        pl.DataFrame(
            {"unique_id": ["a"] * 5 + ["z"] * 3, "ds": list(range(5)) + [0, 1, 2], "y": [1.0] * 8}
        ),
        {"min_length": 4},
        "'z' (3 rows)",
    ),
    "bad_ds": (
        pl.DataFrame({"unique_id": ["a"], "ds": ["monday"], "y": [1.0]}),
        {},
        "ds must be a datetime",
    ),
}


@pytest.mark.parametrize("name", list(BAD_INPUTS), ids=list(BAD_INPUTS))
def test_each_bad_input_gets_a_clear_value_error(name):
    frame, kwargs, message = BAD_INPUTS[name]
    with pytest.raises(ValueError) as info:
        validate(frame, **kwargs)
    assert message in str(info.value)


def test_train_rejects_series_shorter_than_input_plus_horizon():
    frame = sine_frame(n_series=1, length=30)
    config = nt.NHITSConfig(horizon=10, input_size=24, mlp_units=8)
    with pytest.raises(ValueError, match="shorter than input_size \\+ horizon = 34"):
        nt.train(frame, config, nt.TrainingConfig(max_steps=1, progress=False))


@pytest.mark.parametrize("horizon", [0, -3], ids=["zero", "negative"])
def test_nonpositive_horizon_is_refused(horizon):
    with pytest.raises(ValueError, match="horizon must be between 1"):
        nt.NHITSConfig(horizon=horizon, input_size=8)


def test_unknown_model_name_is_refused():
    with pytest.raises(ValueError, match="unknown model 'prophet'"):
        nt.models.get_model("prophet")


def test_from_wide_makes_one_series_per_column():
    wide = pl.DataFrame(
        {"Date": ["2020-01-02", "2020-01-01"], "Open": [1.0, 2.0], "Close": [3.0, 4.0]}
    )
    long = nt.from_wide(wide, time_col="Date", value_cols="Close,Open")
    assert long["unique_id"].to_list() == ["Close", "Close", "Open", "Open"]
    assert long["y"].to_list() == [4.0, 3.0, 2.0, 1.0]
    assert long.schema["ds"] == pl.Datetime("us")
    with pytest.raises(ValueError, match="not in the frame"):
        nt.from_wide(wide, time_col="Date", value_cols=["Volume"])


def test_load_dataset_etth1_is_the_unmodified_file():
    wide = nt.load_dataset("etth1", wide=True)
    assert wide.shape == (17420, 8)
    assert wide["OT"][0] == pytest.approx(30.5310001373291)
    long = nt.load_dataset("etth1", columns="OT")
    assert long["unique_id"].unique().to_list() == ["OT"]
    assert long.height == 17420
    with pytest.raises(ValueError, match="unknown dataset"):
        nt.load_dataset("m5")


@pytest.mark.parametrize("kind", ["identity", "standard", "robust", "minmax"])
def test_scalers_invert_exactly_and_use_training_data_only(kind):
    rng = np.random.default_rng(1)
    values = rng.normal(5, 3, size=(3, 50, 1))
    values[1, :10] = np.nan  # a shorter series
    state = fit_scaler(kind, values[:, :40], ids=["a", "b", "c"], columns=["y"])
    scaled = transform(values, state.loc, state.scale)
    back = inverse(scaled[..., 0], state.loc[:, 0], state.scale[:, 0])
    np.testing.assert_allclose(back, values[..., 0], rtol=1e-12, atol=1e-12)
    train = values[0, :40, 0]
    expected = {
        "identity": (0.0, 1.0),
        "standard": (train.mean(), train.std()),
        "robust": (np.median(train), np.quantile(train, 0.75) - np.quantile(train, 0.25)),
        "minmax": (train.min(), train.max() - train.min()),
    }[kind]
    np.testing.assert_allclose([state.loc[0, 0], state.scale[0, 0]], expected, rtol=1e-12)


def test_constant_series_is_left_unscaled():
    state = fit_scaler("standard", np.full((1, 10, 1), 4.0), ids=["a"], columns=["y"])
    assert state.scale[0, 0] == 1.0


@pytest.mark.parametrize(
    "ds,expected",
    [
        (np.arange(0, 50, 5), Frequency("int", 5)),
        (
            [dt.datetime(2020, 1, 1) + dt.timedelta(hours=h) for h in range(30)],
            Frequency("us", 3_600_000_000),
        ),
        ([dt.datetime(2020, m, 1) for m in range(1, 13)], Frequency("mo", 1)),
        (
            [
                d
                for d in (dt.datetime(2024, 1, 1) + dt.timedelta(days=i) for i in range(40))
                if d.weekday() < 5
            ],
            Frequency("bd", 1),
        ),
    ],
    ids=["int", "hourly", "monthly", "business-daily"],
)
def test_frequency_is_inferred(ds, expected):
    series = pl.Series(ds)
    from ntjax.data.frame import datetime_to_us

    assert infer_frequency(datetime_to_us(series), is_int=series.dtype.is_integer()) == expected


def test_future_ds_continue_each_series():
    weekdays = [
        d
        for d in (dt.datetime(2023, 12, 18) + dt.timedelta(days=i) for i in range(19))
        if d.weekday() < 5
    ]  # ends on Friday 2024-01-05
    months = [dt.datetime(2021, 1, 31), dt.datetime(2021, 2, 28), dt.datetime(2021, 3, 31)]
    frame = pl.DataFrame(
        {
            "unique_id": ["m"] * len(months) + ["b"] * len(weekdays),
            "ds": months + weekdays,
            "y": [1.0] * (len(months) + len(weekdays)),
        }
    )
    panel = pack(validate(frame))
    stamps = panel.ds_series(panel.future_ds(2)).to_list()
    assert panel.ids == ("m", "b")  # frame order
    future = {"m": stamps[:2], "b": stamps[2:]}
    assert future["b"] == [dt.datetime(2024, 1, 8), dt.datetime(2024, 1, 9)]  # skips the weekend
    assert [d.month for d in future["m"]] == [4, 5]


def test_future_ds_of_padded_and_irregular_series():
    frame = pl.DataFrame(
        {
            "unique_id": ["long"] * 10 + ["short"] * 3 + ["gappy"] * 6,
            "ds": list(range(10)) + [100, 103, 106] + [0, 2, 4, 9, 11, 13],
            "y": [1.0] * 19,
        }
    )
    panel = pack(validate(frame))  # "short" is padded on the left
    future = dict(zip(panel.ids, panel.future_ds(2).tolist(), strict=True))
    # "gappy" has one irregular step: its most frequent step (2) continues it.
    assert future == {"long": [10, 11], "short": [109, 112], "gappy": [15, 17]}
    assert panel.frequencies() == [Frequency("int", 1), Frequency("int", 3), Frequency("int", 2)]


def test_train_test_split_is_chronological_per_series():
    frame = sine_frame(n_series=2, length=40)
    train, test = nt.train_test_split(frame, 5)
    for uid in ("s0", "s1"):
        tr = train.filter(pl.col("unique_id") == uid)["ds"]
        te = test.filter(pl.col("unique_id") == uid)["ds"]
        assert te.len() == 5 and tr.max() < te.min()


def test_pack_right_aligns_series_of_different_lengths():
    frame = pl.concat(
        [sine_frame(1, 10), sine_frame(1, 6).with_columns(pl.lit("t").alias("unique_id"))]
    )
    panel = pack(validate(frame))
    assert panel.values.shape == (2, 10, 1)
    assert np.isnan(panel.values[1, :4, 0]).all() and np.isfinite(panel.values[1, 4:, 0]).all()
    assert panel.lengths.tolist() == [10, 6]
