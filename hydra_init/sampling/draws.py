"""What a tensor is filled with: small frozen dataclasses, one per kind of draw.

Initializers map a weight shape to a draw (:meth:`hydra_init.Initializer.draw`);
:mod:`hydra_init.sampling` turns draws into values. ``elementwise`` draws can be
tiled and sharded; the others need the whole tensor.

>>> NormalDraw(0.0, 0.02).elementwise, OrthogonalDraw(1.0).elementwise
(True, False)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

__all__ = [
    "DiracDraw",
    "Draw",
    "EyeDraw",
    "FillDraw",
    "NormalDraw",
    "OrthogonalDraw",
    "TruncNormalDraw",
    "UniformDraw",
]


@dataclass(frozen=True)
class Draw:
    """What to fill a tensor with. ``elementwise`` draws can be tiled and sharded."""

    elementwise: ClassVar[bool] = True


@dataclass(frozen=True)
class FillDraw(Draw):
    """Every element equals ``value``."""

    value: float


@dataclass(frozen=True)
class NormalDraw(Draw):
    """``N(mean, std^2)``."""

    mean: float
    std: float


@dataclass(frozen=True)
class UniformDraw(Draw):
    """``U(low, high)``."""

    low: float
    high: float


@dataclass(frozen=True)
class TruncNormalDraw(Draw):
    """``N(mean, std^2)`` conditioned on ``a <= x <= b`` (absolute bounds, may be infinite)."""

    mean: float
    std: float
    a: float
    b: float


@dataclass(frozen=True)
class OrthogonalDraw(Draw):
    """A (semi-)orthogonal matrix times ``gain``; needs the whole tensor."""

    gain: float
    elementwise: ClassVar[bool] = False


@dataclass(frozen=True)
class DiracDraw(Draw):
    """Identity-preserving convolution kernel (deterministic)."""

    groups: int = 1
    elementwise: ClassVar[bool] = False


@dataclass(frozen=True)
class EyeDraw(Draw):
    """Identity matrix (deterministic)."""

    elementwise: ClassVar[bool] = False
