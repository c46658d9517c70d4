"""Old module names (0.1.0) that still import, with a DeprecationWarning naming the new one.

Release 0.2 grouped the package by stage (``engine``, ``sampling``, ``pretrained``,
``integration``, ``tools``). ``import hydra_init.curves`` and the like keep
working: a meta-path finder maps each old name to the module that replaced it.

>>> import warnings
>>> with warnings.catch_warnings():
...     warnings.simplefilter("ignore")
...     from hydra_init.curves import log_curve
>>> log_curve.__module__
'hydra_init.tools.curves'
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings
from types import ModuleType

MOVED = {
    "hydra_init.checkpoints": "hydra_init.pretrained",
    "hydra_init.checkpoints.sources": "hydra_init.pretrained.sources",
    "hydra_init.checkpoints.formats": "hydra_init.pretrained.formats",
    "hydra_init.checkpoints.keymap": "hydra_init.pretrained.keymap",
    "hydra_init.checkpoints.policies": "hydra_init.pretrained.policies",
    "hydra_init.cli": "hydra_init.tools.cli",
    "hydra_init.curves": "hydra_init.tools.curves",
    "hydra_init.progress": "hydra_init.tools.progress",
    "hydra_init.sweep_plot": "hydra_init.tools.sweep_plot",
    "hydra_init.presets": "hydra_init.integration.presets",
    "hydra_init.schema": "hydra_init.integration.schema",
    "hydra_init.config": "hydra_init.engine.parse",
    "hydra_init.selectors": "hydra_init.engine.select",
    "hydra_init.report": "hydra_init.engine.report",
    "hydra_init.truncnormal": "hydra_init.sampling.truncnormal",
    "hydra_init.draws": "hydra_init.sampling.draws",
}
"""Old module name -> the module that replaced it."""


class _Alias(importlib.abc.Loader):
    def __init__(self, target: str) -> None:
        self.target = target

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        warnings.warn(
            f"{spec.name} moved to {self.target}; import it from there", DeprecationWarning, stacklevel=2
        )
        module = importlib.import_module(self.target)
        sys.modules[spec.name] = module
        return module

    def exec_module(self, module: ModuleType) -> None:
        pass


class MovedModuleFinder(importlib.abc.MetaPathFinder):
    """Resolves the names in :data:`MOVED`."""

    def find_spec(self, fullname: str, path=None, target=None):
        new = MOVED.get(fullname)
        if new is None:
            return None
        return importlib.machinery.ModuleSpec(fullname, _Alias(new))


def install() -> None:
    """Put the finder on ``sys.meta_path`` once."""
    if not any(isinstance(f, MovedModuleFinder) for f in sys.meta_path):
        sys.meta_path.append(MovedModuleFinder())
