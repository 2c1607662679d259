"""Compression: float32, bfloat16 and int8 copies of one NHITS, a K=8 ensemble, its distilled
student at 1/4 width and the same student trained alone, on the long-horizon protocol.

Command:
    nice -n 15 python experiments/compression.py [--datasets ETTm2,ETTh1] [--max-steps 1000]
        [--student-steps 3000] [--alpha A] [--merge earlier.json] [--smoke]
    nice -n 15 python experiments/compression.py --select [--datasets ETTm2] [--alphas 0.5,0.7,1.0]
        [--schedules constant,cosine] [--seeds 1,2,3]

Protocol (as ``experiments/ett_long_horizon.py``): every column of ../shared/data/<dataset>.csv
is a series scaled with its training rows' statistics (``ntjax.data.benchmarks``), splits
34560/11520/11520 (ETTm2) and 8640/2880/2880 (ETTh1), horizon 96, input 480, NHITS with 2 x 512
units, the default five quantiles (for wql and 80/95% coverage), every test window with stride 1
(``nt.evaluate(..., step_size=1)``). Budget (2 shared CPU cores): the teachers (the float32
model the int8/bf16 copies come from, and the K=8 ensemble, one vmapped program) train at most
``--max-steps`` steps (default 1000) of 128 windows, validation every 50 steps with patience 4.
The student (``mlp_units`` 128, a quarter of the teacher's width) is distilled by
``nt.distill`` with its defaults (alpha 0.7; Adam 1e-3 with cosine decay) from the ensemble's
forecasts of every ``--window-stride``-th training window (4 on ETTm2, 1 on ETTh1) for at most
``--student-steps`` (default 3000) with the same validation and patience; the "alone" student
is the same config trained on the data by ``nt.train`` with the same steps, optimizer and
schedule. ``--merge`` keeps the other datasets of an earlier JSON in the tables (to run one
dataset at a time).

``--select`` writes, instead of the table, the validation and test MAE (every 4th window) of
distilled and alone students over alphas x schedules x seeds from one ensemble, to
``<output>.select.jsonl``: nt.distill's defaults were chosen on its validation column only
(docs/compression.md has the table).

Measured per row: artifact bytes (the two files in the store), resident bytes (the loaded
record's parameter arrays), one-window latency (p50 of the jitted predict of one window, warm),
7-series latency (p50 of ``nt.forecast`` on the 7-series frame, warm), test MAE, wql and 80/95%
coverage. Also the matmul timing of one 512 x 512 layer at batch 1 and 256: float32,
dequantise-int8-then-float32, int8 x int8 -> int32 (dynamic per-row activation scales) and
bfloat16, each p50 of a jitted call.

Expected (measured 2026-12-06/07 on the 2 shared CPU cores under load, 1427 s for ETTm2 and
669 s for ETTh1; experiments/results/compression.md has the tables):
  * int8 artifacts 0.261x the float32 ones (2.16 MB against 8.28 MB), MAE -0.003% (ETTm2) and
    +0.06% (ETTh1), wql +0.03% / +0.05%, coverage unchanged; bfloat16 0.506x, MAE -0.02% /
    +0.003%. Resident bytes shrink the same way (2.08 MB against 8.20 MB).
  * the K=8 ensemble: MAE 0.2569 (ETTm2) / 0.4366 (ETTh1); its distilled 1/4-width student
    0.2594 / 0.4429 (+0.95% / +1.43%: within the 2% target), better than the same student
    trained alone, 0.2716 / 0.4509 (-4.5% / -1.8%); one-window latency 42x / 37x lower than
    the ensemble's, nt.forecast of 7 series 8.8x / 9.3x lower with raw heads and only 3.1x /
    2.6x with the default rolling calibration (its per-call host work dominates). The previous
    budget (every model 300 steps, alpha 0.5, constant rate) gave +5.3% / +4.9%.
  * ``--select`` (seeds 1-3, 3000-step students, every 4th window, raw heads): validation MAE
    relative to the ensemble's, alpha 0.5 / 0.7 / 1.0 with cosine decay, +1.12% / +1.15% /
    +2.16% (ETTm2) and +0.47% / -0.22% / -0.58% (ETTh1); docs/compression.md has the table.
  * one 512 x 512 layer: at batch 1 float32 50 us, dequantise-int8-then-float32 89 us,
    int8 x int8 -> int32 102 us; at batch 256: 648 / 679 / 582 us, bfloat16 x bfloat16 460 us
    (under load; an earlier run: 744 / 810 / 729 / 529 us). So int8 saves storage and memory,
    not time, on XLA:CPU; quantised records dequantise inside the jitted program (about
    +0.2-0.75 ms per one-window call for NHITS's 2.2M weights).
Writes experiments/results/compression.md and compression.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import math
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

# This script's name is the standard library's ``compression`` package (Python 3.14), which
# jax probes (``from compression import zstd``): any script run from experiments/ imports this
# file under that name, so it refuses to be imported and the probe sees an ImportError.
if __name__ != "__main__":
    raise ImportError("experiments/compression.py is a script, not the compression package")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import ntjax as nt  # noqa: E402
from ntjax.crossval import drop_last  # noqa: E402
from ntjax.data.benchmarks import long_horizon_frame, published_split, read_benchmark_csv  # noqa: E402
from ntjax.models import quantized  # noqa: E402
from ntjax.predict import predict_quantiles  # noqa: E402
from ntjax.predict.conformal import history_needed  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "experiments" / "results"
DATASETS = ("ETTm2", "ETTh1")
WINDOW_STRIDE = {"ETTm2": 4, "ETTh1": 1}


def p50(call: Callable[[], object], *, repeats: int) -> float:
    """Median seconds of ``call`` after two warm-up calls."""
    for _ in range(2):
        jax.block_until_ready(call())
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(call())
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def matmul_timing(*, width: int = 512, batches: Sequence[int] = (1, 256), repeats: int = 200):
    """p50 seconds of one ``[batch, width] @ [width, width]`` layer in float32, dequantised int8,
    integer int8 (int32 accumulation), dequantised bfloat16 and native bfloat16."""
    key = jax.random.key(0)
    weight = jax.random.normal(key, (width, width), jnp.float32) / math.sqrt(width)
    node = quantized.quantize_int8(weight)
    weight_bf16 = weight.astype(jnp.bfloat16)

    @jax.jit
    def f32(x, w):
        return x @ w

    @jax.jit
    def dequant_int8(x, q, s):
        return x @ (q.astype(jnp.float32) * s)

    @jax.jit
    def integer_int8(x, q, s):
        x_scale = jnp.maximum(jnp.max(jnp.abs(x), axis=1, keepdims=True), 1e-12) / 127
        x_q = jnp.clip(jnp.round(x / x_scale), -127, 127).astype(jnp.int8)
        acc = jax.lax.dot_general(
            x_q, q, (((1,), (0,)), ((), ())), preferred_element_type=jnp.int32
        )
        return acc.astype(jnp.float32) * x_scale * s

    @jax.jit
    def dequant_bf16(x, w):
        return x @ w.astype(jnp.float32)

    @jax.jit
    def native_bf16(x, w):
        return jnp.dot(x.astype(jnp.bfloat16), w, preferred_element_type=jnp.float32)

    rows = []
    q, s = node["qvalue"], node["qscale"]
    for batch in batches:
        x = jax.random.normal(jax.random.fold_in(key, batch), (batch, width), jnp.float32)
        row = {
            "batch": batch,
            "f32_us": p50(lambda x=x: f32(x, weight), repeats=repeats) * 1e6,
            "dequant_int8_us": p50(lambda x=x: dequant_int8(x, q, s), repeats=repeats) * 1e6,
            "integer_int8_us": p50(lambda x=x: integer_int8(x, q, s), repeats=repeats) * 1e6,
            "dequant_bf16_us": p50(lambda x=x: dequant_bf16(x, weight_bf16), repeats=repeats) * 1e6,
            "native_bf16_us": p50(lambda x=x: native_bf16(x, weight_bf16), repeats=repeats) * 1e6,
        }
        exact = np.asarray(f32(x, weight))
        row["integer_int8_rel_err"] = float(
            np.abs(np.asarray(integer_int8(x, q, s)) - exact).max() / np.abs(exact).max()
        )
        row["dequant_int8_rel_err"] = float(
            np.abs(np.asarray(dequant_int8(x, q, s)) - exact).max() / np.abs(exact).max()
        )
        rows.append(row)
    return rows


# As measured (before nt.train's default recipe): the teachers at a constant rate, NHITS
# without window normalisation.
TEACHER_OPTIMIZER = nt.OptimizerConfig(learning_rate=1e-3, schedule="constant")


def teacher_config(*, horizon: int, input_size: int, mlp_units: int) -> nt.NHITSConfig:
    return nt.NHITSConfig(
        horizon=horizon,
        input_size=input_size,
        n_blocks=(1, 1, 1),
        mlp_units=mlp_units,
        pool_kernel_sizes=(2, 2, 1),
        freq_downsample=(24, 12, 1),
        window_norm=False,
        forecast_init="lecun_normal",
    )


def _artifact_bytes(store: nt.Store, model_id: str) -> int:
    return sum(p.stat().st_size for p in store._model_dir(model_id).iterdir() if p.is_file())


def measure(
    name: str, record: nt.ModelRecord, store: nt.Store, frame, test_size: int, *, repeats: int
):
    """One row of the table for ``record`` (saved, reloaded, timed and evaluated)."""
    store.save(record)
    loaded = store.load(record.id)
    config = loaded.config
    window = {"y": np.zeros((1, config.input_size), np.float32)}
    one = p50(lambda: predict_quantiles(config, loaded.params, window), repeats=repeats)
    # nt.forecast on the rows it reads: the input window, or what a rolling-calibrated record
    # scores its offsets on (input + window + horizon: it predicts those cutoffs each call).
    tail = frame.group_by("unique_id", maintain_order=True).tail(
        max(config.input_size, history_needed(loaded))
    )
    seven = p50(lambda: nt.forecast(loaded, tail), repeats=max(5, repeats // 10))
    raw = loaded.uncalibrated()
    raw_tail = frame.group_by("unique_id", maintain_order=True).tail(config.input_size)
    seven_raw = p50(lambda: nt.forecast(raw, raw_tail), repeats=max(5, repeats // 4))
    scores = nt.evaluate(loaded, frame, test_size=test_size, step_size=1, levels=(80, 95))
    return {
        "model": name,
        "kind": record.kind,
        "artifact_bytes": _artifact_bytes(store, record.id),
        "resident_bytes": quantized.nbytes(loaded.params),
        "one_window_ms": one * 1e3,
        "seven_series_ms": seven * 1e3,
        "seven_series_raw_ms": seven_raw * 1e3,
        "intervals": loaded.intervals["method"],
        "mae": scores["mae"],
        "wql": scores["wql"],
        "coverage_80": scores["coverage_80"],
        "coverage_95": scores["coverage_95"],
        "in_sample": bool(scores["in_sample"]),
    }


def _protocol(dataset: str, *, horizon: int, max_steps: int, seed: int):
    """The frame, its split, the training frame (test rows dropped) and the teachers' config."""
    wide = read_benchmark_csv(SHARED / f"{dataset}.csv")
    split = published_split(dataset, wide.height)
    frame = long_horizon_frame(wide, time_col="date", split=split)
    training = nt.TrainingConfig(
        max_steps=max_steps,
        batch_size=128,
        val_size=split.val,
        val_check_steps=min(50, max_steps),
        early_stopping_patience=4,
        scaler="identity",  # the protocol already scaled every series
        seed=seed,
        progress=False,
    )
    return frame, split, drop_last(frame, split.test), training


def _with_steps(training: nt.TrainingConfig, steps: int, **changes) -> nt.TrainingConfig:
    return dataclasses.replace(training, max_steps=steps, val_check_steps=min(50, steps), **changes)


def select(
    dataset: str,
    *,
    max_steps: int,
    student_steps: Sequence[int],
    alphas: Sequence[float],
    schedules: Sequence[str],
    seeds: Sequence[int],
    horizon: int = 96,
    mlp_units: int = 512,
    ensemble_size: int = 8,
    window_stride: int | None = None,
    step_size: int = 4,
) -> list[dict]:
    """Validation and test MAE of distilled students and the same students alone, for every
    student budget x alpha x schedule x seed, from one ensemble (seed 1, ``max_steps``).

    The settings are chosen on ``val_mae`` (the validation rows, which no model fits; every
    ``step_size``-th window; raw quantile heads, no interval calibration); ``test_mae`` is
    reported, never used to choose.
    """
    frame, split, train_val, training = _protocol(
        dataset, horizon=horizon, max_steps=max_steps, seed=1
    )
    config = teacher_config(horizon=horizon, input_size=5 * horizon, mlp_units=mlp_units)
    student_config = dataclasses.replace(config, mlp_units=max(1, mlp_units // 4))
    stride = window_stride or WINDOW_STRIDE.get(dataset, 1)
    ensemble = nt.train(train_val, config, training, TEACHER_OPTIMIZER, ensemble_size=ensemble_size)

    def mae(record: nt.ModelRecord) -> dict:
        # The raw heads: quicker to score than with the rolling calibration (which moves
        # the MAE too, by up to about 0.4% here).
        raw = record.uncalibrated()
        return {
            f"{part}_mae": nt.evaluate(
                raw, df, test_size=size, step_size=step_size, levels=(80,), allow_in_sample=True
            )["mae"]
            for part, df, size in (("val", train_val, split.val), ("test", frame, split.test))
        }

    teacher = {"ensemble_" + k: v for k, v in mae(ensemble).items()}
    rows = []
    for steps, schedule, seed in itertools.product(student_steps, schedules, seeds):
        student_training = _with_steps(training, steps, seed=seed)
        optimizer = nt.OptimizerConfig(schedule=schedule)
        alone = nt.train(train_val, student_config, student_training, optimizer=optimizer)
        alone_scores = {"alone_" + k: v for k, v in mae(alone).items()}
        for alpha in alphas:
            student = nt.distill(
                ensemble,
                train_val,
                student_config,
                training=student_training,
                optimizer=optimizer,
                alpha=alpha,
                window_stride=stride,
            )
            row = {
                "dataset": dataset,
                "student_steps": steps,
                "schedule": schedule,
                "seed": seed,
                "alpha": alpha,
                "steps_run": student.metrics["steps"],
                "alone_steps_run": alone.metrics["steps"],
                **teacher,
                **{"student_" + k: v for k, v in mae(student).items()},
                **alone_scores,
            }
            print(json.dumps(row), flush=True)
            rows.append(row)
    return rows


def run(
    dataset: str,
    *,
    max_steps: int,
    student_steps: int | None = None,
    alpha: float | None = None,
    horizon: int = 96,
    mlp_units: int = 512,
    ensemble_size: int = 8,
    test_rows: int | None = None,
    window_stride: int | None = None,
    repeats: int = 200,
    seed: int = 1,
    store_root: str | None = None,
) -> dict:
    started = time.perf_counter()
    frame, split, train_val, training = _protocol(
        dataset, horizon=horizon, max_steps=max_steps, seed=seed
    )
    test_size = split.test if test_rows is None else test_rows
    config = teacher_config(horizon=horizon, input_size=5 * horizon, mlp_units=mlp_units)
    student_config = dataclasses.replace(config, mlp_units=max(1, mlp_units // 4))
    # The students (distilled and alone) share one budget, which may be longer than the
    # teachers': a student is a quarter of the cost per step.
    student_steps = student_steps or max_steps
    student_training = _with_steps(training, student_steps)
    stride = window_stride or WINDOW_STRIDE.get(dataset, 1)
    timings = {}
    tick = time.perf_counter()
    single = nt.train(train_val, config, training, TEACHER_OPTIMIZER)
    timings["train_single_s"] = time.perf_counter() - tick
    tick = time.perf_counter()
    ensemble = nt.train(train_val, config, training, TEACHER_OPTIMIZER, ensemble_size=ensemble_size)
    timings["train_ensemble_s"] = time.perf_counter() - tick
    tick = time.perf_counter()
    student = nt.distill(
        ensemble,
        train_val,
        student_config,
        training=student_training,
        window_stride=stride,
        **({} if alpha is None else {"alpha": alpha}),  # None: nt.distill's default
    )
    timings["distill_s"] = time.perf_counter() - tick
    tick = time.perf_counter()
    # The same student on the data alone: same steps, same optimizer and schedule (nt.distill's
    # default for students, recorded on the distilled record).
    alone = nt.train(train_val, student_config, student_training, optimizer=student.optimizer)
    timings["train_alone_s"] = time.perf_counter() - tick
    bf16 = nt.quantize(single, "bfloat16")
    tick = time.perf_counter()
    int8 = nt.quantize(single, "int8", calibration_df=frame, test_size=test_size, step_size=1)
    timings["quantize_gate_s"] = time.perf_counter() - tick
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        store = nt.Store(store_root or folder)
        named = [
            ("f32", single),
            ("bf16", bf16),
            ("int8", int8),
            (f"ensemble K={ensemble_size}", ensemble),
            ("distilled student 1/4", student),
            ("student alone 1/4", alone),
        ]
        for name, record in named:
            tick = time.perf_counter()
            rows.append(measure(name, record, store, frame, test_size, repeats=repeats))
            timings[f"measure_{name}_s"] = time.perf_counter() - tick
    return {
        "dataset": dataset,
        "horizon": horizon,
        "input_size": 5 * horizon,
        "mlp_units": mlp_units,
        "ensemble_size": ensemble_size,
        "max_steps": max_steps,
        "student_steps": student_steps,
        "alpha": student.extra["distillation"]["alpha"],
        "student_optimizer": dataclasses.asdict(student.optimizer),
        "batch_size": training.batch_size,
        "window_stride": stride,
        "test_size": test_size,
        "steps": {
            "f32": single.metrics["steps"],
            "ensemble": ensemble.metrics["steps"],
            "student": student.metrics["steps"],
            "alone": alone.metrics["steps"],
        },
        "int8_gate": {k: v for k, v in int8.metrics.items() if k.startswith("quantize_")},
        "rows": rows,
        "timings": timings,
        "seconds": time.perf_counter() - started,
    }


def _ratio(a: float, b: float) -> float:
    return a / b if b else math.nan


def _optimizer(fields: dict) -> str:
    return f"{fields['name']} lr {fields['learning_rate']:g}, {fields['schedule']} schedule"


def markdown(results: Sequence[dict], matmuls: Sequence[dict]) -> str:
    lines = [
        "# Compression",
        "",
        "Written by `python experiments/compression.py` (see its docstring).",
        "",
    ]
    for result in results:
        rows = {r["model"]: r for r in result["rows"]}
        f32 = rows["f32"]
        ensemble = next(r for name, r in rows.items() if name.startswith("ensemble"))
        student, alone = rows["distilled student 1/4"], rows["student alone 1/4"]
        lines += [
            f"## {result['dataset']}, horizon {result['horizon']}, input {result['input_size']}",
            "",
            f"Budget: at most {result['max_steps']} steps of {result['batch_size']} windows per "
            f"teacher (f32 and the ensemble), {result['student_steps']} per student (distilled "
            f"and alone, optimizer {_optimizer(result['student_optimizer'])}); steps run: "
            f"{result['steps']}; NHITS {result['mlp_units']} units, student "
            f"{result['mlp_units'] // 4}; distilled with alpha {result['alpha']} from every "
            f"{result['window_stride']}-th training window; test {result['test_size']} rows "
            f"per series, stride 1; {result['seconds']:.0f} s in all.",
            "",
            "| model | artifact bytes | resident bytes | one window ms | 7 series ms "
            "| 7 series raw ms | MAE | wql | cov 80 | cov 95 |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in result["rows"]:
            lines.append(
                f"| {r['model']} | {r['artifact_bytes']:,} | {r['resident_bytes']:,} | "
                f"{r['one_window_ms']:.3f} | {r['seven_series_ms']:.2f} | "
                f"{r['seven_series_raw_ms']:.2f} | {r['mae']:.4f} | "
                f"{r['wql']:.4f} | {r['coverage_80']:.3f} | {r['coverage_95']:.3f} |"
            )
        gate = result["int8_gate"]
        int8_ratio = _ratio(rows["int8"]["artifact_bytes"], f32["artifact_bytes"])
        student_vs_ensemble = _ratio(student["mae"], ensemble["mae"]) - 1
        raw_ratio = _ratio(ensemble["seven_series_raw_ms"], student["seven_series_raw_ms"])
        lines += [
            "",
            f"- int8 artifact / f32: {int8_ratio:.3f}"
            f"; bf16 / f32: {_ratio(rows['bf16']['artifact_bytes'], f32['artifact_bytes']):.3f}.",
            f"- int8 MAE change vs f32: {_ratio(rows['int8']['mae'], f32['mae']) - 1:+.3%}, wql "
            f"{_ratio(rows['int8']['wql'], f32['wql']) - 1:+.3%} (the record's own gate: MAE "
            f"{gate.get('quantize_mae_change', math.nan):+.3%}, wql "
            f"{gate.get('quantize_wql_change', math.nan):+.3%}); bf16 MAE "
            f"{_ratio(rows['bf16']['mae'], f32['mae']) - 1:+.3%}.",
            f"- distilled student MAE vs ensemble: {student_vs_ensemble:+.2%}"
            f"; vs the student alone: {_ratio(student['mae'], alone['mae']) - 1:+.2%}.",
            f"- ensemble / student latency: one window "
            f"{_ratio(ensemble['one_window_ms'], student['one_window_ms']):.1f}x, 7 series "
            f"{_ratio(ensemble['seven_series_ms'], student['seven_series_ms']):.1f}x "
            f"(raw heads {raw_ratio:.1f}x).",
            "",
        ]
    lines += [
        "## One 512 x 512 layer on XLA:CPU (p50 microseconds of a jitted call)",
        "",
        "| batch | f32 | dequant int8 -> f32 | int8 x int8 -> int32 | dequant bf16 -> f32 | "
        "bf16 x bf16 -> f32 | rel err dequant int8 | rel err integer int8 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for m in matmuls:
        lines.append(
            f"| {m['batch']} | {m['f32_us']:.1f} | {m['dequant_int8_us']:.1f} | "
            f"{m['integer_int8_us']:.1f} | {m['dequant_bf16_us']:.1f} | {m['native_bf16_us']:.1f} "
            f"| {m['dequant_int8_rel_err']:.2e} | {m['integer_int8_rel_err']:.2e} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--max-steps", type=int, default=1000, help="teachers' steps")
    parser.add_argument("--student-steps", type=int, default=3000, help="each student's steps")
    parser.add_argument("--alpha", type=float, help="teacher's weight (nt.distill's default)")
    parser.add_argument("--smoke", action="store_true", help="tiny models, few rows (a test)")
    parser.add_argument("--output", default=str(RESULTS / "compression"), help="path stem")
    parser.add_argument("--store", help="keep the models in this store (default: a temporary one)")
    parser.add_argument(
        "--merge", help="an earlier JSON of this script: its other datasets join this run's tables"
    )
    parser.add_argument(
        "--select",
        action="store_true",
        help="instead of the table: validation/test MAE of students over alphas x schedules x "
        "seeds (writes <output>.select.jsonl)",
    )
    parser.add_argument("--alphas", default="0.5,0.7,1.0", help="with --select")
    parser.add_argument("--schedules", default="constant,cosine", help="with --select")
    parser.add_argument("--seeds", default="1,2,3", help="with --select")
    args = parser.parse_args(argv)
    datasets = args.datasets.split(",")
    if args.select:
        rows = [
            row
            for dataset in datasets
            for row in select(
                dataset,
                max_steps=args.max_steps,
                student_steps=(args.student_steps,),
                alphas=[float(a) for a in args.alphas.split(",")],
                schedules=args.schedules.split(","),
                seeds=[int(s) for s in args.seeds.split(",")],
            )
        ]
        path = Path(f"{args.output}.select.jsonl")
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as out:
            out.writelines(json.dumps(row) + "\n" for row in rows)
        return
    options = {
        "max_steps": args.max_steps,
        "student_steps": args.student_steps,
        "alpha": args.alpha,
        "store_root": args.store,
    }
    if args.smoke:
        options = {
            "max_steps": 4,
            "student_steps": 6,
            "alpha": args.alpha,
            "horizon": 8,
            "mlp_units": 16,
            "ensemble_size": 2,
            "test_rows": 24,
            "window_stride": 64,
            "repeats": 5,
            "store_root": args.store,
        }
    merged = json.loads(Path(args.merge).read_text())["results"] if args.merge else []
    results = [r for r in merged if r["dataset"] not in datasets]
    for dataset in datasets:
        result = run(dataset, **options)
        results.append(result)
        print(json.dumps({k: v for k, v in result.items() if k != "rows"}), flush=True)
        for row in result["rows"]:
            print(json.dumps({"dataset": dataset, **row}), flush=True)
    matmuls = matmul_timing(repeats=20 if args.smoke else 300)
    for m in matmuls:
        print(json.dumps({"matmul": m}), flush=True)
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.with_suffix(".md").write_text(markdown(results, matmuls))
    output.with_suffix(".json").write_text(
        json.dumps({"results": results, "matmul": matmuls}, indent=1)
    )


if __name__ == "__main__":
    main()
