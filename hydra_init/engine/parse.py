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
import math
import re
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from ..errors import InitConfigError, did_you_mean
from ..initializers import REGISTRY, Action, Pretrained
from ..sampling import Tiles
from .expressions import evaluate, names_in
from .knobs import FIXED_KEYS, check_knobs, knobs_used_by
from .rules import SELECTOR_FIELDS, Rule, as_tuple
from .select import check_glob
from .sizes import Recipe, parse_recipe

__all__ = ["ParsedConfig", "build_initializer", "parse_config", "parse_rule", "specialize"]


@dataclass(frozen=True)
class ParsedConfig:
    """An init config, normalized and validated once: every later stage takes it as it is.

    Attributes:
        rules: the rules in precedence order (``order`` set).
        seed: the seed of the draws (``None``: drawn from torch's global generator).
        tiles: how large tensors are cut into tiles (:class:`~hydra_init.sampling.Tiles`).
        module_init_cfg: whether modules' own ``init_cfg`` attributes take part.
        warnings: non-fatal findings of parsing (an mmengine dict that selects nothing).
        key: the config path used in error messages (``init``, ``model.init``).
        knobs: the preset knobs that were set (already resolved into the rules).
    """

    rules: tuple[Rule, ...] = ()
    seed: int | None = None
    tiles: Tiles = Tiles.flat
    module_init_cfg: bool = True
    warnings: tuple[str, ...] = ()
    key: str = "init"
    knobs: Mapping[str, Any] = field(default_factory=dict)
    recipe: Recipe | None = None
    """Sizes read from the model and model families (:mod:`hydra_init.engine.sizes`)."""

    def to_dict(self) -> dict[str, Any]:
        """The resolved config as plain data: seed, options, and each rule's type, arguments and selectors.

        >>> parse_config({"rules": {"fc": {"type": "Zeros", "layer": "Linear"}}}).to_dict()["rules"]
        {'fc': {'type': 'Zeros', 'bias': 0.0, 'bias_prob': None, 'layer': ['Linear']}}
        """
        return {
            "seed": self.seed,
            "tiles": self.tiles.value,
            "module_init_cfg": self.module_init_cfg,
            **dict(self.knobs),
            "rules": {rule.label: rule.to_dict() for rule in self.rules},
        }


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
            try:
                number = float(value)
            except OverflowError:
                number = math.inf
            if math.isfinite(number):
                return number
            raise InitConfigError(key, f"{value!r} is not a finite number", valid="a finite float",
                                  hint="write the number itself (1e-3, 0.02); nan and inf are never an init")
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


def _names(value: Any, key: str, *, globs: bool = False) -> tuple[str, ...]:
    """A selector's names: ``None`` (not set), a string, or a non-empty list of strings.

    An empty list is refused: it would read as "no restriction" and widen the rule.
    With ``globs``, each name must be a valid glob.
    """
    items = as_tuple(value) if value is None or isinstance(value, str) else value
    if not isinstance(items, (list, tuple)):
        raise InitConfigError(key, f"expected a name or a list of names, got {value!r}")
    if value is not None and not items:
        raise InitConfigError(
            key, "an empty list selects nothing, and would otherwise be read as 'everything'",
            valid="a name or a non-empty list of names",
            hint=f"remove {key.rpartition('.')[2]} to select without it, "
            "or set enabled: false to drop the rule",
        )
    for i, item in enumerate(items):
        if not isinstance(item, str) or not item:
            raise InitConfigError(f"{key}[{i}]", f"expected a non-empty string, got {item!r}")
        if globs:
            try:
                check_glob(item)
            except ValueError as exc:
                raise InitConfigError(
                    f"{key}[{i}]", f"{item!r} is not a valid glob: {exc}",
                    valid="* (any characters), ? (one), [abc] / [a-z] / [!a-z] (one of), "
                    "{name} (a captured segment)",
                ) from None
    return tuple(items)


def _initializer_class(type_name: Any, key: str) -> type[Action]:
    if isinstance(type_name, type):  # a class object as `type` (mmengine allows it)
        return _class_object(type_name, key)
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


def _class_object(tp: type, key: str) -> type[Action]:
    """An Initializer class, or a class naming its own (``vars(tp)['hydra_init_type']``)."""
    native = tp if issubclass(tp, Action) else vars(tp).get("hydra_init_type")
    if isinstance(native, type) and issubclass(native, Action):
        return native
    raise InitConfigError(
        key, f"class {tp.__qualname__} is not an initializer", valid=", ".join(REGISTRY),
        hint="subclass hydra_init.compat.BaseInit, or register a hydra_init.Initializer",
    )


def build_initializer(cls: type[Action], args: Mapping[str, Any], key: str) -> Action:
    """Instantiate and validate an initializer from a mapping of its arguments."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for arg, value in args.items():
        if arg in cls.refused_args:
            raise InitConfigError(f"{key}.{arg}", cls.refused_args[arg], valid=", ".join(names),
                                  hint=f"remove {arg} from this {cls.type_name} rule")
        if arg not in hints or arg not in names:
            raise InitConfigError(
                f"{key}.{arg}", f"{cls.type_name} has no argument {arg!r}",
                valid=", ".join(names), hint=did_you_mean(arg, names),
            )
        kwargs[arg] = _coerce(value, hints[arg], f"{key}.{arg}")
    missing = sorted(_required(cls) - set(kwargs))
    if missing:
        raise InitConfigError(
            f"{key}.{missing[0]}", f"{cls.type_name} needs {missing[0]!r}", valid=", ".join(names),
            hint=f"e.g. {missing[0]}: 1.0" if cls.type_name == "Constant" else None,
        )
    init = cls(**kwargs)
    init.validate(key)
    return init


# ----------------------------------------------------------------------------- rules
MAX_OVERRIDE_DEPTH = 8
"""How deeply mmengine ``override`` dicts may nest."""


def parse_rule(
    raw: Mapping[str, Any], key: str, label: str, depth: int = 0, sizes: frozenset[str] = frozenset()
) -> list[Rule]:
    """One config mapping -> its rule, followed by the rules of its mmengine ``override``."""
    raw = {k: v for k, v in raw.items() if v is not None}
    if not _coerce(raw.get("enabled", True), bool, f"{key}.enabled"):
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
    names = _names(raw.get("name"), f"{key}.name", globs=True)
    expr = _expressions(raw.get("expr"), cls, names, f"{key}.expr", sizes)
    constant = {arg: _constant(text, f"{key}.expr.{arg}") for arg, text in expr if not names_in(text)}
    per_module = tuple((arg, text) for arg, text in expr if arg not in constant)
    # a required argument computed per module gets a stand-in here; specialize() computes it
    stand_ins = {arg: 0.0 for arg, _ in per_module if arg not in init_args and arg in _required(cls)}
    init = build_initializer(cls, {**init_args, **constant, **stand_ins}, key)
    rule = Rule(
        init=init,
        expr=per_module,
        layer=_names(raw.get("layer"), f"{key}.layer"),
        name=names,
        params=_names(raw.get("params"), f"{key}.params", globs=True),
        exclude=_names(raw.get("exclude"), f"{key}.exclude", globs=True),
        priority=_coerce(raw.get("priority", 0), int, f"{key}.priority"),
        optional=_coerce(raw.get("optional", False), bool, f"{key}.optional"),
        label=label,
        key=key,
    )
    return [rule, *_override_rules(raw.get("override"), rule, init_args, cls, key, depth, sizes)]


_CAPTURE = re.compile(r"\{(\w+)\}")


def _expressions(
    raw: Any, cls: type[Action], names: tuple[str, ...], key: str, sizes: frozenset[str] = frozenset()
) -> tuple[tuple[str, str], ...]:
    """Validate ``expr``: known arguments, parseable text, names captured by ``name``."""
    if raw is None:
        return ()
    if not isinstance(raw, Mapping):
        raise InitConfigError(key, f"expected a mapping argument -> expression, got {raw!r}")
    captured = {c for pattern in names for c in _CAPTURE.findall(pattern)} | sizes
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
                f"{key}.{arg}", f"{name!r} is not captured by any name glob of this rule"
                + (" nor a size (sizes)" if sizes else ""),
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
    init: Action, expr: tuple[tuple[str, str], ...], captures: Mapping[str, Any], key: str
) -> Action:
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


def _required(cls: type[Action]) -> set[str]:
    """Arguments without a default (``Constant.val``)."""
    return {
        f.name for f in dataclasses.fields(cls)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    }


def _all_init_args() -> set[str]:
    return {f.name for c in REGISTRY.values() for f in dataclasses.fields(c)}


def _override_rules(
    override: Any, parent: Rule, parent_args: Mapping[str, Any], parent_cls: type, key: str, depth: int,
    sizes: frozenset[str] = frozenset(),
) -> list[Rule]:
    """mmengine ``override``: nested rules for named sub-modules of the owner.

    An override with only ``name`` reuses the parent's initializer; otherwise it
    needs its own ``type``. Overrides reach the whole named subtree, at any depth
    (``name`` is a module-path glob), and win over their parent rule.
    """
    if override is None:
        return []
    if depth >= MAX_OVERRIDE_DEPTH:
        raise InitConfigError(f"{key}.override",
                              f"overrides nest more than {MAX_OVERRIDE_DEPTH} levels deep",
                              hint="flatten them: each override can name any sub-module path (a.b.c)")
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
            item.update(type=parent_cls, **parent_args)  # the class: it may be unregistered
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
        out.extend(parse_rule(item, okey, label, depth + 1, sizes))
    return out


# ----------------------------------------------------------------------------- whole configs
def parse_config(cfg: Any, key: str = "init") -> ParsedConfig:
    """Normalize and validate any accepted config form, once, into a :class:`ParsedConfig`.

    Accepted: a :class:`ParsedConfig` or :class:`~hydra_init.Init` (returned as
    parsed), ``None``, the named-rules form (dict, ``DictConfig``,
    :class:`~hydra_init.InitConfig`), mmengine's dict or list of dicts, and
    :class:`Rule` objects. Knobs are checked on the unresolved config (see
    :mod:`hydra_init.engine.knobs`).

    >>> parsed = parse_config({"rules": {"fc": {"type": "Normal", "std": 0.02, "layer": "Linear"}}})
    >>> [(r.label, r.init.describe()) for r in parsed.rules]
    [('fc', 'Normal(mean=0.0, std=0.02)')]
    """
    if isinstance(cfg, ParsedConfig):
        return cfg
    already = getattr(cfg, "parsed", None)  # hydra_init.Init, without importing the Hydra glue
    if isinstance(already, ParsedConfig):
        return already
    if cfg is None:
        return ParsedConfig(key=key)
    if isinstance(cfg, Rule):
        cfg = [cfg]
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        cfg = OmegaConf.structured(cfg)
    if isinstance(cfg, Mapping) and "type" not in cfg:
        return _parse_named_node(_as_node(cfg), key)
    if isinstance(cfg, ListConfig):
        cfg = OmegaConf.to_container(cfg, resolve=True, enum_to_str=False)
    return _parse_list(cfg, key)


def _as_node(cfg: Mapping[str, Any]) -> Mapping[str, Any]:
    """A ``DictConfig`` of a plain named-rules dict (so ``${...}`` resolves); the dict if it holds objects."""
    if isinstance(cfg, DictConfig):
        return cfg
    try:
        return OmegaConf.create(dict(cfg))
    except (ValueError, RecursionError, OmegaConfBaseException):  # Rule objects; too deep: parse refuses
        return cfg


def _parse_named_node(node: Mapping[str, Any], key: str) -> ParsedConfig:
    """The named-rules form: knobs checked (unresolved), then resolved and parsed."""
    knobs = check_knobs(node, key, knobs_used_by(node))
    if isinstance(node, DictConfig):
        plain = OmegaConf.to_container(node, resolve=True, enum_to_str=False)
    else:
        plain = {k: OmegaConf.to_container(v, resolve=True, enum_to_str=False) if OmegaConf.is_config(v)
                 else v for k, v in node.items()}
    sized = set(plain.get("sizes") or ())  # a size's knob is read by the sizes stage, not the rules
    options = {k: plain[k] for k in (*FIXED_KEYS, *sorted(sized)) if k in plain}
    try:
        parsed = _parse_named(options, key)
    except InitConfigError as err:
        raise _blame_knob(err, options, knobs, key) from None
    return dataclasses.replace(parsed, knobs=knobs)


def _blame_knob(err: InitConfigError, config: Mapping[str, Any], knobs: Mapping[str, Any],
                key: str) -> InitConfigError:
    """Name the knob when a rule's bad value came from it (``init.std=-1`` -> ``rules.x.std``)."""
    prefix = f"{key}.rules."
    if not err.key.startswith(prefix):
        return err
    rule, _, name = err.key[len(prefix):].rpartition(".")
    found = (config.get("rules") or {}).get(rule) if rule else None
    value = found.get(name) if isinstance(found, Mapping) else None
    if name not in knobs or value is None or value != knobs[name]:
        return err
    return InitConfigError(
        err.key, f"{err.problem} (the value of the knob {key}.{name})", valid=err.valid, hint=err.hint
    )


def _parse_list(cfg: Any, key: str) -> ParsedConfig:
    """mmengine's forms (one dict with ``type``, or a list of dicts) and lists of :class:`Rule`."""
    single = isinstance(cfg, Mapping)
    items = [cfg] if single else cfg
    if not isinstance(items, (list, tuple)):
        raise InitConfigError(
            key, f"expected a dict, a list of dicts or Rules, got {type(cfg).__name__}",
            hint="write {'rules': {'name': {'type': ..., ...}}}",
        )
    rules: list[Rule] = []
    warnings: list[str] = []
    for i, item in enumerate(items):
        if OmegaConf.is_config(item):
            item = OmegaConf.to_container(item, resolve=True, enum_to_str=False)
        if isinstance(item, Rule):
            rules.append(_given_rule(item, f"{key}[{i}]", item.label or f"{i}"))
        elif isinstance(item, Mapping):
            ikey = key if single else f"{key}[{i}]"
            kind = item.get("type", i)
            parsed = parse_rule(item, ikey, str(getattr(kind, "__name__", kind)) + f"[{i}]")
            rules.extend(_mmengine_scope(parsed, item, ikey, warnings))
        else:
            raise InitConfigError(f"{key}[{i}]", f"expected a dict or Rule, got {item!r}")
    return ParsedConfig(rules=_ordered(rules), warnings=tuple(warnings), key=key)


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
    recipe = parse_recipe(plain, key)
    sizes = recipe.names if recipe is not None else frozenset()
    raw_rules = plain.get("rules") or {}
    if not isinstance(raw_rules, Mapping):
        raise InitConfigError(f"{key}.rules", "expected a mapping of rule name -> rule")
    rules: list[Rule] = []
    for label, raw in raw_rules.items():
        rkey = f"{key}.rules.{label}"
        if isinstance(raw, Rule):
            rules.append(_given_rule(raw, rkey, str(label)))
        elif isinstance(raw, Mapping):
            rules.extend(parse_rule(raw, rkey, str(label), sizes=sizes))
        elif raw is not None:
            raise InitConfigError(rkey, f"expected a rule mapping, got {raw!r}")
    seed = _coerce(plain.get("seed"), int | None, f"{key}.seed")
    tiles = _coerce(plain.get("tiles", Tiles.flat), Tiles, f"{key}.tiles")
    use_module_cfg = _coerce(plain.get("module_init_cfg", True), bool, f"{key}.module_init_cfg")
    if not _coerce(plain.get("enabled", True), bool, f"{key}.enabled"):  # the off switch: checked, not run
        return ParsedConfig(seed=seed, tiles=tiles, module_init_cfg=False, key=key)
    return ParsedConfig(rules=_ordered(rules), seed=seed, tiles=tiles, module_init_cfg=use_module_cfg,
                        key=key, recipe=recipe)


def _given_rule(rule: Rule, key: str, label: str) -> Rule:
    """A :class:`Rule` built in Python, validated like a config mapping."""
    if not isinstance(rule.init, Action):
        raise InitConfigError(
            f"{key}.init", f"expected an initializer, got {rule.init!r}",
            valid=", ".join(REGISTRY), hint="e.g. Rule(Kaiming(mode='fan_in'), layer='Conv2d')",
        )
    rule.init.validate(key)
    return dataclasses.replace(rule, label=label, key=key)


def _ordered(rules: list[Rule]) -> tuple[Rule, ...]:
    return tuple(dataclasses.replace(rule, order=i) for i, rule in enumerate(rules))
