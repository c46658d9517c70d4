"""Jobs and tasks: tiles of large tensors, one vectorized batch of small ones, grouped fills.

A :class:`Job` asks for one rectangle (:class:`Region`) of a tensor's tile grid
(:func:`~hydra_init.sampling.keys.tile_grid`), or the whole tensor; :func:`job_tasks`
turns jobs into tasks for :func:`~hydra_init.sampling.pool.run_parallel`. How jobs are
batched, and which region a job asks for, never changes values: a tile is always drawn
whole, and a job keeps the part of it that lies in its region.

>>> import torch
>>> from hydra_init.sampling import NormalDraw
>>> full, part = torch.empty(300, 512), torch.empty(300, 100)
>>> fill_region_(full, NormalDraw(0.0, 1.0), 7, full.shape, blocks=True)
>>> fill_region_(part, NormalDraw(0.0, 1.0), 7, full.shape, Region(0, 200, 300, 100), blocks=True)
>>> torch.equal(full[:, 200:300], part)
True
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import NamedTuple

import numpy as np
import torch

from .draws import Draw
from .generators import FULL_STATE_SEEDING, HashSource, generator, tile_states
from .keys import SMALL, TILE, tile_grid, tile_seed
from .pool import run_parallel

__all__ = ["Job", "Region", "Task", "fill_region_", "job_positions", "job_sizes", "job_tasks",
           "region_tasks"]

# ----------------------------------------------------------------------------- one tile
def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _draw_tile_(buf: torch.Tensor, draw: Draw, seed: int, state: np.ndarray | None = None) -> None:
    """Fill ``buf`` (one whole tile) from the generator of ``seed`` (``state``: its precomputed state)."""
    draw.fill_tile(buf, generator(buf.device, seed, state))


_local = threading.local()


def _scratch(numel: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """This thread's reusable buffer for one tile (a fresh 512 KiB buffer per tile costs page faults)."""
    buffers = getattr(_local, "buffers", None)
    if buffers is None:
        buffers = _local.buffers = {}
    buf = buffers.get((dtype, device))
    if buf is None or buf.numel() < numel:
        buf = buffers[(dtype, device)] = torch.empty(max(numel, TILE), dtype=dtype, device=device)
    return buf[:numel]


_NUMPY_COPY = frozenset({torch.float32, torch.float64})


def _copy_(dst: torch.Tensor, src: torch.Tensor) -> None:
    """``dst.copy_(src)``; through numpy on CPU for float32/float64, where torch's copy would
    start an OpenMP team inside the pool thread (a plain copy: the same bits)."""
    if dst.device.type == "cpu" and dst.dtype is src.dtype and dst.dtype in _NUMPY_COPY:
        np.copyto(dst.numpy(), src.numpy())
    else:
        dst.copy_(src)


# ----------------------------------------------------------------------------- jobs and tasks
Task = Callable[[], None]


class Region(NamedTuple):
    """A rectangle of a tensor's tile grid view: ``rows`` rows from ``row``, ``cols`` columns from ``col``."""

    row: int
    col: int
    rows: int
    cols: int


class Job(NamedTuple):
    """Fill ``out`` with one region of a tensor's draw (row-major), or with all of it.

    ``shape`` is the whole (global) tensor's shape and ``blocks`` the tile layout
    (:class:`~hydra_init.sampling.keys.Tiles`), which decide the tile grid; ``region``
    is the rectangle of the grid's view (:func:`~hydra_init.sampling.keys.tile_grid`
    on ``out``'s device) that ``out`` holds, ``None`` for the whole tensor. ``out`` is
    contiguous with as many elements as the region (any shape: it is read in row-major
    order). ``key`` is unused by ``constant`` draws (a :class:`FillDraw`), whose jobs may
    have any layout.
    """

    out: torch.Tensor
    draw: Draw
    key: int
    shape: Sequence[int]
    region: Region | None = None
    blocks: bool = False

    @property
    def numel(self) -> int:
        """Elements of the whole tensor."""
        return math.prod(self.shape)


def job_sizes(jobs: Iterable[Job]) -> list[int]:
    """The number of elements each job writes (``out.numel()``; read from the job's shape when it
    writes a whole tensor, which skips a call into torch per job)."""
    size = torch.Size
    return [j.shape.numel() if j.region is None and type(j.shape) is size else j.out.numel() for j in jobs]


def job_positions(job: Job) -> np.ndarray:
    """The flat (row-major) positions in the whole tensor of ``job.out``'s elements (``uint64``)."""
    if job.region is None:
        return np.arange(job.out.numel(), dtype=np.uint64)
    row, col, rows, cols = job.region
    width = tile_grid(job.shape, job.out.device, job.blocks).cols
    if cols == width:
        return np.arange(row * width, (row + rows) * width, dtype=np.uint64)
    starts = np.arange(row, row + rows, dtype=np.uint64) * np.uint64(width) + np.uint64(col)
    return (starts[:, None] + np.arange(cols, dtype=np.uint64)).reshape(-1)


def _tile_tasks(job: Job) -> list[Task]:
    out, draw, key = job.out, job.draw, job.key
    grid = tile_grid(job.shape, out.device, job.blocks)
    row, col, rows, cols = job.region or (0, 0, grid.rows, grid.cols)
    out2d = out.view(rows, cols)
    th, tw = grid.tile_rows, grid.tile_cols
    direct = out.dtype == _compute_dtype(out.dtype)
    places = [(i, j) for i in range(row // th, -(-(row + rows) // th))
              for j in range(col // tw, -(-(col + cols) // tw))]
    seeds = [tile_seed(key, i * grid.tile_columns + j) for i, j in places]
    states = tile_states(seeds) if out.device.type == "cpu" and FULL_STATE_SEEDING else [None] * len(seeds)
    tasks: list[Task] = []
    for (i, j), seed, state in zip(places, seeds, states, strict=True):
        top, bottom = i * th, min((i + 1) * th, grid.rows)
        left, right = j * tw, min((j + 1) * tw, grid.cols)
        if direct and left == col and right - left == cols and row <= top and bottom <= row + rows:
            view = out2d[top - row : bottom - row].view(-1)  # whole rows of out: contiguous
            tasks.append(lambda view=view, seed=seed, state=state: _draw_tile_(view, draw, seed, state))
            continue

        def partial(top: int = top, bottom: int = bottom, left: int = left, right: int = right,
                    seed: int = seed, state=state) -> None:
            height, width = bottom - top, right - left
            buf = _scratch(height * width, _compute_dtype(out.dtype), out.device)
            _draw_tile_(buf, draw, seed, state)
            a, b = max(top, row), min(bottom, row + rows)
            c, d = max(left, col), min(right, col + cols)
            _copy_(out2d[a - row : b - row, c - col : d - col],
                   buf.view(height, width)[a - top : b - top, c - left : d - left])

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
    job.draw.fill_from(buf, HashSource(job.key, 0 if job.region is None else job_positions(job)))
    job.out.copy_(buf.view(job.out.shape))


def _small_task(jobs: Sequence[Job]) -> Task:
    def run() -> None:
        groups: dict[tuple, list[Job]] = {}
        for j in jobs:  # values are per element, so any grouping gives the same values
            out = j.out
            shape = j.shape if j.region is None and type(j.shape) is torch.Size else out.shape
            groups.setdefault((type(j.draw), shape, out.device, out.dtype), []).append(j)
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
    sizes: list[int] = []
    jobs = list(jobs)
    for job, size in zip(jobs, job_sizes(jobs), strict=True):
        if not size:
            continue
        if job.draw.constant:
            fills.append(job)
        elif (size if job.region is None else job.numel) <= SMALL:  # the whole tensor's size decides
            small.append(job)
            sizes.append(size)
        else:
            tiles.extend(_tile_tasks(job))
    tasks = tiles
    batch: list[Job] = []
    size = 0
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


def region_tasks(out: torch.Tensor, draw: Draw, key: int, shape: Sequence[int],
                 region: Region | None = None, blocks: bool = False) -> list[Task]:
    """Tasks that fill contiguous ``out`` with one region of a tensor's draw (see :class:`Job`)."""
    return job_tasks([Job(out, draw, key, shape, region, blocks)])


def fill_region_(out: torch.Tensor, draw: Draw, key: int, shape: Sequence[int],
                 region: Region | None = None, blocks: bool = False) -> None:
    """Fill contiguous ``out`` with one region of an elementwise draw of a tensor of ``shape``."""
    run_parallel(region_tasks(out, draw, key, shape, region, blocks))
