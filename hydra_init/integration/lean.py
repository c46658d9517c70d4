"""Lean typed presets: only the fields a preset sets, each checked like a structured config's.

A structured schema (an OmegaConf dataclass) types every field by holding every
field, so a preset bound to :class:`~hydra_init.integration.schema.InitConfig`
composes to ~35 ``null`` keys per rule. hydra_init's own presets are served
instead by a config source (``hydra_plugins/hydra_init_searchpath/conf_source.py``)
that passes each YAML file through :func:`lean_config`: every key the file sets
becomes a *typed* node (``FloatNode``, ``EnumNode`` ...; the type of that field in
the schema and in the rule's initializer), and nothing else is added. So, at
composition time, as with the schema:

* ``init.std=abc`` and ``init.rules.conv.mode=fan_sideways`` are type and Enum
  errors that name the key;
* ``init.bogus=1`` is refused by Hydra's struct check ("Key 'bogus' is not in
  struct"); a field the preset leaves at its default is added with ``+``
  (``+init.rules.conv.exclude=[stem]``) and checked when the init is built
  (:class:`~hydra_init.InitConfigError` with a did-you-mean);

while the composed ``init`` node holds only what the preset says (plus its
``_target_``, ``_knobs_used_`` (merged first, from ``/hydra_init/schema/head``, so it
resolves before the rules), ``enabled: true`` (the off switch) and ``tiles: flat`` (the
tile layout, so that ``init.tiles=blocks`` needs no ``+``).

>>> from omegaconf import OmegaConf
>>> cfg = lean_config(OmegaConf.create({
...     "defaults": ["/hydra_init/schema/init@_here_", "_self_"],
...     "std": 0.02, "rules": {"fc": {"type": "Normal", "layer": ["Linear"], "std": "${...std}"}}}),
...     "init/example")
>>> print(OmegaConf.to_yaml(cfg), end="")
defaults:
- /hydra_init/schema/head@_here_
- _self_
_target_: hydra_init.Init
_knobs_used_: ${hydra_init.knobs_used:}
enabled: true
tiles: flat
std: 0.02
rules:
  fc:
    type: Normal
    layer:
    - Linear
    std: ${...std}
>>> cfg.std = "abc"  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
omegaconf.errors.ValidationError: Value 'abc' of type 'str' could not be converted to Float
...
"""

from __future__ import annotations

import dataclasses
import enum
import typing
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.nodes import AnyNode, BooleanNode, EnumNode, FloatNode, IntegerNode, StringNode

from ..engine.knobs import KNOBS_USED_FIELD
from ..errors import InitConfigError, did_you_mean
from ..initializers import REGISTRY
from .schema import InitConfig, RuleConfig, initializer_fields

__all__ = ["SCHEMA_ENTRY", "lean_config", "lean_rule"]

SCHEMA_ENTRY = "/hydra_init/schema/init@_here_"
HEAD_ENTRY = "/hydra_init/schema/head@_here_"
"""Merged first into every lean preset: ``_target_`` and ``_knobs_used_`` (see hydra_init.engine.knobs)."""
"""The defaults entry that binds a YAML preset to the padded structured schema; a lean preset drops it."""

_RULE_HINTS = typing.get_type_hints(RuleConfig)
_SELECTORS = ("type", "layer", "name", "params", "exclude", "priority", "enabled", "optional", "override",
              "expr")


def _scalar(tp: Any) -> Any:
    """``Optional[X]`` -> ``X``; anything else unchanged."""
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    return args[0] if type(None) in typing.get_args(tp) and len(args) == 1 else tp


def _node(tp: Any, value: Any) -> Any:
    """A typed OmegaConf node holding ``value`` (an interpolation stays one); containers stay plain."""
    if isinstance(value, (dict, list)):
        return value
    tp = _scalar(tp)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return EnumNode(enum_type=tp, value=value)
    node_type = {float: FloatNode, int: IntegerNode, bool: BooleanNode, str: StringNode}.get(tp, AnyNode)
    return node_type(value=value)


def _init_hints(type_name: Any) -> dict[str, Any]:
    """Argument name -> type for the rule's initializer; all initializers' when its type is not known."""
    cls = REGISTRY.get(type_name) or REGISTRY.get(str(type_name).removesuffix("Init")) if isinstance(
        type_name, str) else None
    if cls is None:
        return initializer_fields()
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def lean_rule(raw: Any, key: str) -> DictConfig:
    """One rule mapping with each key typed by its selector or initializer-argument type.

    A key that is neither raises :class:`~hydra_init.InitConfigError` (a preset's typo).
    """
    plain = OmegaConf.to_container(raw, resolve=False) if OmegaConf.is_config(raw) else dict(raw)
    hints = _init_hints(plain.get("type"))
    out: dict[str, Any] = {}
    for name, value in plain.items():
        if name in _SELECTORS:
            out[name] = _node(_RULE_HINTS[name], value)
        elif name in hints:
            out[name] = _node(hints[name], value)
        else:
            valid = [*_SELECTORS, *hints]
            raise InitConfigError(f"{key}.{name}", f"unknown rule key {name!r}", valid=", ".join(valid),
                                  hint=did_you_mean(str(name), valid))
    return DictConfig(out)


def _rules(raw: Any, key: str) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, (dict, DictConfig)):
        raise InitConfigError(key, "expected a mapping of rule name -> rule")
    return {name: (lean_rule(rule, f"{key}.{name}") if rule is not None else None)
            for name, rule in raw.items()}


def _schema_entry(entry: Any) -> type[InitConfig] | None:
    """The schema a defaults entry binds a preset to (``/hydra_init/schema/<name>@_here_``), if it is one."""
    prefix, suffix = "/hydra_init/schema/", "@_here_"
    if not (isinstance(entry, str) and entry.startswith(prefix) and entry.endswith(suffix)):
        return None
    name = entry[len(prefix):-len(suffix)]
    from .recipe_schemas import RECIPE_SCHEMAS

    return InitConfig if name == "init" else RECIPE_SCHEMAS.get(name)


def lean_config(cfg: DictConfig, config_path: str) -> DictConfig:
    """The lean typed form of a YAML file of the ``init`` group, as loaded by Hydra.

    ``config_path`` is the file's path in the group (``init/kaiming_conv``,
    ``init/rules/head_zero``); files under ``init/rules/`` hold named rules,
    the others a whole init node. The padded schema entry (:data:`SCHEMA_ENTRY`)
    is dropped from the defaults list; a preset gets ``_target_: hydra_init.Init``
    ``enabled: true`` and ``tiles: flat`` instead.
    """
    where = config_path.removesuffix(".yaml")
    plain = OmegaConf.to_container(cfg, resolve=False)
    defaults = plain.pop("defaults", None)
    out: dict[str, Any] = {}
    schema = InitConfig
    if defaults is not None:
        kept = []
        for entry in defaults:
            bound = _schema_entry(entry)
            if bound is None:
                kept.append(entry)
            else:
                schema = bound
        out["defaults"] = kept
    if where.startswith("init/rules/"):
        out.update(_rules(plain, where))
        return DictConfig(out)
    # the head first: key order is first-merged, and _knobs_used_ must resolve before the rules
    out["defaults"] = [HEAD_ENTRY, *out.get("defaults", ["_self_"])]
    hints = typing.get_type_hints(schema)
    out["_target_"] = plain.pop("_target_", InitConfig._target_)
    # before the rules, so that it resolves while they still hold their interpolations (engine/knobs.py)
    out[KNOBS_USED_FIELD] = plain.pop(KNOBS_USED_FIELD, InitConfig._knobs_used_)
    out["enabled"] = _node(bool, plain.pop("enabled", True))
    out["tiles"] = _node(hints["tiles"], plain.pop("tiles", InitConfig.tiles.value))  # so: no + needed
    for name, value in plain.items():
        if name == "rules":
            out[name] = _rules(value, f"{where}.rules")
        elif name in hints and name != "_target_":
            out[name] = _node(hints[name], value)
        else:
            valid = [f.name for f in dataclasses.fields(schema)]
            raise InitConfigError(f"{where}.{name}", f"unknown key {name!r}", valid=", ".join(valid),
                                  hint=did_you_mean(str(name), valid))
    return DictConfig(out)
