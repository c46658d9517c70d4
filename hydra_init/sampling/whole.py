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
from .tiles import fill_range_

__all__ = ["fill_", "materialize"]


def materialize(
    draw: Draw, shape: Sequence[int], key: int, dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    """The whole tensor of a draw, computed deterministically from ``key``.

    The same bits on every process (every rank of a sharded model); see
    :meth:`hydra_init.sampling.draws.Draw.materialize`.
    """
    return draw.materialize(torch.Size(shape), key, dtype, device)


def fill_(tensor: torch.Tensor, draw: Draw, key: int) -> None:
    """Fill a plain tensor in place with its draw (tiled and parallel when possible)."""
    with torch.no_grad():
        if draw.elementwise and tensor.is_contiguous():
            fill_range_(tensor.view(-1), draw, key, tensor.numel())
        else:
            tensor.copy_(materialize(draw, tensor.shape, key, tensor.dtype, tensor.device))
