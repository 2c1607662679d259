"""The store's parts: the JAX-free ones (index, aliases, liveness, rate limit, catalog), the
migration of older indexes, one function per status transition, and errors that are not
turned into "corrupt artifact"."""

import json
import os
import socket
import sqlite3
import subprocess
import sys

import pytest
from conftest import sine_frame

import ntjax as nt
import ntjax.store
from ntjax.registry import new_id, utc_now
from ntjax.store import ArtifactError, Catalog, Store, StoreError, codec, index, liveness

CONFIG = nt.NHITSConfig(horizon=4, input_size=16, mlp_units=16)
TRAINING = nt.TrainingConfig(max_steps=2, batch_size=16, progress=False)


@pytest.fixture(scope="module")
def record():
    return nt.train(sine_frame(n_series=2, length=80), CONFIG, TRAINING)


@pytest.fixture
def store(tmp_path):
    return Store(tmp_path / "store")


def test_the_index_side_of_the_store_imports_no_jax(tmp_path):
    script = """
import sys
from ntjax.store import Catalog, RateLimit, StoreError, aliases, files, index, liveness, ratelimit
catalog = Catalog(sys.argv[1])
assert catalog.query() == [] and catalog.aliases() == {} and len(catalog) == 0
ratelimit.take_token(catalog._index, RateLimit(burst=1))
heavy = [m for m in ("jax", "numpy", "polars") if m in sys.modules]
assert heavy == [], heavy
"""
    out = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "store")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]


def test_store_is_loaded_on_first_use():
    assert ntjax.store.Store is Store is nt.Store
    assert {"Store", "Catalog", "RateLimit"} <= set(dir(ntjax.store))
    with pytest.raises(AttributeError, match="no attribute 'Stor'"):
        ntjax.store.Stor  # noqa: B018


def test_a_catalog_reads_what_the_store_wrote(record, store):
    saved = [store.save(record.replace(id=new_id(), created_at=utc_now())) for _ in range(2)]
    store.set_alias("production", saved[0].id)
    store.record_evaluation(saved[1].id, {"mae": 1.5, "in_sample": False})
    catalog = Catalog(store.root)
    assert repr(catalog) == f"Catalog({str(store.root)!r})" and repr(store).startswith("Store(")
    assert catalog.query() == store.query()
    assert catalog.status(saved[0].id) == store.status(saved[0].id)
    assert catalog.status(saved[0].id)["aliases"] == ["production"]
    assert catalog.resolve("production") == saved[0].id
    assert catalog.evaluations(saved[1].id) == store.evaluations(saved[1].id)
    assert saved[1].id in catalog and len(catalog) == 2


def test_an_index_from_before_provenance_gains_its_column(record, store):
    store.save(record)
    for path in store.root.glob("index.sqlite*"):
        path.unlink()
    with sqlite3.connect(store.root / "index.sqlite") as db:  # the first release's models table
        db.execute(
            "CREATE TABLE models (id TEXT PRIMARY KEY, kind TEXT NOT NULL, status TEXT NOT NULL "
            "CHECK (status IN ('training', 'trained', 'failed')), created_at TEXT NOT NULL, "
            "updated_at TEXT NOT NULL, horizon INTEGER NOT NULL, input_size INTEGER NOT NULL, "
            "n_params INTEGER, parent_id TEXT, data_fingerprint TEXT, version TEXT NOT NULL, "
            "metrics TEXT NOT NULL DEFAULT '{}', evaluation TEXT NOT NULL DEFAULT '{}', "
            "error TEXT, owner_host TEXT, owner_pid INTEGER, owner_token TEXT)"
        )
        db.execute(
            "INSERT INTO models (id, kind, status, created_at, updated_at, horizon, input_size, "
            "n_params, version, metrics) VALUES (?, 'nhits', 'trained', ?, ?, 4, 16, 7, '0.0.1', "
            "'{\"mae\": 2.0}')",
            (record.id, record.created_at, record.created_at),
        )
    (row,) = Catalog(store.root).query()
    assert (row["id"], row["version"], row["metrics"]) == (record.id, "0.0.1", {"mae": 2.0})
    assert row["trained_on"] is None
    with sqlite3.connect(store.root / "index.sqlite") as db:
        columns = {found[1] for found in db.execute("PRAGMA table_info(models)")}
    assert "trained_on" in columns
    assert Store(store.root).load(record.id).id == record.id


def test_every_way_to_trained_writes_the_same_row(record, tmp_path):
    """Saving, settling a dead run's committed artifact and reindexing all go through
    ``index.set_trained``: the rows they leave agree."""
    saved = Store(tmp_path / "saved")
    saved.save(record)
    settled = Store(tmp_path / "settled")
    blobs = settled._artifact_bytes(record)
    with settled._index.transaction() as db:  # a run "owned" by a process that is gone
        index.begin(
            db, model_id=record.id, kind=record.kind, horizon=CONFIG.horizon,
            input_size=CONFIG.input_size, created_at=record.created_at, parent_id=None,
            version=nt.__version__, owner=(socket.gethostname(), 2**22 + 1, "gone"),
        )  # fmt: skip
    settled._write_artifact(record, blobs)
    assert settled.reap() == [record.id]
    rebuilt = Store(tmp_path / "rebuilt")
    rebuilt._write_artifact(record, blobs)
    assert rebuilt.reindex() == [record.id]

    def fields(store):
        row = store.status(record.id)
        return {k: v for k, v in row.items() if k != "updated_at"}

    assert fields(saved) == fields(settled) == fields(rebuilt)
    assert fields(saved)["status"] == "trained" and fields(saved)["trained_on"] is not None


def test_transitions_are_guarded_by_status_and_owner(tmp_path):
    catalog = Catalog(tmp_path / "store")
    model_id = new_id()
    owner = liveness.this_process()
    begin = {
        "model_id": model_id, "kind": "nhits", "horizon": 4, "input_size": 16,
        "created_at": utc_now(), "parent_id": None, "version": "x", "owner": owner,
    }  # fmt: skip
    with catalog._index.transaction() as db:
        index.begin(db, **begin)
    with pytest.raises(StoreError, match="write-once"), catalog._index.transaction() as db:
        index.begin(db, **begin)
    assert owner[0] == socket.gethostname() and owner[2] == liveness.process_token(os.getpid())
    assert liveness.owner_alive(*owner) and catalog.reap() == []  # this process is alive
    with catalog._index.transaction() as db:
        index.set_failed(db, model_id, "not the owner", owner_token="someone else")
    assert catalog.status(model_id)["status"] == "training"
    with catalog._index.transaction() as db:
        index.set_failed(db, model_id, "boom", owner_token=owner[2])
    row = catalog.status(model_id)
    assert (row["status"], row["error"]) == ("failed", "boom")
    with catalog._index.transaction() as db:
        index.set_failed(db, model_id, "again")  # only a training row fails
    assert catalog.status(model_id)["error"] == "boom"


def test_a_bug_while_decoding_is_not_called_a_corrupt_artifact(record, store, monkeypatch):
    store.save(record)

    def bug(*args, **kwargs):
        raise TypeError("a bug in the library")

    monkeypatch.setattr(codec, "_scaler_from_dict", bug)
    with pytest.raises(TypeError, match="a bug in the library"):
        store.load(record.id)
    monkeypatch.setattr(codec, "config_of", bug)
    with pytest.raises(TypeError, match="a bug in the library"):
        store.reindex()


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda m: m.update(params=[1, 2]), "'params' is not an object"),
        (lambda m: m["params"].update(bytes="12"), "'bytes' is not a byte count"),
        (lambda m: m.update(config="nhits"), "'config' is not an object"),
        (lambda m: m.update(metrics=[1.0]), "'metrics' is not an object"),
        (lambda m: m["scaler"].update(columns=7), "'columns' is not a list"),
        (lambda m: m.update(created_at=None), "'created_at' is not a text"),
    ],
    ids=["params", "bytes", "config", "metrics", "scaler", "created"],
)
def test_a_record_of_the_wrong_shape_is_one_clear_error(record, store, edit, message):
    store.save(record)
    path = store.root / "models" / record.id / "record.json"
    meta = json.loads(path.read_text())
    edit(meta)
    path.write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match=record.id) as error:
        store.load(record.id)
    assert message in str(error.value)
    for found in store.root.glob("index.sqlite*"):
        found.unlink()
    assert Store(store.root).reindex() == []  # left for load() to report
