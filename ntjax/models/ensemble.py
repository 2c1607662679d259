"""Ensembles as one model family.

An ``EnsembleConfig`` holds member configs of one horizon and one set of quantiles. Its params
are either one stacked pytree with a leading member axis (``size`` copies of one config, trained
together as one vmapped program by ``nt.train(..., ensemble_size=K)``, which
``ntjax.train.fit`` hands to ``ntjax.train.population.fit_ensemble``) or one pytree per member
(``nt.ensemble(records)``).
Quantiles are combined per level across members (mean, median or weighted mean: quantile
averaging), which keeps them non-crossing. Because the ensemble is a model family, it trains,
forecasts, evaluates, saves and loads like any other.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import jax
import jax.numpy as jnp

from ntjax.config import ConfigError, ModelConfig, _check_int
from ntjax.models._common import Inputs, Params, as_inputs

# The closed table's lookup (``ntjax.models.spec_for``), handed in by the table: members are
# any family, and the table itself holds this one.
SpecFor = Callable[[ModelConfig], Any]

METHODS = ("mean", "median", "weighted")


@dataclass(frozen=True, kw_only=True)
class EnsembleConfig(ModelConfig):
    """Members and how their quantiles are combined.

    Attributes:
      members: member configs (one config when ``size > 1``: stacked copies of it).
      size: number of stacked copies of ``members[0]`` (1 for a list of distinct members).
      method: ``mean``, ``median`` or ``weighted`` (weighted mean with ``weights``).
      weights: one non-negative weight per member (normalised when combining), for
        ``weighted``.
    """

    kind: ClassVar[str] = "ensemble"
    members: tuple[Any, ...] = ()
    size: int = 1
    method: str = "mean"
    weights: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        super().__post_init__()
        members = tuple(self.members)
        object.__setattr__(self, "members", members)
        if not members or not all(isinstance(m, ModelConfig) for m in members):
            raise ConfigError("an ensemble needs at least one member config.")
        if any(isinstance(m, EnsembleConfig) for m in members):
            raise ConfigError("ensembles cannot be nested.")
        _check_int("ensemble size", self.size, 1, 1024)
        if self.size > 1 and len(members) != 1:
            raise ConfigError("a stacked ensemble (size > 1) has exactly one member config.")
        for m in members:
            if m.horizon != self.horizon or m.quantiles != self.quantiles:
                raise ConfigError("ensemble members must share the horizon and the quantiles.")
            if (m.hist_exog, m.futr_exog) != (self.hist_exog, self.futr_exog):
                raise ConfigError("ensemble members must use the same exogenous columns.")
            if m.input_size > self.input_size:
                raise ConfigError("the ensemble's input_size must cover every member's.")
        if self.method not in METHODS:
            raise ConfigError(f"method must be one of {METHODS}, got {self.method!r}.")
        if self.method == "weighted":
            if (
                len(self.weights) != self.n_members
                or min(self.weights) < 0
                or sum(self.weights) <= 0
            ):
                raise ConfigError("weighted ensembles need one non-negative weight per member.")
            # Kept as given (normalised where used), so a saved config reloads equal.
            object.__setattr__(self, "weights", tuple(float(w) for w in self.weights))

    @property
    def n_members(self) -> int:
        return self.size if self.size > 1 else len(self.members)

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data["members"] = [m.to_dict() for m in self.members]
        return {"kind": self.kind, **data}


def _member_inputs(inputs: Inputs, member: ModelConfig) -> Inputs:
    """The last ``member.input_size`` steps of each input."""
    out = {"y": inputs["y"][:, -member.input_size :]}
    if "hist_exog" in inputs:
        out["hist_exog"] = inputs["hist_exog"][:, -member.input_size :]
    if "futr_exog" in inputs:
        out["futr_exog"] = inputs["futr_exog"][:, -(member.input_size + member.horizon) :]
    return out


def init(config: EnsembleConfig, key: jax.Array, *, spec_for: SpecFor) -> Params:
    if config.size > 1:
        member = config.members[0]
        keys = jax.random.split(key, config.size)
        return {"stacked": jax.vmap(lambda k: spec_for(member).init(member, k))(keys)}
    return {
        f"m{i}": spec_for(m).init(m, jax.random.fold_in(key, i))
        for i, m in enumerate(config.members)
    }


def _member_keys(key: jax.Array | None, n: int):
    return None if key is None else jax.random.split(key, n)


def member_quantiles(
    config: EnsembleConfig,
    params: Params,
    x: Any,
    *,
    spec_for: SpecFor,
    key: jax.Array | None = None,
) -> jax.Array:
    """Every member's quantile forecast, ``[n_members, batch, horizon, n_quantiles]``."""
    inputs = as_inputs(x)
    keys = _member_keys(key, config.n_members)
    if config.size > 1:
        member = config.members[0]
        spec = spec_for(member)
        sliced = _member_inputs(inputs, member)
        if keys is None:
            return jax.vmap(lambda p: spec.predict_quantiles(member, p, sliced))(params["stacked"])
        return jax.vmap(lambda p, k: spec.predict_quantiles(member, p, sliced, key=k))(
            params["stacked"], keys
        )
    return jnp.stack(
        [
            spec_for(m).predict_quantiles(
                m, params[f"m{i}"], _member_inputs(inputs, m), key=None if keys is None else keys[i]
            )
            for i, m in enumerate(config.members)
        ]
    )


def combine(config: EnsembleConfig, quantiles: jax.Array) -> jax.Array:
    """Quantile averaging over the member axis: ``[members, ...] -> [...]``."""
    if config.method == "median":
        return jnp.median(quantiles, axis=0)
    if config.method == "weighted":
        weights = jnp.asarray(config.weights, quantiles.dtype)
        return jnp.tensordot(weights / weights.sum(), quantiles, axes=1)
    return jnp.mean(quantiles, axis=0)


def apply(
    config: EnsembleConfig,
    params: Params,
    x: Any,
    *,
    spec_for: SpecFor,
    key: jax.Array | None = None,
) -> jax.Array:
    """The combined forecast ``[batch, horizon, n_quantiles]``."""
    return combine(config, member_quantiles(config, params, x, spec_for=spec_for, key=key))


def loss(
    spec, config: EnsembleConfig, params: Params, inputs, targets, *, spec_for: SpecFor, key=None
) -> jax.Array:
    """Training loss of an ensemble of distinct members (``nt.ensemble(records)`` fine-tuned
    as one model): each member on its own loss, ``[members]``, scaled so each member's gradient
    is its own. Stacked ensembles never come here: ``ntjax.train.fit`` trains them as a
    population (``ntjax.train.population.fit_ensemble``), one vmapped step per member."""
    if config.size > 1:
        raise ConfigError(
            "a stacked ensemble trains through ntjax.train.population.fit_ensemble (nt.train with "
            "ensemble_size), not through its loss."
        )
    keys = _member_keys(key, config.n_members)
    parts = [
        spec_for(m)
        .training_loss(
            m,
            params[f"m{i}"],
            _member_inputs(inputs, m),
            targets,
            key=None if keys is None else keys[i],
        )
        .mean()
        for i, m in enumerate(config.members)
    ]
    return jnp.stack(parts) * config.n_members


def predict(
    spec, config: EnsembleConfig, params: Params, inputs, *, spec_for: SpecFor, key=None
) -> jax.Array:
    return apply(config, params, inputs, spec_for=spec_for, key=key)
