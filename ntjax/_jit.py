"""XLA compile options of ntjax's jitted programs, chosen per model family.

Recent XLA:CPU hands dots to YNNPACK fusions. For the MLP families (NHITS, N-BEATS) those run
slower than XLA's own Eigen dots at the batch sizes of forecasting and streaming, e.g. on the
2-core benchmark machine:

- NHITS h24/i168 on 100 windows: 3.0-3.3 ms with YNNPACK, 2.1-2.3 ms with Eigen dots;
- NHITS h96/i480 on 7 windows: 0.78-1.0 ms against 0.56-0.69 ms.

So those families compile with the fusion off, and so does the GRU: its training step on the
zoo benchmark (64 windows, h24/i168, hidden 128, 2 layers; three alternated blocks) took
83.9-88.3 ms with Eigen dots against 92.7-104.1 ms with YNNPACK, whose gain on the large
input-projection matmuls is lost on the 168 small ``h @ W_hh`` per layer. The LSTM families,
the TCN and the Transformer keep XLA's defaults (they ran 4-16% slower with Eigen dots: LSTM
with attention 151 against 146 ms, DeepAR 145 against 139, TCN 34 against 32, Transformer 19.5
against 16.7). The option is
used only when this jaxlib knows it and ``XLA_FLAGS`` does not already set it, so a user's own
choice wins.

    step = jit_with(compile_options(config), step_fn, donate_argnums=0)  # config known
    predict = family_jit(predict_fn, options_of=compile_options, static_argnames=("config",))

(``ntjax.models.compile_options`` gives a config's usable options.)
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

EIGEN_DOTS: tuple[tuple[str, str], ...] = (("xla_cpu_experimental_ynn_fusion_type", ""),)


@functools.cache
def usable(options: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
    """``options`` if this jaxlib accepts them and the user has not set them in XLA_FLAGS,
    else none (XLA's defaults)."""
    if not options:
        return ()
    flags = os.environ.get("XLA_FLAGS", "")
    if any(name in flags for name, _ in options):
        return ()
    try:
        jax.jit(lambda x: x + 1, compiler_options=dict(options)).lower(np.float32(0)).compile()
    except jax.errors.JaxRuntimeError:  # a jaxlib without the option
        return ()
    return options


def jit_with(options: tuple[tuple[str, str], ...], fun: Callable, **jit_kwargs: Any) -> Callable:
    """``jax.jit(fun, **jit_kwargs)`` compiled with the XLA ``options`` (empty: defaults)."""
    return jax.jit(fun, compiler_options=dict(options) if options else None, **jit_kwargs)


def family_jit(
    fun: Callable, *, options_of: Callable[[Any], tuple[tuple[str, str], ...]], **jit_kwargs: Any
) -> Callable:
    """``jax.jit`` of ``fun(config, ...)`` (``config`` among the static arguments) that compiles
    each config with ``options_of(config)`` (its family's options): one jitted function per
    set of options."""
    by_options: dict[tuple[tuple[str, str], ...], Callable] = {}
    by_config: dict[Any, Callable] = {}  # configs are hashable: a lookup instead of options_of

    def program(config: Any) -> Callable:
        jitted = by_config.get(config)
        if jitted is None:
            options = options_of(config)
            if options not in by_options:
                by_options[options] = jit_with(options, fun, **jit_kwargs)
            jitted = by_config[config] = by_options[options]
        return jitted

    @functools.wraps(fun)
    def call(config: Any, *args: Any, **kwargs: Any) -> Any:
        return program(config)(config, *args, **kwargs)

    call.lower = lambda config, *args, **kwargs: program(config).lower(config, *args, **kwargs)
    return call
