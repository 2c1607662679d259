"""The one training loop: runs of steps between validation checks, over a member axis.

A single fit is a run of one member (its plain, optionally data-parallel step); a population or
a stacked ensemble is a run of K members (one vmapped step). The loop does the bookkeeping the
same way for both: the step losses of every member, a validation check every
``val_check_steps``, each member's best parameters by validation loss and its early stopping,
a non-finite loss or a raising member callback failing that member (a single fit re-raises it),
checkpoints that let a killed run resume exactly, and one progress bar.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from tqdm.auto import tqdm

from ntjax.config import TrainingConfig
from ntjax.train.checkpoint import Checkpointer
from ntjax.train.prepare import TrainingData
from ntjax.train.step import TrainState


@dataclass(frozen=True)
class Progress:
    """What a callback sees at each validation check."""

    step: int
    train_loss: float
    val_loss: float | None


class Engine(Protocol):
    """The compiled pieces a run loops over (``SingleEngine``, ``PopulationEngine``)."""

    n_members: int

    def steps(self, state: TrainState, data: TrainingData, n_steps: int) -> tuple[Any, Any]:
        """``n_steps`` steps: the new state and the losses, numpy ``[n_members, n_steps]``."""
        ...

    def eval_loss(self, params: Any, data: TrainingData) -> np.ndarray:
        """``[n_members]`` validation losses."""
        ...

    def keep_best(self, best: Any, params: Any, improved: np.ndarray) -> Any:
        """``best`` with the members flagged in ``improved`` ``[n_members]`` set to ``params``
        (``best`` is donated; ``params`` are copied)."""
        ...

    def state_shape(self) -> Any:
        """The train state's structure (the target a checkpoint restores into)."""
        ...

    def place(self, tree: Any) -> Any:
        """A restored pytree placed where the run's state lives."""
        ...


@dataclass(frozen=True, eq=False)
class LoopResult:
    """What the loop leaves behind; arrays have a leading member axis.

    Attributes:
      state: the final train state.
      best: each member's parameters at its best validation loss (None without validation).
      best_val: ``[n_members]`` best validation loss (inf where none was finite).
      best_step: ``[n_members]`` step of the check whose parameters are ``best``.
      histories: per member ``{"step", "train_loss", "val_loss"}`` at its checks.
      stop_step: ``[n_members]`` step at which each member stopped.
      stopped_early: ``[n_members]`` whether it stopped by early stopping.
      errors: per member the exception that stopped it, or None.
      start_step: the step the run started (or resumed) from.
      step_time: median seconds per step (compilation excluded where possible).
    """

    state: TrainState
    best: Any
    best_val: np.ndarray
    best_step: np.ndarray
    histories: list[dict[str, list]]
    stop_step: np.ndarray
    stopped_early: np.ndarray
    errors: list[BaseException | None]
    start_step: int
    step_time: float


def chunk_end(done: int, max_steps: int, *every: int) -> int:
    """The step where the next run of steps must stop for the host: the next multiple of any
    of ``every`` (validation checks, checkpoints; 0 means never) or ``max_steps``."""
    ends = [max_steps] + [(done // n + 1) * n for n in every if n]
    return min(ends)


def _argmin_step(history: dict[str, list]) -> int:
    """The step of a history's lowest validation loss (0 before any check)."""
    losses = [math.inf if v is None else v for v in history["val_loss"]]
    return history["step"][int(np.argmin(losses))] if losses else 0


class _RestoredError(RuntimeError):
    """A member that had failed before the run was checkpointed (its error, as text)."""


def run(
    engine: Engine,
    state: TrainState,
    data: TrainingData,
    *,
    training: TrainingConfig,
    member_callbacks: Sequence[Callable[[int, Progress], None]] = (),
    on_check: Callable[[int, np.ndarray, np.ndarray | None], None] | None = None,
    checkpointer: Checkpointer | None = None,
    progress: bool = True,
    desc: str = "train",
) -> LoopResult:
    """Trains every member of ``state`` until ``max_steps``, or until every member stopped.

    Args:
      engine: the compiled steps and validation loss of the run.
      state: the initial train state (stacked over members for a population).
      data: the device-resident training data.
      training: the shared training config (steps, checks, patience, checkpoints).
      member_callbacks: ``callback(member, progress)`` at each check of each running member;
        raising stops that member (its error is kept).
      on_check: ``on_check(step, train_loss, val_loss)`` with the ``[n_members]`` losses at
        each check while a member runs; raising stops the whole run (the exception
        propagates).
      checkpointer: saves the state and the loop's bookkeeping every ``checkpoint_every`` steps
        and when every member stopped; a run with a checkpoint resumes from it.
      progress: show the progress bar.
      desc: the progress bar's label.
    """
    n_members = engine.n_members
    has_val = training.val_size > 0
    patience = training.early_stopping_patience
    best = engine.keep_best(None, state.params, np.ones(n_members, bool)) if has_val else None
    book: dict[str, Any] = {
        "done": 0,
        "best_val": [math.inf] * n_members,
        "best_step": [0] * n_members,
        "bad_checks": [0] * n_members,
        "running": [True] * n_members,
        "stop_step": [training.max_steps] * n_members,
        "stopped_early": [False] * n_members,
        "errors": [None] * n_members,
        "histories": [{"step": [], "train_loss": [], "val_loss": []} for _ in range(n_members)],
        "pending": [[] for _ in range(n_members)],
    }
    if checkpointer is not None:
        restored = checkpointer.load(engine.state_shape(), has_best=has_val)
        if restored is not None:
            state, best, book = restored
            state = engine.place(state)
            best = engine.place(best) if best is not None else None
    best_val = np.asarray(book["best_val"], np.float64)
    if "best_step" not in book:  # a checkpoint from before best_step was kept
        book["best_step"] = [_argmin_step(h) for h in book["histories"]]
    best_step = np.asarray(book["best_step"], np.int64)
    bad_checks = np.asarray(book["bad_checks"], np.int64)
    running = np.asarray(book["running"], bool)
    stop_step = np.asarray(book["stop_step"], np.int64)
    stopped_early = np.asarray(book["stopped_early"], bool)
    errors: list[BaseException | None] = [
        None if text is None else _RestoredError(text) for text in book["errors"]
    ]
    histories, pending = book["histories"], book["pending"]
    start = done = int(book["done"])
    if has_val and training.max_steps == 0:  # no step: the start is the model, validated once
        best_val = np.asarray(engine.eval_loss(state.params, data), np.float64)
    every = training.checkpoint_every if checkpointer is not None else 0

    bar = tqdm(
        total=training.max_steps,
        initial=start,
        disable=not progress,
        file=sys.stderr,
        desc=desc,
        dynamic_ncols=True,
    )
    step_times: list[float] = []
    tick = time.perf_counter()
    try:
        while done < training.max_steps and running.any():
            end = chunk_end(done, training.max_steps, training.val_check_steps, every)
            state, losses = engine.steps(state, data, end - done)
            for k in range(n_members):
                pending[k].extend(np.asarray(losses[k])[: end - done].tolist())
            done = end
            if done % training.val_check_steps == 0 or done == training.max_steps:
                step_times.append((time.perf_counter() - tick) / len(pending[0]))
                train_loss = np.asarray([np.mean(p) for p in pending], np.float64)
                pending = [[] for _ in range(n_members)]
                val_loss = np.asarray(engine.eval_loss(state.params, data)) if has_val else None
                if has_val:
                    improved = running & np.isfinite(train_loss) & (val_loss < best_val)
                    best = engine.keep_best(best, state.params, improved)
                    best_val = np.where(improved, val_loss, best_val)
                    best_step = np.where(improved, done, best_step)
                    bad_checks = np.where(improved, 0, bad_checks + 1)
                for k in np.flatnonzero(running):
                    if not math.isfinite(train_loss[k]):
                        errors[k] = FloatingPointError(
                            f"training loss became {train_loss[k]} at step {done}."
                        )
                        running[k], stop_step[k] = False, done
                        continue
                    member_val = float(val_loss[k]) if has_val else None
                    histories[k]["step"].append(done)
                    histories[k]["train_loss"].append(float(train_loss[k]))
                    histories[k]["val_loss"].append(member_val)
                    try:
                        for callback in member_callbacks:
                            callback(int(k), Progress(done, float(train_loss[k]), member_val))
                    except Exception as error:  # noqa: BLE001 - a member callback stops its member
                        errors[k] = error
                        running[k], stop_step[k] = False, done
                        continue
                    if has_val and patience is not None and bad_checks[k] >= patience:
                        running[k], stop_step[k], stopped_early[k] = False, done, True
                if on_check is not None and running.any():
                    on_check(done, train_loss, val_loss)
                finite = train_loss[np.isfinite(train_loss)]
                if finite.size:
                    postfix = {"loss": f"{finite.min():.4f}"}
                    if has_val:
                        postfix["val"] = f"{np.min(val_loss):.4f}"
                    if n_members > 1:
                        postfix["running"] = str(int(running.sum()))
                    bar.set_postfix(postfix, refresh=False)
                bar.update(done - bar.n)
                tick = time.perf_counter()
            if checkpointer is not None and (not running.any() or (every and done % every == 0)):
                book = {
                    "done": done,
                    "best_val": best_val.tolist(),
                    "best_step": best_step.tolist(),
                    "bad_checks": bad_checks.tolist(),
                    "running": running.tolist(),
                    "stop_step": stop_step.tolist(),
                    "stopped_early": stopped_early.tolist(),
                    "errors": [None if e is None else f"{type(e).__name__}: {e}" for e in errors],
                    "histories": histories,
                    "pending": pending,
                }
                checkpointer.save(state, best, book)
    finally:
        bar.close()
    step_time = float(np.median(step_times[1:] or step_times)) if step_times else float("nan")
    return LoopResult(
        state=state,
        best=best,
        best_val=best_val,
        best_step=best_step,
        histories=histories,
        stop_step=stop_step,
        stopped_early=stopped_early,
        errors=errors,
        start_step=start,
        step_time=step_time,
    )
