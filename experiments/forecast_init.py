"""NHITS's forecast-layer initialisation: zeros (the model starts at the last-value forecast)
against flax's lecun_normal (the paper's random start), with ntjax's default recipe.

Command (from the repository root; needs ../shared/data)::

    nice -n 15 python experiments/forecast_init.py [--cells ETTh1:96,ETTh1:336,...] [--seeds 0,1]

Protocol: ``experiments/auto_long_horizon.py``'s (Informer splits, every column a series scaled
by its training rows); one ``nt.train`` per cell, init and seed on the training and validation
rows with the default ``TrainingConfig`` (validation tail, best parameters kept, patience 5)
and ``NHITSConfig(horizon=h, input_size=5h)``, point forecast (median head), identity scaler
(the data is already scaled); test MSE over every test window (stride 1) next to the last
value's. Writes experiments/results/forecast_init.csv and .md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import polars as pl
from ett_long_horizon import SHARED

import ntjax as nt
from ntjax.crossval import drop_last
from ntjax.data.benchmarks import long_horizon_frame, published_split, read_benchmark_csv

RESULTS = Path(__file__).resolve().parents[1] / "experiments" / "results"
CELLS = (
    "ETTh1:96,ETTh1:336,ETTh1:720,ETTm1:336,ETTm2:96,ETTm2:336,exchange_rate:96,exchange_rate:720"
)


def run(dataset: str, horizon: int, init: str, seed: int) -> dict:
    wide = read_benchmark_csv(SHARED / f"{dataset}.csv")
    split = published_split(dataset, wide.height)
    frame = long_horizon_frame(wide, time_col="date", split=split)
    config = nt.NHITSConfig(
        horizon=horizon, input_size=5 * horizon, quantiles=(0.5,), forecast_init=init
    )
    training = nt.TrainingConfig(seed=seed, scaler="identity", progress=False, calibration=None)
    started = time.perf_counter()
    record = nt.train(drop_last(frame, split.test), config, training)
    test = nt.evaluate(record, frame, test_size=split.test, step_size=1, levels=())
    last = nt.evaluate_seasonal_naive(frame, horizon=horizon, test_size=split.test, step_size=1)
    return {
        "dataset": dataset,
        "horizon": horizon,
        "forecast_init": init,
        "seed": seed,
        "mse": test["mse"],
        "last_value_mse": last["mse"],
        "val_size": record.training.val_size,
        "best_step": int(record.metrics.get("best_step", -1)),
        "seconds": time.perf_counter() - started,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cells", default=CELLS)
    parser.add_argument("--seeds", default="0,1")
    args = parser.parse_args(argv)
    if not SHARED.is_dir():
        print(f"needs {SHARED}", file=sys.stderr)
        return 1
    rows = []
    for cell in args.cells.split(","):
        dataset, horizon = cell.split(":")
        for seed in (int(s) for s in args.seeds.split(",")):
            for init in ("lecun_normal", "zeros"):
                rows.append(run(dataset, int(horizon), init, seed))
                print({k: round(v, 4) if isinstance(v, float) else v for k, v in rows[-1].items()})
                write(rows)
    return 0


def write(rows: list[dict]) -> None:
    table = pl.DataFrame(rows)
    table.write_csv(RESULTS / "forecast_init.csv")
    wide = table.pivot(on="forecast_init", index=["dataset", "horizon", "seed"], values="mse")
    last = table.group_by(["dataset", "horizon"], maintain_order=True).agg(
        pl.col("last_value_mse").first()
    )
    lines = [
        "# NHITS forecast-layer initialisation: test MSE, default recipe",
        "",
        "Command: `python experiments/forecast_init.py`; input 5 x horizon, one run per seed.",
        "",
        "| dataset | h | seed | lecun_normal | zeros | change | last value |",
        "|---|---|---|---|---|---|---|",
    ]
    baseline = {
        (r["dataset"], r["horizon"]): r["last_value_mse"] for r in last.iter_rows(named=True)
    }
    for r in wide.iter_rows(named=True):
        random, zeros = r.get("lecun_normal"), r.get("zeros")
        change = f"{zeros / random - 1:+.1%}" if random and zeros else ""
        lines.append(
            f"| {r['dataset']} | {r['horizon']} | {r['seed']} | {_f(random)} | {_f(zeros)} | "
            f"{change} | {baseline[(r['dataset'], r['horizon'])]:.3f} |"
        )
    (RESULTS / "forecast_init.md").write_text("\n".join(lines) + "\n")


def _f(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"


if __name__ == "__main__":
    sys.exit(main())
