"""``ntjax forecast``: forecasts with a stored model (CSV on stdout, or a file)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ntjax.cli.common import floats, load, open_store
from ntjax.cli.readers import add_data, read_data

HELP = "forecast with a stored model"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model-id", required=True, help="model id or alias")
    add_data(parser)
    parser.add_argument("--levels", type=floats, help="interval levels, e.g. 80,95")
    parser.add_argument("--output", help="write the forecast here (.csv or .parquet)")


def run(args: argparse.Namespace) -> dict[str, Any] | None:
    from ntjax.predict import forecast, supported_levels

    store = open_store(args)
    record = load(store, args.model_id)
    frame = read_data(args, record.config)
    levels = args.levels if args.levels is not None else supported_levels(record.config)
    result = forecast(record, frame, levels=levels)
    if args.output is None:
        sys.stdout.write(result.write_csv())
        return None
    output = Path(args.output)
    if output.suffix.lower() in (".parquet", ".pq"):
        result.write_parquet(output)
    elif output.suffix.lower() == ".csv":
        result.write_csv(output)
    else:
        raise ValueError(f"{output}: unsupported output type; use .csv or .parquet.")
    return {
        "model_id": record.id,
        "output": str(output),
        "rows": result.height,
        "series": result["unique_id"].n_unique(),
        "columns": result.columns,
    }
