"""Studies in real RDB storages worked by real processes: SQLite files and a PostgreSQL server.

The PostgreSQL tests use the server named by ``NTJAX_TEST_POSTGRES_URL`` (``.ci/run`` starts
one), else a throwaway server this module starts when the PostgreSQL binaries exist
(``tests/pgserver.py``); without either they skip with the reason. Each test gets a fresh
database, so "a fresh storage" means no tables at all.
"""

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import optuna
import pgserver
import pytest
import sqlalchemy
from conftest import TINY_SPACE, sine_frame

from ntjax.optimize import close_study, open_study, optimize, optimize_workers

HORIZON = 6
BASE = TINY_SPACE
GRID = {
    **BASE,
    "optimizer.learning_rate": {"choice": [1e-3, 1e-2]},
    "training.seed": {"choice": [0, 1]},
}
RANDOM = {**BASE, "optimizer.learning_rate": {"low": 1e-4, "high": 1e-1, "log": True}}
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def frame():
    return sine_frame(n_series=2, length=120, noise=0.1)


@pytest.fixture(autouse=True)
def _quiet_optuna():
    optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.fixture(scope="session")
def postgres_server():
    """The URL of a PostgreSQL server's maintenance database (see the module docstring)."""
    url = os.environ.get(pgserver.URL_VARIABLE)
    if url:
        yield url
        return
    if pgserver.binaries() is None:
        pytest.skip(f"no PostgreSQL: set {pgserver.URL_VARIABLE} or install the server binaries")
    try:
        pytest.importorskip("psycopg", reason="the postgres extra (pip install ntjax[postgres])")
        folder, url = pgserver.start()
    except RuntimeError as error:
        pytest.skip(f"could not start a throwaway PostgreSQL server: {error}")
    try:
        yield url
    finally:
        pgserver.stop(folder)


@pytest.fixture
def postgres_url(postgres_server):
    """A fresh, empty database on the server."""
    return pgserver.create_database(postgres_server, f"ntjax_{uuid.uuid4().hex[:12]}")


@pytest.fixture(params=["sqlite", "postgresql"])
def fresh_storage(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'fresh.db'}"
    return request.getfixturevalue("postgres_url")


def _study_names(url: str) -> list[str]:
    storage = optuna.storages.RDBStorage(url)
    try:
        return optuna.get_all_study_names(storage)
    finally:
        storage.engine.dispose()


def _has_heartbeat(url: str, trial: optuna.trial.FrozenTrial) -> bool:
    """Whether the worker running ``trial`` has recorded a heartbeat for it yet."""
    engine = sqlalchemy.create_engine(url)
    try:
        with engine.connect() as connection:
            query = sqlalchemy.text("SELECT COUNT(*) FROM trial_heartbeats WHERE trial_id = :id")
            return connection.execute(query, {"id": trial._trial_id}).scalar() > 0
    finally:
        engine.dispose()


def _trials(url: str, name: str) -> list[optuna.trial.FrozenTrial]:
    """The trials of a stored study, in order (connections closed)."""
    storage = optuna.storages.RDBStorage(url)
    try:
        return optuna.load_study(study_name=name, storage=storage).trials
    finally:
        storage.engine.dispose()


def _table_count(url: str) -> int:
    engine = sqlalchemy.create_engine(url)
    try:
        return len(sqlalchemy.inspect(engine).get_table_names())
    finally:
        engine.dispose()


# A process that opens (or joins) one study at an agreed instant, as a user's machines would.
_OPEN_AT = """
import sys, time
url, at = sys.argv[1], float(sys.argv[2])
import optuna
from ntjax.optimize import close_study, open_study
optuna.logging.set_verbosity(optuna.logging.ERROR)
while time.time() < at:
    pass
study = open_study(url, study_name="shared")
print(study._study_id)
close_study(study)
"""


def _at_once(commands: list[list[str]], *, delay: float, timeout: float = 300) -> list:
    """Runs ``commands`` as processes started together (each told to act after ``delay`` s)."""
    at = str(time.time() + delay)
    processes = [
        subprocess.Popen(
            [arg.replace("{at}", at) for arg in command],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        for command in commands
    ]
    return [(p.wait(timeout=timeout), *p.communicate()) for p in processes]


def test_processes_opening_a_fresh_storage_together_join_one_study(fresh_storage):
    # Without open_study's retries this loses optuna's schema-creation race (optuna#1092) in
    # most rounds: "table studies already exists" on SQLite, a duplicate pg_type row on
    # PostgreSQL (measured: 4/5 and 5/5 rounds of 4 processes).
    results = _at_once(
        [[sys.executable, "-c", _OPEN_AT, fresh_storage, "{at}"] for _ in range(4)], delay=4.0
    )
    for code, _, err in results:
        assert code == 0, err[-2000:]
    assert len({out.strip() for _, out, _ in results}) == 1
    assert _study_names(fresh_storage) == ["shared"]


def test_open_study_joins_an_existing_study(tmp_path):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    first = open_study(url, study_name="s", direction="maximize")
    second = open_study(url, study_name="s")
    try:
        assert second._study_id == first._study_id
        assert second.direction == optuna.study.StudyDirection.MAXIMIZE
        assert _table_count(url) > 0
    finally:
        close_study(first)
        close_study(second)


def test_open_study_gives_up_on_a_storage_it_cannot_reach(monkeypatch):
    monkeypatch.setattr(sys.modules["ntjax.optimize.study"], "_CREATION_ATTEMPTS", 2)
    with pytest.raises(sqlalchemy.exc.OperationalError):
        open_study("sqlite:////nonexistent-folder/for/sure/study.db", study_name="s")


_OPTIMIZE_AT = """
import json, sys, time
url, data, space, seed, at = sys.argv[1:6]
import optuna, polars as pl
import ntjax as nt
optuna.logging.set_verbosity(optuna.logging.ERROR)
frame = pl.read_parquet(data)
while time.time() < float(at):
    pass
result = nt.optimize(frame, json.loads(space), method="random", n_trials=2, storage=url,
                     study_name="shared", seed=int(seed), pruner="none", refit=False)
print(result.study_name)
"""


@pytest.mark.slow
def test_independent_optimize_calls_on_a_fresh_storage_share_one_study(
    fresh_storage, frame, tmp_path
):
    data = tmp_path / "data.parquet"
    frame.write_parquet(data)
    space = json.dumps(RANDOM)
    commands = [
        [sys.executable, "-c", _OPTIMIZE_AT, fresh_storage, str(data), space, str(seed), "{at}"]
        for seed in range(3)
    ]
    results = _at_once(commands, delay=15.0)
    for code, _, err in results:
        assert code == 0, err[-2000:]
    assert _study_names(fresh_storage) == ["shared"]
    trials = _trials(fresh_storage, "shared")
    assert [t.state.name for t in trials] == ["COMPLETE"] * 6
    assert len({t.user_attrs["pid"] for t in trials}) == 3


@pytest.mark.slow
def test_independent_cli_workers_on_a_fresh_storage_share_one_grid(fresh_storage, frame, tmp_path):
    data = tmp_path / "data.csv"
    frame.write_csv(data)
    space = tmp_path / "space.json"
    space.write_text(json.dumps(GRID))
    cli = [sys.executable, "-m", "ntjax.cli", "optimize", "--data", str(data)]
    options = ["--space", str(space), "--method", "grid", "--storage", fresh_storage]
    options += ["--study-name", "shared", "--pruner", "none"]
    commands = [
        [*cli, *options, "--store", str(tmp_path / f"store{i}"), "--seed", str(i)] for i in range(3)
    ]
    results = _at_once(commands, delay=0.0)
    for code, out, err in results:
        assert code == 0, err[-2000:]
        assert json.loads(out)["study_name"] == "shared"
    assert _study_names(fresh_storage) == ["shared"]
    trials = _trials(fresh_storage, "shared")
    points = {(t.params["optimizer.learning_rate"], t.params["training.seed"]) for t in trials}
    assert points == {(1e-3, 0), (1e-3, 1), (1e-2, 0), (1e-2, 1)}
    assert all(t.state.name == "COMPLETE" for t in trials)
    # Each process stops once the grid is taken; processes that check at the same instant at
    # the end of the grid may each run one more (a known window, see study._grid_left).
    assert 4 <= len(trials) <= 4 + 2


def test_three_worker_processes_on_postgres_run_exactly_n_trials(frame, postgres_url):
    result = optimize_workers(
        frame,
        RANDOM,
        workers=3,
        n_trials=6,
        storage=postgres_url,
        study_name="three",
        method="random",
        pruner="none",
        refit=False,
    )
    assert result.trials["state"].to_list() == ["COMPLETE"] * 6
    trials = _trials(postgres_url, "three")
    assert len(trials) == 6
    assert len({t.user_attrs["pid"] for t in trials}) == 3
    assert result.best_score == pytest.approx(min(t.value for t in trials))
    assert result.to_dict()["storage"].count("***") == 1  # the password is not shown


def test_a_grid_on_postgres_gives_the_results_of_sqlite(frame, postgres_url, tmp_path):
    def values(storage):
        result = optimize_workers(
            frame,
            GRID,
            workers=3,
            storage=storage,
            study_name="grid",
            method="grid",
            pruner="none",
            refit=False,
        )
        assert result.trials.height == 4
        return {
            (p["optimizer.learning_rate"], p["training.seed"]): value
            for p, value in result.trials.select("params", "value").iter_rows()
        }

    on_postgres = values(postgres_url)
    on_sqlite = values(f"sqlite:///{tmp_path / 'grid.db'}")
    assert sorted(on_postgres) == [(1e-3, 0), (1e-3, 1), (1e-2, 0), (1e-2, 1)]
    for point, value in on_sqlite.items():
        assert on_postgres[point] == pytest.approx(value, rel=1e-6), point


_SLOW_WORKER = """
import json, sys
import optuna, polars as pl
from ntjax.optimize import optimize
optuna.logging.set_verbosity(optuna.logging.ERROR)
url, data, space = sys.argv[1:4]
optimize(pl.read_parquet(data), json.loads(space), method="random", n_trials=1, storage=url,
         study_name="killed", refit=False, heartbeat_interval=1)
"""


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_worker_killed_mid_trial_leaves_it_failed_and_the_study_goes_on(
    backend, frame, tmp_path, request
):
    if backend == "sqlite":
        storage = f"sqlite:///{tmp_path / 'killed.db'}"
    else:
        storage = request.getfixturevalue("postgres_url")
    data = tmp_path / "data.parquet"
    frame.write_parquet(data)
    # Long enough to be caught running; the retry reruns it, so not too long.
    space = {**RANDOM, "training.max_steps": 3000, "training.val_check_steps": 500}
    worker = subprocess.Popen(
        [sys.executable, "-c", _SLOW_WORKER, storage, str(data), json.dumps(space)], cwd=ROOT
    )
    try:
        deadline = time.monotonic() + 120
        running = []
        while not running and worker.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
            if "killed" in _study_names(storage):
                # Mid-trial: running, with a heartbeat on record (a worker killed before its
                # first beat leaves nothing for optuna to find stale).
                running = [
                    t
                    for t in _trials(storage, "killed")
                    if t.state.name == "RUNNING" and _has_heartbeat(storage, t)
                ]
        assert running and worker.poll() is None, "the worker never ran its trial"
        os.kill(worker.pid, signal.SIGKILL)
    finally:
        worker.wait()
    # The grace period (three heartbeat intervals) and one more second: SQLite keeps the
    # heartbeat to the second, so 3.5 s could read as exactly 3 (once in a full run).
    time.sleep(4.5)
    result = optimize(
        frame,
        space,
        method="random",
        n_trials=1,
        storage=storage,
        study_name="killed",
        refit=False,
        heartbeat_interval=1,
    )
    killed, retry = _trials(storage, "killed")
    assert killed.state.name == "FAIL" and killed.user_attrs["pid"] == worker.pid
    assert retry.state.name == "COMPLETE" and retry.system_attrs["failed_trial"] == killed.number
    assert retry.params == killed.params
    assert result.best_score == pytest.approx(retry.value)
