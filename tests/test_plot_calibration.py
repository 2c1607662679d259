"""plot.quantile_calibration_curve (no model needed, unlike tests/test_plot.py)."""

import numpy as np
import pytest
from matplotlib.figure import Figure

from ntjax import metrics, plot


def _calibration_result():
    quantiles = (0.1, 0.5, 0.9)
    rng = np.random.default_rng(0)
    y = rng.normal(size=(2, 50))
    preds = np.broadcast_to([-1.0, 0.0, 1.0], (2, 50, 3))
    return metrics.forecast_metrics(
        y, preds[..., 1], mase_scale=[1.0, 1.0], quantile_preds=preds, quantiles=quantiles
    )


@pytest.mark.parametrize("source", ["levels", "result"], ids=["levels", "result"])
def test_quantile_calibration_curve(source, tmp_path):
    result = _calibration_result()
    expected = {q: result[f"calibration_{q:g}"] for q in (0.1, 0.5, 0.9)}
    calibration = {0.9: expected[0.9], 0.1: expected[0.1], 0.5: expected[0.5]}
    fig = plot.quantile_calibration_curve(calibration if source == "levels" else result)
    assert isinstance(fig, Figure)
    fig.savefig(tmp_path / "quantile_calibration.png")
    diagonal, observed = fig.axes[0].lines
    assert list(diagonal.get_xdata()) == [0, 1] and list(diagonal.get_ydata()) == [0, 1]
    assert list(observed.get_xdata()) == [0.1, 0.5, 0.9]  # sorted by level
    assert list(observed.get_ydata()) == [expected[0.1], expected[0.5], expected[0.9]]


def test_quantile_calibration_curve_needs_calibration_values():
    with pytest.raises(ValueError, match="no calibration"):
        plot.quantile_calibration_curve({"mae": 1.0})
    with pytest.raises(ValueError, match="dict"):
        plot.quantile_calibration_curve([0.1, 0.5])
