"""nt.retrain: the champion/challenger pipeline, its statistics, lock, idempotence and crash
safety (real `ntjax retrain` processes killed with SIGKILL)."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import polars as pl
import pytest

import ntjax as nt
from ntjax.config import ConfigError
from ntjax.lifecycle import RetrainPolicy
from ntjax.metrics.comparison import diebold_mariano, page_hinkley, student_t_sf
from ntjax.store import ModelNotFoundError, Store
from ntjax.store.locks import LockedError

CONFIG = nt.NHITSConfig(
    horizon=6,
    input_size=24,
    mlp_units=32,
    n_blocks=(1, 1),
    pool_kernel_sizes=(2, 1),
    freq_downsample=(2, 1),
)
TRAINING = nt.TrainingConfig(
    max_steps=200, batch_size=32, val_size=24, val_check_steps=50, progress=False, devices=1
)


def series(n: int, *, shift_at: int | None = None) -> pl.DataFrame:
    """A seasonal series; from ``shift_at`` on a second, faster season joins (a regime
    change the champion never saw)."""
    t = np.arange(n)
    y = 10 + np.sin(2 * np.pi * t / 12)
    if shift_at is not None:
        y[shift_at:] += 3 * np.sin(2 * np.pi * t[shift_at:] / 6)
    return pl.DataFrame({"unique_id": "a", "ds": t, "y": y})


@pytest.fixture(scope="module")
def champion():
    return nt.train(series(300), CONFIG, TRAINING)


@pytest.fixture
def store(tmp_path, champion):
    store = Store(tmp_path / "store")
    store.save(champion)
    store.set_alias("prod", champion.id)
    return store


# -- the statistics ---------------------------------------------------------------------------


def test_student_t_tail_matches_known_values():
    assert student_t_sf(2.0, 10) == pytest.approx(0.036694, abs=1e-5)
    assert student_t_sf(-1.0, 5) == pytest.approx(1 - 0.181609, abs=1e-5)
    assert student_t_sf(0.0, 7) == pytest.approx(0.5)


def test_diebold_mariano_with_the_hln_correction():
    rng = np.random.default_rng(0)
    a = np.abs(rng.normal(size=120))
    # hand computation for h = 1: mean / sqrt(var / n) times sqrt((n - 1) / n)
    b = a - 0.1 + 0.05 * rng.normal(size=120)
    d = a - b
    n = d.size
    expected = np.sqrt((n + 1 - 2) / n) * d.mean() / np.sqrt(d.var() / n)
    result = diebold_mariano(a, b, horizon=1)
    assert result.statistic == pytest.approx(expected)
    assert result.p_value < 1e-6 and result.mean_difference > 0
    assert diebold_mariano(b, a, horizon=3).p_value > 0.99
    same = diebold_mariano(a, a, horizon=3)
    assert same.statistic == 0.0 and same.p_value == 0.5
    with pytest.raises(ValueError, match="at least 3"):
        diebold_mariano(a[:2], b[:2])


def test_page_hinkley_flags_an_upward_shift_and_not_noise():
    rng = np.random.default_rng(1)
    calm = 1 + 0.1 * rng.normal(size=200)
    shifted = np.concatenate([calm[:120], calm[120:] + 1.0])
    assert not page_hinkley(calm, delta=0.05, threshold=5).alarm
    alarm = page_hinkley(shifted, delta=0.05, threshold=5)
    assert alarm.alarm and 120 <= alarm.at < 140


# -- the pipeline -----------------------------------------------------------------------------


def test_no_new_rows_does_nothing(store, champion):
    before = len(store)
    decision = nt.retrain(store, "prod", series(300), policy=RetrainPolicy(trigger="always"))
    assert not decision.promoted and not decision.recorded and decision.challenger_id is None
    assert "no rows are new" in decision.reason
    assert len(store) == before and store.decisions("prod") == []
    assert store.resolve("prod") == champion.id


def test_quiet_new_rows_are_recorded_once_and_rerun_is_a_no_op(store, champion):
    decision = nt.retrain(store, "prod", series(360))
    assert decision.recorded and not decision.promoted and decision.challenger_id is None
    assert decision.metrics["new_rows"] == 60 and decision.reason.startswith("no retraining")
    assert decision.metrics["decay_ratio"] < 1.2 and not decision.metrics["drift_alarm"]
    again = nt.retrain(store, "prod", series(360))
    assert not again.recorded and "nothing to do" in again.reason
    assert len(store.decisions("prod")) == 1 and len(store) == 1


def test_a_worse_challenger_is_not_promoted(store, champion):
    policy = RetrainPolicy(trigger="always", method="refit", max_steps=1)
    decision = nt.retrain(store, "prod", series(400), policy=policy)
    assert decision.recorded and not decision.promoted
    assert decision.challenger_id in store  # kept as evidence, not named by the alias
    assert decision.p_value >= 0.05
    m = decision.metrics
    assert m["challenger_holdout_loss"] > m["champion_holdout_loss"]
    assert store.resolve("prod") == champion.id
    assert "is not better" in decision.reason


def test_decay_promotes_a_better_challenger_and_rollback_undoes_it(store, champion, tmp_path):
    policy = RetrainPolicy(method="refit")
    decision = nt.retrain(store, "prod", series(560, shift_at=360), policy=policy)
    assert decision.metrics["decay_ratio"] > 1.2 and decision.metrics["drift_alarm"]
    assert decision.promoted and decision.p_value < 0.05
    assert store.resolve("prod") == decision.challenger_id
    challenger = store.load(decision.challenger_id)
    assert challenger.trained_on["end"].max() < 560 - decision.metrics["holdout_rows"]
    [kept] = store.decisions("prod")
    assert kept["promoted"] and kept["reason"] == decision.reason
    history = store.alias_history("prod")
    assert history[-1]["model_id"] == decision.challenger_id
    assert history[-1]["reason"] == decision.reason
    # ntjax status ALIAS shows the history with its reasons
    shown = _cli(tmp_path, "status", "prod", "--store", str(store.root))
    assert shown.returncode == 0, shown.stderr
    status = json.loads(shown.stdout)
    assert status["alias_history"][-1]["reason"] == decision.reason
    assert status["retrain_decisions"][-1]["p_value"] == pytest.approx(decision.p_value)
    # the new champion has seen nothing after the data that decision saw: no rerun
    assert not nt.retrain(store, "prod", series(560, shift_at=360), policy=policy).recorded
    rolled = _cli(tmp_path, "alias", "rollback", "prod", "--store", str(store.root))
    assert rolled.returncode == 0, rolled.stderr
    assert store.resolve("prod") == champion.id


def test_finetune_challenger_keeps_the_lineage(store, champion):
    policy = RetrainPolicy(trigger="always", max_steps=20)
    decision = nt.retrain(store, "prod", series(400), policy=policy)
    challenger = store.load(decision.challenger_id)
    assert challenger.parent_id == champion.id and "finetune" in challenger.extra
    assert decision.metrics["method"] == "finetune"


def test_the_lock_refuses_a_second_run(store, tmp_path):
    # a real second process holds the alias's lock
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from ntjax.store import Catalog; c = Catalog(sys.argv[1])\n"
            "with c.alias_lock('prod'):\n    print('held', flush=True); time.sleep(60)",
            str(store.root),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(LockedError, match=f"process {holder.pid} on .* since"):
            nt.retrain(store, "prod", series(400))
    finally:
        holder.kill()
        holder.communicate()
    # its death released the lock
    assert nt.retrain(store, "prod", series(360)).recorded


def test_bad_policies_and_unknown_aliases_get_one_sentence(store, tmp_path):
    with pytest.raises(ConfigError, match="policy trigger must be one of"):
        RetrainPolicy(trigger="sometimes")
    with pytest.raises(ConfigError, match="unknown policy fields \\['patience'\\]"):
        RetrainPolicy.from_dict({"patience": 3})
    with pytest.raises(ConfigError, match="significance must be in"):
        RetrainPolicy(significance=2)
    with pytest.raises(ConfigError, match="needs every="):
        RetrainPolicy(trigger="schedule")
    bad = tmp_path / "policy.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="is not JSON"):
        RetrainPolicy.from_json(bad)
    with pytest.raises(ModelNotFoundError, match="neither a model id"):
        nt.retrain(store, "staging", series(360))
    data = tmp_path / "data.csv"
    series(360).write_csv(data)
    for extra, message in (
        (["--policy", '{"trigger": "never"}'], "policy trigger must be one of"),
        (["--policy", str(bad)], "is not JSON"),
    ):
        result = _cli(tmp_path, "retrain", "--alias", "prod", "--data", str(data), *extra,
                      "--store", str(store.root))  # fmt: skip
        assert result.returncode == 1
        [line] = result.stderr.strip().splitlines()
        assert message in line
    missing = _cli(tmp_path, "retrain", "--alias", "staging", "--data", str(data),
                   "--store", str(store.root))  # fmt: skip
    assert missing.returncode == 1 and "neither a model id" in missing.stderr


def _cli(cwd, *args, timeout=300):
    return subprocess.run(
        [sys.executable, "-m", "ntjax.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
    )


@pytest.mark.slow
def test_sigkill_at_any_moment_leaves_the_alias_loadable(store, champion, tmp_path):
    """A real `ntjax retrain` killed with SIGKILL at moments spread over its run (imports,
    scoring, training, saving, promoting): the alias always names a complete model that
    loads and forecasts, and the next run is not blocked by the dead run's lock."""
    data = tmp_path / "data.csv"
    series(560, shift_at=360).write_csv(data)
    policy = '{"method": "refit"}'
    command = [sys.executable, "-m", "ntjax.cli", "retrain", "--alias", "prod", "--data",
               str(data), "--policy", policy, "--store", str(store.root)]  # fmt: skip
    started = time.perf_counter()
    full = subprocess.run(command, capture_output=True, text=True, timeout=300)
    duration = time.perf_counter() - started
    assert full.returncode == 0, full.stderr
    assert json.loads(full.stdout)["promoted"]
    store.rollback("prod")  # start again from the champion, so every run below promotes
    rng = np.random.default_rng(7)
    moments = sorted(rng.uniform(0.05, 1.0, size=5) * duration)
    for moment in moments:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        time.sleep(moment)
        process.send_signal(signal.SIGKILL)
        process.communicate()
        named = store.resolve("prod")
        record = store.load(named, verify=True)
        assert nt.forecast(record, series(560, shift_at=360)).height == CONFIG.horizon
        if named != champion.id:  # the kill came after the promotion's commit
            store.rollback("prod")
    # nothing is left locked or half-done: a last run completes
    final = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert final.returncode == 0, final.stderr
    assert store.load(store.resolve("prod"), verify=True).status == "trained"
