"""Parameters whose memory overlaps another parameter's: refused while planning.

``nn.Parameter(big.data[:4])`` registered next to ``big``, or two parameters built on
one storage at different offsets, are different tensors to the plan but one memory to
the hardware: writing either silently changes the other, and the report would name a
value one of them does not hold. When a rule writes any of them, the plan refuses,
naming both. (The same ``Parameter`` under two names is a tie, not an overlap:
:class:`~hydra_init.engine.select.ModelIndex` lists it once, with its aliases.)

Cost: one storage address per parameter, and one set of them (a dict insert per
parameter when two share a storage); the byte ranges are compared only for storages
that hold more than one parameter.

>>> import torch, torch.nn as nn
>>> m = nn.Module()
>>> m.big = nn.Parameter(torch.zeros(8))
>>> m.head = nn.Parameter(m.big.data[:4])
>>> import hydra_init
>>> try:
...     hydra_init.apply(m, {"rules": {"all": {"type": "Ones", "params": "*"}}}, log=False)
... except hydra_init.InitConfigError as error:
...     print(str(error).partition(" (bytes")[0])
init.rules.all: parameters 'big' (8,) and 'head' (4,) share memory
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from typing import Any

import torch

from ..errors import InitConfigError

__all__ = ["check_overlaps"]

_SILENT = ("default", "lazy")
_PLAIN = frozenset({torch.nn.Parameter, torch.Tensor})
_IS_META, _ADDRESS = operator.attrgetter("is_meta"), torch.UntypedStorage.data_ptr


def _span(tensor: torch.Tensor) -> tuple[int, int]:
    """The byte range ``[start, end)`` of the storage that ``tensor`` can touch."""
    size = tensor.element_size()
    start = tensor.storage_offset() * size
    last = sum((n - 1) * abs(s) for n, s in zip(tensor.shape, tensor.stride(), strict=True))
    return start, start + (last + 1) * size


def check_overlaps(tensors: Sequence[torch.Tensor], entry_at: Callable[[int], Any]) -> None:
    """Raise :class:`InitConfigError` when a written parameter shares memory with another one.

    ``entry_at(i)`` is the plan entry (``source``, ``rule``, ``path``) of ``tensors[i]``,
    asked for only where two tensors share a storage. Meta tensors (a meta build's whole
    model) have no memory and cost one test each.
    """
    if _surely_disjoint(tensors):
        return
    first: dict[int, int] = {}
    shared: dict[int, list[int]] = {}
    for i, tensor in enumerate(tensors):
        try:
            if tensor.is_meta:
                continue
            key = tensor.untyped_storage().data_ptr()
        except (RuntimeError, NotImplementedError, TypeError, ValueError):  # lazy or DTensor: no storage here
            continue
        other = first.setdefault(key, i)
        if other != i:
            shared.setdefault(key, [other]).append(i)
    shared.pop(0, None)  # empty tensors: no memory at all
    for group in shared.values():
        _check_group([entry_at(i) for i in group])


def _surely_disjoint(tensors: Sequence[torch.Tensor]) -> bool:
    """The common cases, in one pass each: plain tensors that are all meta, or all on distinct
    storages (empty ones have none). ``False`` means: look closer."""
    if not set(map(type, tensors)) <= _PLAIN:
        return False
    meta = list(map(_IS_META, tensors))
    if all(meta):
        return True
    if any(meta):
        return False
    try:
        keys = list(map(_ADDRESS, map(torch.Tensor.untyped_storage, tensors)))
    except (RuntimeError, NotImplementedError, TypeError, ValueError):  # sparse...: no plain storage
        return False
    distinct = set(keys)
    return len(distinct) == len(keys) or (0 in distinct and len(distinct) - 1 + keys.count(0) == len(keys))


def _check_group(group: list[Any]) -> None:
    spans = [(_span(e.ref.param), e) for e in group]
    for i, ((a0, a1), a) in enumerate(spans):
        for (b0, b1), b in spans[i + 1:]:
            if a0 < b1 and b0 < a1 and (a.source not in _SILENT or b.source not in _SILENT):
                written = a if a.source not in _SILENT else b
                raise InitConfigError(
                    written.rule.key if written.rule is not None else "",
                    f"parameters {a.path!r} {tuple(a.ref.param.shape)} and {b.path!r} "
                    f"{tuple(b.ref.param.shape)} share memory (bytes {a0}-{a1} and {b0}-{b1} of one "
                    f"storage): writing {written.path!r} would silently change the other",
                    hint="make each its own tensor (nn.Parameter(t.clone())), tie them as one Parameter "
                    "(module.b = module.a) so it is written once, or exclude both from the rules",
                )
