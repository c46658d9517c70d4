"""Initializer configs: dataclasses that hold only their arguments.

Each class describes *what* a parameter should be filled with. Turning it into
values is the job of :meth:`Initializer.draw`, which maps a parameter shape to
a :class:`~hydra_init.sampling.draws.Draw` (a distribution or a whole-tensor
construction); the engine does matching and traversal once, for every
initializer.

Xavier, Kaiming, LeCun and Caffe2Xavier are parameterizations of one rule,
:class:`VarianceScaling` (as in JAX/Flax): ``variance = scale / fan`` where
``fan`` is ``fan_in``, ``fan_out`` or their average, drawn from a normal,
uniform or truncated normal distribution.

Defaults that silently hurt, kept for mmengine compatibility:
``Normal()`` has ``std=1`` and ``Uniform()`` draws from ``[0, 1]``; both are far
too large for any layer wider than a handful of units. No preset relies on them.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import math
import typing
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

import torch

from .errors import InitConfigError, did_you_mean
from .sampling.draws import (
    DiracDraw,
    Draw,
    EyeDraw,
    FillDraw,
    NormalDraw,
    OrthogonalDraw,
    TruncNormalDraw,
    UniformDraw,
)

__all__ = [
    "REGISTRY",
    "Action",
    "BoundUnit",
    "Caffe2Xavier",
    "Constant",
    "Default",
    "Dirac",
    "Distribution",
    "Eye",
    "FanMode",
    "Initializer",
    "Kaiming",
    "LecunNormal",
    "Nonlinearity",
    "Normal",
    "Ones",
    "Orthogonal",
    "Pretrained",
    "TruncNormal",
    "Uniform",
    "VarianceScaling",
    "Xavier",
    "Zeros",
    "bias_from_prob",
    "fans",
    "initializer_types",
    "register_initializer",
    "validate_bias",
]


class FanMode(str, enum.Enum):
    """Which fan scales the variance: inputs, outputs, or their average."""

    fan_in = "fan_in"
    fan_out = "fan_out"
    fan_avg = "fan_avg"


class Distribution(str, enum.Enum):
    """The distribution a variance-scaling initializer draws from."""

    normal = "normal"
    uniform = "uniform"
    truncated_normal = "truncated_normal"


class Nonlinearity(str, enum.Enum):
    """Nonlinearities known to :func:`torch.nn.init.calculate_gain`."""

    linear = "linear"
    conv1d = "conv1d"
    conv2d = "conv2d"
    conv3d = "conv3d"
    conv_transpose1d = "conv_transpose1d"
    conv_transpose2d = "conv_transpose2d"
    conv_transpose3d = "conv_transpose3d"
    sigmoid = "sigmoid"
    tanh = "tanh"
    relu = "relu"
    leaky_relu = "leaky_relu"
    selu = "selu"


class BoundUnit(str, enum.Enum):
    """How :class:`TruncNormal` reads ``a`` and ``b``: absolute values or multiples of std."""

    absolute = "absolute"
    std = "std"


# The std of a standard normal truncated to [-2, 2]; dividing by it keeps the
# variance of a truncated draw equal to the requested one (JAX, timm).
_TRUNCATED_STD_AT_2 = 0.87962566103423978


def bias_from_prob(prior_prob: float) -> float:
    """The logit bias that makes ``sigmoid(bias) == prior_prob``: ``-log((1-p)/p)``.

    Used for focal-loss classification heads (RetinaNet), where ``p=0.01`` gives -4.595.

    >>> round(bias_from_prob(0.01), 3)
    -4.595
    """
    return float(-math.log((1 - prior_prob) / prior_prob))


def fans(shape: torch.Size | tuple[int, ...]) -> tuple[int, int]:
    """``(fan_in, fan_out)`` of a weight of this shape, computed as torch does.

    Dim 1 is the input, dim 0 the output, and any further dims form the receptive
    field (``(out, in, kh, kw)`` for a Conv2d weight).

    >>> fans((64, 3, 7, 7))
    (147, 3136)
    """
    tensor = torch.empty(tuple(shape), device="meta")
    return torch.nn.init._calculate_fan_in_and_fan_out(tensor)


def _check(condition: bool, key: str, problem: str, valid: str, hint: str | None = None) -> None:
    if not condition:
        raise InitConfigError(key, problem, valid=valid, hint=hint)


def validate_bias(bias: float, bias_prob: float | None, key: str) -> None:
    """``bias`` and ``bias_prob`` decide the same value: at most one is set, and ``0 < p < 1``."""
    _check(
        bias_prob is None or bias == 0.0,
        f"{key}.bias_prob",
        f"both bias={bias} and bias_prob={bias_prob} are set; they decide the same value",
        "one of bias (the constant) or bias_prob (bias = -log((1-p)/p))",
        "remove one of them",
    )
    if bias_prob is not None:
        _check(
            0.0 < bias_prob < 1.0,
            f"{key}.bias_prob",
            f"bias_prob={bias_prob} is not a probability",
            "0 < bias_prob < 1, e.g. 0.01 for a focal-loss head",
        )


@functools.cache
def _enum_fields(cls: type) -> dict[str, type[enum.Enum]]:
    hints = typing.get_type_hints(cls)
    out = {}
    for f in fields(cls):
        tp = hints[f.name]
        options = typing.get_args(tp) or (tp,)
        members = [a for a in options if isinstance(a, type) and issubclass(a, enum.Enum)]
        if members:
            out[f.name] = members[0]
    return out


@dataclass
class Action:
    """What a rule does to the parameters it wins: draw them (:class:`Initializer`), reset their
    module (:class:`Default`) or load them from a checkpoint (:class:`~hydra_init.Pretrained`).

    An action holds only its arguments. Enum arguments are normalized when it is built
    (``Kaiming(mode="fan_in").mode is FanMode.fan_in``); :meth:`validate` refuses invalid ones.

    Class attributes:
        type_name: the name used in configs (``type: Kaiming``).
        refused_args: arguments other types have that this one refuses, with the reason.
    """

    type_name: ClassVar[str] = ""
    refused_args: ClassVar[dict[str, str]] = {}

    def __post_init__(self) -> None:
        for name, kind in _enum_fields(type(self)).items():
            value = getattr(self, name)
            if isinstance(value, str) and value in kind._value2member_map_:
                object.__setattr__(self, name, kind(value))  # an invalid value is validate()'s to refuse

    def validate(self, key: str) -> None:
        """Check the arguments; ``key`` is the config path used in error messages.

        Runs once, when the config is parsed (Python-built rules included).
        """
        for name, kind in _enum_fields(type(self)).items():
            value = getattr(self, name)
            if value is not None and not isinstance(value, kind):
                valid = [m.value for m in kind]
                raise InitConfigError(
                    f"{key}.{name}", f"invalid value {value!r}", valid=", ".join(valid),
                    hint=did_you_mean(str(value), valid),
                )

    def args(self) -> dict[str, Any]:
        """The arguments, for reports (Enums as their values)."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = value.value if isinstance(value, enum.Enum) else value
        return out

    def describe(self) -> str:
        """The action in one line, without the bias arguments.

        >>> Kaiming().describe()
        'Kaiming(a=0.0, mode=fan_out, nonlinearity=relu, distribution=normal)'
        """
        inner = ", ".join(
            f"{k}={v}" for k, v in self.args().items() if k not in ("bias", "bias_prob")
        )
        return f"{self.type_name}({inner})"


@dataclass
class Initializer(Action):
    """Base of the initializers that draw (or compute) each tensor's values.

    Every initializer fills ``bias``-like parameters selected by default with the
    constant ``bias`` (or with ``-log((1-p)/p)`` when ``bias_prob=p`` is given).
    :meth:`draw` maps a weight shape to what the weight is filled with.

    Class attributes:
        min_dims: the fewest dimensions a weight it draws may have (2 for fan-based ones).
    """

    bias: float = 0.0
    bias_prob: float | None = None

    min_dims: ClassVar[int] = 0

    def validate(self, key: str) -> None:
        super().validate(key)
        validate_bias(self.bias, self.bias_prob, key)

    @property
    def bias_value(self) -> float:
        """The constant written to bias-like parameters."""
        return self.bias if self.bias_prob is None else bias_from_prob(self.bias_prob)

    def draw(self, shape: torch.Size) -> Draw:
        """What a weight of ``shape`` is filled with."""
        raise NotImplementedError


@dataclass
class Constant(Initializer):
    """Fill the weight with ``val`` (mmengine ``Constant``).

    >>> Constant(val=1.0).draw(torch.Size([4]))
    FillDraw(value=1.0)
    """

    val: float = field(kw_only=True)  # required: a Constant without a value is a typo, not a zero
    type_name: ClassVar[str] = "Constant"

    def draw(self, shape: torch.Size) -> Draw:
        return FillDraw(float(self.val))


@dataclass
class Zeros(Initializer):
    """Fill the weight with 0 (``Constant(val=0)``)."""

    type_name: ClassVar[str] = "Zeros"

    def draw(self, shape: torch.Size) -> Draw:
        return FillDraw(0.0)


@dataclass
class Ones(Initializer):
    """Fill the weight with 1 (``Constant(val=1)``), e.g. norm-layer scales."""

    type_name: ClassVar[str] = "Ones"

    def draw(self, shape: torch.Size) -> Draw:
        return FillDraw(1.0)


@dataclass
class Normal(Initializer):
    """Draw from ``N(mean, std^2)``.

    The default ``std=1`` matches mmengine and is almost never what a layer wants:
    set ``std`` (0.02 for transformers, 0.01 for detection heads).

    >>> Normal(std=0.02).draw(torch.Size([8, 8]))
    NormalDraw(mean=0.0, std=0.02)
    """

    mean: float = 0.0
    std: float = 1.0
    type_name: ClassVar[str] = "Normal"

    def validate(self, key: str) -> None:
        super().validate(key)
        _check(self.std >= 0, f"{key}.std", f"std={self.std} is negative", "std >= 0")

    def draw(self, shape: torch.Size) -> Draw:
        if self.std == 0:  # degenerate, as in torch and mmengine: every value is the mean
            return FillDraw(float(self.mean))
        return NormalDraw(float(self.mean), float(self.std))


@dataclass
class TruncNormal(Initializer):
    """Draw from ``N(mean, std^2)`` truncated to ``[a, b]``.

    ``a`` and ``b`` are absolute values by default (mmengine, ``torch.nn.init``).
    With ``bound_unit: std`` they are multiples of ``std`` around ``mean`` (timm's
    ``trunc_normal_tf_``).

    Note the mmengine default ``a=-2, b=2`` is absolute: at ``std=0.02`` the
    bounds sit 100 std away and truncate nothing. Write ``a=-2, b=2,
    bound_unit=std`` to truncate at two standard deviations.

    >>> TruncNormal(std=0.02, a=-2, b=2, bound_unit="std").draw(torch.Size([4, 4]))
    TruncNormalDraw(mean=0.0, std=0.02, a=-0.04, b=0.04)
    """

    mean: float = 0.0
    std: float = 1.0
    a: float = -2.0
    b: float = 2.0
    bound_unit: BoundUnit = BoundUnit.absolute
    type_name: ClassVar[str] = "TruncNormal"

    def validate(self, key: str) -> None:
        super().validate(key)
        _check(self.std > 0, f"{key}.std", f"std={self.std} is not positive", "std > 0")
        _check(self.a < self.b, f"{key}.a", f"a={self.a} is not below b={self.b}", "a < b")

    def bounds(self) -> tuple[float, float]:
        """The absolute truncation interval."""
        if self.bound_unit is BoundUnit.std:
            return self.mean + self.a * self.std, self.mean + self.b * self.std
        return float(self.a), float(self.b)

    def draw(self, shape: torch.Size) -> Draw:
        low, high = self.bounds()
        return TruncNormalDraw(float(self.mean), float(self.std), low, high)


@dataclass
class Uniform(Initializer):
    """Draw from ``U(a, b)``.

    The default ``[0, 1]`` matches mmengine; it is all-positive and large, so set
    ``a`` and ``b`` (e.g. ``a=-0.1, b=0.1``).

    >>> Uniform(a=-0.1, b=0.1).draw(torch.Size([3]))
    UniformDraw(low=-0.1, high=0.1)
    """

    a: float = 0.0
    b: float = 1.0
    type_name: ClassVar[str] = "Uniform"

    def validate(self, key: str) -> None:
        super().validate(key)
        _check(self.a <= self.b, f"{key}.a", f"a={self.a} is above b={self.b}", "a <= b")

    def draw(self, shape: torch.Size) -> Draw:
        if self.a == self.b:  # degenerate, as in torch and mmengine: every value is a
            return FillDraw(float(self.a))
        return UniformDraw(float(self.a), float(self.b))


def _variance_scaling_draw(
    shape: torch.Size, scale: float, mode: FanMode, distribution: Distribution
) -> Draw:
    fan_in, fan_out = fans(shape)
    fan = {
        FanMode.fan_in: fan_in,
        FanMode.fan_out: fan_out,
        FanMode.fan_avg: (fan_in + fan_out) / 2.0,
    }[mode]
    variance = scale / max(1.0, fan)
    if distribution is Distribution.normal:
        return NormalDraw(0.0, math.sqrt(variance))
    if distribution is Distribution.uniform:
        bound = math.sqrt(3.0 * variance)
        return UniformDraw(-bound, bound)
    std = math.sqrt(variance) / _TRUNCATED_STD_AT_2
    return TruncNormalDraw(0.0, std, -2.0 * std, 2.0 * std)


@dataclass
class VarianceScaling(Initializer):
    """``variance = scale / fan``, drawn from a normal, uniform or truncated normal.

    The general rule behind Xavier, Kaiming and LeCun (JAX/Flax
    ``variance_scaling``). ``truncated_normal`` truncates at ±2 std and rescales
    so the variance stays ``scale / fan``.

    >>> VarianceScaling(scale=2.0, mode="fan_in", distribution="normal").draw(torch.Size([8, 2]))
    NormalDraw(mean=0.0, std=1.0)
    """

    scale: float = 1.0
    mode: FanMode = FanMode.fan_in
    distribution: Distribution = Distribution.truncated_normal
    type_name: ClassVar[str] = "VarianceScaling"
    min_dims: ClassVar[int] = 2

    def validate(self, key: str) -> None:
        super().validate(key)
        _check(self.scale > 0, f"{key}.scale", f"scale={self.scale} is not positive", "scale > 0")

    def draw(self, shape: torch.Size) -> Draw:
        return _variance_scaling_draw(shape, self.scale, self.mode, self.distribution)


@dataclass
class Xavier(Initializer):
    """Glorot & Bengio (2010): ``std = gain * sqrt(2 / (fan_in + fan_out))``.

    ``distribution`` defaults to ``normal`` as in mmengine (``torch.nn.init`` has
    both ``xavier_normal_`` and ``xavier_uniform_``).

    >>> Xavier(distribution="uniform").draw(torch.Size([3, 3]))
    UniformDraw(low=-1.0, high=1.0)
    """

    gain: float = 1.0
    distribution: Distribution = Distribution.normal
    type_name: ClassVar[str] = "Xavier"
    min_dims: ClassVar[int] = 2

    def validate(self, key: str) -> None:
        super().validate(key)
        _check(self.gain > 0, f"{key}.gain", f"gain={self.gain} is not positive", "gain > 0")

    def draw(self, shape: torch.Size) -> Draw:
        return _variance_scaling_draw(shape, self.gain**2, FanMode.fan_avg, self.distribution)


@dataclass
class Kaiming(Initializer):
    """He et al. (2015): ``std = gain(nonlinearity, a) / sqrt(fan)``.

    Defaults follow mmengine: ``mode=fan_out``, ``nonlinearity=relu``,
    ``distribution=normal`` (torchvision's ResNet recipe).

    >>> Kaiming(mode="fan_in").draw(torch.Size([2, 8]))
    NormalDraw(mean=0.0, std=0.5)
    """

    a: float = 0.0
    mode: FanMode = FanMode.fan_out
    nonlinearity: Nonlinearity = Nonlinearity.relu
    distribution: Distribution = Distribution.normal
    type_name: ClassVar[str] = "Kaiming"
    min_dims: ClassVar[int] = 2

    def validate(self, key: str) -> None:
        super().validate(key)
        _check(
            self.mode is not FanMode.fan_avg,
            f"{key}.mode",
            "Kaiming has no fan_avg mode",
            "fan_in, fan_out",
            "use Xavier or VarianceScaling(mode=fan_avg) for the averaged fan",
        )

    def draw(self, shape: torch.Size) -> Draw:
        gain = torch.nn.init.calculate_gain(self.nonlinearity.value, self.a)
        return _variance_scaling_draw(shape, gain**2, self.mode, self.distribution)


@dataclass
class Caffe2Xavier(Initializer):
    """Caffe2's ``XavierFill``: uniform with ``bound = sqrt(3 / fan_in)``.

    The same as ``Kaiming(a=1, mode=fan_in, nonlinearity=leaky_relu,
    distribution=uniform)``, which is how mmengine defines it.

    >>> Caffe2Xavier().draw(torch.Size([1, 3]))
    UniformDraw(low=-1.0, high=1.0)
    """

    type_name: ClassVar[str] = "Caffe2Xavier"
    min_dims: ClassVar[int] = 2

    def draw(self, shape: torch.Size) -> Draw:
        return _variance_scaling_draw(shape, 1.0, FanMode.fan_in, Distribution.uniform)


@dataclass
class LecunNormal(Initializer):
    """LeCun normal: ``VarianceScaling(1, fan_in, truncated_normal)`` as in JAX and timm.

    >>> LecunNormal().draw(torch.Size([4, 16])).std > 0.25
    True
    """

    type_name: ClassVar[str] = "LecunNormal"
    min_dims: ClassVar[int] = 2

    def draw(self, shape: torch.Size) -> Draw:
        return _variance_scaling_draw(
            shape, 1.0, FanMode.fan_in, Distribution.truncated_normal
        )


@dataclass
class Orthogonal(Initializer):
    """A (semi-)orthogonal matrix scaled by ``gain`` (Saxe et al. 2013).

    Needs the whole tensor (a QR decomposition), so under sharding each rank
    computes the full matrix deterministically and keeps its slice.

    >>> Orthogonal(gain=2 ** 0.5).draw(torch.Size([4, 4]))
    OrthogonalDraw(gain=1.4142135623730951)
    """

    gain: float = 1.0
    type_name: ClassVar[str] = "Orthogonal"
    min_dims: ClassVar[int] = 2

    def draw(self, shape: torch.Size) -> Draw:
        return OrthogonalDraw(float(self.gain))


@dataclass
class Dirac(Initializer):
    """Identity-preserving conv weights (``torch.nn.init.dirac_``), 3-D to 5-D.

    >>> Dirac().draw(torch.Size([8, 8, 3, 3]))
    DiracDraw(groups=1)
    """

    groups: int = 1
    type_name: ClassVar[str] = "Dirac"
    min_dims: ClassVar[int] = 2

    def validate(self, key: str) -> None:
        super().validate(key)
        _check(self.groups >= 1, f"{key}.groups", f"groups={self.groups}", "groups >= 1")

    def draw(self, shape: torch.Size) -> Draw:
        # Checked here, while planning: torch.nn.init.dirac_ would only fail mid-write.
        if not 3 <= len(shape) <= 5:
            raise ValueError("Dirac needs a 3-D to 5-D conv weight; use Eye for 2-D weights")
        if shape[0] % int(self.groups):
            raise ValueError(f"{shape[0]} output channels do not split into groups={self.groups}")
        return DiracDraw(int(self.groups))


@dataclass
class Eye(Initializer):
    """The identity matrix for 2-D weights (``torch.nn.init.eye_``).

    >>> Eye().draw(torch.Size([3, 3]))
    EyeDraw()
    """

    type_name: ClassVar[str] = "Eye"
    min_dims: ClassVar[int] = 2

    def draw(self, shape: torch.Size) -> Draw:
        if len(shape) != 2:  # checked while planning, not by torch.nn.init.eye_ mid-write
            raise ValueError("Eye needs a 2-D weight; use Dirac for conv weights")
        return EyeDraw()


@dataclass
class Default(Action):
    """The module's own ``reset_parameters()`` (PyTorch's default init).

    Works per module, not per tensor: every parameter of a module it selects is
    reset. With a seed the reset runs under a generator derived from the seed and
    the module path, so it is reproducible too. Its parameters are reported with
    source ``reset``.
    """

    type_name: ClassVar[str] = "Default"
    refused_args: ClassVar[dict[str, str]] = {
        "bias": "Default resets biases with the module's own reset_parameters()",
        "bias_prob": "Default resets biases with the module's own reset_parameters()",
    }

    # Per-module hooks; subclasses (hydra_init.compat's registered classes) run something else.
    def can_reset(self, module: torch.nn.Module) -> bool:
        """Whether :meth:`reset` can run on ``module`` (checked while planning)."""
        return callable(getattr(module, "reset_parameters", None)) or callable(
            getattr(module, "_reset_parameters", None)
        )

    def reset(self, module: torch.nn.Module) -> None:
        """Write ``module``'s parameters: its own ``reset_parameters()``."""
        (getattr(module, "reset_parameters", None) or module._reset_parameters)()

    def reset_description(self, module: torch.nn.Module) -> str:
        """The report's initializer text for a module this rule resets."""
        return f"{type(module).__name__}.reset_parameters()"


REGISTRY: dict[str, type[Action]] = {
    cls.type_name: cls
    for cls in (
        Constant,
        Zeros,
        Ones,
        Normal,
        TruncNormal,
        Uniform,
        Xavier,
        Kaiming,
        Caffe2Xavier,
        LecunNormal,
        VarianceScaling,
        Orthogonal,
        Dirac,
        Eye,
        Default,
    )
}
"""Config ``type`` name -> action class. :func:`register_initializer` adds to it; see
:func:`initializer_types` for a read-only view."""


def initializer_types() -> dict[str, type[Action]]:
    """Every config ``type`` name and its class (a copy: register with :func:`register_initializer`).

    >>> "Kaiming" in initializer_types() and "Pretrained" in initializer_types()
    True
    """
    return dict(REGISTRY)


def register_initializer(cls: type[Initializer]) -> type[Initializer]:
    """Class decorator: make a custom initializer usable as ``type: <type_name>``.

    The class is a dataclass subclass of :class:`Initializer` with a ``type_name``
    and a ``draw(shape)`` returning a :class:`~hydra_init.sampling.draws.Draw`.

    >>> from dataclasses import dataclass
    >>> @register_initializer
    ... @dataclass
    ... class HalfNormal(Initializer):
    ...     std: float = 1.0
    ...     type_name: ClassVar[str] = "HalfNormal"
    ...     def draw(self, shape):
    ...         return NormalDraw(0.0, self.std / 2)
    >>> REGISTRY["HalfNormal"] is HalfNormal
    True
    >>> del REGISTRY["HalfNormal"]

    Arguments that no built-in initializer has are not part of the Hydra schema
    (:class:`~hydra_init.integration.schema.RuleConfig` is generated at import), so set them
    from Python or plain dict configs; Hydra presets can use the built-in names.
    """
    if not (isinstance(cls, type) and issubclass(cls, Initializer) and dataclasses.is_dataclass(cls)):
        raise TypeError("register_initializer expects a dataclass subclass of Initializer")
    if not cls.type_name:
        raise TypeError(f"{cls.__name__} needs a type_name class attribute")
    existing = REGISTRY.get(cls.type_name)
    if existing is not None and existing is not cls:
        raise ValueError(f"an initializer named {cls.type_name!r} is already registered")
    REGISTRY[cls.type_name] = cls
    return cls


from .pretrained.spec import Pretrained  # noqa: E402  (a loading action; it subclasses Action)

REGISTRY[Pretrained.type_name] = Pretrained
