"""Out-of-the-box interval coverage of every family: the raw quantile heads against the default
(conformal scores of the calibration tail, rolled forward as test windows resolve).

Command (from the repository root; needs ../shared/data)::

    nice -n 15 python experiments/coverage.py [--families nhits,gru] [--datasets ETTh1,AAPL]
        [--max-steps 300] [--test-rows 2880]

Protocol, for each dataset and family: the model is trained with ntjax's defaults
(``nt.TrainingConfig()``'s ``calibration="rolling"``: the last ten horizons of each series, at
most a fifth of the spare rows, are held out of the gradient and of early stopping, and their
conformity scores start the calibration) on every row before the test tail, small sizes and a
short budget (``--max-steps`` of 64 windows), quantiles (0.025, 0.1, 0.5, 0.9, 0.975). Then
``nt.evaluate(record, frame, test_size=T, step_size=1)`` scores every origin of the test tail
(out of sample: the leakage guard would refuse otherwise), once with the default intervals and
once with the raw heads of the same parameters (the record without its calibration), so the
difference is the calibration alone.

Datasets: ETTh1 ``OT`` (hourly, horizon 24, input 96), ETTm2 ``OT`` (15 minutes, horizon 24,
input 96), exchange_rate (8 daily series, horizon 7, input 28), AAPL ``Close`` (business days,
horizon 5, input 20); the test tail is the last ``--test-rows`` rows (default: 2880 hours of
ETTh1, 2880 quarter-hours of ETTm2, 760 days of exchange rates, 300 trading days of AAPL).

Writes experiments/results/coverage.csv and coverage.md (a row per dataset and family: 80% and
95% coverage raw and default, mean widths and their ratio, MAE, wql). Expected on the 2-core CPU
with the defaults: about 25 minutes (the recurrent families, TCN and DeepAR dominate); the
default lands within 5 points of nominal at 80% and 95% on every row.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import polars as pl

import ntjax as nt
from ntjax.data.benchmarks import read_benchmark_csv

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "experiments" / "results"
FAMILIES = ("nhits", "nbeats", "lstm_attention", "gru", "tcn", "deepar", "transformer")
QUANTILES = (0.025, 0.1, 0.5, 0.9, 0.975)
SIZES = {
    "nhits": dict(mlp_units=128, window_norm=True),
    "nbeats": dict(mlp_units=128),
    "lstm_attention": dict(hidden_size=32, decoder_hidden_size=64),
    "gru": dict(hidden_size=32, decoder_hidden_size=64),
    "tcn": dict(channels=32, decoder_hidden_size=64),
    "deepar": dict(hidden_size=32),
    "transformer": dict(d_model=32, ffn_size=64, decoder_hidden_size=64),
}


@dataclasses.dataclass(frozen=True)
class Dataset:
    name: str
    frame: pl.DataFrame
    horizon: int
    input_size: int
    test_size: int


def load(name: str, test_rows: int | None) -> Dataset:
    if name in ("ETTh1", "ETTm2"):
        wide = pl.read_csv(DATA / f"{name}.csv", try_parse_dates=True)
        frame = nt.from_wide(wide, time_col="date", value_cols="OT")
        # The published borders: 12/4/4 months (ETTh1 14,400 rows, ETTm2 57,600).
        frame = frame.head(14_400 if name == "ETTh1" else 57_600)
        return Dataset(name, frame, 24, 96, test_rows or 2880)
    if name == "exchange_rate":
        wide = read_benchmark_csv(DATA / "exchange_rate.csv")
        frame = nt.from_wide(wide, time_col="date")
        return Dataset(name, frame, 7, 28, test_rows or 760)
    if name == "AAPL":
        wide = pl.read_csv(DATA / "AAPL_2006-01-01_to_2018-01-01.csv", try_parse_dates=True)
        frame = nt.from_wide(wide, time_col="Date", value_cols="Close", id_prefix="AAPL_")
        return Dataset(name, frame, 5, 20, test_rows or 300)
    raise ValueError(f"unknown dataset {name!r}; choose from ETTh1, ETTm2, exchange_rate, AAPL.")


def run(dataset: Dataset, family: str, max_steps: int) -> dict:
    fields = dict(
        horizon=dataset.horizon,
        input_size=dataset.input_size,
        quantiles=QUANTILES,
        **SIZES[family],
    )
    config = nt.models.make_config(family, **fields)
    training = nt.TrainingConfig(max_steps=max_steps, batch_size=64, progress=False, seed=0)
    history, _ = nt.train_test_split(dataset.frame, dataset.test_size)
    started = time.perf_counter()
    record = nt.train(history, config, training)
    fitted = time.perf_counter() - started
    raw = record.uncalibrated()
    scores = {}
    for name, model in (("raw", raw), ("default", record)):
        scores[name] = nt.evaluate(
            model, dataset.frame, test_size=dataset.test_size, step_size=1, levels=(80, 95)
        )
    row = {
        "dataset": dataset.name,
        "family": family,
        "n_series": dataset.frame["unique_id"].n_unique(),
        "test_rows": dataset.test_size,
        "calibration_rows": record.intervals["calibration_size"],
        "mae": scores["default"]["mae"],
        "train_s": round(fitted, 1),
    }
    for level in (80, 95):
        row[f"raw_{level}"] = scores["raw"][f"coverage_{level}"]
        row[f"default_{level}"] = scores["default"][f"coverage_{level}"]
        row[f"width_ratio_{level}"] = (
            scores["default"][f"width_{level}"] / scores["raw"][f"width_{level}"]
        )
    row["wql_raw"] = scores["raw"]["wql"]
    row["wql_default"] = scores["default"]["wql"]
    return row


def markdown(table: pl.DataFrame) -> str:
    lines = [
        "| dataset | family | raw 80% | default 80% | raw 95% | default 95% | width x 80% "
        "| width x 95% | wql raw | wql default | MAE |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in table.iter_rows(named=True):
        lines.append(
            f"| {r['dataset']} | {r['family']} | {r['raw_80']:.3f} | {r['default_80']:.3f} "
            f"| {r['raw_95']:.3f} | {r['default_95']:.3f} | {r['width_ratio_80']:.2f} "
            f"| {r['width_ratio_95']:.2f} | {r['wql_raw']:.4f} | {r['wql_default']:.4f} "
            f"| {r['mae']:.4g} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--families", default=",".join(FAMILIES))
    parser.add_argument("--datasets", default="ETTh1,ETTm2,exchange_rate,AAPL")
    parser.add_argument("--max-steps", type=int, default=300)
    parser.add_argument("--test-rows", type=int, help="test tail per series (default per set)")
    parser.add_argument("--output", type=Path, default=RESULTS / "coverage")
    args = parser.parse_args(argv)
    rows = []
    for name in args.datasets.split(","):
        dataset = load(name, args.test_rows)
        for family in args.families.split(","):
            row = run(dataset, family, args.max_steps)
            print(row, file=sys.stderr, flush=True)
            rows.append(row)
    table = pl.DataFrame(rows)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    table.write_csv(args.output.with_suffix(".csv"))
    args.output.with_suffix(".md").write_text(markdown(table))
    print(markdown(table))


if __name__ == "__main__":
    main()
