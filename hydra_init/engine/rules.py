"""A rule: which parameters an initializer writes.

>>> from hydra_init import Rule, Kaiming
>>> Rule(Kaiming(mode="fan_in"), layer="Conv2d").layer
('Conv2d',)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..initializers import Action

__all__ = ["SELECTOR_FIELDS", "Rule", "as_tuple"]

SELECTOR_FIELDS: dict[str, str] = {
    "type": "initializer name (Kaiming, Normal, ...)",
    "layer": "class names matched over the module's whole MRO",
    "name": "module-path globs (the module and its subtree)",
    "params": "parameter-name globs; default: weight (drawn) and bias (constant)",
    "exclude": "module-path globs left out",
    "priority": "higher wins over lower; ties go to the later rule",
    "enabled": "false turns the rule off",
    "optional": "true makes 'matched nothing' a warning instead of an error",
    "override": "mmengine-style nested rules by sub-module name",
    "expr": "initializer arguments computed from {name} captures, e.g. {std: '0.02 / sqrt(n)'}",
}
"""Rule keys that select what a rule touches (not initializer arguments)."""


def as_tuple(value: str | Sequence[str] | None) -> tuple[str, ...]:
    """``None -> ()``, ``"a" -> ("a",)``, ``["a", "b"] -> ("a", "b")``."""
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(value)


@dataclass(frozen=True)
class Rule:
    """An initializer plus the selectors that say what it touches.

    Args:
        init: the initializer config (``Kaiming(...)``, ``Normal(std=0.02)`` ...).
        layer: class names, matched against every class in a module's MRO, by
            simple name (``Conv2d``, ``_BatchNorm``) or qualified name
            (``torch.nn.Conv2d``). Empty: any class.
        name: module-path globs (``backbone.layer*.conv1``, ``*.attn.proj``); a
            matching module brings its whole subtree. Empty: the whole model.
        params: parameter globs. Empty (default): ``weight`` gets the initializer
            and ``bias`` gets the constant ``init.bias``. Given: every matching
            parameter gets the initializer. A glob with a dot matches the full
            parameter path (``blocks.*.attn.qkv.weight``).
        exclude: module-path globs whose subtrees are left out.
        priority: a higher priority wins; equal priorities go to the later rule.
        optional: when true, matching nothing is a report warning, not an error.
        expr: ``(argument, expression)`` pairs computed per module from the
            ``{name}`` captures of the ``name`` globs, e.g.
            ``(("std", "0.02 / sqrt(2 * (layer_id + 1))"),)``.
        label: the rule's name in reports and errors (set from the config key).

    A parameter that several rules match is written once, by the winner.
    """

    init: Action
    layer: tuple[str, ...] = ()
    name: tuple[str, ...] = ()
    params: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    priority: int = 0
    optional: bool = False
    expr: tuple[tuple[str, str], ...] = ()
    label: str = ""
    # Filled in by the engine:
    key: str = field(default="", compare=False)
    scope: str = ""
    depth: int = 0
    order: int = 0

    def __post_init__(self) -> None:
        for attr in ("layer", "name", "params", "exclude"):
            object.__setattr__(self, attr, as_tuple(getattr(self, attr)))
        if isinstance(self.expr, dict):
            object.__setattr__(self, "expr", tuple(self.expr.items()))

    def to_dict(self) -> dict[str, Any]:
        """The rule as config data: ``type``, the initializer's arguments, the selectors that are set."""
        out: dict[str, Any] = {"type": self.init.type_name, **self.init.args()}
        for name in ("layer", "name", "params", "exclude"):
            if getattr(self, name):
                out[name] = list(getattr(self, name))
        if self.priority:
            out["priority"] = self.priority
        if self.optional:
            out["optional"] = True
        if self.expr:
            out["expr"] = dict(self.expr)
        return out

    def rank(self) -> tuple[int, int, int]:
        """Precedence: priority, then nesting depth of the owning module, then order.

        ``depth`` is 0 for the config given to :func:`hydra_init.apply` and grows
        with the depth of a module whose own ``init_cfg`` holds the rule, so an
        inner ``init_cfg`` wins over outer rules for its subtree.
        """
        return (self.priority, self.depth, self.order)
