"""Matching modules and parameters: class names over the MRO, path globs, parameter globs.

:class:`ModelIndex` walks the model once and caches what every rule needs:
module paths, each class's MRO names, and which parameters live where.

>>> import torch.nn as nn
>>> index = ModelIndex(nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8)))
>>> [path for path, _ in index.modules_of_class(("_BatchNorm",))]
['1']
"""

from __future__ import annotations

import bisect
import functools
import importlib
import inspect
import re
from collections.abc import Iterable, Iterator, Sequence
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

__all__ = [
    "WRAPPERS", "ModelIndex", "ParamRef", "check_glob", "glob_captures", "glob_match",
    "join", "torch_class_names",
]


def join(prefix: str, name: str) -> str:
    """Join module path segments, where ``""`` is the root."""
    return f"{prefix}.{name}" if prefix and name else prefix or name


def _chunk_regex(chunk: str) -> str:
    """The regex of a glob piece without ``*``: ``?``, ``[...]`` classes, ``{name}`` captures, literals."""
    out, i = [], 0
    while i < len(chunk):
        char = chunk[i]
        close = chunk.find("}", i)
        if char == "?":
            out.append(".")
        elif char == "[":
            end = chunk.find("]", i + 2)
            if end < 0:
                raise ValueError(f"'[' at position {i} is never closed")
            body = chunk[i + 1 : end]
            negate = body.startswith("!")
            body = body[1:] if negate else body
            for lo, hi in re.findall(r"(.)-(.)", body):
                if lo > hi:
                    raise ValueError(f"the range [{lo}-{hi}] is empty (write [{hi}-{lo}])")
            escaped = "".join("\\" + c if c in "\\^[]" else c for c in body)
            out.append("[" + ("^" if negate else "") + escaped + "]")
            i = end
        elif char == "{" and close > i and chunk[i + 1 : close].isidentifier():
            out.append(f"(?P<{chunk[i + 1 : close]}>[^.]+)")
            i = close
        else:
            out.append(re.escape(char))
        i += 1
    return "".join(out)


class _Glob:
    """A compiled glob, matched in linear time.

    The pattern is cut at its ``*`` into pieces without stars. The first piece must
    match at the start, the last at the end, and each middle piece is found at its
    leftmost position after the previous one: no backtracking over the stars, so
    ``*a*a*a*a*b`` against a long path costs a few searches, not an exponential blow-up.
    """

    def __init__(self, pattern: str) -> None:
        pieces = re.split(r"\*+", pattern)
        try:
            self.pieces = [re.compile(_chunk_regex(p), re.DOTALL) for p in pieces]
        except re.error as exc:
            raise ValueError(str(exc)) from None
        names = [n for p in self.pieces for n in p.groupindex]
        if len(names) != len(set(names)):
            raise ValueError("a {name} capture appears twice")
        last = "(?:" + _chunk_regex(pieces[-1]) + r")\Z"
        self.tail = re.compile(last, re.DOTALL) if len(pieces) > 1 else None

    def match(self, path: str) -> dict[str, str] | None:
        pieces = self.pieces
        if len(pieces) == 1:
            found = pieces[0].fullmatch(path)
            return None if found is None else found.groupdict()
        first = pieces[0].match(path)
        if first is None:
            return None
        captures = dict(first.groupdict())
        pos = first.end()
        for piece in pieces[1:-1]:
            found = piece.search(path, pos)
            if found is None:
                return None
            captures.update(found.groupdict())
            pos = found.end()
        last = self.tail.search(path, pos)
        if last is None:
            return None
        captures.update(last.groupdict())
        return captures


_SPECIAL = re.compile(r"\*|\?|\[[^\]]*\]|\{[^}]*\}")


@functools.lru_cache(maxsize=4096)
def _literal_piece(pattern: str) -> str:
    """The longest run of plain characters in a glob: every matching path contains it."""
    pieces = [p for p in _SPECIAL.split(pattern) if not any(c in p for c in "[]{}\\")]
    return max(pieces, key=len, default="")


@functools.lru_cache(maxsize=4096)
def _compiled(pattern: str) -> _Glob:
    return _Glob(pattern)


def check_glob(pattern: str) -> None:
    """Raise ``ValueError`` naming the problem when ``pattern`` is not a valid glob.

    >>> check_glob("blocks.[z-a].attn")
    Traceback (most recent call last):
    ...
    ValueError: the range [z-a] is empty (write [a-z])
    """
    _compiled(pattern)


def glob_captures(path: str, pattern: str) -> dict[str, int | str] | None:
    """Match a path against a glob; return its ``{name}`` captures, or ``None``.

    Integer segments are captured as ints.

    >>> glob_captures("layers.3.attention.wo", "layers.{layer_id}.attention.*")
    {'layer_id': 3}
    >>> glob_captures("head", "layers.{layer_id}.*") is None
    True
    """
    found = _compiled(pattern).match(path)
    if found is None:
        return None
    return {k: int(v) if v.isdigit() else v for k, v in found.items()}


def glob_match(path: str, pattern: str) -> bool:
    """fnmatch-style: ``*`` matches any characters, dots included.

    >>> glob_match("blocks.3.attn.proj", "*.attn.proj")
    True
    """
    return _compiled(pattern).match(path) is not None


@functools.cache
def _mro_names(cls: type) -> frozenset[str]:
    names = set()
    for klass in inspect.getmro(cls):
        names.add(klass.__name__)
        names.add(f"{klass.__module__}.{klass.__qualname__}")
    return frozenset(names)


@functools.cache
def _resolve_qualified(name: str) -> type | None:
    """``torch.nn.Conv2d`` or ``pkg.mod.Class`` -> the class, if importable."""
    module_name, _, attr = name.rpartition(".")
    try:
        obj = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError):
        return None
    return obj if isinstance(obj, type) else None


@functools.lru_cache(maxsize=1)
def torch_class_names() -> frozenset[str]:
    """Simple names of every ``nn.Module`` subclass torch.nn defines (``_ConvNd`` too)."""
    names, stack = set(), [nn.Module]
    while stack:
        cls = stack.pop()
        if cls.__module__.startswith("torch.nn"):
            names.add(cls.__name__)
        stack.extend(cls.__subclasses__())
    return frozenset(names)


def class_matches(cls: type, name: str) -> bool:
    """Whether ``name`` (simple or qualified) names ``cls`` or any class in its MRO."""
    if name in _mro_names(cls):
        return True
    if "." in name:
        target = _resolve_qualified(name)
        return target is not None and issubclass(cls, target)
    return False


def is_known_class(name: str, model_names: Iterable[str]) -> bool:
    """A class name exists: in the model's MRO names, in torch.nn, or importable."""
    if name in model_names or name in torch_class_names():
        return True
    return "." in name and _resolve_qualified(name) is not None


@functools.cache
def _class_has_init_cfg(cls: type) -> bool:
    return getattr(cls, "init_cfg", None) is not None


class ParamRef(NamedTuple):
    """One parameter of the model, reached through the module that holds it.

    :attr:`param` is looked up in the module each time, so a plan stays valid when
    the parameter objects are replaced (``to_empty`` after a meta-device build).
    A named tuple: a plan holds one per parameter, so it must be cheap to make.
    """

    path: str  # canonical full path (first occurrence when shared)
    module_path: str
    local_name: str
    module: nn.Module

    @property
    def param(self) -> torch.nn.Parameter:
        return self.module._parameters[self.local_name]


WRAPPERS: dict[str, str] = {
    "OptimizedModule": "_orig_mod",  # torch.compile
    "DataParallel": "module",
    "DistributedDataParallel": "module",
    "FullyShardedDataParallel": "_fsdp_wrapped_module",  # FSDP1
    "CheckpointWrapper": "_checkpoint_wrapped_module",  # activation checkpointing
    "OffloadWrapper": "_checkpoint_wrapped_module",
}
"""Wrapper class name -> the attribute holding the wrapped module. Wrappers are invisible
to matching, seeding and the report: a compiled or DDP-wrapped model gets the values
of the bare model, and globs written for the bare model match."""


def _owners(bounds: Sequence[int] | np.ndarray) -> list[int]:
    """The module position of each parameter position, from the modules' ranges
    (module ``i`` owns positions ``bounds[i]:bounds[i + 1]``)."""
    return np.repeat(np.arange(len(bounds) - 1), np.diff(bounds)).tolist()


class ModelIndex:
    """A single walk of the model, reused by every rule.

    Paths are canonical: wrapper prefixes (:data:`WRAPPERS`) are cut. A tensor
    registered under several names (tied weights) has one canonical path, its first
    name; :attr:`aliases` lists the others. The walk also notes the few modules that
    need a second look (:attr:`computed_candidates`: parametrizations or forward
    pre-hooks; :attr:`init_cfg_candidates`), so no later step walks every module again.

    Parameters are kept in columns, in model order: :attr:`param_paths`, :attr:`tensors`
    and :attr:`param_local`; module ``i``'s own parameters are positions
    ``param_bounds[i]:param_bounds[i + 1]``. The :class:`ParamRef` objects
    (:attr:`params`, :meth:`direct_params`) are made only when something asks for them.
    """

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.modules: list[tuple[str, nn.Module]] = []
        self.param_paths: list[str] = []
        """Canonical paths of the model's parameters, in model order (each tensor once)."""
        self.tensors: list[torch.Tensor] = []
        """The parameters of :attr:`param_paths`, in the same order, as found by the walk."""
        self.param_local: list[str] = []
        """Each parameter's name in its module (``weight``)."""
        self.param_bounds: list[int] = []
        """Module ``i``'s own parameters are positions ``param_bounds[i]:param_bounds[i + 1]``."""
        self.aliases: dict[str, list[str]] = {}
        self.special_modules: set[int] = set()
        """Positions of modules whose parameters are not only their own columns: tied aliases
        of another module's tensor, or tensors computed by a parametrization (``add_computed``)."""
        self.computed_candidates: list[tuple[str, nn.Module]] = []
        self.init_cfg_candidates: list[tuple[str, nn.Module]] = []
        """Modules with an ``init_cfg`` attribute of their own or of their class."""
        self._computed: dict[str, list[ParamRef]] = {}
        self._globs: dict[tuple[str, str], dict[int, dict[str, int | str]]] = {}
        self._walk(model)
        self.module_paths = [path for path, _ in self.modules]
        self.class_names: frozenset[str] = frozenset().union(*(_mro_names(t) for t in self.by_class))

    def _walk(self, model: nn.Module) -> None:
        """Walk the modules, indexing each module's own parameters on the way.

        The order of ``named_modules(remove_duplicate=False)`` (pre-order; a module
        registered twice appears under both paths), walked with an explicit stack rather
        than its recursive generators; wrapper modules are left out and their attribute
        cut from paths.

        >>> import torch.nn as nn
        >>> ModelIndex(nn.DataParallel(nn.Sequential(nn.Linear(2, 2)))).module_paths
        ['', '0']
        """
        paths, tensors, local_names = self.param_paths, self.tensors, self.param_local
        bounds = self.param_bounds
        modules = self.modules
        add, add_path, add_tensor, add_local, add_bound = (
            modules.append, paths.append, tensors.append, local_names.append, bounds.append)
        computed, init_cfgs = self.computed_candidates.append, self.init_cfg_candidates.append
        # per class, looked up once: its wrapper attribute, whether it has an init_cfg, its positions
        kinds: dict[type, tuple[str | None, bool, list[int]]] = {}
        stack: list[tuple[str, nn.Module]] = [("", model)]
        pop, extend = stack.pop, stack.extend
        count = 0
        while stack:
            path, module = pop()
            children = module._modules
            kind = kinds.get(type(module))
            if kind is None:
                cls = type(module)
                kind = kinds[cls] = (WRAPPERS.get(cls.__name__), _class_has_init_cfg(cls), [])
            inner = kind[0]
            prefix = path + "." if path else ""
            if inner is None or inner not in children:  # a wrapper's child stands in its place
                kind[2].append(count)
                count += 1
                add_bound(len(paths))
                add((path, module))
                own = module._parameters
                if own:
                    for local, param in own.items():
                        if param is not None:
                            add_path(prefix + local)
                            add_tensor(param)
                            add_local(local)
                if module._forward_pre_hooks or "parametrizations" in children:
                    computed((path, module))
                if kind[1] or "init_cfg" in module.__dict__:
                    init_cfgs((path, module))
            if children:
                if inner is None:
                    extend([(prefix + name, child) for name, child in reversed(children.items())
                            if child is not None])
                else:
                    extend([(path if name == inner else prefix + name, child)
                            for name, child in reversed(children.items()) if child is not None])
        add_bound(len(paths))
        if len(set(map(id, tensors))) < len(tensors):
            self._fold_ties()
        self.by_class = {cls: kind[2] for cls, kind in kinds.items() if kind[2]}
        """Positions in :attr:`modules` of each class's modules (one MRO test per class suffices)."""

    def _fold_ties(self) -> None:
        """Keep each tensor once, under its first path: the walk listed a tensor registered
        under several names (tied weights) at each; the later names become :attr:`aliases`
        and their modules :attr:`special_modules`."""
        first: dict[int, str] = {}
        keep: list[int] = []
        owners = _owners(self.param_bounds)  # before the fold: every registration's module
        for i, (path, tensor) in enumerate(zip(self.param_paths, self.tensors, strict=True)):
            found = first.setdefault(id(tensor), path)
            if found is path:
                keep.append(i)
            else:
                self.aliases.setdefault(found, []).append(path)
                self.special_modules.add(owners[i])
        kept = np.zeros(len(self.tensors) + 1, dtype=np.int64)
        kept[np.asarray(keep, dtype=np.int64) + 1] = 1
        self.param_bounds = np.cumsum(kept)[self.param_bounds].tolist()
        self.param_paths = [self.param_paths[i] for i in keep]
        self.tensors = [self.tensors[i] for i in keep]
        self.param_local = [self.param_local[i] for i in keep]

    # ------------------------------------------------------------ parameter objects, on demand
    @functools.cached_property
    def _canonical(self) -> dict[int, str]:
        """``id`` of each tensor -> its canonical path."""
        return dict(zip(map(id, self.tensors), self.param_paths, strict=True))

    @functools.cached_property
    def param_owner(self) -> list[int]:
        """The module position of each parameter (parallel to :attr:`param_paths`)."""
        return _owners(self.bounds_array)

    @functools.cached_property
    def params(self) -> dict[str, ParamRef]:
        """Canonical path -> :class:`ParamRef`, in model order (made on first access)."""
        modules = self.modules
        return {
            path: ParamRef(path, modules[m][0], local, modules[m][1])
            for path, m, local in zip(self.param_paths, self.param_owner, self.param_local, strict=True)
        }

    @functools.cached_property
    def position(self) -> dict[str, int]:
        """Canonical parameter path -> its position in the columns."""
        return {path: i for i, path in enumerate(self.param_paths)}

    def direct_params(self, module_path: str) -> list[ParamRef]:
        """Parameters registered on the module itself (not its children), tied aliases included:
        an alias's ref has the canonical path and the alias's module and name."""
        i = self.module_position.get(module_path)
        if i is None:
            return []
        refs = self.params
        paths = self.param_paths
        if i in self.special_modules:
            module = self.modules[i][1]
            prefix = module_path + "." if module_path else ""
            canonical = self._canonical
            own = [ParamRef(canonical.get(id(p), prefix + n), module_path, n, module)
                   for n, p in module._parameters.items() if p is not None]
        else:
            own = [refs[paths[j]] for j in range(self.param_bounds[i], self.param_bounds[i + 1])]
        return own + self._computed.get(module_path, [])

    def add_computed(self, ref: ParamRef) -> None:
        """Make a tensor computed by a parametrization selectable as a parameter of its module."""
        self._computed.setdefault(ref.module_path, []).append(ref)
        self.special_modules.add(self.module_position[ref.module_path])

    @functools.cached_property
    def local_ids(self) -> tuple[list[str], np.ndarray]:
        """The distinct local parameter names, and each parameter's index into them (``int32``)."""
        names = list(dict.fromkeys(self.param_local))
        ids = {name: n for n, name in enumerate(names)}
        local = self.param_local
        return names, np.fromiter(map(ids.__getitem__, local), dtype=np.int32, count=len(local))

    def positions_of(self, classes: Iterable[type]) -> list[int]:
        """Positions in :attr:`modules` of the modules of exactly these classes, in model order."""
        lists = [self.by_class[c] for c in classes]
        if not lists:
            return []
        return lists[0] if len(lists) == 1 else sorted(i for found in lists for i in found)

    @functools.cached_property
    def bounds_array(self) -> np.ndarray:
        """:attr:`param_bounds` as an ``int64`` array."""
        return np.asarray(self.param_bounds, dtype=np.int64)

    # ------------------------------------------------------------ path globs, once per pattern
    @functools.cached_property
    def subtree_ends(self) -> list[int]:
        """For each position in :attr:`modules`, where its subtree ends: pre-order puts a module's
        subtree right after it, so ``modules[i:subtree_ends[i]]`` is module ``i`` and all below it."""
        paths = self.module_paths
        ends = [len(paths)] * len(paths)
        open_: list[tuple[int, int]] = []  # (depth, position) of the modules whose subtree is open
        for i, path in enumerate(paths):
            depth = path.count(".") + 1 if path else 0
            while open_ and open_[-1][0] >= depth:
                ends[open_.pop()[1]] = i
            open_.append((depth, i))
        return ends

    @functools.cached_property
    def module_position(self) -> dict[str, int]:
        """Module path -> its position in :attr:`modules`."""
        return {path: i for i, path in enumerate(self.module_paths)}

    @functools.cached_property
    def _paths_text(self) -> tuple[str, list[int]] | None:
        """All module paths, one per line, and where each line starts (``None``: a name has a newline)."""
        text = "\n".join(self.module_paths)
        starts, pos = [], 0
        for path in self.module_paths:
            starts.append(pos)
            pos += len(path) + 1
        return (text, starts) if text.count("\n") == len(starts) - 1 else None

    def scope_range(self, scope: str) -> range:
        """Positions in :attr:`modules` of ``scope`` and its subtree (``""``: the whole model)."""
        if not scope:
            return range(len(self.modules))
        start = self.module_position.get(scope)
        return range(0) if start is None else range(start, self.subtree_ends[start])

    def glob_positions(self, pattern: str, scope: str = "") -> dict[int, dict[str, int | str]]:
        """Positions of the modules in ``scope`` whose path (relative to it) matches ``pattern``,
        with the glob's captures; computed once per (pattern, scope).

        Without a scope, a literal piece of the pattern is found in all paths at once (one
        string search over them), and only the paths that hold it are matched in Python.
        """
        found = self._globs.get((pattern, scope))
        if found is not None:
            return found
        paths = self.module_paths
        literal = _literal_piece(pattern)
        if scope:
            cut = len(scope) + 1
            where = self.scope_range(scope)
            candidates = ((i, "" if paths[i] == scope else paths[i][cut:]) for i in where)
        elif literal and self._paths_text is not None:
            candidates = ((i, paths[i]) for i in self._lines_with(literal))
        else:
            candidates = enumerate(paths)
        found = {}
        for i, path in candidates:
            got = glob_captures(path, pattern)
            if got is not None:
                found[i] = got
        self._globs[(pattern, scope)] = found
        return found

    def _lines_with(self, literal: str) -> Iterator[int]:
        text, starts = self._paths_text
        find, last = text.find, len(starts) - 1
        pos = find(literal)
        while pos >= 0:
            line = bisect.bisect_right(starts, pos) - 1
            yield line
            if line == last:
                return
            pos = find(literal, starts[line + 1])

    def modules_of_class(self, names: tuple[str, ...]) -> Iterator[tuple[str, nn.Module]]:
        """Modules whose class or any base class is named in ``names``."""
        for path, module in self.modules:
            if any(class_matches(type(module), n) for n in names):
                yield path, module

    def nearby_paths(self, pattern: str, limit: int = 6) -> list[str]:
        """Module paths that resemble a glob that matched nothing (for error hints)."""
        from ..errors import closest

        stem = pattern.replace("*", "").strip(".")
        hits = closest(stem, [p for p in self.module_paths if p], n=limit) if stem else []
        if not hits:
            depth = pattern.count(".") + 1
            hits = [p for p in self.module_paths if p and p.count(".") + 1 == depth][:limit]
        return hits or [p for p in self.module_paths if p and "." not in p][:limit]  # the top level
