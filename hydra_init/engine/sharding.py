"""Sharded init for DTensor parameters (FSDP2 ``fully_shard``, tensor parallel).

Every rank runs the same plan and writes only its own shard, and the assembled
tensors are bit-identical to a single-process init with the same seed, for any
world size and uneven splits. That holds because a value depends only on the
parameter's key and the element's position in the *global* flattened tensor
(see :mod:`hydra_init.sampling`):

* elementwise draws (normal, uniform, truncated normal, constants and everything
  built on them) whose local shard is a region of the tile grid draw just the
  tiles it overlaps (those cut by its edges in full, no others): with flat tiles a
  shard that is one range of the global tensor (``Shard(0)`` and ``Replicate`` on any
  mesh, i.e. FSDP2 and HSDP), with block tiles (``init.tiles: blocks``) any
  rectangle of the ``(dim 0, rest)`` view (also ``Shard(1)`` and 2-D meshes);
* everything else computes the whole tensor deterministically on every rank and
  keeps the rank's slice: ``Orthogonal`` (a QR decomposition), ``Dirac``, ``Eye``,
  elementwise draws on other blocks (column shards of flat tiles, strided shards other
  than FSDP2's over a tensor-parallel shard of the same dim),
  and ``Default`` (the module's ``reset_parameters()`` runs on full-size plain
  copies of its parameters);
* ``nn.Embedding`` padding rows are zeroed on the rank that holds them.

No collective is needed except one broadcast of the seed when the config has
none (so all ranks agree on it).

Example (the recipe; ``examples/fsdp2_init.py`` runs it on CPU with gloo)::

    with torch.device("meta"):
        model = build()
    for block in model.blocks:
        fully_shard(block)
    fully_shard(model)
    model.to_empty(device="cuda")
    hydra_init.apply(model, cfg)   # each rank draws only its shard
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Sequence

import torch
from torch import nn

from ..sampling import Draw, Job, Region, materialize, tile_grid

__all__ = [
    "agree_on_seed",
    "grid_region",
    "is_dtensor",
    "local_block",
    "local_tensor",
    "reset_sharded",
    "sharded_work",
    "zero_row",
]

Task = Callable[[], None]


def is_dtensor(tensor: object) -> bool:
    """Whether ``tensor`` is a ``DTensor`` (a Parameter holding one has the DTensor type).

    Cheap, and imports nothing: no DTensor exists before torch's DTensor module is loaded.

    >>> import torch
    >>> is_dtensor(torch.nn.Parameter(torch.zeros(2)))
    False
    """
    module = sys.modules.get("torch.distributed.tensor._api")
    return module is not None and isinstance(tensor, module.DTensor)


def local_tensor(tensor: torch.Tensor) -> torch.Tensor:
    """This rank's shard of a DTensor, or the tensor itself (a plain ``Parameter`` costs one test).

    >>> import torch
    >>> p = torch.nn.Parameter(torch.zeros(2))
    >>> local_tensor(p) is p
    True
    """
    if type(tensor) is nn.Parameter or not is_dtensor(tensor):
        return tensor
    return tensor.to_local()


def _dtensor(param: torch.Tensor):
    return param


def local_block(param: torch.Tensor) -> tuple[torch.Tensor, tuple[int, ...], tuple[int, ...]] | None:
    """``(local tensor, global offset, local shape)`` when the shard is a rectangular block.

    ``Shard`` and ``Replicate`` placements give one; so does FSDP2's ``_StridedShard(d,
    split_factor=k)`` when a later mesh dimension of size ``k`` shards ``d`` too (FSDP over
    a tensor-parallel ``Shard(d)``: the rank's rows are one sub-chunk of its TP chunk).
    Returns ``None`` for other placements (``Partial``, other strided shards).
    """
    from torch.distributed.tensor import Replicate, Shard
    from torch.distributed.tensor._utils import compute_local_shape_and_global_offset

    dt = _dtensor(param)
    placements = dt.placements
    for i, p in enumerate(placements):
        if type(p) in (Shard, Replicate):
            continue
        if not _strided_over_a_later_shard(p, placements[i + 1:], dt.device_mesh.shape[i + 1:]):
            return None
    shape, offset = compute_local_shape_and_global_offset(dt.shape, dt.device_mesh, dt.placements)
    local = dt.to_local()
    if tuple(local.shape) != tuple(shape):  # pragma: no cover - defensive: unexpected layout
        return None
    return local, tuple(offset), tuple(shape)


def _strided_over_a_later_shard(placement, later, later_sizes) -> bool:
    """Whether ``placement`` is FSDP2's ``_StridedShard`` over a later ``Shard`` of its dim
    (``split_factor`` = that mesh dimension's size)."""
    from torch.distributed.tensor import Shard
    from torch.distributed.tensor.placement_types import _StridedShard

    if type(placement) is not _StridedShard:
        return False
    return any(type(q) is Shard and q.dim == placement.dim and size == placement.split_factor
               for q, size in zip(later, later_sizes, strict=True))


def _flat_range(global_shape: Sequence[int], offset: Sequence[int], shape: Sequence[int]) -> int | None:
    """The flat start of a block if it is one contiguous range of the global tensor, else ``None``."""
    dims = len(global_shape)
    first = next((d for d in range(dims) if shape[d] != 1), dims)
    if any(shape[d] != global_shape[d] for d in range(first + 1, dims)):
        return None
    start, stride = 0, 1
    for d in reversed(range(dims)):
        start += offset[d] * stride
        stride *= global_shape[d]
    return start


def grid_region(global_shape: Sequence[int], offset: Sequence[int], shape: Sequence[int],
                device: torch.device, blocks: bool = False) -> Region | None:
    """The rectangle of the tile grid's view that a block of the global tensor is, else ``None``.

    With ``blocks`` (``init.tiles: blocks``) the view is ``(dim 0, the other dims
    flattened)``: a block is a rectangle when it is a range of dim 0 and its part of
    the other dims is one flat range (``Shard(0)``, ``Shard(1)``, both on a 2-D mesh,
    ``Replicate``). With flat tiles only a block that is one flat range is.

    >>> cpu = torch.device("cpu")
    >>> grid_region((8, 6), (4, 2), (4, 3), cpu, blocks=True)   # rows 4..7, columns 2..4
    Region(row=4, col=2, rows=4, cols=3)
    >>> grid_region((8, 6), (4, 2), (4, 3), cpu) is None   # flat tiles: not one range
    True
    >>> grid_region((8, 6, 5), (0, 0, 1), (8, 6, 2), cpu, blocks=True) is None   # a slice of the last dim
    True
    """
    grid = tile_grid(global_shape, device, blocks)
    numel = math.prod(shape)
    if grid.cols == 1 or len(global_shape) < 2:  # flat view: one range or nothing
        start = _flat_range(global_shape, offset, shape)
        return None if start is None else Region(start, 0, numel, 1)
    col = _flat_range(global_shape[1:], offset[1:], shape[1:])
    if col is None:
        return None
    return Region(offset[0], col, shape[0], numel // shape[0] if shape[0] else 0)


def _block_slices(offset: Sequence[int], shape: Sequence[int]) -> tuple[slice, ...]:
    return tuple(slice(o, o + s) for o, s in zip(offset, shape, strict=True))


def sharded_work(param: torch.Tensor, draw: Draw, key: int,
                 blocks: bool = False) -> tuple[list[Job], list[Task]]:
    """What this rank does for a DTensor parameter: a job for its region, or a copy of its slice.

    Returns ``(jobs, tasks)``: jobs join the engine's parallel batch (they draw only
    the tiles the rank's block overlaps); tasks copy a deterministically computed
    whole tensor's slice and may run at any time.
    """
    dt = _dtensor(param)
    global_shape = tuple(dt.shape)
    block = local_block(param)
    if block is not None:
        local, offset, shape = block
        if local.numel() == 0:
            return [], []
        if draw.constant:  # the same value everywhere: any block shape will do
            return [Job(local, draw, 0, global_shape)], []
        region = grid_region(global_shape, offset, shape, local.device, blocks)
        if draw.elementwise and region is not None and local.is_contiguous():
            return [Job(local, draw, key, global_shape, region, blocks)], []
    return [], [lambda: _copy_slice(param, draw, key, blocks)]


def _copy_slice(param: torch.Tensor, draw: Draw, key: int, blocks: bool) -> None:
    """Compute the whole tensor (identically on every rank) and keep this rank's part."""
    dt = _dtensor(param)
    local = dt.to_local()
    full = materialize(draw, dt.shape, key, dt.dtype, local.device, blocks)
    block = local_block(param)
    if block is not None:
        local.copy_(full[_block_slices(block[1], block[2])])
        return
    from torch.distributed.tensor import distribute_tensor

    # src_data_rank=None: every rank slices its own (identical) full tensor, no communication.
    local.copy_(distribute_tensor(full, dt.device_mesh, dt.placements, src_data_rank=None).to_local())


def reset_sharded(module: nn.Module, reset: Callable[[], None]) -> None:
    """Run a module's ``reset_parameters()`` as if unsharded, then keep each rank's slice.

    The module's own DTensor parameters are swapped for full-size plain tensors
    (holding this rank's current values in its block) while ``reset`` runs, so
    the values equal a single-process reset under the same seed. Parameters of
    child modules that a parent's reset touches stay DTensors: constant writes
    there are exact, random ones follow DTensor's own RNG (documented).
    """
    originals: dict[str, nn.Parameter] = {}
    for name, param in list(module._parameters.items()):
        if param is None or not is_dtensor(param):
            continue
        block = local_block(param)
        if block is None:
            raise NotImplementedError(
                f"Default (reset_parameters) on {type(module).__name__}.{name} with placements "
                f"{_dtensor(param).placements}: only Shard/Replicate placements are supported"
            )
        local, offset, shape = block
        full = torch.empty(param.shape, dtype=param.dtype, device=local.device)
        full[_block_slices(offset, shape)] = local
        originals[name] = param
        module._parameters[name] = nn.Parameter(full, requires_grad=param.requires_grad)
    try:
        reset()
    finally:
        for name, param in originals.items():
            full = module._parameters[name]
            module._parameters[name] = param
            local, offset, shape = local_block(param)
            local.copy_(full.detach()[_block_slices(offset, shape)])


def zero_row(param: torch.Tensor, row: int) -> None:
    """Zero row ``row`` (dim 0) of a parameter on whichever rank holds it."""
    if not is_dtensor(param):
        param.data[row].fill_(0)
        return
    block = local_block(param)
    if block is None:
        raise NotImplementedError(f"padding row on placements {_dtensor(param).placements}")
    local, offset, shape = block
    if offset and offset[0] <= row < offset[0] + shape[0] and local.numel():
        local[row - offset[0]].fill_(0)


def agree_on_seed(seed: int) -> int:
    """Rank 0's ``seed`` on every rank (when torch.distributed is initialized)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return seed
    box = [seed]
    dist.broadcast_object_list(box, src=0)
    return int(box[0])
