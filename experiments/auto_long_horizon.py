"""The long-horizon table with the Auto search: ``nt.optimize`` over ``nt.auto_space("nhits",
h)`` per (dataset, horizon), next to neuralforecast's published AutoNHITS and the last value.

Command (from the repository root; needs ../shared/data)::

    nice -n 15 python experiments/auto_long_horizon.py [--datasets ETTh1,ETTm1,ETTm2,exchange_rate]
        [--horizons 96,192,336,720] [--trials 20] [--timeout 3600] [--budget default|quick]
        [--forecast-init zeros|lecun_normal] [--first-trial auto|defaults|none]
        [--window-norm choice|on] [--ensemble 5] [--table NAME] [--smoke]

Protocol: the splits and scaling of ``experiments/ett_long_horizon.py`` (every column a series,
scaled with its training rows' mean and standard deviation; Informer splits). The search sees
the training and validation rows only: each trial trains on them without the validation rows
and is scored (MSE) by rolling forecasts every horizon over the validation rows
(``valid_size`` = the split's validation rows); the best trained trial and the next best
that share its scaler, five in all (``--ensemble``, ``nt.AUTO_ENSEMBLE``), are refit on
training and validation rows and averaged (``nt.optimize(..., ensemble=5)``), or the last
value where the search returns it, and scored once on every test window (stride 1), MSE and
MAE on the scaled data. Budget per cell: ``--trials`` trials (TPE, seed 0) within
``--timeout`` seconds, the first two ``nt.auto_first_trials``: the library's defaults, then
the last value (the same point at 0 steps); ``--first-trial defaults``: the defaults only,
``none``: all sampled.

Reported per cell: test MSE/MAE, neuralforecast's AutoNHITS MSE/MAE (its
experiments/long_horizon README; 20 trials; no exchange_rate row), the last-value baseline,
the chosen trial's validation MSE and the last value's on the same validation windows, the
one-sided Diebold-Mariano p-value of the best trained trial against the last value there (the
search returns the last value unless it is below 0.05, ``nt.optimize``'s
``baseline_significance``), the chosen steps (0: the last value), the trials averaged,
trials completed and the wall time of the search and the refits. Writes
experiments/results/auto_long_horizon.csv and .md.

Cost on this 2-core CPU: one 1,000-step NHITS trial at h96 on ETTm2 takes about 2-5 minutes,
so the full table (16 cells x 20 trials) is a day of CPU; run cells with ``--datasets`` and
``--horizons``, or on a GPU.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import time
from pathlib import Path

import polars as pl
from ett_long_horizon import NEURALFORECAST, SHARED

import ntjax as nt
from ntjax.crossval import drop_last
from ntjax.data.benchmarks import long_horizon_frame, published_split, read_benchmark_csv

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "experiments" / "results"


def run_cell(dataset: str, horizon: int, *, trials: int, timeout: float, budget: str,
             forecast_init: str = "zeros", first_trial: str = "auto",
             window_norm: str = "choice", test_rows: int | None = None,
             max_steps: int | None = None, ensemble: int = nt.AUTO_ENSEMBLE) -> dict:  # fmt: skip
    wide = read_benchmark_csv(SHARED / f"{dataset}.csv")
    split = published_split(dataset, wide.height)
    frame = long_horizon_frame(wide, time_col="date", split=split)
    train_val = drop_last(frame, split.test)
    space = nt.auto_space("nhits", horizon, budget=budget)
    space["model.quantiles"] = [0.5]  # the protocol's point forecast (MAE loss)
    space["model.forecast_init"] = forecast_init
    if max_steps is not None:
        space["training.max_steps"] = max_steps
    if window_norm == "on":  # the space without the choice of window-local normalisation
        space["model.window_norm"] = True
    firsts = {
        "auto": nt.auto_first_trials("nhits", horizon, budget=budget),
        "defaults": [nt.auto_start("nhits", horizon, budget=budget)],
        "none": [],
    }[first_trial]
    firsts = [{k: v for k, v in p.items() if isinstance(space[k], dict)} for p in firsts]  # varying
    started = time.perf_counter()
    result = nt.optimize(
        train_val, space, n_trials=trials, timeout=timeout, metric="mse", valid_size=split.val,
        first_trials=firsts, ensemble=ensemble,
    )  # fmt: skip
    search_s = time.perf_counter() - started  # the refit of the members included
    test_size = split.test if test_rows is None else test_rows
    test = nt.evaluate(result.best, frame, test_size=test_size, step_size=1, levels=())
    last = nt.evaluate_seasonal_naive(frame, horizon=horizon, test_size=test_size, step_size=1)
    nf = NEURALFORECAST.get(dataset, {}).get(horizon, (math.nan, math.nan))
    done = result.trials.filter(pl.col("state") == "COMPLETE")
    return {
        "dataset": dataset,
        "horizon": horizon,
        "mse": test["mse"],
        "mae": test["mae"],
        "auto_nhits_mse": nf[0],
        "auto_nhits_mae": nf[1],
        "mse_vs_auto_nhits": test["mse"] / nf[0] - 1,
        "last_value_mse": last["mse"],
        "val_mse": result.best_score,  # the chosen trial's validation MSE
        "last_value_val_mse": result.baseline_score,  # on the same validation windows
        "dm_p_value": result.baseline_p_value,  # the best trained trial against the last value
        "steps": result.best_params["training.max_steps"],  # 0: the last value
        "members": len(result.members),  # trials averaged into the model
        "trials_completed": done.height,
        "trials_started": result.trials.height,
        "search_s": search_s,
        "best_params": str(result.best_params),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", default="ETTh1,ETTm1,ETTm2,exchange_rate")
    parser.add_argument("--horizons", default="96,192,336,720")
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--timeout", type=float, default=3600.0, help="per cell, seconds")
    parser.add_argument("--budget", choices=("default", "quick"), default="default")
    parser.add_argument(
        "--forecast-init",
        choices=("zeros", "lecun_normal"),
        default="zeros",
        help="NHITS's forecast-layer start (lecun_normal: the rows measured before zeros)",
    )
    parser.add_argument(
        "--first-trial",
        choices=("auto", "defaults", "none"),
        default="auto",
        help="first trials: the defaults then the last value (nt.auto_first_trials), the "
        "defaults only (nt.auto_start), or none",
    )
    parser.add_argument(
        "--window-norm",
        choices=("choice", "on"),
        default="choice",
        help="NHITS's window-local normalisation: searched (the Auto space) or always on",
    )
    parser.add_argument(
        "--ensemble",
        type=int,
        default=nt.AUTO_ENSEMBLE,
        help="trials averaged into the model (nt.optimize's ensemble; 1: the best alone)",
    )
    parser.add_argument(
        "--table", default="auto_long_horizon", help="results file name under experiments/results"
    )
    parser.add_argument("--smoke", action="store_true", help="one tiny cell, no files written")
    args = parser.parse_args(argv)
    logging.basicConfig(format="%(name)s: %(message)s")
    logging.getLogger("ntjax.optimize").setLevel(logging.INFO)  # the baseline test's verdict
    if not SHARED.is_dir():
        print(f"needs {SHARED}", file=sys.stderr)
        return 1
    cells = [(d, int(h)) for d in args.datasets.split(",") for h in args.horizons.split(",")]
    options = {
        "trials": args.trials,
        "timeout": args.timeout,
        "budget": args.budget,
        "forecast_init": args.forecast_init,
        "first_trial": args.first_trial,
        "window_norm": args.window_norm,
        "ensemble": args.ensemble,
    }
    if args.smoke:
        cells = [("ETTh1", 96)]
        options = {"trials": 1, "timeout": 600, "budget": "quick", "test_rows": 192,
                   "max_steps": 5}  # fmt: skip
    command = (
        f"--trials {args.trials} --timeout {args.timeout:g} --budget {args.budget} "
        f"--forecast-init {args.forecast_init} --first-trial {args.first_trial}"
        + (f" --window-norm {args.window_norm}" if args.window_norm != "choice" else "")
        + f" --ensemble {args.ensemble}"
        + (f" --table {args.table}" if args.table != "auto_long_horizon" else "")
    )
    for dataset, horizon in cells:
        row = run_cell(dataset, horizon, **options)
        print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()})
        if not args.smoke:  # after every cell, so a long run keeps what it finished
            write_results([{**row, "options": command}], table=args.table)
    return 0


def write_results(rows: list[dict], table: str = "auto_long_horizon") -> None:
    """Writes ``rows`` into the results table, replacing earlier rows of the same cells."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{table}.csv"
    if path.exists():  # cells run before, other than these, stay in the table
        earlier = pl.read_csv(path).to_dicts()
        rerun = {(r["dataset"], r["horizon"]) for r in rows}
        rows = [r for r in earlier if (r["dataset"], r["horizon"]) not in rerun] + rows
    rows.sort(key=lambda r: (r["dataset"], r["horizon"]))
    pl.DataFrame(rows).write_csv(path)
    lines = [
        "# Long horizon with the Auto search (NHITS)",
        "",
        "Command: `python experiments/auto_long_horizon.py --datasets D --horizons H OPTIONS`, "
        "one cell or several at a time (each run replaces its cells' rows and keeps the rest); "
        "OPTIONS per row.",
        "",
        "| dataset | h | MSE | MAE | AutoNHITS MSE | vs AutoNHITS | last value MSE | "
        "val MSE, chosen / last value | DM p | steps | members | trials | search s | options |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['dataset']} | {r['horizon']} | {r['mse']:.3f} | {r['mae']:.3f} | "
            f"{r['auto_nhits_mse']:.3f} | {r['mse_vs_auto_nhits']:+.1%} | "
            f"{r['last_value_mse']:.3f} | {_pair(r.get('val_mse'), r.get('last_value_val_mse'))} | "
            f"{_p(r.get('dm_p_value'))} | {_text(r.get('steps'))} | {_text(r.get('members'))} | "
            f"{r['trials_completed']}/{r['trials_started']} | "
            f"{r['search_s']:.0f} | {r.get('options') or 'see the commit'} |"
        )
    (RESULTS / f"{table}.md").write_text("\n".join(lines) + "\n")


def _text(value) -> str:
    """A cell of an optional column (rows from before the column read "-")."""
    return "-" if value is None or value != value else str(value)


def _p(value) -> str:
    return "-" if value is None or value != value else f"{value:.2g}"


def _pair(chosen, last) -> str:
    if chosen is None or last is None or chosen != chosen or last != last:
        return "-"
    return f"{chosen:.3f} / {last:.3f}"


if __name__ == "__main__":
    sys.exit(main())
