"""Search cost of the Auto search: trials one by one against population rounds.

Command (from the repository root; ETTh1 ships with ntjax)::

    python experiments/auto_search_cost.py [--family nhits] [--horizon 96] [--trials 20]
        [--population 4] [--budget quick|default] [--repeats 1] [--smoke]

``nt.optimize(df, nt.auto_space(family, horizon, budget=...), n_trials=N)`` on ETTh1's seven
columns (scaled per series by each trial's default scaler choice), scored by MSE over the last
``horizon`` steps of each series, run twice with the same sampler seed: trials one by one
(``population=None``) and in rounds of ``--population`` trials. In a round the trials share the
first one's values of the keys that change the program (input size, pools, widths, scaler,
steps, windows per step) and each samples its own seed and learning rate, so the round trains
as one vmapped program (``ntjax.optimize.study``); a round's compilation and data preparation
are paid once instead of per trial.

Three searches per sampler seed: ``--trials`` trials one by one, the same number in rounds, and
in rounds as many trials as fit in the one-by-one search's wall time (rounded to whole rounds):
rounds explore fewer distinct programs per trial (one per round), so the fair comparison is at
equal wall time. Reported per search: wall time, trials completed / pruned / failed, the best
validation MSE, the training windows the completed trials were given per second of the search
(``max_steps`` x windows per step, summed, over the wall time; early stopping may end a trial
sooner) and the mean wall time per trial. ``--repeats`` runs the three again with the next
sampler seed.
Writes experiments/results/auto_search_cost.md (not with ``--smoke``).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import optuna

import ntjax as nt

RESULTS = Path(__file__).resolve().parents[1] / "experiments" / "results"


def search(frame, space: dict, *, trials: int, population: int | None, seed: int) -> dict:
    """One search; its cost and outcome."""
    started = time.perf_counter()
    result = nt.optimize(
        frame,
        space,
        n_trials=trials,
        metric="mse",
        population=population,
        seed=seed,
        refit=False,
    )
    wall = time.perf_counter() - started
    rows = result.trials
    done = rows.filter(rows["state"] == "COMPLETE")
    default_batch = nt.TrainingConfig().batch_size
    windows = sum(
        int(p["training.max_steps"]) * int(p.get("training.batch_size", default_batch))
        for p in done["params"].to_list()
    )
    return {
        "population": population,
        "wall_s": wall,
        "complete": done.height,
        "pruned": int((rows["state"] == "PRUNED").sum()),
        "failed": int((rows["state"] == "FAIL").sum()),
        "best_mse": float(done["value"].min()) if done.height else float("nan"),
        "windows_per_s": windows / wall,
        "s_per_trial": wall / max(rows.height, 1),
        "best_params": result.best_params,
    }


def table(runs: list[dict], *, family: str, horizon: int, trials: int, budget: str) -> str:
    lines = [
        "# Auto search cost: one by one against population rounds",
        "",
        f"Command: `python experiments/auto_search_cost.py --family {family} --horizon {horizon} "
        f"--trials {trials} --budget {budget}` (ETTh1, 7 series, MSE on the last horizon).",
        "",
        "| sampler seed | mode | trials | wall s | complete / pruned / failed "
        "| best validation MSE | training windows/s | s per trial |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        mode = "one by one" if run["population"] is None else f"rounds of {run['population']}"
        trials = run["complete"] + run["pruned"] + run["failed"]
        lines.append(
            f"| {run['seed']} | {mode} | {trials} | {run['wall_s']:.0f} | {run['complete']} / "
            f"{run['pruned']} / {run['failed']} | {run['best_mse']:.4f} | "
            f"{run['windows_per_s']:,.0f} | {run['s_per_trial']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", default="nhits")
    parser.add_argument("--horizon", type=int, default=96)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--population", type=int, default=4)
    parser.add_argument("--budget", choices=("quick", "default"), default="quick")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--smoke", action="store_true", help="4 trials of 20 steps, no files")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    frame = nt.load_dataset("etth1")
    space: dict[str, Any] = nt.auto_space(args.family, args.horizon, budget=args.budget)
    if args.smoke:
        args.trials, args.population = 4, 2
        space["training.max_steps"] = 20
        frame = (
            frame.filter(frame["unique_id"].is_in(["OT", "HUFL"]))
            .group_by("unique_id", maintain_order=True)
            .tail(800)
        )
    runs = []
    for repeat in range(args.repeats):
        seed = args.seed + repeat
        alone = search(frame, space, trials=args.trials, population=None, seed=seed)
        rounds = search(frame, space, trials=args.trials, population=args.population, seed=seed)
        # The trial count that rounds fit in the wall time of the one-by-one search.
        fit = args.trials * alone["wall_s"] / rounds["wall_s"]
        more = max(args.population, args.population * round(fit / args.population))
        same_time = search(frame, space, trials=more, population=args.population, seed=seed)
        for run in (alone, rounds, same_time):
            run["seed"] = seed
            runs.append(run)
            print(json.dumps(run), file=sys.stderr, flush=True)
    text = table(
        runs, family=args.family, horizon=args.horizon, trials=args.trials, budget=args.budget
    )
    print(text)
    if not args.smoke:
        (RESULTS / "auto_search_cost.md").write_text(text)


if __name__ == "__main__":
    main()
