"""What a tensor is filled with: small frozen dataclasses that know how to fill it.

Initializers map a weight shape to a draw (:meth:`hydra_init.Initializer.draw`);
each draw fills tensors itself, so a custom initializer can return a draw of its
own and it goes through tiles, small-tensor batches, shards and meta builds like
the built-in ones. Two kinds:

* **elementwise** draws (``elementwise = True``): element ``j`` of a tensor
  depends only on the key and ``j``, so tensors can be tiled and sharded. They
  implement :meth:`Draw.fill_from` - fill a 1-D float32/float64 buffer from a
  *proposal source* (``src.normal(out, index)`` / ``src.uniform(out, index)``
  write standard normals / ``U[0, 1)`` values) - and may override
  :meth:`Draw.fill_tile` (a whole tile from a seeded ``torch.Generator``) and
  :meth:`Draw.small_values` (many small tensors in one vectorized pass) for speed;
* **whole-tensor** draws (``elementwise = False``) implement
  :meth:`Draw.materialize`, the whole tensor computed deterministically from
  the key (the same bits on every rank of a sharded model).

A draw with ``constant = True`` (:class:`FillDraw`) has the same value at every
position whatever the key; its tensors may have any shape and are filled together
by :meth:`Draw.fill_group`.

>>> NormalDraw(0.0, 0.02).elementwise, OrthogonalDraw(1.0).elementwise
(True, False)

A custom elementwise draw needs one method (its values come from the source):

>>> import torch
>>> from dataclasses import dataclass
>>> @dataclass(frozen=True)
... class Rademacher(Draw):
...     scale: float
...     def fill_from(self, buf, src):
...         src.uniform(buf, None)
...         buf.copy_(torch.where(buf < 0.5, -self.scale, self.scale))
>>> w = Rademacher(0.1).materialize((3, 4), key=7, dtype=torch.float32, device=torch.device("cpu"))
>>> sorted(set(w.flatten().tolist())) == [-0.10000000149011612, 0.10000000149011612]
True
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Protocol

import numpy as np
import torch

if TYPE_CHECKING:
    from .tiles import Group

Restart = Callable[[], torch.Generator]
"""``restart()``: a tile's generator, seeded to the start of the tile's stream."""

__all__ = [
    "BUILTIN_DRAWS",
    "DiracDraw",
    "Draw",
    "EyeDraw",
    "FillDraw",
    "NormalDraw",
    "OrthogonalDraw",
    "Source",
    "TruncNormalDraw",
    "UniformDraw",
    "first_bits",
]


class Source(Protocol):
    """Where an elementwise draw gets its randomness (see :mod:`hydra_init.sampling.generators`).

    ``index`` is ``None`` (one proposal per element of ``out``, in order) or the
    positions of ``out``'s elements within the buffer being filled (a redraw).
    ``sequential`` sources are one stream (a torch generator); the others are
    counter-based, so an element's value depends on its own proposals only.
    """

    sequential: bool

    def normal(self, out: torch.Tensor, index: np.ndarray | None) -> None: ...

    def uniform(self, out: torch.Tensor, index: np.ndarray | None) -> None: ...


@dataclass(frozen=True)
class Draw:
    """What to fill a tensor with, and how. ``elementwise`` draws can be tiled and sharded.

    Subclasses are frozen dataclasses; an elementwise draw implements
    :meth:`fill_from`, a whole-tensor draw sets ``elementwise = False`` and
    implements :meth:`materialize`.
    """

    elementwise: ClassVar[bool] = True
    constant: ClassVar[bool] = False

    # -------------------------------------------------------------- elementwise draws
    def fill_from(self, buf: torch.Tensor, src: Source) -> None:
        """Fill 1-D float32/float64 ``buf`` with this draw, from proposals of ``src``."""
        raise TypeError(f"{type(self).__name__} is not an elementwise random draw (no fill_from)")

    def fill_tile(self, buf: torch.Tensor, gen: torch.Generator) -> None:
        """Fill 1-D ``buf`` (one whole tile) from the seeded generator ``gen``."""
        from .generators import TorchSource

        self.fill_from(buf, TorchSource(gen))

    def fill_tile_from(self, buf: torch.Tensor, restart: Restart) -> None:
        """Fill 1-D ``buf`` (one whole tile) from the generator ``restart()`` returns.

        ``restart`` may be called again to begin the tile's stream anew (what the engine
        calls; :class:`TruncNormalDraw` redraws a tile it cannot decide). The default is
        :meth:`fill_tile`.
        """
        self.fill_tile(buf, restart())

    def small_values(self, group: Group) -> np.ndarray | None:
        """All elements of a group of small tensors of this draw in one vectorized pass
        (float64, the group's outs concatenated in order), or ``None``.

        ``None`` (the default) fills each tensor with :meth:`fill_from` from the
        counter-based source; an override must return exactly those values
        (:func:`first_bits` gives the first proposal of every element).
        """
        return None

    def fill_group(self, outs: Sequence[torch.Tensor]) -> None:
        """Fill tensors of any shapes, on one device, with this ``constant`` draw."""
        raise TypeError(f"{type(self).__name__} is not a constant draw")

    # -------------------------------------------------------------- whole tensors
    def materialize(
        self, shape: Sequence[int], key: int, dtype: torch.dtype, device: torch.device
    ) -> torch.Tensor:
        """The whole tensor, computed deterministically from ``key`` (the same on every rank).

        Elementwise draws fill it through the tiled path (flat tiles,
        :func:`hydra_init.sampling.whole.materialize`); whole-tensor draws override this.
        """
        from .whole import materialize

        return materialize(self, shape, key, dtype, device)


@dataclass(frozen=True)
class FillDraw(Draw):
    """Every element equals ``value``."""

    value: float
    constant: ClassVar[bool] = True

    def fill_from(self, buf: torch.Tensor, src: Source) -> None:
        buf.fill_(self.value)

    def fill_group(self, outs: Sequence[torch.Tensor]) -> None:
        floating = [t for t in outs if t.is_floating_point()]
        if len(floating) < len(outs):  # integer/bool buffers-as-parameters: no float list add
            for t in outs:
                if not t.is_floating_point():
                    t.fill_(self.value)
        if floating:
            torch._foreach_zero_(floating)
            if self.value != 0.0:
                torch._foreach_add_(floating, self.value)


def first_bits(group: Group) -> np.ndarray:
    """The first counter-based proposal bits of every element of a small group, concatenated
    (what :class:`~hydra_init.sampling.generators.HashSource` gives each tensor's first call)."""
    from .keys import hash_bits, hash_salts

    numel, count = group.shape.numel(), len(group.keys)
    if group.positions is None:  # whole tensors: 0..n-1 each
        positions = np.tile(np.arange(numel, dtype=np.uint64), count)
    else:
        positions = group.positions.copy()  # hash_bits works in place
    return hash_bits(np.repeat(hash_salts(group.keys), numel), positions)


@dataclass(frozen=True)
class NormalDraw(Draw):
    """``N(mean, std^2)``."""

    mean: float
    std: float

    def fill_from(self, buf: torch.Tensor, src: Source) -> None:
        src.normal(buf, None)
        buf.mul_(self.std).add_(self.mean)

    def fill_tile(self, buf: torch.Tensor, gen: torch.Generator) -> None:
        buf.normal_(self.mean, self.std, generator=gen)  # one pass

    def small_values(self, group: Group) -> np.ndarray:
        from .keys import bits_to_normal

        values = bits_to_normal(first_bits(group))
        values *= self.std
        values += self.mean
        return values


@dataclass(frozen=True)
class UniformDraw(Draw):
    """``U(low, high)``."""

    low: float
    high: float

    def fill_from(self, buf: torch.Tensor, src: Source) -> None:
        src.uniform(buf, None)
        buf.mul_(self.high - self.low).add_(self.low)

    def fill_tile(self, buf: torch.Tensor, gen: torch.Generator) -> None:
        buf.uniform_(self.low, self.high, generator=gen)

    def small_values(self, group: Group) -> np.ndarray:
        from .keys import bits_to_uniform

        values = bits_to_uniform(first_bits(group))
        values *= self.high - self.low
        values += self.low
        return values


@dataclass(frozen=True)
class TruncNormalDraw(Draw):
    """``N(mean, std^2)`` conditioned on ``a <= x <= b`` (absolute bounds, may be infinite)."""

    mean: float
    std: float
    a: float
    b: float

    def fill_from(self, buf: torch.Tensor, src: Source) -> None:
        from .truncnormal import trunc_normal_

        trunc_normal_(buf, self, src)

    def fill_tile(self, buf: torch.Tensor, gen: torch.Generator) -> None:
        state = gen.get_state()

        def restart() -> torch.Generator:
            gen.set_state(state)
            return gen

        self.fill_tile_from(buf, restart)

    def fill_tile_from(self, buf: torch.Tensor, restart: Restart) -> None:
        from .truncnormal import trunc_normal_tile_

        trunc_normal_tile_(buf, self, restart)


# ----------------------------------------------------------------------------- whole-tensor draws
_qr_lock = threading.Lock()


@dataclass(frozen=True)
class OrthogonalDraw(Draw):
    """A (semi-)orthogonal matrix times ``gain``; needs the whole tensor.

    The matrix comes from a QR decomposition of a seeded normal matrix, computed
    in float64 on one thread so that every process (every rank of a sharded
    model) gets the same bits.
    """

    gain: float
    elementwise: ClassVar[bool] = False

    def materialize(
        self, shape: Sequence[int], key: int, dtype: torch.dtype, device: torch.device
    ) -> torch.Tensor:
        shape = torch.Size(shape)
        rows = shape[0]
        cols = math.prod(shape) // rows
        flat = NormalDraw(0.0, 1.0).materialize((rows * cols,), key, torch.float64, device)
        matrix = flat.view(rows, cols)
        if rows < cols:
            matrix = matrix.t()
        with _qr_lock:
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                q, r = torch.linalg.qr(matrix)
            finally:
                torch.set_num_threads(threads)
        q = q * torch.sign(torch.diagonal(r, 0))
        if rows < cols:
            q = q.t()
        return (q * self.gain).reshape(shape).to(dtype)


@dataclass(frozen=True)
class DiracDraw(Draw):
    """Identity-preserving convolution kernel (deterministic)."""

    groups: int = 1
    elementwise: ClassVar[bool] = False

    def materialize(
        self, shape: Sequence[int], key: int, dtype: torch.dtype, device: torch.device
    ) -> torch.Tensor:
        return torch.nn.init.dirac_(torch.empty(shape, dtype=dtype, device=device), self.groups)


@dataclass(frozen=True)
class EyeDraw(Draw):
    """Identity matrix (deterministic)."""

    elementwise: ClassVar[bool] = False

    def materialize(
        self, shape: Sequence[int], key: int, dtype: torch.dtype, device: torch.device
    ) -> torch.Tensor:
        return torch.nn.init.eye_(torch.empty(shape, dtype=dtype, device=device))


BUILTIN_DRAWS: frozenset[type[Draw]] = frozenset(
    {FillDraw, NormalDraw, UniformDraw, TruncNormalDraw, OrthogonalDraw, DiracDraw, EyeDraw})
"""The draws defined here: code the engine trusts not to fail on a validated tensor. Other
(custom) draws run before them, under the execution guard (:mod:`hydra_init.engine.restore`)."""
