"""Which preset knobs an init node uses, and which knob overrides would silently do nothing.

A preset's rules interpolate its knobs (``std: ${...std}``), so ``init.std=0.02``
reaches every rule that uses ``std``. An override of a knob that no rule uses
(``init.std=0.02`` on ``kaiming_conv``) would do nothing, so it is refused.

A knob can also become unused because the user replaced the interpolation
with a value on one rule (``init.rules.conv.mode=fan_in``): the preset's default
``mode`` is then legitimately unused. When the command-line overrides are known
(inside a Hydra job, or a config composed with its ``hydra`` node) the check
therefore refuses only the knobs the overrides set. Otherwise (a dict, the
compose API without the ``hydra`` node) every unused knob that is set is
refused, as :func:`hydra_init.parse_config` does; unset a left-over preset knob
with ``init.<knob>=null``.

>>> from omegaconf import OmegaConf
>>> node = OmegaConf.create({"std": 0.02, "bias": 0.1, "rules": {"fc": {"std": "${...std}"}}})
>>> sorted(unused_knobs(node))
['bias']
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ..errors import InitConfigError
from ..integration.schema import KNOBS

__all__ = ["check_knobs", "overridden_knobs", "unused_knobs"]

_INTERPOLATION = re.compile(r"\$\{([^${}]*)\}")


def _leaves(node: Any) -> list[Any]:
    """Every scalar under ``node`` (rules, their lists, nested ``expr``/``override`` mappings)."""
    if isinstance(node, Mapping):
        return [leaf for v in node.values() for leaf in _leaves(v)]
    if isinstance(node, (list, tuple)):
        return [leaf for v in node for leaf in _leaves(v)]
    return [node]


def _referenced(rules: Any) -> set[str]:
    """Names that interpolations under ``rules`` end in (``${...std}`` -> ``std``)."""
    names = set()
    for leaf in _leaves(rules):
        for inner in _INTERPOLATION.findall(leaf) if isinstance(leaf, str) else ():
            for arg in inner.split(":", 1)[-1].split(","):  # ${oc.select:...std,0} -> its arguments
                names.add(arg.strip().rsplit(".", 1)[-1])
    return names


def _holds(leaves: list[Any], value: Any) -> bool:
    text = None if isinstance(value, bool) else str(value)
    return any(
        leaf == value or (text is not None and isinstance(leaf, str) and text in leaf) for leaf in leaves
    )


def unused_knobs(cfg: Any) -> set[str]:
    """Knobs that are set but that no rule uses.

    While the rules hold interpolations (``cfg.init`` as composed), a knob is
    used when an interpolation refers to it. Once Hydra's ``instantiate`` has
    resolved them away, a knob counts as used when some rule holds its value,
    alone or inside a string (an ``expr`` formula, a name glob); a knob passed
    through a custom resolver that changes its value would count as unused there.
    """
    rules = cfg.get("rules")
    raw = OmegaConf.to_container(rules, resolve=False) if OmegaConf.is_config(rules) else rules or {}
    referenced = _referenced(raw)
    sized = set(cfg.get("sizes") or ())  # a size's knob is read by the engine itself (engine/sizes.py)
    if isinstance(cfg, DictConfig):
        cfg = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    set_knobs = {k: _value(cfg[k]) for k in KNOBS - sized if cfg.get(k) is not None}
    if referenced:  # unresolved: the interpolations say exactly which knobs are read
        return {k for k in set_knobs if k not in referenced}
    leaves = [_value(leaf) for leaf in _leaves(cfg.get("rules") or {})]
    return {k for k, v in set_knobs.items() if not _holds(leaves, v)}


def _value(x: Any) -> Any:
    return x.value if isinstance(x, enum.Enum) else x


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
    """Knobs of the node at ``key`` that the command-line overrides set; ``None`` when unknown.

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
        if name.startswith(prefix) and name[len(prefix):] in KNOBS:
            out.add(name[len(prefix):])
    return out


def check_knobs(cfg: Any, key: str) -> None:
    """Raise :class:`~hydra_init.InitConfigError` for a set knob that no rule uses (see the module doc)."""
    all_unused = unused_knobs(cfg)
    overridden = overridden_knobs(key, cfg)
    unused = all_unused if overridden is None else all_unused & overridden
    if not unused:
        return
    knob = sorted(unused)[0]
    used = sorted(k for k in KNOBS if cfg.get(k) is not None and k not in all_unused)
    raise InitConfigError(
        f"{key}.{knob}",
        f"{knob!r} is set but no rule of this init config uses it",
        valid=("knobs used here: " + ", ".join(used)) if used else "none: no knobs",
        hint=f"set it on one rule instead ({key}.rules.<name>.{knob}=...), or unset it ({key}.{knob}=null)",
    )
