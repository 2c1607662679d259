"""Hyper-parameter search with optuna.

The search space is plain JSON: each key names the config field it sets (``"model"`` for the
family, ``"model.<field>"``, ``"training.<field>"``, ``"optimizer.<field>"``) and each value is
a fixed value, ``{"choice": [...]}`` or a range ``{"low": a, "high": b, "log": bool, "step": s}``
(integers when ``low``, ``high`` and ``step`` are integers)::

    {"model": "nhits", "model.horizon": 24,
     "model.input_size": {"choice": [48, 96, 168]},
     "optimizer.learning_rate": {"low": 1e-4, "high": 1e-2, "log": true},
     "training.max_steps": 300}

Each trial trains on every series without its last ``valid_size`` steps and scores the metric
of rolling forecasts over those steps, each made from earlier data only (or, with
``cv_windows``, of a cross-validation over the same tail). Trials report their validation loss
during training so that a pruner can stop the bad ones; a trial whose loss becomes NaN or whose
config is invalid is recorded as failed and the study goes on. The study lives in an optuna
storage (an RDB URL such as SQLite or PostgreSQL), so several processes can work on one study
(``optimize_workers``). With ``population=K``, trials that differ only in seed, learning rate
and dropout are trained K at a time as one vmapped program (``ntjax.train.population``).
"""

from ntjax.optimize.auto import AUTO_ENSEMBLE, BUDGETS, auto_first_trials, auto_space, auto_start
from ntjax.optimize.space import (
    Dimension,
    configs_from_params,
    default_space,
    grid_size,
    parse_space,
)
from ntjax.optimize.study import (
    METRICS,
    PRUNERS,
    SAMPLERS,
    OptimizeResult,
    close_study,
    default_storage,
    open_study,
    optimize,
)
from ntjax.optimize.workers import (
    optimize_workers,
    worker_main,
)

__all__ = [
    "AUTO_ENSEMBLE",
    "BUDGETS",
    "METRICS",
    "PRUNERS",
    "SAMPLERS",
    "Dimension",
    "OptimizeResult",
    "auto_first_trials",
    "auto_space",
    "auto_start",
    "close_study",
    "configs_from_params",
    "default_space",
    "default_storage",
    "open_study",
    "grid_size",
    "optimize",
    "optimize_workers",
    "parse_space",
    "worker_main",
]
