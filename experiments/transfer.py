"""Transfer: pretrain a global model on a large panel, then zero-shot and fine-tune it on a
series that was not in the panel, against training from scratch with the same budget.

Command (from the repository root; needs ../shared/data)::

    nice -n 15 python experiments/transfer.py [--families nhits,transformer]
        [--pretrain-steps 1500] [--steps 300] [--target-rows 1500] [--smoke]

Protocol. The pretraining panel is every series of ETTh1 and ETTm1 (7 columns each), the 8
exchange rates, the closes of the 8 stocks, VIX, and the classic series (airline passengers,
daily minimum temperatures, monthly sunspots): 35 series, the last ``--panel-rows`` rows of
each, indexed by position (a global model sees no calendar). Horizon 24, input 96, default
quantiles, standard scaler per series. Targets, absent from the panel: ETTm2 ``OT`` (a cousin
of the ETT series) and WTI crude oil (daily). Each target's test part is its last 960 rows,
scored by rolling origins every horizon; its training part is the ``--target-rows`` rows
before (a short history: where transfer should matter).

Rows of the table, per family and target: seasonal naive (season 96, a day of quarter-hours,
for ETTm2; 1, the last value, for oil); zero-shot (the pretrained model,
never fitted on the target); fine-tuned (``nt.finetune``, ``--steps`` steps at a tenth of the
learning rate, everything trainable); fine-tuned heads only (hidden layers frozen); scratch
(the same config trained on the target alone for the same ``--steps``); scratch with the
pretraining budget (``--pretrain-steps``). Scores: MAE, MASE (in-sample seasonal-naive
scale with the same season), wql on the test part.

Writes experiments/results/transfer.csv and transfer.md. Expected on the 2-core CPU with the
defaults: about 15 minutes; zero-shot beats seasonal naive, fine-tuning beats scratch at the
same budget on both targets.
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
HORIZON, INPUT_SIZE, TEST_ROWS = 24, 96, 960
CONFIGS = {
    "nhits": nt.NHITSConfig(horizon=HORIZON, input_size=INPUT_SIZE, mlp_units=256),
    "transformer": nt.TransformerConfig(
        horizon=HORIZON, input_size=INPUT_SIZE, d_model=64, ffn_size=128
    ),
}
# Heads only: the hidden layers frozen, the output layers trainable.
HIDDEN = {
    "nhits": ("_Block_*/Dense_*",),
    "transformer": ("_EncoderLayer_*", "embed/*", "final_norm/*"),
}
STOCKS = ("AAPL", "AMZN", "GOOGL", "IBM", "INTC", "JPM", "MSFT", "XOM")


def _series(name: str, values: pl.Series, rows: int) -> pl.DataFrame:
    y = values.cast(pl.Float64).drop_nulls().tail(rows)
    return pl.DataFrame({"unique_id": name, "ds": pl.int_range(0, y.len(), eager=True), "y": y})


def panel(rows: int) -> pl.DataFrame:
    """The pretraining panel: 35 series, the last ``rows`` of each, integer time."""
    parts = []
    for name in ("ETTh1", "ETTm1"):
        wide = read_benchmark_csv(DATA / f"{name}.csv")
        parts += [_series(f"{name}_{c}", wide[c], rows) for c in wide.columns if c != "date"]
    wide = read_benchmark_csv(DATA / "exchange_rate.csv")
    parts += [_series(f"fx_{c}", wide[c], rows) for c in wide.columns if c != "date"]
    for ticker in STOCKS:
        close = pl.read_csv(DATA / f"{ticker}_2006-01-01_to_2018-01-01.csv")["Close"]
        parts.append(_series(ticker, close, rows))
    parts.append(_series("VIX", pl.read_csv(DATA / "vix-daily.csv")["CLOSE"], rows))
    for file, column in (
        ("airline-passengers.csv", "Passengers"),
        ("daily-min-temperatures.csv", "Temp"),
        ("monthly-sunspots.csv", "Sunspots"),
    ):
        parts.append(_series(file.removesuffix(".csv"), pl.read_csv(DATA / file)[column], rows))
    return pl.concat(parts)


def targets(train_rows: int) -> dict[str, tuple[pl.DataFrame, int]]:
    """Target frames (training rows + the test tail) and their seasonal-naive season."""
    ettm2 = read_benchmark_csv(DATA / "ETTm2.csv")["OT"]
    oil = pl.read_csv(DATA / "wti-daily.csv")["Price"]
    rows = train_rows + TEST_ROWS
    return {
        "ETTm2_OT": (_series("ETTm2_OT", ettm2, rows), 96),
        "WTI": (_series("WTI", oil, rows), 1),
    }


def score(record, frame, season: int) -> dict[str, float]:
    metrics = nt.evaluate(record, frame, test_size=TEST_ROWS, season_length=season)
    return {k: metrics[k] for k in ("mae", "mase", "wql")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--families", default="nhits,transformer")
    parser.add_argument("--pretrain-steps", type=int, default=1500)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--target-rows", type=int, default=1500)
    parser.add_argument("--panel-rows", type=int, default=6000)
    parser.add_argument("--smoke", action="store_true", help="tiny settings, no files written")
    args = parser.parse_args(argv)
    if args.smoke:
        args.pretrain_steps, args.steps, args.panel_rows = 20, 10, 600
        args.families = "nhits"
    if not DATA.is_dir():
        print(f"needs {DATA}", file=sys.stderr)
        return 1
    base = nt.TrainingConfig(batch_size=256, val_check_steps=50, progress=False)
    pretrain_panel = panel(args.panel_rows)
    rows = []
    for family in args.families.split(","):
        config = CONFIGS[family]
        started = time.perf_counter()
        pretrained = nt.train(
            pretrain_panel, config, dataclasses.replace(base, max_steps=args.pretrain_steps)
        )
        pretrain_s = time.perf_counter() - started
        for target, (frame, season) in targets(args.target_rows).items():
            train_part = frame.head(frame.height - TEST_ROWS)
            naive = nt.evaluate_seasonal_naive(
                frame, horizon=HORIZON, season_length=season, test_size=TEST_ROWS
            )
            runs = {"seasonal naive": {k: naive[k] for k in ("mae", "mase", "wql") if k in naive}}
            runs["zero-shot"] = score(pretrained, frame, season)
            short = dataclasses.replace(base, max_steps=args.steps)
            tuned = nt.finetune(pretrained, train_part, training=short)
            runs["fine-tuned"] = score(tuned, frame, season)
            heads = nt.finetune(pretrained, train_part, training=short, freeze=HIDDEN[family])
            runs["fine-tuned, heads only"] = score(heads, frame, season)
            runs[f"scratch, {args.steps} steps"] = score(
                nt.train(train_part, config, short), frame, season
            )
            long = dataclasses.replace(base, max_steps=args.pretrain_steps)
            runs[f"scratch, {args.pretrain_steps} steps"] = score(
                nt.train(train_part, config, long), frame, season
            )
            for run, metrics in runs.items():
                rows.append(
                    {
                        "family": family,
                        "target": target,
                        "run": run,
                        **metrics,
                        "pretrain_s": round(pretrain_s, 1),
                    }  # fmt: skip
                )
                print(family, target, run, {k: round(v, 4) for k, v in metrics.items()})
    table = pl.DataFrame(rows)
    if args.smoke:
        print(table)
        return 0
    RESULTS.mkdir(exist_ok=True)
    table.write_csv(RESULTS / "transfer.csv")
    lines = [
        "# Transfer: zero-shot and fine-tuned against scratch",
        "",
        f"Command: `python experiments/transfer.py --pretrain-steps {args.pretrain_steps} "
        f"--steps {args.steps} --target-rows {args.target_rows} --panel-rows "
        f"{args.panel_rows}` (horizon {HORIZON}, input {INPUT_SIZE}, batch 256; test: the "
        f"last {TEST_ROWS} rows of each target, rolling origins every horizon).",
        "",
        "| family | target | run | MAE | MASE | wql |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        wql = f"{r['wql']:.4f}" if r.get("wql") is not None else "-"
        lines.append(
            f"| {r['family']} | {r['target']} | {r['run']} | {r['mae']:.4f} | "
            f"{r['mase']:.3f} | {wql} |"
        )
    (RESULTS / "transfer.md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
