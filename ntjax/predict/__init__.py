"""Prediction: frames to model inputs and back (``inputs``), batched prediction at cutoffs
(``batch``, ``cutoffs``), conformal interval maths (``conformal``), ``forecast``
(``forecasting``) and ensembles of records (``ensembles``)."""

from ntjax.predict.batch import adjust_quantiles, is_rolling_calibrated, predict_quantiles
from ntjax.predict.ensembles import ensemble
from ntjax.predict.forecasting import forecast
from ntjax.predict.inputs import (
    level_quantiles,
    model_inputs,
    quantile_columns,
    quantile_index,
    scaler_rows,
    supported_levels,
)

__all__ = [
    "adjust_quantiles",
    "ensemble",
    "forecast",
    "is_rolling_calibrated",
    "level_quantiles",
    "model_inputs",
    "predict_quantiles",
    "quantile_columns",
    "quantile_index",
    "scaler_rows",
    "supported_levels",
]
