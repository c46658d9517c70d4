"""The plan in columns: one list per field over the model's parameters, and a mapping view.

A plan of 10⁵ parameters is 10⁵ rows of a few fields. Keeping each field as one list
(positions as in :class:`~hydra_init.engine.select.ModelIndex`) lets planning fill whole
groups of parameters at once and lets execution and the report read only the fields they
need; no per-parameter object is made unless something asks for it.
:class:`Entries` is the ``path -> PlanEntry`` view of the same data, for the code that
works entry by entry (parametrizations, mmengine's ``init_weights`` order, errors).

>>> import torch.nn as nn
>>> from hydra_init.engine.select import ModelIndex
>>> columns = PlanColumns(ModelIndex(nn.Linear(2, 2)))
>>> columns.source, columns.entry(1).path
(['default', 'default'], 'bias')
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass
from typing import Any

import torch

from .select import ModelIndex, ParamRef

__all__ = ["Entries", "PlanColumns", "PlanEntry"]

WEIGHT = "weight"


@dataclass(slots=True)
class PlanEntry:
    """What happens to one parameter.

    ``source`` is ``rule`` (drawn by ``rule``), ``pretrained`` (copied from a
    checkpoint), ``reset`` (the module's ``reset_parameters()``, by a Default rule),
    ``default`` (no rule: left as it is), ``lazy`` (uninitialized, skipped) or
    ``custom`` (written by replayed constructor code).
    """

    ref: Any  # a ParamRef, or a parametrization's ref (engine/parametrized.py)
    source: str
    rule: Any = None
    init: Any = None  # the rule's initializer, with expr arguments computed
    role: str = WEIGHT
    draw: Any = None
    loaded: Any = None  # pretrained: the object describing the tensor to copy
    note: str = ""
    shape: torch.Size | None = None  # the parameter's shape and dtype, where planning read them
    dtype: torch.dtype | None = None

    @property
    def path(self) -> str:
        return self.ref.path


class PlanColumns:
    """The plan's fields over the index's parameters, one list each (position ``i`` is
    ``index.param_paths[i]``). A parameter reached through a parametrization keeps its
    own ref in :attr:`refs`; every other one is ``index``'s."""

    __slots__ = (
        "draw",
        "dtype",
        "index",
        "init",
        "loaded",
        "note",
        "refs",
        "role",
        "rule",
        "shape",
        "source",
    )

    def __init__(self, index: ModelIndex, note: str = "") -> None:
        n = len(index.param_paths)
        self.index = index
        self.source: list[str] = ["default"] * n
        self.rule: list[Any] = [None] * n
        self.init: list[Any] = [None] * n
        self.role: list[str] = [WEIGHT] * n
        self.draw: list[Any] = [None] * n
        self.loaded: list[Any] = [None] * n
        self.note: list[str] = [note] * n
        self.shape: list[torch.Size | None] = [None] * n
        self.dtype: list[torch.dtype | None] = [None] * n
        self.refs: dict[int, Any] = {}

    def __len__(self) -> int:
        return len(self.source)

    def ref(self, i: int) -> Any:
        """The ref of parameter ``i`` (made on demand, without indexing every parameter)."""
        ref = self.refs.get(i)
        if ref is not None:
            return ref
        index = self.index
        module_path, module = index.modules[owner_of(index, i)]
        return ParamRef(index.param_paths[i], module_path, index.param_local[i], module)

    def param(self, i: int) -> torch.Tensor:
        """Parameter ``i`` as its module holds it now (a plan stays valid across ``to_empty``)."""
        ref = self.refs.get(i)
        if ref is not None:
            return ref.param
        index = self.index
        return index.modules[owner_of(index, i)][1]._parameters[index.param_local[i]]

    def params(self, positions: list[int]) -> list[torch.Tensor]:
        """:meth:`param` of many positions."""
        if self.refs:
            return [self.param(i) for i in positions]
        index = self.index
        owners = index.param_owner.tolist()
        modules, local = index.modules, index.param_local
        return [modules[owners[i]][1]._parameters[local[i]] for i in positions]

    def entry(self, i: int) -> PlanEntry:
        return PlanEntry(self.ref(i), self.source[i], self.rule[i], self.init[i], self.role[i],
                         self.draw[i], self.loaded[i], self.note[i], self.shape[i], self.dtype[i])

    def set(self, i: int, entry: PlanEntry) -> None:
        self.source[i], self.rule[i], self.init[i], self.role[i] = (
            entry.source, entry.rule, entry.init, entry.role)
        self.draw[i], self.loaded[i], self.note[i] = entry.draw, entry.loaded, entry.note
        self.shape[i], self.dtype[i] = entry.shape, entry.dtype
        if type(entry.ref) is ParamRef:
            self.refs.pop(i, None)
        else:
            self.refs[i] = entry.ref

    def positions(self, *sources: str) -> list[int]:
        """Positions whose source is one of ``sources``, in model order."""
        if len(sources) == 1:
            wanted = sources[0]
            return [i for i, s in enumerate(self.source) if s == wanted]
        return [i for i, s in enumerate(self.source) if s in sources]


def owner_of(index: ModelIndex, i: int) -> int:
    """The module position that holds parameter ``i`` (the last module whose range starts at
    or before ``i``: modules without parameters have empty ranges)."""
    return bisect.bisect_right(index.param_bounds, i) - 1


class Entries(MutableMapping[str, PlanEntry]):
    """``path -> PlanEntry`` over the columns, in model order; entries for tensors that are
    not parameters (a parametrization's computed weight, while planning) are kept aside."""

    def __init__(self, columns: PlanColumns) -> None:
        self.columns = columns
        self.extra: dict[str, PlanEntry] = {}

    def __getitem__(self, path: str) -> PlanEntry:
        i = self.columns.index.position.get(path)
        if i is None:
            return self.extra[path]
        return self.columns.entry(i)

    def __setitem__(self, path: str, entry: PlanEntry) -> None:
        i = self.columns.index.position.get(path)
        if i is None:
            self.extra[path] = entry
        else:
            self.columns.set(i, entry)

    def __delitem__(self, path: str) -> None:
        if path in self.columns.index.position:
            raise TypeError(f"a plan keeps an entry for every parameter; {path!r} cannot be removed")
        del self.extra[path]

    def __iter__(self) -> Iterator[str]:
        yield from self.columns.index.param_paths
        yield from list(self.extra)

    def __len__(self) -> int:
        return len(self.columns) + len(self.extra)

    def __contains__(self, path: object) -> bool:
        return path in self.columns.index.position or path in self.extra
