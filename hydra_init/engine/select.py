"""Matching modules and parameters: class names over the MRO, path globs, parameter globs.

:class:`ModelIndex` walks the model once and caches what every rule needs:
module paths, each class's MRO names, and which parameters live where.

>>> import torch.nn as nn
>>> index = ModelIndex(nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8)))
>>> [path for path, _ in index.modules_of_class(("_BatchNorm",))]
['1']
"""

from __future__ import annotations

import functools
import importlib
import inspect
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["ModelIndex", "ParamRef", "glob_captures", "glob_match", "join", "torch_class_names"]


def join(prefix: str, name: str) -> str:
    """Join module path segments, where ``""`` is the root."""
    return f"{prefix}.{name}" if prefix and name else prefix or name


@functools.lru_cache(maxsize=4096)
def _glob_regex(pattern: str) -> re.Pattern[str]:
    """fnmatch syntax plus ``{name}`` captures of one path segment."""
    out, i = [], 0
    while i < len(pattern):
        char = pattern[i]
        close = pattern.find("}", i)
        if char == "*":
            out.append(".*")
        elif char == "?":
            out.append(".")
        elif char == "[" and "]" in pattern[i + 1 :]:
            end = pattern.index("]", i + 1)
            body = pattern[i + 1 : end]
            out.append("[" + ("^" + body[1:] if body.startswith("!") else body) + "]")
            i = end
        elif char == "{" and close > i and pattern[i + 1 : close].isidentifier():
            out.append(f"(?P<{pattern[i + 1 : close]}>[^.]+)")
            i = close
        else:
            out.append(re.escape(char))
        i += 1
    return re.compile("".join(out), re.DOTALL)


def glob_captures(path: str, pattern: str) -> dict[str, int | str] | None:
    """Match a path against a glob; return its ``{name}`` captures, or ``None``.

    Integer segments are captured as ints.

    >>> glob_captures("layers.3.attention.wo", "layers.{layer_id}.attention.*")
    {'layer_id': 3}
    >>> glob_captures("head", "layers.{layer_id}.*") is None
    True
    """
    found = _glob_regex(pattern).fullmatch(path)
    if found is None:
        return None
    return {k: int(v) if v.isdigit() else v for k, v in found.groupdict().items()}


def glob_match(path: str, pattern: str) -> bool:
    """fnmatch-style: ``*`` matches any characters, dots included.

    >>> glob_match("blocks.3.attn.proj", "*.attn.proj")
    True
    """
    return _glob_regex(pattern).fullmatch(path) is not None


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


@dataclass(frozen=True)
class ParamRef:
    """One parameter of the model, reached through the module that holds it."""

    path: str  # canonical full path (first occurrence when shared)
    module_path: str
    local_name: str
    module: nn.Module
    param: torch.nn.Parameter


class ModelIndex:
    """A single walk of the model, reused by every rule."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.modules: list[tuple[str, nn.Module]] = list(model.named_modules(remove_duplicate=False))
        self.module_paths = [path for path, _ in self.modules]
        self.class_names: frozenset[str] = frozenset().union(
            *(_mro_names(type(m)) for _, m in self.modules)
        )
        canonical: dict[int, str] = {}
        self._direct: dict[str, list[ParamRef]] = {}
        self.params: dict[str, ParamRef] = {}
        for module_path, module in self.modules:
            refs = []
            for local, param in module._parameters.items():
                if param is None:
                    continue
                full = join(module_path, local)
                path = canonical.setdefault(id(param), full)
                ref = ParamRef(path, module_path, local, module, param)
                refs.append(ref)
                self.params.setdefault(path, ref)
            self._direct[module_path] = refs

    def direct_params(self, module_path: str) -> list[ParamRef]:
        """Parameters registered on the module itself (not its children)."""
        return self._direct.get(module_path, [])

    def subtree(self, root: str) -> Iterator[tuple[str, nn.Module]]:
        """``root`` and every module below it."""
        prefix = root + "."
        for path, module in self.modules:
            if not root or path == root or path.startswith(prefix):
                yield path, module

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
