"""``nt.retrain``: the champion/challenger pipeline behind an alias.

One run, under the alias's lock (``Store.alias_lock``):

1. the champion is the model the alias names; the rows of ``df`` after its ``trained_on`` end
   are new to it. Nothing new (or nothing since the last decision) means nothing is done.
2. the champion is scored on the new rows (rolling one-step-apart forecasts, absolute errors
   scaled by each series' in-sample naive MAE) and the policy's trigger is checked: *decay*
   (new-row error over the error on the champion's own held-out tail, its validation and
   calibration rows, above ``max_decay``), *drift* (Page-Hinkley on the new-row errors in units
   of that reference level), or *schedule* (``every`` new rows).
3. when triggered, a challenger is fine-tuned from the champion (or refitted from its config)
   on everything but the last ``holdout`` rows, and saved; with rolling calibration it holds
   no calibration tail out of its gradient, so the newest rows shape it;
4. both forecast the holdout (new to both); a one-sided Diebold-Mariano test with the
   Harvey-Leybourne-Newbold correction on the per-origin losses decides. The challenger is
   promoted only when it is better at the policy's significance; the decision, with its
   evidence, is written in the index in the same transaction as the alias change.

Crash safety: the challenger is a complete, committed artifact before the one transaction
that may point the alias at it, and the lock dies with its process; ``kill -9`` at any moment
leaves the alias on a complete, loadable model.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import numpy as np
import polars as pl

from ntjax import provenance
from ntjax._ids import utc_now
from ntjax.config import ConfigError, TrainingConfig
from ntjax.crossval import drop_last
from ntjax.data.frame import validate
from ntjax.data.scalers import inverse
from ntjax.data.windows import Panel, channels, pack
from ntjax.lifecycle.finetune import fine_tuning_defaults, finetune
from ntjax.metrics.comparison import diebold_mariano, page_hinkley
from ntjax.metrics.forecast import naive_scale
from ntjax.predict.batch import actuals_at_cutoffs, raw_at_cutoffs
from ntjax.predict.inputs import scaled_values
from ntjax.record import ModelRecord
from ntjax.train.fit import fit

TRIGGERS = ("auto", "always", "decay", "drift", "schedule")
METHODS = ("finetune", "refit")
LOSSES = ("mae", "mse")


@dataclass(frozen=True, kw_only=True)
class RetrainPolicy:
    """When to retrain, how, and how a challenger must win.

    Attributes:
      trigger: ``auto`` (decay, drift or schedule, whichever fires), ``always``, or one of
        ``decay``, ``drift``, ``schedule`` alone.
      every: schedule: retrain once this many rows of a series are new to the champion.
      max_decay: decay: the champion's scaled error on the new rows over its error on its own
        held-out tail (validation and calibration rows) above which it has decayed.
      drift_delta, drift_threshold: Page-Hinkley's tolerance per step and alarm level, in
        units of that reference error.
      method: ``finetune`` the champion (``nt.finetune`` defaults) or ``refit`` its config
        from scratch with its training and optimizer settings.
      holdout: rows at the end of each series both models are compared on (default: half of
        the new rows, at least horizon + 2 rows (three forecast origins), at most ten
        horizons).
      significance: the one-sided Diebold-Mariano p-value below which the challenger wins.
      loss: ``mae`` or ``mse`` of the scaled errors, per forecast origin.
      max_steps: the challenger's optimisation steps (default: the method's).
      seed: the challenger's seed.
    """

    trigger: str = "auto"
    every: int | None = None
    max_decay: float = 1.2
    drift_delta: float = 0.05
    drift_threshold: float = 10.0
    method: str = "finetune"
    holdout: int | None = None
    significance: float = 0.05
    loss: str = "mae"
    max_steps: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        for name, allowed in (("trigger", TRIGGERS), ("method", METHODS), ("loss", LOSSES)):
            if getattr(self, name) not in allowed:
                raise ConfigError(
                    f"policy {name} must be one of {allowed}, got {getattr(self, name)!r}."
                )
        for name in ("every", "holdout", "max_steps"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
                raise ConfigError(f"policy {name} must be a positive integer, got {value!r}.")
            if value is not None and value < 1:
                raise ConfigError(f"policy {name} must be a positive integer, got {value!r}.")
        if self.trigger == "schedule" and self.every is None:
            raise ConfigError("policy trigger 'schedule' needs every= (rows between retrains).")
        checks = (
            ("max_decay", self.max_decay, 1.0, 100.0),
            ("drift_delta", self.drift_delta, 0.0, 100.0),
            ("drift_threshold", self.drift_threshold, 1e-9, 1e9),
            ("significance", self.significance, 1e-9, 0.5),
        )
        for name, value, low, high in checks:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"policy {name} must be a number, got {value!r}.")
            if not low <= value <= high:
                raise ConfigError(f"policy {name} must be in [{low}, {high}], got {value!r}.")
        if not isinstance(self.seed, int) or not 0 <= self.seed < 2**31:
            raise ConfigError(f"policy seed must be a non-negative integer, got {self.seed!r}.")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RetrainPolicy:
        """A policy from a mapping (e.g. a JSON file's object), refusing unknown keys."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"a policy is a JSON object, got {type(data).__name__}.")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(f"unknown policy fields {unknown}; known: {sorted(names)}.")
        return cls(**data)

    @classmethod
    def from_json(cls, path: str | Path) -> RetrainPolicy:
        """A policy from a JSON file."""
        try:
            data = json.loads(Path(path).read_text())
        except OSError as error:
            raise ConfigError(f"cannot read the policy file {path}: {error.strerror}.") from None
        except json.JSONDecodeError as error:
            raise ConfigError(f"the policy file {path} is not JSON ({error.msg}).") from None
        return cls.from_dict(data)


@dataclass(frozen=True)
class RetrainDecision:
    """What one ``nt.retrain`` run decided, and why.

    Attributes:
      promoted: the alias now names the challenger.
      champion_id: the model the alias named when the run started.
      challenger_id: the challenger trained (None when none was).
      reason: one sentence.
      p_value: the Diebold-Mariano p-value (None without a comparison).
      metrics: the evidence: new rows, errors, trigger statistics, holdout losses.
      decided_at: UTC time of the decision.
      alias: the alias.
      data_end: the last time stamp of the data the run saw.
      recorded: whether the decision was written in the index (runs that find nothing new,
        or too few new rows to compare, leave no trace).
    """

    promoted: bool
    champion_id: str
    challenger_id: str | None
    reason: str
    p_value: float | None
    metrics: dict[str, Any]
    decided_at: str
    alias: str
    data_end: str | None = None
    recorded: bool = False

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def retrain(store: Any, alias: str, df: Any, *, policy: RetrainPolicy | None = None) -> Any:
    """Runs the retraining pipeline of ``alias`` on ``df`` (see the module's docstring).

    Args:
      store: an ``nt.Store``.
      alias: the alias whose model is the champion.
      df: the series up to now (long frame): the champion's training rows and what came after.
      policy: ``RetrainPolicy`` (default ``RetrainPolicy()``).

    Returns:
      ``RetrainDecision``.

    Raises:
      ModelNotFoundError: no such alias. LockedError: another run holds the alias.
      ConfigError: data too short for the champion's config.
    """
    policy = policy or RetrainPolicy()
    with store.alias_lock(alias):
        champion_id = store.resolve(alias)
        champion = store.load(champion_id)
        return _run(store, alias, champion, df, policy)


def _run(
    store: Any, alias: str, champion: ModelRecord, df: Any, policy: RetrainPolicy
) -> RetrainDecision:
    config = champion.config
    frame = validate(df, exog=(*config.hist_exog, *config.futr_exog))
    panel = pack(frame, channels(config))
    data_end, end_key = _end(frame)
    horizon = config.horizon

    def decide(reason: str, *, record: bool, **fields: Any) -> RetrainDecision:
        decision = RetrainDecision(
            promoted=fields.pop("promoted", False),
            champion_id=champion.id,
            challenger_id=fields.pop("challenger_id", None),
            reason=reason,
            p_value=fields.pop("p_value", None),
            metrics=fields.pop("metrics", {}),
            decided_at=utc_now(),
            alias=alias,
            data_end=data_end,
            recorded=record,
        )
        if record:
            store.record_decision({**decision.to_dict(), "data_end_key": end_key})
        return decision

    previous = [d for d in store.decisions(alias) if _left_in_place(d) == champion.id]
    seen = previous[-1]["data_end_key"] if previous else None
    if seen is not None and end_key <= seen:
        return decide(
            f"no rows after {previous[-1]['data_end']}, the end of the data the last "
            f"decision about model {champion.id} saw; nothing to do.",
            record=False,
        )
    bound = provenance.boundaries(champion.trained_on, panel)
    first_new = int(bound.max()) + 1 if (bound >= 0).any() else config.input_size
    first_new = max(first_new, config.input_size)
    n_new = panel.n_time - first_new
    if n_new <= 0:
        return decide(
            f"no rows are new to model {champion.id} (it was fitted on data up to "
            f"{data_end}); nothing to do.",
            record=False,
        )
    if n_new < horizon:
        return decide(
            f"only {n_new} rows are new to model {champion.id}, fewer than one horizon "
            f"({horizon}); waiting for more.",
            record=False,
        )
    scale = _naive_scales(panel, first_new)
    key = jax.random.key(policy.seed)
    new_cutoffs = np.arange(first_new, panel.n_time - horizon + 1)
    new_errors = _errors(champion, panel, new_cutoffs, scale, key)
    reference = _reference_error(champion, panel, first_new, scale, key)
    metrics: dict[str, Any] = {
        "new_rows": int(n_new),
        "champion_new_error": float(new_errors.mean()),
        "reference_error": reference,
    }
    fired = _triggers(policy, new_errors, reference, n_new, metrics)
    if not fired:
        return decide(f"no retraining: {metrics['trigger_summary']}.", record=True, metrics=metrics)

    holdout = policy.holdout or int(np.clip(n_new // 2, horizon + 2, 10 * horizon))
    if holdout > n_new or holdout < horizon + 2:
        return decide(
            f"triggered ({', '.join(fired)}) but a holdout of {holdout} rows needs at least "
            f"{horizon + 2} rows new to the champion and at most the {n_new} it has; waiting "
            "for more.",
            record=False,
            metrics=metrics,
        )
    challenger = store.save(_challenger(champion, drop_last(frame, holdout), policy))
    holdout_cutoffs = np.arange(panel.n_time - holdout, panel.n_time - horizon + 1)
    hold_scale = _naive_scales(panel, panel.n_time - holdout)
    losses = [
        _errors(model, panel, holdout_cutoffs, hold_scale, key, squared=policy.loss == "mse")
        for model in (champion, challenger)
    ]
    test = diebold_mariano(losses[0], losses[1], horizon=horizon)
    promoted = test.mean_difference > 0 and test.p_value < policy.significance
    metrics.update(
        holdout_rows=holdout,
        holdout_origins=int(len(holdout_cutoffs)),
        loss=policy.loss,
        method=policy.method,
        champion_holdout_loss=float(losses[0].mean()),
        challenger_holdout_loss=float(losses[1].mean()),
        dm_statistic=test.statistic,
    )
    verdict = (
        f"challenger {challenger.id} is better on the last {holdout} rows"
        if promoted
        else f"challenger {challenger.id} is not better on the last {holdout} rows"
    )
    comparison = "<" if test.p_value < policy.significance else ">="
    reason = (
        f"{verdict}: scaled {policy.loss} {losses[1].mean():.4g} against the champion's "
        f"{losses[0].mean():.4g}, Diebold-Mariano (HLN) p = {test.p_value:.3g} {comparison} "
        f"{policy.significance}; retrained on {', '.join(fired)}"
    )
    return decide(
        reason,
        record=True,
        promoted=promoted,
        challenger_id=challenger.id,
        p_value=test.p_value,
        metrics=metrics,
    )


def _left_in_place(decision: Mapping[str, Any]) -> str:
    return decision["challenger_id"] if decision["promoted"] else decision["champion_id"]


def _end(frame: pl.DataFrame) -> tuple[str, int]:
    """The frame's last time stamp, as text and as a comparable integer (microseconds)."""
    end = frame["ds"].max()
    if frame.schema["ds"] == pl.Int64:
        return str(end), int(end)
    return str(end), int(frame.select(pl.col("ds").max().dt.epoch("us")).item())


def _naive_scales(panel: Panel, before: int) -> np.ndarray:
    """``[n_series]`` in-sample naive MAE of each series' observed rows before ``before``
    (1 where it is zero or undefined): the unit of the scaled errors."""
    first = panel.n_time - panel.lengths
    scales = np.array(
        [naive_scale(panel.values[s, first[s] : before, 0]) for s in range(panel.n_series)]
    )
    return np.where(np.isfinite(scales) & (scales > 0), scales, 1.0)


def _errors(
    record: ModelRecord,
    panel: Panel,
    cutoffs: np.ndarray,
    scale: np.ndarray,
    key: jax.Array,
    *,
    squared: bool = False,
) -> np.ndarray:
    """``[n_cutoffs]`` mean over series and steps of the median forecast's scaled absolute (or
    squared) error at each origin; only data before an origin feeds its forecast."""
    loc, shift, scaled = scaled_values(record.scaler, panel, fit_upto=int(cutoffs[0]))
    raw = raw_at_cutoffs(record.config, record.params, scaled, cutoffs, key=key)
    median = inverse(raw[..., record.config.median_index], loc[:, 0], shift[:, 0])
    error = (actuals_at_cutoffs(panel, cutoffs, record.config.horizon) - median) / scale[
        :, None, None
    ]
    error = error**2 if squared else np.abs(error)
    return np.nanmean(error, axis=(0, 2))


def _reference_error(
    record: ModelRecord, panel: Panel, first_new: int, scale: np.ndarray, key: jax.Array
) -> float | None:
    """The champion's mean scaled error on its held-out tail (validation and calibration rows:
    no gradient came from them), or None when it has none a full horizon long."""
    if record.trained_on is None:
        return None
    train_end = provenance.boundaries(record.trained_on, panel, roles=("train",), strict=False)
    start = max(int(train_end.max()) + 1, record.config.input_size)
    cutoffs = np.arange(start, first_new - record.config.horizon + 1)
    if len(cutoffs) == 0:
        return None
    return float(_errors(record, panel, cutoffs, scale, key).mean())


def _triggers(
    policy: RetrainPolicy,
    errors: np.ndarray,
    reference: float | None,
    n_new: int,
    metrics: dict[str, Any],
) -> list[str]:
    """The triggers that fire (in the policy's selection), with their statistics put in
    ``metrics`` and a one-line summary in ``metrics["trigger_summary"]``."""
    level = (
        reference
        if reference and reference > 0
        else float(errors[: max(1, len(errors) // 4)].mean())
    )
    ratio = float(errors.mean() / reference) if reference else None
    drift = page_hinkley(
        errors / level if level > 0 else errors,
        delta=policy.drift_delta,
        threshold=policy.drift_threshold,
    )
    checks = {
        "decay": ratio is not None and ratio > policy.max_decay,
        "drift": drift.alarm,
        "schedule": policy.every is not None and n_new >= policy.every,
    }
    metrics.update(
        decay_ratio=ratio,
        drift_statistic=drift.statistic,
        drift_alarm=drift.alarm,
        schedule_due=checks["schedule"],
    )
    parts = [
        f"decay {ratio:.3g} {'>' if checks['decay'] else '<='} {policy.max_decay}"
        if ratio is not None
        else "decay not measurable (the champion has no held-out tail)",
        f"Page-Hinkley {drift.statistic:.3g} {'>' if drift.alarm else '<='} "
        f"{policy.drift_threshold}",
        f"{n_new} new rows {'>=' if checks['schedule'] else '<'} every={policy.every}"
        if policy.every is not None
        else "no schedule",
    ]
    metrics["trigger_summary"] = "; ".join(parts)
    if policy.trigger == "always":
        return ["always"]
    selected = ("decay", "drift", "schedule") if policy.trigger == "auto" else (policy.trigger,)
    return [name for name in selected if checks[name]]


def _challenger(champion: ModelRecord, df: pl.DataFrame, policy: RetrainPolicy) -> ModelRecord:
    """The challenger: fine-tuned from the champion or refitted from its config on ``df``."""
    if policy.method == "finetune":
        training = fine_tuning_defaults(champion, df)
    else:
        training = champion.training or TrainingConfig()
    # The newest rows matter most after a change: with rolling calibration the challenger holds
    # no calibration tail out of its gradient (its scores come from rows after training).
    calibration_size = 0 if training.calibration == "rolling" else training.calibration_size
    training = dataclasses.replace(
        training,
        calibration_size=calibration_size,
        seed=policy.seed,
        progress=False,
        max_steps=policy.max_steps or training.max_steps,
        checkpoint_dir=None,
        checkpoint_every=0,
    )
    if policy.method == "finetune":
        return finetune(champion, df, training=training)
    return fit(df, champion.config, training, champion.optimizer)


__all__ = ["METHODS", "LOSSES", "TRIGGERS", "RetrainDecision", "RetrainPolicy", "retrain"]
