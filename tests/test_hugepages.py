"""Huge pages for XLA:CPU's buffers: the relaunch environment, the relaunch itself, and its
effect on the page faults of a program with a large temporary buffer."""

import json
import os
import subprocess
import sys

import pytest

from ntjax import hugepages
from ntjax.cli.main import main

pytestmark = pytest.mark.filterwarnings("ignore")

USABLE = hugepages.unusable_reason()


@pytest.fixture
def usable(monkeypatch):
    monkeypatch.setattr(hugepages, "unusable_reason", lambda: None)


def test_environment_adds_the_tunable_and_keeps_the_rest(usable):
    env = hugepages.environment({"PATH": "/bin"})
    assert env == {"PATH": "/bin", "GLIBC_TUNABLES": hugepages.TUNABLE}
    env = hugepages.environment({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"})
    assert env["GLIBC_TUNABLES"] == f"glibc.malloc.arena_max=2:{hugepages.TUNABLE}"


@pytest.mark.parametrize(
    "environ",
    [
        {"GLIBC_TUNABLES": hugepages.TUNABLE},  # already on
        {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"},  # the user's own choice
        {"NTJAX_HUGEPAGES": "0"},
        {"NTJAX_HUGEPAGES": "off"},
    ],
)
def test_nothing_to_do(usable, environ):
    assert hugepages.environment(environ) is None


def test_unusable_means_nothing_to_do(monkeypatch):
    monkeypatch.setattr(hugepages, "unusable_reason", lambda: "the C library is not glibc.")
    assert hugepages.environment({}) is None
    assert not hugepages.active({"GLIBC_TUNABLES": hugepages.TUNABLE})


def test_the_command_relaunches_only_as_a_program_that_computes(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(hugepages, "relaunch", lambda: calls.append(True))
    forecast = ["forecast", "--model-id", "missing", "--data", "x.csv", "--store", str(tmp_path)]
    monkeypatch.setattr(sys, "argv", ["ntjax", *forecast])
    assert main() == 1  # relaunched (here: recorded), then no such model
    assert calls == [True]
    assert main(forecast) == 1  # called as a function: no relaunch
    monkeypatch.setattr(sys, "argv", ["ntjax", "status", "--store", str(tmp_path)])
    assert main() == 0  # computes nothing: no relaunch either
    assert calls == [True]


def _run(code: str, **env: str) -> str:
    environ = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES",)}
    environ.update(env)
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=environ, check=True
    )
    return done.stdout.strip().splitlines()[-1]


@pytest.mark.skipif(USABLE is not None, reason=f"huge pages unusable here: {USABLE}")
def test_relaunch_restarts_the_program_with_the_tunable():
    code = (
        "import os, ntjax.hugepages as h\n"
        "print('start', flush=True)\n"
        "h.relaunch()\n"
        "print(os.environ.get('GLIBC_TUNABLES'), h.active())"
    )
    assert _run(code) == f"{hugepages.TUNABLE} True"
    assert _run(code, NTJAX_HUGEPAGES="0") == "None False"


FAULTS = """
import json, resource, ntjax.hugepages as h
h.relaunch()
import jax, jax.numpy as jnp
x = jnp.full((4096, 4096), 0.01, jnp.float32)
w = jnp.full((4096, 256), 0.01, jnp.float32)
# exp(x) and the second product are 64 MiB temporaries, above glibc's mmap threshold.
f = jax.jit(lambda x, w: (jnp.tanh(jnp.exp(x) @ w) @ w.T).sum())
f(x, w).block_until_ready()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    f(x, w).block_until_ready()
after = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
print(json.dumps({"faults": (after - before) / 5, "active": h.active()}))
"""


@pytest.mark.skipif(USABLE is not None, reason=f"huge pages unusable here: {USABLE}")
def test_huge_pages_cut_the_page_faults_of_large_temporaries():
    on = json.loads(_run(FAULTS))
    off = json.loads(_run(FAULTS, NTJAX_HUGEPAGES="0"))
    assert on["active"] and not off["active"]
    # Two 64 MiB temporaries: 16,384 pages each at 4 KiB, 32 at 2 MiB (19,300 faults per
    # call against 1,500-3,500 measured with huge pages, the rest from smaller buffers).
    if hugepages._thp_mode() == "madvise":
        assert off["faults"] > 8000, off
    assert on["faults"] < off["faults"] / 3, (on, off)
