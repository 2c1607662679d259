"""Series-sharded training (``TrainingConfig(shard_series=True)``): each device of the mesh
holds its own series and samples its share of every batch from them.

A panel too large for one process is split by series. Over several processes each process
passes only its own series (``nt.distributed.local_series``, or its own files); within a
process its series are split over its devices (``distributed.series_shards``: sorted ids cut
into contiguous runs). Device ``d`` of the mesh thus holds the same series whether the mesh is
N processes x 1 device or 1 process x N devices, and both train the same model.

What stays global, and how:
- Scalers are per series, fitted on each series' own training rows, so no shard needs another
  shard's data; the record's scaler is every shard's rows joined.
- The held-out tails (validation, calibration) are the last rows of each series; their length
  comes from the shortest series of the whole panel (a gathered minimum), as in one process.
- The validation loss is the mean over every validation window of every shard (each device's
  sum and count, summed over the mesh).
- Each step, each device samples ``batch_size / devices`` windows of its own table from
  ``fold_in(fold_in(key, step), device)``; the gradients are averaged over the mesh. The batch
  is a function of the seed, the step and the shard layout only. Each shard carries an equal
  part of every batch, so with series of very unequal total length, balance the shards by rows.
- The record's provenance, fingerprint and interval calibration see every series: each shard's
  spans and the last ``input_size + calibration + horizon`` rows of its series are gathered on
  every process, which calibrates from them as one process would.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
from typing import Any

import jax
import numpy as np
import polars as pl
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from ntjax import provenance
from ntjax.config import ConfigError, ModelConfig, TrainingConfig
from ntjax.data.frame import validate
from ntjax.data.scalers import ScalerState
from ntjax.data.windows import channels, pack
from ntjax.train import distributed
from ntjax.train.prepare import (
    Prepared,
    TrainingData,
    calibration_size,
    prepare,
    resolve_training,
    time_bucket,
    validate_training_frame,
)


def prepare_sharded(
    df: Any,
    config: ModelConfig,
    training: TrainingConfig,
    mesh: jax.sharding.Mesh,
    *,
    scaler: ScalerState | None = None,
) -> Prepared:
    """``prepare`` for a series-sharded run: this process's series (``df``) split over its
    devices of ``mesh``, one block per device, placed as global arrays sharded on ``data``.

    Every process of the job calls it (it gathers shapes and the record's metadata). The
    returned ``Prepared`` has the sharded ``data`` and the global scaler, fingerprint,
    provenance and calibration panel (the tails of every series).

    Raises:
      ConfigError: a series passed by two processes, fewer series than local devices, or a
        device whose series leave no training window.
    """
    frame = validate_training_frame(df, config, training)
    ids = frame["unique_id"].unique(maintain_order=True).to_list()
    local = [d for d in mesh.devices.flat if d.process_index == jax.process_index()]
    _check_disjoint(ids)
    if len(ids) < len(local):
        raise ConfigError(
            f"shard_series needs at least one series per device: this process has {len(ids)} "
            f"series for {len(local)} devices (in one process, set training.devices to at most "
            f"{len(ids)})."
        )
    lengths = frame.group_by("unique_id").len()["len"]
    shortest, longest = _gathered(np.array([-lengths.min(), lengths.max()])).max(axis=0)
    training = resolve_training(training, config, int(-shortest))
    n_calibration = calibration_size(config, training, int(-shortest))
    padded_time = time_bucket(int(longest))
    # Each device's block is an ordinary (unsharded) preparation of its series.
    block_training = dataclasses.replace(training, shard_series=False)
    parts = [
        prepare(
            frame.filter(pl.col("unique_id").is_in(group)),
            config,
            block_training,
            scaler=scaler,
            calibration_rows=n_calibration,
            padded_time=padded_time,
            on_host=True,
        )
        for group in distributed.series_shards(ids, len(local))
    ]
    data = _place(parts, mesh, padded_time)
    tail = config.input_size + n_calibration + config.horizon
    tails = frame.group_by("unique_id", maintain_order=True).tail(tail)
    everything = [
        json.loads(blob)
        for blob in distributed.allgather_bytes(
            json.dumps(
                {
                    "scalers": [part.scaler.to_dict() for part in parts],
                    "fingerprints": [part.fingerprint for part in parts],
                }
            ).encode()
        )
    ]
    joined = _join_scalers(
        [ScalerState.from_dict(s) for process in everything for s in process["scalers"]]
    )
    digest = hashlib.sha256(b"series shards")
    for process in everything:
        for fingerprint in process["fingerprints"]:
            digest.update(fingerprint.encode())
    trained_on = provenance.union(
        _read(blob)
        for blob in distributed.allgather_bytes(
            _write(provenance.union(part.trained_on for part in parts))
        )
    )
    every_tail = pl.concat([_read(blob) for blob in distributed.allgather_bytes(_write(tails))])
    exog = (*config.hist_exog, *config.futr_exog)
    panel = pack(validate(every_tail, exog=exog), channels(config))
    return Prepared(panel, joined, data, digest.hexdigest(), n_calibration, trained_on, training)


def count_windows(data: TrainingData) -> int:
    """Training windows of (sharded or plain) data on this process's devices."""
    shards = data.n_windows.addressable_shards
    return int(sum(np.sum(np.asarray(shard.data)) for shard in shards))


def _check_disjoint(ids: list[str]) -> None:
    if not distributed.is_multi_process():
        return
    owner: dict[str, int] = {}
    for process, blob in enumerate(distributed.allgather_bytes(json.dumps(ids).encode())):
        for uid in json.loads(blob):
            if uid in owner:
                raise ConfigError(
                    f"series {uid!r} is on processes {owner[uid]} and {process}: with "
                    "shard_series each process passes only its own series "
                    "(nt.distributed.local_series(df))."
                )
            owner[uid] = process


def _gathered(values: np.ndarray) -> np.ndarray:
    """``[processes, k]`` int64: every process's ``values``."""
    local = np.ascontiguousarray(values, np.int64)
    blobs = distributed.allgather_bytes(local.tobytes())
    return np.stack([np.frombuffer(blob, np.int64) for blob in blobs])


def _place(parts: list[Prepared], mesh: jax.sharding.Mesh, padded_time: int) -> TrainingData:
    """One block per local device (padded to the largest block of the mesh), as global arrays
    sharded on the ``data`` axis."""
    blocks = [part.data for part in parts]
    counts = [int(block.n_windows) for block in blocks]
    if min(counts) == 0:
        raise ConfigError(
            "a device's series leave no training window: use fewer devices or longer series."
        )
    n_series, n_windows, n_val = _gathered(
        np.array(
            [
                max(part.panel.n_series for part in parts),
                max(counts),
                max(len(block.val_windows) for block in blocks),
            ]
        )
    ).max(axis=0)
    table = 1 << max(0, (int(n_windows) - 1).bit_length())
    n_val = max(1, int(n_val))
    n_channels = blocks[0].values.shape[2]
    local = len(parts)
    values = np.zeros((local, n_series, padded_time, n_channels), np.float32)
    windows = np.zeros((local, table, 2), np.int32)
    val_windows = np.zeros((local, n_val, 2), np.int32)
    val_weights = np.zeros((local, n_val), np.float32)
    for k, (block, count) in enumerate(zip(blocks, counts, strict=True)):
        block_values = np.asarray(block.values)
        values[k, : len(block_values)] = block_values
        windows[k, :count] = np.asarray(block.windows)[:count]
        val = np.asarray(block.val_windows)
        val_windows[k, : len(val)] = val
        val_weights[k, : len(val)] = 1.0
    sharding = NamedSharding(mesh, P("data"))

    def place(array: np.ndarray) -> jax.Array:
        flat = array.reshape((-1, *array.shape[2:]))
        return jax.make_array_from_process_local_data(sharding, flat)

    return TrainingData(
        values=place(values),
        windows=place(windows),
        n_windows=jax.make_array_from_process_local_data(sharding, np.asarray(counts, np.int32)),
        val_windows=place(val_windows),
        val_weights=place(val_weights),
    )


def _join_scalers(scalers: list[ScalerState]) -> ScalerState:
    """The shards' scalers as one (a series in several, a warm start's parent rows, once)."""
    seen: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for scaler in scalers:
        for uid, loc, scale in zip(scaler.ids, scaler.loc, scaler.scale, strict=True):
            seen.setdefault(uid, (loc, scale))
    first = scalers[0]
    return ScalerState(
        kind=first.kind,
        ids=tuple(seen),
        columns=first.columns,
        loc=np.stack([loc for loc, _ in seen.values()]),
        scale=np.stack([scale for _, scale in seen.values()]),
    )


def _write(frame: pl.DataFrame | None) -> bytes:
    if frame is None:
        return b""
    buffer = io.BytesIO()
    frame.write_ipc(buffer)
    return buffer.getvalue()


def _read(blob: bytes) -> pl.DataFrame | None:
    return pl.read_ipc(io.BytesIO(blob)) if blob else None
