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
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from .keys import TILE

__all__ = ["thread_array", "thread_buffer"]

_local = threading.local()


def _cached(key: tuple, numel: int, make: Callable[[int], Any]) -> Any:
    """This thread's buffer under ``key``, grown to at least ``numel`` (and ``TILE``) elements."""
    buffers = getattr(_local, "buffers", None)
    if buffers is None:
        buffers = _local.buffers = {}
    buf = buffers.get(key)
    if buf is None or len(buf) < numel:
        buf = buffers[key] = make(max(numel, TILE))
    return buf[:numel]


def thread_buffer(numel: int, dtype: torch.dtype, device: torch.device, slot: int = 0) -> torch.Tensor:
    """This thread's buffer number ``slot`` for ``dtype`` on ``device``, ``numel`` elements long.

    It holds at least :data:`~hydra_init.sampling.keys.TILE` elements and grows to the
    largest ``numel`` asked for.
    """
    return _cached((dtype, device, slot), numel, lambda n: torch.empty(n, dtype=dtype, device=device))


def thread_array(numel: int, dtype: Any, slot: int = 0) -> np.ndarray:
    """:func:`thread_buffer` as a numpy array (CPU): no torch slice and view per call.

    >>> thread_array(3, np.bool_).shape
    (3,)
    """
    return _cached((np.dtype(dtype), slot), numel, lambda n: np.empty(n, dtype=dtype))
