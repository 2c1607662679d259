"""Test setup: four fake CPU devices (so sharding code runs), fresh keys, shared fixtures."""

import os

# Must happen before jax is imported anywhere.
os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("MPLBACKEND", "Agg")
# Commands run in-process (``ntjax.cli.main.main``) would turn on JAX's persistent compilation
# cache for the whole test process, in a temporary store deleted after its test; tests that
# check the cache pass "1" to the processes they start.
os.environ.setdefault("NTJAX_COMPILATION_CACHE", "0")

from pathlib import Path  # noqa: E402

import jax  # noqa: E402
import numpy as np  # noqa: E402
import polars as pl  # noqa: E402
import pytest  # noqa: E402

from ntjax.models.nhits import NHITSConfig  # noqa: E402

# Implicit rank promotion in jax.numpy (e.g. [n] + [n, 1]) is a bug waiting for a shape
# change: it raises in the tests.
jax.config.update("jax_numpy_rank_promotion", "raise")
# No persistent compilation cache in the test process: a test that turns it on (a command run
# in-process) would leave it on, in a deleted temporary folder, for every later compile; the
# full suite segfaulted inside such a compile. Tests of the cache start their own processes.
jax.config.update("jax_enable_compilation_cache", False)

# A small NHITS (two stacks of one block of 16 units) that trains in seconds.
TINY_NHITS = NHITSConfig(
    horizon=6,
    input_size=24,
    mlp_units=16,
    n_blocks=(1, 1),
    pool_kernel_sizes=(2, 1),
    freq_downsample=(2, 1),
)
# The same model as the fixed keys of a search space, with a 20-step budget on one device.
TINY_SPACE = {
    "model": "nhits",
    "model.horizon": 6,
    "model.input_size": 24,
    "model.mlp_units": 16,
    "model.n_blocks": [1, 1],
    "model.pool_kernel_sizes": [2, 1],
    "model.freq_downsample": [2, 1],
    "training.max_steps": 20,
    "training.batch_size": 16,
    "training.val_check_steps": 10,
    "training.devices": 1,
}

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    """Drops JAX's compiled programs after each test module. One process compiling the whole
    suite's programs keeps every executable mapped; near the end of the suite an XLA compile
    segfaulted (deterministically, at the same test) with the kernel's default limit of 65,530
    memory maps per process in reach."""
    yield
    jax.clear_caches()


@pytest.fixture
def key(request):
    """A fresh key per test, derived from the test's name (stable across runs)."""
    seed = sum(map(ord, request.node.name)) % (2**31)
    return jax.random.key(seed)


def sine_frame(
    n_series: int = 2, length: int = 200, *, period: int = 12, noise: float = 0.0, seed: int = 0
) -> pl.DataFrame:
    """Seasonal series with different levels and amplitudes, integer ds."""
    rng = np.random.default_rng(seed)
    t = np.arange(length)
    frames = []
    for i in range(n_series):
        y = (
            10 * (i + 1)
            + (i + 1) * np.sin(2 * np.pi * t / period + i)
            + noise * rng.normal(size=length)
        )
        frames.append(pl.DataFrame({"unique_id": f"s{i}", "ds": t, "y": y}))
    return pl.concat(frames)


@pytest.fixture
def sines():
    return sine_frame()


def shared_data(name: str) -> Path:
    """Path of a file in ../shared/data, or a skip with the reason when it is absent."""
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"needs ../shared/data/{name} (not present in this checkout)")
    return path
