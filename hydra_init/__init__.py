"""hydra_init: config-driven weight initialization for PyTorch, integrated with Hydra.

>>> import torch.nn as nn, hydra_init
>>> model = nn.Sequential(nn.Linear(8, 8), nn.LayerNorm(8))
>>> report = hydra_init.apply(model, {"seed": 0, "rules": {
...     "linear": {"type": "TruncNormal", "layer": "Linear", "std": 0.02,
...                "a": -2, "b": 2, "bound_unit": "std"},
...     "norm": {"type": "Ones", "layer": "LayerNorm"}}}, log=False)
>>> report.totals["rule"]
4
"""

from . import _moved
from .api import apply, plan
from .engine.parse import ParsedConfig, parse_config
from .engine.report import InitReport
from .engine.rules import Rule
from .errors import InitConfigError, InitExecutionError
from .initializers import (
    Action,
    BoundUnit,
    Caffe2Xavier,
    Constant,
    Default,
    Dirac,
    Distribution,
    Eye,
    FanMode,
    Initializer,
    Kaiming,
    LecunNormal,
    Nonlinearity,
    Normal,
    Ones,
    Orthogonal,
    Pretrained,
    TruncNormal,
    Uniform,
    VarianceScaling,
    Xavier,
    Zeros,
    bias_from_prob,
    initializer_types,
    register_initializer,
)
from .integration import Init, initialized, instantiate, register, register_hydra_plugins
from .integration.schema import InitConfig, RuleConfig
from .meta import build_and_init
from .pretrained import checkpoint_schemes, register_checkpoint_scheme
from .tools.probe import ProbeReport, probe

_moved.install()

__version__ = "0.1.0"

__all__ = [
    "Action",
    "BoundUnit",
    "Caffe2Xavier",
    "Constant",
    "Default",
    "Dirac",
    "Distribution",
    "Eye",
    "FanMode",
    "Init",
    "InitConfig",
    "InitConfigError",
    "InitExecutionError",
    "InitReport",
    "Initializer",
    "Kaiming",
    "LecunNormal",
    "Nonlinearity",
    "Normal",
    "Ones",
    "Orthogonal",
    "ParsedConfig",
    "Pretrained",
    "ProbeReport",
    "Rule",
    "RuleConfig",
    "TruncNormal",
    "Uniform",
    "VarianceScaling",
    "Xavier",
    "Zeros",
    "apply",
    "bias_from_prob",
    "build_and_init",
    "checkpoint_schemes",
    "initialized",
    "initializer_types",
    "instantiate",
    "parse_config",
    "plan",
    "probe",
    "register",
    "register_checkpoint_scheme",
    "register_hydra_plugins",
    "register_initializer",
]
