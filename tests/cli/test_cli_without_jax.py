"""Commands that do not compute answer without importing JAX: ``status`` and ``alias`` read the
index alone (``ntjax.store.Catalog``), and the parser (``--help``) needs no library module.
Speed is measured by ``experiments/status_speed.py``, not here."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import sine_frame

import ntjax as nt
from ntjax.registry import new_id, utc_now

ROOT = Path(__file__).resolve().parents[2]
N_MODELS = 50
# What makes a new process slow: none of it is imported by a command that does not compute.
HEAVY = ("jax", "jaxlib", "flax", "optax", "numpy", "polars", "optuna")

CHILD = f"""
import contextlib, io, json, sys
import ntjax.cli
out = io.StringIO()
with contextlib.redirect_stdout(out):
    try:
        code = ntjax.cli.main(json.loads(sys.argv[1]))
    except SystemExit as exit:  # --help and --version exit from the parser
        code = exit.code
heavy = sorted(m for m in {HEAVY!r} if m in sys.modules)
print(json.dumps({{"code": code, "out": out.getvalue(), "heavy": heavy}}))
"""


def child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "NTJAX_STORE"}
    return {**env, "NTJAX_COMPILATION_CACHE": "1"}  # on, as for a user: status must skip it


def in_new_process(*args: str) -> dict:
    """Runs ``ntjax ARGS`` through ``ntjax.cli.main`` in a new interpreter; returns its exit
    code, stdout and the heavy modules it imported."""
    out = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps([str(a) for a in args])],
        capture_output=True,
        text=True,
        check=False,
        env=child_env(),
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def fifty(tmp_path_factory):
    """A store of 50 trained models (one small model saved under 50 ids), oldest first."""
    root = tmp_path_factory.mktemp("fifty") / "store"
    frame = sine_frame(n_series=2, length=80)
    config = nt.NHITSConfig(horizon=4, input_size=16, mlp_units=16)
    training = nt.TrainingConfig(max_steps=2, batch_size=16, progress=False)
    record = nt.train(frame, config, training)
    store = nt.Store(root, rate_limit=None)
    ids = [
        store.save(record.replace(id=new_id(), created_at=utc_now())).id for _ in range(N_MODELS)
    ]
    return root, ids


def test_status_of_50_models_in_a_new_process_imports_no_jax(fifty):
    root, ids = fifty
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "ntjax.cli", "status", "--store", str(root)],
        capture_output=True,
        text=True,
        check=False,
        env=child_env(),
    )
    assert out.returncode == 0, out.stderr[-3000:]
    rows = json.loads(out.stdout)
    assert [row["id"] for row in rows] == ids[::-1]  # newest first
    assert {row["status"] for row in rows} == {"trained"}
    assert {row["n_params"] for row in rows} == {nt.Store(root).status(ids[0])["n_params"]}
    # -X importtime: one stderr line per imported module, "import time: self | total | name".
    imported = {
        line.rsplit("|", 1)[-1].strip().split(".")[0]
        for line in out.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }
    assert "ntjax" in imported and "sqlite3" in imported  # the parse finds modules
    assert imported.isdisjoint(HEAVY), sorted(imported & set(HEAVY))
    assert not (root / "jax-cache").exists()  # no compilation cache for a command that reads


def test_status_and_alias_answer_without_jax(fifty):
    root, ids = fifty
    store = ["--store", root]
    shown = in_new_process("status", ids[3], *store)
    assert shown["code"] == 0 and shown["heavy"] == []
    assert json.loads(shown["out"])["id"] == ids[3]
    listed = in_new_process("status", "--status", "trained", "--limit", "3", *store)
    assert [row["id"] for row in json.loads(listed["out"])] == ids[::-1][:3]
    assert listed["heavy"] == []
    for target in (ids[0], ids[1]):
        result = in_new_process("alias", "set", "candidate", target, *store)
        assert result["code"] == 0 and result["heavy"] == []
    assert json.loads(result["out"]) == {
        "alias": "candidate",
        "model_id": ids[1],
        "previous": ids[0],
    }
    result = in_new_process("alias", "rollback", "candidate", *store)
    assert json.loads(result["out"])["model_id"] == ids[0] and result["heavy"] == []
    result = in_new_process("alias", "show", "candidate", *store)
    assert [e["action"] for e in json.loads(result["out"])["history"]] == ["set", "set", "rollback"]
    assert result["heavy"] == []
    result = in_new_process("status", "candidate", *store)  # an alias works as an id
    assert json.loads(result["out"])["id"] == ids[0] and result["heavy"] == []
    missing = in_new_process("status", new_id(), *store)
    assert missing["code"] == 1 and missing["heavy"] == []


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["--version"],
        *([name, "--help"] for name in ("train", "forecast", "evaluate", "status", "alias")),
        *([name, "--help"] for name in ("optimize", "backtest", "demo")),
        ["alias", "set", "--help"],
        ["train", "--horizon", "x", "--data", "f.csv"],  # a usage error
    ],
    ids=lambda args: " ".join(args),
)
def test_the_parser_imports_no_jax(args):
    result = in_new_process(*args)
    assert result["heavy"] == []
    assert result["code"] == (2 if "x" in args else 0)
    if "--help" in args:
        assert result["out"].startswith("usage: ntjax")


def test_status_speed_experiment_runs_on_a_small_store():
    out = subprocess.run(
        [sys.executable, str(ROOT / "experiments" / "status_speed.py"), "--models", "3"]
        + ["--runs", "1"],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
        env=child_env(),
    )
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout)
    assert report["models"] == 3 and report["status"]["p50_s"] > 0
    assert report["status_over_import_jax"] > 0
