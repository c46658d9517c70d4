"""Jobs and tasks: tiles of large tensors, one vectorized batch of small ones, grouped fills.

A :class:`Job` asks for elements ``[start, start + out.numel())`` of one tensor's draw;
:func:`job_tasks` turns jobs into tasks for :func:`~hydra_init.sampling.pool.run_parallel`.
How jobs are batched never changes values.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import NamedTuple

import numpy as np
import torch

from .draws import Draw, FillDraw, NormalDraw, TruncNormalDraw, UniformDraw
from .generators import HashSource, TorchSource, generator
from .keys import SMALL, bits_to_normal, bits_to_uniform, hash_bits, hash_salts, tile_seed, tile_size
from .pool import run_parallel
from .truncnormal import trunc_normal_

__all__ = ["Job", "Task", "fill_range_", "job_tasks", "range_tasks"]

# ----------------------------------------------------------------------------- one tile / one small tensor
def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _draw_into_(buf: torch.Tensor, draw: Draw, src) -> None:
    """Fill 1-D float32/float64 ``buf`` with ``draw`` from a proposal source."""
    if isinstance(draw, NormalDraw):
        src.normal(buf, None)
        buf.mul_(draw.std).add_(draw.mean)
    elif isinstance(draw, UniformDraw):
        src.uniform(buf, None)
        buf.mul_(draw.high - draw.low).add_(draw.low)
    elif isinstance(draw, TruncNormalDraw):
        trunc_normal_(buf, draw, src)
    else:  # pragma: no cover - guarded by callers
        raise TypeError(f"{type(draw).__name__} is not an elementwise random draw")


def _draw_tile_(buf: torch.Tensor, draw: Draw, seed: int) -> None:
    """Fill ``buf`` (one whole tile) from the generator of ``seed``."""
    gen = generator(buf.device, seed)
    if isinstance(draw, NormalDraw):  # the common case, in one pass
        buf.normal_(draw.mean, draw.std, generator=gen)
    elif isinstance(draw, UniformDraw):
        buf.uniform_(draw.low, draw.high, generator=gen)
    else:
        _draw_into_(buf, draw, TorchSource(gen))


# ----------------------------------------------------------------------------- jobs and tasks
Task = Callable[[], None]


class Job(NamedTuple):
    """Fill ``out`` with elements ``[start, start + out.numel())`` of a tensor's draw.

    ``out`` is contiguous, and 1-D unless the job is a :class:`FillDraw` or
    small (``numel <= SMALL``: then any shape, read in row-major order);
    ``numel`` is the size of the whole (global) tensor, which decides the
    generator and where tiles end. ``key`` is unused by fills.
    """

    out: torch.Tensor
    draw: Draw
    key: int
    numel: int
    start: int = 0


def _tile_tasks(job: Job) -> list[Task]:
    out, draw, key, numel, start = job.out, job.draw, job.key, job.numel, job.start
    stop = start + out.numel()
    tile = tile_size(out.device)
    direct = out.dtype == _compute_dtype(out.dtype)
    tasks: list[Task] = []
    for index in range(start // tile, -(-stop // tile)):
        lo, hi = index * tile, min((index + 1) * tile, numel)
        seed = tile_seed(key, index)
        if direct and start <= lo and hi <= stop:
            view = out[lo - start : hi - start]
            tasks.append(lambda view=view, seed=seed: _draw_tile_(view, draw, seed))
            continue

        def partial(lo: int = lo, hi: int = hi, seed: int = seed) -> None:
            buf = torch.empty(hi - lo, dtype=_compute_dtype(out.dtype), device=out.device)
            _draw_tile_(buf, draw, seed)
            a, b = max(lo, start), min(hi, stop)
            out[a - start : b - start].copy_(buf[a - lo : b - lo])

        tasks.append(partial)
    return tasks




def _small_normal_uniform(jobs: Sequence[Job]) -> np.ndarray:
    """All elements of small Normal/Uniform jobs in one vectorized pass (float64)."""
    draws = [j.draw for j in jobs]
    counts = np.array([j.out.numel() for j in jobs], dtype=np.int64)
    starts = np.array([j.start for j in jobs], dtype=np.int64)
    normal = np.array([type(d) is NormalDraw for d in draws], dtype=bool)
    scale = np.array([d.std if type(d) is NormalDraw else d.high - d.low for d in draws], dtype=np.float64)
    shift = np.array([d.mean if type(d) is NormalDraw else d.low for d in draws], dtype=np.float64)
    offsets = np.cumsum(counts) - counts
    positions = np.arange(int(counts.sum()), dtype=np.int64)
    positions += np.repeat(starts - offsets, counts)
    bits = hash_bits(np.repeat(hash_salts([j.key for j in jobs]), counts), positions.astype(np.uint64))
    if normal.all():
        values = bits_to_normal(bits)
    elif not normal.any():
        values = bits_to_uniform(bits)
    else:
        values = np.where(np.repeat(normal, counts), bits_to_normal(bits), bits_to_uniform(bits))
    values *= np.repeat(scale, counts)
    values += np.repeat(shift, counts)
    return values


_NUMPY_DTYPES = {torch.float32: np.float32, torch.float64: np.float64}


def _small_group_(jobs: Sequence[Job], shape: torch.Size) -> None:
    """Fill small Normal/Uniform jobs whose outputs share one shape, device and dtype."""
    values = _small_normal_uniform(jobs)
    out = jobs[0].out
    cast = _NUMPY_DTYPES.get(out.dtype)
    flat = torch.from_numpy(values.astype(cast)) if cast else torch.from_numpy(values).to(out.dtype)
    parts = flat.to(out.device).view(len(jobs), *shape).unbind(0)  # views without a Python loop
    torch._foreach_copy_([j.out for j in jobs], list(parts))


def _small_task(jobs: Sequence[Job]) -> Task:
    def run() -> None:
        groups: dict[tuple, list[Job]] = {}
        for j in jobs:  # values are per element, so any grouping gives the same values
            out = j.out
            trunc = type(j.draw) is TruncNormalDraw
            groups.setdefault((out.shape, out.device, out.dtype, trunc), []).append(j)
        for (shape, _, _, trunc), members in groups.items():
            if not trunc:
                _small_group_(members, shape)
                continue
            for j in members:
                buf = torch.empty(j.out.numel(), dtype=torch.float64)
                trunc_normal_(buf, j.draw, HashSource(j.key, j.start))
                j.out.copy_(buf.view(j.out.shape))

    return run


def _fill_task(jobs: Sequence[Job]) -> Task:
    def run() -> None:
        by_device: dict[torch.device, list[Job]] = {}
        for j in jobs:
            if j.out.is_floating_point():
                by_device.setdefault(j.out.device, []).append(j)
            else:  # integer/bool buffers-as-parameters: a float scalar list cannot be added to them
                j.out.fill_(j.draw.value)
        for group in by_device.values():
            outs = [j.out for j in group]
            torch._foreach_zero_(outs)
            if any(j.draw.value != 0.0 for j in group):
                torch._foreach_add_(outs, [float(j.draw.value) for j in group])

    return run


_SMALL_BATCH_ELEMENTS = 1 << 18  # a batch task's size: big enough to amortize, small enough to balance


def job_tasks(jobs: Iterable[Job]) -> list[Task]:
    """Tasks that execute ``jobs``: tiles of large tensors, batches of small ones, fills.

    How jobs are batched never changes values (see the module docstring).
    """
    tiles: list[Task] = []
    fills: list[Job] = []
    small: list[Job] = []
    for job in jobs:
        if not job.out.numel():
            continue
        if isinstance(job.draw, FillDraw):
            fills.append(job)
        elif job.numel <= SMALL:
            small.append(job)
        else:
            tiles.extend(_tile_tasks(job))
    tasks = tiles
    batch: list[Job] = []
    size = 0
    for job in small:
        batch.append(job)
        size += job.out.numel()
        if size >= _SMALL_BATCH_ELEMENTS:
            tasks.append(_small_task(batch))
            batch, size = [], 0
    if batch:
        tasks.append(_small_task(batch))
    if fills:
        tasks.append(_fill_task(fills))
    return tasks


def range_tasks(out: torch.Tensor, draw: Draw, key: int, numel: int, start: int = 0) -> list[Task]:
    """Tasks that fill 1-D ``out`` with elements ``[start, start + len(out))`` of a draw."""
    return job_tasks([Job(out, draw, key, numel, start)])


def fill_range_(out: torch.Tensor, draw: Draw, key: int, numel: int, start: int = 0) -> None:
    """Fill 1-D ``out`` with elements ``[start, start + out.numel())`` of an elementwise draw."""
    run_parallel(range_tasks(out, draw, key, numel, start))


