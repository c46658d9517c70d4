"""Preset knobs: which top-level values an init node's rules use, checked on the unresolved config.

A preset's rules interpolate its knobs (``std: ${...std}``), so ``init.std=0.02``
reaches every rule that uses ``std``. A knob that no rule uses would do nothing, so
setting it is refused. Which knobs the rules use is read from the interpolations
themselves, never from values, so the answer is the same whatever the entry point:

* an unresolved node (``cfg.init`` as composed, a dict with ``${...}``): the
  interpolations are there to read;
* ``hydra.utils.instantiate(cfg.init)``: Hydra resolves the node before calling
  :class:`~hydra_init.Init`, so the schema carries the answer through: its field
  ``_knobs_used_`` is ``${hydra_init.knobs_used:}``, which resolves (before the rules,
  being listed first) to the knob names the rules' interpolations name (``"bias,std"``).

A knob can also become unused because the user replaced the interpolation with a
value on one rule (``init.rules.conv.mode=fan_in``). When the command-line overrides
are known (inside a Hydra job, or a config composed with its ``hydra`` node) only the
knobs the overrides set must be used; otherwise every set knob must be.

>>> from omegaconf import OmegaConf
>>> node = OmegaConf.create({"std": 0.02, "bias": 0.1, "rules": {"fc": {"std": "${...std}"}}})
>>> sorted(referenced_knobs(node["rules"]))
['std']
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ..errors import InitConfigError, did_you_mean

__all__ = [
    "COMMON_KNOBS",
    "FIXED_KEYS",
    "KNOBS_USED_FIELD",
    "RESERVED_KEYS",
    "carried_knobs",
    "check_knobs",
    "declared_knobs",
    "knobs_used_by",
    "overridden_knobs",
    "referenced_knobs",
]

FIXED_KEYS = ("seed", "tiles", "enabled", "rules", "module_init_cfg", "sizes", "families")
"""Top-level keys of an init node that are options, not knobs."""

KNOBS_USED_FIELD = "_knobs_used_"
"""The schema field that carries the knob names the rules use through Hydra's resolution."""

RESERVED_KEYS = ("_target_", "_recursive_", "_convert_", "_partial_", "_args_", KNOBS_USED_FIELD)
"""Keys Hydra (or the knob check) owns; the engine ignores them."""

COMMON_KNOBS = frozenset({
    "val", "mean", "std", "a", "b", "bound_unit", "gain", "scale", "mode", "nonlinearity",
    "distribution", "bias", "bias_prob", "checkpoint", "prefix",
})
"""Knob names every init node may set (initializer arguments shared by the presets)."""

_INTERPOLATION = re.compile(r"\$\{([^${}]*)\}")


def _leaves(node: Any) -> Iterable[Any]:
    if isinstance(node, Mapping):
        for value in node.values():
            yield from _leaves(value)
    elif isinstance(node, (list, tuple)):
        for value in node:
            yield from _leaves(value)
    else:
        yield node


def referenced_knobs(rules: Any) -> set[str]:
    """Names that the interpolations under ``rules`` end in (``${...std}`` -> ``std``).

    ``rules`` may be an unresolved ``DictConfig`` or a plain container.
    """
    raw = OmegaConf.to_container(rules, resolve=False) if OmegaConf.is_config(rules) else rules
    names = set()
    for leaf in _leaves(raw or {}):
        for inner in _INTERPOLATION.findall(leaf) if isinstance(leaf, str) else ():
            for arg in inner.split(":", 1)[-1].split(","):  # ${oc.select:...std,0} -> its arguments
                names.add(arg.strip().rsplit(".", 1)[-1])
    return names


def _knobs_used_resolver(*, _parent_: Any) -> str:
    # A string, not a list: OmegaConf.resolve (as Hydra's instantiate runs it) writes the
    # result back into the field's scalar node.
    return ",".join(sorted(referenced_knobs(_parent_.get("rules"))))


def carried_knobs(value: Any) -> set[str] | None:
    """The knob names a ``_knobs_used_`` value carries (``"bias,std"`` or a list); ``None`` if absent."""
    if isinstance(value, str) and "${" not in value:
        return {name for name in value.split(",") if name}
    if isinstance(value, (list, tuple)):
        return set(value)
    return None


if not OmegaConf.has_resolver("hydra_init.knobs_used"):
    OmegaConf.register_new_resolver("hydra_init.knobs_used", _knobs_used_resolver, use_cache=False)


def declared_knobs(node: Any) -> frozenset[str]:
    """Knob names the node's schema declares: its structured type's fields, else :data:`COMMON_KNOBS`."""
    if isinstance(node, DictConfig):
        schema = OmegaConf.get_type(node)
        fields = getattr(schema, "__dataclass_fields__", None)
        if fields:
            return frozenset(fields) - set(FIXED_KEYS) - set(RESERVED_KEYS)
    return COMMON_KNOBS


def _task_overrides(cfg: Any) -> list[str] | None:
    """The command-line overrides behind ``cfg``: its root's ``hydra.overrides.task``
    (the compose API with ``return_hydra_config=True``) or the running job's."""
    from hydra.core.hydra_config import HydraConfig

    if isinstance(cfg, DictConfig):
        task = OmegaConf.select(cfg._get_root(), "hydra.overrides.task", default=None)
        if task is not None:
            return list(task)
    if HydraConfig.initialized():
        return list(HydraConfig.get().overrides.task)
    return None


def overridden_knobs(key: str, cfg: Any = None) -> set[str] | None:
    """Top-level keys of the node at ``key`` that the command-line overrides set; ``None`` when unknown.

    Unknown means neither inside a Hydra job nor composed with its ``hydra`` node.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser

    overrides = _task_overrides(cfg)
    if overrides is None:
        return None
    prefix = key + "."
    out = set()
    for override in OverridesParser.create().parse_overrides(overrides):
        name = override.key_or_group
        if name.startswith(prefix) and "." not in name[len(prefix):]:
            out.add(name[len(prefix):])
    return out


def knobs_used_by(node: Any) -> set[str] | None:
    """The knob names an init node's rules use; ``None`` when that cannot be known.

    Read from the ``_knobs_used_`` field where Hydra resolved it, else from the rules'
    interpolations. A Hydra instantiation node (``_target_``) not bound to the schema
    whose rules hold no interpolation was resolved by ``hydra.utils.instantiate``
    without the field: unknown.
    """
    sized = set(node.get("sizes") or ())  # read by the sizes stage (engine/sizes.py) when set
    carried = carried_knobs(node.get(KNOBS_USED_FIELD))
    if carried is not None:
        return carried | sized
    found = referenced_knobs(node.get("rules"))
    if not found and "_target_" in node:
        return None
    return found | sized


def check_knobs(node: Any, key: str, used: set[str] | None) -> dict[str, Any]:
    """Check the top-level knobs of an init node; return the set ones (name -> resolved value).

    ``node`` is the init node (a ``DictConfig``, unresolved where possible, or a
    mapping); ``used`` is :func:`knobs_used_by` of it (``None``: unknown, nothing refused).

    Raises:
        InitConfigError: a key that is neither an option nor a knob any rule uses
            (``unknown key``), or a declared knob that is set but unused.
    """
    declared = declared_knobs(node)
    values = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else dict(node)
    present = [k for k, v in values.items()
               if k not in FIXED_KEYS and k not in RESERVED_KEYS and v is not None]  # None: unset
    if used is None:
        return {k: values[k] for k in present}
    valid = [*FIXED_KEYS, *sorted(declared | used)]
    for name in present:
        if name not in declared and name not in used:
            raise InitConfigError(
                f"{key}.{name}", f"unknown key {name!r}", valid=", ".join(valid),
                hint=did_you_mean(str(name), valid),
            )
    knobs = {k: values[k] for k in present}
    unused = {k for k in knobs if k not in used}
    overridden = overridden_knobs(key, node)
    if overridden is not None:
        unused &= overridden
    if unused:
        knob = sorted(unused)[0]
        in_use = sorted(k for k in knobs if k in used)
        raise InitConfigError(
            f"{key}.{knob}",
            f"{knob!r} is set but no rule of this init config uses it",
            valid=("knobs used here: " + ", ".join(in_use)) if in_use else "none: no knobs",
            hint=f"set it on one rule instead ({key}.rules.<name>.{knob}=...), "
            f"or unset it ({key}.{knob}=null)",
        )
    return knobs
