"""Speed and memory of ntjax against DESIGN.md's targets.

Command:
    python experiments/bench.py [--steps 50] [--vs-neuralforecast]

Config: NHITS (neuralforecast defaults), ETTm2 (7 series; ../shared/data/ETTm2.csv, falling back
to the shipped ETTh1 when absent), horizon 96, input 480, 256 windows per step.
Prints one JSON object: training windows/s, warm one-window predict p50/p99, nt.forecast latency
on the 7-series frame, peak RSS; with --vs-neuralforecast (when installed) neuralforecast's
windows/s on the same config and the speed-up.
Expected on the 2-core CPU: ~10,000 windows/s, predict p50 well under 0.5 ms, forecast ~1-2 ms,
peak RSS < 1 GB. Run time: about a minute.
"""

import argparse
import json
import sys
from pathlib import Path

import polars as pl

import ntjax as nt
from ntjax import benchmark

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def load_data() -> tuple[pl.DataFrame, str]:
    path = SHARED / "ETTm2.csv"
    if path.exists():
        wide = pl.read_csv(path, try_parse_dates=True)
        return nt.from_wide(wide.head(34560), time_col="date"), "ETTm2 (train split, 7 series)"
    return nt.load_dataset("etth1"), "ETTh1 (shipped; ETTm2 not found)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--horizon", type=int, default=96)
    parser.add_argument("--input-size", type=int, default=480)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--vs-neuralforecast", action="store_true")
    args = parser.parse_args()
    df, data_name = load_data()
    config = nt.NHITSConfig(horizon=args.horizon, input_size=args.input_size)
    report = {"data": data_name, "config": config.to_dict(), "jax_backend": benchmark.backend()}
    report["training"] = benchmark.training_throughput(
        df, config, batch_size=args.batch_size, steps=args.steps
    )
    record = benchmark.untrained_record(df, config)
    report["predict_one_window"] = benchmark.predict_latency(record)
    report["forecast_7_series"] = benchmark.forecast_latency(
        record, benchmark.tail_rows(df, args.input_size)
    )
    report["forecast_7_series_full_history"] = benchmark.forecast_latency(record, df, repeats=20)
    if args.vs_neuralforecast:
        report["neuralforecast"] = benchmark.neuralforecast_throughput(
            df, config, batch_size=args.batch_size, steps=args.steps
        )
        if "windows_per_s" in report["neuralforecast"]:
            report["speedup_vs_neuralforecast"] = (
                report["training"]["windows_per_s"] / report["neuralforecast"]["windows_per_s"]
            )
    report["peak_rss_mb"] = benchmark.peak_rss_mb()
    json.dump(report, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
