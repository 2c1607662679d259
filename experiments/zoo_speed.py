"""Training speed of every model family, side by side with neuralforecast.

Command:
    python experiments/zoo_speed.py [--vs-neuralforecast] [--families gru,tcn] [--smoke]

Config (issue 19): ETTh1's OT column (``nt.load_dataset("etth1", columns="OT")``), horizon 24,
input 168, 64 windows per step, hidden size 128 and 2 layers where a family has them, quantiles
0.1 / 0.5 / 0.9, identity scaler; neuralforecast's nearest model on the same settings (NHITS,
N-BEATS generic, PatchTST 16/8, GRU, LSTM, TCN with dilations 1..64, DeepAR with a normal
likelihood).

Per family: training windows/s after warm-up (the range over ``--blocks`` blocks of
``--block-steps`` steps, timed between ``nt.train`` progress callbacks, so compilation and data
preparation are left out), the compile time of its loss-and-gradient program, a one-window
``nt.forecast`` p50, and the train step's matmul and convolution GFLOP/s (counted from its
jaxpr) against the machine's f32 matmul rate, measured at the start and at the end.

With ``--vs-neuralforecast`` each family's neuralforecast run follows its ntjax run (alternated
family by family, so that drift of a shared machine hits both sides alike), in a subprocess of
a separate environment: ``--nf-python``, default ``$NF_PYTHON`` or ``/tmp/nfvenv/bin/python``
(neuralforecast 3.x on torch, CPU). Its windows/s are timed between Lightning batch-end
callbacks in the same blocks, its forecast p50 with ``NeuralForecast.predict`` on the same
window.

The script relaunches itself with glibc's huge-page tunable, as the ``ntjax`` command does
(``ntjax.hugepages``), and the neuralforecast subprocess inherits it; ``--no-hugepages`` runs
both sides without.

Prints a markdown table and one JSON object (``--json PATH`` also writes it). Expected on the
2-core CPU: every family at least 1.5x neuralforecast's windows/s (TCN and the Transformer 2x,
the MLP families 10x), one-window forecasts in a few ms against neuralforecast's 15-30 ms. A
full run takes 15-25 minutes; ``--smoke`` runs a tiny config in about a minute. Figures move by
up to 2x with the machine's load: read ratios from one run (the load is printed), not figures
across runs.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _benchmark as benchmark
import jax
import jax.numpy as jnp
import numpy as np

import ntjax as nt
from ntjax.models import dummy_inputs, spec_for

FAMILIES = ("nhits", "nbeats", "transformer", "gru", "lstm_attention", "tcn", "deepar")
NF_NAMES = {
    "nhits": "NHITS",
    "nbeats": "NBEATS (generic)",
    "transformer": "PatchTST",
    "gru": "GRU",
    "lstm_attention": "LSTM",
    "tcn": "TCN",
    "deepar": "DeepAR",
}
QUANTILES = (0.1, 0.5, 0.9)


def model_config(family: str, *, horizon: int, input_size: int, hidden: int, layers: int):
    """The ntjax config of ``family`` on the benchmark's settings."""
    common = dict(horizon=horizon, input_size=input_size)
    if family == "deepar":
        return nt.DeepARConfig(**common, hidden_size=hidden, n_layers=layers)
    common["quantiles"] = QUANTILES
    if family == "nhits":
        return nt.NHITSConfig(**common)
    if family == "nbeats":
        return nt.NBEATSConfig(**common, stack_types=("generic",) * 3)
    if family == "transformer":
        return nt.TransformerConfig(
            **common, d_model=hidden, n_layers=layers, ffn_size=2 * hidden, n_heads=4
        )
    if family == "gru":
        return nt.GRUConfig(**common, hidden_size=hidden, n_layers=layers)
    if family == "lstm_attention":
        return nt.LSTMAttentionConfig(**common, hidden_size=hidden, n_layers=layers)
    if family == "tcn":
        return nt.TCNConfig(**common, channels=hidden, kernel_size=2)
    raise ValueError(f"unknown family {family!r}")


# --------------------------------------------------------------------------------------------
# The machine and the work of a step.
# --------------------------------------------------------------------------------------------


def matmul_peak_gflops(size: int = 1024, repeats: int = 20) -> float:
    """Median f32 matmul rate of a jitted ``[size, size] @ [size, size]``."""
    a = jnp.ones((size, size), jnp.float32)
    product = jax.jit(lambda a: a @ a)
    jax.block_until_ready(product(a))
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(product(a))
        samples.append(time.perf_counter() - start)
    return 2 * size**3 / float(np.median(samples)) / 1e9


def _sub_jaxprs(params: dict):
    for value in params.values():
        for item in value if isinstance(value, tuple | list) else (value,):
            if isinstance(item, jax.extend.core.ClosedJaxpr):
                yield item.jaxpr
            elif isinstance(item, jax.extend.core.Jaxpr):
                yield item


def _jaxpr_flops(jaxpr) -> float:
    """FLOPs of the dots and convolutions of a jaxpr (a multiply-add counts two), scan bodies
    times their length; element-wise work is left out, as a matmul rate measures none."""
    total = 0.0
    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        if name == "dot_general":
            lhs, rhs = (v.aval.shape for v in eqn.invars)
            (_, rhs_contract), (_, rhs_batch) = eqn.params["dimension_numbers"]
            free = [d for i, d in enumerate(rhs) if i not in (*rhs_contract, *rhs_batch)]
            total += 2.0 * float(np.prod(lhs)) * float(np.prod(free))
        elif name == "conv_general_dilated":
            out, rhs = eqn.outvars[0].aval.shape, eqn.invars[1].aval.shape
            spec = eqn.params["dimension_numbers"].rhs_spec  # (out, in, *spatial)
            total += 2.0 * float(np.prod(out)) * float(np.prod([rhs[i] for i in spec[1:]]))
        else:
            scale = float(eqn.params.get("length", 1)) if name == "scan" else 1.0
            total += scale * sum(_jaxpr_flops(sub) for sub in _sub_jaxprs(eqn.params))
    return total


def _loss_and_gradient(config, windows: int):
    """The jitted loss-and-gradient of ``config``'s family on ``windows`` windows (with its
    compile options) and its arguments."""
    spec = spec_for(config)
    params = spec.init(config, jax.random.key(0))
    inputs = dummy_inputs(config, windows)
    targets = jnp.zeros((windows, config.horizon), jnp.float32)

    def loss(params, key):
        return spec.training_loss(config, params, inputs, targets, key=key).mean()

    options = dict(spec.compile_options(config)) or None
    gradient = jax.value_and_grad(loss)
    arguments = (params, jax.random.key(0))
    return gradient, jax.jit(gradient, compiler_options=options), arguments


def step_work(config, windows: int) -> dict[str, float]:
    """GFLOP (dots and convolutions) of one loss-and-gradient evaluation on ``windows``
    windows, and the seconds its program takes to compile."""
    gradient, program, arguments = _loss_and_gradient(config, windows)
    jaxpr = jax.make_jaxpr(gradient)(*arguments)
    start = time.perf_counter()
    program.lower(*arguments).compile()
    return {"gflop": _jaxpr_flops(jaxpr.jaxpr) / 1e9, "compile_s": time.perf_counter() - start}


# --------------------------------------------------------------------------------------------
# ntjax.
# --------------------------------------------------------------------------------------------


def ntjax_speed(
    df, config, *, windows_per_step: int, block_steps: int, blocks: int, latency_repeats: int
) -> dict[str, Any]:
    """Training windows/s per block of ``block_steps`` steps (after a first block that compiles)
    and the one-window forecast p50 of ``config``, through ``nt.train`` and ``nt.forecast``."""
    stamps: list[float] = []
    training = nt.TrainingConfig(
        max_steps=block_steps * (blocks + 1),
        batch_size=windows_per_step,
        val_check_steps=block_steps,
        scaler="identity",
        calibration=None,
        progress=False,
        val_size=0,  # throughput of training steps alone (no validation pass between blocks)
        early_stopping_patience=None,
    )
    record = nt.train(
        df, config, training, callbacks=[lambda _: stamps.append(time.perf_counter())]
    )
    rates = windows_per_step * block_steps / np.diff(stamps)
    window = df.tail(config.input_size)
    nt.forecast(record, window)
    latency = []
    for _ in range(latency_repeats):
        start = time.perf_counter()
        nt.forecast(record, window)
        latency.append(time.perf_counter() - start)
    return {
        "windows_per_s": [float(r) for r in rates],
        "forecast_p50_ms": 1e3 * float(np.median(latency)),
    }


# --------------------------------------------------------------------------------------------
# neuralforecast, in its own environment.
# --------------------------------------------------------------------------------------------


def _nf_worker(request: dict) -> dict:
    """Runs in neuralforecast's environment (its source is sent to that interpreter): one
    family's windows/s per block and one-window predict p50."""
    import logging
    import time
    import warnings

    import numpy as np
    import pandas as pd
    import pytorch_lightning as pl
    import torch
    from neuralforecast import NeuralForecast
    from neuralforecast import models as nfm
    from neuralforecast.losses.pytorch import DistributionLoss, MQLoss

    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    horizon, input_size = request["horizon"], request["input_size"]
    batch, hidden, layers = request["windows_per_step"], request["hidden"], request["layers"]
    block, blocks = request["block_steps"], request["blocks"]
    df = pd.DataFrame({"unique_id": "OT", "ds": pd.to_datetime(request["ds"]), "y": request["y"]})
    stamps = []

    class Clock(pl.Callback):
        def on_train_batch_end(self, *args, **kwargs):
            stamps.append(time.perf_counter())

    common = dict(
        h=horizon,
        input_size=input_size,
        max_steps=block * (blocks + 1),
        windows_batch_size=batch,
        batch_size=32,
        val_check_steps=10**9,
        scaler_type="identity",
        random_seed=0,
        enable_progress_bar=False,
        enable_model_summary=False,
        logger=False,
        accelerator="cpu",
        callbacks=[Clock()],
    )
    quantiles = MQLoss(quantiles=list(request["quantiles"]))
    rnn = dict(encoder_n_layers=layers, encoder_hidden_size=hidden, decoder_hidden_size=hidden)
    family = request["family"]
    if family == "nhits":
        model = nfm.NHITS(loss=quantiles, **common)
    elif family == "nbeats":
        model = nfm.NBEATS(loss=quantiles, stack_types=["identity"] * 3, **common)
    elif family == "transformer":
        model = nfm.PatchTST(
            loss=quantiles,
            patch_len=16,
            stride=8,
            hidden_size=hidden,
            n_heads=4,
            encoder_layers=layers,
            linear_hidden_size=2 * hidden,
            **common,
        )
    elif family == "gru":
        model = nfm.GRU(loss=quantiles, **rnn, **common)
    elif family == "lstm_attention":
        model = nfm.LSTM(loss=quantiles, **rnn, **common)
    elif family == "tcn":
        dilations = [2**k for k in range(request["tcn_blocks"])]
        model = nfm.TCN(
            loss=quantiles,
            kernel_size=2,
            dilations=dilations,
            encoder_hidden_size=hidden,
            decoder_hidden_size=hidden,
            **common,
        )
    elif family == "deepar":
        model = nfm.DeepAR(
            loss=DistributionLoss("Normal", level=[80]),
            lstm_n_layers=layers,
            lstm_hidden_size=hidden,
            trajectory_samples=100,
            **common,
        )
    else:
        raise ValueError(family)
    forecaster = NeuralForecast(models=[model], freq="h")
    forecaster.fit(df)
    ends = np.asarray(stamps)[block - 1 :: block]  # the end of each block of steps
    rates = batch * block / np.diff(ends)
    window = df.tail(input_size)
    forecaster.predict(window)
    latency = []
    for _ in range(request["latency_repeats"]):
        start = time.perf_counter()
        forecaster.predict(window)
        latency.append(time.perf_counter() - start)
    return {
        "windows_per_s": [float(r) for r in rates],
        "forecast_p50_ms": 1e3 * float(np.median(latency)),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
    }


def neuralforecast_speed(nf_python: str, request: dict, timeout_s: int) -> dict:
    """``_nf_worker(request)`` in ``nf_python``'s environment."""
    source = inspect.getsource(_nf_worker)
    program = (
        "import json, sys\n"
        + source
        + "\nprint(json.dumps(_nf_worker(json.load(open(sys.argv[1])))))\n"
    )
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(request, handle)
    try:
        done = subprocess.run(
            [nf_python, "-c", program, handle.name],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    finally:
        os.unlink(handle.name)
    if done.returncode != 0:
        raise RuntimeError(f"neuralforecast run failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------------------------


def _range(values: list[float]) -> str:
    low, mid, high = np.percentile(values, [0, 50, 100])
    return f"{mid:,.0f} ({low:,.0f}-{high:,.0f})"


def table(report: dict) -> str:
    """The report as a markdown table (medians, with the block ranges)."""
    lines = [
        "| family | ntjax windows/s | neuralforecast windows/s | ratio | ntjax forecast p50 ms "
        "| nf forecast p50 ms | compile s | GFLOP/s (% of matmul peak) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    peak = report["matmul_peak_gflops"]
    for family, row in report["families"].items():
        ours = row["ntjax"]
        theirs = row.get("neuralforecast")
        rate = float(np.median(ours["windows_per_s"]))
        gflops = row["gflop"] * rate / report["windows_per_step"]
        ratio = nf_rate = nf_latency = "-"
        if theirs is not None:
            nf_rate = _range(theirs["windows_per_s"])
            ratio = f"{rate / float(np.median(theirs['windows_per_s'])):.2f}x"
            nf_latency = f"{theirs['forecast_p50_ms']:.1f}"
        lines.append(
            f"| {family} vs {NF_NAMES[family]} | {_range(ours['windows_per_s'])} | {nf_rate} "
            f"| {ratio} | {ours['forecast_p50_ms']:.2f} | {nf_latency} | {row['compile_s']:.1f} "
            f"| {gflops:.0f} ({100 * gflops / np.mean(peak):.0f}%) |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vs-neuralforecast", action="store_true")
    parser.add_argument(
        "--nf-python", default=os.environ.get("NF_PYTHON", "/tmp/nfvenv/bin/python")
    )
    parser.add_argument("--families", default=",".join(FAMILIES))
    parser.add_argument("--horizon", type=int, default=24)
    parser.add_argument("--input-size", type=int, default=168)
    parser.add_argument("--windows-per-step", type=int, default=64)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--block-steps", type=int, default=20)
    parser.add_argument("--blocks", type=int, default=5)
    parser.add_argument("--latency-repeats", type=int, default=50)
    parser.add_argument("--smoke", action="store_true", help="a tiny config, for the tests")
    parser.add_argument("--json", type=Path, help="also write the JSON report here")
    benchmark.add_hugepages_flag(parser)
    args = parser.parse_args()
    on = benchmark.use_hugepages(parser, args)  # the neuralforecast subprocess inherits it
    if args.smoke:
        args.horizon, args.input_size, args.windows_per_step = 4, 16, 8
        args.hidden, args.block_steps, args.blocks, args.latency_repeats = 8, 2, 2, 3
    families = [f for f in args.families.split(",") if f]
    for family in families:
        if family not in FAMILIES:
            parser.error(f"unknown family {family!r}; choose from {','.join(FAMILIES)}")
    df = nt.load_dataset("etth1", columns="OT")
    nf_available = args.vs_neuralforecast and Path(args.nf_python).exists()
    report: dict[str, Any] = {
        "config": {
            "data": "ETTh1 OT",
            "horizon": args.horizon,
            "input_size": args.input_size,
            "hidden": args.hidden,
            "layers": args.layers,
            "quantiles": QUANTILES,
            "scaler": "identity",
            "block_steps": args.block_steps,
            "blocks": args.blocks,
        },
        "windows_per_step": args.windows_per_step,
        "jax_backend": f"{jax.devices()[0].platform} x{len(jax.devices())}",
        "hugepages": on,
        "load_average_start": os.getloadavg(),
        "matmul_peak_gflops": [matmul_peak_gflops()],
        "families": {},
    }
    if args.vs_neuralforecast and not nf_available:
        report["neuralforecast"] = f"skipped: no interpreter at {args.nf_python}"
    for family in families:
        config = model_config(
            family,
            horizon=args.horizon,
            input_size=args.input_size,
            hidden=args.hidden,
            layers=args.layers,
        )
        row: dict[str, Any] = step_work(config, args.windows_per_step)
        row["ntjax"] = ntjax_speed(
            df,
            config,
            windows_per_step=args.windows_per_step,
            block_steps=args.block_steps,
            blocks=args.blocks,
            latency_repeats=args.latency_repeats,
        )
        row["load_average"] = os.getloadavg()[0]
        if nf_available:
            request = {
                "family": family,
                "horizon": args.horizon,
                "input_size": args.input_size,
                "windows_per_step": args.windows_per_step,
                "hidden": args.hidden,
                "layers": args.layers,
                "quantiles": list(QUANTILES),
                "block_steps": args.block_steps,
                "blocks": args.blocks,
                "latency_repeats": args.latency_repeats,
                "tcn_blocks": len(config.block_dilations) if family == "tcn" else 0,
                "ds": [str(d) for d in df["ds"].to_list()],
                "y": df["y"].to_list(),
            }
            row["neuralforecast"] = neuralforecast_speed(args.nf_python, request, 1800)
        report["families"][family] = row
        print(f"{family}: done (load {row['load_average']:.1f})", file=sys.stderr, flush=True)
    report["matmul_peak_gflops"].append(matmul_peak_gflops())
    report["load_average_end"] = os.getloadavg()
    print(f"huge pages (ntjax.hugepages, both sides): {'on' if report['hugepages'] else 'off'}")
    print(table(report))
    print(json.dumps(report))
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
