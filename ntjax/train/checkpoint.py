"""Resumable checkpoints of a training run: the train state and each member's best parameters
(safetensors) and the loop's bookkeeping (JSON), each written atomically; a checkpoint of
another run (other members, configs or data) is refused."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax

from ntjax import _io
from ntjax.config import ModelConfig, OptimizerConfig, TrainingConfig


def run_key(
    members: Sequence[tuple[ModelConfig, TrainingConfig, OptimizerConfig]], data_fingerprint: str
) -> str:
    """What identifies a run: every member's configs (progress and checkpoint fields aside)
    and the data."""
    skip = {"progress", "checkpoint_dir", "checkpoint_every"}
    blob = json.dumps(
        [
            [
                config.to_dict(),
                {k: v for k, v in training.__dict__.items() if k not in skip},
                optimizer.__dict__,
            ]
            for config, training, optimizer in members
        ]
        + [data_fingerprint],
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


class Checkpointer:
    """Saves and restores one run's checkpoint in ``folder`` (see the module docstring)."""

    def __init__(self, folder: str, key: str) -> None:
        self.folder = Path(folder)
        self.run_key = key

    @property
    def _state_path(self) -> Path:
        return self.folder / "state.safetensors"

    @property
    def _meta_path(self) -> Path:
        return self.folder / "checkpoint.json"

    def save(self, state: Any, best_params: Any, loop: dict) -> None:
        """Writes the checkpoint (process 0 only in a multi-process run: every process holds
        the same replicated state, and reads it back from the shared folder on resume)."""
        tree = {"state": state, "best": best_params if best_params is not None else {}}
        host_tree = jax.device_get(tree)
        if jax.process_index() != 0:
            return
        _io.atomic_write(self._state_path, _io.tree_to_bytes(host_tree))
        meta = {"run_key": self.run_key, "loop": loop, "has_best": best_params is not None}
        _io.atomic_write(self._meta_path, _io.dumps_json(meta))

    def saved_step(self) -> int | None:
        """The step of the checkpoint in the folder (of any run), or None when there is none."""
        if not self._meta_path.exists():
            return None
        return int(json.loads(self._meta_path.read_text())["loop"]["done"])

    def load(self, state_shape: Any, *, has_best: bool) -> tuple[Any, Any, dict] | None:
        """The saved state, best parameters (None without) and bookkeeping; None when the
        folder holds no checkpoint."""
        if not self._meta_path.exists():
            return None
        meta = json.loads(self._meta_path.read_text())
        if meta.get("run_key") != self.run_key:
            raise ValueError(
                f"the checkpoint in {self.folder} belongs to a different run (model, training, "
                "optimizer or data differ); use another checkpoint_dir or delete it."
            )
        saved_best = bool(meta["has_best"]) and has_best
        best_shape = state_shape.params if saved_best else {}
        tree = _io.tree_from_bytes(
            self._state_path.read_bytes(), {"state": state_shape, "best": best_shape}
        )
        return tree["state"], tree["best"] if saved_best else None, meta["loop"]
