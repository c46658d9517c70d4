"""mmengine's initializer classes and its ``WEIGHT_INITIALIZERS`` registry (mmcv 1.x: ``INITIALIZERS``).

Each class takes mmengine's constructor arguments, checks them as mmengine does
(``TypeError`` for a bad ``bias``, ``bias_prob`` or ``layer``, as dual-typed
:class:`~hydra_init.InitConfigError`), and is called on a module:

>>> import torch.nn as nn
>>> model = nn.Sequential(nn.Conv2d(3, 2, 3), nn.ReLU(), nn.Linear(2, 2))
>>> _ = ConstantInit(val=1, bias=2, layer="Conv2d")(model)
>>> model[0].weight.detach().unique().tolist(), model[0].bias.detach().unique().tolist()
([1.0], [2.0])

A call runs one :func:`hydra_init.compat.initialize` on the module, so the
values come from the engine (one implementation of every formula) and the call
returns its report.

A class object works as ``type`` in ``init_cfg`` dicts
(``dict(type=KaimingInit, layer='Conv2d')``), and a class of your own becomes a
name that ``init_cfg`` dicts and native configs accept once registered:

>>> import torch
>>> from hydra_init.compat import initialize
>>> @WEIGHT_INITIALIZERS.register_module()
... class HalfInit(BaseInit):
...     def __init__(self, scale=0.5, **kwargs):
...         super().__init__(**kwargs)
...         self.scale = scale
...     def __call__(self, module):
...         with torch.no_grad():
...             module.weight.mul_(self.scale)
>>> fc = nn.Linear(2, 2)
>>> before = fc.weight.detach().clone()
>>> report = initialize(fc, dict(type="HalfInit", layer="Linear", scale=0.0))
>>> fc.weight.detach().abs().sum().item(), report["weight"].init
(0.0, 'HalfInit(scale=0.0)')
>>> WEIGHT_INITIALIZERS.unregister("HalfInit")

A registered class runs once on every module its rule selects (the modules
owning a selected ``weight`` or ``bias``), with ``wholemodule=True``, under a
seeded generator; its writes are reported per module.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Optional

from torch import nn

from ..engine.rules import Rule
from ..errors import InitConfigError, did_you_mean
from ..initializers import (
    REGISTRY,
    Caffe2Xavier,
    Constant,
    Default,
    Initializer,
    Kaiming,
    Normal,
    Pretrained,
    TruncNormal,
    Uniform,
    Xavier,
    validate_bias,
)
from .errors import dual_error, mmengine_errors

__all__ = [
    "INITIALIZERS",
    "WEIGHT_INITIALIZERS",
    "BaseInit",
    "Caffe2XavierInit",
    "ConstantInit",
    "InitRegistry",
    "KaimingInit",
    "NormalInit",
    "PretrainedInit",
    "TruncNormalInit",
    "UniformInit",
    "XavierInit",
]


class BaseInit:
    """mmengine's ``BaseInit``: ``bias``, ``bias_prob`` and ``layer``, checked as mmengine does.

    The built-in classes pass their arguments to ``super().__init__`` as
    keywords and are checked at once, by the engine. Calling an instance on a
    module initializes it; a class of your own overrides ``__call__(module)`` as
    in mmengine, and its class object works as ``type`` in ``init_cfg`` dicts.

    >>> KaimingInit(layer="Conv2d", bias_prob=0.01).layer
    ['Conv2d']
    >>> try:
    ...     ConstantInit(val=1, bias="1")
    ... except TypeError as exc:
    ...     print(exc)
    ConstantInit.bias: expected a number, got '1'
    """

    engine: ClassVar[type[Initializer] | None] = None
    """The engine initializer the arguments describe (set on each built-in class, inherited)."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__module__ != __name__:  # a class of the user's: its own engine type, per class
            cls.hydra_init_type = _user_native(cls, cls.__name__)

    def __init__(
        self, *, bias: float = 0, bias_prob: float | None = None, layer: str | list[str] | None = None,
        **args: Any,
    ) -> None:
        name = type(self).__name__
        if not _is_number(bias):
            raise dual_error(TypeError)(f"{name}.bias", f"expected a number, got {bias!r}")
        if bias_prob is not None and not _is_number(bias_prob):
            raise dual_error(TypeError)(f"{name}.bias_prob", f"expected a number, got {bias_prob!r}",
                                        valid="a probability such as 0.01")
        if layer is not None and not (
            isinstance(layer, str)
            or (isinstance(layer, (list, tuple)) and all(isinstance(x, str) for x in layer))
        ):
            raise dual_error(TypeError)(f"{name}.layer", f"expected a name or a list of names, got {layer!r}",
                                        valid="a class name or a list of them, e.g. 'Conv2d'")
        self.wholemodule = False
        self.layer = [layer] if isinstance(layer, str) else list(layer or [])
        takes_bias = self.engine is None or "bias" not in self.engine.refused_args  # not Pretrained
        bias_args = {"bias": bias, **({"bias_prob": bias_prob} if bias_prob is not None else {})}
        self._args = {**args, **(bias_args if takes_bias else {})}
        for key, value in args.items():
            setattr(self, key, value)
        if self.engine is not None:
            self.native()  # every argument checked now, as mmengine's constructors do
        from .functional import bias_init_with_prob

        self.bias = bias if bias_prob is None else bias_init_with_prob(bias_prob)

    def native(self) -> Initializer:
        """The engine initializer these arguments describe (raises dual-typed errors)."""
        from ..engine.parse import parse_rule

        if self.engine is None:
            raise NotImplementedError(f"{type(self).__name__} must define __call__(module)")
        with mmengine_errors():
            return parse_rule({"type": self.engine, **self._args}, type(self).__name__,
                              type(self).__name__)[0].init

    def __call__(self, module: nn.Module) -> Any:
        """Initialize ``module``'s layers named by ``layer`` (all of it when ``wholemodule``)."""
        from .base_module import initialize

        native = self.native()
        if not self.wholemodule and not self.layer:
            return None  # as in mmengine: no layer, nothing matches
        layer = () if self.wholemodule else tuple(self.layer)
        return initialize(module, [Rule(native, layer=layer, label=type(self).__name__)])


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _builtin(native: type[Initializer], doc: str) -> Callable[[type[BaseInit]], type[BaseInit]]:
    def decorate(cls: type[BaseInit]) -> type[BaseInit]:
        cls.engine = cls.hydra_init_type = native
        cls.__doc__ = doc
        return cls

    return decorate


@_builtin(Constant, "mmengine ``ConstantInit``: weight ``= val``, bias ``= bias``.")
class ConstantInit(BaseInit):
    def __init__(self, val: float, **kwargs: Any) -> None:
        super().__init__(val=val, **kwargs)


@_builtin(Xavier, "mmengine ``XavierInit``: Glorot with ``gain``, ``normal`` or ``uniform``.")
class XavierInit(BaseInit):
    def __init__(self, gain: float = 1, distribution: str = "normal", **kwargs: Any) -> None:
        super().__init__(gain=gain, distribution=distribution, **kwargs)


@_builtin(Normal, "mmengine ``NormalInit``: ``N(mean, std^2)`` (``std=0`` fills ``mean``).")
class NormalInit(BaseInit):
    def __init__(self, mean: float = 0, std: float = 1, **kwargs: Any) -> None:
        super().__init__(mean=mean, std=std, **kwargs)


@_builtin(TruncNormal, "mmengine ``TruncNormalInit``: ``N(mean, std^2)`` truncated to absolute ``[a, b]``.")
class TruncNormalInit(BaseInit):
    def __init__(self, mean: float = 0, std: float = 1, a: float = -2, b: float = 2, **kwargs: Any) -> None:
        super().__init__(mean=mean, std=std, a=a, b=b, **kwargs)


@_builtin(Uniform, "mmengine ``UniformInit``: ``U(a, b)`` (``a == b`` fills ``a``).")
class UniformInit(BaseInit):
    def __init__(self, a: float = 0, b: float = 1, **kwargs: Any) -> None:
        super().__init__(a=a, b=b, **kwargs)


@_builtin(Kaiming, "mmengine ``KaimingInit``: He init, defaults ``fan_out``, ``relu``, ``normal``.")
class KaimingInit(BaseInit):
    def __init__(self, a: float = 0, mode: str = "fan_out", nonlinearity: str = "relu",
                 distribution: str = "normal", **kwargs: Any) -> None:
        super().__init__(a=a, mode=mode, nonlinearity=nonlinearity, distribution=distribution, **kwargs)


@_builtin(Caffe2Xavier, "mmengine ``Caffe2XavierInit``: Kaiming(a=1, fan_in, leaky_relu, uniform).")
class Caffe2XavierInit(BaseInit):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)


@_builtin(Pretrained, "mmengine ``PretrainedInit``: load ``checkpoint`` (under ``prefix``) into the module.")
class PretrainedInit(BaseInit):
    def __init__(self, checkpoint: str, prefix: str | None = None, map_location: str | None = "cpu") -> None:
        args = {"checkpoint": checkpoint, "prefix": prefix, "map_location": map_location}
        super().__init__(**{k: v for k, v in args.items() if v is not None})
        self.prefix, self.map_location = prefix, map_location

    def __call__(self, module: nn.Module) -> Any:
        from .base_module import initialize

        return initialize(module, {"type": "Pretrained", **self._args})


# ----------------------------------------------------------------------------- user classes
_REQUIRED = object()


def _user_native(cls: type, name: str) -> type[Initializer]:
    """An engine initializer that runs instances of the user's class on each selected module."""
    signature = [] if cls.__init__ is object.__init__ else list(
        inspect.signature(cls.__init__).parameters.values())[1:]
    params = [
        p for p in signature
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        and p.name not in ("bias", "bias_prob", "layer")
    ]
    passes_bias = any(p.kind is p.VAR_KEYWORD or p.name == "bias" for p in signature)
    own = [p.name for p in params]

    def build(self: Initializer) -> Any:
        kwargs = {k: getattr(self, k) for k in own if getattr(self, k) is not _REQUIRED}
        if passes_bias:
            kwargs["bias"] = self.bias
            if self.bias_prob is not None:
                kwargs["bias_prob"] = self.bias_prob
        return cls(**kwargs)

    def validate(self: Initializer, key: str) -> None:
        Default.validate(self, key)
        validate_bias(self.bias, self.bias_prob, key)
        missing = [k for k in own if getattr(self, k) is _REQUIRED]
        if missing:
            raise InitConfigError(f"{key}.{missing[0]}", f"{name} needs the argument {missing[0]!r}",
                                  valid=", ".join(own))
        try:
            build(self)
        except InitConfigError:
            raise
        except Exception as exc:  # the user's constructor refused the arguments: keep its type
            raise dual_error(type(exc))(key, f"{name}(...) raised {type(exc).__name__}: {exc}",
                                        valid=", ".join(own) or "no arguments") from exc

    def reset(self: Initializer, module: nn.Module) -> None:
        initializer = build(self)
        initializer.wholemodule = True
        initializer(module)

    def describe(self: Initializer) -> str:
        args = ", ".join(f"{k}={getattr(self, k)!r}" for k in own if getattr(self, k) is not _REQUIRED)
        return f"{name}({args})"

    namespace = {
        "__annotations__": {p.name: Any for p in params},
        **{p.name: _field(p.default) for p in params},
        "bias": 0.0,
        "bias_prob": None,
        "refused_args": {},
        "type_name": name,
        "validate": validate,
        "reset": reset,
        "can_reset": lambda self, module: True,
        "reset_description": lambda self, module: describe(self),
        "describe": describe,
        "__module__": cls.__module__,
        "__doc__": f"The engine side of {cls.__qualname__} (registered as {name!r}).",
    }
    namespace["__annotations__"].update(bias=float, bias_prob=Optional[float], type_name=ClassVar[str],  # noqa: UP045
                                        refused_args=ClassVar[dict])
    return dataclass(type(f"{cls.__name__}Rule", (Default,), namespace))


def _field(default: Any) -> Any:
    if default is inspect.Parameter.empty:
        return field(default=_REQUIRED)
    if isinstance(default, (list, dict, set)):
        return field(default_factory=lambda: copy.deepcopy(default))
    return field(default=default)


class InitRegistry:
    """mmengine's ``Registry`` for initializers, enough for ported code.

    ``register_module()`` (as a decorator or called with ``module=``) makes a
    class usable as ``type`` in ``init_cfg`` dicts and native configs;
    ``get``/``build``/``in``/``module_dict`` work as in mmengine.

    >>> WEIGHT_INITIALIZERS.get("Kaiming") is KaimingInit
    True
    >>> WEIGHT_INITIALIZERS.build(dict(type="Constant", val=2, layer="Linear")).val
    2
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._classes: dict[str, type] = {}

    def register_module(
        self, name: str | list[str] | None = None, force: bool = False, module: type | None = None
    ) -> Any:
        """Register ``module`` (or the decorated class) under ``name`` (default: its class name)."""
        if module is not None:
            self._register(module, name, force)
            return module

        def decorate(cls: type) -> type:
            self._register(cls, name, force)
            return cls

        return decorate

    def _register(self, cls: type, name: str | list[str] | None, force: bool) -> None:
        if not isinstance(cls, type):
            raise TypeError(f"register_module expects a class, got {cls!r}")
        names = [cls.__name__] if name is None else [name] if isinstance(name, str) else list(name)
        for key in names:
            taken = self._classes.get(key) or (REGISTRY.get(key) if key not in self._classes else None)
            if taken is not None and taken is not cls and not force:
                raise KeyError(f"{key} is already registered in {self.name}")
        native = vars(cls).get("hydra_init_type")
        if native is None:  # any class with __call__(module), as mmengine allows
            native = _user_native(cls, names[0])
            cls.hydra_init_type = native
        for key in names:
            self._classes[key] = cls
            REGISTRY[key] = native if native.type_name == key else _renamed(native, key)

    def unregister(self, name: str) -> None:
        """Remove ``name`` (tests and doctests clean up after themselves)."""
        del self._classes[name]
        REGISTRY.pop(name, None)

    def get(self, key: str | type) -> type | None:
        """The class registered as ``key`` (a class is returned as is)."""
        if isinstance(key, type):
            return key
        return self._classes.get(key) or self._classes.get(key.removesuffix("Init"))

    def build(self, cfg: Mapping[str, Any]) -> Any:
        """An instance from ``dict(type=..., **args)``."""
        args = dict(cfg)
        kind = args.pop("type", None)
        cls = self.get(kind)
        if cls is None:
            raise KeyError(f"{kind!r} is not in the {self.name} registry"
                           + (f"; {hint}" if (hint := did_you_mean(str(kind), self._classes)) else ""))
        return cls(**args)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key in self._classes

    def __len__(self) -> int:
        return len(self._classes)

    @property
    def module_dict(self) -> dict[str, type]:
        """Name -> class, as mmengine's ``Registry.module_dict``."""
        return dict(self._classes)

    def __repr__(self) -> str:
        return f"InitRegistry(name={self.name!r}, items={sorted(self._classes)})"


def _renamed(native: type[Initializer], name: str) -> type[Initializer]:
    return dataclass(type(f"{native.__name__}_{name}", (native,), {"type_name": name}))


_BUILTIN_CLASSES = (ConstantInit, XavierInit, NormalInit, TruncNormalInit, UniformInit, KaimingInit,
                    Caffe2XavierInit, PretrainedInit)

WEIGHT_INITIALIZERS = InitRegistry("weight initializer")
"""mmengine's registry of initializers; its built-in names are the engine's."""
INITIALIZERS = WEIGHT_INITIALIZERS
"""mmcv 1.x's name for the same registry."""

for _cls in _BUILTIN_CLASSES:
    WEIGHT_INITIALIZERS._classes[_cls.hydra_init_type.type_name] = _cls
