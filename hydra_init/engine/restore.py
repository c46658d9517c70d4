"""Undo a plan's writes when something the plan did not foresee raises half-way.

The plan runs every check that can fail before the first write, so an accepted plan
should not fail. Should it fail anyway (a custom ``reset_parameters()`` or
``right_inverse`` raising, a device running out of memory), :class:`Restorer` puts back
every tensor the plan writes and raises :class:`~hydra_init.errors.InitExecutionError`
saying so, the original error as its ``__cause__``.

Why a bounded up-front snapshot (and not a copy of the whole model, nor lazy copies):

* Only what the plan writes is copied, into one flat tensor per dtype and device
  (``torch._utils._flatten_dense_tensors``, one call: four times faster than a clone per
  tensor for 10,000 small parameters): the written parameters, and every parameter
  and buffer of the modules whose ``reset_parameters()`` runs or whose
  parametrization is written through (a reset may write buffers and children).
  Untouched parameters (checkpoint-loaded backbones left ``default``, skipped
  subtrees) cost nothing.
* The copy is skipped when it would exceed :data:`RESTORE_LIMIT` bytes (256 MiB), so a
  large model never holds a second copy of itself; above it, a failure says that the
  model could not be restored and which parameters the plan was writing. Under it the
  copy costs time: copying into fresh memory ran at about 0.8 ms per MiB on the 2-core
  test machine (page faults included), which took an ``apply`` drawing 128 MiB of
  normal weights from 330 to 460 ms, and one of 10,000 small parameters from 270 to
  320 ms. Set ``hydra_init.engine.restore.RESTORE_LIMIT = 0`` to trade the guarantee
  for that time.
* Lazy copies (each tensor just before its write) would save nothing in the end (every
  copy is kept until the call returns) and would have to run inside the thread pool's
  tasks, which belong to :mod:`hydra_init.sampling`.

Restoring puts back the tensor *objects* (a parametrization's ``right_inverse`` may swap
a parameter's storage with ``set_``, an orthogonal parametrization replaces its ``base``
buffer) and then their values, so an optimizer holding the parameters stays valid.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from ..errors import InitExecutionError
from .sharding import is_dtensor

__all__ = ["RESTORE_LIMIT", "Restorer"]

RESTORE_LIMIT = 256 * 2**20
"""Bytes: above this, the tensors a plan writes are not copied first (and a failure cannot be undone)."""

_UNTOUCHED = ("default", "lazy")
_Slot = tuple[dict, str, torch.Tensor, torch.Tensor, "torch.Tensor | None"]
"""(the dict holding it, its name, the tensor object, its local tensor, an alias of its old storage)"""


def _modules_touched(plan: Any) -> list[nn.Module]:
    """Modules whose every tensor may change: resets (children too) and parametrized owners."""
    found = [module for _, module, _ in plan.resets]
    found.extend(write.ref.module for write in plan.computed)
    return found


def _swapped(local: torch.Tensor, alias: torch.Tensor) -> bool:
    same = local.untyped_storage().data_ptr() == alias.untyped_storage().data_ptr()
    return not same or local.shape != alias.shape or local.stride() != alias.stride()


def _flatten(tensors: list[torch.Tensor]) -> torch.Tensor:
    return torch._utils._flatten_dense_tensors(tensors)


def _unflatten(flat: torch.Tensor, tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    return list(torch._utils._unflatten_dense_tensors(flat, tensors))


class Restorer:
    """A context manager: snapshot what ``plan`` writes on entry; on an error inside, restore it.

    >>> import torch.nn as nn
    >>> from hydra_init.engine.plan import build_plan
    >>> from hydra_init.engine.parse import parse_config
    >>> model = nn.Linear(2, 2)
    >>> plan = build_plan(model, parse_config({"rules": {"z": {"type": "Zeros", "layer": "Linear"}}}))
    >>> before = model.weight.detach().clone()
    >>> with Restorer(plan):
    ...     _ = model.weight.data.zero_()
    ...     raise RuntimeError("disk on fire")
    Traceback (most recent call last):
    ...
    hydra_init.errors.InitExecutionError: initialization failed after writing began: disk on fire; \
the model was restored to its state before the call
    >>> bool((model.weight == before).all())
    True
    """

    def __init__(self, plan: Any, limit: int | None = None) -> None:
        self.plan = plan
        self.limit = RESTORE_LIMIT if limit is None else limit
        self.slots: list[_Slot] | None = None
        self.copies: list[tuple[list[torch.Tensor], torch.Tensor]] = []

    def _targets(self) -> Iterator[tuple[dict, str, bool]]:
        """``(dict, name, swappable)`` of every tensor the plan may write: the dict holds it (a
        module's ``_parameters``, ``_buffers`` or, for the old weight_norm hook, ``__dict__``);
        ``swappable`` when a write may replace its storage or the object, not only its values."""
        for entry in self.plan.entries.values():
            if entry.source not in _UNTOUCHED:
                ref = entry.ref
                holder = getattr(ref, "holder", None)
                yield (holder or ref.module)._parameters, ref.local_name, holder is not None
        for module in _modules_touched(self.plan):
            for sub in module.modules():
                yield from ((sub._parameters, n, True) for n, t in sub._parameters.items() if t is not None)
                yield from ((sub._buffers, n, True) for n, t in sub._buffers.items() if t is not None)
        for load in self.plan.pretrained:
            for buffer in load.buffers.values():
                yield buffer.module._buffers, buffer.name, False
        for write in self.plan.computed:
            attrs = write.ref.module.__dict__
            if isinstance(attrs.get(write.ref.local_name), torch.Tensor):
                yield attrs, write.ref.local_name, True

    def __enter__(self) -> Restorer:
        slots: list[_Slot] = []
        groups: dict[tuple[torch.dtype, torch.device], list[torch.Tensor]] = {}
        seen: set[int] = set()
        total, limit = 0, self.limit
        for holder, name, swappable in self._targets():
            tensor = holder[name]
            if id(tensor) in seen:
                continue
            seen.add(id(tensor))
            local = tensor if type(tensor) is nn.Parameter or not is_dtensor(tensor) else tensor.to_local()
            if local.is_meta:
                continue
            total += local.nbytes
            if total > limit:
                return self  # too big to copy: a failure is reported as not restored
            slots.append((holder, name, tensor, local, local.detach() if swappable else None))
            group = groups.get((local.dtype, local.device))
            if group is None:
                groups[local.dtype, local.device] = [local]
            else:
                group.append(local)
        with torch.no_grad():  # one flat copy per dtype and device: ~4x faster than a clone per tensor
            self.copies = [(group, _flatten(group)) for group in groups.values()]
        self.slots = slots
        return self

    def __exit__(self, kind: type | None, error: BaseException | None, traceback: Any) -> bool:
        if error is None:
            return False
        if self.slots is None:
            if not isinstance(error, Exception):
                return False
            written = [p for p, e in self.plan.entries.items() if e.source not in _UNTOUCHED]
            shown = ", ".join(written[:8]) + (f", ... (+{len(written) - 8})" if len(written) > 8 else "")
            raise InitExecutionError(
                f"initialization failed after writing began: {error}; the model could NOT be restored (the "
                f"tensors it writes exceed the {self.limit / 2**20:g} MiB restore limit), so some of these "
                f"parameters may hold new values: {shown}"
            ) from error
        with torch.no_grad():
            for holder, name, tensor, local, alias in self.slots:
                holder[name] = tensor
                if alias is not None and _swapped(local, alias):
                    local.set_(alias)  # right_inverse swapped the storage: point it back
            for group, flat in self.copies:
                for local, saved in zip(group, _unflatten(flat, group), strict=True):
                    local.copy_(saved)
        if not isinstance(error, Exception):  # KeyboardInterrupt: restored, and passed on as it is
            return False
        raise InitExecutionError(
            f"initialization failed after writing began: {error}; the model was restored to its state "
            "before the call"
        ) from error
