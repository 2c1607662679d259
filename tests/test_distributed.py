"""Multi-process training with real processes on 127.0.0.1 (``nt.distributed``, ``ntjax train
--coordinator``): 2 processes x 1 device train what 1 process x 2 devices trains, one record;
a lost peer ends the survivor quickly with one sentence; a rerun resumes from the checkpoint.

Each process is a new Python with its own device count (``XLA_FLAGS``), not this one's four.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest
from conftest import sine_frame

import ntjax as nt
from ntjax.store import Store
from ntjax.train import distributed

ROOT = Path(__file__).resolve().parents[1]
MODEL = ["--model", "nhits", "--horizon", "6", "--input-size", "24", "--batch-size", "16"]
# A small NHITS (two stacks of one block): each process compiles and trains it in seconds.
SMALL = {"mlp_units": 16, "n_blocks": [1, 1], "pool_kernel_sizes": [2, 1]}
SMALL["freq_downsample"] = [2, 1]
MODEL += ["--config", json.dumps(SMALL), "--no-progress"]
MODEL += ["--calibration", "none", "--val-size", "6"]


def _env(devices: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    env["JAX_PLATFORMS"] = "cpu"
    return env


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "series.csv"
    sine_frame(n_series=3, length=240, noise=0.1).write_csv(path)
    return path


def _train(data: Path, store: Path, *extra: str) -> list[str]:
    return (
        [sys.executable, "-m", "ntjax.cli", "train", "--data", str(data)]
        + MODEL
        + [
            "--store",
            str(store),
            *extra,
        ]
    )


def _job(data, store, *extra, port, n=2):
    """The command of each process of an n-process job."""
    job = ["--coordinator", f"127.0.0.1:{port}", "--num-processes", str(n)]
    return [_train(data, store, *extra, *job, "--process-id", str(i)) for i in range(n)]


def _start(commands, *, devices=1):
    return [
        subprocess.Popen(
            c,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env=_env(devices),
        )
        for c in commands
    ]


def _finish(processes, timeout=300):
    return [(p.wait(timeout=timeout), *p.communicate()) for p in processes]


def _history(store: Path, model_id: str) -> list[float]:
    return Store(store).load(model_id).history["train_loss"]


def test_two_processes_train_what_one_process_with_two_devices_trains(data, tmp_path):
    steps = ["--max-steps", "60"]
    job = _start(_job(data, tmp_path / "job", *steps, port=_free_port()))
    single = _start([_train(data, tmp_path / "single", *steps)], devices=2)
    results = _finish(job + single)
    for code, _, err in results:
        assert code == 0, err[-3000:]
    outputs = [json.loads(out) for _, out, _ in results]
    job_ids = {o["model_id"] for o in outputs[:2]}
    assert len(job_ids) == 1, "every process reports the one record"
    assert [o["process_id"] for o in outputs[:2]] == [0, 1]
    assert outputs[0]["store"] is not None and outputs[1]["store"] is None
    (job_id,) = job_ids
    # Process 0 alone wrote the store, and only that record.
    assert [row["id"] for row in Store(tmp_path / "job").status()] == [job_id]
    job_losses = _history(tmp_path / "job", job_id)
    single_losses = _history(tmp_path / "single", outputs[2]["model_id"])
    assert len(job_losses) == 1 and len(single_losses) == 1  # one check at step 60
    np.testing.assert_allclose(job_losses, single_losses, rtol=1e-5)
    job_params = Store(tmp_path / "job").load(job_id).params
    single_params = Store(tmp_path / "single").load(outputs[2]["model_id"]).params
    for a, b in zip(jax.tree.leaves(job_params), jax.tree.leaves(single_params), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-7)


def test_one_process_with_two_cpu_devices_does_not_deadlock(data, tmp_path):
    # NHITS's default three stacks, 300 steps: with steps dispatched ahead, XLA:CPU's
    # in-process all-reduce aborted this run after 40 s in 6 of 6 tries on 2 cores (before
    # multi_step_fn waited for each step on several CPU devices of one process).
    command = [sys.executable, "-m", "ntjax.cli", "train", "--data", str(data), "--horizon", "6"]
    command += ["--input-size", "24", "--batch-size", "16", "--config", '{"mlp_units": 16}']
    command += ["--no-progress", "--max-steps", "300", "--store", str(tmp_path / "store")]
    ((code, out, err),) = _finish(_start([command], devices=2), timeout=240)
    assert code == 0, err[-3000:]
    assert json.loads(out)["status"] == "trained"


@pytest.mark.slow
def test_a_killed_peer_ends_the_survivor_and_a_rerun_resumes(data, tmp_path):
    checkpoints = tmp_path / "checkpoints"
    extra = ["--max-steps", "3000", "--checkpoint-dir", str(checkpoints)]
    extra += ["--checkpoint-every", "100"]
    store = tmp_path / "store"
    survivor, victim = _start(_job(data, store, *extra, port=_free_port()))
    meta = checkpoints / "checkpoint.json"
    deadline = time.monotonic() + 180
    while not meta.exists() and time.monotonic() < deadline and survivor.poll() is None:
        time.sleep(0.1)
    assert meta.exists(), survivor.communicate()[1][-3000:]
    os.kill(victim.pid, signal.SIGKILL)  # the process the user started; its JAX child follows
    killed = time.monotonic()
    code, out, err = _finish([survivor], timeout=60)[0]
    elapsed = time.monotonic() - killed
    victim.communicate()  # reaps it and closes its pipes
    assert code == 1 and out == ""
    assert elapsed < 30, f"the survivor took {elapsed:.1f}s to stop"
    last = err.strip().splitlines()[-1]
    assert last.startswith("ntjax: error: DistributedError: process 0 of 2 stopped")
    assert "a peer process was lost" in last and "resume from the last checkpoint" in last
    assert "@ 0x" not in err and "Check failure" not in err  # no native stack trace
    # Nothing half-written: the run is not a model of the store.
    rows = Store(store).status()
    assert all(row["status"] != "trained" for row in rows)
    saved = json.loads(meta.read_text())["loop"]["done"]
    assert 0 < saved < 3000

    results = _finish(_start(_job(data, store, *extra, port=_free_port())))
    for code, _, err in results:
        assert code == 0, err[-3000:]
        assert f"resuming from the checkpoint at step {saved}" in err
    model_id = json.loads(results[0][1])["model_id"]
    record = Store(store).load(model_id)
    assert record.metrics["steps"] == 3000
    # The resumed run trained what an uninterrupted job trains.
    reference = _finish(
        _start(_job(data, tmp_path / "ref", "--max-steps", "3000", port=_free_port()))
    )
    for code, _, err in reference:
        assert code == 0, err[-3000:]
    expected = _history(tmp_path / "ref", json.loads(reference[0][1])["model_id"])
    np.testing.assert_allclose(record.history["train_loss"], expected, rtol=1e-5)


@pytest.mark.slow
def test_a_peer_that_never_arrives_ends_the_job_in_bounded_time(data, tmp_path):
    (lonely,) = _start(
        [
            _job(
                data,
                tmp_path / "store",
                "--max-steps",
                "10",
                "--init-timeout",
                "5",
                port=_free_port(),
            )[1]
        ]
    )
    started = time.monotonic()
    code, out, err = _finish([lonely], timeout=120)[0]
    assert code == 1 and out == ""
    assert time.monotonic() - started < 30
    last = err.strip().splitlines()[-1]
    assert "process 1 of 2 stopped" in last and "not every process joined" in last


# A stand-in for a JAX process killed by the runtime: what jax 0.10 writes, then SIGABRT.
_ABORTING_CHILD = r"""
import os, sys
print("ntjax: training nhits", file=sys.stderr, flush=True)
sys.stderr.write("E1202 01:30:33.675006   16232 coordination_service.cc:1549] [1] Use error "
                 "polling to propagate the following error to all tasks: UNAVAILABLE: The "
                 "following tasks are unhealthy (stopped sending heartbeats):\n1\n")
sys.stderr.write("F1202 01:30:33.679103   16243 client.h:80] Terminating process because the "
                 "JAX distributed service detected fatal errors. Task 1 heartbeat timeout.\n")
sys.stderr.write("*** Check failure stack trace: ***\n    @     0x7f448b240634  absl::Flush()\n")
sys.stderr.flush()
os.abort()
"""


def test_supervise_sums_up_a_runtime_abort_in_one_sentence(capsys):
    code, sentence = distributed.supervise(
        [sys.executable, "-c", _ABORTING_CHILD], label="process 0 of 2"
    )
    err = capsys.readouterr().err
    assert code == 1
    assert err == "ntjax: training nhits\n"  # the runtime's lines are held back
    assert sentence.startswith("process 0 of 2 stopped")
    assert "a peer process was lost (process 1 stopped sending heartbeats)" in sentence


def test_supervise_passes_an_ordinary_failure_through(capsys):
    child = "import sys; print('ntjax: error: bad input', file=sys.stderr); sys.exit(1)"
    code, sentence = distributed.supervise([sys.executable, "-c", child], label="process 0 of 2")
    assert (code, sentence) == (1, None)
    assert capsys.readouterr().err == "ntjax: error: bad input\n"


def test_initialize_refuses_a_malformed_coordinator():
    with pytest.raises(distributed.DistributedError, match="HOST:PORT"):
        distributed.initialize("localhost", 2, 0)


def test_the_public_module_name():
    assert nt.distributed is distributed
    assert not distributed.is_multi_process()
    assert distributed.share_id("8c0d5b2e-8a47-4a51-9d7c-1c7b6f9b3c11").startswith("8c0d5b2e")


@pytest.mark.slow
def test_scaling_experiment_smoke():
    result = subprocess.run(
        [sys.executable, str(ROOT / "experiments" / "scaling.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=ROOT,
        env=_env(1),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert report["steps"] == 30
    layouts = {row["layout"]: row for row in report["layouts"]}
    assert [(r["processes"], r["devices"]) for r in layouts.values()] == [(1, 1), (1, 2), (2, 2)]
    assert all(r["windows_per_s"] > 0 for r in layouts.values())
    # One program, one batch split the same way: the two 2-device layouts end on one loss.
    two = [r["train_loss"] for r in layouts.values() if r["devices"] == 2]
    np.testing.assert_allclose(two[0], two[1], rtol=1e-5)
