"""``ntjax backtest``: a walk-forward trading backtest on a stored model's forecasts, or on a
model family fitted walk-forward."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from ntjax.cli import _names
from ntjax.cli.common import add_leakage, floats, jsonable, open_store
from ntjax.cli.readers import add_data, read_data

if TYPE_CHECKING:
    import polars as pl

    from ntjax.store import Store

HELP = "walk-forward trading backtest on forecasts"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--model-id", help="stored model (id or alias); refit only with --refit-every"
    )
    source.add_argument("--model", help=f"fit walk-forward: one of {', '.join(_names.MODELS)}")
    add_data(parser)
    parser.add_argument("--horizon", type=int, default=5, help="with --model (step 1 is traded)")
    parser.add_argument("--input-size", type=int, help="with --model (default 5 x horizon)")
    parser.add_argument("--quantiles", type=floats, help="with --model, e.g. 0.1,0.25,0.5,0.75,0.9")
    parser.add_argument("--max-steps", type=int, default=300, help="with --model: steps per fit")
    parser.add_argument("--batch-size", type=int, default=256, help="with --model")
    parser.add_argument("--seed", type=int, default=0, help="with --model")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--strategy", choices=_names.STRATEGIES, default="sign")
    parser.add_argument("--long-only", action="store_true", help="no short positions")
    parser.add_argument("--max-leverage", type=float, default=1.0)
    parser.add_argument("--level", type=float, help="interval level of interval/sized (default 80)")
    parser.add_argument("--cost-bps", type=float, default=0.0, help="per unit of position traded")
    parser.add_argument("--slippage-bps", type=float, default=0.0)
    parser.add_argument("--refit-every", type=int, help="refit every N periods on the data then")
    parser.add_argument("--start", help="first decision time (ISO date, or int ds)")
    parser.add_argument("--end", help="last time a period may end")
    parser.add_argument("--transform", choices=_names.PRICE_TRANSFORMS, default="identity")
    parser.add_argument("--periods-per-year", type=float, default=252)
    parser.add_argument("--risk-free", type=float, default=0.0, help="annual rate")
    parser.add_argument("--plot", help="write the equity plot here (.png)")
    add_leakage(parser)


def backtest_command(
    args: argparse.Namespace, store: Store | None, prices: pl.DataFrame
) -> dict[str, Any]:
    """Runs the backtest ``args`` describe on ``prices``.

    Args:
      args: namespace with ``model_id`` (id or alias) or ``model`` (a family name, fitted
        walk-forward, with ``horizon``, ``input_size`` (None: 5 x horizon), ``quantiles``
        (None: the family's), ``max_steps``, ``batch_size``, ``seed``, ``no_progress``), and
        ``strategy``, ``long_only``, ``max_leverage``, ``level`` (None: the strategy's),
        ``cost_bps``, ``slippage_bps``, ``refit_every``, ``start``, ``end``, ``transform``,
        ``periods_per_year``, ``risk_free``, ``plot`` (PNG path or None), ``embargo``,
        ``allow_in_sample``.
      store: the store (used with ``model_id``; may be None with ``model``).
      prices: long frame of one price series (``read_data``'s output).

    Returns:
      JSON-ready ``metrics`` (undefined ones null), ``strategy``, ``model``, ``start`` (first
      decision), ``end`` (last period end), ``n_periods`` and ``plot``.
    """
    from ntjax.backtest import backtest, make_strategy
    from ntjax.config import TrainingConfig
    from ntjax.models import make_config

    if args.model_id is not None:
        model_id = store.resolve(args.model_id)
        record_or_config = store.load(model_id)
        training = None
        model: dict[str, Any] = {"model_id": model_id}
    else:
        fields: dict[str, Any] = {
            "horizon": args.horizon,
            "input_size": args.input_size or 5 * args.horizon,
        }
        if args.quantiles is not None:
            fields["quantiles"] = tuple(args.quantiles)
        record_or_config = make_config(args.model, **fields)
        training = TrainingConfig(
            max_steps=args.max_steps,
            batch_size=args.batch_size,
            seed=args.seed,
            progress=not args.no_progress,
        )
        model = record_or_config.to_dict()
    options: dict[str, Any] = {"long_only": args.long_only, "max_leverage": args.max_leverage}
    if args.level is not None:
        options["level"] = args.level
    strategy = make_strategy(args.strategy, **options)
    result = backtest(
        record_or_config,
        prices,
        strategy=strategy,
        cost_bps=args.cost_bps,
        slippage_bps=args.slippage_bps,
        refit_every=args.refit_every,
        start=args.start,
        end=args.end,
        transform=args.transform,
        periods_per_year=args.periods_per_year,
        risk_free=args.risk_free,
        training=training,
        embargo=args.embargo,
        allow_in_sample=args.allow_in_sample,
    )
    if args.plot:
        result.plot().savefig(args.plot, dpi=110)
    return {
        "metrics": jsonable(dict(result.metrics)),
        "strategy": strategy.to_dict(),
        "model": model,
        "start": str(result.forecasts["ds"][0]),
        "end": str(result.equity["ds"][-1]),
        "n_periods": result.equity.height,
        "plot": args.plot,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    store = open_store(args) if args.model_id else None
    return backtest_command(args, store, read_data(args))
