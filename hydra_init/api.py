"""The two entry points: :func:`apply` and its dry run :func:`plan`."""

from __future__ import annotations

import dataclasses
from typing import Any

from torch import nn

from .engine.execute import execute
from .engine.parse import ParsedConfig, parse_config
from .engine.plan import Plan, build_plan
from .engine.report import InitReport

__all__ = ["apply", "execute_and_report", "plan"]


def apply(
    model: nn.Module,
    init_cfg: Any = None,
    *,
    key: str = "init",
    log: bool = True,
    module_init_cfg: bool | None = None,
) -> InitReport:
    """Initialize ``model`` from a config and return the report.

    ``init_cfg`` may be the named-rules form (dict, ``DictConfig`` or
    :class:`~hydra_init.integration.schema.InitConfig`), an mmengine-style dict or list of
    dicts, or :class:`~hydra_init.Rule` objects. Modules' own ``init_cfg``
    attributes are honoured too. The whole plan is resolved and validated first:
    on any error an :class:`~hydra_init.InitConfigError` is raised and the model
    is unchanged.

    Args:
        model: the module to initialize.
        init_cfg: the config (see above); ``None`` applies only modules' own ``init_cfg``.
        key: the config path used in error messages (``init`` under Hydra).
        log: log the report (INFO summary, DEBUG per parameter).
        module_init_cfg: whether sub-modules' own ``init_cfg`` attributes take
            part; ``None`` uses the config's ``module_init_cfg`` (default true).

    Example:
        >>> import torch.nn as nn, hydra_init
        >>> model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU())
        >>> report = hydra_init.apply(model, {
        ...     "seed": 0,
        ...     "rules": {
        ...         "conv": {"type": "Kaiming", "layer": "Conv2d", "mode": "fan_out"},
        ...         "norm": {"type": "Constant", "layer": "_BatchNorm", "val": 1.0},
        ...     },
        ... }, log=False)
        >>> report.totals["rule"], model[1].weight.detach().mean().item()
        (4, 1.0)
    """
    return execute_and_report(build_plan(model, _parsed(init_cfg, key, module_init_cfg)), log=log)


def execute_and_report(resolved: Plan, *, log: bool = True) -> InitReport:
    """Write a validated plan into its model and return (and optionally log) the report."""
    seed = execute(resolved)
    report = InitReport.from_plan(resolved, seed=seed, applied=True)
    if log:
        report.log()
    return report


def plan(
    model: nn.Module, init_cfg: Any = None, *, key: str = "init", module_init_cfg: bool | None = None
) -> InitReport:
    """The report :func:`apply` would produce, without writing anything.

    >>> import torch.nn as nn, hydra_init
    >>> r = hydra_init.plan(nn.Linear(3, 3), [{"type": "Xavier", "layer": "Linear"}])
    >>> r["weight"].init
    'Xavier(gain=1.0, distribution=normal)'
    """
    resolved = build_plan(model, _parsed(init_cfg, key, module_init_cfg))
    return InitReport.from_plan(resolved, seed=resolved.seed, applied=False)


def _parsed(init_cfg: Any, key: str, module_init_cfg: bool | None) -> ParsedConfig:
    parsed = parse_config(init_cfg, key=key)  # an already parsed config (or Init) is taken as it is
    if module_init_cfg is None or module_init_cfg == parsed.module_init_cfg:
        return parsed
    return dataclasses.replace(parsed, module_init_cfg=module_init_cfg)
