import polars as pl
import pytest
from conftest import sine_frame

import ntjax as nt
from ntjax import plot

CONFIG = nt.NHITSConfig(
    horizon=6,
    input_size=24,
    mlp_units=16,
    n_blocks=(1,),
    pool_kernel_sizes=(1,),
    freq_downsample=(1,),
)


@pytest.fixture(scope="module")
def record():
    training = nt.TrainingConfig(
        max_steps=20, batch_size=16, val_size=12, val_check_steps=10, progress=False, devices=1
    )
    return nt.train(sine_frame().filter(pl.col("ds") < 188), CONFIG, training)


def test_forecast_fan_writes_a_png(record, tmp_path):
    frame = sine_frame()
    fig = plot.forecast_fan(
        frame.filter(pl.col("ds") >= 150), nt.forecast(record, frame, levels=(80,)), levels=(80,)
    )
    path = tmp_path / "fan.png"
    fig.savefig(path)
    assert path.stat().st_size > 5_000
    assert len(fig.axes[0].collections) == 1  # one interval band


def test_loss_curves_write_a_png(record, tmp_path):
    fig = plot.loss_curves(record.history)
    fig.savefig(tmp_path / "loss.png")
    assert [line.get_label() for line in fig.axes[0].lines] == ["train loss", "validation loss"]


def test_calibration_curve_from_an_evaluate_result(record, tmp_path):
    result = nt.evaluate(record, sine_frame(), test_size=12)  # the last 12 rows are new
    fig = plot.calibration_curve(result)
    fig.savefig(tmp_path / "calibration.png")
    empirical = fig.axes[0].lines[1]
    assert list(empirical.get_xdata()) == [80.0, 95.0]
    assert list(empirical.get_ydata()) == [
        pytest.approx(100 * result["coverage_80"]),
        pytest.approx(100 * result["coverage_95"]),
    ]
    with pytest.raises(ValueError, match="no coverage"):
        plot.calibration_curve({"mae": 1.0})
