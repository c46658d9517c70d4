"""Drop-in replacements for mmengine / mmcv / OTX ``weight_init`` and ``BaseModule``.

>>> from hydra_init.compat import initialize, kaiming_init, BaseModule, KaimingInit  # noqa: F401

See the README's migration table for where hydra_init deliberately differs.
"""

from .base_module import BaseModule, ModuleDict, ModuleList, Sequential, initialize
from .errors import dual_error
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
from .initializers import (
    INITIALIZERS,
    WEIGHT_INITIALIZERS,
    BaseInit,
    Caffe2XavierInit,
    ConstantInit,
    InitRegistry,
    KaimingInit,
    NormalInit,
    PretrainedInit,
    TruncNormalInit,
    UniformInit,
    XavierInit,
)

__all__ = [
    "INITIALIZERS",
    "WEIGHT_INITIALIZERS",
    "BaseInit",
    "BaseModule",
    "Caffe2XavierInit",
    "ConstantInit",
    "InitRegistry",
    "KaimingInit",
    "ModuleDict",
    "ModuleList",
    "NormalInit",
    "PretrainedInit",
    "Sequential",
    "TruncNormalInit",
    "UniformInit",
    "XavierInit",
    "bias_init_with_prob",
    "caffe2_xavier_init",
    "constant_init",
    "dual_error",
    "init_module",
    "initialize",
    "kaiming_init",
    "normal_init",
    "trunc_normal_",
    "trunc_normal_init",
    "uniform_init",
    "xavier_init",
]
