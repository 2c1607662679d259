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
from ntjax.cli.main import COMMANDS, Command, UsageError, build_parser, main
from ntjax.cli.readers import read_frame
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
        code = main([str(a) for a in args])
    return code, out.getvalue(), err.getvalue()


def wide_frame(length: int = 80) -> pl.DataFrame:
    """Two series side by side, hourly, like an ETT file (the first 80 hours are what the
    ``trained`` model was fitted on)."""
    long = sine_frame(n_series=2, length=length)
    start = dt.datetime(2024, 1, 1)
    return pl.DataFrame(
        {
            "date": [start + dt.timedelta(hours=int(t)) for t in range(length)],
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
    expected = nt.forecast(Store(store).load(model_id), long, levels=(80, 95))
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


def test_evaluate_prints_and_records_metrics(trained, tmp_path):
    _, _, store, (_, out, _) = trained
    model_id = json.loads(out)["model_id"]
    data = tmp_path / "later.csv"
    wide_frame(length=80 + 2 * HORIZON).write_csv(data)  # the test part is new to the model
    code, out, err = run(
        "evaluate", "--model-id", model_id, "--data", data, "--time-col", "date",
        "--target", "a,b", "--test-size", 2 * HORIZON, "--store", store,
    )  # fmt: skip
    assert code == 0, err
    metrics = json.loads(out)
    for key in ("mae", "rmse", "mse", "mape", "smape", "r2", "mase", "coverage_80", "width_80"):
        assert isinstance(metrics[key], float)
    for key in ("coverage_95", "wql", "crps", "msis", "calibration_0.5"):
        assert isinstance(metrics[key], float)
    assert metrics["n_points"] == 2 * 2 * HORIZON and metrics["in_sample"] is False
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
                "50",
            ],
            "quantile 0.25",
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
    assert set(COMMANDS) >= {"train", "forecast", "evaluate", "status", "alias", "demo"}

    def add_arguments(parser):
        parser.add_argument("--word", required=True)

    echo = Command("echo a word", add_arguments, lambda args: {"word": args.word})
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(COMMANDS, "echo", echo)
        code, out, _ = run("echo", "--word", "hi", "--store", tmp_path)
    assert code == 0 and json.loads(out) == {"word": "hi"}


@pytest.mark.slow
def test_demo_prints_its_report(tmp_path):
    code, out, err = run("demo", "--output-dir", tmp_path, "--max-steps", "20")
    assert code == 0, err
    assert out.strip()


# -- messy files: missing-value marks, duplicates, gaps ----------------------------------------

NULL_DAYS = (107, 283, 286)  # 2020-04-17, 2020-10-10, 2020-10-13: past polars' type-guess rows


def yahoo_csv(path, n_days: int = 320) -> None:
    """A Yahoo Finance BTC-USD export: daily (weekends too), some rows ``null`` throughout."""
    start = dt.date(2020, 1, 1)
    lines = ["Date,Open,High,Low,Close,Adj Close,Volume"]
    for i in range(n_days):
        day = start + dt.timedelta(days=i)
        if i in NULL_DAYS:
            lines.append(f"{day},null,null,null,null,null,null")
            continue
        price = 7000 + 500 * np.sin(i / 9) + i
        prices = ",".join(f"{p:.2f}" for p in (price, price + 50, price - 50, price + 5, price + 5))
        lines.append(f"{day},{prices},{30_000_000_000 + 1000 * i}")
    path.write_text("\n".join(lines) + "\n")


def test_read_frame_reads_a_yahoo_export_with_null_rows(tmp_path):
    data = tmp_path / "btc.csv"
    yahoo_csv(data)
    close = read_frame(data, time_col="Date", target="Close")
    assert close.schema["y"] == pl.Float64 and close.height == 320
    null_days = close.filter(pl.col("y").is_null())["ds"].to_list()
    assert null_days == [dt.date(2020, 1, 1) + dt.timedelta(days=i) for i in NULL_DAYS]
    assert close["y"][0] == pytest.approx(7005.0)
    every = read_frame(data, time_col="Date")  # every numeric column, Volume as numbers
    assert every["unique_id"].unique(maintain_order=True).to_list() == [
        "Open", "High", "Low", "Close", "Adj Close", "Volume",
    ]  # fmt: skip
    assert every.filter(pl.col("unique_id") == "Volume")["y"][1] == 30_000_001_000.0


def test_read_frame_reads_fred_and_stooq_exports(tmp_path):
    fred = tmp_path / "DEXUSEU.csv"
    fred.write_text("DATE,DEXUSEU\n2020-01-01,.\n2020-01-02,1.1193\n2020-01-03,1.1147\n")
    rates = read_frame(fred, time_col="DATE")
    assert rates["unique_id"].to_list() == ["DEXUSEU"] * 3
    assert rates["y"].to_list() == [None, 1.1193, 1.1147]
    stooq = tmp_path / "spy_us_d.csv"
    stooq.write_text(
        "Date,Open,High,Low,Close,Volume\n2020-01-02,323.5,324.9,322.5,324.9,59151200\n"
        "2020-01-03,321.2,323.6,321.1,322.4,77709700\n"
    )
    close = read_frame(stooq, time_col="Date", target="Close")
    assert close["y"].to_list() == [324.9, 322.4]
    assert close.schema["ds"] in (pl.Date, pl.Datetime("us"))


def test_read_frame_keeps_text_and_names_what_it_cannot_read(tmp_path):
    long = tmp_path / "long.csv"
    long.write_text("unique_id,ds,y,sector\nNA,1,1.5,-\nNA,2,N/A,tech\nNA,3,-,tech\n")
    frame = read_frame(long)
    assert frame["unique_id"].to_list() == ["NA"] * 3  # a ticker, not a missing value
    assert frame["y"].to_list() == [1.5, None, None]
    assert frame["sector"].to_list() == ["-", "tech", "tech"]  # a text column keeps its text
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("Date,Close\n2020-01-01,1.5\n2020-01-02,1.6,7\n")
    with pytest.raises(ValueError, match="cannot read .*ragged.csv: found more fields"):
        read_frame(ragged, time_col="Date")
    words = tmp_path / "words.csv"
    words.write_text("Date,Close\n2020-01-01,1.5\n2020-01-02,n.a.\n2020-01-03,1.7\n")
    with pytest.raises(ValueError, match=r"'Close' has 1 value\(s\) that are neither numbers "):
        read_frame(words, time_col="Date", target="Close")


def test_train_on_a_yahoo_export_takes_one_flag(tmp_path):
    data = tmp_path / "btc.csv"
    yahoo_csv(data)
    store = tmp_path / "store"
    args = [
        "train", "--data", data, "--time-col", "Date", "--target", "Close", "--model", "nhits",
        "--horizon", "5", "--input-size", "20", "--max-steps", "20", "--no-progress",
        "--store", store,
    ]  # fmt: skip
    code, out, err = run(*args)
    assert code == 1 and out == ""
    assert err.strip().splitlines() == [
        "ntjax: error: series 'Close' has 3 missing values in y (first at 2020-04-17, "
        "2020-10-10, 2020-10-13); pass --missing drop|ffill|interpolate (or "
        "nt.data.fill_missing(df, method=...))."
    ]
    assert Store(store).query() == []  # refused before a record was started
    code, out, err = run(*args, "--missing", "drop")
    assert code == 0, err
    result = json.loads(out)
    assert result["status"] == "trained" and result["horizon"] == 5
    assert "dropped 3 rows with missing values (--missing drop)" in err
    assert "read" in err and "317 rows, 1 series" in err


def test_forecast_repairs_duplicates_gaps_and_missing_values_on_request(trained, tmp_path):
    _, _, store, (_, out, _) = trained
    model_id = json.loads(out)["model_id"]
    wide = wide_frame()
    messy = pl.concat([wide.head(30), wide.slice(29, 1), wide.slice(31)])  # 29 twice, 30 gone
    messy = messy.with_columns(
        pl.when(pl.int_range(pl.len()) == 50).then(None).otherwise(pl.col("a")).alias("a")
    )
    data = tmp_path / "messy.csv"
    messy.write_csv(data)
    base = ["forecast", "--model-id", model_id, "--data", data, "--time-col", "date",
            "--target", "a,b", "--store", store]  # fmt: skip
    code, _, err = run(*base)
    assert code == 1
    assert (
        "duplicate (unique_id, ds) rows: series 'a' at 2024-01-02 05:00:00 (2 rows), series 'b' "
        "at 2024-01-02 05:00:00 (2 rows); they are exact copies"
    ) in err.strip().splitlines()[-1]
    code, _, err = run(*base, "--duplicates", "drop")
    assert code == 1 and "series 'a' has 1 missing value in y (at 2024-01-03 02:00:00)" in err
    code, out, err = run(
        *base, "--duplicates", "drop", "--fill-gaps", "interpolate", "--missing", "ffill"
    )
    assert code == 0, err
    assert pl.read_csv(io.StringIO(out)).height == 2 * HORIZON
    assert "dropped 2 duplicate rows (--duplicates drop)" in err
    assert "inserted 2 missing timestamps (--fill-gaps interpolate)" in err


@pytest.mark.parametrize(
    "args",
    [
        ["train", "--data", "f.csv", "--horizon", "4"],
        ["forecast", "--model-id", "m", "--data", "f.csv"],
        ["evaluate", "--model-id", "m", "--data", "f.csv"],
        ["optimize", "--data", "f.csv"],
        ["backtest", "--model", "nhits", "--data", "f.csv"],
    ],
    ids=lambda args: args[0],
)
def test_every_data_command_takes_the_repair_options(args):
    parser = build_parser()
    parsed = parser.parse_args(args)
    assert (parsed.missing, parsed.duplicates, parsed.fill_gaps) == ("error", "error", None)
    parsed = parser.parse_args(
        [*args, "--missing", "interpolate", "--duplicates", "last", "--fill-gaps", "ffill"]
    )
    assert (parsed.missing, parsed.duplicates, parsed.fill_gaps) == ("interpolate", "last", "ffill")
    with pytest.raises(UsageError, match="invalid choice: 'mean'"):
        parser.parse_args([*args, "--missing", "mean"])
