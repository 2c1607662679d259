"""``nt.forecast`` latency of one code version, for an A/B against another checkout.

Command (alternate the two, a few times each, on the same machine)::

    python experiments/forecast_ab.py after
    PYTHONPATH=/path/to/other/checkout python experiments/forecast_ab.py before

An untrained NHITS h96/i480 with quantiles (0.1, 0.5, 0.9) (the same config in both versions,
whatever their defaults), 7 generated series, the last 480 rows of each; prints the label and
the p50 over 300 warm calls in ms. Measured 2026-12-02 on the loaded 2-core VM: the re-layered
main 2.24 / 2.07 ms against 04aec42's 2.26 / 3.82 ms.
"""

import sys
import time

import numpy as np
import polars as pl

import ntjax as nt


def main() -> None:
    label = sys.argv[1] if len(sys.argv) > 1 else "this"
    t = np.arange(600)
    frames = [
        pl.DataFrame({"unique_id": f"s{i}", "ds": t, "y": np.sin(t / 7 + i)}) for i in range(7)
    ]
    df = pl.concat(frames)
    config = nt.NHITSConfig(horizon=96, input_size=480, quantiles=(0.1, 0.5, 0.9))
    fields = nt.TrainingConfig.__dataclass_fields__
    extra = {"calibration": None} if "calibration" in fields else {}  # raw heads in both
    record = nt.train(
        df, config, nt.TrainingConfig(max_steps=1, batch_size=8, progress=False, **extra)
    )
    tail = df.group_by("unique_id", maintain_order=True).tail(480)
    for _ in range(30):
        nt.forecast(record, tail, levels=(80,))
    times = []
    for _ in range(300):
        start = time.perf_counter()
        nt.forecast(record, tail, levels=(80,))
        times.append(time.perf_counter() - start)
    print(label, round(1e3 * float(np.median(times)), 3))


if __name__ == "__main__":
    main()
