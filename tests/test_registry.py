"""ModelRecord, the immutable Registry, lineage and model_status."""

import dataclasses
import uuid

import numpy as np
import pytest

import ntjax as nt
from ntjax.data.scalers import ScalerState
from ntjax.registry import ModelRecord, Registry, check_id, model_status, new_id, utc_now

CONFIG = nt.NHITSConfig(horizon=4, input_size=16, mlp_units=8)


def make_record(**changes) -> ModelRecord:
    """A record with small hand-made parameters (the registry never looks inside them)."""
    fields = {
        "id": new_id(),
        "kind": "nhits",
        "config": CONFIG,
        "params": {"dense": {"kernel": np.ones((3, 2), np.float32), "bias": np.zeros(2)}},
        "scaler": ScalerState("standard", ("a",), ("y",), np.zeros((1, 1)), np.ones((1, 1))),
        "metrics": {"mae": 1.5},
    }
    return ModelRecord(**{**fields, **changes})


def test_new_ids_are_canonical_uuid4():
    ids = {new_id() for _ in range(100)}
    assert len(ids) == 100
    for model_id in ids:
        assert check_id(model_id) == model_id
        assert str(uuid.UUID(model_id)) == model_id and uuid.UUID(model_id).version == 4


@pytest.mark.parametrize(
    "bad",
    [
        str(uuid.uuid1()),
        str(uuid.uuid4()).upper(),
        uuid.uuid4().hex,
        f"urn:uuid:{uuid.uuid4()}",
        f" {uuid.uuid4()}",
        f"{uuid.uuid4()}\n",
        "../" + str(uuid.uuid4()),
        uuid.uuid4(),
    ],
    ids=["uuid1", "upper", "hex", "urn", "space", "newline", "traversal", "object"],
)
def test_check_id_refuses_anything_but_canonical_uuid4(bad):
    with pytest.raises(ValueError, match="canonical lowercase UUID4"):
        check_id(bad)


def test_record_checks_its_fields():
    with pytest.raises(ValueError, match="UUID4"):
        make_record(id="model-1")
    with pytest.raises(ValueError, match="UUID4"):
        make_record(parent_id="parent")
    with pytest.raises(ValueError, match="status"):
        make_record(status="done")
    with pytest.raises(ValueError, match="does not match"):
        make_record(kind="gru")


def test_record_is_frozen_and_replace_makes_a_new_one():
    record = make_record(updated_at="2020-01-01T00:00:00.000000+00:00")
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.status = "failed"
    changed = record.replace(status="failed", error="boom")
    assert (record.status, record.error) == ("trained", None)
    assert (changed.status, changed.error, changed.id) == ("failed", "boom", record.id)
    assert changed.updated_at > record.updated_at


def test_summary_and_parameter_count():
    record = make_record()
    assert record.n_params == 8
    summary = record.summary()
    assert summary["id"] == record.id and summary["n_params"] == 8
    assert summary["horizon"] == 4 and summary["quantiles"] == [0.025, 0.1, 0.5, 0.9, 0.975]
    assert summary["metrics"] == {"mae": 1.5}
    assert "params" not in summary


def test_registry_add_returns_a_new_registry():
    first, second = make_record(), make_record()
    empty = Registry()
    one = empty.add(first)
    two = one.add(second)
    assert len(empty) == 0 and len(one) == 1 and len(two) == 2
    assert list(two) == [first.id, second.id]
    assert two[first.id] is first
    with pytest.raises(ValueError, match="immutable"):
        two.add(first)
    with pytest.raises(ValueError, match="immutable"):
        two.add(first.replace(metrics={"mae": 0.0}))
    with pytest.raises(TypeError):
        two[first.id] = second  # no item assignment
    with pytest.raises(AttributeError):
        two.foo = 1  # no new attributes either (slots)


def test_registry_lookup_errors():
    registry = Registry().add(make_record())
    with pytest.raises(ValueError, match="UUID4"):
        registry["production"]
    with pytest.raises(KeyError, match="no model"):
        registry[new_id()]


def test_lineage_follows_parents_newest_first():
    base = make_record()
    tuned = make_record(parent_id=base.id)
    retuned = make_record(parent_id=tuned.id)
    registry = Registry().add(base).add(tuned).add(retuned)
    assert [r.id for r in registry.lineage(retuned.id)] == [retuned.id, tuned.id, base.id]
    assert [r.id for r in registry.lineage(base.id)] == [base.id]
    orphan = Registry().add(retuned)  # the parent lives elsewhere: the chain stops there
    assert [r.id for r in orphan.lineage(retuned.id)] == [retuned.id]


def test_model_status_of_a_registry():
    older = make_record(created_at="2024-01-01T00:00:00.000000+00:00")
    newer = make_record(created_at=utc_now(), status="failed", error="diverged")
    registry = Registry().add(older).add(newer)
    rows = model_status(registry)
    assert [r["id"] for r in rows] == [newer.id, older.id]
    one = model_status(registry, older.id)
    for key in ("id", "kind", "status", "metrics", "n_params", "created_at", "updated_at"):
        assert key in one
    assert (one["status"], one["n_params"], one["metrics"]) == ("trained", 8, {"mae": 1.5})
    assert model_status(registry, newer.id)["error"] == "diverged"
    with pytest.raises(ValueError, match="UUID4"):
        model_status(registry, "latest")
    assert model_status(Registry()) == []
