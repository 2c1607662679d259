"""Multi-process training with real processes on 127.0.0.1 (``nt.distributed``, ``ntjax train
--coordinator``): 2 processes x 1 device train what 1 process x 2 devices trains, one record;
a lost peer ends the survivor quickly with one sentence; a rerun resumes from the checkpoint.

Each process is a new Python with its own device count (``XLA_FLAGS``), not this one's four.
"""

import dataclasses
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
import polars as pl
import pytest
from conftest import TINY_NHITS, sine_frame

import ntjax as nt
from ntjax.config import ConfigError
from ntjax.data.frame import validate
from ntjax.data.windows import pack
from ntjax.predict.conformal import tail_calibration
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
    assert len(job_losses) == len(single_losses) == 2  # checks at steps 50 and 60
    np.testing.assert_allclose(job_losses, single_losses, rtol=1e-5)
    job_params = Store(tmp_path / "job").load(job_id).params
    single_params = Store(tmp_path / "single").load(outputs[2]["model_id"]).params
    for a, b in zip(jax.tree.leaves(job_params), jax.tree.leaves(single_params), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-7)


@pytest.fixture(scope="module")
def panel_data(tmp_path_factory) -> Path:
    """Four series of unequal lengths (a shard per process holds two)."""
    folder = tmp_path_factory.mktemp("panel")
    frame = sine_frame(n_series=4, length=240, noise=0.1)
    frame = frame.filter((pl.col("unique_id") != "s3") | (pl.col("ds") >= 40))
    frame.write_csv(folder / "all.csv")
    for rank, ids in enumerate(distributed.series_shards(["s0", "s1", "s2", "s3"], 2)):
        frame.filter(pl.col("unique_id").is_in(ids)).write_csv(folder / f"part-{rank}.csv")
    return folder


def test_series_sharded_processes_train_what_one_process_with_two_devices_trains(
    panel_data, tmp_path
):
    # Process i holds only its own series: read from its own file, or kept from the whole
    # file by local_series; one process with two devices splits the same series the same way.
    sharded = ["--max-steps", "40", "--shard-series", "--calibration", "rolling"]
    port = _free_port()
    own_files = _job(panel_data / "part-{process_id}.csv", tmp_path / "own", *sharded, port=port)
    whole = _job(panel_data / "all.csv", tmp_path / "whole", *sharded, port=_free_port())
    single = _start([_train(panel_data / "all.csv", tmp_path / "single", *sharded)], devices=2)
    results = _finish(_start(own_files) + _start(whole) + single)
    for code, _, err in results:
        assert code == 0, err[-3000:]
    outputs = [json.loads(out) for _, out, _ in results]
    assert outputs[0]["model_id"] == outputs[1]["model_id"]
    assert outputs[2]["model_id"] == outputs[3]["model_id"]
    records = [
        Store(tmp_path / name).load(outputs[k]["model_id"])
        for name, k in (("own", 0), ("whole", 2), ("single", 4))
    ]
    reference = records[2]
    assert reference.scaler.ids == ("s0", "s1", "s2", "s3")
    assert sorted(reference.trained_on["unique_id"].unique()) == ["s0", "s1", "s2", "s3"]
    assert reference.extra["calibration"]["n_scores"] > 0
    for record in records[:2]:
        np.testing.assert_allclose(
            record.history["train_loss"], reference.history["train_loss"], rtol=1e-5
        )
        np.testing.assert_allclose(
            record.history["val_loss"], reference.history["val_loss"], rtol=1e-5
        )
        for a, b in zip(
            jax.tree.leaves(record.params), jax.tree.leaves(reference.params), strict=True
        ):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-7)
        # What every process saw, joined: scaler, provenance, data fingerprint, calibration.
        assert record.scaler.ids == reference.scaler.ids
        np.testing.assert_allclose(record.scaler.loc, reference.scaler.loc)
        assert record.trained_on.equals(reference.trained_on)
        assert record.data_fingerprint == reference.data_fingerprint
        np.testing.assert_allclose(
            record.extra["calibration"]["offsets"],
            reference.extra["calibration"]["offsets"],
            rtol=1e-4,
            atol=1e-6,
        )


def test_a_series_on_two_processes_is_refused(panel_data, tmp_path):
    # Each process's own file holds every series: each series is on both processes.
    for rank in range(2):
        (tmp_path / f"copy-{rank}.csv").write_bytes((panel_data / "all.csv").read_bytes())
    job = _job(tmp_path / "copy-{process_id}.csv", tmp_path / "store", port=_free_port())
    results = _finish(_start([command + ["--shard-series"] for command in job]), timeout=120)
    for code, out, err in results:
        assert code == 1 and out == ""
        last = err.strip().splitlines()[-1]
        assert "series 's0' is on processes 0 and 1" in last, err[-2000:]


def test_series_shards_and_local_series():
    ids = ["b", "a", "e", "c", "d", "a"]
    assert distributed.series_shards(ids, 2) == [["a", "b", "c"], ["d", "e"]]
    assert distributed.series_shards(ids, 5) == [["a"], ["b"], ["c"], ["d"], ["e"]]
    frame = sine_frame(n_series=5, length=30)
    parts = [distributed.local_series(frame, process_id=i, num_processes=2) for i in range(2)]
    assert [sorted(p["unique_id"].unique()) for p in parts] == [["s0", "s1", "s2"], ["s3", "s4"]]
    assert sum(p.height for p in parts) == frame.height
    with pytest.raises(ValueError, match="5 series cannot be shared by 6 processes"):
        distributed.local_series(frame, process_id=0, num_processes=6)
    with pytest.raises(ValueError, match="process_id must be in"):
        distributed.local_series(frame, process_id=2, num_processes=2)


def test_a_series_sharded_fit_in_one_process_pools_validation_and_calibration():
    frame = sine_frame(n_series=3, length=200, noise=0.1)
    training = nt.TrainingConfig(
        max_steps=20,
        batch_size=16,
        val_size=6,
        val_check_steps=10,
        progress=False,
        devices=2,
        shard_series=True,
    )
    record = nt.train(frame, TINY_NHITS, training)
    assert record.scaler.ids == ("s0", "s1", "s2")
    assert record.training.shard_series
    assert len(record.history["val_loss"]) == 2 and np.isfinite(record.history["val_loss"]).all()
    # The calibration from the gathered tails equals one from the whole panel.
    calibration = record.extra["calibration"]
    whole = tail_calibration(
        record.replace(extra={}),
        pack(validate(frame), ("y",)),
        method="rolling",
        calibration_size=calibration["calibration_size"],
    )
    np.testing.assert_allclose(whole["offsets"], calibration["offsets"])
    np.testing.assert_allclose(
        whole["end_offsets"]["offsets"], calibration["end_offsets"]["offsets"]
    )
    forecast = nt.forecast(record, frame)
    assert forecast.height == 3 * 6


def test_series_sharding_refusals():
    frame = sine_frame(n_series=3, length=200)
    sharded = nt.TrainingConfig(max_steps=5, batch_size=16, progress=False, shard_series=True)
    with pytest.raises(ConfigError, match="at least one series per device.*at most 3"):
        nt.train(frame, TINY_NHITS, dataclasses.replace(sharded, devices=4))
    with pytest.raises(ConfigError, match="shard_series is supported when nt.train fits one"):
        nt.train(frame, TINY_NHITS, dataclasses.replace(sharded, devices=2), ensemble_size=2)


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
    assert record.metrics["steps"] > saved
    # The resumed run trained what an uninterrupted job trains (early stopping included).
    reference = _finish(
        _start(_job(data, tmp_path / "ref", "--max-steps", "3000", port=_free_port()))
    )
    for code, _, err in reference:
        assert code == 0, err[-3000:]
    expected = Store(tmp_path / "ref").load(json.loads(reference[0][1])["model_id"])
    assert record.metrics["steps"] == expected.metrics["steps"]
    np.testing.assert_allclose(
        record.history["train_loss"], expected.history["train_loss"], rtol=1e-5
    )


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
    shapes = [(r["processes"], r["devices"], r["shard_series"]) for r in layouts.values()]
    assert shapes == [(1, 1, False), (1, 2, False), (2, 2, False), (1, 2, True), (2, 2, True)]
    assert all(r["windows_per_s"] > 0 for r in layouts.values())
    # One program, one batch split the same way: the 2-device layouts of each kind end on
    # one loss.
    for sharded in (False, True):
        two = [
            r["train_loss"]
            for r in layouts.values()
            if r["devices"] == 2 and r["shard_series"] == sharded
        ]
        np.testing.assert_allclose(two[0], two[1], rtol=1e-5)
