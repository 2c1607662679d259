"""Retraining replay: a daily price series, month by month, with the champion/challenger
pipeline (``nt.retrain``) against never retraining and retraining every month.

Command (from the repository root; needs ../shared/data)::

    nice -n 15 python experiments/retraining.py [--series wti|AAPL|...] [--months 24]
        [--max-steps 300] [--smoke]

Protocol. The series (default: WTI crude oil, daily) is cut to its last ``--initial-rows`` +
``--months`` x 21 rows. An NHITS (horizon 5, input 40, standard scaler, validation tail of 40
rows with patience) is trained on the first ``--initial-rows`` rows. Then, month by month
(21 trading days): the model each strategy holds at the month's start forecasts every origin
of the month (rolling, step 1, ``nt.evaluate`` on the data up to the month's end, so only
earlier rows feed each forecast); after the month, each strategy updates:

- never: keeps the initial model;
- monthly: refits the config on all rows so far (same training settings);
- pipeline: ``nt.retrain(store, "prod", rows so far, policy=...)`` (default policy, ``--method``
  of the challenger); the alias's model after the run is the next month's model.

Reported: MAE and MASE over all months, trainings, promotions, training time. Writes
experiments/results/retraining.csv (per month) and retraining.md. Expected on the 2-core CPU with
the defaults: about 10 minutes.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import polars as pl

import ntjax as nt

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "experiments" / "results"
MONTH = 21
CONFIG = nt.NHITSConfig(horizon=5, input_size=40, mlp_units=128)


def load(name: str) -> pl.DataFrame:
    if name == "wti":
        frame = pl.read_csv(DATA / "wti-daily.csv", try_parse_dates=True)
        frame = frame.rename({"Date": "ds", "Price": "y"})
    else:
        frame = pl.read_csv(DATA / f"{name}_2006-01-01_to_2018-01-01.csv", try_parse_dates=True)
        frame = frame.rename({"Date": "ds", "Close": "y"}).select("ds", "y")
    frame = frame.drop_nulls("y").sort("ds").with_columns(pl.col("y").cast(pl.Float64))
    return frame.with_columns(pl.lit(name).alias("unique_id")).select("unique_id", "ds", "y")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--series", default="wti")
    parser.add_argument("--months", type=int, default=24)
    parser.add_argument("--initial-rows", type=int, default=1500)
    parser.add_argument("--max-steps", type=int, default=300)
    parser.add_argument("--method", choices=("finetune", "refit"), default="refit")
    parser.add_argument("--smoke", action="store_true", help="tiny settings, no files written")
    args = parser.parse_args(argv)
    if args.smoke:
        args.months, args.initial_rows, args.max_steps = 3, 300, 20
    if not DATA.is_dir():
        print(f"needs {DATA}", file=sys.stderr)
        return 1
    frame = load(args.series).tail(args.initial_rows + args.months * MONTH)
    training = nt.TrainingConfig(
        max_steps=args.max_steps,
        batch_size=128,
        val_size=40,
        val_check_steps=max(10, args.max_steps // 10),
        early_stopping_patience=3,
        progress=False,
    )
    initial = frame.head(args.initial_rows)
    started = time.perf_counter()
    first = nt.train(initial, CONFIG, training)
    first_s = time.perf_counter() - started
    store = nt.Store(tempfile.mkdtemp(prefix="ntjax-retraining-"))
    store.save(first)
    store.set_alias("prod", first.id)
    policy = nt.RetrainPolicy(method=args.method, max_steps=args.max_steps)
    models = {"never": first, "monthly": first, "pipeline": first}
    trainings = {"never": 1, "monthly": 1, "pipeline": 1}
    train_s = dict.fromkeys(models, first_s)
    promotions = 0
    rows = []
    for month in range(args.months):
        end = args.initial_rows + (month + 1) * MONTH
        seen = frame.head(end)
        for name, record in models.items():
            metrics = nt.evaluate(record, seen, test_size=MONTH, step_size=1)
            rows.append(
                {
                    "month": month + 1,
                    "strategy": name,
                    "mae": metrics["mae"],
                    "mase": metrics["mase"],
                    "model_id": record.id,
                }  # fmt: skip
            )
        started = time.perf_counter()
        models["monthly"] = nt.train(seen, CONFIG, training)
        train_s["monthly"] += time.perf_counter() - started
        trainings["monthly"] += 1
        started = time.perf_counter()
        decision = nt.retrain(store, "prod", seen, policy=policy)
        train_s["pipeline"] += time.perf_counter() - started
        trainings["pipeline"] += decision.challenger_id is not None
        promotions += decision.promoted
        models["pipeline"] = store.load(store.resolve("prod"))
        print(f"month {month + 1}: {decision.reason}", flush=True)
    table = pl.DataFrame(rows)
    summary = (
        table.group_by("strategy", maintain_order=True)
        .agg(pl.col("mae").mean(), pl.col("mase").mean())
        .with_columns(
            pl.col("strategy").replace_strict(trainings, return_dtype=pl.Int64).alias("trainings"),
            pl.col("strategy").replace_strict(train_s, return_dtype=pl.Float64).alias("train_s"),
        )
    )
    print(summary)
    print(f"promotions: {promotions}")
    if args.smoke:
        return 0
    RESULTS.mkdir(exist_ok=True)
    table.write_csv(RESULTS / "retraining.csv")
    lines = [
        "# Retraining replay: pipeline against never and every month",
        "",
        f"Command: `python experiments/retraining.py --series {args.series} --months "
        f"{args.months} --initial-rows {args.initial_rows} --max-steps {args.max_steps} "
        f"--method {args.method}` (NHITS horizon 5, input 40; each month's 21 origins scored "
        "with the model held at the month's start).",
        "",
        "| strategy | MAE | MASE | trainings | training + pipeline s |",
        "|---|---|---|---|---|",
    ]
    for r in summary.iter_rows(named=True):
        lines.append(
            f"| {r['strategy']} | {r['mae']:.4f} | {r['mase']:.3f} | {r['trainings']} | "
            f"{r['train_s']:.1f} |"
        )
    lines += ["", f"Promotions by the pipeline: {promotions} of {args.months} months.", ""]
    decisions = store.decisions("prod")
    lines += ["| data up to | promoted | p-value | reason |", "|---|---|---|---|"]
    for d in decisions:
        p = f"{d['p_value']:.3g}" if d["p_value"] is not None else "-"
        lines.append(f"| {d['data_end']} | {d['promoted']} | {p} | {d['reason']} |")
    (RESULTS / "retraining.md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
