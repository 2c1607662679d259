"""Provenance (``record.trained_on``) and the leakage guard, in Python and on the CLI."""

import contextlib
import datetime as dt
import io
import json

import numpy as np
import polars as pl
import pytest
from conftest import sine_frame

import ntjax as nt
from ntjax import cli, provenance
from ntjax.crossval import drop_last
from ntjax.data.windows import pack

CONFIG = nt.NHITSConfig(
    horizon=4,
    input_size=16,
    mlp_units=16,
    n_blocks=(1,),
    pool_kernel_sizes=(1,),
    freq_downsample=(1,),
)
TRAINING = nt.TrainingConfig(
    max_steps=20, batch_size=16, val_size=8, val_check_steps=10, progress=False, devices=1
)


def spans(record) -> dict[tuple[str, str], tuple[int, int, int]]:
    frame = record.trained_on
    return {
        (row["unique_id"], row["role"]): (row["start"], row["end"], row["n_rows"])
        for row in frame.iter_rows(named=True)
    }


@pytest.fixture(scope="module")
def sines():
    return sine_frame(n_series=2, length=200)


@pytest.fixture(scope="module")
def fitted(sines):
    """Fitted on t < 150 of two series (ds 0..199)."""
    return nt.train(drop_last(sines, 50), CONFIG, TRAINING)


def test_trained_on_names_every_row_that_shaped_the_record(fitted):
    # 150 rows: the default calibration tail is min(10 * 4, (150 - 16 - 4 - 8) // 5) = 24 rows,
    # the validation tail the 8 before it, the gradient windows the rest.
    assert fitted.trained_on.columns == ["unique_id", "start", "end", "n_rows", "role"]
    assert fitted.trained_on.schema["start"] == pl.Int64  # the dtype of ds
    for uid in ("s0", "s1"):
        assert spans(fitted)[(uid, "train")] == (0, 117, 118)
        assert spans(fitted)[(uid, "validation")] == (118, 125, 8)
        assert spans(fitted)[(uid, "calibration")] == (126, 149, 24)
    assert fitted.intervals["method"] == "rolling"
    assert fitted.intervals["calibration_size"] == 24


def test_datetime_provenance_keeps_datetimes():
    start = dt.datetime(2024, 1, 1)
    frame = sine_frame(n_series=1, length=120).with_columns(
        ds=pl.lit(start) + pl.duration(hours=pl.col("ds"))
    )
    record = nt.train(frame, CONFIG, TRAINING)
    assert record.trained_on.schema["end"] == pl.Datetime("us")
    assert record.trained_on["end"].max() == start + dt.timedelta(hours=119)


def test_provenance_survives_the_store_and_status_shows_it(fitted, tmp_path):
    store = nt.Store(tmp_path)
    store.save(fitted)
    loaded = store.load(fitted.id)
    assert loaded.trained_on.equals(fitted.trained_on)
    status = store.status(fitted.id)
    assert status["trained_on"] == provenance.to_json(fitted.trained_on)
    assert nt.model_status(store)[0]["trained_on"]["end"] == fitted.trained_on["end"].to_list()
    assert provenance.from_json(status["trained_on"]).equals(fitted.trained_on)


def test_records_without_provenance_still_load_and_score(fitted, sines):
    old = fitted.replace(trained_on=None)
    assert nt.evaluate(old, sines, test_size=8)["in_sample"] is None


def test_every_record_making_path_keeps_provenance(fitted, sines):
    head = drop_last(sines, 50)
    newer = drop_last(sines, 20)
    tuned = nt.train(newer, CONFIG, TRAINING, init_from=fitted)  # a warm start: the union
    assert tuned.parent_id == fitted.id
    assert tuned.trained_on["end"].max() == 179
    assert provenance.union([fitted.trained_on]).height < tuned.trained_on.height
    assert set(fitted.trained_on.rows()) <= set(tuned.trained_on.rows())
    stacked = nt.train(head, CONFIG, TRAINING, ensemble_size=2)
    assert stacked.trained_on.equals(fitted.trained_on)
    population = nt.fit_population(
        head,
        [nt.Member(CONFIG, TRAINING, nt.OptimizerConfig(learning_rate=lr)) for lr in (1e-3, 3e-3)],
    )
    for member in population.records:
        assert member.trained_on.equals(fitted.trained_on)
    combined = nt.ensemble([fitted, population.records[0]])
    assert combined.trained_on.equals(fitted.trained_on)
    calibrated = nt.calibrate(fitted, drop_last(sines, 30), calibration_size=16)
    added = calibrated.trained_on.filter(pl.col("end") == 169)
    assert added["role"].to_list() == ["calibration", "calibration"]
    assert added["start"].to_list() == [154, 154]  # the first calibration target


def test_optimize_refit_keeps_provenance(sines):
    space = {
        "model": "nhits",
        "model.horizon": 4,
        "model.input_size": 16,
        "model.mlp_units": 16,
        "training.max_steps": 10,
        "training.batch_size": 16,
        "optimizer.learning_rate": {"choice": [1e-3, 3e-3]},
    }
    result = nt.optimize(drop_last(sines, 50), space, method="grid", n_trials=2)
    assert result.best.trained_on["end"].max() == 149


@pytest.mark.parametrize(
    "score",
    [
        pytest.param(lambda r, df, **kw: nt.evaluate(r, df, test_size=8, **kw), id="evaluate"),
        pytest.param(
            lambda r, df, **kw: nt.cross_validation(r, df, n_windows=2, **kw), id="cross_validation"
        ),
        pytest.param(
            lambda r, df, **kw: nt.calibrate(r, df, calibration_size=8, **kw), id="calibrate"
        ),
    ],
)
def test_scoring_the_training_rows_is_refused(fitted, sines, score):
    train = drop_last(sines, 50)
    with pytest.raises(ValueError, match=r"refused: model .* series 's0' up to 149.*at 142"):
        score(fitted, train)
    assert score(fitted, sines.filter(pl.col("ds") < 160)) is not None  # targets from 150 on


def test_allowed_in_sample_runs_are_flagged(fitted, sines):
    train = drop_last(sines, 50)
    assert nt.evaluate(fitted, train, test_size=8, allow_in_sample=True)["in_sample"] is True
    assert nt.evaluate(fitted, sines, test_size=8)["in_sample"] is False
    cv = nt.cross_validation(fitted, sines.filter(pl.col("ds") < 154), n_windows=2, step_size=2,
                             allow_in_sample=True)  # fmt: skip
    # Cutoffs at 146 and 148: targets up to 149 are in sample, 150 on are not.
    np.testing.assert_array_equal(cv["in_sample"].to_numpy(), cv["ds"].to_numpy() <= 149)
    calibrated = nt.calibrate(fitted, train, calibration_size=8, allow_in_sample=True)
    assert calibrated.extra["calibration"]["in_sample"] is True


def test_the_embargo_moves_the_boundary(fitted, sines):
    frame = sines.filter(pl.col("ds") < 158)  # test targets 150..157
    assert nt.evaluate(fitted, frame, test_size=8)["in_sample"] is False
    with pytest.raises(ValueError, match="plus an embargo of 1 steps"):
        nt.evaluate(fitted, frame, test_size=8, embargo=1)
    with pytest.raises(ValueError, match="embargo must be a non-negative integer"):
        nt.evaluate(fitted, frame, test_size=8, embargo=-1)
    bound = provenance.boundaries(fitted.trained_on, pack(frame), embargo=3)
    np.testing.assert_array_equal(bound, [152, 152])


def test_zero_shot_series_are_out_of_sample(fitted):
    other = sine_frame(n_series=2, length=60, seed=5).with_columns(
        unique_id=pl.col("unique_id") + "_new"
    )
    result = nt.evaluate(fitted, other, test_size=8)
    assert result["in_sample"] is False
    cv = nt.cross_validation(fitted, other, n_windows=2)
    assert not cv["in_sample"].any()


def test_walk_forward_fits_from_a_config_are_never_flagged(sines):
    cv = nt.cross_validation(CONFIG, sines, n_windows=2, training=TRAINING, refit=1)
    assert not cv["in_sample"].any()


def price_frame(n: int = 260) -> pl.DataFrame:
    """A BTC-like daily price path (every day of the week)."""
    rng = np.random.default_rng(0)
    start = dt.date(2020, 1, 1)
    prices = 100 * np.exp(np.cumsum(0.01 * rng.normal(size=n)))
    return pl.DataFrame({"Date": [start + dt.timedelta(days=i) for i in range(n)], "Close": prices})


def test_backtest_of_a_record_on_its_training_period_is_refused():
    prices = nt.from_wide(price_frame(), time_col="Date", value_cols="Close")
    config = nt.NHITSConfig(horizon=2, input_size=16, mlp_units=16)
    record = nt.train(drop_last(prices, 60), config, TRAINING)
    with pytest.raises(ValueError, match="backtest refused: .*'Close' up to 2020-07-18"):
        nt.backtest(record, prices, start="2020-03-01")
    flagged = nt.backtest(record, prices, start="2020-03-01", allow_in_sample=True)
    assert flagged.metrics["in_sample"] is True
    assert nt.backtest(record, prices, start="2020-07-19").metrics["in_sample"] is False
    walked = nt.backtest(config, prices, start="2020-07-19", refit_every=30, training=TRAINING)
    assert walked.metrics["in_sample"] is False


def run(*args) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main([str(a) for a in args])
    return code, out.getvalue(), err.getvalue()


def test_the_btc_leak_is_refused_on_the_cli(tmp_path, monkeypatch):
    monkeypatch.setenv("NTJAX_COMPILATION_CACHE", "0")
    data = tmp_path / "btc.csv"
    price_frame().write_csv(data)
    store = tmp_path / "store"
    common = ["--data", data, "--time-col", "Date", "--target", "Close", "--store", store]
    code, out, err = run(
        "train", *common, "--horizon", "2", "--input-size", "16", "--max-steps", "20",
        "--batch-size", "16", "--no-progress",
    )  # fmt: skip
    assert code == 0, err
    model_id = json.loads(out)["model_id"]
    assert max(json.loads(out)["trained_on"]["end"]) == "2020-09-16T00:00:00"
    code, out, err = run("backtest", "--model-id", model_id, *common, "--start", "2020-03-01")
    assert code == 1 and out == ""
    line = err.strip().splitlines()[-1]  # after the log of what was read: one error line
    assert line.startswith("ntjax: error: backtest refused") and "--allow-in-sample" in line
    code, out, err = run(
        "backtest", "--model-id", model_id, *common, "--start", "2020-03-01", "--allow-in-sample"
    )
    assert code == 0, err
    assert json.loads(out)["metrics"]["in_sample"] is True
    code, out, err = run("evaluate", "--model-id", model_id, *common, "--test-size", "10")
    assert code == 1 and "evaluate refused" in err and "'Close' up to 2020-09-16" in err
    code, out, err = run(
        "evaluate", "--model-id", model_id, *common, "--test-size", "10", "--allow-in-sample"
    )
    assert code == 0, err
    assert json.loads(out)["in_sample"] is True
    # The in-sample score is kept with its flag but never presented as the model's score.
    assert nt.Store(store).status(model_id)["evaluation"] == {}
    history = nt.Store(store).evaluations(model_id)
    assert [e["in_sample"] for e in history] == [True]
    assert history[0]["period_end"] == "2020-09-16T00:00:00"


def test_out_of_sample_evaluations_become_the_models_score(fitted, sines, tmp_path):
    store = nt.Store(tmp_path)
    store.save(fitted)
    store.record_evaluation(fitted.id, nt.evaluate(fitted, sines, test_size=8))
    store.record_evaluation(
        fitted.id, nt.evaluate(fitted, drop_last(sines, 50), test_size=8, allow_in_sample=True)
    )
    status = store.status(fitted.id)
    assert status["evaluation"]["period_start"] == 192  # the out-of-sample one
    assert [e["in_sample"] for e in store.evaluations(fitted.id)] == [False, True]
    assert store.query(metric="mae")[0]["evaluation"]["mae"] == pytest.approx(
        store.evaluations(fitted.id)[0]["metrics"]["mae"]
    )
