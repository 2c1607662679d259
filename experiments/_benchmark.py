"""Measurements behind ``experiments/bench.py`` and ``experiments/forecast_breakdown.py``:
training throughput, predict latency, forecast latency, peak memory. Timings exclude
compilation (a warm-up call runs first). The benchmark harness lives with the experiments, not
in the wheel; scripts in this folder import it as ``_benchmark``."""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np
import polars as pl

from ntjax import hugepages
from ntjax.config import NHITSConfig, OptimizerConfig, TrainingConfig
from ntjax.data import from_wide, load_dataset
from ntjax.data.frame import datetime_to_us, validate
from ntjax.predict import forecast, predict_quantiles
from ntjax.registry import ModelRecord, new_id
from ntjax.streaming import StreamingForecaster
from ntjax.train import Trainer, prepare, train
from ntjax.train.step import _jitted_init


def add_hugepages_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--no-hugepages",
        action="store_true",
        help="run without glibc's huge-page tunable (ntjax.hugepages), subprocesses too",
    )


def use_hugepages(parser: argparse.ArgumentParser, args: argparse.Namespace) -> bool:
    """Relaunches the benchmark with huge pages (as the ``ntjax`` command runs) unless
    ``--no-hugepages``, which also keeps them off in its subprocesses (neuralforecast's side);
    returns whether they are on."""
    if not args.no_hugepages:
        hugepages.relaunch()
    elif hugepages.active():
        parser.error("--no-hugepages: this process started with huge pages (GLIBC_TUNABLES)")
    else:
        os.environ[hugepages.OPT_OUT] = "0"
    return hugepages.active()


def _percentiles(samples: list[float]) -> dict[str, float]:
    ms = np.asarray(samples) * 1e3
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99))}


def time_calls(fn: Callable[[], Any], *, repeats: int, warmup: int = 3) -> list[float]:
    """Wall time of ``repeats`` calls of ``fn`` (each blocked until its result is ready)."""
    for _ in range(warmup):
        jax.block_until_ready(fn())
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        samples.append(time.perf_counter() - start)
    return samples


def bench_data(shared_data: Path) -> tuple[pl.DataFrame, str]:
    """The benchmarks' data: ETTm2's training split (the first 34,560 rows, 7 series) from
    ``shared_data/ETTm2.csv``, or the shipped ETTh1 when that file is absent; and its name."""
    path = shared_data / "ETTm2.csv"
    if path.exists():
        wide = pl.read_csv(path, try_parse_dates=True).head(34560)
        return from_wide(wide, time_col="date"), "ETTm2 (train split, 7 series)"
    return load_dataset("etth1"), "ETTh1 (shipped; ETTm2 not found)"


def training_throughput(
    df: Any,
    config: NHITSConfig,
    *,
    batch_size: int = 256,
    steps: int = 50,
    devices: int | None = None,
) -> dict[str, float]:
    """Windows per second of the jitted train step on ``df`` (compilation excluded)."""
    training = TrainingConfig(
        max_steps=steps + 1, batch_size=batch_size, progress=False, devices=devices
    )
    trainer = Trainer(config, training, OptimizerConfig())
    data = trainer.replicate(prepare(df, config, training).data)
    key = jax.random.key(0)
    state = trainer.init_state(key)
    compile_start = time.perf_counter()
    state, loss = trainer.step(state, data, key)
    jax.block_until_ready(loss)
    compile_s = time.perf_counter() - compile_start
    start = time.perf_counter()
    for _ in range(steps):
        state, loss = trainer.step(state, data, key)
    jax.block_until_ready(loss)
    elapsed = time.perf_counter() - start
    return {
        "windows_per_s": steps * batch_size / elapsed,
        "step_ms": 1e3 * elapsed / steps,
        "first_step_s": compile_s,
        "devices": trainer.n_devices,
        "final_loss": float(loss),
    }


def untrained_record(df: Any, config: NHITSConfig, *, seed: int = 0) -> ModelRecord:
    """A record with freshly initialised parameters and fitted scaler (for latency timing)."""
    prepared = prepare(df, config, TrainingConfig(max_steps=1, progress=False))
    spec = Trainer(config, TrainingConfig(max_steps=1, progress=False), OptimizerConfig()).spec
    params = jax.device_put(spec.init(config, jax.random.key(seed)))
    return ModelRecord(
        id=new_id(), kind=config.kind, config=config, params=params, scaler=prepared.scaler
    )


def predict_latency(record: ModelRecord, *, repeats: int = 300) -> dict[str, float]:
    """Warm latency of the jitted predict function on one window."""
    config = record.config
    inputs = {"y": np.random.default_rng(0).normal(size=(1, config.input_size)).astype(np.float32)}
    inputs = jax.device_put(inputs)
    samples = time_calls(lambda: predict_quantiles(config, record.params, inputs), repeats=repeats)
    return _percentiles(samples)


def model_latency_after_gap(
    record: ModelRecord, *, n_windows: int, gap_ms: float = 1.0, repeats: int = 300
) -> dict[str, float]:
    """The jitted predict function on ``n_windows`` windows, called back to back and after
    ``gap_ms`` of busy host work before each call (as inside ``nt.forecast``, whose host side
    runs between model calls)."""
    config = record.config
    rng = np.random.default_rng(0)
    inputs = {"y": rng.normal(size=(n_windows, config.input_size)).astype(np.float32)}

    def call() -> jax.Array:
        return predict_quantiles(config, record.params, inputs)

    def after_gap() -> jax.Array:
        end = time.perf_counter() + gap_ms / 1e3
        while time.perf_counter() < end:
            pass
        start = time.perf_counter()
        jax.block_until_ready(call())
        return time.perf_counter() - start

    back_to_back = np.median(time_calls(call, repeats=repeats))
    gapped = np.median([after_gap() for _ in range(repeats)])
    return {
        "back_to_back_p50_ms": float(back_to_back * 1e3),
        "after_gap_p50_ms": float(gapped * 1e3),
    }


def forecast_latency(record: ModelRecord, df: Any, *, repeats: int = 100) -> dict[str, float]:
    """Warm latency of ``nt.forecast`` on a frame (validation, packing, predict, frame)."""
    frame = validate(df)
    samples = time_calls(lambda: forecast(record, frame, levels=(80,)), repeats=repeats)
    return _percentiles(samples)


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def tail_rows(df: pl.DataFrame, n: int) -> pl.DataFrame:
    """The last ``n`` rows of each series."""
    return df.filter(pl.int_range(pl.len()).over("unique_id") >= pl.len().over("unique_id") - n)


def machine_reference(*, repeats: int = 20) -> dict[str, float]:
    """How fast this machine is right now, to read the other figures against: the time of a
    fixed pure-Python loop (1e5 additions), a float32 512x512 matrix product through XLA, and
    a 64 MB numpy sum (memory bandwidth). On a shared VM these move together with every
    latency figure, by up to 2x from minute to minute."""

    def python_loop() -> int:
        total = 0
        for i in range(100_000):
            total += i
        return total

    matrix = jax.device_put(np.ones((512, 512), np.float32))
    product = jax.jit(lambda a: a @ a)
    big = np.ones(8_000_000)  # 64 MB of float64
    loop = np.median(time_calls(python_loop, repeats=repeats, warmup=1))
    matmul = np.median(time_calls(lambda: product(matrix), repeats=repeats))
    total = np.median(time_calls(big.sum, repeats=repeats, warmup=1))
    return {
        "python_loop_ms": float(loop * 1e3),
        "matmul_512_gflops": float(2 * 512**3 / matmul / 1e9),
        "memory_gb_per_s": float(big.nbytes / total / 1e9),
    }


def backend() -> str:
    devices = jax.devices()
    return f"{devices[0].platform} x{len(devices)} ({devices[0].device_kind})"


def neuralforecast_throughput(
    df: Any, config: NHITSConfig, *, batch_size: int = 256, steps: int = 50
) -> dict[str, float | str]:
    """neuralforecast's NHITS windows/s on the same data and config, when it is installed.

    After a one-step warm-up fit, fit time is measured at ``steps`` and ``2 * steps``
    optimisation steps; the difference removes neuralforecast's fixed setup cost, leaving the
    per-step rate.
    """
    try:
        from neuralforecast import NeuralForecast
        from neuralforecast.losses.pytorch import MQLoss
        from neuralforecast.models import NHITS
    except ImportError:
        return {"skipped": "neuralforecast is not installed (pip install neuralforecast)"}
    pandas_df = validate(df).to_pandas()

    def fit_seconds(max_steps: int) -> float:
        model = NHITS(
            h=config.horizon,
            input_size=config.input_size,
            loss=MQLoss(quantiles=list(config.quantiles)),
            max_steps=max_steps,
            windows_batch_size=batch_size,
            batch_size=32,
            val_check_steps=10**9,
            enable_progress_bar=False,
            enable_model_summary=False,
            logger=False,
            accelerator="cpu",
        )
        start = time.perf_counter()
        NeuralForecast(models=[model], freq="15min").fit(pandas_df)
        return time.perf_counter() - start

    fit_seconds(1)  # the first fit pays one-off import and initialisation costs
    short, long = fit_seconds(steps), fit_seconds(2 * steps)
    per_step = max(long - short, 1e-9) / steps
    return {"windows_per_s": batch_size / per_step, "step_ms": 1e3 * per_step}


def streaming_latency(
    record: ModelRecord, df: Any, *, n_series: int, repeats: int = 300
) -> dict[str, float]:
    """Warm latency of one ``StreamingForecaster.update_arrays`` tick carrying a new point for
    each of ``n_series`` series (copies of the series of ``df`` when it has fewer)."""
    frame = tail_rows(validate(df), record.config.input_size + 10)  # before copying
    ids = frame["unique_id"].unique(maintain_order=True).to_list()
    copies = [
        frame.filter(pl.col("unique_id") == ids[i % len(ids)]).with_columns(
            pl.lit(f"{ids[i % len(ids)]}#{i}").alias("unique_id")
        )
        for i in range(n_series)
    ]
    history = pl.concat(copies)
    stream = StreamingForecaster(record, history)
    tick_ids = list(stream.ids)
    last = history.group_by("unique_id", maintain_order=True).agg(
        pl.col("ds").last(), pl.col("y").last()
    )
    step = np.diff(datetime_to_us(history["ds"][:2]))[0]
    stamps = datetime_to_us(last["ds"])
    values = last["y"].to_numpy()[:, None]
    order = [last["unique_id"].to_list().index(u) for u in tick_ids]
    stamps, values = stamps[order], values[order]
    counter = iter(range(1, 10**9))

    def tick() -> np.ndarray:
        k = next(counter)
        return stream.update_arrays(tick_ids, stamps + k * step, values)

    return _percentiles(time_calls(tick, repeats=repeats))


def ensemble_training_time(
    df: Any, config: NHITSConfig, *, members: int = 8, steps: int = 200, batch_size: int = 64
) -> dict[str, float]:
    """Wall time of ``members`` models trained as one vmapped program
    (``nt.train(..., ensemble_size=K)``) against ``members`` sequential runs with seeds
    0..K-1 (the same K models: ensemble member k is the run with seed k). ``*_s`` include
    the compilation of each side's training program (the parameter init program, which both
    share, is compiled before either is timed); ``*_warm_s`` repeat both with every program
    compiled, as in a process that trains many ensembles or one with the compilation cache."""
    jax.block_until_ready(_jitted_init(config, jax.random.key(0)))

    def training(seed: int) -> TrainingConfig:
        return TrainingConfig(
            max_steps=steps,
            batch_size=batch_size,
            val_check_steps=steps,
            seed=seed,
            progress=False,
            devices=1,
        )

    report: dict[str, float] = {}
    for suffix in ("", "_warm"):
        start = time.perf_counter()
        train(df, config, training(0), ensemble_size=members)
        report[f"vmapped{suffix}_s"] = time.perf_counter() - start
        start = time.perf_counter()
        for seed in range(members):
            train(df, config, training(seed))
        report[f"sequential{suffix}_s"] = time.perf_counter() - start
        report[f"speedup{suffix}"] = report[f"sequential{suffix}_s"] / report[f"vmapped{suffix}_s"]
    return report
