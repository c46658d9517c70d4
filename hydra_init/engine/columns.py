"""The plan in columns: what happens to each parameter, as one small integer per parameter.

A plan of 10⁵ parameters is 10⁵ rows of a few fields, and nearly all of them repeat: every
``Linear(768, 768)`` weight of a model has the same source, rule, initializer, role, draw,
shape and dtype. So a row's fields are a :class:`Kind`, kept once in a table, and the plan
holds one ``int32`` kind per parameter (positions as in
:class:`~hydra_init.engine.select.ModelIndex`). Planning fills whole groups of parameters
at once; execution and the report count and select with array operations over the kinds;
no per-parameter object is made unless something asks for it. :class:`Entries` is the
``path -> PlanEntry`` view of the same data, for code that works entry by entry
(parametrizations, mmengine's ``init_weights`` order, errors).

>>> import torch.nn as nn
>>> from hydra_init.engine.select import ModelIndex
>>> columns = PlanColumns(ModelIndex(nn.Linear(2, 2)))
>>> len(columns.kinds), columns.at(1).source, columns.entry(1).path
(1, 'default', 'bias')
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, MutableMapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch

from .select import ModelIndex, ParamRef

__all__ = ["Entries", "Kind", "PlanColumns", "PlanEntry"]

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


class Kind(NamedTuple):
    """The fields a group of parameters shares (every field of a :class:`PlanEntry` but its ref)."""

    source: str
    rule: Any = None
    init: Any = None
    role: str = WEIGHT
    draw: Any = None
    loaded: Any = None
    note: str = ""
    shape: torch.Size | None = None
    dtype: torch.dtype | None = None


class PlanColumns:
    """The plan over the index's parameters: :attr:`kind` (position -> kind id, ``int32``) and
    :attr:`kinds` (the table). A parameter reached through a parametrization keeps its own
    ref in :attr:`refs`; every other one is the index's."""

    __slots__ = ("_ids", "index", "kind", "kinds", "refs")

    def __init__(self, index: ModelIndex, note: str = "") -> None:
        self.index = index
        self.kinds: list[Kind] = []
        self._ids: dict[tuple, int] = {}
        self.kind_id(Kind("default", note=note))
        self.kind = np.zeros(len(index.param_paths), dtype=np.int32)
        self.refs: dict[int, Any] = {}

    def __len__(self) -> int:
        return len(self.kind)

    def kind_id(self, kind: Kind) -> int:
        """The id of ``kind`` in the table (added when new; objects compared by identity)."""
        key = tuple(f if type(f) in (str, torch.Size) or f is None else id(f) for f in kind)
        found = self._ids.get(key)
        if found is None:
            found = self._ids[key] = len(self.kinds)
            self.kinds.append(kind)  # holds the objects, so their ids stay unique
        return found

    def at(self, i: int) -> Kind:
        """The fields of parameter ``i``."""
        return self.kinds[self.kind[i]]

    def positions(self, *sources: str) -> list[int]:
        """Positions whose source is one of ``sources``, in model order."""
        return self.where(lambda kind: kind.source in sources)

    def where(self, test: Callable[[Kind], bool]) -> list[int]:
        """Positions whose kind passes ``test`` (asked once per kind), in model order."""
        wanted = np.array([bool(test(k)) for k in self.kinds], dtype=bool)
        return np.flatnonzero(wanted[self.kind]).tolist()

    def counts(self) -> list[tuple[Kind, int]]:
        """Each kind with how many parameters have it (those with at least one)."""
        counts = np.bincount(self.kind, minlength=len(self.kinds)).tolist()
        return [(k, n) for k, n in zip(self.kinds, counts, strict=True) if n]

    def ref(self, i: int) -> Any:
        """The ref of parameter ``i`` (made on demand, without indexing every parameter)."""
        ref = self.refs.get(i)
        if ref is not None:
            return ref
        index = self.index
        module_path, module = index.modules[index.param_owner[i]]
        return ParamRef(index.param_paths[i], module_path, index.param_local[i], module)

    def param(self, i: int) -> torch.Tensor:
        """Parameter ``i`` as its module holds it now (a plan stays valid across ``to_empty``)."""
        return self.params([i])[0]

    def params(self, positions: list[int]) -> list[torch.Tensor]:
        """:meth:`param` of many positions."""
        index, refs = self.index, self.refs
        owners, modules, local = index.param_owner, index.modules, index.param_local
        return [refs[i].param if i in refs else modules[owners[i]][1]._parameters[local[i]]
                for i in positions]

    def entry(self, i: int) -> PlanEntry:
        return PlanEntry(self.ref(i), *self.kinds[self.kind[i]])

    def set(self, i: int, entry: PlanEntry) -> None:
        self.kind[i] = self.kind_id(Kind(entry.source, entry.rule, entry.init, entry.role, entry.draw,
                                         entry.loaded, entry.note, entry.shape, entry.dtype))
        if type(entry.ref) is ParamRef:
            self.refs.pop(i, None)
        else:
            self.refs[i] = entry.ref


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
