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
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from typing import NamedTuple

import numpy as np
import torch

from .draws import Draw
from .generators import FULL_STATE_SEEDING, HashSource, generator, tile_states
from .keys import SMALL, tile_grid, tile_seed
from .pool import run_parallel
from .scratch import thread_buffer

__all__ = ["Group", "Job", "Region", "Task", "fill_region_", "group_jobs", "group_tasks", "job_positions",
           "job_sizes", "job_tasks", "region_tasks"]

# ----------------------------------------------------------------------------- one tile
def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


Tile = tuple[int, int, "np.ndarray | None"]
"""A tile's number of values, its seed, and its precomputed generator state (:func:`tile_states`)
or ``None``."""


def _draw_tiles_(buf: torch.Tensor, draw: Draw, tiles: Sequence[Tile]) -> None:
    """Fill ``buf`` with consecutive whole tiles, each from its seed's stream."""
    first = 0
    for numel, seed, state in tiles:
        draw.fill_tile_from(buf[first : first + numel], partial(generator, buf.device, seed, state))
        first += numel


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


RUN = 8
"""Whole tiles of a tensor that lie side by side in memory are drawn by one task, up to this many:
fewer, larger tasks for the pool to hand out."""


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
    run: list[Tile] = []  # whole tiles side by side in out
    span = [0, 0]  # the rows of the run

    def flush() -> None:
        if run:
            view = out2d[span[0] - row : span[1] - row].view(-1)
            tasks.append(partial(_draw_tiles_, view, draw, tuple(run)))
            run.clear()

    for (i, j), seed, state in zip(places, seeds, states, strict=True):
        top, bottom = i * th, min((i + 1) * th, grid.rows)
        left, right = j * tw, min((j + 1) * tw, grid.cols)
        if direct and left == col and right - left == cols and row <= top and bottom <= row + rows:
            if run and (top != span[1] or len(run) == RUN):
                flush()
            if not run:
                span[0] = top
            run.append(((bottom - top) * cols, seed, state))
            span[1] = bottom
            continue
        flush()

        def part(top: int = top, bottom: int = bottom, left: int = left, right: int = right,
                 seed: int = seed, state=state) -> None:
            height, width = bottom - top, right - left
            buf = thread_buffer(height * width, _compute_dtype(out.dtype), out.device)
            _draw_tiles_(buf, draw, ((height * width, seed, state),))
            a, b = max(top, row), min(bottom, row + rows)
            c, d = max(left, col), min(right, col + cols)
            _copy_(out2d[a - row : b - row, c - col : d - col],
                   buf.view(height, width)[a - top : b - top, c - left : d - left])

        tasks.append(part)
    flush()
    return tasks


class Group(NamedTuple):
    """Tensors written together by one draw: small whole tensors (or small regions) of one
    shape, dtype and device, drawn in one vectorized pass; or, for a ``constant`` draw, any
    tensors on one device.

    ``keys[k]`` is the key of ``outs[k]``; ``shape`` is every out's shape. ``positions``
    is ``None`` when every out is a whole tensor (positions ``0..n-1`` each), else the flat
    positions (``uint64``) of all their elements in their whole tensors, concatenated.
    A constant draw's group has no keys and any shapes (``shape`` is ``None``).

    >>> import torch
    >>> from hydra_init.sampling import NormalDraw
    >>> outs = [torch.empty(2, 3) for _ in range(4)]
    >>> group = Group(NormalDraw(0.0, 1.0), outs, [11, 12, 13, 14], outs[0].shape)
    >>> run_parallel(group_tasks([], [group]))
    >>> one = torch.empty(2, 3)
    >>> fill_region_(one, NormalDraw(0.0, 1.0), 13, one.shape)
    >>> torch.equal(outs[2], one)
    True
    """

    draw: Draw
    outs: list[torch.Tensor]
    keys: list[int]
    shape: torch.Size | None
    positions: np.ndarray | None = None

    def slice(self, start: int, stop: int) -> Group:
        """Outs ``start:stop`` of the group (and their keys and positions)."""
        positions = self.positions
        if positions is not None:
            numel = self.shape.numel()
            positions = positions[start * numel : stop * numel]
        return Group(self.draw, self.outs[start:stop], self.keys[start:stop], self.shape, positions)


_NUMPY_DTYPES = {torch.float32: np.float32, torch.float64: np.float64}


def _small_group_(group: Group, values: np.ndarray) -> None:
    """Write vectorized values (float64, the outs' elements concatenated) into a small group."""
    out = group.outs[0]
    cast = _NUMPY_DTYPES.get(out.dtype)
    flat = torch.from_numpy(values.astype(cast)) if cast else torch.from_numpy(values).to(out.dtype)
    parts = flat.to(out.device).view(len(group.outs), *group.shape).unbind(0)  # views, no Python loop
    torch._foreach_copy_(group.outs, list(parts))


def _small_one_(group: Group, k: int) -> None:
    """Out ``k`` of a small group from the counter-based source (float64, then cast)."""
    out = group.outs[k]
    numel = group.shape.numel()
    positions = group.positions
    start = 0 if positions is None else positions[k * numel : (k + 1) * numel]
    buf = torch.empty(numel, dtype=torch.float64)
    group.draw.fill_from(buf, HashSource(group.keys[k], start))
    out.copy_(buf.view(out.shape))


def _small_task(groups: Sequence[Group]) -> Task:
    def run() -> None:
        for group in groups:
            values = group.draw.small_values(group)
            if values is not None:
                _small_group_(group, values)
                continue
            for k in range(len(group.outs)):
                _small_one_(group, k)

    return run


def _constant_task(groups: Sequence[Group]) -> Task:
    def run() -> None:
        for group in groups:
            group.draw.fill_group(group.outs)

    return run


_SMALL_BATCH_ELEMENTS = 1 << 18  # a batch task's size: big enough to amortize, small enough to balance


def group_jobs(jobs: Iterable[Job]) -> tuple[list[Job], list[Group], list[Group]]:
    """Split jobs into tiled ones and :class:`Group` s: small jobs of one draw (the same
    object), shape, dtype, device and kind (whole or region), and constant ones per draw and device."""
    tiled: list[Job] = []
    small: dict[tuple, list[Job]] = {}
    fills: dict[tuple, list[Job]] = {}
    jobs = list(jobs)
    for job, size in zip(jobs, job_sizes(jobs), strict=True):
        if not size:
            continue
        out = job.out
        if job.draw.constant:
            fills.setdefault((id(job.draw), out.device), []).append(job)
        elif (size if job.region is None else job.numel) <= SMALL:  # the whole tensor's size decides
            whole = job.region is None and type(job.shape) is torch.Size
            shape = job.shape if whole else out.shape
            small.setdefault((id(job.draw), shape, out.device, out.dtype, whole), []).append(job)
        else:
            tiled.append(job)
    groups = [
        Group(members[0].draw, [j.out for j in members], [j.key for j in members], key[1],
              None if key[4] else np.concatenate([job_positions(j) for j in members]))
        for key, members in small.items()
    ]
    constants = [Group(members[0].draw, [j.out for j in members], [], None) for members in fills.values()]
    return tiled, groups, constants


def group_tasks(jobs: Iterable[Job], small: Sequence[Group] = (), fills: Sequence[Group] = ()) -> list[Task]:
    """Tasks that execute tiled jobs, small groups and constant groups.

    Small groups are cut into batches of about ``_SMALL_BATCH_ELEMENTS`` values, at
    least one per thread when there is enough work. How they are batched never changes
    values (see the module docstring).
    """
    tasks: list[Task] = []
    for job in jobs:
        tasks.extend(_tile_tasks(job))
    sizes = [g.shape.numel() for g in small]
    total = sum(n * len(g.outs) for n, g in zip(sizes, small, strict=True))
    limit = min(_SMALL_BATCH_ELEMENTS, max(SMALL, -(-total // max(1, torch.get_num_threads()))))
    batch: list[Group] = []
    size = 0
    for group, numel in zip(small, sizes, strict=True):
        start, count = 0, len(group.outs)
        while start < count:
            stop = min(count, start + max(1, -(-(limit - size) // numel)))
            batch.append(group if (start, stop) == (0, count) else group.slice(start, stop))
            size += (stop - start) * numel
            start = stop
            if size >= limit:
                tasks.append(_small_task(batch))
                batch, size = [], 0
    if batch:
        tasks.append(_small_task(batch))
    if fills:
        tasks.append(_constant_task(fills))
    return tasks


def job_tasks(jobs: Iterable[Job]) -> list[Task]:
    """Tasks that execute ``jobs``: tiles of large tensors, batches of small ones, fills.

    How jobs are batched never changes values (see the module docstring).
    """
    return group_tasks(*group_jobs(jobs))


def region_tasks(out: torch.Tensor, draw: Draw, key: int, shape: Sequence[int],
                 region: Region | None = None, blocks: bool = False) -> list[Task]:
    """Tasks that fill contiguous ``out`` with one region of a tensor's draw (see :class:`Job`)."""
    return job_tasks([Job(out, draw, key, shape, region, blocks)])


def fill_region_(out: torch.Tensor, draw: Draw, key: int, shape: Sequence[int],
                 region: Region | None = None, blocks: bool = False) -> None:
    """Fill contiguous ``out`` with one region of an elementwise draw of a tensor of ``shape``."""
    run_parallel(region_tasks(out, draw, key, shape, region, blocks))
