import math

import jax
import numpy as np
import pytest

from ntjax import losses

RNG = np.random.default_rng(0)
PRED = RNG.normal(size=(3, 5, 4)).astype(np.float32)
TARGET = RNG.normal(size=(3, 5)).astype(np.float32)
QUANTILES = (0.05, 0.3, 0.5, 0.95)


def test_pinball_matches_numpy():
    got = jax.jit(lambda p, y: losses.pinball_loss(p, y, quantiles=QUANTILES))(PRED, TARGET)
    expected = np.empty_like(PRED)
    for k, q in enumerate(QUANTILES):
        e = TARGET - PRED[..., k]
        expected[..., k] = np.where(e >= 0, q * e, (q - 1) * e)
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)
    assert got.shape == PRED.shape


@pytest.mark.parametrize(
    "fn,expected",
    [
        (losses.absolute_error, lambda p, y: np.abs(y - p)),
        (losses.squared_error, lambda p, y: (y - p) ** 2),
    ],
    ids=["mae", "mse"],
)
def test_point_losses_match_numpy(fn, expected):
    p, y = PRED[..., 0], TARGET
    np.testing.assert_allclose(jax.jit(fn)(p, y), expected(p, y), rtol=1e-6)


@pytest.mark.parametrize("delta", [0.3, 1.0, 2.5], ids=["d0.3", "d1", "d2.5"])
def test_huber_matches_numpy(delta):
    p, y = PRED[..., 0], TARGET
    e = np.abs(y - p)
    expected = np.where(e <= delta, 0.5 * e**2, delta * (e - 0.5 * delta))
    got = jax.jit(lambda a, b: losses.huber_loss(a, b, delta=delta))(p, y)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)


def test_gaussian_nll_matches_formula():
    mean, scale, y = 0.3, 1.7, np.array([-1.0, 0.0, 2.5])
    expected = [
        -math.log(math.exp(-0.5 * ((v - mean) / scale) ** 2) / (scale * math.sqrt(2 * math.pi)))
        for v in y
    ]
    np.testing.assert_allclose(jax.jit(losses.gaussian_nll)(mean, scale, y), expected, rtol=1e-5)


def test_student_t_nll_matches_formula():
    mean, scale, dof, y = 0.5, 2.0, 4.0, np.array([-3.0, 0.5, 4.0])

    def density(v):
        z = (v - mean) / scale
        c = math.gamma((dof + 1) / 2) / (math.gamma(dof / 2) * math.sqrt(dof * math.pi) * scale)
        return c * (1 + z * z / dof) ** (-(dof + 1) / 2)

    expected = [-math.log(density(v)) for v in y]
    got = jax.jit(losses.student_t_nll)(mean, scale, dof, y)
    np.testing.assert_allclose(got, expected, rtol=1e-5)
