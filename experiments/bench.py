"""Speed and memory of ntjax against DESIGN.md's targets.

Command:
    python experiments/bench.py [--steps 50] [--vs-neuralforecast]

Config: NHITS (neuralforecast defaults), ETTm2 (7 series; ../shared/data/ETTm2.csv, falling back
to the shipped ETTh1 when absent), horizon 96, input 480, 256 windows per step.
Prints one JSON object: training windows/s, warm one-window predict p50/p99, nt.forecast latency
on the 7-series frame, peak RSS; with --vs-neuralforecast (when installed) neuralforecast's
windows/s on the same config and the speed-up.
Also: streaming tick latency (1 and 100 series, NHITS horizon 24 / input 168 by default),
K=8 vmapped ensemble training against 8 sequential runs, and the store timings
(_bench_store.measure_store: warm load, load + first forecast in a new process).
Expected on the 2-core CPU: ~10,000 windows/s, predict p50 well under 0.5 ms, forecast ~1-2 ms,
peak RSS < 1 GB. Run time: a few minutes.
Runs on huge pages like the ``ntjax`` command (``ntjax.hugepages``; ``--no-hugepages``: not).
machine_before_latency / machine_after_latency give the machine's speed around the latency
figures (a pure-Python loop, a 512x512 matmul, memory bandwidth): on a shared 2-core VM all of
them move together by up to 2x, so compare latencies only at similar reference figures.
"""

import argparse
import json
import sys
from pathlib import Path

import _benchmark as benchmark
from _bench_store import measure_store

import ntjax as nt

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--horizon", type=int, default=96)
    parser.add_argument("--input-size", type=int, default=480)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--vs-neuralforecast", action="store_true")
    parser.add_argument(
        "--streaming-config", default="24,168", help="horizon,input_size of the streaming model"
    )
    parser.add_argument("--ensemble-steps", type=int, default=200)
    parser.add_argument("--skip-store", action="store_true", help="skip the store timings")
    benchmark.add_hugepages_flag(parser)
    args = parser.parse_args()
    hugepages_on = benchmark.use_hugepages(parser, args)
    df, data_name = benchmark.bench_data(SHARED)
    config = nt.NHITSConfig(horizon=args.horizon, input_size=args.input_size)
    report = {
        "data": data_name,
        "config": config.to_dict(),
        "jax_backend": benchmark.backend(),
        "hugepages": hugepages_on,
    }
    report["training"] = benchmark.training_throughput(
        df, config, batch_size=args.batch_size, steps=args.steps
    )
    # DESIGN's memory target is for a training run: the peak so far (data loaded, one run).
    report["training"]["peak_rss_mb"] = benchmark.peak_rss_mb()
    record = benchmark.untrained_record(df, config)
    # The latency figures move with the machine's speed (a shared VM): measure it beside them.
    report["machine_before_latency"] = benchmark.machine_reference()
    report["predict_one_window"] = benchmark.predict_latency(record)
    report["forecast_7_series"] = benchmark.forecast_latency(
        record, benchmark.tail_rows(df, args.input_size), repeats=300
    )
    report["machine_after_latency"] = benchmark.machine_reference()
    report["forecast_7_series_full_history"] = benchmark.forecast_latency(record, df, repeats=20)
    horizon, input_size = (int(v) for v in args.streaming_config.split(","))
    small = nt.NHITSConfig(horizon=horizon, input_size=input_size)
    small_record = benchmark.untrained_record(df, small)
    report["streaming_config"] = {"horizon": horizon, "input_size": input_size}
    for n_series in (1, 100):
        report[f"streaming_tick_{n_series}_series"] = benchmark.streaming_latency(
            small_record, df, n_series=n_series
        )
    report["streaming_tick_1_series_bench_config"] = benchmark.streaming_latency(
        record, df, n_series=1
    )
    report["ensemble_k8"] = benchmark.ensemble_training_time(
        df,
        nt.NHITSConfig(horizon=horizon, input_size=input_size, mlp_units=128),
        steps=args.ensemble_steps,
    )
    if not args.skip_store:
        report["store"] = measure_store(runs=3, repeats=100)
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
