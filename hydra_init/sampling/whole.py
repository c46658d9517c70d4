"""Whole-tensor draws: orthogonal (QR), Dirac, Eye, and :func:`fill_` for any tensor."""

from __future__ import annotations

import threading

import torch

from .draws import DiracDraw, Draw, EyeDraw, NormalDraw, OrthogonalDraw
from .tiles import fill_range_

__all__ = ["fill_", "materialize"]

# ----------------------------------------------------------------------------- whole tensors
_qr_lock = threading.Lock()


def materialize(
    draw: Draw, shape: torch.Size, key: int, dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    """The whole tensor of a draw, computed deterministically from ``key``.

    Orthogonal matrices come from a QR decomposition of a seeded normal matrix,
    computed in float64 on one thread so that every process (every rank of a
    sharded model) gets the same bits.
    """
    shape = torch.Size(shape)
    if draw.elementwise:
        out = torch.empty(shape.numel(), dtype=dtype, device=device)
        fill_range_(out, draw, key, shape.numel())
        return out.view(shape)
    if isinstance(draw, OrthogonalDraw):
        rows = shape[0]
        cols = shape.numel() // rows
        flat = torch.empty(rows * cols, dtype=torch.float64, device=device)
        fill_range_(flat, NormalDraw(0.0, 1.0), key, rows * cols)
        matrix = flat.view(rows, cols)
        if rows < cols:
            matrix = matrix.t()
        with _qr_lock:
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                q, r = torch.linalg.qr(matrix)
            finally:
                torch.set_num_threads(threads)
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

