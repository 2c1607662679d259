"""``ntjax demo``: train -> forecast -> evaluate on the ETTh1 data shipped in the package."""

from __future__ import annotations

import time
from pathlib import Path

import polars as pl

from ntjax.config import NHITSConfig, OptimizerConfig, TrainingConfig
from ntjax.crossval import cross_validation, drop_last
from ntjax.data.datasets import load_dataset
from ntjax.evaluate import evaluate, evaluate_seasonal_naive
from ntjax.plot import forecast_fan
from ntjax.predict import forecast
from ntjax.train import fit

HORIZON = 24
SEASON = 24
TEST_SIZE = 24 * 14
LEVELS = (80, 95)


def run_demo(*, output_dir: str = ".", max_steps: int | None = None, progress: bool = True) -> str:
    """Trains NHITS on ETTh1 ``OT`` (hourly oil temperature), holds out the last two weeks,
    compares rolling 24-hour forecasts with seasonal naive, forecasts the next day with 80/95%
    intervals and writes ``ntjax-demo-forecast.png`` to ``output_dir``.

    Returns:
      The report text.
    """
    started = time.perf_counter()
    df = load_dataset("etth1", columns="OT")
    history = drop_last(df, TEST_SIZE)
    config = NHITSConfig(
        horizon=HORIZON,
        input_size=7 * 24,
        quantiles=(0.025, 0.1, 0.5, 0.9, 0.975),
        mlp_units=256,
    )
    training = TrainingConfig(
        max_steps=max_steps or 600,
        batch_size=256,
        val_size=TEST_SIZE,
        val_check_steps=50,
        early_stopping_patience=4,
        progress=progress,
    )
    record = fit(history, config, training, OptimizerConfig(learning_rate=1e-3))
    model = evaluate(record, df, test_size=TEST_SIZE, season_length=SEASON, levels=LEVELS)
    naive = evaluate_seasonal_naive(df, horizon=HORIZON, season_length=SEASON, test_size=TEST_SIZE)
    rolling = cross_validation(record, df, n_windows=TEST_SIZE // HORIZON, levels=LEVELS)
    future = forecast(record, df, levels=LEVELS)

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    plot_path = out / "ntjax-demo-forecast.png"
    tail = df.filter(pl.col("ds") >= rolling["ds"].min() - pl.duration(days=7))
    fig = forecast_fan(
        tail.filter(pl.col("ds") < rolling["ds"].min()),
        pl.concat([rolling.drop("cutoff", "y", "in_sample"), future]),
        levels=LEVELS,
        actual=tail.filter(pl.col("ds") >= rolling["ds"].min()),
        title="ETTh1 OT: rolling 24 h NHITS forecasts on the held-out fortnight, then the next day",
    )
    fig.savefig(plot_path, dpi=110)

    m = record.metrics
    gain = 1 - model["mae"] / naive["mae"]
    rows = [
        ("NHITS", model),
        ("seasonal naive (24 h)", naive),
    ]
    lines = [
        "ntjax demo: NHITS on ETTh1 OT (hourly transformer oil temperature, C)",
        f"  trained {int(m['steps'])} steps in {m['train_time_s']:.1f} s "
        f"({m['windows_per_s']:,.0f} windows/s), best validation loss {m['val_loss']:.4f} "
        f"at step {int(m['best_step'])}, {record.n_params:,} parameters",
        f"  held-out tail: last {TEST_SIZE} h, {TEST_SIZE // HORIZON} rolling {HORIZON} h "
        "forecasts, each from data before its cutoff",
        "",
        f"  {'model':<24}{'MAE':>8}{'RMSE':>8}{'sMAPE':>8}{'MASE':>8}{'cov80':>8}{'cov95':>8}",
    ]
    for name, r in rows:
        cov = "".join(
            f"{r[f'coverage_{lv}']:>8.2f}" if f"coverage_{lv}" in r else f"{'-':>8}"
            for lv in LEVELS
        )
        lines.append(
            f"  {name:<24}{r['mae']:>8.3f}{r['rmse']:>8.3f}{r['smape']:>8.3f}{r['mase']:>8.3f}{cov}"
        )
    verdict = (
        f"NHITS beats seasonal naive: {100 * gain:.1f}% lower MAE"
        if gain > 0
        else f"NHITS does NOT beat seasonal naive: {-100 * gain:.1f}% higher MAE"
    )
    lines += [
        "",
        f"  {verdict}",
        "",
        f"  next {HORIZON} h (from {future['ds'][0]}):",
    ]
    for row in future.head(6).iter_rows(named=True):
        lines.append(
            f"    {row['ds']}  {row['y_hat']:6.2f}  80% [{row['lo_80']:6.2f}, {row['hi_80']:6.2f}]"
            f"  95% [{row['lo_95']:6.2f}, {row['hi_95']:6.2f}]"
        )
    lines += [
        "    ...",
        "",
        f"  plot: {plot_path}",
        f"  model id {record.id}; total {time.perf_counter() - started:.1f} s",
    ]
    return "\n".join(lines)
