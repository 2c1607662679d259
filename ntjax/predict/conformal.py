"""Conformal calibration of quantile intervals (conformalized quantile regression).

The conformity score of a central interval ``[q_lo, q_hi]`` at horizon step ``h`` is
``max(q_lo - y, y - q_hi)``; a quantile of the scores on windows the model never trained on is
added to both bounds (Romano et al., 2019). Two methods, stored in
``record.extra["calibration"]["method"]``:

- ``"split"``: one set of offsets ``[horizon, n_quantiles]`` from the last validation windows,
  pooled over series, the ``ceil((n + 1) * L)``-th smallest score. Coverage holds when the
  calibration and test windows are exchangeable; under a regime change (the ETTh1 and ETTm2
  validation and test periods) it drifts with the data.
- ``"rolling"``: online conformal calibration, per series. At a forecast origin ``t`` the offset
  of step ``h`` is the ``ceil((window + 1) * (1 - alpha))``-th smallest score of step ``h`` of the
  ``window`` most recent forecasts whose step ``h`` resolved before ``t`` (cutoffs
  ``t - h - window .. t - h - 1``), so nothing after ``t`` is used. With ``gamma > 0`` the level
  adapts by the update of Gibbs & Candès (2021), per series, step and interval:
  ``alpha <- alpha + gamma * (alpha_nominal - err)``, each error fed back once its step resolved;
  the recursion starts ``window`` origins before the first origin it serves (its warm-up);
  ``alpha`` is kept in [0, 1] and the rank in [1, window], so intervals stay finite.
  Rolling calibration needs history: ``input_size + horizon + window`` rows before a forecast
  origin (``+ window`` more with ``gamma > 0``), see ``history_needed``.

Scores live in scaled units. ``nt.evaluate`` applies rolling offsets causally at every
origin; ``latest_offsets`` gives those of a forecast at the end of a frame. Scores divided by
the interval width (normalised CQR) were measured on ETTh1 and ETTm2: with rolling
calibration they moved coverage by under a point (with split calibration they helped on ETTh1,
0.63 -> 0.71 at 80%, still far from nominal), so they are not offered.
"""

from __future__ import annotations

import bisect
import math
from typing import Any

import jax
import numpy as np

from ntjax import provenance
from ntjax.data.frame import validate
from ntjax.data.windows import Panel, channels, pack
from ntjax.predict.batch import raw_at_cutoffs
from ntjax.predict.inputs import scaled_values
from ntjax.record import ModelRecord

# Valid scores a rolling window needs before its own quantile replaces the record's fixed
# offsets: 20 is the fewest for which the 95% rank ceil((n + 1) * 0.95) stays within n.
MIN_SCORES = 20


def interval_pairs(quantiles: tuple[float, ...]) -> list[tuple[int, int, float]]:
    """Index pairs of symmetric quantiles (q, 1 - q) and their central level 1 - 2q."""
    pairs = []
    for i, q in enumerate(quantiles):
        for j, p in enumerate(quantiles):
            if q < 0.5 and abs(p - (1 - q)) < 1e-9:
                pairs.append((i, j, 1 - 2 * q))
    return pairs


def conformity_scores(
    quantiles: np.ndarray, y: np.ndarray, pairs: list[tuple[int, int, float]]
) -> np.ndarray:
    """Scores ``max(q_lo - y, y - q_hi)`` of every interval.

    Args:
      quantiles: ``[..., horizon, n_quantiles]`` predictions.
      y: ``[..., horizon]`` actuals (NaN where not yet observed).
      pairs: (lower index, upper index, level) of each central interval.

    Returns:
      ``[..., horizon, n_pairs]``, NaN where ``y`` is.
    """
    return np.stack(
        [np.maximum(quantiles[..., lo] - y, y - quantiles[..., hi]) for lo, hi, _ in pairs], -1
    )


def conformal_offsets(
    quantiles: np.ndarray, y: np.ndarray, levels_pairs: list[tuple[int, int, float]]
) -> np.ndarray:
    """Split-conformal offsets ``[horizon, n_quantiles]`` from calibration predictions.

    Args:
      quantiles: ``[n_windows, horizon, n_quantiles]`` uncalibrated predictions.
      y: ``[n_windows, horizon]`` actuals.
      levels_pairs: (lower index, upper index, level as a fraction) of each central interval.
    """
    n_windows, horizon, n_quantiles = quantiles.shape
    offsets = np.zeros((horizon, n_quantiles), np.float64)
    for lo, hi, level in levels_pairs:
        scores = np.maximum(quantiles[..., lo] - y, y - quantiles[..., hi])  # [n, horizon]
        # The ceil((n + 1) * level)-th smallest score (the largest when n is too small).
        k = min(int(np.ceil((n_windows + 1) * level - 1e-9)), n_windows)
        adjustment = np.sort(scores, axis=0)[k - 1]
        offsets[:, lo] = -adjustment
        offsets[:, hi] = adjustment
    return offsets


def _resolved(scores: np.ndarray) -> np.ndarray:
    """Scores ``[series, n_cutoffs, horizon, n_pairs]`` re-indexed by the first origin that may
    use them: ``out[:, m, h] = scores[:, m - h - 1, h]``, ``[series, n_cutoffs + 1, ...]``
    (NaN where no such score exists)."""
    n_series, n_cutoffs, horizon, n_pairs = scores.shape
    out = np.full((n_series, n_cutoffs + 1, horizon, n_pairs), np.nan)
    for h in range(horizon):
        out[:, h + 1 :, h] = scores[:, : n_cutoffs - h, h]
    return out


def rolling_offsets(
    scores: np.ndarray,
    levels: np.ndarray,
    origins: np.ndarray,
    *,
    window: int,
    gamma: float = 0.0,
    warmup: int = 0,
    fallback: np.ndarray | None = None,
) -> np.ndarray:
    """Causal rolling conformal offsets (and adaptive levels with ``gamma > 0``).

    Cutoff ``u`` (``0 <= u < n_cutoffs``) is the first forecast position of a window; origin
    ``m`` forecasts from position ``m`` on, seeing positions ``< m`` only. The offset of origin
    ``m``, step ``h`` is a quantile of the valid scores among ``scores[:, m - h - window : m -
    h, h]``: every window whose step ``h`` had resolved by ``m``. Nothing at or after position
    ``m`` is read. NaN scores (not observed, or from rows the model was fitted on) do not count;
    with fewer than ``min(MIN_SCORES, window)`` valid ones the offset is ``fallback``.

    Args:
      scores: ``[n_series, n_cutoffs, horizon, n_pairs]`` conformity scores at consecutive
        cutoffs, NaN where not valid.
      levels: ``[n_pairs]`` nominal coverage of each interval, as fractions.
      origins: ``[n_origins]`` origins to return, each in
        ``[warmup + window + horizon, n_cutoffs]``.
      window: number of recent scores per series and step.
      gamma: step size of the adaptive conformal update (0: fixed level).
      warmup: origins before the first requested one over which the adaptive level runs.
      fallback: ``[horizon, n_pairs]`` offsets where too few scores are valid (default 0).

    Returns:
      ``[n_series, n_origins, horizon, n_pairs]`` score quantiles: add to the upper bounds,
      subtract from the lower ones.
    """
    n_series, n_cutoffs, horizon, n_pairs = scores.shape
    origins = np.asarray(origins, np.int64)
    first = int(origins.min()) - warmup
    if first < window + horizon or origins.max() > n_cutoffs:
        raise ValueError(
            f"origins must lie in [warmup + window + horizon, n_cutoffs] = "
            f"[{warmup + window + horizon}, {n_cutoffs}]."
        )
    fallback = np.zeros((horizon, n_pairs)) if fallback is None else np.asarray(fallback)
    alpha = 1.0 - np.asarray(levels, np.float64)
    resolved = _resolved(scores)
    last = int(origins.max())
    out = np.empty((n_series, last + 1 - first, horizon, n_pairs))
    for s in range(n_series):
        for h in range(horizon):
            for p in range(n_pairs):
                out[s, :, h, p] = _rolling_row(
                    resolved[s, :, h, p].tolist(),
                    scores[s, :, h, p].tolist(),
                    first=first,
                    last=last,
                    window=window,
                    alpha=float(alpha[p]),
                    delay=h + 1,
                    gamma=gamma,
                    fallback=float(fallback[h, p]),
                )
    return out[:, origins - first]


def _rolling_row(
    resolved: list[float],
    own: list[float],
    *,
    first: int,
    last: int,
    window: int,
    alpha: float,
    delay: int,
    gamma: float,
    fallback: float = 0.0,
) -> list[float]:
    """Score quantiles of one (series, step, interval) at origins ``first..last``.

    A sorted window of the valid (non-NaN) scores slides by one score per origin (``bisect``:
    O(log window) search and a memmove), which beats re-sorting or partitioning every window
    by one to two orders of magnitude; rows are independent, so the adaptive recursion runs
    inside the same pass.

    Args:
      resolved: ``resolved[m]`` is the score that origin ``m`` may use first (``_resolved``).
      own: ``own[m]`` the score of the forecast made at origin ``m``.
      delay: origins until a forecast's error at this step is known (step + 1).
      fallback: the quantile while fewer than ``min(MIN_SCORES, window)`` scores are valid.
    """
    ordered = sorted(v for v in resolved[first - window + 1 : first + 1] if v == v)
    needed = min(MIN_SCORES, window)  # a full window of valid scores always counts
    missed: list[float] = []
    feedback = 0.0
    quantiles = []
    for m in range(first, last + 1):
        if m > first:
            leaving, arriving = resolved[m - window], resolved[m]
            if leaving == leaving:  # NaN (no valid score) never entered the window
                del ordered[bisect.bisect_left(ordered, leaving)]
            if arriving == arriving:
                bisect.insort(ordered, arriving)
        level = 1.0 - alpha
        if gamma > 0:
            source = m - first - delay  # the forecast whose error became known just now
            if source >= 0 and missed[source] == missed[source]:
                feedback += alpha - missed[source]
            level = 1.0 - min(max(alpha + gamma * feedback, 0.0), 1.0)
        n = len(ordered)
        if n >= needed:
            k = min(max(math.ceil((n + 1) * level - 1e-9), 1), n)
            quantile = ordered[k - 1]
        else:
            quantile = fallback
        quantiles.append(quantile)
        if m < len(own):
            score = own[m]
            missed.append(float(score > quantile) if score == score else math.nan)
    return quantiles


def offsets_from_scores(
    score_offsets: np.ndarray, pairs: list[tuple[int, int, float]], n_quantiles: int
) -> np.ndarray:
    """``[..., horizon, n_quantiles]`` quantile offsets from ``[..., horizon, n_pairs]`` score
    quantiles: minus on each lower bound, plus on each upper one, 0 elsewhere."""
    offsets = np.zeros((*score_offsets.shape[:-1], n_quantiles))
    for p, (lo, hi, _) in enumerate(pairs):
        offsets[..., lo] = -score_offsets[..., p]
        offsets[..., hi] = score_offsets[..., p]
    return offsets


def history_needed(record: ModelRecord) -> int:
    """Rows before a forecast origin from which a rolling-calibrated record draws its scores
    (0 for other records): inputs of the oldest window, the windows, the horizon and the
    warm-up. Fewer rows are fine: origins with fewer than ``MIN_SCORES`` valid scores use the
    record's fixed offsets."""
    calibration = record.extra.get("calibration") or {}
    if calibration.get("method") != "rolling":
        return 0
    return record.config.input_size + _span(calibration, record.config.horizon)


def _span(calibration: dict[str, Any], horizon: int) -> int:
    """Consecutive cutoffs scored before a rolling origin: window, horizon and warm-up."""
    window = int(calibration["window"])
    return window + horizon + (window if calibration["gamma"] > 0 else 0)


def _uncalibrated(record: ModelRecord) -> ModelRecord:
    return record.replace(extra={k: v for k, v in record.extra.items() if k != "calibration"})


def _fixed_score_offsets(record: ModelRecord, pairs: list[tuple[int, int, float]]) -> np.ndarray:
    """``[horizon, n_pairs]`` the record's fixed offsets as score quantiles (the upper bound's
    offset of each interval): what a rolling window with too few valid scores falls back to."""
    offsets = np.asarray(record.extra["calibration"]["offsets"], np.float64)
    return np.stack([offsets[:, hi] for _, hi, _ in pairs], axis=-1)


def _valid_scores(
    scores: np.ndarray, cutoffs: np.ndarray, panel: Panel, fit_bound: np.ndarray, input_size: int
) -> np.ndarray:
    """``scores`` ``[n_series, n_cutoffs, horizon, n_pairs]`` with NaN where a score must not
    count: inputs before the series' first row, or a target on a row whose value shaped the
    parameters (at or before ``fit_bound``, ``[n_series]``)."""
    horizon = scores.shape[2]
    first = (panel.n_time - panel.lengths)[:, None, None]
    target = cutoffs[None, :, None] + np.arange(horizon)[None, None, :]
    valid = (cutoffs[None, :, None] - input_size >= first) & (target > fit_bound[:, None, None])
    return np.where(valid[..., None], scores, np.nan)


def _rolling_offsets_at(
    record: ModelRecord,
    panel: Panel,
    scaled: np.ndarray,
    origins: np.ndarray,
    key: jax.Array | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Causal offsets ``[n_series, n_origins, horizon, n_quantiles]`` at increasing ``origins``
    (first forecast positions, at most ``time``), and the uncalibrated scaled predictions
    ``[n_series, n_origins, horizon, n_quantiles]`` at those below ``time``. One batched model
    call covers every cutoff from the first calibration window on; scores from rows the model
    was fitted on (``provenance.fit_boundaries``) never count."""
    calibration = record.extra["calibration"]
    config = record.config
    horizon, window, gamma = config.horizon, int(calibration["window"]), calibration["gamma"]
    n_time = scaled.shape[1]
    base = int(origins[0]) - _span(calibration, horizon)
    cutoffs = np.arange(base, int(origins[-1]))  # the windows the offsets may draw on
    scored = cutoffs[cutoffs >= config.input_size]
    predicted = np.union1d(scored, origins[origins < n_time])
    quantiles = raw_at_cutoffs(record.config, record.params, scaled, predicted, key=key)
    padded = np.concatenate([scaled[..., 0], np.full((scaled.shape[0], horizon), np.nan)], 1)
    actual = padded[:, scored[:, None] + np.arange(horizon)[None, :]]
    pairs = interval_pairs(config.quantiles)
    scores = np.full((scaled.shape[0], len(cutoffs), horizon, len(pairs)), np.nan)
    scores[:, len(cutoffs) - len(scored) :] = conformity_scores(
        quantiles[:, np.searchsorted(predicted, scored)], actual, pairs
    )
    scores = _valid_scores(
        scores, cutoffs, panel, provenance.fit_boundaries(record, panel), config.input_size
    )
    score_offsets = rolling_offsets(
        scores,
        np.array([level for _, _, level in pairs]),
        origins - base,
        window=window,
        gamma=gamma,
        warmup=window if gamma > 0 else 0,
        fallback=_fixed_score_offsets(record, pairs),
    )
    offsets = offsets_from_scores(score_offsets, pairs, len(config.quantiles))
    at = np.searchsorted(predicted, origins[origins < n_time])
    return offsets, quantiles[:, at]


def rolling_at_cutoffs(
    record: ModelRecord,
    panel: Panel,
    scaled: np.ndarray,
    cutoffs: np.ndarray,
    *,
    key: jax.Array | None = None,
) -> np.ndarray:
    """Scaled forecasts of a rolling-calibrated record at ``cutoffs``, each calibrated only
    with the windows resolved before it that the model was not fitted on
    (``predict_at_cutoffs`` of such a record lands here).

    Args:
      panel: the packed frame ``scaled`` comes from (its series' first rows and time stamps).
      scaled: ``[n_series, time, n_channels]`` scaled values.
      cutoffs: ``[n_cutoffs]`` increasing first forecast positions, below ``time``.
      key: PRNG key for sampling models.

    Returns:
      ``[n_series, n_cutoffs, horizon, n_quantiles]``, calibrated, non-crossing.
    """
    offsets, quantiles = _rolling_offsets_at(record, panel, scaled, np.asarray(cutoffs), key)
    return np.sort(quantiles + offsets, axis=-1)


def latest_offsets(record: ModelRecord, df: Any, *, key: jax.Array | None = None) -> np.ndarray:
    """Offsets ``[n_series, horizon, n_quantiles]``, in the units of ``df``, of a forecast from
    the end of ``df`` (series in frame order), from the latest resolved windows of each series
    that the model was not fitted on (its fixed offsets where fewer than ``MIN_SCORES``).

    For ``nt.forecast`` of a rolling-calibrated record: add them to the quantiles and sort.
    """
    config = record.config
    needed = history_needed(record)
    if not needed:
        raise ValueError(f"model {record.id} is not rolling-calibrated.")
    frame = validate(df, exog=(*config.hist_exog, *config.futr_exog))
    panel = pack(frame, channels(config), tail=needed)
    _, scale, scaled = scaled_values(record.scaler, panel)
    offsets, _ = _rolling_offsets_at(record, panel, scaled, np.array([panel.n_time]), key)
    return offsets[:, 0] * scale[:, None, :1]


def end_offsets(record: ModelRecord, panel: Panel) -> np.ndarray | None:
    """The rolling offsets ``[n_series, horizon, n_quantiles]`` (scaled units) that training
    stored for a forecast from each series' trained end, when every series of ``panel`` ends
    exactly there (a forecast from the training data: no window resolved since); else None."""
    stored = (record.extra.get("calibration") or {}).get("end_offsets")
    if not stored:
        return None
    index = {uid: i for i, uid in enumerate(stored["ids"])}
    rows = [index.get(uid) for uid in panel.ids]
    if any(row is None for row in rows):
        return None
    if not np.array_equal(np.asarray(stored["ends"], np.int64)[rows], panel.ds[:, -1]):
        return None
    return np.asarray(stored["offsets"], np.float64)[rows]


def pooled_offsets(
    quantiles: np.ndarray, y: np.ndarray, pairs: list[tuple[int, int, float]]
) -> tuple[np.ndarray, int]:
    """Split-conformal offsets ``[horizon, n_quantiles]`` from scores pooled over series and
    windows, step by step, skipping NaN (``y`` unobserved or in sample).

    Args:
      quantiles: ``[..., horizon, n_quantiles]`` uncalibrated predictions.
      y: ``[..., horizon]`` actuals, NaN where a score must not count.

    Returns:
      The offsets (0 at a step without scores) and the fewest scores any step had.
    """
    horizon, n_quantiles = quantiles.shape[-2:]
    scores = conformity_scores(quantiles, y, pairs).reshape(-1, horizon, len(pairs))
    offsets = np.zeros((horizon, n_quantiles), np.float64)
    counts = np.sum(np.isfinite(scores[..., 0]), axis=0)
    for p, (lo, hi, level) in enumerate(pairs):
        for h in range(horizon):
            valid = np.sort(scores[:, h, p][np.isfinite(scores[:, h, p])])
            if valid.size == 0:
                continue
            # The ceil((n + 1) * level)-th smallest score (the largest when n is too small).
            k = min(int(np.ceil((valid.size + 1) * level - 1e-9)), valid.size)
            offsets[h, lo], offsets[h, hi] = -valid[k - 1], valid[k - 1]
    return offsets, int(counts.min()) if counts.size else 0


def tail_calibration(
    record: ModelRecord,
    panel: Panel,
    *,
    method: str,
    calibration_size: int,
    window: int | None = None,
    gamma: float = 0.005,
) -> dict[str, Any]:
    """The out-of-the-box calibration of a freshly trained record: fixed offsets from the
    conformity scores of its calibration tail (the last ``calibration_size`` rows of each
    series of ``panel``, its training data, which no gradient or early-stopping check saw),
    pooled over series and windows step by step; with ``method="rolling"`` they are the
    fallback of the rolling offsets (``window`` default ten horizons).

    Returns:
      The ``extra["calibration"]`` entry.
    """
    config = record.config
    pairs = interval_pairs(config.quantiles)
    if not pairs:
        return {}
    horizon = config.horizon
    offsets = np.zeros((horizon, len(config.quantiles)))
    n_scores = 0
    if calibration_size > 0:
        first_target = panel.n_time - calibration_size
        cutoffs = np.arange(max(first_target - horizon + 1, config.input_size), panel.n_time)
        loc, scale, scaled = scaled_values(record.scaler, panel)
        predictions = raw_at_cutoffs(record.config, record.params, scaled, cutoffs)
        padded = np.concatenate([scaled[..., 0], np.full((panel.n_series, horizon), np.nan)], 1)
        actual = padded[:, cutoffs[:, None] + np.arange(horizon)[None, :]]
        bound = provenance.fit_boundaries(record, panel)
        target = cutoffs[:, None] + np.arange(horizon)[None, :]
        first = (panel.n_time - panel.lengths)[:, None, None]
        valid = (target[None] > bound[:, None, None]) & (
            cutoffs[None, :, None] - config.input_size >= first
        )
        offsets, n_scores = pooled_offsets(predictions, np.where(valid, actual, np.nan), pairs)
    calibration: dict[str, Any] = {
        "method": method,
        "source": "calibration_tail",
        "calibration_size": int(calibration_size),
        "n_scores": n_scores,
        "levels": [round(100 * level, 6) for _, _, level in pairs],
        "offsets": offsets.tolist(),
    }
    if method == "rolling":
        calibration["window"] = 10 * horizon if window is None else int(window)
        calibration["gamma"] = float(gamma)
        # The offsets of a forecast from the end of the training data, computed once here so
        # that nt.forecast from there costs no rolling pass (``end_offsets``).
        rolling = record.replace(extra={**record.extra, "calibration": calibration})
        _, _, scaled = scaled_values(record.scaler, panel)
        at_end, _ = _rolling_offsets_at(rolling, panel, scaled, np.array([panel.n_time]), None)
        calibration["end_offsets"] = {
            "ids": list(panel.ids),
            "ends": panel.ds[:, -1].tolist(),
            "offsets": at_end[:, 0].tolist(),
        }
    return calibration
