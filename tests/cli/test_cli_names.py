"""The names the parsers show without importing JAX are the library's tables."""

import pytest

from ntjax.backtest import PRICE_TRANSFORMS, STRATEGIES
from ntjax.cli import _names
from ntjax.models import MODELS
from ntjax.optimize import METRICS, PRUNERS, SAMPLERS


@pytest.mark.parametrize(
    ("written", "table"),
    [
        (_names.MODELS, MODELS),
        (_names.SAMPLERS, SAMPLERS),
        (_names.METRICS, METRICS),
        (_names.PRUNERS, PRUNERS),
        (_names.STRATEGIES, STRATEGIES),
        (_names.PRICE_TRANSFORMS, PRICE_TRANSFORMS),
    ],
    ids=["models", "samplers", "metrics", "pruners", "strategies", "transforms"],
)
def test_parser_names_are_the_library_tables(written, table):
    assert written == tuple(sorted(table))
