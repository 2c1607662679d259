"""nt.auto_space (a search space per family) and the time budget of nt.optimize."""

import dataclasses
import json
import os
import subprocess
import sys
import time

import numpy as np
import polars as pl
import pytest
from conftest import sine_frame

import ntjax as nt
from ntjax.optimize import configs_from_params, parse_space
from ntjax.optimize.auto import auto_first_trials, auto_space, auto_start
from ntjax.predict.ensembles import same_scaler
from ntjax.train import fit

FAMILIES = ("nhits", "nbeats", "lstm_attention", "gru", "tcn", "deepar", "transformer")


@pytest.mark.parametrize("budget", ["default", "quick"])
@pytest.mark.parametrize("family", FAMILIES)
def test_auto_space_parses_for_every_family(family, budget):
    space = auto_space(family, 96, budget=budget)
    dimensions = parse_space(space)
    assert space["model"] == family and dimensions["model.horizon"].value == 96
    inputs = dimensions["model.input_size"].choices
    assert min(inputs) >= 96 and all(size % 1 == 0 for size in inputs)
    assert dimensions["optimizer.learning_rate"].log


def test_nhits_space_follows_autonhits_and_drops_downsampling_coarser_than_the_horizon():
    space = auto_space("nhits", 24)
    assert space["model.input_size"] == {"choice": [24, 48, 72, 96, 120]}
    assert space["optimizer.learning_rate"] == {"low": 1e-4, "high": 1e-1, "log": True}
    assert space["training.max_steps"] == {"choice": [0, *range(500, 1600, 100)]}  # 0: the start
    assert space["training.scaler"] == {"choice": ["identity", "robust", "standard"]}
    assert all(max(d) <= 24 for d in space["model.freq_downsample"]["choice"])
    assert [168, 24, 1] in auto_space("nhits", 168)["model.freq_downsample"]["choice"]


@pytest.mark.parametrize("family", FAMILIES)
def test_one_tiny_trial_of_every_auto_space_runs(family):
    """A point sampled from the real space, trained for a few steps: every key reaches a valid
    config of its family."""
    space = auto_space(family, 4, budget="quick")
    space |= {"training.max_steps": 3, "training.batch_size": 8}
    result = nt.optimize(
        sine_frame(n_series=1, length=120), space, method="random", n_trials=1, refit=False
    )
    assert result.trials["state"].to_list() == ["COMPLETE"], result.trials["error"].to_list()


def test_bad_auto_requests_get_one_sentence():
    with pytest.raises(ValueError, match="no space for 'ensemble'"):
        auto_space("ensemble", 24)
    with pytest.raises(ValueError, match="budget must be one of"):
        auto_space("nhits", 24, budget="huge")
    with pytest.raises(ValueError, match="horizon must be a positive integer"):
        auto_space("nhits", 0)
    with pytest.raises(ValueError, match="timeout must be a positive number"):
        nt.optimize(sine_frame(), auto_space("nhits", 4), timeout=0)


@pytest.mark.parametrize("budget", ["default", "quick"])
@pytest.mark.parametrize("family", FAMILIES)
def test_auto_start_is_a_point_of_every_auto_space(family, budget):
    dimensions = parse_space(auto_space(family, 96, budget=budget))
    start = auto_start(family, 96, budget=budget)
    assert set(start) == {name for name, d in dimensions.items() if d.varies}
    for name, value in start.items():
        assert dimensions[name].match(value) == value


@pytest.mark.parametrize("budget", ["default", "quick"])
@pytest.mark.parametrize("family", FAMILIES)
def test_auto_first_trials_are_the_defaults_then_for_nhits_the_last_value(family, budget):
    dimensions = parse_space(auto_space(family, 96, budget=budget))
    firsts = auto_first_trials(family, 96, budget=budget)
    assert firsts[0] == auto_start(family, 96, budget=budget)
    if family == "nhits":
        floor = firsts[1]
        assert floor == firsts[0] | {"training.max_steps": 0, "model.window_norm": True}
    else:
        assert len(firsts) == 1
    for point in firsts:
        for name, value in point.items():
            assert dimensions[name].match(value) == value


def _random_walks(n_series=4, length=400, seed=3):
    """Random walks: nothing beats the last value but by chance."""
    rng = np.random.default_rng(seed)
    return pl.concat(
        pl.DataFrame(
            {
                "unique_id": f"w{i}",
                "ds": np.arange(length),
                "y": 10.0 * (i + 1) + np.cumsum(rng.normal(size=length)),
            }
        )  # fmt: skip
        for i in range(n_series)
    )


def _auto_search(df, n_trials, **options):
    """The quick NHITS Auto search at h4 with its first trials (the defaults at 50 steps)."""
    space = auto_space("nhits", 4, budget="quick") | {"training.batch_size": 16}
    space["model.input_size"] = {"choice": [8, 12]}
    firsts = [p | {"model.input_size": 12} for p in auto_first_trials("nhits", 4, budget="quick")]
    firsts = [{k: v for k, v in p.items() if isinstance(space[k], dict)} for p in firsts]
    firsts[0]["training.max_steps"] = 50
    return nt.optimize(
        df, space, method="random", n_trials=n_trials, metric="mse", valid_size=40,
        first_trials=firsts, **options,
    )  # fmt: skip


def test_auto_search_returns_the_last_value_when_nothing_trained_beats_it(caplog):
    df = _random_walks()
    with caplog.at_level("INFO", logger="ntjax.optimize"):
        result = _auto_search(df, 4, ensemble=3)
    assert result.members == (1,) and result.best.kind == "nhits"  # no ensemble of the floor
    naive = nt.evaluate_seasonal_naive(df, horizon=4, test_size=40)
    assert result.baseline_score == pytest.approx(naive["mse"])
    assert result.best_params["training.max_steps"] == 0
    assert result.best_score == pytest.approx(naive["mse"], rel=1e-5)
    assert result.beats_baseline is False and 0 < result.baseline_p_value <= 1
    assert "which forecasts the last value" in caplog.text
    forecast = nt.forecast(result.best, df)
    last = df.group_by("unique_id").agg(pl.col("y").last())
    joined = forecast.join(last, on="unique_id")
    np.testing.assert_allclose(joined["y_hat"], joined["y"], rtol=1e-5)


def test_a_trained_point_that_beats_the_last_value_significantly_is_kept():
    result = _auto_search(sine_frame(n_series=2, length=200, noise=0.1), 2, refit=False)
    assert result.best_params["training.max_steps"] == 50
    assert result.beats_baseline is True and result.baseline_p_value < 0.05
    assert result.best_score < result.baseline_score / 2


def test_optimize_reports_the_last_values_score_on_the_same_tail():
    df = sine_frame(n_series=2, length=160)
    result = nt.optimize(df, _timed_space(20), method="random", n_trials=1, metric="mae",
                         valid_size=12, refit=False)  # fmt: skip
    naive = nt.evaluate_seasonal_naive(df, horizon=4, test_size=12, step_size=4)
    assert result.baseline_score == pytest.approx(naive["mae"])
    assert result.baseline_p_value is not None  # 3 windows: the fewest the test takes
    summary = result.to_dict()
    assert summary["baseline_score"] == result.baseline_score
    assert summary["beats_baseline"] == result.beats_baseline
    with pytest.raises(ValueError, match="baseline_significance must be None or a number"):
        nt.optimize(df, _timed_space(20), baseline_significance=1.5)


@pytest.mark.parametrize("quantiles", [None, [0.5]], ids=["intervals", "median"])
def test_an_ensemble_averages_the_best_trained_trials_that_share_the_best_ones_scaler(quantiles):
    df = sine_frame(n_series=2, length=160, noise=0.1)
    space = _timed_space(30) | {
        "training.scaler": {"choice": ["identity", "standard"]},
        "model.input_size": {"choice": [8, 16]},  # refits that hold out different rows
    }
    if quantiles is not None:  # no interval: nothing calibrated, the tail still held out
        space["model.quantiles"] = quantiles
    result = nt.optimize(df, space, method="random", n_trials=6, metric="mae", valid_size=12,
                         ensemble=3)  # fmt: skip
    done = result.trials.filter(pl.col("state") == "COMPLETE").sort("value")
    best_scaler = result.best_params["training.scaler"]
    same = [r["number"] for r in done.iter_rows(named=True) if r["params"]["training.scaler"]
            == best_scaler]  # fmt: skip
    assert result.members == tuple(same[:3]) and result.members[0] == done["number"][0]
    assert result.best.kind == "ensemble" and result.best.extra["trials"] == list(same[:3])
    # Its forecast is the mean of the members refit one by one, each with the first one's
    # validation and calibration rows (so that all fit the scaler on the same rows).
    parsed = parse_space(space)
    members = []
    for number in result.members:
        row = done.filter(pl.col("number") == number).row(0, named=True)
        config, training, optimizer = configs_from_params(
            {k: parsed[k].decode(row["params"][k]) for k in parsed}
        )
        if members:
            tail = members[0].trained_on.filter(pl.col("role") == "calibration")["n_rows"]
            training = dataclasses.replace(
                training, val_size=members[0].training.val_size, calibration_size=tail.max()
            )
        members.append(fit(df, config, training, optimizer))
    assert all(same_scaler(m, members[0]) for m in members)
    raw = [m.replace(extra={}) for m in members]  # the raw heads, without calibration
    mean = np.mean([nt.forecast(m, df)["y_hat"].to_numpy() for m in raw], axis=0)
    combined = result.best.replace(extra={})
    np.testing.assert_allclose(nt.forecast(combined, df)["y_hat"], mean, rtol=1e-5)
    # ... calibrated on the tail every member held out.
    if quantiles is None:
        calibration = result.best.extra["calibration"]
        assert calibration["source"] == "calibration_tail" and calibration["n_scores"] > 0
    with pytest.raises(ValueError, match="ensemble must be a positive number of trials"):
        nt.optimize(df, space, ensemble=0)


def test_auto_start_is_the_library_defaults_where_the_space_has_them():
    assert auto_start("nhits", 96) == {
        "model.input_size": 480,
        "optimizer.learning_rate": 1e-3,
        "training.max_steps": 1000,
        "training.seed": 1,  # the space's seeds start at 1
        "model.pool_kernel_sizes": [2, 2, 1],
        "model.freq_downsample": [1, 1, 1],  # nearest the default (4, 2, 1) on a log scale
        "model.window_norm": True,
        "training.scaler": "standard",
        "training.batch_size": 256,
    }
    quick = auto_start("nhits", 96, budget="quick")
    assert quick["training.max_steps"] == 150 and quick["training.batch_size"] == 128
    assert auto_start("deepar", 24)["training.scaler"] == "robust"  # no standard in its space


def _timed_space(max_steps):
    return {
        "model": "nhits",
        "model.horizon": 4,
        "model.input_size": 16,
        "model.mlp_units": 16,
        "optimizer.learning_rate": {"low": 1e-4, "high": 1e-2, "log": True},
        "training.max_steps": max_steps,
        "training.batch_size": 8,
        "training.val_check_steps": 10,
    }


def test_a_search_with_a_timeout_stops_in_time():
    df = sine_frame(n_series=1, length=120)
    nt.optimize(df, _timed_space(20), method="random", n_trials=1, refit=False)  # compiled
    started = time.perf_counter()
    result = nt.optimize(
        df, _timed_space(20), method="random", n_trials=10_000, timeout=4.0, refit=False
    )
    elapsed = time.perf_counter() - started
    assert elapsed < 4.0 + 10.0  # the budget, plus setup and at most one short trial
    states = result.trials["state"].to_list()
    assert 1 <= states.count("COMPLETE") < 10_000


def test_a_trial_running_at_the_deadline_is_stopped():
    started = time.perf_counter()
    with pytest.raises(ValueError, match="completed within the time budget"):
        nt.optimize(
            sine_frame(n_series=1, length=120), _timed_space(1_000_000), method="random",
            n_trials=5, timeout=2.0, refit=False, pruner="none",
        )  # fmt: skip
    assert time.perf_counter() - started < 2.0 + 20.0  # one validation period past the budget


def test_cli_optimize_auto_runs_the_family_space(tmp_path):
    data = tmp_path / "data.csv"
    sine_frame(n_series=1, length=120).write_csv(data)
    argv = ["optimize", "--data", str(data), "--model", "nhits", "--horizon", "4", "--auto",
            "quick", "--n-trials", "1", "--method", "random", "--timeout", "120",
            "--store", str(tmp_path / "store")]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}  # one CPU device
    run = subprocess.run(
        [sys.executable, "-m", "ntjax.cli", *argv], capture_output=True, text=True, env=env
    )
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads(run.stdout)
    assert set(result["best_params"]) >= {"model.input_size", "model.freq_downsample"}
    start = auto_start("nhits", 4, budget="quick")  # the one trial is the defaults' point
    assert {k: result["best_params"][k] for k in start} == start
    assert result["baseline_score"] > 0 and isinstance(result["beats_baseline"], bool)
    assert result["members"] == [result["trials"][0]["number"]]  # one trial: nothing to average
    both = subprocess.run(
        [sys.executable, "-m", "ntjax.cli", *argv, "--space", str(data)],
        capture_output=True, text=True, env=env,
    )  # fmt: skip
    assert both.returncode == 1 and "--auto and --space" in both.stderr


def test_first_trials_run_first_and_a_continued_study_keeps_them_once(tmp_path):
    df = sine_frame(n_series=1, length=120)
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    first = {"optimizer.learning_rate": 0.005}
    options = {"method": "random", "refit": False, "storage": storage, "study_name": "s"}
    result = nt.optimize(df, _timed_space(5), n_trials=2, first_trials=[first], **options)
    rates = [p["optimizer.learning_rate"] for p in result.trials["params"].to_list()]
    assert rates[0] == 0.005 and rates[1] != 0.005
    again = nt.optimize(df, _timed_space(5), n_trials=1, first_trials=[first], **options)
    rates = [p["optimizer.learning_rate"] for p in again.trials["params"].to_list()]
    assert len(rates) == 3 and rates.count(0.005) == 1


def test_first_trials_outside_the_space_get_one_sentence():
    df, space = sine_frame(), _timed_space(5)
    with pytest.raises(ValueError, match="'model.n_blocks', which is not a key of the search"):
        nt.optimize(df, space, first_trials=[{"model.n_blocks": [1, 1, 1]}])
    with pytest.raises(ValueError, match=r"'optimizer.learning_rate' = 0.5 is not in the search"):
        nt.optimize(df, space, first_trials=[{"optimizer.learning_rate": 0.5}])
    with pytest.raises(ValueError, match="'model.input_size' = 32 is not in the search space"):
        nt.optimize(df, space, first_trials=[{"model.input_size": 32}])
    with pytest.raises(ValueError, match="must be a list of points"):
        nt.optimize(df, space, first_trials={"optimizer.learning_rate": 1e-3})
    grid = space | {"optimizer.learning_rate": {"choice": [1e-3, 1e-2]}}
    with pytest.raises(ValueError, match="no use in a grid search"):
        nt.optimize(df, grid, method="grid", first_trials=[{"optimizer.learning_rate": 1e-3}])
