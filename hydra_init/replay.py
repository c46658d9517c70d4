"""Deferred init for meta builds: record a constructor's init ops on meta tensors, replay them later.

A model that initializes itself in ``__init__`` (nanoGPT's ``self.apply(self._init_weights)``,
a ``fill_``, a ``copy_`` of a computed table) runs those ops on ``meta`` tensors during a
meta build, where they do nothing. :class:`Recorder` sees each of them (from
:mod:`hydra_init.meta`'s ``TorchFunctionMode``) and keeps, in order, every op that
allocates, computes or writes a meta tensor. Once the model is allocated,
:class:`Replay` runs again the ops that the parameters left to it depend on, on the
real tensors: deterministic ops give the eager values exactly, random ones draw
under a generator seeded from the plan seed and the written tensor's path (one key per
op), so they match the eager build distribution for distribution and are reproducible.

Ops that run inside a ``reset_parameters()`` (every ``torch.nn`` layer's constructor
init) are marked: a parameter whose last writes all come from one is left to its
module's ``reset_parameters()``, as before, so plain models keep their pinned values.

Tensors are identified by storage, so views (``w[0].fill_(0)``), ``.data`` and a
parameter wrapped around an already-filled tensor (``nn.Parameter(w)``) are followed.
What cannot be replayed raises :class:`~hydra_init.meta.MetaBuildError` naming the
module and tensor.

Example:
    >>> import torch, torch.nn as nn
    >>> from hydra_init.meta import build_and_init
    >>> class Scaled(nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.fc = nn.Linear(3, 3)
    ...         nn.init.zeros_(self.fc.bias)
    >>> model, report = build_and_init(Scaled, {"seed": 0}, device="cpu", log=False)
    >>> report["fc.bias"].source, report["fc.bias"].init, model.fc.bias.tolist()
    ('custom', '__init__: zero_()', [0.0, 0.0, 0.0])
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn
from torch.utils import _pytree as pytree

from .engine.sharding import is_dtensor
from .initializers import Action
from .sampling import derive_key

__all__ = ["REPLAY_LABEL", "Recorder", "Replay", "Replayed"]

REPLAY_LABEL = "__init__ (replayed on meta build)"
"""The rule label of parameters whose constructor init a meta build replays."""

# Writes that leave nothing of the old values (when they cover the whole storage).
_OVERWRITE = frozenset({
    "normal_", "uniform_", "zero_", "zeros_", "ones_", "fill_", "constant_", "copy_", "random_",
    "exponential_", "geometric_", "log_normal_", "cauchy_", "bernoulli_", "trunc_normal_",
    "kaiming_uniform_", "kaiming_normal_", "xavier_uniform_", "xavier_normal_", "orthogonal_",
    "sparse_", "eye_", "dirac_",
})
# In-place methods that change metadata, not values.
_METADATA = frozenset({
    "requires_grad_", "share_memory_", "retain_grad", "detach_", "squeeze_", "unsqueeze_", "t_",
    "transpose_", "as_strided_", "resize_", "resize_as_", "set_", "swapdims_", "swapaxes_",
})
_INPLACE_DUNDERS = frozenset({
    "__setitem__", "__iadd__", "__isub__", "__imul__", "__itruediv__", "__ifloordiv__", "__imod__",
    "__ipow__", "__iand__", "__ior__", "__ixor__", "__ilshift__", "__irshift__",
})
_RESET_FRAMES = frozenset({"reset_parameters", "_reset_parameters", "reset_running_stats"})


def storage_key(tensor: torch.Tensor) -> int:
    """The identity of a tensor's storage (what ``StorageWeakRef`` hashes), meta tensors included."""
    return tensor.untyped_storage()._cdata


def _covers(tensor: torch.Tensor) -> bool:
    """Whether ``tensor`` is its whole storage, contiguously (what ``allocate`` gives it again)."""
    return (
        tensor.storage_offset() == 0
        and tensor.is_contiguous()
        and tensor.numel() * tensor.element_size() == tensor.untyped_storage().nbytes()
    )


def _is_meta(value: Any) -> bool:
    """A plain meta tensor with a storage (lazy parameters have none and stay lazy)."""
    return (isinstance(value, torch.Tensor) and value.is_meta and not is_dtensor(value)
            and not isinstance(value, nn.parameter.UninitializedTensorMixin))


def _meta_leaves(tree: Any) -> list[torch.Tensor]:
    return [t for t in pytree.tree_leaves(tree) if _is_meta(t)]


@dataclass(eq=False)
class _Op:
    func: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    kind: str  # "alloc" (uninitialized factory), "compute" (new values) or "write" (in place)
    writes: tuple[int, ...]
    reads: frozenset[int]
    full: bool  # the old values of ``writes`` do not matter
    outputs: tuple[tuple[int, torch.Tensor], ...]  # (position among the result's tensors, meta output)
    in_reset: bool
    random: bool

    @property
    def name(self) -> str:
        return getattr(self.func, "__name__", str(self.func))

    def describe(self) -> str:
        """``normal_(mean=0.0, std=0.02)``: the op with its non-tensor arguments."""
        shown = [repr(a) for a in self.args[1:] if not isinstance(a, torch.Tensor)]
        shown += [f"{k}={v!r}" for k, v in self.kwargs.items()
                  if not isinstance(v, (torch.Tensor, torch.Generator)) and v is not None]
        if any(isinstance(a, torch.Tensor) for a in self.args[1:]):
            shown.insert(0, "<tensor>")
        return f"{self.name}({', '.join(shown)})"


class Recorder:
    """Sees every torch function a meta build runs and keeps those on meta tensors, in order."""

    def __init__(self, stop: Any, random_names: Iterable[str]) -> None:
        self.ops: list[_Op] = []
        self.known: set[int] = set()
        self.built: dict[tuple[int, str], int] = {}  # (id(module), name) -> storage key, at build end
        self._stop = stop  # the code object of the frame that runs build(): frames above are not searched
        self._random = frozenset(random_names)

    def _in_reset(self) -> bool:
        frame = sys._getframe(2)
        while frame is not None and frame.f_code is not self._stop:
            if frame.f_code.co_name in _RESET_FRAMES and isinstance(frame.f_locals.get("self"), nn.Module):
                return True
            frame = frame.f_back
        return False

    def observe(self, func: Callable[..., Any], args: tuple, kwargs: dict, result: Any, alloc: bool) -> None:
        """Record ``func(*args, **kwargs) -> result`` if it allocates, computes or writes meta tensors."""
        name = getattr(func, "__name__", "")
        if name in _METADATA:
            return
        inputs = _meta_leaves((args, kwargs))
        outputs = _meta_leaves(result)
        if not inputs and not outputs:
            return
        target = kwargs.get("out")
        writing = target is not None or name in _INPLACE_DUNDERS or (
            name.endswith("_") and not name.startswith("__")
        )
        if writing:
            if target is None:
                target = next((t for t in pytree.tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)),
                              None)
            if not _is_meta(target):
                return
            key = storage_key(target)
            full = (name in _OVERWRITE or target is kwargs.get("out")) and _covers(target)
            reads = frozenset(storage_key(t) for t in inputs if not (full and t is target))
            self._add(func, args, kwargs, "write", (key,), reads, full, ())
            self.known.update(reads, (key,))
            return
        leaves = [t for t in pytree.tree_leaves(result) if isinstance(t, torch.Tensor)]
        new = tuple((i, t) for i, t in enumerate(leaves) if _is_meta(t) and storage_key(t) not in self.known)
        if not new:
            return  # a view (p[0], p.data, p.t()): followed through its storage
        reads = frozenset(storage_key(t) for t in inputs)
        writes = tuple(storage_key(t) for _, t in new)
        self._add(func, args, kwargs, "alloc" if alloc else "compute", writes, reads, True, new)
        self.known.update(reads, writes)

    def _add(self, func, args, kwargs, kind, writes, reads, full, outputs) -> None:
        def keep(value: Any) -> Any:  # values of real tensors as they are now (eager would read them now)
            if isinstance(value, torch.Tensor) and not value.is_meta:
                return value.detach().clone()
            return value

        args, kwargs = pytree.tree_map(keep, (tuple(args), dict(kwargs)))
        random = getattr(func, "__name__", "") in self._random or kwargs.get("generator") is not None
        self.ops.append(_Op(func, args, kwargs, kind, writes, reads, full, outputs, self._in_reset(), random))

    # ------------------------------------------------------------------ after the build
    def remember(self, model: nn.Module) -> None:
        """Note which storage each parameter has now (sharding replaces parameters later)."""
        for module in model.modules():
            for name, param in module._parameters.items():
                if _is_meta(param):
                    self.built[id(module), name] = storage_key(param)

    def last_writes(self, key: int) -> list[_Op]:
        """The ops that decide the values of storage ``key``: its writes since the last full overwrite."""
        found: list[_Op] = []
        for op in reversed(self.ops):
            if key in op.writes:
                if op.kind != "alloc":
                    found.append(op)
                if op.full:
                    break
        return found[::-1]

    def replayed(self, model: nn.Module) -> dict[str, Action]:
        """Parameter path -> :class:`Replayed`, for meta parameters whose constructor wrote them
        outside any ``reset_parameters()``, and for the other recorded parameters of their modules
        (a ``reset_parameters()`` of the module would overwrite the former)."""
        found: dict[int, tuple[nn.Module, str, list[_Op]]] = {}
        custom: set[int] = set()
        for path, module in model.named_modules(remove_duplicate=False):
            for name, param in module._parameters.items():
                if id(param) in found or param is None:
                    continue
                key = self.built.get((id(module), name)) if is_dtensor(param) else (
                    storage_key(param) if _is_meta(param) else None)
                if key is None:
                    continue
                ops = self.last_writes(key)
                found[id(param)] = (module, f"{path}.{name}" if path else name, ops)
                if ops and not all(op.in_reset for op in ops):
                    custom.add(id(module))
        return {
            path: Replayed(" -> ".join(op.describe() for op in ops))
            for module, path, ops in found.values() if ops and id(module) in custom
        }


@dataclass
class Replayed(Action):
    """A parameter's init as its constructor ran it, replayed after a meta build allocated it."""

    ops: str = ""
    type_name: ClassVar[str] = "Replayed"

    def describe(self) -> str:
        return f"__init__: {self.ops}" if self.ops else "__init__"


@dataclass
class _Place:
    path: str
    module: nn.Module
    kind: str
    name: str
    meta: torch.Tensor

    def where(self) -> str:
        owner = self.path.rpartition(".")[0] or "<root>"
        return f"{self.path} of {owner} ({type(self.module).__name__})"


@dataclass
class Replay:
    """The recorded ops that the replayed parameters need, checked before allocation."""

    ops: list[_Op]
    places: dict[int, _Place]
    names: dict[int, str] = field(default_factory=dict)  # id(op) -> seed name

    @classmethod
    def prepare(cls, recorder: Recorder, model: nn.Module, paths: Iterable[str]) -> Replay:
        """Keep the ops the parameters at ``paths`` depend on; refuse, before any allocation, what
        cannot be replayed."""
        from .meta import MetaBuildError, _named_tensors

        places: dict[int, _Place] = {}
        for kind in ("_parameters", "_buffers"):
            for path, module, name, tensor in _named_tensors(model, kind):
                if _is_meta(tensor):
                    full = f"{path}.{name}" if path else name
                    places.setdefault(storage_key(tensor), _Place(full, module, kind, name, tensor))
        by_path = {p.path: key for key, p in places.items()}
        for path in paths:
            if path not in by_path:  # a DTensor: its shards would need the whole tensor replayed
                raise MetaBuildError(
                    f"cannot replay the init that build() ran on the sharded parameter {path}: "
                    "add a rule for it, or call init_meta before sharding"
                )
        need = {by_path[p] for p in paths}
        kept: list[_Op] = []
        for op in reversed(recorder.ops):
            if need.isdisjoint(op.writes):
                continue
            kept.append(op)
            if op.full:
                need.difference_update(op.writes)
            need.update(op.reads)
        kept.reverse()
        for key in {k for op in kept for k in (*op.writes, *op.reads)} & places.keys():
            place = places[key]
            if not _covers(place.meta):
                raise MetaBuildError(
                    f"cannot replay the init that build() ran on {place.where()}: the tensor is a view of "
                    "a larger one, which allocation does not keep. Add a rule for it or build eagerly"
                )
        names: dict[int, str] = {}
        counts: dict[str, int] = {}
        for op in recorder.ops:  # seed names count every recorded op, so they do not depend on the config
            place = places.get(op.writes[0])
            base = place.path if place is not None else "<build>"
            counts[base] = counts.get(base, 0) + 1
            names[id(op)] = f"{base}#{counts[base]}"
        return cls(kept, places, names)

    def __bool__(self) -> bool:
        return bool(self.ops)

    def run(self, device: torch.device | str, seed: int) -> None:
        """Run the kept ops on the allocated model (call after ``allocate``)."""
        from .meta import MetaBuildError

        device = torch.device(device)
        real: dict[int, torch.Tensor] = {}
        for key, place in self.places.items():
            tensor = getattr(place.module, place.kind)[place.name]
            if tensor.is_meta or tensor.stride() != place.meta.stride() or not _covers(tensor):
                raise MetaBuildError(f"{place.where()} was not allocated like its meta tensor; cannot replay")
            real[key] = tensor
        values: dict[int, torch.Tensor] = {}  # id(meta output) -> its real tensor

        def swap(value: Any) -> Any:
            if isinstance(value, torch.Tensor):
                if not value.is_meta:
                    return value.to(device)
                if id(value) in values:
                    return values[id(value)]
                base = real.get(storage_key(value))
                if base is None:
                    raise LookupError("a tensor created outside build() on the meta device")
                return base.as_strided(value.size(), value.stride(), value.storage_offset())
            if isinstance(value, torch.Generator):
                return None
            if isinstance(value, (str, torch.device)) and str(value) == "meta":
                return device
            return value

        cuda = [device.index or 0] if device.type == "cuda" else []
        with torch.no_grad(), torch.random.fork_rng(devices=cuda):
            for op in self.ops:
                if op.kind == "alloc" and all(k in real for k in op.writes):
                    continue  # the storage of a model tensor: allocate gave it
                try:
                    args, kwargs = pytree.tree_map(swap, (op.args, op.kwargs))
                    if op.random:
                        torch.manual_seed(derive_key(seed, self.names[id(op)], ()) >> 1)
                    result = op.func(*args, **kwargs)
                except Exception as exc:
                    raise MetaBuildError(
                        f"cannot replay {op.describe()}, which build() ran on {self._where(op)}: {exc}. "
                        "Add a rule for it or build this model eagerly (device=None / meta=False)"
                    ) from exc
                if op.kind == "write":
                    continue
                got = [t for t in pytree.tree_leaves(result) if isinstance(t, torch.Tensor)]
                for position, meta in op.outputs:
                    value = got[position]
                    key = storage_key(meta)
                    if key in real:  # new values for a model tensor's storage (nn.Parameter(w * 2))
                        swap(meta).copy_(value)
                    else:
                        values[id(meta)] = value
                        if (value.stride(), value.storage_offset()) == (meta.stride(), meta.storage_offset()):
                            real[key] = value

    def _where(self, op: _Op) -> str:
        place = self.places.get(op.writes[0])
        return place.where() if place is not None else "a temporary tensor"
