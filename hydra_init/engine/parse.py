"""Normalize and validate any init config form into a list of :class:`Rule`.

Accepted forms (all give the same rules):

* the native named-rules form, as a dict, ``DictConfig`` or :class:`InitConfig`::

      {"seed": 0, "rules": {"conv": {"type": "Kaiming", "layer": "Conv2d"}}}

* mmengine's forms: one dict with a ``type`` key, or a list of them, with
  ``layer``, ``override``, ``bias_prob`` and ``Pretrained`` as mmengine reads them;
* :class:`Rule` objects, alone or in a list.

Every problem raises :class:`InitConfigError` naming the key path.
"""

from __future__ import annotations

import dataclasses
import enum
import re
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from ..errors import InitConfigError, did_you_mean
from ..initializers import REGISTRY, Initializer, Pretrained
from .expressions import evaluate, names_in
from .knobs import check_knobs
from .rules import SELECTOR_FIELDS, Rule, as_tuple

__all__ = ["ParsedConfig", "build_initializer", "parse_config", "parse_rule", "specialize"]

from ..integration.schema import KNOBS

_TOP_LEVEL = ("_target_", "seed", "enabled", "rules", "module_init_cfg", *sorted(KNOBS))


@dataclass
class ParsedConfig:
    """The normalized config: rules in precedence order plus global options."""

    rules: list[Rule] = field(default_factory=list)
    seed: int | None = None
    module_init_cfg: bool = True
    warnings: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------- values
def _type_name(tp: Any) -> str:
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return "one of " + ", ".join(m.value for m in tp)
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against a dataclass field type, converting enums and ints."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Union or (origin is not None and type(None) in args):
        if value is None:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _coerce(value, inner, key)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        if isinstance(value, tp):
            return value
        valid = [m.value for m in tp]
        if isinstance(value, str) and value in valid:
            return tp(value)
        raise InitConfigError(
            key, f"invalid value {value!r}", valid=", ".join(valid),
            hint=did_you_mean(str(value), valid),
        )
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise InitConfigError(key, f"expected a number, got {value!r}", valid="a float")
    if tp is int:
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise InitConfigError(key, f"expected an integer, got {value!r}", valid="an int")
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise InitConfigError(key, f"expected true/false, got {value!r}", valid="a bool")
    if tp is str:
        if isinstance(value, str):
            return value
        raise InitConfigError(key, f"expected a string, got {value!r}", valid="a str")
    if origin in (list, tuple, Sequence):
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)):
            raise InitConfigError(key, f"expected a list, got {value!r}", valid="a list")
        return [_coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(items)] if args else list(
            items
        )
    return value


def _names(value: Any, key: str) -> tuple[str, ...]:
    items = as_tuple(value) if value is None or isinstance(value, str) else value
    if not isinstance(items, (list, tuple)):
        raise InitConfigError(key, f"expected a name or a list of names, got {value!r}")
    for i, item in enumerate(items):
        if not isinstance(item, str) or not item:
            raise InitConfigError(f"{key}[{i}]", f"expected a non-empty string, got {item!r}")
    return tuple(items)


def _initializer_class(type_name: Any, key: str) -> type[Initializer]:
    if not isinstance(type_name, str):
        raise InitConfigError(
            key, "missing initializer type" if type_name is None else f"bad type {type_name!r}",
            valid=", ".join(REGISTRY),
        )
    cls = REGISTRY.get(type_name) or REGISTRY.get(type_name.removesuffix("Init"))
    if cls is None:
        raise InitConfigError(
            key, f"unknown initializer {type_name!r}", valid=", ".join(REGISTRY),
            hint=did_you_mean(type_name, REGISTRY),
        )
    return cls


def build_initializer(cls: type[Initializer], args: Mapping[str, Any], key: str) -> Initializer:
    """Instantiate and validate an initializer from a mapping of its arguments."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for arg, value in args.items():
        if arg not in hints or arg not in names:
            raise InitConfigError(
                f"{key}.{arg}", f"{cls.type_name} has no argument {arg!r}",
                valid=", ".join(names), hint=did_you_mean(arg, names),
            )
        kwargs[arg] = _coerce(value, hints[arg], f"{key}.{arg}")
    try:
        init = cls(**kwargs)
    except TypeError as exc:  # a required argument is missing
        raise InitConfigError(key, f"{cls.type_name}: {exc}", valid=", ".join(names)) from None
    init.validate(key)
    return init


# ----------------------------------------------------------------------------- rules
def parse_rule(raw: Mapping[str, Any], key: str, label: str) -> list[Rule]:
    """One config mapping -> its rule, followed by the rules of its mmengine ``override``."""
    raw = {k: v for k, v in raw.items() if v is not None}
    if not raw.get("enabled", True):
        return []
    cls = _initializer_class(raw.get("type"), f"{key}.type")
    init_args = {k: v for k, v in raw.items() if k not in SELECTOR_FIELDS and k != "type"}
    unknown = [k for k in init_args if k not in {f.name for f in dataclasses.fields(cls)}]
    if unknown and unknown[0] not in _all_init_args():
        valid = [*SELECTOR_FIELDS, *(f.name for f in dataclasses.fields(cls))]
        raise InitConfigError(
            f"{key}.{unknown[0]}", f"unknown rule key {unknown[0]!r}",
            valid=", ".join(valid), hint=did_you_mean(unknown[0], valid),
        )
    names = _names(raw.get("name"), f"{key}.name")
    expr = _expressions(raw.get("expr"), cls, names, f"{key}.expr")
    constant = {arg: _constant(text, f"{key}.expr.{arg}") for arg, text in expr if not names_in(text)}
    init = build_initializer(cls, {**init_args, **constant}, key)
    per_module = tuple((arg, text) for arg, text in expr if arg not in constant)
    rule = Rule(
        init=init,
        expr=per_module,
        layer=_names(raw.get("layer"), f"{key}.layer"),
        name=names,
        params=_names(raw.get("params"), f"{key}.params"),
        exclude=_names(raw.get("exclude"), f"{key}.exclude"),
        priority=_coerce(raw.get("priority", 0), int, f"{key}.priority"),
        optional=_coerce(raw.get("optional", False), bool, f"{key}.optional"),
        label=label,
        key=key,
    )
    return [rule, *_override_rules(raw.get("override"), rule, init_args, cls, key)]


_CAPTURE = re.compile(r"\{(\w+)\}")


def _expressions(
    raw: Any, cls: type[Initializer], names: tuple[str, ...], key: str
) -> tuple[tuple[str, str], ...]:
    """Validate ``expr``: known arguments, parseable text, names captured by ``name``."""
    if raw is None:
        return ()
    if not isinstance(raw, Mapping):
        raise InitConfigError(key, f"expected a mapping argument -> expression, got {raw!r}")
    captured = {c for pattern in names for c in _CAPTURE.findall(pattern)}
    args = [f.name for f in dataclasses.fields(cls)]
    out = []
    for arg, text in raw.items():
        if arg not in args:
            raise InitConfigError(
                f"{key}.{arg}", f"{cls.type_name} has no argument {arg!r}",
                valid=", ".join(args), hint=did_you_mean(str(arg), args),
            )
        if not isinstance(text, (str, int, float)) or isinstance(text, bool):
            raise InitConfigError(f"{key}.{arg}", f"expected an expression string, got {text!r}")
        text = str(text)
        try:
            used = names_in(text)
        except ValueError as exc:
            raise InitConfigError(f"{key}.{arg}", str(exc)) from None
        for name in sorted(used - captured):
            raise InitConfigError(
                f"{key}.{arg}", f"{name!r} is not captured by any name glob of this rule",
                valid=("captures: " + ", ".join(sorted(captured))) if captured else
                "no captures: add {" + name + "} to a name glob, e.g. layers.{" + name + "}.attn",
                hint=did_you_mean(name, captured),
            )
        out.append((str(arg), text))
    return tuple(out)


def _constant(text: str, key: str) -> float:
    try:
        return evaluate(text, {})
    except (ValueError, ArithmeticError) as exc:
        raise InitConfigError(key, f"{text!r}: {exc}") from None


def specialize(
    init: Initializer, expr: tuple[tuple[str, str], ...], captures: Mapping[str, Any], key: str
) -> Initializer:
    """The initializer with its ``expr`` arguments computed from one module's captures."""
    values = dict(init.args())
    where = ", ".join(f"{k}={v}" for k, v in captures.items())
    for arg, text in expr:
        try:
            values[arg] = evaluate(text, captures)
        except (ValueError, ArithmeticError) as exc:
            raise InitConfigError(f"{key}.expr.{arg}", f"{text!r} at {where}: {exc}") from None
    try:
        return build_initializer(type(init), values, key)
    except InitConfigError as exc:
        raise InitConfigError(f"{key}.expr", f"at {where}: {exc.problem}", valid=exc.valid) from None


def _all_init_args() -> set[str]:
    return {f.name for c in REGISTRY.values() for f in dataclasses.fields(c)}


def _override_rules(
    override: Any, parent: Rule, parent_args: Mapping[str, Any], parent_cls: type, key: str
) -> list[Rule]:
    """mmengine ``override``: nested rules for named sub-modules of the owner.

    An override with only ``name`` reuses the parent's initializer; otherwise it
    needs its own ``type``. Overrides reach the whole named subtree, at any depth
    (``name`` is a module-path glob), and win over their parent rule.
    """
    if override is None:
        return []
    items = [override] if isinstance(override, Mapping) else override
    if not isinstance(items, (list, tuple)):
        raise InitConfigError(f"{key}.override", "expected a dict or a list of dicts")
    out = []
    for i, item in enumerate(items):
        okey = f"{key}.override" + (f"[{i}]" if not isinstance(override, Mapping) else "")
        if not isinstance(item, Mapping) or "name" not in item:
            raise InitConfigError(
                okey, "an override needs 'name' (the sub-module it applies to)",
                hint="e.g. override: {name: cls, type: Normal, std: 0.01}",
            )
        item = dict(item)
        if set(item) == {"name"}:
            item.update(type=parent_cls.type_name, **parent_args)
        elif "type" not in item:
            raise InitConfigError(
                okey, "an override with arguments needs its own 'type'",
                hint=f"add type: {parent_cls.type_name}",
            )
        if "layer" in item:
            raise InitConfigError(f"{okey}.layer", "an override selects by 'name' only")
        # Same priority as the parent and a later order, so the override wins over it.
        item.setdefault("priority", parent.priority)
        label = f"{parent.label}.override[{item['name']}]"
        out.extend(parse_rule(item, okey, label))
    return out


# ----------------------------------------------------------------------------- whole configs


def _to_plain(cfg: Any) -> Any:
    if isinstance(cfg, (DictConfig, ListConfig)):
        return OmegaConf.to_container(cfg, resolve=True, enum_to_str=False)
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        return OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)
    return cfg


def parse_config(cfg: Any, key: str = "init") -> ParsedConfig:
    """Normalize any accepted config form into a :class:`ParsedConfig`.

    >>> parsed = parse_config({"rules": {"fc": {"type": "Normal", "std": 0.02, "layer": "Linear"}}})
    >>> [(r.label, r.init.describe()) for r in parsed.rules]
    [('fc', 'Normal(mean=0.0, std=0.02)')]
    """
    if cfg is None:
        return ParsedConfig()
    if isinstance(cfg, Rule):
        cfg = [cfg]
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        cfg = OmegaConf.structured(cfg)  # InitConfig: knobs are checked like a DictConfig's
    # Knobs belong to the named-rules form only; an mmengine dict's `std` is its argument.
    raw = OmegaConf.to_container(cfg, resolve=False) if isinstance(cfg, DictConfig) else cfg
    if isinstance(raw, Mapping) and "type" not in raw:
        check_knobs(cfg, key)
    plain = _to_plain(cfg)
    if isinstance(plain, Mapping) and "type" not in plain:
        return _parse_named(plain, key)
    single = isinstance(plain, Mapping)
    if single:
        plain = [plain]
    if not isinstance(plain, (list, tuple)):
        raise InitConfigError(
            key, f"expected a dict, a list of dicts or Rules, got {type(cfg).__name__}",
            hint="write {'rules': {'name': {'type': ..., ...}}}",
        )
    rules: list[Rule] = []
    warnings: list[str] = []
    for i, item in enumerate(plain):
        if isinstance(item, Rule):
            rules.append(_given_rule(item, f"{key}[{i}]", item.label or f"{i}"))
        elif isinstance(item, Mapping):
            ikey = key if single else f"{key}[{i}]"
            parsed = parse_rule(item, ikey, str(item.get("type", i)) + f"[{i}]")
            rules.extend(_mmengine_scope(parsed, item, ikey, warnings))
        else:
            raise InitConfigError(f"{key}[{i}]", f"expected a dict or Rule, got {item!r}")
    return ParsedConfig(rules=_ordered(rules), warnings=warnings)


def _mmengine_scope(
    rules: list[Rule], raw: Mapping[str, Any], key: str, warnings: list[str]
) -> list[Rule]:
    """mmengine reads a dict without ``layer`` as selecting nothing but its overrides.

    ``dict(type='Constant', val=1, override=dict(name='reg'))`` initializes only
    ``reg``; with no override either, mmengine initializes nothing, which we keep
    but report as a warning.
    """
    if not rules or raw.get("layer") or raw.get("name") or isinstance(rules[0].init, Pretrained):
        return rules
    if len(rules) == 1:
        warnings.append(
            f"{key}: no 'layer' and no 'override', so (as in mmengine) it initializes nothing; "
            "add layer: [...] or override: {name: ...}"
        )
    return rules[1:]


def _parse_named(plain: Mapping[str, Any], key: str) -> ParsedConfig:
    for name in plain:
        if name not in _TOP_LEVEL:
            raise InitConfigError(
                f"{key}.{name}", f"unknown key {name!r}",
                valid=", ".join(_TOP_LEVEL), hint=did_you_mean(str(name), _TOP_LEVEL),
            )
    raw_rules = plain.get("rules") or {}
    if not isinstance(raw_rules, Mapping):
        raise InitConfigError(f"{key}.rules", "expected a mapping of rule name -> rule")
    rules: list[Rule] = []
    for label, raw in raw_rules.items():
        rkey = f"{key}.rules.{label}"
        if isinstance(raw, Rule):
            rules.append(_given_rule(raw, rkey, str(label)))
        elif isinstance(raw, Mapping):
            rules.extend(parse_rule(raw, rkey, str(label)))
        elif raw is not None:
            raise InitConfigError(rkey, f"expected a rule mapping, got {raw!r}")
    seed = _coerce(plain.get("seed"), int | None, f"{key}.seed")
    use_module_cfg = _coerce(plain.get("module_init_cfg", True), bool, f"{key}.module_init_cfg")
    if not _coerce(plain.get("enabled", True), bool, f"{key}.enabled"):  # the off switch: checked, not run
        return ParsedConfig(seed=seed, module_init_cfg=False)
    return ParsedConfig(rules=_ordered(rules), seed=seed, module_init_cfg=use_module_cfg)


def _given_rule(rule: Rule, key: str, label: str) -> Rule:
    """A :class:`Rule` built in Python, validated like a config mapping."""
    if not isinstance(rule.init, Initializer):
        raise InitConfigError(
            f"{key}.init", f"expected an initializer, got {rule.init!r}",
            valid=", ".join(REGISTRY), hint="e.g. Rule(Kaiming(mode='fan_in'), layer='Conv2d')",
        )
    rule.init.validate(key)
    return dataclasses.replace(rule, label=label, key=key)


def _ordered(rules: list[Rule]) -> list[Rule]:
    return [dataclasses.replace(rule, order=i) for i, rule in enumerate(rules)]
