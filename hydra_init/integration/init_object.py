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

import dataclasses
from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf
from torch import nn

from ..api import apply, plan
from ..engine.knobs import KNOBS_USED_FIELD
from ..engine.parse import ParsedConfig, parse_config
from ..engine.report import InitReport
from ..errors import InitConfigError
from .failures import config_errors_first
from .job import write_report

__all__ = ["Init"]


class Init:
    """A validated init config that initializes modules when called.

    Built by Hydra from an ``init`` node (``hydra.utils.instantiate(cfg.init)``),
    by :meth:`from_config`, or directly with the node's fields as keyword
    arguments. The config is parsed and validated here, once, into a
    :class:`~hydra_init.engine.parse.ParsedConfig` (:attr:`parsed`) that every
    later stage uses as it is, so a bad one fails before any model is built or touched.

    Args:
        rules: named rules (``{"conv": {"type": "Kaiming", ...}}``).
        seed: seed of the draws; ``None`` draws one from torch's global generator.
        module_init_cfg: whether modules' own ``init_cfg`` attributes take part.
        **knobs: preset-level values (``std``, ``mode``, ``bias`` ...) that the
            rules interpolate (``${...std}``). A knob no rule uses is refused
            (``init.std=0.02`` on a preset without a ``std``); see
            :mod:`hydra_init.engine.knobs`. Through ``hydra.utils.instantiate`` the
            check needs the node bound to the schema (``/hydra_init/schema/init`` in
            its defaults, as every preset is): Hydra resolves the rules first, and the
            schema's ``_knobs_used_`` field carries the knob names they used.

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
        node = {"seed": seed, "rules": rules or {}, "module_init_cfg": module_init_cfg, **knobs}
        if KNOBS_USED_FIELD not in knobs and OmegaConf.is_config(rules):
            # Resolved by hydra.utils.instantiate from a node not bound to the schema, which
            # would carry the knob names its rules use: which knobs they used cannot be known.
            node[KNOBS_USED_FIELD] = ",".join(sorted(k for k, v in knobs.items() if v is not None))
        self.parsed: ParsedConfig = parse_config(node, key="init")
        """The parsed config every stage uses."""

    @classmethod
    def from_config(cls, cfg: Any, key: str | None = None) -> Init:
        """An :class:`Init` from an ``init`` node, a dict, an :class:`~hydra_init.InitConfig`,
        an mmengine-style list, or an Init (returned as it is).

        ``key`` names the node in error messages; by default the node's own path in
        its config (``init``, ``model.init``).
        """
        if isinstance(cfg, Init):
            return cfg
        if isinstance(cfg, DictConfig):
            key = key or cfg._get_full_key(None) or "init"
        elif not (cfg is None or isinstance(cfg, (Mapping, list, tuple, ListConfig, ParsedConfig))
                  or (dataclasses.is_dataclass(cfg) and not isinstance(cfg, type))):
            raise InitConfigError(
                key or "init", f"expected an init config (a mapping or an Init), got {type(cfg).__name__}",
                hint="pass cfg.init, a dict like {'rules': {...}}, or hydra_init.Init(...)",
            )
        self = cls.__new__(cls)
        self.parsed = parse_config(cfg, key=key or "init")
        return self

    @property
    def key(self) -> str:
        """The config path used in error messages."""
        return self.parsed.key

    @property
    def knobs(self) -> dict[str, Any]:
        """The knobs that were set (already resolved into the rules)."""
        return dict(self.parsed.knobs)

    @property
    def config(self) -> dict[str, Any]:
        """The resolved config as plain data (:meth:`~hydra_init.engine.parse.ParsedConfig.to_dict`)."""
        return self.parsed.to_dict()

    @property
    def seed(self) -> int | None:
        return self.parsed.seed

    @config_errors_first
    def __call__(self, module: nn.Module, *, log: bool = True) -> InitReport:
        """Initialize ``module`` in place and return the report.

        The report is logged (INFO summary) and, inside a Hydra job, also
        written to ``init_report.json`` in the job's output directory.
        """
        report = apply(module, self.parsed, log=log)
        write_report(report)
        return report

    def plan(self, module: nn.Module) -> InitReport:
        """The report :meth:`__call__` would produce, without writing anything."""
        return plan(module, self.parsed)

    def __repr__(self) -> str:
        rules = ", ".join(f"{r.label}={r.init.type_name}" for r in self.parsed.rules)
        return f"Init(seed={self.seed}, rules=[{rules}])"
