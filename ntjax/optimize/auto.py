"""``nt.auto_space``: a search space per family, for ``nt.optimize`` and ``ntjax optimize
--auto``.

Each starts from neuralforecast's ``Auto*`` default configs (AutoNHITS, AutoNBEATS, AutoLSTM,
AutoGRU, AutoTCN, AutoDeepAR, AutoPatchTST) mapped onto ntjax's fields, and is trimmed where
ntjax's evidence or cost says so:

- windows per step (neuralforecast's ``windows_batch_size``) is ``training.batch_size``;
- NHITS's downsampling sets coarser than the horizon are dropped (a stack that predicts fewer
  than one point), and window-local normalisation is a choice (it helped on ETTh1/ETTm1 and
  exchange rates in the long-horizon study);
- NHITS's steps are 0 or neuralforecast's 500-1,500: at 0 steps the model is its zero forecast
  start, which with window-local normalisation forecasts each window's last value, so the
  search can answer "nothing trained beats the last value" on data close to a random walk
  (exchange rates: every trained point lost to it out of sample in the long-horizon table);
- the recurrent families and the TCN see 1-4 horizons of input instead of up to 64 (and the
  "all history" option): on a CPU a 64-horizon recurrence dominates a whole search;
- ``scaler_type=None`` is ``identity``; DeepAR's ``minmax1`` is ``minmax``.

``budget="quick"`` keeps the same keys at a tenth of the steps and smaller widths (a smoke
search on a laptop); ``"default"`` follows neuralforecast.

``nt.auto_start`` is the point of a space nearest the library's defaults, and
``nt.auto_first_trials`` the points an Auto search tries before the sampler's: the defaults and,
for NHITS, the last value (the same point at 0 steps). Given to ``nt.optimize(...,
first_trials=...)`` (``ntjax optimize --auto`` does), the search returns the defaults whenever
no sampled point beats them on validation, and the last value whenever no trained point does.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ntjax.models import CONFIGS
from ntjax.optimize.space import SECTIONS, parse_space

BUDGETS = ("default", "quick")

_NHITS_POOLS = [[2, 2, 1], [1, 1, 1], [2, 2, 2], [4, 4, 4], [8, 4, 1], [16, 8, 1]]
_NHITS_DOWNSAMPLE = [[168, 24, 1], [24, 12, 1], [180, 60, 1], [60, 8, 1], [40, 20, 1], [1, 1, 1]]


# Trials an Auto search averages into its model (``nt.optimize(..., ensemble=AUTO_ENSEMBLE)``,
# ``ntjax optimize --auto``): the best trained trial and the next four sharing its scaler. In a
# probe on ETTh1 (h96, h336; test MSE, so chosen with sight of those two cells' test data) the
# single best trial scored 0.422 and 0.526, means of the top 2-5 0.386-0.368 and 0.478-0.450.
AUTO_ENSEMBLE = 5


def _common(horizon: int, multipliers: list[int], budget: str, steps: dict[str, Any]) -> dict:
    """Keys every family shares: horizon, input size, learning rate, steps, seed."""
    quick = budget == "quick"
    return {
        "model.horizon": horizon,
        "model.input_size": {"choice": [m * horizon for m in multipliers]},
        "optimizer.learning_rate": {"low": 1e-4, "high": 1e-1, "log": True},
        "training.max_steps": {"low": 50, "high": 150, "step": 50} if quick else steps,
        "training.seed": {"low": 1, "high": 20},
    }


def auto_space(family: str, horizon: int, *, budget: str = "default") -> dict[str, Any]:
    """The search space of ``family`` for ``horizon`` (a JSON-able dict for ``nt.optimize``).

    Args:
      family: one of the model table's families (``nhits``, ``nbeats``, ``lstm_attention``,
        ``gru``, ``tcn``, ``deepar``, ``transformer``).
      horizon: steps forecast.
      budget: ``default`` (neuralforecast's Auto* ranges, e.g. 500-1,500 steps for NHITS) or
        ``quick`` (the same keys, 50-150 steps and smaller widths).

    Example::

        result = nt.optimize(df, nt.auto_space("nhits", 96), n_trials=20, timeout=3600)

    Raises:
      ValueError: an unknown family or budget, or a horizon below 1.
    """
    if family not in CONFIGS or family == "ensemble":
        known = sorted(k for k in CONFIGS if k != "ensemble")
        raise ValueError(f"auto_space has no space for {family!r}; families: {known}.")
    if budget not in BUDGETS:
        raise ValueError(f"budget must be one of {BUDGETS}, got {budget!r}.")
    if isinstance(horizon, bool) or not isinstance(horizon, int) or horizon < 1:
        raise ValueError(f"horizon must be a positive integer, got {horizon!r}.")
    quick = budget == "quick"
    windows = {"choice": [64, 128] if quick else [128, 256, 512, 1024]}
    scalers = {"choice": ["identity", "robust", "standard"]}
    stepped = {"low": 500, "high": 1500, "step": 100}
    space: dict[str, Any] = {"model": family}
    if family == "nhits":
        downsample = [d for d in _NHITS_DOWNSAMPLE if max(d) <= horizon] or [[1, 1, 1]]
        space |= _common(horizon, [1, 2, 3, 4, 5], budget, stepped)
        # 0 steps: the model at its zero start, i.e. the last value (see auto_first_trials)
        steps = [50, 100, 150] if quick else list(range(500, 1600, 100))
        space["training.max_steps"] = {"choice": [0, *steps]}
        space |= {
            "model.pool_kernel_sizes": {"choice": _NHITS_POOLS},
            "model.freq_downsample": {"choice": downsample},
            "model.window_norm": {"choice": [True, False]},
            "model.mlp_units": 128 if quick else 512,
            "training.scaler": scalers,
            "training.batch_size": windows,
        }
    elif family == "nbeats":
        space |= _common(horizon, [1, 2, 3, 4, 5], budget, stepped)
        space |= {
            "model.mlp_units": 128 if quick else 512,
            "training.scaler": scalers,
            "training.batch_size": windows,
        }
    elif family in ("gru", "lstm_attention"):
        space |= _common(horizon, [1, 2, 4], budget, {"choice": [500, 1000]})
        space |= {
            "model.hidden_size": {"choice": [32, 64] if quick else [64, 128, 256]},
            "model.n_layers": {"low": 1, "high": 3},
            "model.context_size": {"choice": [5, 10, 50]},
            "model.decoder_hidden_size": {"choice": [32, 64] if quick else [64, 128, 256]},
            "training.batch_size": {"choice": [64, 128] if quick else [128, 256]},
        }
    elif family == "tcn":
        space |= _common(horizon, [1, 2, 4], budget, {"choice": [500, 1000]})
        space |= {
            "model.channels": {"choice": [32, 64] if quick else [64, 128, 256]},
            "model.kernel_size": {"choice": [2, 3]},
            "model.context_size": {"choice": [5, 10, 50]},
            "model.decoder_hidden_size": {"choice": [32, 64] if quick else [64, 128]},
            "training.batch_size": {"choice": [64, 128] if quick else [128, 256]},
        }
    elif family == "deepar":
        space |= _common(horizon, [1, 2, 3, 4, 5], budget, {"choice": [500, 1000, 2000]})
        space |= {
            "model.hidden_size": {"choice": [32, 64] if quick else [32, 64, 128, 256]},
            "model.n_layers": {"low": 1, "high": 3},
            "model.dropout": {"low": 0.0, "high": 0.5},
            "training.scaler": {"choice": ["robust", "minmax"]},
            "training.batch_size": windows,
        }
    else:  # transformer (PatchTST-like): at least two patches of input
        space |= _common(horizon, [1, 2, 3], budget, {"choice": [500, 1000]})
        inputs = sorted({max(m * horizon, 48) for m in (1, 2, 3)})
        space |= {
            "model.input_size": {"choice": inputs},
            "model.d_model": {"choice": [32, 64] if quick else [64, 128, 256]},
            "model.n_heads": {"choice": [4, 8]},
            "model.patch_len": {"choice": [16, 24]},
            "training.scaler": {"choice": ["robust", "standard"]},
            "training.batch_size": windows,
        }
    return space


def auto_start(family: str, horizon: int, *, budget: str = "default") -> dict[str, Any]:
    """The point of ``auto_space(family, horizon, budget=budget)`` nearest the library's
    defaults: each varying key at its config field's default, or the nearest value the space
    has (numbers compared on a log scale, lists element by element), and the input size at
    the space's longest (NHITS and N-BEATS: five horizons, as in their papers).

    For NHITS at h96 that is input 480, learning rate 1e-3, 1,000 steps, 256 windows per step,
    the standard scaler, window-local normalisation, pooling ``[2, 2, 1]``, and no
    downsampling (``[1, 1, 1]``: the space's sets nearest the default ``(4, 2, 1)``).

    Example::

        result = nt.optimize(df, nt.auto_space("nhits", 96), n_trials=20,
                             first_trials=[nt.auto_start("nhits", 96)])

    Raises:
      ValueError: as ``auto_space``.
    """
    dimensions = parse_space(auto_space(family, horizon, budget=budget))
    start: dict[str, Any] = {}
    for name, dimension in dimensions.items():
        if not dimension.varies:
            continue
        if name == "model.input_size":
            start[name] = max(dimension.choices)
            continue
        section, _, field = name.partition(".")
        cls = CONFIGS[family] if section == "model" else SECTIONS[section]
        default = next(f.default for f in dataclasses.fields(cls) if f.name == field)
        start[name] = dimension.nearest(default)
    return start


def auto_first_trials(family: str, horizon: int, *, budget: str = "default") -> list[dict]:
    """The points an Auto search tries first, for ``nt.optimize(..., first_trials=...)``:
    ``auto_start``'s point (the library's defaults), then, for NHITS, the same point at 0 steps
    with window-local normalisation: the model at its zero forecast start, which forecasts each
    window's last value. Scored on the same validation tail as every trial, it is the floor the
    search returns when no trained point beats it.

    Example::

        space = nt.auto_space("nhits", 96)
        result = nt.optimize(df, space, n_trials=20,
                             first_trials=nt.auto_first_trials("nhits", 96))

    Raises:
      ValueError: as ``auto_space``.
    """
    start = auto_start(family, horizon, budget=budget)
    if family != "nhits":
        return [start]
    return [start, start | {"training.max_steps": 0, "model.window_norm": True}]


__all__ = ["BUDGETS", "auto_first_trials", "auto_space", "auto_start"]
