"""Walk-forward trading backtest of NHITS on daily US stock closes, 2006-2017.

Command (repository root, with ../shared/data present):

    python experiments/trading_backtest.py
    python experiments/trading_backtest.py --tickers AAPL,MSFT,JPM,XOM --max-steps 300 \
        --refit-every 63 --start 2010-01-01 --cost-bps 5

For each ticker, NHITS (horizon 5, input 60 days, 64 units, quantiles 0.1/0.25/0.5/0.75/0.9)
is fitted on the log close (standard-scaled per fit: log prices make a 1% move the same size at
$10 and at $170, which raw prices scaled on a decade of history do not) and walked forward from
2010-01-01 to the end of 2017, refitted from scratch every 63 trading days (a quarter) on the
data available then. Every forecast at day t uses closes up to t only. The forecast return is
the median forecast of the next close against today's close; each strategy (sign, interval at
50%, sized at 80%, each long/short and long-only, plus buy-and-hold) trades it at 5 bps per unit
traded. Writes ``experiments/results/trading_backtest.{csv,md}`` and one equity plot per ticker
(``trading_backtest_<TICKER>.png``).

Expected (measured 2026-11-26 with the defaults: 4 tickers x 32 fits of 300 steps, 2 CPU cores
shared with other jobs, load average ~10): 1662 s in all (286-559 s per ticker, nearly all of it
compiling and running the 32 fits; each refit recompiles its train step because the window table
changes shape). The result is negative. The one-step forecasts are worse than a random walk (MAE
1.33-2.09x the no-change forecast's) and their direction is a coin flip (directional accuracy
0.48-0.51, mean 0.493). Mean Sharpe over the four tickers: buy-and-hold 0.62; long-only
strategies 0.37-0.45 (mean drawdown -23% to -27% against -37%, for a third of the return);
long/short strategies -0.07 to 0.00 (32-108x equity traded per year at 5 bps). Only XOM, the
weakest buy-and-hold (Sharpe 0.22), is beaten, by every strategy. Table:
experiments/results/trading_backtest.md.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import polars as pl

import ntjax as nt
from ntjax.backtest import (
    HoldStrategy,
    IntervalStrategy,
    SignStrategy,
    SizedStrategy,
    compare_strategies,
    plot_equities,
    walk_forward,
)

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
RESULTS = Path(__file__).resolve().parent / "results"
COLUMNS = (
    "total_return", "cagr", "sharpe", "sortino", "max_drawdown", "calmar", "win_rate",
    "profit_factor", "n_trades", "turnover", "exposure", "alpha", "beta", "information_ratio",
    "directional_accuracy",
)  # fmt: skip


def load_close(ticker: str, data_dir: Path = DATA) -> pl.DataFrame:
    """Daily closes of one ticker as a long frame (``unique_id`` = the ticker)."""
    path = data_dir / f"{ticker}_2006-01-01_to_2018-01-01.csv"
    raw = pl.read_csv(path, columns=["Date", "Close"])
    return raw.select(
        unique_id=pl.lit(ticker), ds=pl.col("Date").str.to_date(), y=pl.col("Close")
    ).sort("ds")


def strategies() -> list:
    return [
        HoldStrategy(),
        SignStrategy(),
        SignStrategy(long_only=True),
        IntervalStrategy(level=50),
        IntervalStrategy(level=50, long_only=True),
        SizedStrategy(level=80),
        SizedStrategy(level=80, long_only=True),
    ]


def run(
    *,
    tickers: tuple[str, ...] = ("AAPL", "MSFT", "JPM", "XOM"),
    start: str = "2010-01-01",
    end: str | None = None,
    refit_every: int = 63,
    max_steps: int = 300,
    cost_bps: float = 5.0,
    mlp_units: int = 64,
    output_dir: Path = RESULTS,
    data_dir: Path = DATA,
) -> pl.DataFrame:
    """Runs the study and writes its CSV, markdown and plots; returns the metrics table."""
    config = nt.NHITSConfig(
        horizon=5, input_size=60, mlp_units=mlp_units, quantiles=(0.1, 0.25, 0.5, 0.75, 0.9)
    )
    training = nt.TrainingConfig(max_steps=max_steps, batch_size=256, seed=0, progress=False)
    output_dir.mkdir(parents=True, exist_ok=True)
    tables, notes = [], []
    started = time.perf_counter()
    for ticker in tickers:
        tick = time.perf_counter()
        forecasts = walk_forward(
            config, load_close(ticker, data_dir), refit_every=refit_every, start=start, end=end,
            levels=(50, 80), transform="log", training=training,
        )  # fmt: skip
        seconds = time.perf_counter() - tick
        table, results = compare_strategies(forecasts, strategies(), cost_bps=cost_bps)
        tables.append(table.select(pl.lit(ticker).alias("ticker"), pl.all()))
        fig = plot_equities(
            results,
            title=f"{ticker}: NHITS walk-forward (refit every {refit_every} days), {cost_bps:g} "
            "bps per unit traded",
        )
        fig.savefig(output_dir / f"trading_backtest_{ticker}.png", dpi=100)
        y, y_hat, last = (forecasts[c].to_numpy() for c in ("next_price", "y_hat", "price"))
        rw_ratio = np.mean(np.abs(y - y_hat)) / np.mean(np.abs(y - last))
        notes.append(
            f"| {ticker} | {forecasts['ds'][0]:%Y-%m-%d} | {forecasts['next_ds'][-1]:%Y-%m-%d} | "
            f"{forecasts.height} | {-(-forecasts.height // refit_every)} | {rw_ratio:.3f} | "
            f"{seconds:.0f} |"
        )
        print(f"{ticker}: {forecasts.height} days, {seconds:.0f} s", flush=True)
    total = time.perf_counter() - started
    table = pl.concat(tables)
    table.write_csv(output_dir / "trading_backtest.csv")
    summary = (
        table.group_by("strategy", maintain_order=True)
        .agg(pl.col("sharpe", "total_return", "max_drawdown", "directional_accuracy").mean())
        .rename(lambda c: c if c == "strategy" else f"mean_{c}")
    )
    lines = [
        "# NHITS walk-forward trading backtest, daily closes",
        "",
        f"NHITS {config.input_size}->{config.horizon} on log closes, {mlp_units} units, "
        f"{max_steps} steps per fit, refit every {refit_every} days; {cost_bps:g} bps per unit "
        f"traded. Total run time {total:.0f} s. Command: `python experiments/trading_backtest.py"
        f" --tickers {','.join(tickers)} --max-steps {max_steps} --refit-every {refit_every} "
        f"--start {start} --cost-bps {cost_bps:g}`.",
        "",
        "| ticker | first decision | last period end | days | fits | MAE / random-walk MAE "
        "| walk-forward s |",
        "|---|---|---|---|---|---|---|",
        *notes,
        "",
        "## Mean over tickers",
        "",
        _markdown(summary),
        "",
        "## Per ticker (buy-and-hold = the `hold` row; it pays one entry cost)",
        "",
        _markdown(table.select("ticker", "strategy", *COLUMNS)),
        "",
    ]
    (output_dir / "trading_backtest.md").write_text("\n".join(lines))
    print(f"total {total:.0f} s; results in {output_dir}", flush=True)
    return table


def _markdown(table: pl.DataFrame) -> str:
    def cell(value) -> str:
        if isinstance(value, float):
            return "nan" if value != value else f"{value:.3f}"
        return str(value)

    rows = [
        "| " + " | ".join(table.columns) + " |",
        "|" + "---|" * table.width,
        *("| " + " | ".join(cell(v) for v in row) + " |" for row in table.iter_rows()),
    ]
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickers", default="AAPL,MSFT,JPM,XOM")
    parser.add_argument("--start", default="2010-01-01")
    parser.add_argument("--end", default=None)
    parser.add_argument("--refit-every", type=int, default=63)
    parser.add_argument("--max-steps", type=int, default=300)
    parser.add_argument("--cost-bps", type=float, default=5.0)
    parser.add_argument("--mlp-units", type=int, default=64)
    parser.add_argument("--output-dir", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    run(
        tickers=tuple(args.tickers.split(",")),
        start=args.start,
        end=args.end,
        refit_every=args.refit_every,
        max_steps=args.max_steps,
        cost_bps=args.cost_bps,
        mlp_units=args.mlp_units,
        output_dir=args.output_dir,
    )


if __name__ == "__main__":
    main()
