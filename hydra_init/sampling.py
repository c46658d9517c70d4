"""Seeded, tiled, parallel sampling: the values behind every initializer.

A parameter's values are a function of a 64-bit *key* (derived from the seed,
the parameter's path and its shape) and nothing else. The flattened tensor is
cut into fixed tiles of :data:`TILE` elements; tile ``i`` is drawn by its own
generator seeded from ``(key, i)``. So:

* tiles can be drawn by several threads at once (one generator each), which is
  how a 2-core machine beats a single-generator ``normal_`` loop;
* any contiguous range of the tensor (a shard) can be drawn alone, by drawing
  only the tiles it overlaps, and matches the same range of a full draw bit for
  bit, whatever the world size;
* the order in which parameters are visited does not matter.

Truncated normals are exact: out-of-bounds draws are redrawn *individually*
(not the whole tensor, as ``torch.nn.init.trunc_normal_`` does), and very
narrow intervals switch to inverse-CDF sampling in float64.

Example:
    >>> import torch
    >>> w = torch.empty(3, 4)
    >>> fill_(w, NormalDraw(0.0, 0.02), derive_key(7, "fc.weight", w.shape))
    >>> v = torch.empty(3, 4)
    >>> fill_(v, NormalDraw(0.0, 0.02), derive_key(7, "fc.weight", v.shape))
    >>> torch.equal(w, v)
    True
"""

from __future__ import annotations

import hashlib
import math
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import ClassVar

import torch

__all__ = [
    "TILE",
    "DiracDraw",
    "Draw",
    "EyeDraw",
    "FillDraw",
    "NormalDraw",
    "OrthogonalDraw",
    "TruncNormalDraw",
    "UniformDraw",
    "derive_key",
    "fill_",
    "fill_range_",
    "materialize",
    "run_parallel",
    "tile_seed",
]

TILE = 1 << 16
"""Elements per tile. Part of the value format: changing it changes seeded values."""

_MASK64 = (1 << 64) - 1


# ----------------------------------------------------------------------------- draws
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
    """``N(mean, std^2)`` conditioned on ``a <= x <= b`` (absolute bounds)."""

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


# ----------------------------------------------------------------------------- keys
def _splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def derive_key(seed: int, path: str, shape: Sequence[int]) -> int:
    """The 64-bit key of a parameter: a hash of ``(seed, path, shape)``.

    The key does not depend on the rule's arguments, so two inits from the same
    family see the same noise: sweeping ``std`` rescales one draw (common random
    numbers make init ablations cleaner).

    >>> derive_key(0, "fc.weight", (2, 3)) == derive_key(0, "fc.weight", (2, 3))
    True
    >>> derive_key(0, "fc.weight", (2, 3)) == derive_key(1, "fc.weight", (2, 3))
    False
    """
    text = f"{int(seed)}\x00{path}\x00{tuple(int(s) for s in shape)}".encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little")


def tile_seed(key: int, index: int) -> int:
    """The generator seed of tile ``index`` of the tensor with ``key``."""
    return _splitmix64((key ^ _splitmix64(index)) & _MASK64)


# ----------------------------------------------------------------------------- generators
_local = threading.local()


def _generator(device: torch.device, seed: int) -> torch.Generator:
    cache = getattr(_local, "generators", None)
    if cache is None:
        cache = _local.generators = {}
    gen = cache.get(device)
    if gen is None:
        gen = cache[device] = torch.Generator(device=device)
    gen.manual_seed(seed)
    return gen


def _phi(x: float) -> float:
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


# Below this acceptance probability, rejection costs more than inverse-CDF sampling.
_MIN_ACCEPTANCE_FOR_REJECTION = 0.3


def _trunc_normal_tile_(buf: torch.Tensor, d: TruncNormalDraw, gen: torch.Generator) -> None:
    alpha, beta = (d.a - d.mean) / d.std, (d.b - d.mean) / d.std
    acceptance = _phi(beta) - _phi(alpha)
    if acceptance >= _MIN_ACCEPTANCE_FOR_REJECTION:
        buf.normal_(d.mean, d.std, generator=gen)
        pending = ((buf < d.a) | (buf > d.b)).nonzero().squeeze(1)
        while pending.numel():
            want = pending.numel()
            fresh = torch.empty(
                int(want / acceptance * 1.1) + 16, dtype=buf.dtype, device=buf.device
            ).normal_(d.mean, d.std, generator=gen)
            fresh = fresh[(fresh >= d.a) & (fresh <= d.b)][:want]
            buf[pending[: fresh.numel()]] = fresh
            pending = pending[fresh.numel() :]
        return
    # Inverse CDF in float64; mirror right-tail intervals to the left tail, where
    # erfc keeps its precision.
    flip = alpha > 0
    lo, hi = (-beta, -alpha) if flip else (alpha, beta)
    u = torch.empty(buf.shape, dtype=torch.float64, device=buf.device)
    u.uniform_(_phi(lo), _phi(hi), generator=gen)
    z = u.mul_(2.0).sub_(1.0).erfinv_().mul_(math.sqrt(2.0))
    if flip:
        z.neg_()
    buf.copy_(z.mul_(d.std).add_(d.mean).clamp_(d.a, d.b))


def _draw_tile_(buf: torch.Tensor, draw: Draw, seed: int) -> None:
    gen = _generator(buf.device, seed)
    if isinstance(draw, NormalDraw):
        buf.normal_(draw.mean, draw.std, generator=gen)
    elif isinstance(draw, UniformDraw):
        buf.uniform_(draw.low, draw.high, generator=gen)
    elif isinstance(draw, TruncNormalDraw):
        _trunc_normal_tile_(buf, draw, gen)
    else:  # pragma: no cover - guarded by callers
        raise TypeError(f"{type(draw).__name__} is not a tiled draw")


# ----------------------------------------------------------------------------- tiling
Task = Callable[[], None]


def range_tasks(out: torch.Tensor, draw: Draw, key: int, numel: int, start: int = 0) -> list[Task]:
    """Tasks that fill ``out`` with elements ``[start, start + len(out))`` of a draw.

    ``out`` is 1-D and contiguous; ``numel`` is the size of the whole (global)
    tensor, which fixes where the tiles end.
    """
    stop = start + out.numel()
    if isinstance(draw, FillDraw):
        return [lambda: out.fill_(draw.value)]
    tasks: list[Task] = []
    for index in range(start // TILE, -(-stop // TILE)):
        lo, hi = index * TILE, min((index + 1) * TILE, numel)
        seed = tile_seed(key, index)
        if start <= lo and hi <= stop:
            view = out[lo - start : hi - start]
            tasks.append(lambda view=view, seed=seed: _draw_tile_(view, draw, seed))
        else:

            def partial(lo: int = lo, hi: int = hi, seed: int = seed) -> None:
                buf = torch.empty(hi - lo, dtype=out.dtype, device=out.device)
                _draw_tile_(buf, draw, seed)
                a, b = max(lo, start), min(hi, stop)
                out[a - start : b - start].copy_(buf[a - lo : b - lo])

            tasks.append(partial)
    return tasks


_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _workers() -> int:
    return max(1, min(torch.get_num_threads(), os.cpu_count() or 1))


def run_parallel(tasks: Sequence[Task]) -> None:
    """Run tile tasks on a thread pool (one generator per thread); inline when tiny."""
    workers = _workers()
    if workers == 1 or len(tasks) < 2:
        for task in tasks:
            task()
        return
    global _pool
    with _pool_lock:
        if _pool is None or _pool._max_workers != workers:
            _pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="hydra_init")
        pool = _pool
    chunks = [tasks[i::workers] for i in range(workers)]
    futures = [pool.submit(_run_all, chunk) for chunk in chunks if chunk]
    for future in futures:
        future.result()


def _run_all(tasks: Sequence[Task]) -> None:
    with torch.no_grad():  # grad mode is thread-local: workers need their own no_grad
        for task in tasks:
            task()


def fill_range_(
    out: torch.Tensor, draw: Draw, key: int, numel: int, start: int = 0
) -> None:
    """Fill 1-D ``out`` with elements ``[start, start + out.numel())`` of a tiled draw."""
    run_parallel(range_tasks(out, draw, key, numel, start))


# ----------------------------------------------------------------------------- whole tensors
def materialize(
    draw: Draw, shape: torch.Size, key: int, dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    """The whole tensor of a draw, computed deterministically from ``key``."""
    shape = torch.Size(shape)
    if draw.elementwise:
        out = torch.empty(shape.numel(), dtype=dtype, device=device)
        fill_range_(out, draw, key, shape.numel())
        return out.view(shape)
    if isinstance(draw, OrthogonalDraw):
        rows = shape[0]
        cols = shape.numel() // rows
        flat = torch.empty(rows * cols, dtype=torch.float32, device=device)
        fill_range_(flat, NormalDraw(0.0, 1.0), key, rows * cols)
        matrix = flat.view(rows, cols)
        if rows < cols:
            matrix = matrix.t()
        q, r = torch.linalg.qr(matrix)
        q = q * torch.sign(torch.diagonal(r, 0))
        if rows < cols:
            q = q.t()
        return (q * draw.gain).reshape(shape).to(dtype)
    out = torch.empty(shape, dtype=dtype, device=device)
    if isinstance(draw, DiracDraw):
        torch.nn.init.dirac_(out, draw.groups)
    elif isinstance(draw, EyeDraw):
        torch.nn.init.eye_(out)
    else:  # pragma: no cover
        raise TypeError(f"unknown draw {draw!r}")
    return out


def fill_(tensor: torch.Tensor, draw: Draw, key: int) -> None:
    """Fill a plain tensor in place with its draw (tiled and parallel when possible)."""
    with torch.no_grad():
        if draw.elementwise and tensor.is_contiguous():
            fill_range_(tensor.view(-1), draw, key, tensor.numel())
        else:
            tensor.copy_(materialize(draw, tensor.shape, key, tensor.dtype, tensor.device))
