import dataclasses

import jax
import numpy as np
import optuna
import polars as pl
import pytest
from conftest import TINY_NHITS, sine_frame

import ntjax as nt
from ntjax.models import get_model
from ntjax.train.population import (
    Member,
    PopulationError,
    _run,
    fit_population,
    incompatibility,
    stack_params,
    train_seeds,
)

TINY = TINY_NHITS
TRAINING = nt.TrainingConfig(
    max_steps=40, batch_size=16, val_size=12, val_check_steps=10, progress=False, devices=1
)


def _member(seed, learning_rate, dropout=0.0, **optimizer):
    return Member(
        dataclasses.replace(TINY, dropout=dropout),
        dataclasses.replace(TRAINING, seed=seed),
        nt.OptimizerConfig(learning_rate=learning_rate, **optimizer),
    )


def _leaves(params):
    return [np.asarray(x) for x in jax.tree.leaves(params)]


def test_members_equal_the_same_models_trained_one_by_one():
    frame = sine_frame(n_series=2, length=160, noise=0.1)
    members = [_member(1, 1e-3), _member(2, 3e-3, dropout=0.2), _member(3, 1e-2, dropout=0.1)]
    population = fit_population(frame, members)
    for member, record in zip(members, population.records, strict=True):
        alone = nt.train(frame, member.config, member.training, member.optimizer)
        assert record.status == "trained" and record.config == member.config
        assert record.training == member.training and record.optimizer == member.optimizer
        for got, want in zip(_leaves(record.params), _leaves(alone.params), strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(record.history["val_loss"], alone.history["val_loss"], rtol=1e-4)
        assert record.metrics["best_step"] == alone.metrics["best_step"]
        np.testing.assert_allclose(
            nt.forecast(record, frame)["y_hat"].to_numpy(),
            nt.forecast(alone, frame)["y_hat"].to_numpy(),
            rtol=1e-4,
            atol=1e-4,
        )


def test_train_seeds_is_one_call_and_returns_stacked_params():
    frame = sine_frame(n_series=2, length=120)
    population = train_seeds(
        frame, TINY, dataclasses.replace(TRAINING, max_steps=10), seeds=[0, 1, 2]
    )
    assert [r.training.seed for r in population.records] == [0, 1, 2]
    assert len({r.id for r in population.records}) == 3
    for leaf, one in zip(
        jax.tree.leaves(population.params),
        jax.tree.leaves(population.records[0].params),
        strict=True,
    ):
        assert leaf.shape == (3, *one.shape)
    stacked = stack_params(population.records)
    for a, b in zip(_leaves(stacked), _leaves(population.params), strict=True):
        np.testing.assert_array_equal(a, b)
    first, second = (_leaves(r.params) for r in population.records[:2])
    assert not all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))


def test_a_stopped_or_diverging_member_fails_alone():
    # Unscaled values around 1e5: plain SGD at rate 10 overflows within the first steps (on
    # scaled data its dead ReLUs can stop the blow-up), while rate 1e-5 stays finite.
    frame = sine_frame(n_series=2, length=120).with_columns(pl.col("y") * 1e4)
    training = dataclasses.replace(TRAINING, scaler="identity")
    members = [
        Member(
            TINY,
            dataclasses.replace(training, seed=seed),
            nt.OptimizerConfig(name="sgd", grad_clip=None, learning_rate=learning_rate),
        )
        for seed, learning_rate in [(0, 1e-5), (1, 10.0), (2, 1e-5)]
    ]

    def prune_member_two(member, progress):
        if member == 2:
            raise optuna.TrialPruned(f"stopped at {progress.step}")

    population = fit_population(frame, members, callbacks=[prune_member_two])
    trained, diverged, pruned = population.records
    assert trained.status == "trained" and population.errors[0] is None
    assert diverged.status == "failed" and diverged.params is None
    assert isinstance(population.errors[1], FloatingPointError)
    assert pruned.status == "failed" and isinstance(population.errors[2], optuna.TrialPruned)
    assert pruned.metrics["steps"] == TRAINING.val_check_steps
    assert trained.metrics["steps"] == TRAINING.max_steps


def test_members_must_share_shapes_and_program():
    same = [_member(0, 1e-3), _member(1, 1e-2, dropout=0.3)]
    assert incompatibility(same) is None
    wider = Member(dataclasses.replace(TINY, mlp_units=32), TRAINING, nt.OptimizerConfig())
    assert "mlp_units" in incompatibility([same[0], wider])
    longer = Member(TINY, dataclasses.replace(TRAINING, max_steps=50), nt.OptimizerConfig())
    assert "max_steps" in incompatibility([same[0], longer])
    other = Member(TINY, TRAINING, nt.OptimizerConfig(name="sgd"))
    assert "name" in incompatibility([same[0], other])
    with pytest.raises(ValueError, match="cannot train as one population"):
        fit_population(sine_frame(), [same[0], wider])


def test_dropout_outside_nn_dropout_cannot_vary_per_member():
    # lstm_attention's attention dropout has a static rate: members differing in dropout would
    # silently share one rate, so the population refuses them.
    config = get_model("lstm_attention").config_cls(
        horizon=4, input_size=16, hidden_size=8, n_heads=2, context_size=4, decoder_hidden_size=8
    )
    training = dataclasses.replace(TRAINING, max_steps=2, val_size=0)
    members = [
        Member(dataclasses.replace(config, dropout=rate), training, nt.OptimizerConfig())
        for rate in (0.0, 0.3)
    ]
    with pytest.raises(PopulationError, match="outside nn.Dropout"):
        fit_population(sine_frame(n_series=1, length=80), members)


def test_a_diverging_loss_fails_the_same_way_alone_and_in_a_population():
    # The member that diverges in the population raises the same error when fitted alone:
    # one loop decides both (a single fit is a population of one).
    frame = sine_frame(n_series=2, length=120).with_columns(pl.col("y") * 1e4)
    training = dataclasses.replace(TRAINING, scaler="identity", seed=1)
    optimizer = nt.OptimizerConfig(name="sgd", grad_clip=None, learning_rate=10.0)
    population = fit_population(frame, [Member(TINY, training, optimizer)])
    with pytest.raises(FloatingPointError) as alone:
        nt.train(frame, TINY, training, optimizer)
    assert str(alone.value) == str(population.errors[0])
    assert population.records[0].error == f"FloatingPointError: {alone.value}"


def test_a_killed_population_resumes_from_its_checkpoint(tmp_path):
    frame = sine_frame(n_series=2, length=120)
    members = [_member(seed, lr) for seed, lr in [(0, 1e-3), (1, 3e-3)]]
    uninterrupted = fit_population(frame, members)

    class Killed(Exception):
        pass

    def kill(step, train_loss, val_loss):
        if step == 30:
            raise Killed

    folder = str(tmp_path / "ckpt")
    resumable = [m._replace(training=dataclasses.replace(
        m.training, checkpoint_every=20, checkpoint_dir=folder)) for m in members]  # fmt: skip
    with pytest.raises(Killed):
        _run(frame, resumable, on_check=kill)
    resumed = fit_population(frame, resumable)
    for before, after in zip(uninterrupted.records, resumed.records, strict=True):
        assert after.history["val_loss"] == before.history["val_loss"]
        for x, y in zip(_leaves(before.params), _leaves(after.params), strict=True):
            np.testing.assert_array_equal(x, y)


def test_a_killed_stacked_ensemble_resumes_from_its_checkpoint(tmp_path):
    frame = sine_frame(n_series=2, length=120)
    training = dataclasses.replace(TRAINING, checkpoint_every=20)
    whole = nt.train(frame, TINY, training, ensemble_size=2)

    class Killed(Exception):
        pass

    def kill(progress):
        if progress.step == 20:
            raise Killed

    resumable = dataclasses.replace(training, checkpoint_dir=str(tmp_path / "ckpt"))
    with pytest.raises(Killed):
        nt.train(frame, TINY, resumable, ensemble_size=2, callbacks=[kill])
    resumed = nt.train(frame, TINY, resumable, ensemble_size=2)
    for x, y in zip(_leaves(whole.params), _leaves(resumed.params), strict=True):
        np.testing.assert_array_equal(x, y)
