"""``ntjax optimize``'s handler: JSON-ready output, the refit best model handed to the store,
the study kept in the store's SQLite file (moved here from tests/test_optimize.py with the
handler, which left ``ntjax.optimize`` for ``ntjax.cli``)."""

import argparse
import json

import optuna
import pytest
from conftest import TINY_SPACE, sine_frame

from ntjax.cli.optimize import optimize_command

HORIZON = 6
BASE = TINY_SPACE


@pytest.fixture(scope="module")
def frame():
    return sine_frame(n_series=2, length=120, noise=0.1)


@pytest.fixture(autouse=True)
def _quiet_optuna():
    optuna.logging.set_verbosity(optuna.logging.WARNING)


def test_optimize_command_returns_json_and_keeps_the_study(frame, tmp_path):
    space = tmp_path / "space.json"
    space.write_text(json.dumps({**BASE, "optimizer.learning_rate": {"choice": [1e-3, 1e-2]}}))
    saved = []
    args = argparse.Namespace(
        model="nhits", method="grid", n_trials=5, space=str(space), workers=1, storage=None,
        study_name="cli", metric="mae", seed=0, pruner="median", valid_size=None,
        cv_windows=None, population=None, horizon=24, max_steps=300,
    )  # fmt: skip
    out = optimize_command(args, frame, store_root=tmp_path / "store", save=saved.append)
    assert json.loads(json.dumps(out)) == out
    assert out["n_trials"] == 2 and out["states"] == {"COMPLETE": 2}
    assert out["best_model_id"] == saved[0].id
    assert out["storage"] == f"sqlite:///{(tmp_path / 'store').resolve() / 'optuna.sqlite3'}"
    study = optuna.load_study(study_name="cli", storage=out["storage"])
    assert len(study.trials) == 2
