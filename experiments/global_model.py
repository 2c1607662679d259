"""Global models on a many-series panel: one NHITS fitted on the 8 stock closes and the 8
exchange rates together, against one NHITS per series and the naive forecasts.

Command (from the repository root; needs ../shared/data)::

    nice -n 15 python experiments/global_model.py [--horizons 5,20] [--max-steps 1000]
        [--smoke]

Protocol. The panel: the daily closes of AAPL, AMZN, GOOGL, IBM, INTC, JPM, MSFT and XOM
(2006-2017, 3,019 rows each) and the 8 daily exchange rates of ../shared/data/exchange_rate.csv
(1990-2010, 7,588 rows each), every series indexed by position (a global model sees no
calendar). Test: the last 250 rows of each series (about a year of trading days), rolling
origins every horizon, each forecast from data before its origin only. Training: everything
before the test rows; early stopping on the last 250 training rows (validation every 50 steps,
patience 5, at most ``--max-steps`` steps of 256 windows); input 5 x horizon; default
quantiles and interval calibration; standard scaler per series.

Rows, per horizon: naive (the last value, the random walk that prices follow), seasonal naive
(season 5, a trading week); NHITS per series (16 models, each on its own series only, the same
config and budget); NHITS global (one model on all 16); NHITS global with window-local
normalisation (``window_norm=True``: each input window is standardised by its own mean and
spread, so levels never seen in training do not matter). Scores, per series then averaged over
the 16 series: MASE (scaled by the in-sample one-step naive MAE), sMAPE (percent), and the
ratio of each to the naive's.

Writes experiments/results/global_model.csv and global_model.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

import ntjax as nt
from ntjax.data.benchmarks import read_benchmark_csv

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "experiments" / "results"
STOCKS = ("AAPL", "AMZN", "GOOGL", "IBM", "INTC", "JPM", "MSFT", "XOM")
TEST_ROWS, VAL_ROWS = 250, 250


def _series(name: str, values: pl.Series) -> pl.DataFrame:
    y = values.cast(pl.Float64).drop_nulls()
    return pl.DataFrame({"unique_id": name, "ds": pl.int_range(0, y.len(), eager=True), "y": y})


def panel() -> pl.DataFrame:
    """The 16 series, integer time."""
    parts = [
        _series(ticker, pl.read_csv(DATA / f"{ticker}_2006-01-01_to_2018-01-01.csv")["Close"])
        for ticker in STOCKS
    ]
    rates = read_benchmark_csv(DATA / "exchange_rate.csv")
    parts += [_series(f"fx_{c}", rates[c]) for c in rates.columns if c != "date"]
    return pl.concat(parts)


def _per_series(evaluate, frame: pl.DataFrame) -> dict[str, float]:
    """MASE (one scale for every model: the in-sample one-step naive MAE before the test) and
    sMAPE (percent) of ``evaluate(series_frame)`` on each series, averaged over series."""
    rows = []
    for _, part in frame.group_by("unique_id", maintain_order=True):
        metrics = evaluate(part)
        scale = nt.metrics.naive_scale(part["y"].to_numpy()[:-TEST_ROWS], season_length=1)
        rows.append({"mase": metrics["mae"] / scale, "smape": 100 * metrics["smape"]})
    return {key: float(np.mean([row[key] for row in rows])) for key in rows[0]}


def run_horizon(frame: pl.DataFrame, horizon: int, max_steps: int) -> list[dict]:
    train_part = pl.concat(
        [part.head(part.height - TEST_ROWS) for _, part in frame.group_by("unique_id")]
    ).sort("unique_id", "ds")
    training = nt.TrainingConfig(
        max_steps=max_steps,
        batch_size=256,
        val_size=VAL_ROWS,
        val_check_steps=50,
        early_stopping_patience=5,
        progress=False,
    )
    # As measured (before the default recipe): a constant rate, NHITS without window_norm per
    # series and global, then global with it.
    constant = nt.OptimizerConfig(learning_rate=1e-3, schedule="constant")
    config = nt.NHITSConfig(
        horizon=horizon, input_size=5 * horizon, window_norm=False, forecast_init="lecun_normal"
    )
    runs: dict[str, dict] = {}
    for name, season in (("naive", 1), ("seasonal naive (5)", 5)):
        runs[name] = _per_series(
            lambda part, season=season: nt.evaluate_seasonal_naive(
                part, horizon=horizon, season_length=season, test_size=TEST_ROWS
            ),
            frame,
        )
        runs[name]["train_s"] = 0.0

    def model_scores(record, part):
        return nt.evaluate(record, part, test_size=TEST_ROWS)

    started = time.perf_counter()
    singles = {
        uid: nt.train(part, config, training, constant)
        for (uid,), part in train_part.group_by("unique_id", maintain_order=True)
    }
    runs["NHITS per series"] = _per_series(
        lambda part: model_scores(singles[part["unique_id"][0]], part), frame
    )
    runs["NHITS per series"]["train_s"] = time.perf_counter() - started
    for name, model in (
        ("NHITS global", config),
        ("NHITS global, window_norm", dataclasses.replace(config, window_norm=True)),
    ):
        started = time.perf_counter()
        record = nt.train(train_part, model, training, constant)
        runs[name] = _per_series(lambda part, record=record: model_scores(record, part), frame)
        runs[name]["train_s"] = time.perf_counter() - started
    naive = runs["naive"]
    rows = []
    for name, scores in runs.items():
        row = {
            "horizon": horizon,
            "model": name,
            **scores,
            "mase_vs_naive": scores["mase"] / naive["mase"],
            "smape_vs_naive": scores["smape"] / naive["smape"],
        }
        rows.append(row)
        print({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}, flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--horizons", default="5,20")
    parser.add_argument("--max-steps", type=int, default=1000)
    parser.add_argument("--smoke", action="store_true", help="tiny settings, no files written")
    args = parser.parse_args(argv)
    if not DATA.is_dir():
        print(f"needs {DATA}", file=sys.stderr)
        return 1
    frame = panel()
    if args.smoke:
        args.horizons, args.max_steps = "5", 10
        frame = frame.group_by("unique_id", maintain_order=True).tail(900)
    rows = []
    for horizon in (int(h) for h in args.horizons.split(",")):
        rows += run_horizon(frame, horizon, args.max_steps)
    if args.smoke:
        return 0
    RESULTS.mkdir(exist_ok=True)
    pl.DataFrame(rows).write_csv(RESULTS / "global_model.csv")
    lines = [
        "# Global model on stocks and exchange rates",
        "",
        f"Command: `nice -n 15 python experiments/global_model.py --horizons {args.horizons} "
        f"--max-steps {args.max_steps}` (16 series; test: the last {TEST_ROWS} rows of each, "
        "rolling origins every horizon; scores averaged over series).",
        "",
        "| horizon | model | MASE | sMAPE % | MASE / naive | sMAPE / naive | train s |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['horizon']} | {r['model']} | {r['mase']:.3f} | {r['smape']:.3f} | "
            f"{r['mase_vs_naive']:.3f} | {r['smape_vs_naive']:.3f} | {r['train_s']:.0f} |"
        )
    (RESULTS / "global_model.md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
