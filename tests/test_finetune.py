"""nt.finetune: frozen parameters, scaler policies, provenance, and zero-shot forecasts of
series a model never saw, for every family."""

import jax
import numpy as np
import polars as pl
import pytest
from conftest import TINY_NHITS, sine_frame
from test_models import FAMILIES, tiny_config

import ntjax as nt
from ntjax.config import ConfigError, parameter_paths
from ntjax.store import Store

TINY = TINY_NHITS
QUICK = dict(batch_size=16, val_check_steps=10, progress=False, devices=1)


def _training(**changes):
    return nt.TrainingConfig(**{"max_steps": 40, **QUICK, **changes})


def _leaves(params):
    return dict(
        zip(parameter_paths(params), [np.asarray(x) for x in jax.tree.leaves(params)], strict=True)
    )


@pytest.fixture(scope="module")
def parent():
    return nt.train(sine_frame(n_series=2, length=160), TINY, _training())


def _other_series(length=160):
    """Two series the parent never saw: other ids, levels and phase."""
    df = sine_frame(n_series=2, length=length, period=12, noise=0.1, seed=3)
    return df.with_columns(pl.col("unique_id") + "_new", pl.col("y") * 3 + 50)


def test_freeze_everything_leaves_parameters_bit_identical(parent):
    child = nt.finetune(parent, _other_series(), training=_training(max_steps=20), freeze=("*",))
    before, after = _leaves(parent.params), _leaves(child.params)
    assert before.keys() == after.keys()
    for path in before:
        np.testing.assert_array_equal(before[path], after[path], err_msg=path)
    assert child.extra["finetune"]["trainable_leaves"] == 0


def test_frozen_subset_stays_while_the_rest_moves(parent):
    child = nt.finetune(
        parent, _other_series(), training=_training(max_steps=30), freeze=("_Block_0/*",)
    )
    before, after = _leaves(parent.params), _leaves(child.params)
    for path in before:
        if path.startswith("_Block_0/"):
            np.testing.assert_array_equal(before[path], after[path], err_msg=path)
        else:
            assert not np.array_equal(before[path], after[path]), path
    info = child.extra["finetune"]
    assert info["freeze"] == ["_Block_0/*"] and info["frozen_leaves"] == 8


def test_finetuned_record_has_parent_and_extended_provenance(parent):
    new = _other_series()
    child = nt.finetune(parent, new, training=_training(max_steps=20))
    assert child.parent_id == parent.id and child.id != parent.id
    assert set(child.trained_on["unique_id"]) == {"s0", "s1", "s0_new", "s1_new"}
    # keep: the parent's statistics stay for its series, the new ones are fitted on their rows
    assert child.scaler.ids[:2] == parent.scaler.ids
    np.testing.assert_array_equal(child.scaler.loc[:2], parent.scaler.loc)
    assert child.scaler.loc[2, 0] > parent.scaler.loc.max()
    # refit: only the new data's series, fitted on them
    refit = nt.finetune(parent, new, training=_training(max_steps=20), scaler="refit")
    assert refit.scaler.ids == ("s0_new", "s1_new")


def test_finetune_defaults_lower_the_rate_and_stop_early_on_the_new_tail(parent):
    new = _other_series(length=200)
    defaults = nt.lifecycle.fine_tuning_defaults(parent, new)
    assert defaults.max_steps == 50 and defaults.val_size == 2 * TINY.horizon
    assert defaults.early_stopping_patience == 3
    child = nt.finetune(parent, new)
    assert child.optimizer.learning_rate == pytest.approx(parent.optimizer.learning_rate / 10)
    assert child.training.val_size == 2 * TINY.horizon and "val_loss" in child.metrics
    # too short for a validation tail: none, and no early stopping
    short = nt.lifecycle.fine_tuning_defaults(parent, _other_series(length=40))
    assert short.val_size == 0 and short.early_stopping_patience is None


def test_finetuned_record_saves_loads_and_forecasts_like_any_other(parent, tmp_path):
    new = _other_series()
    child = nt.finetune(parent, new, training=_training(max_steps=20), freeze=("*/forecast/*",))
    store = Store(tmp_path / "store")
    store.save(child)
    loaded = store.load(child.id)
    assert loaded.optimizer.freeze == ("*/forecast/*",)
    assert loaded.extra["finetune"] == child.extra["finetune"]
    a = nt.forecast(child, new, levels=(80,))
    b = nt.forecast(loaded, new, levels=(80,))
    assert a.equals(b) and a.height == 2 * TINY.horizon


def test_bad_finetune_requests_get_one_sentence(parent):
    with pytest.raises(ConfigError, match="matches no parameter"):
        nt.finetune(parent, _other_series(), freeze=("encoder/*",))
    with pytest.raises(ConfigError, match="scaler must be one of"):
        nt.finetune(parent, _other_series(), scaler="parent")
    with pytest.raises(ConfigError, match="freeze takes non-empty glob patterns"):
        nt.OptimizerConfig(freeze=("",))
    quantised = nt.quantize(parent, "int8")
    with pytest.raises(ConfigError, match=f"fine-tune its parent \\({parent.id}\\)"):
        nt.finetune(quantised, _other_series())


def test_stacked_ensemble_finetunes_with_members_frozen(parent):
    ensemble = nt.train(
        sine_frame(n_series=2, length=160), TINY, _training(max_steps=20), ensemble_size=2
    )
    child = nt.finetune(ensemble, _other_series(), training=_training(max_steps=10), freeze=("*",))
    for a, b in zip(jax.tree.leaves(ensemble.params), jax.tree.leaves(child.params), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize("kind", FAMILIES)
def test_zero_shot_forecast_of_unseen_series(kind):
    """A model fitted on one series forecasts series it never saw (own level and scale, fitted
    on their history as the scaler policy says), scored out of sample."""
    seen = sine_frame(n_series=1, length=120)
    record = nt.train(seen, tiny_config(kind), _training(max_steps=20, batch_size=8))
    unseen = _other_series(length=120)
    forecast = nt.forecast(record, unseen, levels=(80,))
    assert set(forecast["unique_id"]) == {"s0_new", "s1_new"}
    p = forecast.select("lo_80", "y_hat", "hi_80").to_numpy()
    assert np.isfinite(p).all() and (np.diff(p, axis=1) >= -1e-5).all()
    # the unseen series' level: forecasts in its range, not the training series'
    assert abs(float(np.median(p[:, 1])) - float(unseen["y"].median())) < 10
    result = nt.evaluate(record, unseen, test_size=record.config.horizon)
    assert result["in_sample"] is False
