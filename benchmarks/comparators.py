"""What a user would run instead, written as well as a good engineer would write it.

* :func:`limit` - the floor: torch's own CPU sampler drawing the same number of
  values with one generator per thread, the threads in parallel, each thread
  filling its part in cache-sized chunks (torch's ``normal_`` makes two passes,
  uniforms then Box-Muller, which stay in cache on a chunk; ``normal_`` and
  ``uniform_`` are serial for one generator).
  This is the best torch's kernels can do on this machine.
* :func:`timm_trunc_normal_` - the truncated normal timm (and mmengine, which
  took it from timm) use for ViTs, written here from its algorithm because timm
  cannot be imported in this environment (it needs torchvision): a uniform draw on
  ``[2 F(a) - 1, 2 F(b) - 1]`` (``F`` the normal CDF), then ``erfinv``, scale,
  shift and clamp. Same passes over memory, same kernels as timm's.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import torch

__all__ = ["limit", "timm_trunc_normal_"]


def _cdf(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def timm_trunc_normal_(tensor: torch.Tensor, mean: float = 0.0, std: float = 1.0,
                       a: float = -2.0, b: float = 2.0) -> torch.Tensor:
    """timm's ``trunc_normal_`` algorithm (inverse CDF of a uniform draw); absolute bounds."""
    lo, hi = _cdf((a - mean) / std), _cdf((b - mean) / std)
    with torch.no_grad():
        tensor.uniform_(2.0 * lo - 1.0, 2.0 * hi - 1.0)
        tensor.erfinv_()
        tensor.mul_(std * math.sqrt(2.0))
        tensor.add_(mean)
        tensor.clamp_(min=a, max=b)
    return tensor


_pools: dict[int, ThreadPoolExecutor] = {}


CHUNK = 1 << 17  # 512 KiB of float32: stays in a core's L2 cache between normal_'s two passes


def limit(numel: int, threads: int, kind: str = "normal") -> Callable[[], None]:
    """A function drawing ``numel`` values with torch's sampler, one generator per thread.

    The buffer is cut into ``threads`` equal contiguous parts, each drawn by its
    own generator on its own thread (torch releases the GIL in its kernels), in
    chunks of :data:`CHUNK` values (cache-sized, like hydra_init's tiles, but
    without reseeding a generator per chunk).
    """
    buf = torch.empty(numel)
    parts = [list(part.split(CHUNK)) for part in buf.chunk(threads)]
    gens = [torch.Generator().manual_seed(i) for i in range(len(parts))]
    pool = _pools.setdefault(threads, ThreadPoolExecutor(max_workers=threads))
    method = {"normal": torch.Tensor.normal_, "uniform": torch.Tensor.uniform_}[kind]

    def draw(pair) -> None:
        chunks, gen = pair
        with torch.no_grad():
            for chunk in chunks:
                method(chunk, generator=gen)

    def run() -> None:
        list(pool.map(draw, zip(parts, gens, strict=True)))

    return run
