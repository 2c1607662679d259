"""Smoke tests: every experiment runs end to end on a shrunken config."""

import json
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from conftest import shared_data

ROOT = Path(__file__).resolve().parents[1]


def _run(script: str, *args: str, timeout: int = 600) -> str:
    result = subprocess.run(
        [sys.executable, str(ROOT / "experiments" / script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


@pytest.mark.slow
def test_bench_prints_every_figure():
    args = ["--steps", "2", "--horizon", "8", "--input-size", "16", "--batch-size", "8"]
    args += ["--streaming-config", "4,16", "--ensemble-steps", "3", "--skip-store"]
    out = json.loads(_run("bench.py", *args))
    assert out["training"]["windows_per_s"] > 0
    assert out["predict_one_window"]["p50_ms"] > 0
    assert out["forecast_7_series"]["p50_ms"] > 0
    for when in ("machine_before_latency", "machine_after_latency"):
        assert out[when]["python_loop_ms"] > 0 and out[when]["matmul_512_gflops"] > 0
    assert out["streaming_tick_100_series"]["p50_ms"] > 0
    assert out["ensemble_k8"]["vmapped_s"] > 0 and out["ensemble_k8"]["sequential_s"] > 0
    assert out["peak_rss_mb"] > 0


@pytest.mark.slow
def test_forecast_breakdown_prints_host_and_model_figures():
    args = ["--repeats", "3", "--blocks", "1", "--horizon", "8", "--input-size", "16"]
    out = json.loads(_run("forecast_breakdown.py", *args))
    assert out["n_series"] == 7
    (block,) = out["blocks"]
    assert block["host_p50_ms"] > 0 and block["forecast_p50_ms"] > 0
    assert block["machine"]["python_loop_ms"] > 0
    for figures in block["model"].values():
        assert figures["back_to_back_p50_ms"] > 0 and figures["after_gap_p50_ms"] > 0


@pytest.mark.shared_data
def test_long_horizon_experiment_runs_on_a_shrunken_config(tmp_path):
    shared_data("ETTm2.csv")
    out = _run(
        "ettm2_long_horizon.py",
        "--horizons",
        "96",
        "--max-steps",
        "3",
        "--test-rows",
        "200",
        "--results-dir",
        str(tmp_path),
    )
    assert (tmp_path / "long_horizon_ETTm2.md").exists()
    first = json.loads(out.splitlines()[0])
    assert first["horizon"] == 96 and first["mse"] > 0 and first["n_windows"] == 7 * (200 - 96 + 1)


@pytest.mark.slow
@pytest.mark.shared_data
def test_ett_long_horizon_runs_on_a_shrunken_config(tmp_path):
    shared_data("ETTh1.csv")
    shared_data("exchange_rate.csv")
    out = _run(
        "ett_long_horizon.py",
        "--datasets",
        "ETTh1,exchange_rate",
        "--horizons",
        "96",
        "--max-steps",
        "3",
        "--test-rows",
        "120",
        "--results-dir",
        str(tmp_path),
    )
    rows = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert [(r["dataset"], r["horizon"]) for r in rows] == [("ETTh1", 96), ("exchange_rate", 96)]
    n_series = {"ETTh1": 7, "exchange_rate": 8}
    for row in rows:
        assert row["n_windows"] == n_series[row["dataset"]] * (120 - 96 + 1)
        assert row["mse"] > 0 and row["mae"] > 0 and row["val_mse"] > 0 and row["steps"] == 3
    # The published figures reach the rows and the comparison (NaN where none were published).
    assert any(row["nf_mse"] > 0 for row in rows)
    for row in rows:
        expected = row["mse"] / row["paper_mse"] - 1
        assert row["mse_vs_paper"] == pytest.approx(expected, nan_ok=True)
    for name in ("long_horizon_ETTh1.csv", "long_horizon_exchange_rate.md"):
        assert (tmp_path / name).exists()
    summary = (tmp_path / "long_horizon_summary.md").read_text()
    assert "| ETTh1 | 96 |" in summary and "| exchange_rate | 96 |" in summary


@pytest.mark.slow
@pytest.mark.shared_data
def test_calibration_experiment_runs_on_a_shrunken_config(tmp_path):
    shared_data("ETTh1.csv")
    out = _run(
        "calibration.py",
        "--datasets",
        "ETTh1",
        "--max-steps",
        "3",
        "--test-rows",
        "120",
        "--results-dir",
        str(tmp_path),
    )
    rows = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert [r["method"] for r in rows] == [
        "raw",
        "split",
        "rolling (gamma 0)",
        "rolling (gamma 0.005)",
        "default (calibration tail)",
    ]
    assert all(r["n_windows"] == 120 - 24 + 1 for r in rows)
    assert (tmp_path / "calibration.md").exists()


@pytest.mark.slow
@pytest.mark.shared_data
def test_coverage_experiment_runs_on_a_shrunken_config(tmp_path):
    shared_data("AAPL_2006-01-01_to_2018-01-01.csv")
    out = tmp_path / "coverage"
    args = ["--datasets", "AAPL", "--families", "nhits,gru", "--max-steps", "3"]
    _run("coverage.py", *args, "--test-rows", "40", "--output", str(out))
    table = pl.read_csv(out.with_suffix(".csv"))
    assert table["family"].to_list() == ["nhits", "gru"]
    assert (table["test_rows"] == 40).all() and (table["calibration_rows"] > 0).all()
    for column in ("raw_80", "default_80", "raw_95", "default_95"):
        assert table[column].is_between(0, 1).all()
    assert (table["width_ratio_95"] > 0).all()
    assert "| AAPL | gru |" in out.with_suffix(".md").read_text()


@pytest.mark.slow
def test_zoo_speed_prints_every_family_figure(tmp_path):
    args = ["--smoke", "--families", "nhits,gru,tcn,deepar", "--vs-neuralforecast"]
    args += [
        "--nf-python",
        str(tmp_path / "no-such-python"),
        "--json",
        str(tmp_path / "speed.json"),
    ]
    out = _run("zoo_speed.py", *args)
    report = json.loads(out.strip().splitlines()[-1])
    assert report == json.loads((tmp_path / "speed.json").read_text())
    assert report["neuralforecast"].startswith("skipped")
    assert list(report["families"]) == ["nhits", "gru", "tcn", "deepar"]
    for row in report["families"].values():
        assert row["gflop"] > 0 and row["compile_s"] > 0
        assert len(row["ntjax"]["windows_per_s"]) == 2
        assert min(row["ntjax"]["windows_per_s"]) > 0 and row["ntjax"]["forecast_p50_ms"] > 0
        assert "neuralforecast" not in row
    assert "| tcn vs TCN |" in out


@pytest.mark.slow
def test_forecast_ab_prints_its_label_and_a_latency():
    label, p50 = _run("forecast_ab.py", "smoke").split()
    assert label == "smoke" and float(p50) > 0


@pytest.mark.slow
@pytest.mark.shared_data
def test_compression_experiment_runs_on_a_shrunken_config(tmp_path):
    shared_data("ETTh1.csv")
    out = tmp_path / "compression"
    _run("compression.py", "--smoke", "--datasets", "ETTh1", "--output", str(out))
    report = json.loads(out.with_suffix(".json").read_text())
    rows = {r["model"]: r for r in report["results"][0]["rows"]}
    assert list(rows) == [
        "f32",
        "bf16",
        "int8",
        "ensemble K=2",
        "distilled student 1/4",
        "student alone 1/4",
    ]
    assert rows["int8"]["resident_bytes"] < rows["bf16"]["resident_bytes"]
    assert rows["bf16"]["resident_bytes"] < rows["f32"]["resident_bytes"]
    for row in rows.values():
        assert row["artifact_bytes"] > 0 and row["one_window_ms"] > 0 and row["mae"] > 0
        assert 0 <= row["coverage_80"] <= 1 and not row["in_sample"]
    assert {m["batch"] for m in report["matmul"]} == {1, 256}
    assert "| int8 |" in out.with_suffix(".md").read_text()


@pytest.mark.slow
def test_transfer_compares_zero_shot_finetuned_and_scratch():
    shared_data("ETTm2.csv")
    out = _run("transfer.py", "--smoke")
    for run in ("zero-shot", "fine-tuned", "fine-tuned, heads only", "scratch, 10 steps"):
        assert f"nhits ETTm2_OT {run} " in out and f"nhits WTI {run} " in out


@pytest.mark.slow
def test_retraining_replays_three_strategies():
    shared_data("wti-daily.csv")
    out = _run("retraining.py", "--smoke")
    assert "month 3:" in out and "promotions:" in out
    for strategy in ("never", "monthly", "pipeline"):
        assert strategy in out


@pytest.mark.slow
def test_auto_long_horizon_runs_one_search_cell():
    shared_data("ETTh1.csv")
    out = _run("auto_long_horizon.py", "--smoke")
    assert "'dataset': 'ETTh1'" in out and "'trials_completed': 1" in out


@pytest.mark.slow
def test_auto_search_cost_compares_one_by_one_with_rounds():
    out = _run("auto_search_cost.py", "--smoke")
    assert "| 0 | one by one | 4 |" in out and "| 0 | rounds of 2 |" in out
    assert out.count("| 0 | rounds of 2 |") == 2


@pytest.mark.slow
def test_global_model_compares_global_per_series_and_naive():
    shared_data("exchange_rate.csv")
    out = _run("global_model.py", "--smoke")
    for model in (
        "naive",
        "seasonal naive (5)",
        "NHITS per series",
        "NHITS global",
        "NHITS global, window_norm",
    ):
        assert f"'model': '{model}'" in out


@pytest.mark.slow
def test_default_recipe_compares_the_candidate_recipes():
    shared_data("ETTh1.csv")
    out = _run("default_recipe.py", "--smoke")
    for recipe in ("plain", "validated", "validated + window_norm"):
        assert f"'recipe': '{recipe}'" in out
