"""Drop-in replacements for mmengine / mmcv / OTX ``weight_init`` and ``BaseModule``.

>>> from hydra_init.compat import initialize, kaiming_init, BaseModule  # noqa: F401

See the README's migration table for where hydra_init deliberately differs.
"""

from .base_module import BaseModule, ModuleDict, ModuleList, Sequential, initialize
from .functional import (
    bias_init_with_prob,
    caffe2_xavier_init,
    constant_init,
    init_module,
    kaiming_init,
    normal_init,
    trunc_normal_,
    trunc_normal_init,
    uniform_init,
    xavier_init,
)

__all__ = [
    "BaseModule",
    "ModuleDict",
    "ModuleList",
    "Sequential",
    "bias_init_with_prob",
    "caffe2_xavier_init",
    "constant_init",
    "init_module",
    "initialize",
    "kaiming_init",
    "normal_init",
    "trunc_normal_",
    "trunc_normal_init",
    "uniform_init",
    "xavier_init",
]
