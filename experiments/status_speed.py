"""``ntjax status`` over a store of N models, each run a new process, beside ``import jax``.

Command:
    python experiments/status_speed.py [--models 50] [--runs 10]

Builds a store of N trained models (one small NHITS trained for 2 steps, saved N times under new
ids), then times ``python -m ntjax.cli status --store STORE`` in new processes (spawn to exit;
each output is checked to list the N models) and ``python -c "import jax"`` the same way.
Prints JSON: p50/min/max seconds of both, their ratio, and the rows listed.
Expected on the 2-core CPU: status ~0.1-0.15 s, under DESIGN's 0.5 s and under half of
``import jax`` (~1.5 s); it took 2+ s while the command imported JAX.
"""

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import ntjax as nt
from ntjax.registry import new_id, utc_now


def build_store(root: Path, n_models: int) -> list[str]:
    """A store holding ``n_models`` trained models; returns their ids, oldest first."""
    frame = nt.load_dataset("etth1", columns="OT")
    config = nt.NHITSConfig(horizon=4, input_size=16, mlp_units=16)
    training = nt.TrainingConfig(max_steps=2, batch_size=16, progress=False)
    record = nt.train(frame, config, training)
    store = nt.Store(root, rate_limit=None)
    return [
        store.save(record.replace(id=new_id(), created_at=utc_now())).id for _ in range(n_models)
    ]


def seconds(command: list[str], runs: int, check=None) -> dict[str, float]:
    """Wall-clock seconds of ``command`` in new processes: p50, min, max over ``runs``."""
    times = []
    for _ in range(runs):
        tick = time.perf_counter()
        out = subprocess.run(command, capture_output=True, text=True, check=True)
        times.append(time.perf_counter() - tick)
        if check is not None:
            check(out.stdout)
    return {"p50_s": statistics.median(times), "min_s": min(times), "max_s": max(times)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=50)
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        ids = build_store(Path(folder), args.models)

        def lists_every_model(stdout: str) -> None:
            rows = json.loads(stdout)
            if [row["id"] for row in rows] != ids[::-1]:
                raise RuntimeError("ntjax status did not list the store's models, newest first")

        status = [sys.executable, "-m", "ntjax.cli", "status", "--store", folder]
        report = {
            "models": args.models,
            "runs": args.runs,
            "status": seconds(status, args.runs, lists_every_model),
            "import_jax": seconds([sys.executable, "-c", "import jax"], args.runs),
        }
    report["status_over_import_jax"] = report["status"]["p50_s"] / report["import_jax"]["p50_s"]
    json.dump(report, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
