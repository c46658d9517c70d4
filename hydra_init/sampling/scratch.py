"""Per-thread reusable buffers: a fresh tile-sized buffer per tile would cost page faults.

A buffer from :func:`thread_buffer` belongs to the calling thread and is handed out
again by its next call with the same ``(dtype, device, slot)``, so it must be used up
before that call.

>>> a = thread_buffer(10, torch.float32, torch.device("cpu"))
>>> b = thread_buffer(4, torch.float32, torch.device("cpu"))
>>> a.numel(), b.numel(), a.data_ptr() == b.data_ptr()
(10, 4, True)
"""

from __future__ import annotations

import threading

import torch

from .keys import TILE

__all__ = ["thread_buffer"]

_local = threading.local()


def thread_buffer(numel: int, dtype: torch.dtype, device: torch.device, slot: int = 0) -> torch.Tensor:
    """This thread's buffer number ``slot`` for ``dtype`` on ``device``, ``numel`` elements long.

    It holds at least :data:`~hydra_init.sampling.keys.TILE` elements and grows to the
    largest ``numel`` asked for.
    """
    buffers = getattr(_local, "buffers", None)
    if buffers is None:
        buffers = _local.buffers = {}
    buf = buffers.get((dtype, device, slot))
    if buf is None or buf.numel() < numel:
        buf = buffers[(dtype, device, slot)] = torch.empty(max(numel, TILE), dtype=dtype, device=device)
    return buf[:numel]
