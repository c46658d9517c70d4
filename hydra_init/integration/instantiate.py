"""Build a model with Hydra's ``instantiate`` and initialize it, in one call.

Two forms of the same hook:

* :func:`instantiate` for apps that call our API:
  ``model = hydra_init.instantiate(cfg.model, init=cfg.init)``;
* :func:`initialized`, a ``_target_`` for YAML-only wiring, which works under
  plain ``hydra.utils.instantiate`` in apps that never import hydra_init::

      model:
        _target_: hydra_init.initialized
        module: {_target_: my_app.models.Net, width: 64}
        init: ${init}
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import hydra.utils
from omegaconf import DictConfig
from torch import nn

from .failures import config_errors_first
from .init_object import Init
from .job import write_report

__all__ = ["initialized", "instantiate"]

log = logging.getLogger("hydra_init")


@config_errors_first
def instantiate(
    config: Any, init: Any = None, *, device: Any = None, **kwargs: Any
) -> nn.Module:
    """Build the module ``config`` describes, initialize it, and return it.

    The init config is validated before the module is built. The report is
    logged and, inside a Hydra job, written to ``init_report.json`` in the job's
    output directory.

    Args:
        config: a Hydra config with a ``_target_`` (``cfg.model``).
        init: the init config: ``cfg.init`` (the ``init`` node), a dict, an
            :class:`~hydra_init.InitConfig`, or a :class:`~hydra_init.Init`.
            ``None`` applies only the modules' own ``init_cfg`` attributes.
        device: when given, the module is built without allocating memory (on
            the ``meta`` device) and materialized and initialized directly on
            ``device`` (:func:`hydra_init.meta.build_and_init`); otherwise it is
            built eagerly and initialized in place.
        **kwargs: passed to :func:`hydra.utils.instantiate` (overrides of the
            module's arguments, ``_convert_`` ...).

    Returns:
        The initialized module.

    Example:
        >>> import torch.nn as nn, hydra_init
        >>> model = hydra_init.instantiate(
        ...     {"_target_": "torch.nn.Linear", "in_features": 16, "out_features": 4},
        ...     init={"seed": 0, "rules": {"fc": {"type": "Zeros", "layer": "Linear"}}},
        ... )
        >>> float(model.weight.detach().abs().sum())
        0.0
    """
    initializer = Init.from_config(init)

    def build() -> nn.Module:
        return hydra.utils.instantiate(config, **kwargs)

    return _build_and_init(build, initializer, device)


@config_errors_first
def initialized(module: Any, init: Any = None, device: Any = None) -> nn.Module:
    """A ``_target_`` that returns ``module`` initialized by ``init``.

    Under Hydra's default recursive instantiation ``module`` arrives built and
    ``init`` arrives as an :class:`~hydra_init.Init` (the ``init`` node's own
    ``_target_``). With ``_recursive_: false`` both arrive as configs and the
    module is built here, which is what ``device`` needs to build it on the
    ``meta`` device first.

    Args:
        module: an ``nn.Module``, or a config with a ``_target_`` that builds one.
        init: the init config or :class:`~hydra_init.Init`.
        device: see :func:`instantiate`. With an already built module, the module
            is moved to ``device`` and initialized there.

    Example:
        >>> import hydra.utils
        >>> from omegaconf import OmegaConf
        >>> cfg = OmegaConf.create({
        ...     "init": {"_target_": "hydra_init.Init", "seed": 0,
        ...              "rules": {"fc": {"type": "Ones", "layer": "Linear"}}},
        ...     "model": {"_target_": "hydra_init.initialized",
        ...               "module": {"_target_": "torch.nn.Linear", "in_features": 3, "out_features": 2},
        ...               "init": "${init}"}})
        >>> model = hydra.utils.instantiate(cfg.model)
        >>> model.weight.detach().tolist()
        [[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]]
    """
    initializer = Init.from_config(init)
    if isinstance(module, nn.Module):
        built = module

        def build() -> nn.Module:
            return built if device is None else built.to(device)

        return _build_and_init(build, initializer, None)
    if not isinstance(module, (DictConfig, Mapping)):
        raise TypeError(
            f"hydra_init.initialized: 'module' must be an nn.Module or a config with a _target_, "
            f"got {type(module).__name__}"
        )
    config = module

    def build_from_config() -> nn.Module:
        return hydra.utils.instantiate(config)

    return _build_and_init(build_from_config, initializer, device)


def _build_and_init(build: Callable[[], nn.Module], initializer: Init, device: Any) -> nn.Module:
    if device is None:
        model = build()
        if not isinstance(model, nn.Module):
            raise TypeError(f"the model config built a {type(model).__name__}, not an nn.Module")
        initializer(model)
        return model
    from ..meta import build_and_init

    model, report = build_and_init(build, initializer.parsed, device=device)  # logs
    write_report(report)
    return model
