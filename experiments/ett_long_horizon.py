"""NHITS on the long-horizon benchmarks (ETTh1, ETTm1, ETTm2, exchange_rate), next to the
published numbers.

Command:
    nice -n 15 python experiments/ett_long_horizon.py [--datasets ETTm2,ETTh1,exchange_rate,ETTm1]
        [--horizons 96,192,336,720] [--max-steps 1000] [--seed 1]

Protocol (Informer/Autoformer/NHITS): every column of ../shared/data/<dataset>.csv is a series,
scaled with the mean and standard deviation of its training rows; splits 8640/2880/2880 rows
(ETTh1), 34560/11520/11520 (ETTm1, ETTm2), 70/10/20% (exchange_rate: 5311/760/1517); input
5 x horizon; early stopping on the validation rows; then every test window with stride 1
(``nt.evaluate(..., step_size=1)``); MSE and MAE on the scaled data, averaged over series,
windows and steps. ``val_mse``/``val_mae`` are the same metrics on the validation rows (cutoffs
strided to at most 256 per series), the numbers the configuration was chosen on.

Model and training follow the NHITS paper's search space (cchallu/n-hits,
nhits_multivariate.py): 3 stacks of 1 block, 2 x 512 ReLU layers, max pooling, linear
interpolation; MAE loss (the pinball loss of the median, quantiles=(0.5,)); Adam, learning rate
1e-3 halved 3 times over ``max_steps`` (step schedule); 256 windows per step; 1000 steps;
validation every 50 steps with patience 10; no extra scaler (the protocol already scaled).
Pooling kernels and ``freq_downsample`` come from ``ARCHITECTURES`` (per horizon); the paper
picks them per dataset and horizon by hyperopt on validation MAE. Ours were picked on ETTm2's
validation MAE (see ``ARCHITECTURES``) and reused for the other datasets.

Published numbers (MSE / MAE for horizons 96 / 192 / 336 / 720):
  * ``paper``: Challu et al., "N-HiTS", AAAI 2023, Table 2 (main multivariate table), ETTm2
    0.176/0.255, 0.245/0.305, 0.295/0.346, 0.401/0.413. The paper's Table 2 also has Exchange,
    but its text could not be retrieved here, so that column is left empty for exchange_rate.
  * ``neuralforecast``: Nixtla/neuralforecast, experiments/long_horizon/README.md (NHITS-MSE,
    NHITS-MAE; AutoNHITS with input 7 x horizon): ETTh1 0.378/0.393, 0.427/0.436, 0.458/0.484,
    0.561/0.501; ETTm1 0.302/0.350, 0.347/0.383, 0.369/0.402, 0.431/0.441; ETTm2 equal to the
    paper's. No exchange_rate row.

Expected (measured 2026-11-26 on the 2 shared CPU cores, loaded: 5 jobs, ~85 ms per 256-window
step at horizon 96 against ~27 ms on an idle machine), test MSE / MAE and run time per horizon:
  ETTm2  0.183/0.263 122 s, 0.250/0.312 182 s, 0.299/0.351 285 s, and at 720 the 3-seed ensemble
         (``ENSEMBLES``) 0.398/0.424 in 343 s on the quiet machine: within 5% of the paper at
         every horizon (worst: MSE +3.8% at 96, MAE +3.2% at 96 and +2.6% at 720). One model
         (seed 1) gives 0.422/0.444 at 720 (+5.3% / +7.5%);
  (the ETTh1 and exchange_rate rows at 720 are one model, measured before ``ENSEMBLES``)
  ETTh1  0.425/0.441 86 s, 0.504/0.493 199 s, 0.645/0.585 246 s, 1.056/0.736 344 s: 12-88% worse
         than neuralforecast's tuned AutoNHITS (96-336 stop early, best after 150-200 steps:
         overfitting; 720 is worse than the 24-step seasonal naive, 0.655/0.514); the
         configuration was not tuned on ETTh1;
  exchange_rate  0.090/0.217 72 s, 0.439/0.483 111 s, 1.753/0.964 93 s, 5.958/1.856 411 s: worse
         than the naive last value (0.081/0.196, 0.167/0.289, 0.306/0.398, 0.810/0.676) beyond
         96 steps. The test years lie outside the range of the training years and nothing
         normalises each input window, so the MLP sees levels it never saw in training;
  ETTm1  0.308/0.351 106 s, 0.372/0.401 84 s (96, 192; 336 and 720 not run yet): within 2% and
         7% of neuralforecast's MSE.
Writes experiments/results/long_horizon_<dataset>.csv and .md (one row per horizon) and
long_horizon_summary.md (every dataset with results so far).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Sequence
from pathlib import Path

import polars as pl

import ntjax as nt
from ntjax.crossval import drop_last
from ntjax.data.benchmarks import long_horizon_frame, published_split, read_benchmark_csv

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "experiments" / "results"
DATASETS = ("ETTm2", "ETTh1", "exchange_rate", "ETTm1")
HORIZONS = (96, 192, 336, 720)

# (MSE, MAE) per dataset and horizon; sources in the module docstring.
PAPER = {
    "ETTm2": {96: (0.176, 0.255), 192: (0.245, 0.305), 336: (0.295, 0.346), 720: (0.401, 0.413)},
}
NEURALFORECAST = {
    "ETTh1": {96: (0.378, 0.393), 192: (0.427, 0.436), 336: (0.458, 0.484), 720: (0.561, 0.501)},
    "ETTm1": {96: (0.302, 0.350), 192: (0.347, 0.383), 336: (0.369, 0.402), 720: (0.431, 0.441)},
    "ETTm2": {96: (0.176, 0.255), 192: (0.245, 0.305), 336: (0.295, 0.346), 720: (0.401, 0.413)},
}

# (pool_kernel_sizes, freq_downsample) per horizon, from the paper's search space. Horizon 720
# was chosen on ETTm2's validation MAE (seed 1, 1000 steps, step schedule):
#   (2,2,1)/(24,12,1):  val MSE 0.397, MAE 0.434
#   (16,8,1)/(168,24,1): val MSE 0.392, MAE 0.426  <- chosen
# Coarser input pooling and fewer forecast coefficients in the first two stacks smooth the
# 720-step forecast (the paper's motivation for hierarchical interpolation at long horizons).
ARCHITECTURES = {
    96: ((2, 2, 1), (24, 12, 1)),
    192: ((2, 2, 1), (24, 12, 1)),
    336: ((2, 2, 1), (24, 12, 1)),
    720: ((16, 8, 1), (168, 24, 1)),
}
# Seed per horizon where it was chosen (default 1). The paper's search space samples
# random_seed (1..10) with the rest and keeps the best run on validation MAE. On ETTm2 at 720,
# seeds 1 / 2 / 3 gave validation MAE 0.426 / 0.435 / 0.433, so seed 1 stays (their test MSE
# 0.422 / 0.395 / 0.397 shows how much one run varies at this horizon).
SEEDS: dict[int, int] = {}
# Members of a seed ensemble per horizon (default 1: one model). At 720 on ETTm2 the 3-member
# ensemble (seeds 1, 2, 3 trained as one vmapped program, forecasts averaged quantile by
# quantile) reaches validation MAE 0.420 against 0.426 for seed 1 alone, so it is used there.
ENSEMBLES: dict[int, int] = {720: 3}
MAX_VAL_CUTOFFS = 256


def model_config(
    horizon: int,
    *,
    pool_kernel_sizes: tuple[int, ...] | None = None,
    freq_downsample: tuple[int, ...] | None = None,
) -> nt.NHITSConfig:
    """The protocol's NHITS for ``horizon`` (architecture from ``ARCHITECTURES`` unless given)."""
    pool, freq = ARCHITECTURES.get(horizon, ARCHITECTURES[96])
    return nt.NHITSConfig(
        horizon=horizon,
        input_size=5 * horizon,
        quantiles=(0.5,),
        n_blocks=(1, 1, 1),
        mlp_units=512,
        pool_kernel_sizes=pool_kernel_sizes or pool,
        freq_downsample=freq_downsample or freq,
        window_norm=False,  # the paper's NHITS reads the scaled series as they are
        forecast_init="lecun_normal",  # and starts from random forecast layers
    )


def _published(table: dict, dataset: str, horizon: int) -> tuple[float, float]:
    return table.get(dataset, {}).get(horizon, (math.nan, math.nan))


def run(
    dataset: str,
    horizon: int,
    *,
    max_steps: int = 1000,
    seed: int = 1,
    schedule: str = "step",
    pool_kernel_sizes: tuple[int, ...] | None = None,
    freq_downsample: tuple[int, ...] | None = None,
    test_rows: int | None = None,
    evaluate_test: bool = True,
    ensemble_size: int = 1,
) -> dict:
    """Trains and evaluates one (dataset, horizon) of the protocol; returns one result row."""
    started = time.perf_counter()
    wide = read_benchmark_csv(SHARED / f"{dataset}.csv")
    split = published_split(dataset, wide.height)
    frame = long_horizon_frame(wide, time_col="date", split=split)
    train_val = drop_last(frame, split.test)
    config = model_config(
        horizon, pool_kernel_sizes=pool_kernel_sizes, freq_downsample=freq_downsample
    )
    training = nt.TrainingConfig(
        max_steps=max_steps,
        batch_size=256,
        val_size=split.val,
        val_check_steps=50,
        early_stopping_patience=10,
        scaler="identity",  # the protocol already scaled every series with training statistics
        seed=seed,
        progress=False,
    )
    optimizer = nt.OptimizerConfig(learning_rate=1e-3, schedule=schedule, decay_rate=0.5)
    record = nt.train(train_val, config, training, optimizer, ensemble_size=ensemble_size)
    trained = time.perf_counter()
    val_stride = max(1, math.ceil((split.val - horizon + 1) / MAX_VAL_CUTOFFS))
    # Model selection on the early-stopping rows: in sample for the record, and flagged so.
    val = nt.evaluate(
        record,
        train_val,
        test_size=split.val,
        step_size=val_stride,
        levels=(),
        allow_in_sample=True,
    )
    validated = time.perf_counter()
    test = {"mse": math.nan, "mae": math.nan, "n_windows": 0}
    if evaluate_test:
        test_size = split.test if test_rows is None else test_rows
        test = nt.evaluate(record, frame, test_size=test_size, step_size=1, levels=())
    paper = _published(PAPER, dataset, horizon)
    neuralforecast = _published(NEURALFORECAST, dataset, horizon)
    return {
        "dataset": dataset,
        "horizon": horizon,
        "mse": test["mse"],
        "mae": test["mae"],
        "paper_mse": paper[0],
        "paper_mae": paper[1],
        "nf_mse": neuralforecast[0],
        "nf_mae": neuralforecast[1],
        "mse_vs_paper": test["mse"] / paper[0] - 1,
        "mae_vs_paper": test["mae"] / paper[1] - 1,
        "val_mse": val["mse"],
        "val_mae": val["mae"],
        "pool_kernel_sizes": ",".join(map(str, config.pool_kernel_sizes)),
        "freq_downsample": ",".join(map(str, config.freq_downsample)),
        "schedule": schedule,
        "seed": seed,
        "steps": record.metrics["steps"],
        "best_step": record.metrics.get("best_step", float("nan")),  # per member in extra
        "ensemble_size": ensemble_size,
        "windows_per_s": record.metrics["windows_per_s"],
        "n_windows": test["n_windows"],
        "train_s": trained - started,
        "val_s": validated - trained,
        "test_s": time.perf_counter() - validated,
        "seconds": time.perf_counter() - started,
    }


def _cell(value: float, digits: int = 3) -> str:
    return "" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def markdown_table(rows: Sequence[dict]) -> str:
    """Result rows as a markdown table (empty cells where nothing was published)."""
    lines = [
        "| dataset | horizon | MSE | MAE | paper MSE | paper MAE | nf MSE | nf MAE | val MSE "
        "| val MAE | pool | freq_downsample | steps | seconds |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---:|---:|",
    ]
    for r in rows:
        cells = [r["dataset"], str(r["horizon"])]
        cells += [_cell(r.get(k)) for k in ("mse", "mae", "paper_mse", "paper_mae", "nf_mse")]
        cells += [_cell(r.get(k)) for k in ("nf_mae", "val_mse", "val_mae")]
        cells += [f"({r.get('pool_kernel_sizes', '')})", f"({r.get('freq_downsample', '')})"]
        cells += [f"{r['steps']:.0f}", f"{r['seconds']:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_results(rows: Sequence[dict], out: Path) -> None:
    """Writes ``long_horizon_<dataset>.csv/.md`` per dataset (rows of horizons not in ``rows``
    are kept from an earlier run) and the summary of every dataset whose CSV is in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        path = out / f"long_horizon_{dataset}.csv"
        table = pl.DataFrame([r for r in rows if r["dataset"] == dataset])
        if path.exists():  # keep the horizons this run did not redo
            kept = pl.read_csv(path, infer_schema_length=None)
            kept = kept.filter(~pl.col("horizon").is_in(table["horizon"].to_list()))
            table = pl.concat([kept, table], how="diagonal_relaxed")
        table = table.sort("horizon")
        table.write_csv(path)
        (out / f"long_horizon_{dataset}.md").write_text(markdown_table(table.to_dicts()))
    summary = []
    for dataset in DATASETS:
        path = out / f"long_horizon_{dataset}.csv"
        if path.exists():
            summary += pl.read_csv(path, infer_schema_length=None).to_dicts()
    (out / "long_horizon_summary.md").write_text(markdown_table(summary))


def _ints(text: str | None) -> tuple[int, ...] | None:
    return None if text is None else tuple(int(x) for x in text.split(","))


def main(argv: Sequence[str] | None = None, *, default_datasets: str = ",".join(DATASETS)) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", "--dataset", dest="datasets", default=default_datasets)
    parser.add_argument("--horizons", default=",".join(map(str, HORIZONS)))
    parser.add_argument("--max-steps", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=None, help="default: SEEDS, else 1")
    parser.add_argument("--schedule", default="step", help="learning-rate schedule")
    parser.add_argument(
        "--ensemble-size", type=int, default=None, help="default: ENSEMBLES, else 1"
    )
    parser.add_argument("--pool", default=None, help="pool_kernel_sizes, e.g. 16,8,1")
    parser.add_argument("--freq-downsample", default=None, help="e.g. 168,24,1")
    parser.add_argument("--results-dir", default=str(RESULTS))
    parser.add_argument(
        "--test-rows", type=int, default=None, help="evaluate only the last N test rows (smoke)"
    )
    parser.add_argument(
        "--validation-only",
        action="store_true",
        help="skip the test split and write no files (for choosing a configuration)",
    )
    args = parser.parse_args(argv)
    rows = []
    for dataset in args.datasets.split(","):
        for horizon in _ints(args.horizons):
            row = run(
                dataset,
                horizon,
                max_steps=args.max_steps,
                seed=SEEDS.get(horizon, 1) if args.seed is None else args.seed,
                schedule=args.schedule,
                pool_kernel_sizes=_ints(args.pool),
                freq_downsample=_ints(args.freq_downsample),
                test_rows=args.test_rows,
                evaluate_test=not args.validation_only,
                ensemble_size=(
                    ENSEMBLES.get(horizon, 1) if args.ensemble_size is None else args.ensemble_size
                ),
            )
            rows.append(row)
            print(json.dumps(row), flush=True)
            if not args.validation_only:
                write_results(rows, Path(args.results_dir))
    print(markdown_table(rows))


if __name__ == "__main__":
    main()
