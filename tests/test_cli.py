"""The ``ntjax`` command: JSON on stdout, progress on stderr, one-line errors, exit codes."""

import contextlib
import datetime as dt
import io
import json
import os
import subprocess
import sys

import numpy as np
import polars as pl
import pytest
from conftest import sine_frame

import ntjax as nt
from ntjax import cli
from ntjax.registry import new_id, utc_now
from ntjax.store import Store

HORIZON = 4
TRAIN_ARGS = [
    "--horizon", str(HORIZON), "--input-size", "16", "--max-steps", "20", "--batch-size", "16",
    "--config", '{"mlp_units": 16}',
]  # fmt: skip


def run(*args: str) -> tuple[int, str, str]:
    """Runs ``ntjax ARGS`` in this process; returns (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main([str(a) for a in args])
    return code, out.getvalue(), err.getvalue()


def wide_frame() -> pl.DataFrame:
    """Two series side by side, hourly, like an ETT file."""
    long = sine_frame(n_series=2, length=80)
    start = dt.datetime(2024, 1, 1)
    return pl.DataFrame(
        {
            "date": [start + dt.timedelta(hours=int(t)) for t in range(80)],
            "a": long.filter(pl.col("unique_id") == "s0")["y"],
            "b": long.filter(pl.col("unique_id") == "s1")["y"],
        }
    )


@pytest.fixture(autouse=True)
def cli_env(monkeypatch):
    # In this process the CLI must not switch on JAX's global compilation cache.
    monkeypatch.setenv("NTJAX_COMPILATION_CACHE", "0")
    monkeypatch.delenv("NTJAX_STORE", raising=False)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A model trained by ``ntjax train`` from a wide CSV, with the command's output."""
    folder = tmp_path_factory.mktemp("cli")
    data = folder / "wide.csv"
    wide_frame().write_csv(data)
    store = folder / "store"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("NTJAX_COMPILATION_CACHE", "0")
        result = run(
            "train", "--data", data, "--time-col", "date", "--target", "a,b", *TRAIN_ARGS,
            "--store", store,
        )  # fmt: skip
    return folder, data, store, result


def test_train_from_a_wide_csv(trained):
    _, _, store, (code, out, err) = trained
    assert code == 0, err
    result = json.loads(out)  # stdout is only the JSON result
    assert result["status"] == "trained" and result["kind"] == "nhits"
    assert result["model_id"] == result["id"]
    assert result["horizon"] == HORIZON and result["input_size"] == 16
    assert result["version"] == nt.__version__ and len(result["data_fingerprint"]) == 64
    assert "read" in err and "training nhits" in err  # progress and logs go to stderr
    record = Store(store).load(result["model_id"])
    assert record.scaler.ids == ("a", "b")
    assert record.data_fingerprint == result["data_fingerprint"]


def test_status_lists_and_shows(trained):
    _, _, store, (_, out, _) = trained
    model_id = json.loads(out)["model_id"]
    code, out, _ = run("status", "--store", store)
    assert code == 0
    rows = json.loads(out)
    assert [r["id"] for r in rows] == [model_id] and rows[0]["status"] == "trained"
    code, out, _ = run("status", model_id, "--store", store)
    assert code == 0 and json.loads(out)["id"] == model_id
    code, out, _ = run("status", "--status", "failed", "--store", store)
    assert code == 0 and json.loads(out) == []


def test_forecast_writes_csv_on_stdout(trained):
    _, data, store, (_, out, _) = trained
    model_id = json.loads(out)["model_id"]
    code, out, err = run(
        "forecast", "--model-id", model_id, "--data", data, "--time-col", "date",
        "--target", "a,b", "--store", store,
    )  # fmt: skip
    assert code == 0, err
    printed = pl.read_csv(io.StringIO(out), try_parse_dates=True)
    long = nt.from_wide(wide_frame(), time_col="date", value_cols=["a", "b"])
    expected = nt.forecast(Store(store).load(model_id), long, levels=(80,))
    assert printed.columns == expected.columns
    assert printed["unique_id"].to_list() == expected["unique_id"].to_list()
    assert printed["ds"].to_list() == expected["ds"].to_list()
    for column in ("y_hat", "q_0.1", "q_0.9", "lo_80", "hi_80"):
        np.testing.assert_array_equal(printed[column].to_numpy(), expected[column].to_numpy())


@pytest.mark.parametrize("suffix", ["csv", "parquet"])
def test_forecast_to_a_file(trained, tmp_path, suffix):
    _, data, store, (_, out, _) = trained
    model_id = json.loads(out)["model_id"]
    output = tmp_path / f"forecast.{suffix}"
    code, out, err = run(
        "forecast", "--model-id", model_id, "--data", data, "--time-col", "date",
        "--target", "a,b", "--levels", "80", "--output", output, "--store", store,
    )  # fmt: skip
    assert code == 0, err
    summary = json.loads(out)
    assert summary["rows"] == 2 * HORIZON and summary["series"] == 2
    written = pl.read_parquet(output) if suffix == "parquet" else pl.read_csv(output)
    assert written.height == 2 * HORIZON and "lo_80" in written.columns


def test_forecast_from_a_long_parquet_file(trained, tmp_path):
    _, _, store, (_, out, _) = trained
    model_id = json.loads(out)["model_id"]
    long = nt.from_wide(wide_frame(), time_col="date", value_cols=["a", "b"])
    data = tmp_path / "long.parquet"
    long.write_parquet(data)
    code, out, err = run("forecast", "--model-id", model_id, "--data", data, "--store", store)
    assert code == 0, err
    assert pl.read_csv(io.StringIO(out)).height == 2 * HORIZON


def test_evaluate_prints_and_records_metrics(trained):
    _, data, store, (_, out, _) = trained
    model_id = json.loads(out)["model_id"]
    code, out, err = run(
        "evaluate", "--model-id", model_id, "--data", data, "--time-col", "date",
        "--target", "a,b", "--test-size", 2 * HORIZON, "--store", store,
    )  # fmt: skip
    assert code == 0, err
    metrics = json.loads(out)
    for key in ("mae", "rmse", "mse", "mape", "smape", "r2", "mase", "coverage_80", "width_80"):
        assert isinstance(metrics[key], float)
    assert metrics["n_points"] == 2 * 2 * HORIZON
    code, out, _ = run("status", model_id, "--store", store)
    assert json.loads(out)["evaluation"]["mae"] == metrics["mae"]


def test_alias_set_show_and_roll_back(trained):
    _, _, store, (_, out, _) = trained
    first = json.loads(out)["model_id"]
    handle = Store(store)
    second = handle.save(handle.load(first).replace(id=new_id(), created_at=utc_now())).id
    for target in (first, second):
        code, out, err = run("alias", "set", "production", target, "--store", store)
        assert code == 0, err
    assert json.loads(out) == {"alias": "production", "model_id": second, "previous": first}
    code, out, _ = run("alias", "show", "--store", store)
    assert json.loads(out) == {"production": second}
    code, out, _ = run("alias", "rollback", "production", "--store", store)
    assert json.loads(out) == {"alias": "production", "model_id": first, "previous": second}
    code, out, _ = run("alias", "show", "production", "--store", store)
    shown = json.loads(out)
    assert shown["model_id"] == first
    assert [e["action"] for e in shown["history"]] == ["set", "set", "rollback"]
    code, out, _ = run("status", "production", "--store", store)  # aliases work as ids
    assert json.loads(out)["id"] == first
    code, _, err = run("alias", "rollback", "production", "--store", store)
    assert code == 1 and "no earlier model" in err


def test_store_from_the_environment(trained, tmp_path, monkeypatch):
    _, _, store, (_, out, _) = trained
    model_id = json.loads(out)["model_id"]
    monkeypatch.setenv("NTJAX_STORE", str(store))
    code, out, _ = run("status", model_id)
    assert code == 0 and json.loads(out)["id"] == model_id
    code, out, _ = run("status", "--store", tmp_path / "empty")  # --store wins
    assert code == 0 and json.loads(out) == []
    monkeypatch.delenv("NTJAX_STORE")
    monkeypatch.chdir(tmp_path)
    code, out, _ = run("status")
    assert code == 0 and json.loads(out) == [] and (tmp_path / "ntjax-store").is_dir()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "--data", "{missing}", *TRAIN_ARGS], "no such file"),
        (["train", "--data", "{wide}", *TRAIN_ARGS], "not a long frame"),
        (["train", "--data", "{wide}", "--target", "a", *TRAIN_ARGS], "needs --time-col"),
        (["train", "--data", "{txt}", *TRAIN_ARGS], "unsupported file type"),
        (["train", "--data", "{wide}", "--time-col", "when", *TRAIN_ARGS], "time column"),
        (
            ["train", "--data", "{wide}", "--time-col", "date", "--target", "z", *TRAIN_ARGS],
            "not in the frame",
        ),
        (
            ["train", "--data", "{wide}", "--time-col", "date", "--model", "gpt", *TRAIN_ARGS],
            "unknown model kind 'gpt'",
        ),
        (["train", "--data", "{wide}", "--time-col", "date", "--horizon", "0"], "horizon"),
        (["train", "--data", "{wide}", "--time-col", "date", "--horizon", "x"], "invalid int"),
        (["train", "--data", "{wide}", "--time-col", "date", "--horizon", "400"], "shorter"),
        (
            ["train", "--data", "{wide}", "--time-col", "date", *TRAIN_ARGS, "--config", "{"],
            "not valid JSON",
        ),
        (
            ["train", "--data", "{wide}", "--time-col", "date", *TRAIN_ARGS, "--config", "[1]"],
            "JSON object",
        ),
        (
            [
                "train",
                "--data",
                "{wide}",
                "--time-col",
                "date",
                *TRAIN_ARGS,
                "--config",
                '{"evil": 1}',
            ],
            "unknown fields for nhits: ['evil']",
        ),
        (
            ["train", "--data", "{wide}", "--time-col", "date", *TRAIN_ARGS, "--quantiles", "a,b"],
            "comma-separated numbers",
        ),
        (["train", "--horizon", "4"], "required: --data"),
        (["forecast", "--model-id", "../../etc/passwd", "--data", "{wide}"], "neither"),
        (["forecast", "--model-id", "{unknown}", "--data", "{wide}"], "no model"),
        (
            [
                "forecast",
                "--model-id",
                "{model}",
                "--data",
                "{wide}",
                "--time-col",
                "date",
                "--levels",
                "95",
            ],
            "quantile 0.025",
        ),
        (["status", "{unknown}"], "no model"),
        (["status", "--status", "done"], "invalid choice"),
        (["alias", "set", "prod;rm", "{model}"], "alias names"),
        (["alias", "rollback", "staging"], "no alias"),
        (["frobnicate"], "invalid choice"),
        ([], "required"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_bad_input_is_one_line_on_stderr(trained, tmp_path, args, message):
    folder, data, store, (_, out, _) = trained
    (tmp_path / "notes.txt").write_text("hello")
    names = {
        "missing": tmp_path / "missing.csv",
        "wide": data,
        "txt": tmp_path / "notes.txt",
        "unknown": new_id(),
        "model": json.loads(out)["model_id"],
    }
    args = [a.format(**names) if a.startswith("{") and a.endswith("}") and a[1:-1] in names
            else a for a in args]  # fmt: skip
    before = Store(store).query()
    code, stdout, stderr = run(*args, *(["--store", store] if args else []))
    assert code != 0
    assert stdout == ""
    lines = stderr.strip().splitlines()
    assert all(line.startswith(("ntjax", "train ")) for line in lines), stderr  # logs, bar
    assert len(lines) == 1 or "error" in lines[-1], stderr
    assert message in lines[-1], stderr
    assert "Traceback" not in stderr
    statuses = {r["status"] for r in Store(store).query()} - {r["status"] for r in before}
    assert statuses <= {"failed"}  # a rejected run never shows as trained


def test_the_real_command_in_a_new_process(trained, tmp_path):
    _, data, store, (_, out, _) = trained
    model_id = json.loads(out)["model_id"]
    env = {**os.environ, "NTJAX_COMPILATION_CACHE": "1", "NTJAX_STORE": str(store)}
    command = [sys.executable, "-m", "ntjax.cli"]
    ok = subprocess.run(
        [*command, "forecast", "--model-id", model_id, "--data", str(data), "--time-col",
         "date", "--target", "a,b", "--output", str(tmp_path / "f.csv")],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["rows"] == 2 * HORIZON
    assert (store / "jax-cache").is_dir()
    bad = subprocess.run(
        [*command, "forecast", "--model-id", "0" * 36, "--data", str(data)],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert bad.returncode == 1 and bad.stdout == ""
    assert bad.stderr.strip().count("\n") == 0 and "Traceback" not in bad.stderr
    assert "neither a model id" in bad.stderr


def test_subcommands_are_a_table(tmp_path):
    assert set(cli.COMMANDS) >= {"train", "forecast", "evaluate", "status", "alias", "demo"}

    def add_arguments(parser):
        parser.add_argument("--word", required=True)

    echo = cli.Command("echo a word", add_arguments, lambda args: {"word": args.word})
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(cli.COMMANDS, "echo", echo)
        code, out, _ = run("echo", "--word", "hi", "--store", tmp_path)
    assert code == 0 and json.loads(out) == {"word": "hi"}


@pytest.mark.slow
def test_demo_prints_its_report(tmp_path):
    pytest.importorskip("ntjax.demo", reason="ntjax/demo.py is not in this checkout yet")
    code, out, err = run("demo", "--output-dir", tmp_path, "--max-steps", "20")
    assert code == 0, err
    assert out.strip()
