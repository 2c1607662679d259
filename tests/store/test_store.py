"""The store: round trips, status transitions, aliases, queries, safety and crash safety.

Crash and concurrency tests run real processes (``python -c``), killed with SIGKILL.
"""

import dataclasses
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import ClassVar

import jax
import numpy as np
import polars as pl
import pytest
from conftest import sine_frame

import ntjax as nt
from ntjax.registry import model_status, new_id, utc_now
from ntjax.store import (
    ArtifactError,
    ModelNotFoundError,
    RateLimit,
    RateLimitError,
    Store,
    StoreError,
)
from ntjax.store import files as store_files

TESTS = Path(__file__).resolve().parents[1]  # tests/, where conftest.py is
CONFIG = nt.NHITSConfig(horizon=4, input_size=16, mlp_units=16)
TRAINING = nt.TrainingConfig(max_steps=20, batch_size=16, val_check_steps=10, progress=False)


def frame() -> pl.DataFrame:
    return sine_frame(n_series=2, length=80)


# -- real processes --------------------------------------------------------------------------

_PRELUDE = f"""
import os, signal, sys, time
sys.path.insert(0, {str(TESTS)!r})
from conftest import sine_frame
import ntjax as nt
from ntjax import _io
from ntjax.registry import new_id
from ntjax.store import Store, RateLimit
from ntjax.config import NHITSConfig, TrainingConfig
CONFIG = {CONFIG!r}
TRAINING = {TRAINING!r}
"""

TRAIN = (
    _PRELUDE
    + """
root, seed, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
training = TRAINING.__class__(**{**TRAINING.__dict__, "seed": seed, "max_steps": steps})
record = Store(root).train(sine_frame(n_series=2, length=80), CONFIG, training)
print(record.id)
"""
)

SAVE_FOREVER = (
    _PRELUDE
    + """
source, source_id, root = sys.argv[1:4]
record = Store(source).load(source_id)
store = Store(root)
store.save(record.replace(id=new_id()))
print("ready", flush=True)
while True:
    store.save(record.replace(id=new_id()))
"""
)

# Dies by SIGKILL at a chosen point of a save, through the store's own steps.
KILL_AT = (
    _PRELUDE
    + """
source, source_id, root, point = sys.argv[1:5]
record = Store(source).load(source_id).replace(id=new_id())
store = Store(root)
print(record.id, flush=True)
blobs = store._artifact_bytes(record)
store._begin(record.id, record.config, created_at=record.created_at, parent_id=None)
folder = store._model_dir(record.id)
if point == "params":
    folder.mkdir()
    _io.atomic_write(folder / "params.safetensors", blobs[0])
elif point == "tmp":
    folder.mkdir()
    with open(folder / ".params.safetensors.partial.tmp", "wb") as handle:
        handle.write(blobs[0][: len(blobs[0]) // 2])
        handle.flush()
elif point == "committed":
    store._write_artifact(record, blobs)
os.kill(os.getpid(), signal.SIGKILL)
"""
)

FORECAST = (
    _PRELUDE
    + """
import polars as pl
root, model_id, data, out = sys.argv[1:5]
record = Store(root).load(model_id)
nt.forecast(record, pl.read_parquet(data), levels=(80,)).write_parquet(out)
"""
)


@pytest.fixture(scope="session")
def child_env(request):
    """Environment of child processes: the test's devices, plus a compilation cache shared by
    the children (never by this process), kept in pytest's cache folder between runs."""
    env = dict(os.environ)
    env["JAX_COMPILATION_CACHE_DIR"] = str(request.config.cache.mkdir("ntjax-child-jax-cache"))
    env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    env["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"
    return env


def spawn(script: str, *args: object, env: dict) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", script, *map(str, args)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def kill(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGKILL)
    process.communicate()


def finish(process: subprocess.Popen, timeout: float = 300) -> str:
    out, err = process.communicate(timeout=timeout)
    assert process.returncode == 0, err[-3000:]
    return out


# -- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A store holding one model trained through ``Store.train``, and what a callback saw of
    the index while that run was going."""
    store = Store(tmp_path_factory.mktemp("source"))
    seen = []
    record = store.train(
        frame(), CONFIG, TRAINING, callbacks=[lambda p: seen.append(store.query())]
    )
    return store, record, seen


@pytest.fixture
def store(tmp_path):
    return Store(tmp_path / "store")


def copies(store: Store, record, n: int) -> list:
    """``n`` copies of a trained record under fresh ids, saved into ``store``."""
    return [store.save(record.replace(id=new_id(), created_at=utc_now())) for _ in range(n)]


def assert_same_record(loaded, record):
    assert loaded.id == record.id
    assert loaded.config == record.config
    assert loaded.training == record.training and loaded.optimizer == record.optimizer
    for name in ("kind", "status", "parent_id", "version"):
        assert getattr(loaded, name) == getattr(record, name), name
    assert loaded.data_fingerprint == record.data_fingerprint
    assert dict(loaded.metrics) == dict(record.metrics)
    assert dict(loaded.history) == dict(record.history)
    assert loaded.scaler.ids == record.scaler.ids
    np.testing.assert_array_equal(loaded.scaler.loc, record.scaler.loc)
    np.testing.assert_array_equal(loaded.scaler.scale, record.scaler.scale)
    jax.tree.map(np.testing.assert_array_equal, loaded.params, jax.device_get(record.params))


# -- round trips and status ------------------------------------------------------------------


def test_train_registers_training_then_trained(source):
    store, record, seen = source
    assert seen, "the callback ran during training"
    assert [row["status"] for row in seen[0]] == ["training"]
    assert seen[0][0]["id"] == record.id
    row = store.status(record.id)
    assert row["status"] == "trained" and row["error"] is None
    assert row["data_fingerprint"] == record.data_fingerprint and row["version"] == nt.__version__
    assert row["n_params"] == record.n_params > 0
    assert row["metrics"]["steps"] == TRAINING.max_steps


def test_load_round_trip(source):
    store, record, _ = source
    loaded = store.load(record.id)
    assert_same_record(loaded, record)
    assert (loaded.created_at, loaded.updated_at) == (record.created_at, record.updated_at)
    assert nt.forecast(loaded, frame(), levels=(80,)).equals(
        nt.forecast(record, frame(), levels=(80,))
    )
    assert_same_record(store.verify(record.id), record)


def test_load_in_new_process_forecasts_bit_identically(source, tmp_path, child_env):
    store, record, _ = source
    data, out = tmp_path / "data.parquet", tmp_path / "forecast.parquet"
    frame().write_parquet(data)
    finish(spawn(FORECAST, store.root, record.id, data, out, env=child_env))
    expected = nt.forecast(record, frame(), levels=(80,))
    assert pl.read_parquet(out).equals(expected)


def test_write_once(source, store):
    _, record, _ = source
    store.save(record)
    files = {p.name: p.read_bytes() for p in (store.root / "models" / record.id).iterdir()}
    with pytest.raises(StoreError, match="write-once"):
        store.save(record)
    with pytest.raises(StoreError, match="write-once"):
        store.save(record.replace(metrics={"mae": 0.0}))
    assert {p.name: p.read_bytes() for p in (store.root / "models" / record.id).iterdir()} == files
    assert store.status(record.id)["status"] == "trained"


def test_only_trained_records_are_saved(source, store):
    _, record, _ = source
    with pytest.raises(StoreError, match="only trained"):
        store.save(record.replace(id=new_id(), status="failed", error="boom"))
    assert len(store) == 0


def test_failed_training_is_recorded_with_its_error(store):
    with pytest.raises(ValueError, match="shorter"):
        store.train(sine_frame(length=10), CONFIG, TRAINING)
    (row,) = store.query()
    assert row["status"] == "failed"
    assert "ConfigError" in row["error"] and "shorter" in row["error"]  # a ValueError
    with pytest.raises(ModelNotFoundError, match="failed"):
        store.load(row["id"])


def test_unknown_model_is_a_clear_error(store):
    missing = new_id()
    with pytest.raises(ModelNotFoundError, match=missing):
        store.load(missing)
    with pytest.raises(ModelNotFoundError, match=missing):
        store.status(missing)


def test_query_filters_and_orders(source, store):
    _, record, _ = source
    a, b, c = copies(store, record, 3)
    store.record_evaluation(a.id, {"mae": 3.0, "in_sample": False})
    store.record_evaluation(b.id, {"mae": 1.0, "in_sample": False})
    store.record_evaluation(c.id, {"mae": 2.0, "in_sample": False})
    assert [r["id"] for r in store.query()] == [c.id, b.id, a.id]  # newest first
    assert [r["id"] for r in store.query(metric="mae")] == [b.id, c.id, a.id]
    assert [r["id"] for r in store.query(metric="mae", descending=True, limit=1)] == [a.id]
    assert [r["id"] for r in store.query(metric="mae", at_most=2.0)] == [b.id, c.id]
    assert [r["id"] for r in store.query(metric="mae", at_least=2.5)] == [a.id]
    assert len(store.query(metric="train_loss")) == 3  # training metrics count too
    assert store.query(metric="no_such_metric") == []
    assert len(store.query(kind="nhits", status="trained")) == 3
    assert store.query(kind="gru") == [] and store.query(status="failed") == []
    created = store.status(b.id)["created_at"]
    assert {r["id"] for r in store.query(since=created)} == {b.id, c.id}
    assert {r["id"] for r in store.query(until=created)} == {a.id, b.id}
    assert store.query(since="2999-01-01") == []
    assert store.status(b.id)["evaluation"] == {"mae": 1.0}
    with pytest.raises(StoreError):
        store.query(status="done")
    for bad in ("mae') OR 1=1 --", "mae\n", ""):
        with pytest.raises(StoreError, match="not a metric name"):
            store.query(metric=bad)


def test_model_status_of_a_store(source, store):
    _, record, _ = source
    (saved,) = copies(store, record, 1)
    rows = model_status(store)
    assert [r["id"] for r in rows] == [saved.id]
    one = model_status(store, saved.id)
    for key in ("id", "kind", "status", "metrics", "n_params", "created_at", "updated_at"):
        assert key in one
    assert one["n_params"] == record.n_params
    with pytest.raises(ValueError, match="UUID"):
        model_status(store, "production")


# -- aliases ---------------------------------------------------------------------------------


def test_aliases_set_resolve_and_roll_back(source, store):
    _, record, _ = source
    a, b, c = copies(store, record, 3)
    assert store.set_alias("production", a.id)["previous"] is None
    assert store.set_alias("production", b.id)["previous"] == a.id
    assert store.set_alias("production", c.id)["previous"] == b.id
    assert store.resolve("production") == c.id
    assert store.status(c.id)["aliases"] == ["production"]
    assert store.rollback("production") == {
        "alias": "production",
        "model_id": b.id,
        "previous": c.id,
    }
    assert store.resolve("production") == b.id
    assert store.rollback("production")["model_id"] == a.id
    with pytest.raises(StoreError, match="no earlier model"):
        store.rollback("production")
    assert store.load(store.resolve("production")).id == a.id
    history = store.alias_history("production")
    assert [(e["action"], e["model_id"]) for e in history] == [
        ("set", a.id),
        ("set", b.id),
        ("set", c.id),
        ("rollback", b.id),
        ("rollback", a.id),
    ]
    assert store.aliases() == {"production": a.id}
    assert Store(store.root).resolve("production") == a.id  # persisted


def test_alias_checks(source, store):
    _, record, _ = source
    (a,) = copies(store, record, 1)
    assert store.resolve(a.id) == a.id
    for bad in ("../x", "a b", "", "x" * 65, "1abc", "a;DROP TABLE models", "prod\n", None):
        with pytest.raises(StoreError):
            store.set_alias(bad, a.id)
    with pytest.raises(StoreError, match="look like a model id"):
        store.set_alias("abcdef01-2345-4678-9abc-def012345678", a.id)
    with pytest.raises(ModelNotFoundError):
        store.set_alias("production", new_id())
    with pytest.raises(ModelNotFoundError, match="neither"):
        store.resolve("staging")
    with pytest.raises(ModelNotFoundError):
        store.rollback("staging")
    with pytest.raises(StoreError, match="'failed'"):
        store.set_alias("production", _failed_row(store))
    assert store.aliases() == {}


def _failed_row(store: Store) -> str:
    with pytest.raises(ValueError):
        store.train(sine_frame(length=10), CONFIG, TRAINING)
    return store.query(status="failed")[0]["id"]


# -- safety ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad_id",
    [
        "../../etc/passwd",
        "..",
        "9F1C4C4E-8B0C-4B8E-9C1A-2F3E4D5C6B7A",
        "{9f1c4c4e-8b0c-4b8e-9c1a-2f3e4d5c6b7a}",
        "9f1c4c4e8b0c4b8e9c1a2f3e4d5c6b7a",
        "9f1c4c4e-8b0c-1b8e-9c1a-2f3e4d5c6b7a",  # version 1
        "9f1c4c4e-8b0c-4b8e-9c1a-2f3e4d5c6b7a/../x",
        "9f1c4c4e-8b0c-4b8e-9c1a-2f3e4d5c6b7a\n",
        "",
        None,
        7,
    ],
    ids=[
        "traversal",
        "dotdot",
        "upper",
        "braces",
        "no-dashes",
        "uuid1",
        "suffix",
        "newline",
        "empty",
        "none",
        "int",
    ],
)
def test_ids_must_be_canonical_uuid4(store, bad_id):
    with pytest.raises(ValueError, match="UUID4"):
        store.load(bad_id)
    with pytest.raises(ValueError, match="UUID4"):
        store.set_alias("production", bad_id)
    with pytest.raises(ValueError, match="UUID4"):
        store.record_evaluation(bad_id, {"mae": 1.0})
    if bad_id is not None:  # status(None) lists every model
        with pytest.raises(ValueError, match="UUID4"):
            store.status(bad_id)
    assert list((store.root / "models").iterdir()) == []


def test_symlinked_model_folder_outside_the_root_is_refused(source, tmp_path):
    _, record, _ = source
    outside = Store(tmp_path / "outside")
    outside.save(record)
    store = Store(tmp_path / "store")
    (store.root / "models" / record.id).symlink_to(outside.root / "models" / record.id)
    with pytest.raises(StoreError, match="outside the store"):
        store.load(record.id)


def test_symlinked_parameter_file_is_refused(source, tmp_path):
    _, record, _ = source
    other = Store(tmp_path / "other")
    other.save(record)
    store = Store(tmp_path / "store")
    store.save(record)
    params = store.root / "models" / record.id / "params.safetensors"
    params.unlink()
    params.symlink_to(other.root / "models" / record.id / "params.safetensors")
    with pytest.raises(ArtifactError, match=f"{record.id}.*symbolic link"):
        store.load(record.id)


def test_symlinked_models_folder_is_refused(tmp_path):
    root = tmp_path / "store"
    root.mkdir()
    (tmp_path / "elsewhere").mkdir()
    (root / "models").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(StoreError, match="outside the store"):
        Store(root)


def test_oversized_artifact_is_refused_before_it_is_read(source, store, monkeypatch):
    _, record, _ = source
    store.save(record)
    params = store.root / "models" / record.id / "params.safetensors"
    os.truncate(params, 2 * 10**9)  # sparse: 2 GB on paper, nothing on disk

    def no_reading(*args):
        raise AssertionError("the store read an artifact over its size limit")

    monkeypatch.setattr(store_files, "read_exact", no_reading)
    with pytest.raises(ArtifactError, match=f"{record.id}.*over the store's limit"):
        store.load(record.id)


def test_size_limit_is_configurable_and_checked_when_saving(source, tmp_path):
    _, record, _ = source
    small = Store(tmp_path / "store", max_artifact_bytes=1000)
    with pytest.raises(ArtifactError, match="over the store's limit of 1000 bytes"):
        small.save(record)
    assert len(small) == 0 and not (small.root / "models" / record.id).exists()
    Store(tmp_path / "store").save(record)
    with pytest.raises(ArtifactError, match="over the store's limit of 1000 bytes"):
        small.load(record.id)
    with pytest.raises(ValueError):
        Store(tmp_path / "x", max_artifact_bytes=0)


def _edit_record(store: Store, model_id: str, edit) -> None:
    path = store.root / "models" / model_id / "record.json"
    meta = json.loads(path.read_text())
    edit(meta)
    path.write_text(json.dumps(meta))


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda m: m["config"].update(kind="evil"), "unknown model kind 'evil'"),
        (lambda m: m["config"].update(kind="__import__"), "unknown model kind"),
        (lambda m: m["config"].update(__class__="os.system"), "unknown fields"),
        (lambda m: m["config"].update(horizon=10**9), "horizon must be between"),
        (lambda m: m["config"].update(mlp_units=10**8), "mlp_units must be between"),
        (lambda m: m["config"].update(mlp_units=32), "shape"),
        (lambda m: m["training"].update(max_steps=-1), "max_steps"),
        (lambda m: m.update(status="training"), "status"),
        (lambda m: m.update(format="pickle"), "not an ntjax.record"),
        (lambda m: m["scaler"].update(loc=[[1.0]]), "scaler"),
    ],
    ids=[
        "kind",
        "kind-builtin",
        "field",
        "horizon",
        "width",
        "shape",
        "training",
        "status",
        "format",
        "scaler",
    ],
)
def test_artifact_contents_are_checked(source, store, edit, message):
    _, record, _ = source
    store.save(record)
    _edit_record(store, record.id, edit)
    with pytest.raises(ArtifactError, match=re.escape(record.id)) as error:
        store.load(record.id)
    assert message in str(error.value)


def test_no_pickle_or_eval_anywhere():
    package = Path(nt.__file__).parent
    forbidden = re.compile(
        r"\bimport pickle\b|\bpickle\.|\bcloudpickle\b|\bdill\b|\bmarshal\.loads?\b|"
        r"(?<![\w.])eval\(|(?<![\w.])exec\(|allow_pickle\s*=\s*True|yaml\.load\(|torch\.load\("
    )
    offenders = [
        f"{path.relative_to(package)}:{number}"
        for path in package.rglob("*.py")
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if forbidden.search(line)
    ]
    assert offenders == []


def test_training_requests_are_rate_limited(tmp_path):
    limit = RateLimit(burst=2, per_minute=60.0)
    store = Store(tmp_path / "store", rate_limit=limit)
    short = sine_frame(length=10)  # rejected by validation, after the limiter
    for _ in range(2):
        with pytest.raises(ValueError, match="shorter"):
            store.train(short, CONFIG, TRAINING)
    with pytest.raises(RateLimitError, match=r"rate limit reached .* retry in \d"):
        store.train(short, CONFIG, TRAINING)
    # The bucket lives in the index: another handle on the store shares it.
    with pytest.raises(RateLimitError):
        Store(tmp_path / "store", rate_limit=limit).train(short, CONFIG, TRAINING)
    assert len(store.query()) == 2  # refused requests leave no trace
    time.sleep(1.1)  # 60 per minute: one token a second
    with pytest.raises(ValueError, match="shorter"):
        store.train(short, CONFIG, TRAINING)
    unlimited = Store(tmp_path / "store", rate_limit=None)
    for _ in range(4):
        with pytest.raises(ValueError, match="shorter"):
            unlimited.train(short, CONFIG, TRAINING)


@pytest.mark.parametrize(
    "fields",
    [{"burst": 0}, {"burst": 1.5}, {"per_minute": 0}, {"per_minute": float("inf")}],
    ids=["burst0", "burst-float", "rate0", "rate-inf"],
)
def test_rate_limit_values_are_checked(fields):
    with pytest.raises(ValueError):
        RateLimit(**fields)


@dataclasses.dataclass(frozen=True, kw_only=True)
class _OutsideConfig(nt.NHITSConfig):
    kind: ClassVar[str] = "outside"


def test_only_model_configs_from_the_table_train(store):
    with pytest.raises(StoreError, match="model config"):
        store.train(frame(), {"kind": "nhits", "horizon": 4, "input_size": 16}, TRAINING)
    with pytest.raises(ValueError, match="unknown model 'outside'"):
        store.train(frame(), _OutsideConfig(horizon=4, input_size=16), TRAINING)
    assert len(store) == 0


# -- reliability -----------------------------------------------------------------------------


def _corrupt(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif how == "flip":
        middle = len(data) - 64  # inside the tensor data, past the safetensors header
        path.write_bytes(data[:middle] + bytes([data[middle] ^ 0x01]) + data[middle + 1 :])
    elif how == "garbage":
        path.write_bytes(b"\x00\xff" * 50)
    elif how == "delete":
        path.unlink()


@pytest.mark.parametrize(
    ("filename", "how"),
    [
        ("params.safetensors", "truncate"),
        ("params.safetensors", "flip"),
        ("params.safetensors", "garbage"),
        ("params.safetensors", "delete"),
        ("record.json", "truncate"),
        ("record.json", "garbage"),
    ],
    ids=[
        "params-truncated",
        "params-bitflip",
        "params-garbage",
        "params-missing",
        "record-truncated",
        "record-garbage",
    ],
)
def test_corrupt_artifact_is_one_clear_error_and_others_still_load(source, store, filename, how):
    _, record, _ = source
    good, bad, also_good = copies(store, record, 3)
    _corrupt(store.root / "models" / bad.id / filename, how)
    with pytest.raises(StoreError, match=re.escape(bad.id)) as error:
        store.load(bad.id)
    assert "\n" not in str(error.value)
    for other in (good, also_good):
        assert_same_record(store.load(other.id), other)
    assert len(store.query(status="trained")) == 3


def test_full_sha256_check_on_request(source, store):
    _, record, _ = source
    store.save(record)
    path = store.root / "models" / record.id / "record.json"
    meta = json.loads(path.read_text())
    meta["params"]["sha256"] = "0" * 64
    path.write_text(json.dumps(meta))
    store.load(record.id)
    with pytest.raises(ArtifactError, match="sha256"):
        store.verify(record.id)


def test_sigkill_during_training_leaves_a_failed_row(source, tmp_path, child_env):
    root = tmp_path / "store"
    Store(root)
    env = {**child_env, "XLA_FLAGS": "--xla_force_host_platform_device_count=1"}
    child = spawn(TRAIN, root, 0, 1_000_000, env=env)
    store = Store(root)
    deadline = time.monotonic() + 240
    while not store.query(status="training"):
        assert child.poll() is None, child.stderr.read()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(random.Random(0).uniform(0.5, 3.0))  # in data preparation, compile or steps
    kill(child)
    (row,) = store.query()
    assert row["status"] == "failed"
    assert "stopped before the model was saved" in row["error"]
    assert store.query(status="trained") == []
    with pytest.raises(ModelNotFoundError, match="failed"):
        store.load(row["id"])
    assert list((store.root / "models").iterdir()) == []
    _, record, _ = source
    store.save(record)  # the store is still usable
    assert_same_record(store.load(record.id), record)


def test_sigkill_at_each_step_of_saving(source, tmp_path, child_env):
    store, record, _ = source
    target = Store(tmp_path / "store")
    expected = {"registered": "failed", "tmp": "failed", "params": "failed", "committed": "trained"}
    children = {
        point: spawn(KILL_AT, store.root, record.id, target.root, point, env=child_env)
        for point in expected
    }
    for point, child in children.items():
        out, err = child.communicate(timeout=300)
        assert child.returncode == -signal.SIGKILL, err[-3000:]
        model_id = out.split()[0]
        row = target.status(model_id)
        assert row["status"] == expected[point], point
        if expected[point] == "trained":
            assert_same_record(target.load(model_id), record.replace(id=model_id))
            assert row["metrics"] == dict(record.metrics)
        else:
            assert "stopped before the model was saved" in row["error"]
            assert not (target.root / "models" / model_id).exists()  # partial files removed
            with pytest.raises(ModelNotFoundError, match="failed"):
                target.load(model_id)
    assert len(target.query(status="trained")) == 1


def test_sigkill_at_random_moments_of_saving(source, tmp_path, child_env):
    store, record, _ = source
    target = Store(tmp_path / "store")
    rng = random.Random(0)
    for _ in range(3):
        child = spawn(SAVE_FOREVER, store.root, record.id, target.root, env=child_env)
        assert child.stdout.readline().strip() == "ready", child.stderr.read()
        time.sleep(rng.uniform(0.05, 0.5))
        kill(child)
        rows = Store(target.root).query()
        assert rows and {r["status"] for r in rows} <= {"trained", "failed"}
        for row in rows:
            folder = target.root / "models" / row["id"]
            if row["status"] == "trained":
                assert_same_record(target.load(row["id"]), record.replace(id=row["id"]))
            else:
                assert not folder.exists()
        listed = {r["id"] for r in rows}
        assert {p.name for p in (target.root / "models").iterdir()} <= listed


def test_concurrent_training_processes_all_succeed(tmp_path, child_env):
    root = tmp_path / "store"
    Store(root)
    # One device per child: three processes share two cores, and sharding is not under test.
    env = {**child_env, "XLA_FLAGS": "--xla_force_host_platform_device_count=1"}
    children = [spawn(TRAIN, root, seed, 20, env=env) for seed in range(3)]
    ids = {finish(child).split()[-1] for child in children}
    store = Store(root)
    rows = store.query()
    assert {r["id"] for r in rows} == ids and len(ids) == 3
    assert {r["status"] for r in rows} == {"trained"}
    loaded = [store.load(model_id) for model_id in ids]
    assert len({r.training.seed for r in loaded}) == 3


def test_reindex_rebuilds_a_lost_index(source, store):
    _, record, _ = source
    saved = copies(store, record, 2)
    for path in store.root.glob("index.sqlite*"):
        path.unlink()
    fresh = Store(store.root)
    assert fresh.query() == []
    assert sorted(fresh.reindex()) == sorted(r.id for r in saved)
    assert {r["id"] for r in fresh.query(status="trained")} == {r.id for r in saved}
    assert fresh.reindex() == []


def test_compilation_cache_is_private(store):
    folder = store.root / "jax-cache"
    folder.mkdir(mode=0o777)
    folder.chmod(0o777)
    before = jax.config.jax_compilation_cache_dir
    assert store.enable_compilation_cache() is None  # others could plant code there
    assert jax.config.jax_compilation_cache_dir == before
