"""Custom initializers that bring their own draws (used by test_custom_draws.py and _dist_worker.py).

``Laplace`` is elementwise: its draw implements only ``fill_from`` (inverse CDF of
uniform proposals), so tiles, small batches and shards all go through it.
``SignedPermutation`` is whole-tensor: a random signed permutation matrix from the
key (a row-major argsort of seeded uniforms), implemented by ``materialize``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch

from hydra_init.initializers import REGISTRY, Initializer, register_initializer
from hydra_init.sampling import Draw, UniformDraw


@dataclass(frozen=True)
class LaplaceDraw(Draw):
    """Laplace(0, scale): ``-scale * sign(u) * log(1 - 2|u|)`` for ``u`` uniform on [-1/2, 1/2)."""

    scale: float

    def fill_from(self, buf: torch.Tensor, src) -> None:
        src.uniform(buf, None)
        u = buf.sub_(0.5)
        sign = torch.sign(u)
        buf.copy_(u.abs_().mul_(-2.0).log1p_().mul_(-self.scale).mul_(sign))


@dataclass(frozen=True)
class SignedPermutationDraw(Draw):
    """A square matrix with one ``±gain`` per row and column, from the key."""

    gain: float
    elementwise: ClassVar[bool] = False

    def materialize(self, shape, key, dtype, device) -> torch.Tensor:
        rows, cols = shape[0], math.prod(shape[1:])
        noise = UniformDraw(0.0, 1.0).materialize((2, rows), key, torch.float64, device)
        perm = torch.argsort(noise[0]) % cols
        signs = torch.where(noise[1] < 0.5, -self.gain, self.gain).double()
        out = torch.zeros(rows, cols, dtype=torch.float64, device=device)
        out[torch.arange(rows), perm] = signs
        return out.view(shape).to(dtype)


@dataclass
class Laplace(Initializer):
    scale: float = 1.0
    type_name: ClassVar[str] = "TestLaplace"

    def draw(self, shape: torch.Size) -> Draw:
        return LaplaceDraw(float(self.scale))


@dataclass
class SignedPermutation(Initializer):
    gain: float = 1.0
    needs_fan: ClassVar[bool] = True
    type_name: ClassVar[str] = "TestSignedPermutation"

    def draw(self, shape: torch.Size) -> Draw:
        return SignedPermutationDraw(float(self.gain))


def register() -> None:
    """Register both (idempotent)."""
    for cls in (Laplace, SignedPermutation):
        if REGISTRY.get(cls.type_name) is not cls:
            register_initializer(cls)
