"""Names from the library's closed tables that the parsers show and check (``--model``,
``--method``, ``--metric``, ``--pruner``, ``--strategy``, ``--transform``), written out so that
``ntjax --help`` and ``ntjax <command> --help`` do not import JAX. ``tests/cli/test_cli_names.py``
checks them against the tables (``ntjax.models.MODELS``, ``ntjax.optimize.SAMPLERS``, ...).
"""

MODELS = ("deepar", "ensemble", "gru", "lstm_attention", "nbeats", "nhits", "tcn", "transformer")
SAMPLERS = ("bayesian", "gp", "grid", "random")
METRICS = ("mae", "mape", "mase", "mse", "r2", "rmse", "smape")
PRUNERS = ("halving", "median", "none")
STRATEGIES = ("hold", "interval", "sign", "sized")
PRICE_TRANSFORMS = ("identity", "log")
