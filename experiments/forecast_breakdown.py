"""Where ``nt.forecast``'s time goes on 7 series: the host side against the model call.

    python experiments/forecast_breakdown.py [--repeats 300]

NHITS h96/i480 (untrained weights: timing does not depend on them) on the last 480 rows of
each of ETTm2's 7 series (../shared/data/ETTm2.csv; the shipped ETTh1 when absent). Prints
JSON with, for each of 10 blocks, the machine's speed (``benchmark.machine_reference``) and:
- ``forecast_p50_ms``: ``nt.forecast`` as ``experiments/bench.py`` times it;
- ``host_p50_ms``: ``nt.forecast`` with the model call swapped for its precomputed output, i.e.
  validation, packing, scaling, future time stamps and the frame alone;
- ``model``: the jitted model on 7 windows back to back and after 1 ms of busy host work, for
  NHITS with 512 (8.1 MB of weights), 256 and 128 units.

Measured on the 2-core VM (2026-11-29, a quiet phase: the reference loop took 3.2-3.6 ms):
host 0.60-0.65 ms in every block; the 512-unit model 0.54-0.94 ms back to back and 0.70-1.39 ms
after the gap (256 units: 0.35-0.44 / 0.53-0.82; 128 units: 0.17-0.22 / 0.32-0.45); nt.forecast
1.37-1.84 ms in 8 of 10 blocks, 2.07 and 3.06 ms in the other two.
"""

import argparse
import json
import sys
from pathlib import Path

import _benchmark as benchmark
import numpy as np

import ntjax as nt
import ntjax.predict

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=300)
    parser.add_argument("--blocks", type=int, default=10)
    parser.add_argument("--horizon", type=int, default=96)
    parser.add_argument("--input-size", type=int, default=480)
    args = parser.parse_args()
    data, _ = benchmark.bench_data(SHARED)
    tails = benchmark.tail_rows(data, args.input_size)
    records = {
        units: benchmark.untrained_record(
            data, nt.NHITSConfig(horizon=args.horizon, input_size=args.input_size, mlp_units=units)
        )
        for units in (512, 256, 128)
    }
    record = records[512]
    n_series = tails["unique_id"].n_unique()
    model_call = ntjax.predict.predict_quantiles
    output = np.asarray(
        model_call(record.config, record.params, {"y": np.zeros((n_series, args.input_size), "f4")})
    )
    blocks = []
    for _ in range(args.blocks):
        block = {"machine": benchmark.machine_reference(repeats=5)}
        block["forecast_p50_ms"] = benchmark.forecast_latency(record, tails, repeats=args.repeats)[
            "p50_ms"
        ]
        # The study swaps the model call for its output to time the host side alone.
        ntjax.predict.predict_quantiles = lambda *_, **__: output
        try:
            host = benchmark.forecast_latency(record, tails, repeats=args.repeats)
        finally:
            ntjax.predict.predict_quantiles = model_call
        block["host_p50_ms"] = host["p50_ms"]
        block["model"] = {
            units: benchmark.model_latency_after_gap(r, n_windows=n_series, repeats=args.repeats)
            for units, r in records.items()
        }
        blocks.append(block)
    json.dump({"n_series": n_series, "blocks": blocks}, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
