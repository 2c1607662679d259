"""How fast a stacked LSTM can train on this machine: ntjax's recurrence, torch's, and the
machine's matmul peak, on issue 19's shapes.

Command:
    python experiments/recurrence_ceiling.py [--nf-python PATH] [--steps 168] [--repeats 20]

A training step of a 2-layer, 128-unit LSTM over 64 windows of 168 steps with one input
feature (the encoder of ntjax's LSTM with attention and of neuralforecast's LSTM; DeepAR runs
the same layers over 169 steps in neuralforecast and 192 in ntjax): the forward pass and the
gradients of the parameters and the input, timed after warm-up, in ntjax
(``recurrent.FusedLSTM``, jitted) and in torch (``torch.nn.LSTM``, 2 threads, the oneDNN kernel
that neuralforecast trains with), the torch side in its own environment (``--nf-python``,
default ``$NF_PYTHON`` or ``/tmp/nfvenv/bin/python``; skipped when absent).

Their arithmetic is counted from the shapes, not measured: per window, layer and step, the gates'
forward matmuls take ``2 * 4h * (f + h)`` FLOPs (``f`` the layer's input width), and the
backward pass twice that (the input and weight gradients), so a step is ``3 *`` the forward.
The peak is the best of ``--peak-repeats`` 2048x2048 float32 matmuls in XLA and in NumPy's BLAS.
The report gives each side's GFLOP/s, its share of the peak, and the share ntjax would need to
train 1.5x as fast as torch on the same arithmetic (issue 19's target).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import _benchmark as benchmark
import jax
import jax.numpy as jnp
import numpy as np

from ntjax.models.recurrent import FusedLSTM

BATCH, HIDDEN, LAYERS, FEATURES = 64, 128, 2, 1


def lstm_flops(steps: int) -> float:
    """FLOPs of one training step (forward and backward) of the stacked LSTM."""
    forward = 0.0
    width = FEATURES
    for _ in range(LAYERS):
        forward += 2 * 4 * HIDDEN * (width + HIDDEN)
        width = HIDDEN
    return 3 * forward * steps * BATCH


def matmul_peak(repeats: int) -> dict[str, float]:
    """Best GFLOP/s of 2048^3 float32 matmuls in XLA and in NumPy's BLAS."""
    n = 2048
    flops = 2 * n**3
    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    x = jnp.asarray(a)
    matmul = jax.jit(jnp.matmul)
    best_xla = min(benchmark.time_calls(lambda: matmul(x, x), repeats=repeats))
    a @ a
    numpy_times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ a
        numpy_times.append(time.perf_counter() - start)
    return {"xla": flops / best_xla / 1e9, "numpy": flops / min(numpy_times) / 1e9}


def ntjax_step_seconds(steps: int, repeats: int) -> float:
    """Median wall time of one jitted forward and backward pass of the stacked FusedLSTM."""

    layers = [FusedLSTM(HIDDEN) for _ in range(LAYERS)]
    x = jax.random.normal(jax.random.key(0), (steps, BATCH, FEATURES))
    params = []
    h = x
    for index, layer in enumerate(layers):
        params.append(layer.init(jax.random.key(index + 1), h))
        h = layer.apply(params[-1], h)

    def loss(params, x):
        h = x
        for layer, p in zip(layers, params, strict=True):
            h = layer.apply(p, h)
        return (h * h).sum()

    grad = jax.jit(jax.grad(loss, argnums=(0, 1)))
    return float(np.median(benchmark.time_calls(lambda: grad(params, x), repeats=repeats)))


TORCH_PROGRAM = f"""
import json, sys, time
import torch
torch.set_num_threads(2)
steps, repeats = int(sys.argv[1]), int(sys.argv[2])
lstm = torch.nn.LSTM({FEATURES}, {HIDDEN}, num_layers={LAYERS}, batch_first=True)
x = torch.randn({BATCH}, steps, {FEATURES}, requires_grad=True)
def step():
    out, _ = lstm(x)
    (out * out).sum().backward()
for _ in range(3):
    step()
times = []
for _ in range(repeats):
    start = time.perf_counter()
    step()
    times.append(time.perf_counter() - start)
times.sort()
print(json.dumps({{"seconds": times[len(times) // 2], "torch": torch.__version__,
                  "threads": torch.get_num_threads()}}))
"""


def torch_step(nf_python: str, steps: int, repeats: int) -> dict | None:
    """torch's median step time in its own environment, or None when it is absent."""
    if not Path(nf_python).exists():
        return None
    done = subprocess.run(
        [nf_python, "-c", TORCH_PROGRAM, str(steps), str(repeats)],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    if done.returncode != 0:
        raise RuntimeError(f"torch run failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--nf-python", default=os.environ.get("NF_PYTHON", "/tmp/nfvenv/bin/python")
    )
    parser.add_argument("--steps", default="168,192", help="sequence lengths, comma-separated")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--peak-repeats", type=int, default=10)
    benchmark.add_hugepages_flag(parser)
    args = parser.parse_args()
    hugepages = benchmark.use_hugepages(parser, args)

    peak = matmul_peak(args.peak_repeats)
    best_peak = max(peak.values())
    rows = []
    for steps in (int(s) for s in args.steps.split(",")):
        gflop = lstm_flops(steps) / 1e9
        ours = ntjax_step_seconds(steps, args.repeats)
        theirs = torch_step(args.nf_python, steps, args.repeats)
        row = {"steps": steps, "gflop": gflop, "ntjax_ms": 1e3 * ours}
        row["ntjax_gflops"] = gflop / ours
        if theirs is not None:
            row["torch_ms"] = 1e3 * theirs["seconds"]
            row["torch_gflops"] = gflop / theirs["seconds"]
            row["needed_for_1_5x_gflops"] = 1.5 * row["torch_gflops"]
            row["torch"] = theirs["torch"]
        rows.append(row)
    report = {"peak_gflops": peak, "hugepages": hugepages, "batch": BATCH, "rows": rows}
    print(f"matmul peak: XLA {peak['xla']:.0f}, NumPy {peak['numpy']:.0f} GFLOP/s")
    print(
        "| steps | GFLOP | ntjax ms (GFLOP/s, % of peak) | torch ms (GFLOP/s, % of peak) "
        "| 1.5x torch needs (% of peak) |"
    )
    print("|---|---|---|---|---|")
    for row in rows:

        def share(gflops: float) -> str:
            return f"{gflops:.0f}, {100 * gflops / best_peak:.0f}%"

        torch_cell = needed = "-"
        if "torch_ms" in row:
            torch_cell = f"{row['torch_ms']:.1f} ({share(row['torch_gflops'])})"
            needed = share(row["needed_for_1_5x_gflops"])
        print(
            f"| {row['steps']} | {row['gflop']:.2f} | {row['ntjax_ms']:.1f} "
            f"({share(row['ntjax_gflops'])}) | {torch_cell} | {needed} |"
        )
    print(json.dumps(report))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
