"""Which preset knobs an init node uses, and which knob overrides would silently do nothing.

A preset's rules interpolate its knobs (``std: ${...std}``), so ``init.std=0.02``
reaches every rule that uses ``std``. An override of a knob that no rule uses
(``init.std=0.02`` on ``kaiming_conv``) would do nothing, so it is refused.

A knob can also become unused because the user replaced the interpolation
with a value on one rule (``init.rules.conv.mode=fan_in``): the preset's default
``mode`` is then legitimately unused. Inside a Hydra job the check therefore
refuses only the knobs the job's overrides set; outside one (a dict, the
compose API) every unused knob that is set is refused, as
:func:`hydra_init.parse_config` does.

>>> from omegaconf import OmegaConf
>>> node = OmegaConf.create({"std": 0.02, "bias": 0.1, "rules": {"fc": {"std": "${...std}"}}})
>>> sorted(unused_knobs(node))
['bias']
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ..errors import InitConfigError
from ..schema import KNOBS

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

    For an unresolved ``DictConfig`` (``cfg.init`` as composed) a knob is used
    when an interpolation refers to it. For a resolved mapping (what Hydra's
    ``instantiate`` passes to :class:`~hydra_init.Init`) the interpolations are
    gone, and a knob counts as used when some rule holds its value, alone or
    inside a string (an ``expr`` formula); a knob passed through a custom
    resolver that changes its value would count as unused there.
    """
    if isinstance(cfg, DictConfig):
        raw = OmegaConf.to_container(cfg, resolve=False)
        referenced = _referenced(raw.get("rules"))
        return {k for k in KNOBS if raw.get(k) is not None and k not in referenced}
    leaves = _leaves(cfg.get("rules") or {})
    return {k for k in KNOBS if cfg.get(k) is not None and not _holds(leaves, cfg[k])}


def overridden_knobs(key: str) -> set[str] | None:
    """Knobs of the node at ``key`` that the running Hydra job's overrides set; ``None`` outside a job."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.core.override_parser.overrides_parser import OverridesParser

    if not HydraConfig.initialized():
        return None
    overrides = list(HydraConfig.get().overrides.task)
    prefix = key + "."
    out = set()
    for override in OverridesParser.create().parse_overrides(overrides):
        name = override.key_or_group
        if name.startswith(prefix) and name[len(prefix):] in KNOBS:
            out.add(name[len(prefix):])
    return out


def check_knobs(cfg: Any, key: str) -> None:
    """Raise :class:`~hydra_init.InitConfigError` for a set knob that no rule uses (see the module doc)."""
    unused = unused_knobs(cfg)
    overridden = overridden_knobs(key)
    if overridden is not None:
        unused &= overridden
    if not unused:
        return
    knob = sorted(unused)[0]
    plain = OmegaConf.to_container(cfg, resolve=False) if isinstance(cfg, DictConfig) else cfg
    used = sorted(k for k in KNOBS if plain.get(k) is not None and k not in unused_knobs(cfg))
    raise InitConfigError(
        f"{key}.{knob}",
        f"{knob!r} is set but no rule of this init config uses it",
        valid=("knobs used here: " + ", ".join(used)) if used else "none: no knobs",
        hint=f"set it on one rule instead ({key}.rules.<name>.{knob}=...)",
    )
