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

from .draws import Draw
from .generators import FULL_STATE_SEEDING, HashSource, generator, tile_states
from .keys import SMALL, tile_seed, tile_size
from .pool import run_parallel

__all__ = ["Job", "Task", "fill_range_", "job_tasks", "range_tasks"]

# ----------------------------------------------------------------------------- one tile
def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _draw_tile_(buf: torch.Tensor, draw: Draw, seed: int, state: np.ndarray | None = None) -> None:
    """Fill ``buf`` (one whole tile) from the generator of ``seed`` (``state``: its precomputed state)."""
    draw.fill_tile(buf, generator(buf.device, seed, state))


# ----------------------------------------------------------------------------- jobs and tasks
Task = Callable[[], None]


class Job(NamedTuple):
    """Fill ``out`` with elements ``[start, start + out.numel())`` of a tensor's draw.

    ``out`` is contiguous, and 1-D unless the job's draw is ``constant`` (a :class:`FillDraw`) or
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
    indices = range(start // tile, -(-stop // tile))
    seeds = [tile_seed(key, index) for index in indices]
    states = tile_states(seeds) if out.device.type == "cpu" and FULL_STATE_SEEDING else [None] * len(seeds)
    for index, seed, state in zip(indices, seeds, states, strict=True):
        lo, hi = index * tile, min((index + 1) * tile, numel)
        if direct and start <= lo and hi <= stop:
            view = out[lo - start : hi - start]
            tasks.append(lambda view=view, seed=seed, state=state: _draw_tile_(view, draw, seed, state))
            continue

        def partial(lo: int = lo, hi: int = hi, seed: int = seed, state=state) -> None:
            buf = torch.empty(hi - lo, dtype=_compute_dtype(out.dtype), device=out.device)
            _draw_tile_(buf, draw, seed, state)
            a, b = max(lo, start), min(hi, stop)
            out[a - start : b - start].copy_(buf[a - lo : b - lo])

        tasks.append(partial)
    return tasks




_NUMPY_DTYPES = {torch.float32: np.float32, torch.float64: np.float64}


def _small_group_(jobs: Sequence[Job], values: np.ndarray, shape: torch.Size) -> None:
    """Write vectorized values (float64) into small jobs that share one shape, device and dtype."""
    out = jobs[0].out
    cast = _NUMPY_DTYPES.get(out.dtype)
    flat = torch.from_numpy(values.astype(cast)) if cast else torch.from_numpy(values).to(out.dtype)
    parts = flat.to(out.device).view(len(jobs), *shape).unbind(0)  # views without a Python loop
    torch._foreach_copy_([j.out for j in jobs], list(parts))


def _small_one_(job: Job) -> None:
    """One small job from the counter-based source (float64, then cast)."""
    buf = torch.empty(job.out.numel(), dtype=torch.float64)
    job.draw.fill_from(buf, HashSource(job.key, job.start))
    job.out.copy_(buf.view(job.out.shape))


def _small_task(jobs: Sequence[Job]) -> Task:
    def run() -> None:
        groups: dict[tuple, list[Job]] = {}
        for j in jobs:  # values are per element, so any grouping gives the same values
            out = j.out
            groups.setdefault((type(j.draw), out.shape, out.device, out.dtype), []).append(j)
        for (kind, shape, _, _), members in groups.items():
            values = kind.small_values(members)
            if values is not None:
                _small_group_(members, values, shape)
                continue
            for j in members:
                _small_one_(j)

    return run


def _constant_task(jobs: Sequence[Job]) -> Task:
    def run() -> None:
        by_kind: dict[type, list[Job]] = {}
        for j in jobs:
            by_kind.setdefault(type(j.draw), []).append(j)
        for kind, members in by_kind.items():
            kind.fill_group(members)

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
        if job.draw.constant:
            fills.append(job)
        elif job.numel <= SMALL:
            small.append(job)
        else:
            tiles.extend(_tile_tasks(job))
    tasks = tiles
    batch: list[Job] = []
    size = 0
    sizes = [job.out.numel() for job in small]
    # at most _SMALL_BATCH_ELEMENTS a batch, and at least one batch per thread when there is enough
    limit = min(_SMALL_BATCH_ELEMENTS, max(SMALL, -(-sum(sizes) // max(1, torch.get_num_threads()))))
    for job, numel in zip(small, sizes, strict=True):
        batch.append(job)
        size += numel
        if size >= limit:
            tasks.append(_small_task(batch))
            batch, size = [], 0
    if batch:
        tasks.append(_small_task(batch))
    if fills:
        tasks.append(_constant_task(fills))
    return tasks


def range_tasks(out: torch.Tensor, draw: Draw, key: int, numel: int, start: int = 0) -> list[Task]:
    """Tasks that fill 1-D ``out`` with elements ``[start, start + len(out))`` of a draw."""
    return job_tasks([Job(out, draw, key, numel, start)])


def fill_range_(out: torch.Tensor, draw: Draw, key: int, numel: int, start: int = 0) -> None:
    """Fill 1-D ``out`` with elements ``[start, start + out.numel())`` of an elementwise draw."""
    run_parallel(range_tasks(out, draw, key, numel, start))


