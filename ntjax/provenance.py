"""Provenance: which rows shaped a record, and the guard against scoring a model on them.

``record.trained_on`` is a polars frame ``unique_id, start, end, n_rows, role`` (``start`` and
``end`` in the dtype of ``ds``): one row per series and role, where a role is ``train`` (the
rows of the gradient windows), ``validation`` (the early-stopping tail) or ``calibration`` (the
tail whose conformity scores calibrate the intervals). A warm start, an ensemble or a calibrated
copy keeps the spans of every record it came from.

Any operation that scores a record (``nt.evaluate``, ``nt.cross_validation`` and ``nt.backtest``
with a record, ``nt.calibrate``) calls ``check_out_of_sample``: a scored target at or before its
series' trained end (plus ``embargo`` steps) is refused with one sentence, unless
``allow_in_sample=True``, which runs and flags the result. Series absent from ``trained_on``
are out of sample (zero-shot). Conformity scores of the default interval calibration may come
from the calibration tail but never from gradient or early-stopping rows (``fit_boundaries``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import polars as pl

from ntjax.data.windows import Panel

ROLES = ("train", "validation", "calibration")
FIT_ROLES = ("train", "validation")
COLUMNS = ("unique_id", "start", "end", "n_rows", "role")


def empty(ds_is_int: bool = False) -> pl.DataFrame:
    ds_type = pl.Int64 if ds_is_int else pl.Datetime("us")
    return pl.DataFrame(
        schema={
            "unique_id": pl.String,
            "start": ds_type,
            "end": ds_type,
            "n_rows": pl.Int64,
            "role": pl.String,
        }
    )


def panel_spans(panel: Panel, bounds: Mapping[str, tuple[int, int]]) -> pl.DataFrame:
    """Spans of each series of ``panel`` between time positions, per role.

    Args:
      panel: the packed training data (right-aligned, left-padded).
      bounds: role -> ``(start, stop)`` time positions (``stop`` exclusive) shared by every
        series; each series' span is clipped to its observed rows, empty spans are left out.

    Returns:
      ``unique_id, start, end, n_rows, role``.
    """
    ids, starts, ends, counts, roles = [], [], [], [], []
    first = panel.n_time - panel.lengths
    for role, (start, stop) in bounds.items():
        if role not in ROLES:
            raise ValueError(f"unknown provenance role {role!r}; roles are {ROLES}.")
        for s, uid in enumerate(panel.ids):
            lo, hi = max(int(start), int(first[s])), int(stop)
            if hi <= lo:
                continue
            ids.append(uid)
            starts.append(int(panel.ds[s, lo]))
            ends.append(int(panel.ds[s, hi - 1]))
            counts.append(hi - lo)
            roles.append(role)
    frame = pl.DataFrame(
        {
            "unique_id": pl.Series(ids, dtype=pl.String),
            "start": panel.ds_series(np.asarray(starts, np.int64), "start"),
            "end": panel.ds_series(np.asarray(ends, np.int64), "end"),
            "n_rows": pl.Series(counts, dtype=pl.Int64),
            "role": pl.Series(roles, dtype=pl.String),
        }
    )
    return frame.sort("unique_id", "start", maintain_order=True)


def union(frames: Iterable[pl.DataFrame | None]) -> pl.DataFrame | None:
    """Every span of ``frames`` (None entries, records without provenance, are skipped; None when
    all are); exact repeats kept once."""
    present = [f for f in frames if f is not None]
    if not present:
        return None
    kinds = {f.schema["start"] == pl.Int64 for f in present if f.height}
    if len(kinds) > 1:
        raise ValueError("cannot join provenance of integer and datetime time stamps.")
    frame = pl.concat([f.select(COLUMNS) for f in present if f.height] or [present[0]])
    return frame.unique(maintain_order=True).sort("unique_id", "start", maintain_order=True)


def to_json(frame: pl.DataFrame | None) -> dict[str, Any] | None:
    """A JSON-friendly, columnar copy (datetimes as ISO-8601 strings)."""
    if frame is None:
        return None
    is_int = frame.schema["start"] == pl.Int64

    def stamps(column: str) -> list:
        if is_int:
            return frame[column].to_list()
        return [value.isoformat() for value in frame[column].to_list()]

    return {
        "ds_type": "int" if is_int else "datetime",
        "unique_id": frame["unique_id"].to_list(),
        "start": stamps("start"),
        "end": stamps("end"),
        "n_rows": frame["n_rows"].to_list(),
        "role": frame["role"].to_list(),
    }


def from_json(data: Mapping[str, Any] | None) -> pl.DataFrame | None:
    """The inverse of ``to_json``; a malformed entry gets one sentence."""
    if data is None:
        return None
    try:
        is_int = data["ds_type"] == "int"
        columns = {key: list(data[key]) for key in COLUMNS}
        if len({len(v) for v in columns.values()}) != 1:
            raise ValueError("columns of different lengths")
        if not set(columns["role"]) <= set(ROLES):
            raise ValueError(f"roles must be among {ROLES}")
        if is_int:
            start = pl.Series("start", columns["start"], dtype=pl.Int64)
            end = pl.Series("end", columns["end"], dtype=pl.Int64)
        else:
            start = pl.Series("start", [dt.datetime.fromisoformat(v) for v in columns["start"]])
            end = pl.Series("end", [dt.datetime.fromisoformat(v) for v in columns["end"]])
            start, end = start.cast(pl.Datetime("us")), end.cast(pl.Datetime("us"))
        return pl.DataFrame(
            [
                pl.Series("unique_id", columns["unique_id"], dtype=pl.String),
                start,
                end,
                pl.Series("n_rows", columns["n_rows"], dtype=pl.Int64),
                pl.Series("role", columns["role"], dtype=pl.String),
            ]
        )
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"the record's trained_on entry is malformed ({error}).") from None


def _ends(trained_on: pl.DataFrame, roles: Sequence[str] | None) -> dict[str, int]:
    """Latest trained time stamp (int64; microseconds for datetimes) of each series."""
    frame = trained_on if roles is None else trained_on.filter(pl.col("role").is_in(roles))
    if frame.height == 0:
        return {}
    latest = frame.group_by("unique_id").agg(pl.col("end").max())
    ends = latest["end"]
    values = ends.to_numpy() if ends.dtype == pl.Int64 else ends.dt.epoch("us").to_numpy()
    return dict(zip(latest["unique_id"].to_list(), values.astype(np.int64).tolist(), strict=True))


def boundaries(
    trained_on: pl.DataFrame | None,
    panel: Panel,
    *,
    embargo: int = 0,
    roles: Sequence[str] | None = None,
    strict: bool = True,
) -> np.ndarray:
    """``[n_series]`` last time position of ``panel`` that is in sample, per series.

    The position of the series' trained end among its observed time stamps, plus ``embargo``
    steps; ``-1`` for series absent from ``trained_on`` (zero-shot) or without provenance.

    Args:
      roles: the roles that count (None: all; ``FIT_ROLES`` for conformity scores).
      strict: refuse a frame whose ``ds`` type differs from the training data's (integer
        against datetime); otherwise every row of such a frame counts as in sample.
    """
    if isinstance(embargo, bool) or not isinstance(embargo, int | np.integer) or embargo < 0:
        raise ValueError(f"embargo must be a non-negative integer of steps, got {embargo!r}.")
    out = np.full(panel.n_series, -1, np.int64)
    if trained_on is None or trained_on.height == 0:
        return out
    if (trained_on.schema["start"] == pl.Int64) != panel.ds_is_int:
        if not strict:
            return np.full(panel.n_series, panel.n_time - 1, np.int64)
        raise ValueError(
            "the model was trained on "
            + ("integer" if trained_on.schema["start"] == pl.Int64 else "datetime")
            + " time stamps but the frame has "
            + ("integer" if panel.ds_is_int else "datetime")
            + " ones; its training rows cannot be told apart from new ones."
        )
    ends = _ends(trained_on, roles)
    first = panel.n_time - panel.lengths
    for s, uid in enumerate(panel.ids):
        end = ends.get(uid)
        if end is None:
            continue
        observed = panel.ds[s, first[s] :]
        position = int(first[s]) + int(np.searchsorted(observed, end, side="right")) - 1
        out[s] = position + int(embargo) if position >= first[s] else -1
    return out


def _stamp(panel: Panel, s: int, position: int) -> str:
    return str(panel.ds_series(panel.ds[s, position : position + 1])[0])


def _end_text(trained_on: pl.DataFrame, uid: str) -> str:
    return str(trained_on.filter(pl.col("unique_id") == uid)["end"].max())


def check_out_of_sample(
    record: Any,
    panel: Panel,
    first_scored: np.ndarray | int,
    *,
    embargo: int = 0,
    allow_in_sample: bool = False,
    what: str = "evaluate",
) -> bool | None:
    """The leakage guard: whether any scored target of ``panel`` is in sample.

    Args:
      record: the scored ``ModelRecord``.
      panel: the scored frame, packed.
      first_scored: ``[n_series]`` (or one) time position of the first scored target.
      embargo: steps after each series' trained end that still count as in sample.
      allow_in_sample: run anyway (the caller flags the result) instead of raising.
      what: the operation, for the message.

    Returns:
      True (in sample, allowed), False (out of sample), None (the record has no provenance).

    Raises:
      ValueError: one sentence naming the first series in sample, its trained end and its
        first scored time, when ``allow_in_sample`` is False.
    """
    trained_on = getattr(record, "trained_on", None)
    if trained_on is None:
        boundaries(None, panel, embargo=embargo)  # checks embargo
        return None
    bound = boundaries(trained_on, panel, embargo=embargo, strict=not allow_in_sample)
    first_scored = np.broadcast_to(np.asarray(first_scored, np.int64), bound.shape)
    leaked = np.flatnonzero(first_scored <= bound)
    if leaked.size == 0:
        return False
    if allow_in_sample:
        return True
    s = int(leaked[0])
    uid = panel.ids[s]
    more = f" (and {leaked.size - 1} more series)" if leaked.size > 1 else ""
    margin = f" plus an embargo of {embargo} steps" if embargo else ""
    raise ValueError(
        f"{what} refused: model {record.id} was fitted on series {uid!r} up to "
        f"{_end_text(trained_on, uid)}{margin}, and the first scored target is at "
        f"{_stamp(panel, s, int(first_scored[s]))}{more}; score it on later rows, or pass "
        "allow_in_sample=True (--allow-in-sample) to run anyway with the result flagged "
        "in-sample."
    )


def fit_boundaries(record: Any, panel: Panel) -> np.ndarray:
    """``[n_series]`` last time position whose target shaped the parameters (gradient or
    early-stopping rows; ``-1`` for unseen series): conformity scores must lie after it."""
    return boundaries(getattr(record, "trained_on", None), panel, roles=FIT_ROLES, strict=False)
