"""ntjax: neural forecasting for trading research, in JAX.

import ntjax as nt
df = nt.load_dataset("etth1", columns="OT")
record = nt.train(df, nt.NHITSConfig(horizon=24, input_size=168))
nt.forecast(record, df, levels=(80,))
nt.evaluate(record, df, test_size=24 * 7)

Every public name is imported on first use (PEP 562), so ``import ntjax`` does not import JAX
and commands that do not compute (``ntjax status``) stay fast.
"""

import importlib
import sys
import types
from typing import Any

from ntjax._version import __version__

# Public name -> the module it comes from.
_SOURCES: dict[str, str] = {
    **dict.fromkeys(
        ("BacktestResult", "HoldStrategy", "IntervalStrategy", "SignStrategy", "SizedStrategy"),
        "ntjax.backtest",
    ),
    "backtest": "ntjax.backtest",
    "make_strategy": "ntjax.backtest",
    "calibrate": "ntjax.calibrate",
    **dict.fromkeys(
        (
            "DeepARConfig",
            "GRUConfig",
            "LSTMAttentionConfig",
            "NBEATSConfig",
            "NHITSConfig",
            "OptimizerConfig",
            "TCNConfig",
            "TrainingConfig",
            "TransformerConfig",
        ),
        "ntjax.config",
    ),
    "cross_validation": "ntjax.crossval",
    **dict.fromkeys(("from_wide", "load_dataset", "train_test_split"), "ntjax.data"),
    **dict.fromkeys(("coverage_table", "evaluate", "evaluate_seasonal_naive"), "ntjax.evaluate"),
    **dict.fromkeys(
        ("RetrainDecision", "RetrainPolicy", "distill", "finetune", "quantize", "retrain"),
        "ntjax.lifecycle",
    ),
    **dict.fromkeys(
        (
            "AUTO_ENSEMBLE",
            "OptimizeResult",
            "auto_first_trials",
            "auto_space",
            "auto_start",
            "optimize",
        ),
        "ntjax.optimize",
    ),
    **dict.fromkeys(
        ("Member", "Population", "fit_population", "train_seeds", "train"), "ntjax.train"
    ),
    **dict.fromkeys(("ensemble", "forecast"), "ntjax.predict"),
    **dict.fromkeys(("ModelRecord", "Registry", "model_status"), "ntjax.registry"),
    **dict.fromkeys(("RateLimit", "Store"), "ntjax.store"),
    "StreamingForecaster": "ntjax.streaming",
}
# Public names that are modules.
_MODULES = ("data", "lifecycle", "metrics", "models")
# Public module names that live deeper in the package.
_MODULE_SOURCES = {"distributed": "ntjax.train.distributed"}

__all__ = [
    "AUTO_ENSEMBLE",
    "DeepARConfig",
    "GRUConfig",
    "LSTMAttentionConfig",
    "NBEATSConfig",
    "TCNConfig",
    "TransformerConfig",
    "BacktestResult",
    "HoldStrategy",
    "IntervalStrategy",
    "SignStrategy",
    "SizedStrategy",
    "backtest",
    "calibrate",
    "cross_validation",
    "ensemble",
    "make_strategy",
    "Member",
    "ModelRecord",
    "OptimizeResult",
    "Population",
    "NHITSConfig",
    "OptimizerConfig",
    "RateLimit",
    "Registry",
    "RetrainDecision",
    "RetrainPolicy",
    "Store",
    "model_status",
    "StreamingForecaster",
    "TrainingConfig",
    "__version__",
    "auto_first_trials",
    "auto_space",
    "auto_start",
    "data",
    "coverage_table",
    "evaluate",
    "evaluate_seasonal_naive",
    "distill",
    "finetune",
    "quantize",
    "fit_population",
    "lifecycle",
    "distributed",
    "forecast",
    "optimize",
    "retrain",
    "train_seeds",
    "from_wide",
    "load_dataset",
    "metrics",
    "models",
    "train",
    "train_test_split",
]


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        value = importlib.import_module(f"{__name__}.{name}")
    elif name in _MODULE_SOURCES:
        value = importlib.import_module(_MODULE_SOURCES[name])
    elif name in _SOURCES:
        value = getattr(importlib.import_module(_SOURCES[name]), name)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


class _Package(types.ModuleType):
    """The ``ntjax`` module's type. Importing a submodule binds it on its package, so the first
    ``import ntjax.train`` (or ``.evaluate``, ``.backtest``, ...) would hide the function of
    the same name that ``nt.train`` names; those bindings are skipped (``sys.modules`` still
    has the submodule, which is all ``import`` needs)."""

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, types.ModuleType) and name in _SOURCES:
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
