"""Structured (OmegaConf) schema of an init config, as Hydra composes it.

An init config is a set of *named rules* plus a seed and a few preset-level
*knobs* (``std``, ``mode``, ``bias`` ...) that the rules of a preset interpolate
(``std: ${...std}``), so ``init.std=0.02`` on the command line reaches every
rule of the preset that uses it.

:class:`RuleConfig` is flat: its selector fields plus the union of every
initializer's arguments, all optional. It is generated from the initializer
classes, so a new initializer is reachable from Hydra without editing this file.
The engine then checks that a rule only sets the arguments its ``type`` has.

Example:
    >>> from omegaconf import OmegaConf
    >>> cfg = OmegaConf.structured(InitConfig(rules={"conv": RuleConfig(type="Kaiming")}))
    >>> cfg.rules.conv.mode = "fan_sideways"  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    omegaconf.errors.ValidationError: Invalid value 'fan_sideways', expected one of [fan_in, fan_out, fan_avg]
    ...
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Any, Optional

from ..engine.knobs import FIXED_KEYS
from ..engine.rules import SELECTOR_FIELDS
from ..initializers import REGISTRY, BoundUnit, Distribution, FanMode, Nonlinearity
from ..sampling import Tiles

__all__ = ["KNOBS", "RECIPE_SCHEMAS", "SELECTOR_FIELDS", "InitConfig", "RuleConfig", "initializer_fields"]




def initializer_fields() -> dict[str, Any]:
    """Every initializer argument name -> its resolved type, over all registered types."""
    out: dict[str, Any] = {}
    for cls in REGISTRY.values():
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            out.setdefault(f.name, hints[f.name])
    return out


def _optional(tp: Any) -> Any:
    return tp if type(None) in typing.get_args(tp) else Optional[tp]  # noqa: UP045


def _rule_config_class() -> type:
    selector_fields = [
        ("type", Optional[str], field(default=None)),  # noqa: UP045
        ("layer", Any, field(default=None)),
        ("name", Any, field(default=None)),
        ("params", Any, field(default=None)),
        ("exclude", Any, field(default=None)),
        ("priority", int, field(default=0)),
        ("enabled", bool, field(default=True)),
        ("optional", bool, field(default=False)),
        ("override", Any, field(default=None)),
        ("expr", Optional[dict[str, str]], field(default=None)),  # noqa: UP045
    ]
    init_fields = [
        (name, _optional(tp), field(default=None)) for name, tp in initializer_fields().items()
    ]
    cls = dataclasses.make_dataclass("RuleConfig", selector_fields + init_fields)
    cls.__module__ = __name__
    cls.__doc__ = (
        "One named rule: selectors (type, layer, name, params, exclude, priority, enabled,\n"
        "optional, override, expr) plus the arguments of every initializer, all optional.\n"
        "Unset (None) arguments take the initializer's default."
    )
    return cls


RuleConfig = _rule_config_class()


@dataclass
class InitConfig:
    """The ``init`` node: named rules, a seed, and preset-level knobs.

    Knobs are ``None`` unless a preset uses them; the engine refuses a knob that
    is set but referenced by no rule (``init.std=0.02`` on the ``constant``
    preset), so an override never silently does nothing.
    """

    _target_: str = "hydra_init.Init"
    # Resolved before ``rules`` (fields resolve in order), so the knob names the rules'
    # interpolations use survive Hydra's resolution into Init(**kwargs): hydra_init.engine.knobs.
    _knobs_used_: Any = "${hydra_init.knobs_used:}"
    seed: Optional[int] = None  # noqa: UP045
    tiles: Tiles = Tiles.flat  # how large tensors are cut into tiles (value format): flat | blocks
    enabled: bool = True  # false: the off switch, the model stays exactly as constructed
    rules: dict[str, RuleConfig] = field(default_factory=dict)  # type: ignore[valid-type]
    module_init_cfg: bool = True
    # knobs shared by the presets
    val: Optional[float] = None  # noqa: UP045
    mean: Optional[float] = None  # noqa: UP045
    std: Optional[float] = None  # noqa: UP045
    a: Optional[float] = None  # noqa: UP045
    b: Optional[float] = None  # noqa: UP045
    bound_unit: Optional[BoundUnit] = None  # noqa: UP045
    gain: Optional[float] = None  # noqa: UP045
    scale: Optional[float] = None  # noqa: UP045
    mode: Optional[FanMode] = None  # noqa: UP045
    nonlinearity: Optional[Nonlinearity] = None  # noqa: UP045
    distribution: Optional[Distribution] = None  # noqa: UP045
    bias: Optional[float] = None  # noqa: UP045
    bias_prob: Optional[float] = None  # noqa: UP045
    checkpoint: Optional[str] = None  # noqa: UP045
    prefix: Optional[str] = None  # noqa: UP045
    # sizes read from the model and families recognized by class (hydra_init.engine.sizes)
    sizes: Optional[dict[str, Any]] = None  # noqa: UP045
    families: Optional[dict[str, Any]] = None  # noqa: UP045


from .recipe_schemas import RECIPE_SCHEMAS  # noqa: E402  (the recipes' schemas extend InitConfig)

KNOBS: frozenset[str] = frozenset(
    f.name for schema in (InitConfig, *RECIPE_SCHEMAS.values()) for f in dataclasses.fields(schema)
) - set(FIXED_KEYS) - {"_target_", "_knobs_used_"}
"""Preset-level knobs: values that rules interpolate (the core's and every recipe's)."""
