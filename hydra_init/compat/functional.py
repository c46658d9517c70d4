"""mmengine/mmcv's functional init API, with their signatures and defaults.

Each function initializes a module's ``weight`` with an initializer and sets its
``bias`` to a constant, exactly as ``mmengine.model.weight_init`` does; the
math comes from :mod:`hydra_init.initializers`, so there is one implementation
of every formula. Random draws follow torch's global generator
(``torch.manual_seed`` makes them reproducible).

>>> import torch.nn as nn
>>> conv = nn.Conv2d(3, 8, 3)
>>> kaiming_init(conv, mode="fan_in")
>>> conv.bias.detach().abs().sum().item()
0.0
"""

from __future__ import annotations

import torch
from torch import nn

from ..engine.execute import effective_seed
from ..errors import did_you_mean
from ..initializers import (
    Caffe2Xavier,
    Constant,
    Initializer,
    Kaiming,
    Normal,
    TruncNormal,
    Uniform,
    Xavier,
    bias_from_prob,
)
from ..sampling import TruncNormalDraw, derive_key, fill_
from .errors import dual_error, mmengine_errors

__all__ = [
    "bias_init_with_prob",
    "caffe2_xavier_init",
    "constant_init",
    "init_module",
    "kaiming_init",
    "normal_init",
    "trunc_normal_",
    "trunc_normal_init",
    "uniform_init",
    "xavier_init",
]


def init_module(module: nn.Module, init: Initializer) -> None:
    """Fill ``module.weight`` from ``init`` and ``module.bias`` with ``init.bias``.

    Either attribute may be missing or ``None`` (``Conv2d(bias=False)``), as in mmengine.
    """
    with mmengine_errors():
        init.validate(type(init).__name__)
    weight = getattr(module, "weight", None)
    bias = getattr(module, "bias", None)
    with torch.no_grad():
        if isinstance(weight, torch.Tensor):
            fill_(weight, init.draw(weight.shape), derive_key(effective_seed(None), "", weight.shape))
        if isinstance(bias, torch.Tensor):
            bias.fill_(init.bias_value)


def constant_init(module: nn.Module, val: float, bias: float = 0) -> None:
    """Weight ``= val``, bias ``= bias``."""
    init_module(module, Constant(val=val, bias=bias))


def xavier_init(
    module: nn.Module, gain: float = 1, bias: float = 0, distribution: str = "normal"
) -> None:
    """Xavier/Glorot weight (``distribution`` ``normal`` or ``uniform``), constant bias."""
    init_module(module, Xavier(gain=gain, bias=bias, distribution=_choice(distribution)))


def normal_init(module: nn.Module, mean: float = 0, std: float = 1, bias: float = 0) -> None:
    """Normal weight. mmengine's default ``std=1`` is kept; it is rarely what you want."""
    init_module(module, Normal(mean=mean, std=std, bias=bias))


def trunc_normal_init(
    module: nn.Module,
    mean: float = 0,
    std: float = 1,
    a: float = -2,
    b: float = 2,
    bias: float = 0,
) -> None:
    """Truncated normal weight with ABSOLUTE bounds ``[a, b]`` (mmengine's meaning)."""
    init_module(module, TruncNormal(mean=mean, std=std, a=a, b=b, bias=bias))


def uniform_init(module: nn.Module, a: float = 0, b: float = 1, bias: float = 0) -> None:
    """Uniform ``[a, b]`` weight (mmengine's default ``[0, 1]`` kept)."""
    init_module(module, Uniform(a=a, b=b, bias=bias))


def kaiming_init(
    module: nn.Module,
    a: float = 0,
    mode: str = "fan_out",
    nonlinearity: str = "relu",
    bias: float = 0,
    distribution: str = "normal",
) -> None:
    """Kaiming/He weight, constant bias; mmengine defaults (fan_out, relu, normal)."""
    init_module(
        module,
        Kaiming(a=a, mode=mode, nonlinearity=nonlinearity, bias=bias,
                distribution=_choice(distribution)),
    )


def caffe2_xavier_init(module: nn.Module, bias: float = 0) -> None:
    """Caffe2's XavierFill: ``Kaiming(a=1, fan_in, leaky_relu, uniform)``."""
    init_module(module, Caffe2Xavier(bias=bias))


def bias_init_with_prob(prior_prob: float) -> float:
    """The bias whose sigmoid is ``prior_prob`` (focal-loss heads).

    ``prior_prob`` must lie strictly between 0 and 1; anything else is an
    :class:`~hydra_init.InitConfigError` (``0`` is also a ``ZeroDivisionError``,
    as mmengine raises there).

    >>> round(bias_init_with_prob(0.01), 4)
    -4.5951
    """
    if not isinstance(prior_prob, (int, float)) or isinstance(prior_prob, bool):
        raise dual_error(TypeError)("prior_prob", f"expected a number, got {prior_prob!r}")
    if not 0.0 < prior_prob < 1.0:  # also refuses nan
        kind = ZeroDivisionError if prior_prob == 0 else ValueError
        raise dual_error(kind)(
            "prior_prob", f"prior_prob={prior_prob} is not a probability",
            valid="0 < prior_prob < 1", hint="a focal-loss head uses 0.01",
        )
    return bias_from_prob(prior_prob)


def trunc_normal_(
    tensor: torch.Tensor, mean: float = 0.0, std: float = 1.0, a: float = -2.0, b: float = 2.0
) -> torch.Tensor:
    """Fill ``tensor`` from ``N(mean, std^2)`` truncated to the absolute interval ``[a, b]``.

    Exact (out-of-range values are redrawn one by one), unlike the inverse-CDF
    clamp of mmcv 1.x.
    """
    if not (tensor.dtype.is_floating_point or tensor.dtype.is_complex):
        raise dual_error(RuntimeError)(
            "trunc_normal_", f"cannot fill a {str(tensor.dtype).removeprefix('torch.')} tensor with "
            "real numbers (torch raises here too)", valid="a floating-point tensor",
        )
    with mmengine_errors():
        TruncNormal(mean=mean, std=std, a=a, b=b).validate("trunc_normal_")
    fill_(tensor, TruncNormalDraw(mean, std, a, b), derive_key(effective_seed(None), "", tensor.shape))
    return tensor


def _choice(distribution: str) -> str:
    if distribution not in ("normal", "uniform"):  # mmengine asserts: AssertionError too
        raise dual_error(AssertionError)(
            "distribution", f"invalid value {distribution!r}", valid="normal, uniform",
            hint=did_you_mean(str(distribution), ["normal", "uniform"]),
        )
    return distribution
