"""OpenMMLab-style ``initialize`` and a ``BaseModule`` mixin, for porting mmengine code.

Semantics kept from mmengine:

* ``init_cfg`` on a module applies to its subtree, and a child's ``init_cfg``
  wins over its parent's (``BaseModule`` nesting, also inside ``Sequential``,
  ``ModuleList`` and ``ModuleDict``);
* a user-written ``init_weights()`` on a descendant runs after the configs and
  so has the last word ("the priority of init_weights is higher than init_cfg");
* ``init_weights()`` runs once (``is_init``).

Traps removed: class names match over the whole MRO; ``override`` reaches any
depth; typos raise; and a ``Pretrained`` part no longer stops its children from
being initialized — new modules added to a pretrained backbone get their rules.

>>> import torch.nn as nn
>>> class Net(BaseModule):
...     def __init__(self, init_cfg=None):
...         super().__init__(init_cfg)
...         self.conv = nn.Conv2d(3, 8, 3)
...         self.head = nn.Linear(8, 2)
>>> net = Net(init_cfg=[dict(type="Kaiming", layer="Conv2d"),
...                     dict(type="Constant", val=0, layer="Linear")])
>>> report = net.init_weights()
>>> net.is_init, net.head.weight.detach().abs().sum().item()
(True, 0.0)
"""

from __future__ import annotations

import contextvars
import copy
import logging
import warnings
from typing import Any

from torch import nn

from ..api import apply
from ..engine.report import InitReport, ParamRecord

__all__ = ["BaseModule", "ModuleDict", "ModuleList", "Sequential", "initialize"]

log = logging.getLogger("hydra_init")


def initialize(module: nn.Module, init_cfg: dict | list[dict]) -> InitReport:
    """mmengine's ``initialize(module, init_cfg)``: apply mmengine-style dicts to a module.

    Accepts ``type``, ``layer``, ``override``, ``bias``, ``bias_prob`` and
    ``Pretrained`` (``checkpoint``, ``prefix``, ``map_location``). Only the given
    config is applied (sub-modules' own ``init_cfg`` are not consulted, as in
    mmengine). Returns the report.

    >>> import torch.nn as nn
    >>> model = nn.Sequential(nn.Conv1d(3, 1, 3), nn.Linear(1, 2))
    >>> _ = initialize(model, [dict(type="Constant", layer="Conv1d", val=1),
    ...                        dict(type="Constant", layer="Linear", val=2)])
    >>> model[1].weight.detach().mean().item()
    2.0
    """
    if not isinstance(init_cfg, (dict, list)):
        raise TypeError(f"init_cfg must be a dict or a list of dicts, got {type(init_cfg).__name__}")
    return apply(module, copy.deepcopy(init_cfg), key="init_cfg", module_init_cfg=False, log=False)


# True while an ancestor's init_weights() calls its descendants' custom init_weights().
_INSIDE_PARENT = contextvars.ContextVar("hydra_init_inside_parent_init", default=False)


def _custom_init_weights(module: nn.Module) -> bool:
    method = getattr(type(module), "init_weights", None)
    return callable(method) and method is not BaseModule.init_weights


class BaseModule(nn.Module):
    """An ``nn.Module`` with an ``init_cfg`` and ``init_weights()``, like mmengine's.

    ``init_weights()`` resolves every ``init_cfg`` in the subtree into one plan
    (each parameter written once, inner configs winning), then calls the
    user-written ``init_weights()`` of descendants, parents first.
    """

    def __init__(self, init_cfg: dict | list[dict] | None = None) -> None:
        super().__init__()
        self.init_cfg = copy.deepcopy(init_cfg)
        self._is_init = False

    @property
    def is_init(self) -> bool:
        """Whether ``init_weights()`` has run."""
        return self._is_init

    def init_weights(self) -> InitReport | None:
        """Initialize the subtree from the ``init_cfg`` attributes found in it."""
        if self._is_init:
            if not _INSIDE_PARENT.get():
                warnings.warn(
                    f"init_weights of {type(self).__name__} has been called more than once",
                    stacklevel=2,
                )
            return None
        report = apply(self, None, key="init_cfg", log=False, module_init_cfg=True)
        for module in self.modules():
            if isinstance(module, BaseModule):
                module._is_init = True
        custom = [
            (path, m) for path, m in self.named_modules() if path and _custom_init_weights(m)
        ]
        token = _INSIDE_PARENT.set(True)
        try:
            for _, module in custom:
                module.init_weights()
        finally:
            _INSIDE_PARENT.reset(token)
        report = _mark_custom(report, custom)
        report.log(log)
        return report


def _mark_custom(report: InitReport, custom: list[tuple[str, Any]]) -> InitReport:
    """Attribute untouched parameters under a custom ``init_weights()`` to it."""
    if not custom:
        return report
    records = []
    for rec in report.params:
        owner = next(
            (f"{type(m).__name__}.init_weights()" for p, m in custom
             if rec.path.startswith(p + ".")),
            None,
        )
        if owner is not None and rec.source == "default":
            rec = ParamRecord(rec.path, rec.shape, rec.dtype, "custom", None, owner)
        records.append(rec)
    report.params = records
    return report


class Sequential(BaseModule, nn.Sequential):
    """``nn.Sequential`` with an ``init_cfg`` (mmengine's ``Sequential``)."""

    def __init__(self, *args: nn.Module, init_cfg: dict | list[dict] | None = None) -> None:
        BaseModule.__init__(self, init_cfg)
        nn.Sequential.__init__(self, *args)


class ModuleList(BaseModule, nn.ModuleList):
    """``nn.ModuleList`` with an ``init_cfg`` (mmengine's ``ModuleList``)."""

    def __init__(self, modules: Any = None, init_cfg: dict | list[dict] | None = None) -> None:
        BaseModule.__init__(self, init_cfg)
        nn.ModuleList.__init__(self, modules)


class ModuleDict(BaseModule, nn.ModuleDict):
    """``nn.ModuleDict`` with an ``init_cfg`` (mmengine's ``ModuleDict``)."""

    def __init__(self, modules: Any = None, init_cfg: dict | list[dict] | None = None) -> None:
        BaseModule.__init__(self, init_cfg)
        nn.ModuleDict.__init__(self, modules)
