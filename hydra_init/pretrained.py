"""Pretrained rules: read a checkpoint at plan time, copy its tensors at execution.

Loading happens while planning (nothing is written then), so a missing file or
a shape mismatch fails before the model changes. Loaded parameters are never
overwritten by random rules unless the Pretrained rule lists them in ``reinit``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import InitConfigError
from .rules import Rule
from .selectors import ModelIndex

__all__ = ["LoadedTensor", "PretrainedLoad", "load_state_dict", "resolve_pretrained"]


@dataclass(frozen=True)
class LoadedTensor:
    """A checkpoint tensor bound for one parameter."""

    tensor: torch.Tensor
    checkpoint: str
    key: str


@dataclass
class PretrainedLoad:
    """What one Pretrained rule loads: tensors by parameter path, and what was left over."""

    rule: Rule
    checkpoint: str
    tensors: dict[str, LoadedTensor] = field(default_factory=dict)
    unexpected: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    reinit: tuple[str, ...] = ()


_WRAPPER_PREFIXES = ("module.", "_orig_mod.")


def load_state_dict(path: str, map_location: str = "cpu", key: str = "init") -> dict[str, Any]:
    """Read a ``.pt``/``.pth`` file safely (``weights_only=True``) and find its state dict."""
    file = Path(path.removeprefix("file://"))
    if not file.is_file():
        raise InitConfigError(f"{key}.checkpoint", f"checkpoint file not found: {file}")
    try:
        obj = torch.load(file, map_location=map_location, weights_only=True)
    except Exception as exc:
        raise InitConfigError(
            f"{key}.checkpoint", f"cannot read checkpoint {file}: {exc}".splitlines()[0]
        ) from None
    for nested in ("state_dict", "model"):
        if isinstance(obj, Mapping) and isinstance(obj.get(nested), Mapping):
            obj = obj[nested]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise InitConfigError(f"{key}.checkpoint", f"{file} does not hold a state dict")
    return dict(obj)


def _strip_wrappers(name: str) -> str:
    changed = True
    while changed:
        changed = False
        for prefix in _WRAPPER_PREFIXES:
            if name.startswith(prefix):
                name, changed = name[len(prefix) :], True
    return name


def resolve_pretrained(
    rule: Rule, index: ModelIndex, modules: list[tuple[str, nn.Module]]
) -> PretrainedLoad:
    """Match checkpoint keys to parameters under the rule's target module(s)."""
    spec = rule.init
    state = load_state_dict(spec.checkpoint, spec.map_location, rule.key)
    if spec.prefix:
        state = {k[len(spec.prefix) :]: v for k, v in state.items() if k.startswith(spec.prefix)}
        if not state:
            raise InitConfigError(
                f"{rule.key}.prefix",
                f"no key of {spec.checkpoint} starts with {spec.prefix!r}",
            )
    state = {_strip_wrappers(k): v for k, v in state.items()}
    roots = [p for p, _ in modules] if rule.name else [rule.scope]
    roots = [r for r in roots if not any(r.startswith(o + ".") for o in roots if o and o != r)]
    result = PretrainedLoad(rule, spec.checkpoint, reinit=tuple(spec.reinit))
    used: set[str] = set()
    mismatched = []
    for root in roots:
        for path, ref in index.params.items():
            if root and not path.startswith(root + "."):
                continue
            ckpt_key = path[len(root) + 1 :] if root else path
            tensor = state.get(ckpt_key)
            if tensor is None:
                result.missing.append(path)
                continue
            used.add(ckpt_key)
            if tuple(tensor.shape) != tuple(ref.param.shape):
                mismatched.append(f"{ckpt_key}: checkpoint {tuple(tensor.shape)} vs model "
                                  f"{tuple(ref.param.shape)}")
                continue
            result.tensors[path] = LoadedTensor(tensor, spec.checkpoint, ckpt_key)
    if mismatched:
        raise InitConfigError(
            f"{rule.key}.checkpoint", "shape mismatch: " + "; ".join(mismatched),
        )
    result.unexpected = sorted(set(state) - used)
    return result


def copy_loaded(param: torch.Tensor, loaded: LoadedTensor) -> None:
    """Write a checkpoint tensor into a parameter (converted to its dtype and device)."""
    param.copy_(loaded.tensor.to(dtype=param.dtype, device=param.device))

