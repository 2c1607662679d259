"""Repairs of messy long frames: missing values, duplicate rows, missing timestamps."""

import datetime as dt

import numpy as np
import polars as pl
import pytest

import ntjax as nt
from ntjax.data import drop_duplicates, fill_gaps, fill_missing, find_gaps, validate

NAN = float("nan")


def two_series() -> pl.DataFrame:
    """Series 'b' and 'a' interleaved row by row; 'a' starts and ends with a missing value and
    has an uneven step (2 -> 5), 'b' has a missing exogenous value."""
    rows = [
        ("b", 0, 10.0, 1.0),
        ("a", 0, None, 5.0),
        ("b", 1, None, 2.0),
        ("a", 1, 1.0, 5.0),
        ("b", 2, None, None),
        ("a", 2, NAN, 5.0),
        ("b", 3, 40.0, 4.0),
        ("a", 5, 7.0, 5.0),
        ("a", 6, None, 5.0),
    ]
    return pl.DataFrame(rows, schema=["unique_id", "ds", "y", "x"], orient="row")


# Worked by hand, in the input's row order. A fill that crossed from 'b' into 'a' would give
# a's first row b's 10; interpolation by row instead of by time would give a at ds 2 4.0.
EXPECTED = {
    "drop": [("b", 0, 10.0, 1.0), ("a", 1, 1.0, 5.0), ("b", 3, 40.0, 4.0), ("a", 5, 7.0, 5.0)],
    "ffill": [
        ("b", 0, 10.0, 1.0),
        ("b", 1, 10.0, 2.0),
        ("a", 1, 1.0, 5.0),
        ("b", 2, 10.0, 2.0),
        ("a", 2, 1.0, 5.0),
        ("b", 3, 40.0, 4.0),
        ("a", 5, 7.0, 5.0),
        ("a", 6, 7.0, 5.0),
    ],
    "interpolate": [
        ("b", 0, 10.0, 1.0),
        ("b", 1, 20.0, 2.0),
        ("a", 1, 1.0, 5.0),
        ("b", 2, 30.0, 3.0),
        ("a", 2, 2.5, 5.0),  # 1 + (2 - 1) / (5 - 1) * (7 - 1)
        ("b", 3, 40.0, 4.0),
        ("a", 5, 7.0, 5.0),
    ],
}


@pytest.mark.parametrize("method", list(EXPECTED), ids=list(EXPECTED))
def test_each_missing_policy_stays_within_its_series(method):
    frame = two_series()
    before = frame.clone()
    out = fill_missing(frame, method)
    assert out.rows() == EXPECTED[method]
    assert out.columns == frame.columns
    assert frame.equals(before, null_equal=True)  # the input is left alone


def test_missing_error_names_series_counts_and_first_stamps():
    with pytest.raises(ValueError) as info:
        fill_missing(two_series())
    assert str(info.value) == (
        "series 'b' has 2 missing values in y (first at 1, 2), series 'a' has 3 missing values "
        "in y (first at 0, 2, 6), series 'b' has 1 missing value in x (at 2); pass --missing "
        "drop|ffill|interpolate (or nt.data.fill_missing(df, method=...))."
    )


def test_missing_error_shows_dates_of_a_daily_series():
    days = [dt.datetime(2020, 4, 15) + dt.timedelta(days=i) for i in range(200)]
    y = np.arange(200.0)
    for day in (2, 177, 180, 181):  # 2020-04-17, 2020-10-09, 2020-10-12, 2020-10-13
        y[day] = np.nan
    frame = pl.DataFrame({"unique_id": "BTC-USD", "ds": days, "y": y})
    with pytest.raises(ValueError) as info:
        fill_missing(frame)
    assert str(info.value).startswith(
        "series 'BTC-USD' has 4 missing values in y (first at 2020-04-17, 2020-10-09, "
        "2020-10-12); pass --missing drop|ffill|interpolate"
    )


def test_fill_missing_leaves_complete_frames_and_unlisted_columns_alone():
    frame = pl.DataFrame(
        {"unique_id": ["a", "a"], "ds": [0, 1], "y": [1.0, 2.0], "volume": [None, 3.0]}
    )
    assert fill_missing(frame, "error", columns=["y"]).equals(frame, null_equal=True)
    assert fill_missing(frame, "drop").rows() == [("a", 1, 2.0, 3.0)]
    with pytest.raises(ValueError, match="method must be one of error, drop, ffill"):
        fill_missing(frame, "mean")
    with pytest.raises(ValueError, match=r"column\(s\) \['z'\] not in the frame"):
        fill_missing(frame, "drop", columns=["z"])


def test_fill_missing_takes_pandas():
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"unique_id": ["a"] * 3, "ds": [0, 1, 2], "y": [1.0, None, 3.0]})
    assert fill_missing(frame, "interpolate")["y"].to_list() == [1.0, 2.0, 3.0]


def test_validate_names_missing_values_with_their_dates():
    days = [dt.datetime(2024, 1, 1) + dt.timedelta(days=i) for i in range(6)]
    frame = pl.DataFrame(
        {"unique_id": "s", "ds": days, "y": [1.0, None, 2.0, NAN, NAN, 3.0], "x": [1.0] * 6}
    )
    with pytest.raises(ValueError) as info:
        validate(frame, exog=["x"])
    assert str(info.value) == (
        "series 's' has 3 missing values in y (first at 2024-01-02, 2024-01-04, 2024-01-05); "
        "pass --missing drop|ffill|interpolate (or nt.data.fill_missing(df, method=...))."
    )
    infinite = frame.with_columns(pl.Series("y", [1.0, 2.0, np.inf, 3.0, 4.0, 5.0]))
    with pytest.raises(ValueError, match=r"series 's' has 1 infinite value in y \(at 2024-01-03\)"):
        validate(infinite)


def hourly(*hours: int, y=None, uid: str = "OT") -> pl.DataFrame:
    start = dt.datetime(2016, 7, 1)
    return pl.DataFrame(
        {
            "unique_id": uid,
            "ds": [start + dt.timedelta(hours=h) for h in hours],
            "y": [float(h) for h in hours] if y is None else y,
        }
    )


def test_duplicate_timestamps_are_named():
    frame = pl.concat(
        [hourly(0, 1, 2, 3), hourly(0, 0, 1, 2, 2, 2, y=[0.0, 0, 1, 2, 2, 2], uid="b")]
    )
    with pytest.raises(ValueError) as info:
        validate(frame)
    assert str(info.value) == (
        "duplicate (unique_id, ds) rows: series 'b' at 2016-07-01 00:00:00 (2 rows), series 'b' "
        "at 2016-07-01 02:00:00 (3 rows); they are exact copies: drop exact duplicate rows with "
        "--duplicates drop (or nt.data.drop_duplicates(df))."
    )
    out = drop_duplicates(frame)
    assert out.rows() == frame.rows()[:4] + [frame.rows()[i] for i in (4, 6, 7)]
    validate(out)  # 'OT' shares every stamp with 'b' without being a duplicate


def test_conflicting_duplicates_are_refused_unless_a_row_is_chosen():
    frame = hourly(0, 1, 1, 2, y=[0.0, 1.0, 5.0, 2.0])
    with pytest.raises(ValueError, match=r"at 2016-07-01 01:00:00 \(2 rows, values differ\); "):
        validate(frame)
    with pytest.raises(ValueError) as info:
        drop_duplicates(frame)
    assert str(info.value) == (
        "conflicting duplicate (unique_id, ds) rows (same key, different values): series 'OT' "
        "at 2016-07-01 01:00:00 (2 rows, values differ); keep one of each with --duplicates "
        "first|last (or nt.data.drop_duplicates(df, keep='first'|'last')), or fix the data."
    )
    assert drop_duplicates(frame, keep="first")["y"].to_list() == [0.0, 1.0, 2.0]
    assert drop_duplicates(frame, keep="last")["y"].to_list() == [0.0, 5.0, 2.0]


def test_exact_duplicates_with_nan_values_are_still_exact():
    frame = pl.DataFrame({"unique_id": ["a"] * 3, "ds": [0, 0, 1], "y": [NAN, NAN, 1.0]})
    assert drop_duplicates(frame)["ds"].to_list() == [0, 1]


def weekdays(start: dt.datetime, days: int) -> list[dt.datetime]:
    return [d for d in (start + dt.timedelta(days=i) for i in range(days)) if d.weekday() < 5]


def test_business_day_series_have_no_weekend_gaps():
    stock = weekdays(dt.datetime(2024, 1, 1), 42)  # six weeks, Monday to Friday
    missing = {dt.datetime(2024, 1, 10), dt.datetime(2024, 1, 26)}  # a Wednesday, a Friday
    kept = [d for d in stock if d not in missing]
    frame = pl.DataFrame({"unique_id": "SPY", "ds": kept, "y": np.arange(len(kept), dtype=float)})
    gaps = find_gaps(frame)
    assert gaps["ds"].to_list() == sorted(missing)
    assert find_gaps(pl.DataFrame({"unique_id": "SPY", "ds": stock, "y": 0.0})).height == 0


def test_a_crypto_series_is_plainly_daily():
    days = [dt.datetime(2024, 1, 1) + dt.timedelta(days=i) for i in range(30)]
    kept = [d for d in days if d not in (dt.datetime(2024, 1, 6), dt.datetime(2024, 1, 7))]
    gaps = find_gaps(pl.DataFrame({"unique_id": "BTC", "ds": kept, "y": 0.0}))
    assert gaps["ds"].to_list() == [dt.datetime(2024, 1, 6), dt.datetime(2024, 1, 7)]  # a weekend


@pytest.mark.parametrize(
    ("stamps", "expected"),
    [
        ([0, 5, 20, 25, 30], [10, 15]),
        ([0, 5, 12, 15, 20], []),  # 5 -> 12 is not a whole number of steps: not a grid gap
        (
            [dt.datetime(2021, m, d) for m, d in ((1, 31), (2, 28), (5, 31), (6, 30))],
            [dt.datetime(2021, 3, 31), dt.datetime(2021, 4, 30)],  # month ends stay month ends
        ),
        (
            [dt.datetime(2020, 1, 1), dt.datetime(2020, 4, 1), dt.datetime(2020, 10, 1)]
            + [dt.datetime(2021, 1, 1)],
            [dt.datetime(2020, 7, 1)],  # quarterly
        ),
        (
            [dt.datetime(2024, 1, 1, h) for h in (0, 1, 2, 5, 6)],
            [dt.datetime(2024, 1, 1, 3), dt.datetime(2024, 1, 1, 4)],
        ),
    ],
    ids=["int", "off-grid", "month-end", "quarterly", "hourly"],
)
def test_gaps_follow_each_frequency(stamps, expected):
    gaps = find_gaps(pl.DataFrame({"unique_id": "s", "ds": stamps}))
    assert gaps["ds"].to_list() == expected
    assert set(gaps["unique_id"].to_list()) <= {"s"}


def gappy_pair() -> pl.DataFrame:
    """'z' (listed first) misses ds 2 and 3; 'a' misses ds 1 and has its own value range."""
    return pl.DataFrame(
        {
            "unique_id": ["z", "a", "z", "a", "a", "z", "z"],
            "ds": [0, 0, 1, 2, 3, 4, 5],
            "y": [1.0, 100.0, 2.0, 300.0, 400.0, 8.0, 9.0],
            "x": [10, 1, 20, 3, 4, 50, 60],
        }
    )


GAP_FILLS = {
    "null": ([None, None], [None, None], [None]),
    "ffill": ([2.0, 2.0], [20, 20], [100.0]),
    # z: 2 + (8 - 2) * (k / 3) at ds 2, 3; a: halfway between 100 and 300 at ds 1.
    "interpolate": ([4.0, 6.0], [30.0, 40.0], [200.0]),
}


@pytest.mark.parametrize("method", list(GAP_FILLS), ids=list(GAP_FILLS))
def test_fill_gaps_inserts_the_missing_stamps_per_series(method):
    frame = gappy_pair()
    assert find_gaps(frame).rows() == [("z", 2), ("z", 3), ("a", 1)]
    out = fill_gaps(frame, method)
    assert out["unique_id"].to_list() == ["z"] * 6 + ["a"] * 4  # order of first appearance
    assert out["ds"].to_list() == [0, 1, 2, 3, 4, 5, 0, 1, 2, 3]
    z_y, z_x, a_y = GAP_FILLS[method]
    assert out["y"].to_list() == [1.0, 2.0, *z_y, 8.0, 9.0, 100.0, *a_y, 300.0, 400.0]
    assert out["x"].to_list()[2:4] == z_x
    assert frame.equals(gappy_pair())


def test_filled_gaps_keep_datetimes_and_then_validate():
    kept = [d for d in weekdays(dt.datetime(2024, 1, 1), 14) if d.day != 3]
    frame = pl.DataFrame({"unique_id": "s", "ds": kept, "y": np.arange(len(kept), dtype=float)})
    out = validate(fill_gaps(frame, "interpolate"))
    assert out["ds"].to_list() == weekdays(dt.datetime(2024, 1, 1), 14)
    assert out["y"][2] == pytest.approx(1.5)


def test_the_repairs_are_in_the_public_namespace():
    for name in ("fill_missing", "drop_duplicates", "find_gaps", "fill_gaps", "coerce_numeric"):
        assert name in nt.data.__all__ and callable(getattr(nt.data, name))
