"""The artifact codec: a ``ModelRecord`` <-> its two files, ``params.safetensors`` (the
parameters) and ``record.json`` (everything else, format ``ntjax.record/1``).

Decoding trusts nothing in the files: the JSON's structure is checked field by field, configs
are rebuilt only from the closed model table (``ntjax.models.CONFIGS``) with their bounds, the
parameters restore only into the structure the config's model has, and the block digest of
the parameter file (the full sha256 too, on request) must match. A bad artifact raises one of
``CORRUPT``; anything else is a bug and propagates as itself.

A quantised record (``nt.quantize``) says so in ``extra["quantization"]["dtype"]`` (``int8``
or ``bfloat16``): its parameters restore into the quantised structure of its config's model
(``ntjax.models.quantized.quantized_shapes``: int8 kernels with their float32 scales, or
bfloat16 kernels), with the same checks of every key, shape and dtype.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
from safetensors import SafetensorError

from ntjax import _io, provenance
from ntjax.config import (
    ModelConfig,
    OptimizerConfig,
    TrainingConfig,
    config_from_dict,
    dataclass_from_dict,
)
from ntjax.data.scalers import ScalerState
from ntjax.models import CONFIGS, spec_for
from ntjax.models.quantized import DTYPES as QUANTIZED_DTYPES
from ntjax.models.quantized import quantized_shapes
from ntjax.record import ModelRecord
from ntjax.store._json import dumps
from ntjax.store.errors import ArtifactError
from ntjax.store.files import PARAMS_FILE

FORMAT = "ntjax.record/1"
# What decoding a bad artifact raises (``json.JSONDecodeError`` and ``UnicodeDecodeError``
# are ``ValueError``s).
CORRUPT = (ValueError, SafetensorError)


def params_digest(data: bytes) -> str:
    """Fast integrity digest: sha256 of the sums (mod 2**64) of every 512-byte block read as
    little-endian uint64, plus the tail bytes. Any bit flip, truncation or block reordering
    changes it; it costs ~0.1 ms/MB against ~0.8 ms/MB for sha256 of the whole file, which
    keeps loading within budget. (Not an authentication code: the full sha256 is in the record
    too, checked by ``Store.verify``.)"""
    words = np.frombuffer(data, np.uint8, count=len(data) // 512 * 512).view("<u8")
    sums = words.reshape(-1, 64).sum(axis=1, dtype=np.uint64)
    digest = hashlib.sha256(sums.astype("<u8").tobytes())
    digest.update(data[len(data) // 512 * 512 :])
    digest.update(len(data).to_bytes(8, "little"))
    return digest.hexdigest()


def _record_json(record: ModelRecord, params_bytes: bytes) -> bytes:
    meta = {
        "format": FORMAT,
        "id": record.id,
        "kind": record.kind,
        "status": record.status,
        "config": record.config.to_dict(),
        "training": dataclasses.asdict(record.training) if record.training else None,
        "optimizer": dataclasses.asdict(record.optimizer) if record.optimizer else None,
        "scaler": record.scaler.to_dict() if record.scaler is not None else None,
        "metrics": dict(record.metrics),
        "history": dict(record.history),
        "created_at": record.created_at,
        "updated_at": record.updated_at,
        "parent_id": record.parent_id,
        "data_fingerprint": record.data_fingerprint,
        "version": record.version,
        "error": record.error,
        "extra": dict(record.extra),
        "trained_on": provenance.to_json(record.trained_on),
        "params": {
            "file": PARAMS_FILE,
            "bytes": len(params_bytes),
            "n_params": record.n_params,
            "digest": params_digest(params_bytes),
            "sha256": hashlib.sha256(params_bytes).hexdigest(),
        },
    }
    return dumps(meta).encode()


def encode(record: ModelRecord, *, max_bytes: int) -> tuple[bytes, bytes]:
    """The parameter file and record JSON of ``record``.

    Raises:
      ArtifactError: the two together would be over ``max_bytes``.
    """
    params_bytes = _io.tree_to_bytes(jax.device_get(record.params))
    meta_bytes = _record_json(record, params_bytes)
    size = len(params_bytes) + len(meta_bytes)
    if size > max_bytes:
        raise ArtifactError(
            f"model {record.id}: the artifact would be {size} bytes, over the store's limit "
            f"of {max_bytes} bytes."
        )
    return params_bytes, meta_bytes


# -- decoding ----------------------------------------------------------------------------------

_OPTIONAL_OBJECTS = ("scaler", "training", "optimizer", "metrics", "history", "extra")
_OPTIONAL_TEXTS = ("parent_id", "data_fingerprint", "version", "error")
_SCALER_LISTS = ("ids", "columns", "loc", "scale")


def _require(meta: Mapping[str, Any], key: str, kind: type | tuple[type, ...], what: str) -> Any:
    value = meta.get(key)
    if isinstance(value, bool) or not isinstance(value, kind):
        raise ValueError(f"the record's {key!r} is not {what}")
    return value


def check_meta(meta: Any, model_id: str) -> None:
    """Checks the structure of a record JSON for ``model_id``: the format, the id, status
    ``trained``, and the type of every field decoding reads.

    Raises:
      ValueError: naming the first field that is wrong.
    """
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(f"not an {FORMAT} record")
    if meta.get("id") != model_id:
        raise ValueError(f"the record is for id {meta.get('id')!r}")
    if meta.get("status") != "trained":
        raise ValueError(f"the record has status {meta.get('status')!r}")
    _require(meta, "kind", str, "a text")
    _require(meta, "config", dict, "an object")
    for key in ("created_at", "updated_at"):
        _require(meta, key, str, "a text")
    for key in _OPTIONAL_OBJECTS:
        if meta.get(key) is not None:
            _require(meta, key, dict, "an object")
    for key in _OPTIONAL_TEXTS:
        if meta.get(key) is not None:
            _require(meta, key, str, "a text")
    info = _require(meta, "params", dict, "an object")
    _require(info, "bytes", int, "a byte count")
    _require(info, "n_params", int, "a parameter count")
    for key in ("digest", "sha256"):
        _require(info, key, str, "a text")
    quantization = (meta.get("extra") or {}).get("quantization")
    dtype = quantization.get("dtype") if isinstance(quantization, dict) else None
    if quantization is not None and dtype not in QUANTIZED_DTYPES:
        raise ValueError(f"the record's quantization is not one of {QUANTIZED_DTYPES}")
    scaler = meta.get("scaler")
    if scaler is not None:
        _require(scaler, "kind", str, "a text")
        for key in _SCALER_LISTS:
            _require(scaler, key, list, "a list")


def _parse(meta_bytes: bytes) -> Any:
    try:
        return json.loads(meta_bytes)
    except RecursionError:
        raise ValueError("the record JSON is nested too deeply") from None


def config_of(meta: Mapping[str, Any]) -> ModelConfig:
    """The model config of a checked record JSON (``check_meta``): kinds from the closed table
    only, every bound checked."""
    return config_from_dict(meta["config"], CONFIGS)


@functools.lru_cache(maxsize=64)
def _param_shapes(config: ModelConfig) -> Any:
    """The parameter structure a config's model has (shapes and dtypes, nothing allocated):
    the only structure a parameter file may restore into."""
    spec = spec_for(config)
    # The key only fixes shapes here; no randomness is drawn.
    return jax.eval_shape(lambda key: spec.init(config, key), jax.random.key(0))


def _scaler_from_dict(data: Mapping[str, Any]) -> ScalerState:
    scaler = ScalerState.from_dict(dict(data))
    shape = (len(scaler.ids), len(scaler.columns))
    if scaler.loc.shape != shape or scaler.scale.shape != shape:
        raise ValueError(f"scaler statistics have shape {scaler.loc.shape}, expected {shape}.")
    if not (np.isfinite(scaler.loc).all() and np.isfinite(scaler.scale).all()):
        raise ValueError("scaler statistics are not finite.")
    return scaler


def decode(model_id: str, meta_bytes: bytes, params_bytes: bytes, *, verify: bool) -> ModelRecord:
    """The record of an artifact's two files (``verify``: check the full sha256 as well).

    Raises:
      One of ``CORRUPT``: the artifact is corrupt, truncated, or not a valid record.
    """
    meta = _parse(meta_bytes)
    check_meta(meta, model_id)
    info = meta["params"]
    if info["bytes"] != len(params_bytes):
        raise ValueError(
            f"{PARAMS_FILE} has {len(params_bytes)} bytes, the record says {info['bytes']}"
        )
    if info["digest"] != params_digest(params_bytes):
        raise ValueError(f"{PARAMS_FILE} does not match its digest")
    if verify and info["sha256"] != hashlib.sha256(params_bytes).hexdigest():
        raise ValueError(f"{PARAMS_FILE} does not match its sha256")
    config = config_of(meta)
    shapes = _param_shapes(config)
    quantization = (meta.get("extra") or {}).get("quantization")
    if quantization is not None:
        shapes = quantized_shapes(shapes, quantization["dtype"])
    params = jax.device_put(_io.tree_from_bytes(params_bytes, shapes))
    training, optimizer = meta.get("training"), meta.get("optimizer")
    return ModelRecord(
        id=meta["id"],
        kind=meta["kind"],
        config=config,
        params=params,
        scaler=_scaler_from_dict(meta["scaler"]) if meta.get("scaler") is not None else None,
        status=meta["status"],
        metrics=dict(meta.get("metrics") or {}),
        history=dict(meta.get("history") or {}),
        training=dataclass_from_dict(TrainingConfig, training) if training else None,
        optimizer=dataclass_from_dict(OptimizerConfig, optimizer) if optimizer else None,
        created_at=meta["created_at"],
        updated_at=meta["updated_at"],
        parent_id=meta.get("parent_id"),
        data_fingerprint=meta.get("data_fingerprint"),
        version=meta.get("version") or "",
        error=meta.get("error"),
        extra=dict(meta.get("extra") or {}),
        trained_on=provenance.from_json(meta.get("trained_on")),
    )


__all__ = ["CORRUPT", "FORMAT", "check_meta", "config_of", "decode", "encode", "params_digest"]
