"""Seeded, tiled, parallel sampling: the values behind every initializer.

One module per job: :mod:`.keys` (keys and counter-based streams), :mod:`.generators`
(seeded generators, proposal sources), :mod:`.tiles` (jobs, tiles, small batches),
:mod:`.pool` (the thread pool), :mod:`.whole` (whole-tensor draws), :mod:`.truncnormal`
(exact truncated normal) and :mod:`.draws` (what a tensor is filled with).

Value format (part of the reproducibility contract; see ``docs/performance.md``)
--------------------------------------------------------------------------------
A parameter's values are a function of a 64-bit *key* (a hash of the seed, the
parameter's path and its shape, :func:`derive_key`), its draw, its device type
and dtype - nothing else: not the thread count, not the order in which
parameters are visited, not which other parameters exist, not how the tensor
is sharded. Two generators produce them, chosen by the tensor's total size:

* **Small tensors** (``numel <= SMALL``): element ``j`` is a pure function of
  ``(key, j)``, computed by a counter-based SplitMix64 hash (Box-Muller for
  normals, 53-bit uniforms). All small tensors of a plan are drawn in one
  vectorized batch, so ten thousand tiny parameters cost a few milliseconds.
* **Large tensors**: cut into tiles by :func:`tile_grid` - runs of :data:`TILE`
  consecutive values (``init.tiles: flat``, the default) or blocks of :data:`TILE_WIDTH`
  columns of the ``(dim 0, rest)`` view (``init.tiles: blocks``, :class:`Tiles`); tile
  ``i`` is drawn by its own ``torch.Generator`` whose *whole* state is derived from
  ``(key, i)`` (on CPU the mt19937 state is filled from the 64-bit tile seed, because
  ``manual_seed`` keeps only 32 bits and would make tile streams collide in big
  models). Tiles run on a thread pool, one generator per thread.

Either way a region of a tensor (a shard: a range with flat tiles, a rectangle of the
view with block tiles, any region of a small tensor) can be drawn alone
(:class:`Job`, :class:`Region`) and matches the same region of a full draw bit for bit.

Truncated normals (:mod:`hydra_init.sampling.truncnormal`) are exact (the distribution of
``torch.nn.init.trunc_normal_``: a normal conditioned on ``[a, b]``) and cost
a small multiple of one normal draw, depending on the interval (``make bench``
measures each method against the limit): wide intervals reject and
redraw only the out-of-bounds elements, narrow or one-sided-bounded intervals use
the inverse CDF in float64, and intervals far in a tail use Robert's (1995)
exponential proposal. Every element's value is the first accepted proposal of
its own sequence, so the result does not depend on batching.

Example:
    >>> import torch
    >>> w = torch.empty(3, 4)
    >>> fill_(w, NormalDraw(0.0, 0.02), derive_key(7, "fc.weight", w.shape))
    >>> v = torch.empty(3, 4)
    >>> fill_(v, NormalDraw(0.0, 0.02), derive_key(7, "fc.weight", v.shape))
    >>> torch.equal(w, v)
    True
"""

from .draws import (
    BUILTIN_DRAWS,
    DiracDraw,
    Draw,
    EyeDraw,
    FillDraw,
    NormalDraw,
    OrthogonalDraw,
    TruncNormalDraw,
    UniformDraw,
)
from .generators import FULL_STATE_SEEDING
from .keys import (
    SMALL,
    TILE,
    TILE_ACCELERATOR,
    TILE_WIDTH,
    Grid,
    Tiles,
    derive_key,
    derive_keys,
    tile_grid,
    tile_seed,
)
from .pool import Task, run_parallel
from .tiles import (
    Group,
    Job,
    Region,
    fill_region_,
    group_jobs,
    group_tasks,
    job_tasks,
    region_tasks,
)
from .whole import fill_, materialize

__all__ = [
    "BUILTIN_DRAWS",
    "FULL_STATE_SEEDING",
    "SMALL",
    "TILE",
    "TILE_ACCELERATOR",
    "TILE_WIDTH",
    "DiracDraw",
    "Draw",
    "EyeDraw",
    "FillDraw",
    "Grid",
    "Group",
    "Job",
    "NormalDraw",
    "OrthogonalDraw",
    "Region",
    "Task",
    "Tiles",
    "TruncNormalDraw",
    "UniformDraw",
    "derive_key",
    "derive_keys",
    "fill_",
    "fill_region_",
    "group_jobs",
    "group_tasks",
    "job_tasks",
    "materialize",
    "region_tasks",
    "run_parallel",
    "tile_grid",
    "tile_seed",
]
