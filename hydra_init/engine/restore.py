"""Undo a plan's writes when something the plan did not foresee raises half-way.

The plan runs every check that can fail before the first write, so an accepted plan
should not fail. What can still fail is user code: a module's own
``reset_parameters()``, a parametrization's ``right_inverse``, a custom draw. Execution
runs those steps first, under :class:`Restorer`: what they write is copied on entry, and
an error puts it back and raises :class:`~hydra_init.errors.InitExecutionError` saying
so, the original error as its ``__cause__``. The engine's own writes (built-in draws,
checkpoint copies, padding rows) run after them under :class:`EngineStep`, uncopied.

Why the copy covers user code only:

* A copy of everything the plan writes costs what writing it costs in memory traffic
  (page faults included): ``python benchmarks/guard_cost.py`` times ``apply`` with no
  guard, with this guard and with a copy of everything: only the last shows, as the
  copy's memory traffic added to every init of more than a few MiB. The engine's own
  draws on validated tensors fail only by running out of memory, where a second copy of
  the model would fail first, or by a bug; their failure says the model was not
  restored and lists what may have changed.
* The user-code steps touch little in practice (the modules that are reset, the weights
  written through parametrizations, the parameters of custom draws), copied into one
  flat tensor per dtype and device (``torch._utils._flatten_dense_tensors``: four times
  faster than a clone per tensor for 10,000 small parameters), children and buffers of
  reset modules included.
* The copy is skipped when it would exceed :data:`RESTORE_LIMIT` bytes (256 MiB), so a
  large model never holds a second copy of itself; above it, a failure says that the
  model could not be restored and which parameters the plan was writing. Set
  ``hydra_init.engine.restore.RESTORE_LIMIT = 0`` to turn the copy off.

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
from ..sampling import BUILTIN_DRAWS
from .sharding import local_tensor

__all__ = ["RESTORE_LIMIT", "EngineStep", "Restorer", "is_custom", "not_restored"]

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

    def __init__(self, plan: Any, limit: int | None = None, *, user_code_only: bool = False) -> None:
        self.plan = plan
        self.limit = RESTORE_LIMIT if limit is None else limit
        self.user_code_only = user_code_only
        self.slots: list[_Slot] | None = None
        self.copies: list[tuple[list[torch.Tensor], torch.Tensor]] = []

    def _written(self) -> Iterator[Any]:
        """The entries whose tensors are guarded: all written ones, or (``user_code_only``)
        those written through a parametrization or by a custom draw."""
        plan = self.plan
        if self.user_code_only and not (plan.computed or plan.custom_draws):
            return  # resets alone: their modules are guarded whole (_modules_touched)
        columns = plan.columns
        refs = columns.refs
        for i in columns.where(lambda kind: kind.source not in _UNTOUCHED):
            if self.user_code_only and getattr(refs.get(i), "holder", None) is None and not (
                    plan.custom_draws and is_custom(columns.at(i).source, columns.at(i).draw)):
                continue
            yield columns.entry(i)

    def _targets(self) -> Iterator[tuple[dict, str, bool]]:
        """``(dict, name, swappable)`` of every tensor the plan may write: the dict holds it (a
        module's ``_parameters``, ``_buffers`` or, for the old weight_norm hook, ``__dict__``);
        ``swappable`` when a write may replace its storage or the object, not only its values."""
        for entry in self._written():
            ref = entry.ref
            holder = getattr(ref, "holder", None)
            yield (holder or ref.module)._parameters, ref.local_name, holder is not None
        for module in _modules_touched(self.plan):
            for sub in module.modules():
                yield from ((sub._parameters, n, True) for n, t in sub._parameters.items() if t is not None)
                yield from ((sub._buffers, n, True) for n, t in sub._buffers.items() if t is not None)
        for load in () if self.user_code_only else self.plan.pretrained:
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
            local = local_tensor(tensor)
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
            raise not_restored(self.plan, error, f"the tensors it writes exceed the "
                               f"{self.limit / 2**20:g} MiB restore limit")
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


def is_custom(source: str, draw: Any) -> bool:
    """Whether a plan entry (its ``source`` and ``draw``) is written by user code: a rule's draw
    that is not one of :data:`~hydra_init.sampling.BUILTIN_DRAWS`."""
    return source == "rule" and draw is not None and type(draw) not in BUILTIN_DRAWS


def not_restored(plan: Any, error: BaseException, why: str) -> InitExecutionError:
    """The error for a failure that could not be undone: why, and which parameters may have changed."""
    columns = plan.columns
    paths = columns.index.param_paths
    written = [paths[i] for i in columns.where(lambda kind: kind.source not in _UNTOUCHED)]
    shown = ", ".join(written[:8]) + (f", ... (+{len(written) - 8})" if len(written) > 8 else "")
    error_out = InitExecutionError(
        f"initialization failed after writing began: {error}; the model could NOT be restored ({why}), "
        f"so some of these parameters may hold new values: {shown}"
    )
    error_out.__cause__ = error
    return error_out


class EngineStep:
    """A context manager for the engine's own writes (built-in draws, checkpoint copies,
    padding rows), which run after every step that runs user code.

    They are not copied first: on validated tensors they can fail only by running out of
    memory (where a copy would fail first) or by a bug, and a copy of everything they
    write would cost a third of an init. A failure says so, and what may have changed.
    """

    def __init__(self, plan: Any) -> None:
        self.plan = plan

    def __enter__(self) -> EngineStep:
        return self

    def __exit__(self, kind: type | None, error: BaseException | None, traceback: Any) -> bool:
        if error is None or not isinstance(error, Exception):
            return False
        raise not_restored(self.plan, error, "the engine's own writes are not copied first; "
                           "please report this error") from error
