"""Store timings for ``experiments/bench.py``: warm load, and load + first forecast in a new
process (interpreter start and imports included), with and without the persistent
compilation cache.

    cd experiments && python -c "from _bench_store import measure_store; import json; \
print(json.dumps(measure_store(), indent=1))"
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np

import ntjax as nt
from ntjax.store import Store

# Runs in a fresh interpreter: the clock starts before any import.
_CHILD = """
import time
started = time.time()
import json, sys
import polars as pl
import ntjax as nt
from ntjax.store import Store
imported = time.time()
root, model_id, data, cache = sys.argv[1:5]
store = Store(root)
cached = store.enable_compilation_cache() is not None if cache == "1" else False
tick = time.perf_counter()
record = store.load(model_id)
loaded = time.perf_counter()
frame = pl.read_parquet(data)
forecast = nt.forecast(record, frame)
done = time.perf_counter()
print(json.dumps({
    "started": started, "import_s": imported - started, "load_s": loaded - tick,
    "first_forecast_s": done - loaded, "finished": time.time(), "cache": cached,
    "rows": forecast.height,
}))
"""


def _ms(seconds: list[float]) -> dict[str, float]:
    values = np.asarray(seconds) * 1e3
    return {
        "p50_ms": float(np.median(values)),
        "min_ms": float(values.min()),
        "max_ms": float(values.max()),
    }


def store_load_times(store: Any, model_id: str, *, repeats: int = 50) -> dict[str, float]:
    """Warm ``store.load(model_id)`` times in this process (after one untimed load): the
    files are in the OS cache and the config's parameter structure is known. ``cpu_*`` is the
    CPU time of the process (all threads), which other processes sharing the cores do not
    inflate as they do the wall-clock ``p50``/``min``/``max``."""
    store.load(model_id)
    times, cpu = [], []
    for _ in range(repeats):
        tick, cpu_tick = time.perf_counter(), time.process_time()
        jax.block_until_ready(store.load(model_id).params)
        times.append(time.perf_counter() - tick)
        cpu.append(time.process_time() - cpu_tick)
    return {**_ms(times), **{f"cpu_{k}": v for k, v in _ms(cpu).items()}}


def cold_forecast_times(
    root: str | os.PathLike[str],
    model_id: str,
    data: str | os.PathLike[str],
    *,
    compilation_cache: bool = True,
    runs: int = 3,
) -> dict[str, Any]:
    """Load + first forecast in new processes (``python -c``), each timed from before its
    interpreter starts. With ``compilation_cache`` one untimed run fills the cache first.

    Returns:
      ``total`` (spawn to forecast done), ``import`` (interpreter start to ntjax imported),
      ``load`` and ``first_forecast`` (after imports), each as p50/min/max milliseconds.
    """
    env = dict(os.environ)
    command = [sys.executable, "-c", _CHILD, str(root), model_id, str(data)]
    command.append("1" if compilation_cache else "0")

    def once() -> dict[str, float]:
        before = time.time()
        out = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        if out.returncode:
            raise RuntimeError(f"benchmark child failed: {out.stderr.strip()[-2000:]}")
        result = json.loads(out.stdout.strip().splitlines()[-1])
        result["total_s"] = result["finished"] - before
        return result

    if compilation_cache:
        once()
    results = [once() for _ in range(runs)]
    summary: dict[str, Any] = {"compilation_cache": compilation_cache, "runs": runs}
    for name in ("total", "import", "load", "first_forecast"):
        summary[name] = _ms([r[f"{name}_s"] for r in results])
    summary["cache_used"] = all(r["cache"] for r in results)
    return summary


def measure_store(
    *, root: str | os.PathLike[str] | None = None, repeats: int = 50, runs: int = 3
) -> dict[str, Any]:
    """Trains a default ``NHITSConfig(horizon=96, input_size=480)`` for two steps on ETTh1
    (the timings do not depend on how well it fits), stores it, and measures warm load and
    load + first forecast of the 7 ETTh1 series in new processes, with and without the
    compilation cache.

    Args:
      root: store folder (default: a temporary one, removed afterwards).
      repeats: timed warm loads.
      runs: timed new processes per setting.
    """
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(root) if root is not None else Path(scratch) / "store"
        store = Store(folder)
        config = nt.NHITSConfig(horizon=96, input_size=480)
        df = nt.load_dataset("etth1")
        training = nt.TrainingConfig(max_steps=2, batch_size=32, progress=False)
        record = store.save(nt.train(df, config, training))
        data = Path(scratch) / "window.parquet"
        df.group_by("unique_id", maintain_order=True).tail(config.input_size).write_parquet(data)
        return {
            "n_params": record.n_params,
            "artifact_bytes": sum(
                p.stat().st_size for p in (store.root / "models" / record.id).iterdir()
            ),
            "warm_load": store_load_times(store, record.id, repeats=repeats),
            "new_process_cached": cold_forecast_times(folder, record.id, data, runs=runs),
            "new_process_uncached": cold_forecast_times(
                folder, record.id, data, compilation_cache=False, runs=runs
            ),
        }
