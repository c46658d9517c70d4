"""Finding the state dict inside a loaded checkpoint, and saying what is there when it is not one.

The state dict is the file's top level when that is a ``str -> Tensor`` mapping,
else the first of :data:`NESTED_ENTRIES` that is one (Lightning, mmengine,
detectron2/timm and tutorial checkpoints), else the entry named by
``state_dict_key``. Anything else is refused naming what the file holds: its
type, its entries, and the entries that do hold tensors.

>>> import torch
>>> select_entry({"epoch": 3, "state_dict": {"w": torch.ones(2)}}, None, Path("m.pth"), "init.rules.p")[1]
'state_dict'
>>> describe([torch.ones(1), 2])
'a list of 2 items (Tensor, int)'
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ..errors import InitConfigError, did_you_mean

__all__ = ["NESTED_ENTRIES", "check_state_dict", "describe", "select_entry", "tensor_entries"]

NESTED_ENTRIES = ("state_dict", "model", "model_state_dict")
"""Entries searched, in order, when the top level of a file is not itself a state dict."""

_VALID = "a mapping of parameter name -> tensor, at the top level or under " + "/".join(NESTED_ENTRIES)
_DEPTH = 4


def _is_tensor_dict(obj: Any) -> bool:
    return (
        isinstance(obj, Mapping)
        and len(obj) > 0
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())
    )


def _article(noun: str) -> str:
    return ("an " if noun[:1].lower() in "aeiou" else "a ") + noun


def describe(obj: Any) -> str:
    """A noun phrase for a loaded object: its type, and its entries or items.

    >>> describe({"epoch": 1, "config": {}})
    'a dict with entries epoch, config'
    """
    if isinstance(obj, Mapping):
        kind = _article(type(obj).__name__)
        if not obj:
            return f"{kind} with no entries"
        keys = [k if isinstance(k, str) else repr(k) for k in obj]
        return f"{kind} with entries " + ", ".join(keys[:12]) + (" ..." if len(keys) > 12 else "")
    if isinstance(obj, torch.Tensor):
        return f"a single tensor of shape {tuple(obj.shape)}"
    if isinstance(obj, (list, tuple)):
        kinds = sorted({type(v).__name__ for v in obj})
        return f"a {type(obj).__name__} of {len(obj)} item{'s' * (len(obj) != 1)}" + (
            f" ({', '.join(kinds)})" if kinds else ""
        )
    return _article(type(obj).__name__)


def tensor_entries(obj: Any, prefix: str = "", depth: int = _DEPTH) -> list[str]:
    """Dotted paths of the nested mappings under ``obj`` that directly hold a tensor.

    >>> tensor_entries({"ema": {"model": {"w": torch.ones(1)}}, "epoch": 2})
    ['ema.model']
    """
    found: list[str] = []
    if depth == 0 or not isinstance(obj, Mapping):
        return found
    for name, value in obj.items():
        if isinstance(name, str) and isinstance(value, Mapping):
            path = prefix + name
            if any(isinstance(v, torch.Tensor) for v in value.values()):
                found.append(path)
            found.extend(tensor_entries(value, path + ".", depth - 1))
    return found


def _holds_tensor(obj: Any, depth: int = _DEPTH) -> bool:
    if isinstance(obj, torch.Tensor):
        return True
    if depth == 0:
        return False
    values = obj.values() if isinstance(obj, Mapping) else obj if isinstance(obj, (list, tuple)) else ()
    return any(_holds_tensor(v, depth - 1) for v in values)


def select_entry(obj: Any, state_dict_key: str | None, path: Path, key: str) -> tuple[Any, str | None]:
    """The object holding the state dict, and its dotted entry path (``None`` for the top level)."""
    if state_dict_key:
        node: Any = obj
        walked = []
        for part in state_dict_key.split("."):
            if not isinstance(node, Mapping) or part not in node:
                where = ".".join(walked) or "the top level"
                entries = [str(k) for k in node] if isinstance(node, Mapping) else []
                raise InitConfigError(
                    f"{key}.state_dict_key",
                    f"{path} has no entry {part!r} at {where} (it holds {describe(node)})",
                    valid=", ".join(entries[:12]) or None,
                    hint=did_you_mean(part, entries),
                )
            node = node[part]
            walked.append(part)
        return node, state_dict_key
    if _is_tensor_dict(obj) or not isinstance(obj, Mapping):
        return obj, None
    for name in NESTED_ENTRIES:
        if _is_tensor_dict(obj.get(name)):
            return obj[name], name
    return obj, None


def _refusal(node: Any, where: str, candidates: list[str]) -> tuple[str, str]:
    """Why ``node`` is not a state dict, and the fix: ``(problem, hint)``."""
    pick = "set state_dict_key to the entry holding the weights: " + ", ".join(candidates[:8])
    if isinstance(node, Mapping) and {"state", "param_groups"} <= set(node):
        return (f"{where} is an optimizer state dict (optimizer.state_dict(): entries 'state' and "
                "'param_groups'), not model weights",
                pick if candidates else "point checkpoint at the model's weights (model.state_dict())")
    if isinstance(node, Mapping) and not node:
        return f"{where} holds {describe(node)}, so there are no tensors to load", (
            "save model.state_dict() of the trained model")
    if not _holds_tensor(node):
        return (f"{where} holds no tensor at all: it is {describe(node)}",
                pick if candidates else "this is not a weights file (a config, log or metadata file?): "
                "point checkpoint at the file with the weights")
    direct = isinstance(node, Mapping) and any(isinstance(v, torch.Tensor) for v in node.values())
    if isinstance(node, Mapping) and candidates and not direct:
        return (f"{where} has no state dict where hydra_init looks (the top level, then "
                f"{'/'.join(NESTED_ENTRIES)}): it is {describe(node)}", pick)
    if not isinstance(node, Mapping):
        return (f"{where} holds {describe(node)}, not a state dict", pick if candidates
                else "save a dict that names each tensor: torch.save(model.state_dict(), f)")
    name, value = next(
        (k, v) for k, v in node.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)
    )
    return (f"{where} is not a state dict: entry {name!r} holds {describe(value)}, not a tensor",
            pick if candidates else "keep only the tensors: torch.save(model.state_dict(), f)")


def check_state_dict(node: Any, entry: str | None, path: Path, key: str, top: Any) -> dict[str, torch.Tensor]:
    """``node`` as a ``str -> Tensor`` dict, or the refusal naming what it holds instead.

    ``top`` is the whole loaded object: its entries that hold tensors are offered
    as ``state_dict_key`` values.
    """
    if _is_tensor_dict(node):
        return dict(node)
    where = f"entry {entry!r} of {path}" if entry else str(path)
    candidates = [c for c in tensor_entries(top) if c != entry]
    problem, hint = _refusal(node, where, candidates)
    raise InitConfigError(f"{key}.checkpoint", problem, valid=_VALID, hint=hint)
