"""Sizes read from the model, and the model families a preset recognizes.

A recipe's numbers often depend on the model: GPT-2 scales ``c_proj`` by its
depth, torchtitan's Llama scales ``output`` by its width, Hugging Face models
read ``initializer_range`` from their config. A preset declares each such
value once, under ``sizes``, with where to read it from; its rules use the
name in ``expr``::

    n_layer: null            # the knob: null = read it from the model
    sizes:
      n_layer:
        - config: n_layer    # model.config.n_layer (Hugging Face, nanoGPT)
        - count: "*h.{i}"    # else: how many modules match this glob
    rules:
      residual:
        name: ["*.c_proj"]
        expr: {std: "0.02 / sqrt(2 * n_layer)"}

Sources, tried in order (the first that answers wins):

* ``config: attr`` -- ``model.config.attr`` (dots for nested attributes), on
  the model or the first sub-module that has a ``config``;
* ``attr: path`` -- an attribute of the model (``model_args.dim``);
* ``count: glob`` -- how many modules match the module-path glob (a
  ``{name}`` capture matches one path segment), optionally with ``layer``
  (class names) to count only modules of those classes;
* ``shape: param`` with ``dim: i`` -- a size of a parameter's shape;
* ``value: number`` -- a fixed fallback.

An explicit knob of the same name (``init.n_layer=4``) wins over every source.
The report records each value and where it came from (``report.sizes``).

``families`` names model families by their classes; the rules it lists take
part only when the model has a module of one of those classes, so one preset
can serve several families and say which it recognized (a name starting with
``_`` gates rules the same way but is not reported as a family)::

    families:
      gpt2: {classes: [GPT2PreTrainedModel], rules: [gpt2_residual]}

>>> import torch.nn as nn
>>> spec = parse_recipe({"n_layer": None, "sizes": {"n_layer": [{"count": "{i}"}]}}, "init")
>>> found = read_sizes(spec, nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2)))
>>> found["n_layer"]
Size(value=2, source="count of modules matching '{i}'")
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from ..errors import InitConfigError, did_you_mean
from .expressions import names_in
from .rules import Rule
from .select import class_matches, glob_captures

__all__ = [
    "Recipe", "Size", "bind_sizes", "needed_sizes", "parse_recipe", "read_sizes", "recognized_families",
]

SOURCES = ("config", "attr", "count", "shape", "value")
_EXTRA = {"count": ("layer",), "shape": ("dim",)}


@dataclass(frozen=True)
class Size:
    """One size used by a recipe: its value and where it came from."""

    value: float | int
    source: str

    def __repr__(self) -> str:
        return f"Size(value={self.value!r}, source=\"{self.source}\")"


@dataclass(frozen=True)
class Family:
    """A model family: the classes that identify it and the rules that serve only it."""

    name: str
    classes: tuple[str, ...]
    rules: tuple[str, ...]
    refuse: str | None = None  # a model of this family is an error, with this message


@dataclass(frozen=True)
class Recipe:
    """The model-dependent part of an init config: sizes to read and families to recognize."""

    sizes: dict[str, tuple[Any, tuple[Mapping[str, Any], ...]]] = field(default_factory=dict)
    """name -> (explicit knob value or None, sources in order)."""
    families: tuple[Family, ...] = ()
    key: str = "init"

    @property
    def names(self) -> frozenset[str]:
        return frozenset(self.sizes)


# ----------------------------------------------------------------------------- parsing
def _sources(raw: Any, key: str) -> tuple[Mapping[str, Any], ...]:
    items = [raw] if isinstance(raw, Mapping) else raw
    if not isinstance(items, Sequence) or isinstance(items, str) or not items:
        raise InitConfigError(
            key, f"expected a source or a list of sources, got {raw!r}",
            valid=", ".join(SOURCES), hint="e.g. [{config: n_layer}, {count: 'layers.{i}'}]",
        )
    out = []
    for i, item in enumerate(items):
        ikey = f"{key}[{i}]"
        kinds = [k for k in SOURCES if isinstance(item, Mapping) and k in item]
        if len(kinds) != 1:
            raise InitConfigError(
                ikey, f"a source needs exactly one of {', '.join(SOURCES)}, got {item!r}",
                hint="e.g. {config: initializer_range}",
            )
        allowed = {kinds[0], *_EXTRA.get(kinds[0], ())}
        for k in item:
            if k not in allowed:
                raise InitConfigError(
                    f"{ikey}.{k}", f"unknown key {k!r} for a {kinds[0]!r} source",
                    valid=", ".join(sorted(allowed)), hint=did_you_mean(str(k), allowed),
                )
        out.append(dict(item))
    return tuple(out)


def _families(raw: Any, key: str) -> tuple[Family, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, Mapping):
        raise InitConfigError(key, "expected a mapping family -> {classes: [...], rules: [...]}")
    out = []
    for name, body in raw.items():
        fkey = f"{key}.{name}"
        if not isinstance(body, Mapping) or not body.get("classes"):
            raise InitConfigError(fkey, "a family needs 'classes' (the classes that identify it)",
                                  hint="e.g. {classes: [LlamaPreTrainedModel], rules: [llama_norm]}")
        extra = set(body) - {"classes", "rules", "refuse"}
        if extra:
            raise InitConfigError(f"{fkey}.{sorted(extra)[0]}", "unknown key", valid="classes, rules, refuse")
        as_names = lambda v: (v,) if isinstance(v, str) else tuple(v or ())  # noqa: E731
        refuse = body.get("refuse")
        out.append(Family(str(name), as_names(body["classes"]), as_names(body.get("rules")),
                          None if refuse is None else str(refuse)))
    return tuple(out)


def parse_recipe(plain: Mapping[str, Any], key: str) -> Recipe | None:
    """The ``sizes`` and ``families`` of a named-rules config (``None`` when it has neither).

    A size's explicit value is the top-level knob of the same name, when set.
    """
    raw_sizes, raw_families = plain.get("sizes"), plain.get("families")
    if raw_sizes is None and raw_families is None:
        return None
    if raw_sizes is not None and not isinstance(raw_sizes, Mapping):
        raise InitConfigError(f"{key}.sizes", "expected a mapping size name -> sources")
    sizes = {}
    for name, raw in (raw_sizes or {}).items():
        if not str(name).isidentifier():
            raise InitConfigError(f"{key}.sizes.{name}", "a size name must be an identifier")
        explicit = plain.get(name)
        if explicit is not None and (isinstance(explicit, bool) or not isinstance(explicit, (int, float))):
            raise InitConfigError(f"{key}.{name}", f"expected a number, got {explicit!r}")
        sizes[str(name)] = (explicit, _sources(raw, f"{key}.sizes.{name}"))
    families = _families(raw_families, f"{key}.families")
    known = {label for label in plain.get("rules") or {}}
    for fam in families:
        for label in fam.rules:
            if label not in known:
                raise InitConfigError(
                    f"{key}.families.{fam.name}.rules", f"no rule named {label!r}",
                    valid=", ".join(sorted(known)), hint=did_you_mean(label, known),
                )
    return Recipe(sizes=sizes, families=families, key=key)


# ----------------------------------------------------------------------------- reading
def _model_config(model: nn.Module) -> Any:
    for _, module in model.named_modules():
        cfg = getattr(module, "config", None)
        if cfg is not None and not isinstance(cfg, (Mapping, str, int, float)):
            return cfg
    return None


def _attribute(obj: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if obj is None:
            return None
        obj = obj.get(part) if isinstance(obj, Mapping) else getattr(obj, part, None)
    return obj


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _read(source: Mapping[str, Any], model: nn.Module) -> tuple[Any, str]:
    """One source's value (``None`` when it does not answer) and its description."""
    if "config" in source:
        return _attribute(_model_config(model), source["config"]), f"model.config.{source['config']}"
    if "attr" in source:
        return _attribute(model, source["attr"]), f"model.{source['attr']}"
    if "value" in source:
        return source["value"], "the preset's fixed value"
    if "count" in source:
        pattern, classes = source["count"], source.get("layer") or ()
        classes = (classes,) if isinstance(classes, str) else tuple(classes)
        seen = {
            id(m) for p, m in model.named_modules()
            if glob_captures(p, pattern) is not None
            and (not classes or any(class_matches(type(m), c) for c in classes))
        }
        where = f" of class {', '.join(classes)}" if classes else ""
        return (len(seen) or None), f"count of modules matching {pattern!r}{where}"
    param = dict(model.named_parameters()).get(source["shape"])
    dim = int(source.get("dim", 0))
    value = param.shape[dim] if param is not None and -param.dim() <= dim < param.dim() else None
    return value, f"{source['shape']}.shape[{dim}]"


def needed_sizes(rules: Iterable[Rule]) -> set[str]:
    """The names the rules' ``expr`` use (sizes among them): only those are read from the model."""
    return {name for rule in rules for _, text in rule.expr for name in names_in(text)}


def read_sizes(recipe: Recipe | None, model: nn.Module, needed: set[str] | None = None) -> dict[str, Size]:
    """The declared sizes (those in ``needed``), read from ``model``; an explicit knob wins.

    Raises :class:`~hydra_init.InitConfigError` when no source of a needed size answers.
    """
    if recipe is None:
        return {}
    out = {}
    for name, (explicit, sources) in recipe.sizes.items():
        if needed is not None and name not in needed and explicit is None:
            continue  # a size of a family this model is not (GPT-2's n_layer on a Llama)
        if explicit is not None:
            out[name] = Size(explicit, f"{recipe.key}.{name}")
            continue
        tried = []
        for source in sources:
            value, where = _read(source, model)
            if _number(value):
                out[name] = Size(value, where)
                break
            tried.append(where)
        else:
            raise InitConfigError(
                f"{recipe.key}.{name}", f"could not read {name!r} from this "
                f"{type(model).__name__}: tried " + "; ".join(tried),
                hint=f"set it: {recipe.key}.{name}=<value>",
            )
    return out


def bind_sizes(rules: Iterable[Rule], sizes: Mapping[str, Size]) -> list[Rule]:
    """Rules whose ``expr`` use sizes only, computed once (errors name the ``expr`` key, before matching).

    ``init.n_layer=0`` on ``gpt2`` fails here at ``init.rules.residual.expr.std``,
    whatever the model holds.
    """
    from .parse import specialize  # parse imports this module

    values = {name: size.value for name, size in sizes.items()}
    out = []
    for rule in rules:
        used = {name for _, text in rule.expr for name in names_in(text)}
        if rule.expr and used <= set(values):
            init = specialize(rule.init, rule.expr, {k: values[k] for k in sorted(used)}, rule.key)
            rule = dataclasses.replace(rule, init=init, expr=())
        out.append(rule)
    return out


def recognized_families(
    recipe: Recipe | None, class_names: frozenset[str]
) -> tuple[list[str], set[str], list[str]]:
    """The families whose classes the model has, the labels of the rules to drop (other
    families'), and a warning when the preset serves families but recognized none.

    A recognized family with ``refuse`` raises: the preset does not serve it and says what does.
    """
    if recipe is None or not recipe.families:
        return [], set(), []
    found = [f.name for f in recipe.families if any(c in class_names for c in f.classes)]
    for fam in recipe.families:
        if fam.name in found and fam.refuse:
            cls = next(c for c in fam.classes if c in class_names)
            raise InitConfigError(
                recipe.key, f"this model is a {cls} ({fam.name}): {fam.refuse}",
                valid="the layouts this preset serves: see docs/recipes.md",
            )
    keep = {label for f in recipe.families if f.name in found for label in f.rules}
    drop = {label for f in recipe.families if f.name not in found for label in f.rules} - keep
    served = [f.name for f in recipe.families if not f.refuse and not f.name.startswith("_")]
    found = [f for f in found if f in served]  # "_name": gates rules by class, not a family to report
    notes = [] if not served or found else [
        "no model family recognized (known: " + ", ".join(served) + "): only the generic rules apply"
    ]
    return found, drop, notes
