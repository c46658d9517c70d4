"""Any draw on any tensor: :func:`materialize` (the whole tensor) and :func:`fill_` (in place).

Each draw knows how to fill a tensor (:mod:`hydra_init.sampling.draws`); these
two functions pick the tiled, parallel path when the draw is elementwise and the
tensor contiguous, and the draw's own :meth:`~hydra_init.sampling.draws.Draw.materialize`
otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .draws import Draw
from .tiles import fill_region_

__all__ = ["fill_", "materialize"]


def materialize(
    draw: Draw, shape: Sequence[int], key: int, dtype: torch.dtype, device: torch.device,
    blocks: bool = False,
) -> torch.Tensor:
    """The whole tensor of a draw, computed deterministically from ``key``.

    The same bits on every process (every rank of a sharded model); elementwise
    draws go through the tiles of ``blocks``' layout (:class:`~hydra_init.sampling.keys.Tiles`),
    others through :meth:`hydra_init.sampling.draws.Draw.materialize`.
    """
    if draw.elementwise:
        out = torch.empty(tuple(shape), dtype=dtype, device=device)
        fill_region_(out, draw, key, out.shape, blocks=blocks)
        return out
    return draw.materialize(torch.Size(shape), key, dtype, device)


def fill_(tensor: torch.Tensor, draw: Draw, key: int, blocks: bool = False) -> None:
    """Fill a plain tensor in place with its draw (tiled and parallel when possible)."""
    with torch.no_grad():
        if draw.elementwise and tensor.is_contiguous():
            fill_region_(tensor, draw, key, tensor.shape, blocks=blocks)
        else:
            tensor.copy_(materialize(draw, tensor.shape, key, tensor.dtype, tensor.device, blocks))
