"""``hydra_init.Init``: an init config as a callable object.

The ``init`` node's ``_target_`` is ``hydra_init.Init``, so Hydra's own
``instantiate`` turns the node into an object that, called on a module, applies
the init and returns the :class:`~hydra_init.InitReport`:

>>> import torch.nn as nn
>>> from hydra.utils import instantiate
>>> from omegaconf import OmegaConf
>>> cfg = OmegaConf.create({"init": {
...     "_target_": "hydra_init.Init", "seed": 0, "std": 0.02,
...     "rules": {"fc": {"type": "Normal", "layer": "Linear", "std": "${...std}"}}}})
>>> init = instantiate(cfg.init)
>>> report = init(nn.Linear(64, 64), log=False)
>>> report.totals["rule"]
2
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from torch import nn

from ..api import apply, plan
from ..engine.knobs import check_knobs
from ..engine.parse import parse_config
from ..engine.report import InitReport
from ..errors import InitConfigError
from .failures import config_errors_first
from .job import write_report
from .schema import KNOBS

__all__ = ["Init"]

_RESERVED = ("_target_", "_recursive_", "_convert_", "_partial_", "_args_")


class Init:
    """A validated init config that initializes modules when called.

    Built by Hydra from an ``init`` node (``hydra.utils.instantiate(cfg.init)``),
    by :meth:`from_config`, or directly with the node's fields as keyword
    arguments. The config is validated here, so a bad one fails before any model
    is built or touched.

    Args:
        rules: named rules (``{"conv": {"type": "Kaiming", ...}}``).
        seed: seed of the draws; ``None`` draws one from torch's global generator.
        module_init_cfg: whether modules' own ``init_cfg`` attributes take part.
        **knobs: preset-level values (``std``, ``mode``, ``bias`` ...). A knob set
            by the job's overrides that no rule uses is refused
            (``init.std=0.02`` on a preset without a ``std``); see
            :mod:`hydra_init.engine.knobs`.

    Example:
        >>> import torch.nn as nn, hydra_init
        >>> init = hydra_init.Init(seed=0, rules={"fc": {"type": "Zeros", "layer": "Linear"}})
        >>> init(nn.Linear(2, 2), log=False).by_source("rule")
        ['weight', 'bias']
    """

    @config_errors_first
    def __init__(
        self,
        rules: Mapping[str, Any] | None = None,
        seed: int | None = None,
        module_init_cfg: bool = True,
        **knobs: Any,
    ) -> None:
        config = _plain({"seed": seed, "rules": rules or {}, "module_init_cfg": module_init_cfg, **knobs})
        check_knobs(config, "init")
        self._setup(config, key="init")

    @classmethod
    def from_config(cls, cfg: Any, key: str | None = None) -> Init:
        """An :class:`Init` from an ``init`` node, a dict, an :class:`~hydra_init.InitConfig` or an Init.

        On an unresolved ``DictConfig`` (``cfg.init`` as composed by Hydra) the
        knob check reads the interpolations themselves (see
        :mod:`hydra_init.engine.knobs`). ``key`` names the node in error
        messages; by default the node's own path in its config (``init``,
        ``model.init``).
        """
        if isinstance(cfg, Init):
            return cfg
        if cfg is None:
            cfg = {}
        if _is_dataclass_instance(cfg):
            cfg = OmegaConf.structured(cfg)
        elif isinstance(cfg, Mapping) and not isinstance(cfg, DictConfig):
            # resolves "${...std}" written in a plain dict; Rule objects as rules stay plain
            with contextlib.suppress(ValueError, OmegaConfBaseException):
                cfg = OmegaConf.create(dict(cfg))
        if isinstance(cfg, (list, tuple, ListConfig)):  # mmengine's list of rule dicts: no knobs
            self = cls.__new__(cls)
            self._setup(OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, ListConfig)
                        else list(cfg), key=key or "init")
            return self
        if not isinstance(cfg, Mapping):
            raise InitConfigError(
                key or "init", f"expected an init config (a mapping or an Init), got {type(cfg).__name__}",
                hint="pass cfg.init, a dict like {'rules': {...}}, or hydra_init.Init(...)",
            )
        if isinstance(cfg, DictConfig):
            key = key or cfg._get_full_key(None) or "init"
        key = key or "init"
        check_knobs(cfg, key)  # on an unresolved node it sees the interpolations themselves
        config = _plain(cfg)
        self = cls.__new__(cls)
        self._setup(config, key=key)
        return self

    def _setup(self, config: dict[str, Any] | list[Any], key: str) -> None:
        knobs: dict[str, Any] = {}
        if isinstance(config, dict):
            for name in _RESERVED:
                config.pop(name, None)
            # Knobs have done their work once the rules' interpolations are resolved.
            popped = {k: config.pop(k) for k in sorted(KNOBS & set(config))}
            knobs = {k: v for k, v in popped.items() if v is not None}
        try:
            parse_config(config, key=key)
        except InitConfigError as err:
            raise _blame_knob(err, config, knobs, key) from None
        self.config: dict[str, Any] | list[Any] = config
        """The resolved config the engine applies: seed, rules (their knob values filled in)."""
        self.knobs: dict[str, Any] = knobs
        """The knobs that were set (already resolved into the rules)."""
        self.key = key
        """The config path used in error messages."""

    @config_errors_first
    def __call__(self, module: nn.Module, *, log: bool = True) -> InitReport:
        """Initialize ``module`` in place and return the report.

        The report is logged (INFO summary) and, inside a Hydra job, also
        written to ``init_report.json`` in the job's output directory.
        """
        report = apply(module, self.config, key=self.key, log=log)
        write_report(report)
        return report

    def plan(self, module: nn.Module) -> InitReport:
        """The report :meth:`__call__` would produce, without writing anything."""
        return plan(module, self.config, key=self.key)

    @property
    def seed(self) -> int | None:
        return self.config.get("seed") if isinstance(self.config, dict) else None

    def __repr__(self) -> str:
        if not isinstance(self.config, dict):
            return f"Init({self.config!r})"
        rules = ", ".join(f"{name}={rule.get('type')}" for name, rule in self.config["rules"].items())
        return f"Init(seed={self.seed}, rules=[{rules}])"


def _blame_knob(
    err: InitConfigError, config: Any, knobs: dict[str, Any], key: str
) -> InitConfigError:
    """Name the knob when a rule's bad value came from it (``init.std=-1`` -> ``rules.x.std``)."""
    prefix = f"{key}.rules."
    if not err.key.startswith(prefix) or not isinstance(config, dict):
        return err
    rule, _, field = err.key[len(prefix):].rpartition(".")
    value = (config.get("rules") or {}).get(rule, {}).get(field) if rule else None
    if field not in knobs or value is None or value != knobs[field]:
        return err
    return InitConfigError(
        err.key, f"{err.problem} (the value of the knob {key}.{field})", valid=err.valid, hint=err.hint
    )


def _is_dataclass_instance(obj: Any) -> bool:
    return dataclasses.is_dataclass(obj) and not isinstance(obj, type)


def _plain(cfg: Any) -> dict[str, Any]:
    """A resolved plain dict with Enums as strings and unset (``None``) rule fields dropped."""
    if _is_dataclass_instance(cfg):
        cfg = OmegaConf.structured(cfg)
    if OmegaConf.is_config(cfg):
        cfg = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    else:
        cfg = {k: OmegaConf.to_container(v, resolve=True, enum_to_str=True) if OmegaConf.is_config(v)
               else v for k, v in cfg.items()}
    out = {k: _value(v) for k, v in cfg.items()}
    rules = out.get("rules")
    if isinstance(rules, Mapping):
        out["rules"] = {
            name: {k: v for k, v in rule.items() if v is not None} if isinstance(rule, Mapping) else rule
            for name, rule in rules.items()
        }
    return out


def _value(v: Any) -> Any:
    if isinstance(v, enum.Enum):
        return v.value
    if isinstance(v, Mapping):
        return {k: _value(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_value(x) for x in v]
    return v
