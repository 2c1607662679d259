import itertools
import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import optuna
import polars as pl
import pytest
from conftest import TINY_SPACE, sine_frame

import ntjax as nt
from ntjax.crossval import cross_validation, drop_last
from ntjax.optimize import (
    configs_from_params,
    grid_size,
    optimize,
    optimize_workers,
    parse_space,
)

HORIZON = 6
BASE = TINY_SPACE
LR_X_SEED = {
    **BASE,
    "optimizer.learning_rate": {"choice": [1e-3, 1e-2]},
    "training.seed": {"choice": [0, 1]},
}


@pytest.fixture(scope="module")
def frame():
    return sine_frame(n_series=2, length=120, noise=0.1)


@pytest.fixture(autouse=True)
def _quiet_optuna():
    optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.fixture(scope="module")
def grid_result(frame):
    return optimize(frame, LR_X_SEED, method="grid")


def _points(trials: pl.DataFrame) -> list[tuple]:
    params = trials["params"].to_list()
    return sorted((p["optimizer.learning_rate"], p["training.seed"]) for p in params)


def test_space_maps_onto_the_three_configs():
    params = {
        "model": "nhits",
        "model.horizon": 12,
        "model.input_size": 48,
        "model.n_blocks": [2, 1],
        "model.pool_kernel_sizes": [2, 1],
        "model.freq_downsample": [2, 1],
        "training.max_steps": 7,
        "optimizer.learning_rate": 0.5,
        "optimizer.name": "adamw",
    }
    config, training, optimizer = configs_from_params(params)
    assert config == nt.NHITSConfig(
        horizon=12, input_size=48, n_blocks=(2, 1), pool_kernel_sizes=(2, 1), freq_downsample=(2, 1)
    )
    assert training == nt.TrainingConfig(max_steps=7, val_size=12, progress=False)
    assert optimizer == nt.OptimizerConfig(learning_rate=0.5, name="adamw")
    base = nt.TrainingConfig(batch_size=8)
    _, training, _ = configs_from_params({"model": "nhits", **params}, training=base)
    assert training == nt.TrainingConfig(batch_size=8, max_steps=7)


@pytest.mark.parametrize(
    ("space", "message"),
    [
        ({"model.horizon": 1}, "needs a 'model'"),
        ({"model": "prophet"}, "unknown model"),
        ({"model": "nhits", "model.depth": 3}, "has no field 'depth'"),
        ({"model": "nhits", "trainer.max_steps": 3}, "unknown key"),
        ({"model": "nhits", "training.checkpoint_dir": "x"}, "cannot be set"),
        ({"model": "nhits", "optimizer.learning_rate": {"low": 1, "high": 0}}, "below high"),
        ({"model": "nhits", "optimizer.learning_rate": {"lo": 1}}, "expected a fixed value"),
        ({"model": "nhits", "model.dropout": {"low": 0.0, "high": 0.5, "log": True}}, "log"),
        ({"model": "nhits", "model.input_size": {"choice": []}}, "non-empty"),
    ],
    ids=["no-model", "unknown-model", "unknown-field", "bad-section", "reserved", "low-high",
         "bad-dict", "log-zero", "empty-choice"],
)  # fmt: skip
def test_bad_spaces_are_refused(space, message):
    with pytest.raises(ValueError, match=message):
        parse_space(space)


def test_grid_values_of_each_dimension():
    dims = parse_space(
        {
            "model": "nhits",
            "model.input_size": {"low": 24, "high": 48, "step": 12},
            "model.dropout": {"low": 0.0, "high": 0.3, "step": 0.1},
            "model.n_blocks": {"choice": [[1, 1], [2, 2]]},
            "optimizer.learning_rate": {"low": 1e-4, "high": 1e-2, "log": True},
        }
    )
    assert dims["model.input_size"].grid() == [24, 36, 48]
    assert dims["model.dropout"].grid() == [0.0, 0.1, 0.2, 0.3]
    assert [dims["model.n_blocks"].decode(v) for v in dims["model.n_blocks"].grid()] == [
        [1, 1],
        [2, 2],
    ]
    with pytest.raises(ValueError, match="stepped range"):
        dims["optimizer.learning_rate"].grid()
    assert grid_size({**LR_X_SEED, "model.input_size": {"choice": [12, 24, 36]}}) == 12


def test_grid_runs_exactly_its_grid(grid_result):
    trials = grid_result.trials
    assert trials.height == 4
    assert trials["state"].to_list() == ["COMPLETE"] * 4
    assert _points(trials) == sorted(itertools.product([1e-3, 1e-2], [0, 1]))
    assert set(trials.columns) >= {"number", "state", "value", "params"}


def test_best_score_is_the_best_trials_value(grid_result):
    trials = grid_result.trials
    best_row = trials.sort("value").row(0, named=True)
    assert grid_result.best_score == best_row["value"] == trials["value"].min()
    assert grid_result.best_params == best_row["params"]
    assert set(grid_result.best_params) == set(LR_X_SEED)
    best = grid_result.best
    assert best.status == "trained"
    assert best.optimizer.learning_rate == grid_result.best_params["optimizer.learning_rate"]
    assert best.training.seed == grid_result.best_params["training.seed"]
    summary = grid_result.to_dict()
    assert summary["best_model_id"] == best.id and summary["n_trials"] == 4


@pytest.mark.parametrize("method", ["random", "bayesian"])
def test_sampling_methods_run_n_trials(frame, method):
    space = {**BASE, "optimizer.learning_rate": {"low": 1e-4, "high": 1e-1, "log": True}}
    result = optimize(frame, space, method=method, n_trials=2, refit=False, seed=3)
    assert result.trials.height == 2
    assert result.best is None
    assert result.best_score == min(result.trials["value"].to_list())
    lrs = [p["optimizer.learning_rate"] for p in result.trials["params"].to_list()]
    assert all(1e-4 <= lr <= 1e-1 for lr in lrs) and lrs[0] != lrs[1]


def test_objective_is_the_metric_of_the_held_out_tail(frame):
    result = optimize(frame, BASE, method="random", n_trials=1, refit=False, metric="mse")
    # Independently: train without the last horizon, forecast it, compare with the truth.
    train_part = drop_last(frame, HORIZON)
    record = nt.train(train_part, *configs_from_params(result.best_params))
    forecast = nt.forecast(record, train_part)
    truth = frame.join(forecast, on=["unique_id", "ds"])
    expected = np.mean((truth["y"].to_numpy() - truth["y_hat"].to_numpy()) ** 2)
    assert result.best_score == pytest.approx(expected, rel=1e-5)


def test_cross_validation_objective(frame):
    result = optimize(frame, BASE, method="random", n_trials=1, refit=False, cv_windows=3)
    config, training, optimizer = configs_from_params(result.best_params)
    cv = cross_validation(config, frame, n_windows=3, training=training, optimizer=optimizer)
    expected = np.mean(np.abs(cv["y"].to_numpy() - cv["y_hat"].to_numpy()))
    assert result.best_score == pytest.approx(expected, rel=1e-5)


def test_a_pruner_prunes_a_bad_trial(frame, tmp_path):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(storage=storage, study_name="prune", direction="minimize")
    # A good learning rate first, then one too small to learn anything.
    study.enqueue_trial({"optimizer.learning_rate": 1e-2})
    study.enqueue_trial({"optimizer.learning_rate": 1e-7})
    space = {**BASE, "optimizer.learning_rate": {"choice": [1e-2, 1e-7]}}
    result = optimize(
        frame,
        space,
        method="random",
        n_trials=2,
        storage=storage,
        study_name="prune",
        pruner=optuna.pruners.MedianPruner(n_startup_trials=1),
        refit=False,
    )
    assert result.trials["state"].to_list() == ["COMPLETE", "PRUNED"]
    assert result.best_params["optimizer.learning_rate"] == 1e-2


def test_failed_trials_are_recorded_and_the_study_goes_on(frame):
    space = {
        **BASE,
        "optimizer.name": "sgd",
        "optimizer.grad_clip": None,
        # 10.0 makes the loss non-finite; n_mlp_layers 0 is an invalid config.
        "optimizer.learning_rate": {"choice": [1e-2, 10.0]},
        "model.n_mlp_layers": {"choice": [1, 0]},
    }
    result = optimize(frame, space, method="grid", refit=False)
    trials = result.trials
    assert trials.height == 4
    by_point = {
        (p["optimizer.learning_rate"], p["model.n_mlp_layers"]): (state, error)
        for p, state, error in trials.select("params", "state", "error").iter_rows()
    }
    assert by_point[(1e-2, 1)] == ("COMPLETE", None)
    state, error = by_point[(10.0, 1)]
    assert state == "FAIL" and error.startswith("FloatingPointError")
    for lr in (1e-2, 10.0):
        state, error = by_point[(lr, 0)]
        assert state == "FAIL" and error.startswith("ConfigError") and "n_mlp_layers" in error
    assert result.best_params["optimizer.learning_rate"] == 1e-2


def test_population_mode_matches_sequential_trials(frame, grid_result, caplog):
    with caplog.at_level(logging.INFO, logger="ntjax.optimize"):
        result = optimize(frame, LR_X_SEED, method="grid", population=4, refit=False)
    assert "population mode" in caplog.text
    assert result.trials.height == 4 and _points(result.trials) == _points(grid_result.trials)

    def values(trials):
        rows = trials.select("params", "value").iter_rows()
        return {(p["optimizer.learning_rate"], p["training.seed"]): v for p, v in rows}

    got, want = values(result.trials), values(grid_result.trials)
    assert got.keys() == want.keys()
    for point, value in got.items():
        assert value == pytest.approx(want[point], rel=1e-4)


def test_population_rounds_share_the_keys_that_change_the_shapes(frame, caplog):
    """A space that varies a width: each round of trials takes the first trial's width and
    samples its own learning rate and seed, and trains as one population."""
    space = {
        **BASE,
        "model.mlp_units": {"choice": [8, 16]},
        "optimizer.learning_rate": {"low": 1e-3, "high": 1e-2, "log": True},
        "training.seed": {"low": 0, "high": 100},
    }
    with caplog.at_level(logging.INFO, logger="ntjax.optimize"):
        result = optimize(
            frame, space, method="random", n_trials=4, population=2, seed=3, refit=False
        )
    assert "sharing their values of ['model.mlp_units']" in caplog.text
    trials = result.trials.sort("number")
    assert trials["state"].to_list() == ["COMPLETE"] * 4
    params = trials["params"].to_list()
    for first, second in (params[:2], params[2:]):
        assert first["model.mlp_units"] == second["model.mlp_units"]
        assert first["optimizer.learning_rate"] != second["optimizer.learning_rate"]
    # Trained as one population: a member equals the same trial trained alone.
    alone = optimize(
        frame,
        {**space, **{k: params[1][k] for k in space if k in params[1]}},
        method="random",
        n_trials=1,
        refit=False,
    )
    assert alone.trials["value"][0] == pytest.approx(trials["value"][1], rel=1e-4)


def test_population_on_a_grid_that_changes_shapes_runs_one_by_one(frame, caplog):
    space = {**BASE, "model.mlp_units": {"choice": [8, 16]}}
    with caplog.at_level(logging.INFO, logger="ntjax.optimize"):
        result = optimize(frame, space, method="grid", population=4, refit=False)
    assert "run one by one" in caplog.text and "model.mlp_units" in caplog.text
    assert result.trials.height == 2


@pytest.mark.slow
def test_population_round_runs_one_by_one_when_the_family_refuses(frame, caplog):
    space = {
        "model": "lstm_attention",
        "model.horizon": HORIZON,
        "model.input_size": 24,
        "model.hidden_size": 8,
        "model.n_heads": 2,
        "model.context_size": 4,
        "model.decoder_hidden_size": 8,
        "model.dropout": {"choice": [0.0, 0.3]},
        "training.max_steps": 10,
        "training.batch_size": 16,
        "training.devices": 1,
    }
    with caplog.at_level(logging.INFO, logger="ntjax.optimize"):
        result = optimize(frame, space, method="grid", population=2, refit=False)
    assert "outside nn.Dropout" in caplog.text and "run one by one" in caplog.text
    assert result.trials["state"].to_list() == ["COMPLETE", "COMPLETE"]


def test_two_worker_processes_share_one_study(frame, tmp_path):
    storage = f"sqlite:///{tmp_path / 'shared.db'}"
    space = {**BASE, "optimizer.learning_rate": {"low": 1e-4, "high": 1e-1, "log": True}}
    result = optimize_workers(
        frame,
        space,
        workers=2,
        n_trials=3,
        storage=storage,
        study_name="shared",
        method="random",
        refit=False,
    )
    assert result.trials.height == 3
    assert result.trials["state"].to_list() == ["COMPLETE"] * 3
    study = optuna.load_study(study_name="shared", storage=storage)
    assert len(study.trials) == 3
    assert len({t.user_attrs["pid"] for t in study.trials}) == 2
    assert result.best_score == pytest.approx(study.best_value)


@pytest.mark.slow
def test_tuning_bench_smoke():
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run(
        [sys.executable, str(root / "experiments" / "tuning_bench.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=root,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    population = report["population_vs_sequential"]
    assert population["n_trials"] == 4 and population["population_s"] > 0
    assert population["trials_within_1e-3_relative"] == 4
    cv = report["crossval_vs_forecasts"]
    assert cv["n_windows"] == 5 and cv["max_abs_gap"] < 1e-4
