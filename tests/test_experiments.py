"""Smoke tests: every experiment runs end to end on a shrunken config."""

import json
import subprocess
import sys
from pathlib import Path

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
    assert out["streaming_tick_100_series"]["p50_ms"] > 0
    assert out["ensemble_k8"]["vmapped_s"] > 0 and out["ensemble_k8"]["sequential_s"] > 0
    assert out["peak_rss_mb"] > 0


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
