"""Reading a checkpoint file into a flat state dict (``str -> Tensor``), safely.

* PyTorch files (``.pt``, ``.pth``, ``.bin``, zip or legacy format) are read with
  ``torch.load(weights_only=True)``: only tensors and plain containers are
  unpickled. A file that asks to import anything else (a pickled model class,
  or a payload such as ``os.system``) is refused with an error that says so.
  There is deliberately no switch back to full unpickling.
* ``.safetensors`` files (recognized by suffix or by their header) need the
  optional ``safetensors`` extra.

The state dict is the file's top level when that is a ``str -> Tensor``
mapping, else the first of ``state_dict``, ``model``, ``model_state_dict`` that
is one (mmengine, detectron2/timm and tutorial checkpoints), else the entry
named by ``state_dict_key`` (a dotted path such as ``state_dict_ema``).

>>> import tempfile, os
>>> path = os.path.join(tempfile.mkdtemp(), "m.pth")
>>> torch.save({"epoch": 3, "state_dict": {"w": torch.ones(2)}}, path)
>>> found = read_state_dict(Path(path))
>>> list(found.tensors), found.entry, found.format
(['w'], 'state_dict', 'torch')
"""

from __future__ import annotations

import pickle
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..errors import InitConfigError, did_you_mean

__all__ = ["NESTED_ENTRIES", "StateDict", "is_safetensors", "read_state_dict"]

NESTED_ENTRIES = ("state_dict", "model", "model_state_dict")
"""Entries searched, in order, when the top level of a file is not itself a state dict."""


@dataclass(frozen=True)
class StateDict:
    """A checkpoint's tensors and where they were found.

    Attributes:
        tensors: key -> tensor, as stored in the file.
        format: ``torch`` or ``safetensors``.
        entry: the dotted path of the entry holding them, ``None`` for the top level.
    """

    tensors: dict[str, torch.Tensor]
    format: str
    entry: str | None = None


def is_safetensors(path: Path) -> bool:
    """A ``.safetensors`` suffix, or the format's header: a u64 length then ``{``."""
    if path.suffix == ".safetensors":
        return True
    with open(path, "rb") as handle:
        head = handle.read(9)
    if len(head) < 9 or head[8:9] != b"{":
        return False
    return 2 <= int.from_bytes(head[:8], "little") <= path.stat().st_size - 8


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def _load_safetensors(path: Path, key: str) -> dict[str, torch.Tensor]:
    try:
        from safetensors.torch import load_file
    except ImportError:
        raise InitConfigError(
            key, f"{path} is a .safetensors file but the safetensors package is not installed",
            hint="pip install 'hydra-init[safetensors]'",
        ) from None
    try:
        return load_file(str(path), device="cpu")
    except Exception as exc:
        raise InitConfigError(
            key, f"cannot read {path}: {_first_line(exc)}",
            hint="the file is truncated or corrupted; download or save it again",
        ) from None


_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")


def _load_torch(path: Path, map_location: str, key: str) -> Any:
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*pickle protocol.*")
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        found = _GLOBAL.search(str(exc))
        asks = f" it asks to import {found.group(1)!r}," if found else ""
        raise InitConfigError(
            key,
            f"refused to load {path}:{asks} which a weights-only load does not allow. "
            "hydra_init reads checkpoints with torch.load(weights_only=True), which accepts "
            "only tensors and plain containers, because full unpickling runs whatever code "
            "the file names",
            valid="a state dict of tensors (torch.save(model.state_dict(), f)) or a .safetensors file",
            hint="re-save the weights as a plain state dict or .safetensors in an environment "
            "where you trust the file; if the named global is a harmless data type you trust, "
            "allow exactly it with torch.serialization.add_safe_globals([...])",
        ) from None
    except Exception as exc:
        raise InitConfigError(
            key, f"cannot read {path}: {_first_line(exc)}",
            hint="the file is truncated, corrupted or not a PyTorch checkpoint; "
            "download or save it again",
        ) from None


def _is_tensor_dict(obj: Any) -> bool:
    return (
        isinstance(obj, Mapping)
        and len(obj) > 0
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())
    )


def _describe(obj: Any) -> str:
    if isinstance(obj, Mapping):
        keys = [str(k) for k in obj]
        return "a dict with entries " + ", ".join(keys[:12]) + (" ..." if len(keys) > 12 else "")
    if isinstance(obj, torch.Tensor):
        return f"a single tensor of shape {tuple(obj.shape)}"
    return f"a {type(obj).__name__}"


def _select(obj: Any, state_dict_key: str | None, path: Path, key: str) -> tuple[Any, str | None]:
    """The object holding the state dict, and its dotted entry path."""
    if state_dict_key:
        node: Any = obj
        walked = []
        for part in state_dict_key.split("."):
            if not isinstance(node, Mapping) or part not in node:
                where = ".".join(walked) or "the top level"
                entries = [str(k) for k in node] if isinstance(node, Mapping) else []
                raise InitConfigError(
                    f"{key}.state_dict_key",
                    f"{path} has no entry {part!r} at {where} (it holds {_describe(node)})",
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


def _check(node: Any, entry: str | None, path: Path, key: str, top: Any) -> dict[str, torch.Tensor]:
    where = f"entry {entry!r} of {path}" if entry else str(path)
    candidates = (
        [str(k) for k, v in top.items() if isinstance(v, Mapping)] if isinstance(top, Mapping) else []
    )
    hint = (
        "set state_dict_key to the entry holding the weights: " + ", ".join(candidates[:8])
        if candidates
        else "save model.state_dict(), not the model object"
    )
    if not isinstance(node, Mapping):
        raise InitConfigError(
            f"{key}.checkpoint", f"{where} holds {_describe(node)}, not a state dict",
            valid="a mapping of parameter name -> tensor", hint=hint,
        )
    if not node:
        raise InitConfigError(f"{key}.checkpoint", f"{where} holds an empty state dict")
    for name, value in node.items():
        if not isinstance(name, str) or not isinstance(value, torch.Tensor):
            label = f"{entry}.{name}" if entry else str(name)
            raise InitConfigError(
                f"{key}.checkpoint",
                f"{where} is not a state dict: entry {label!r} holds {_describe(value)}, not a tensor",
                valid="a mapping of parameter name -> tensor, at the top level or under "
                + "/".join(NESTED_ENTRIES),
                hint=hint,
            )
    return dict(node)


def read_state_dict(
    path: Path, *, map_location: str = "cpu", state_dict_key: str | None = None, key: str = "checkpoint"
) -> StateDict:
    """Read ``path`` (PyTorch or safetensors) and return its state dict.

    Errors name the file and, for entries, the dotted path inside it; ``key`` is
    the config key of the rule (``init.rules.pretrained``).
    """
    ckpt_key = f"{key}.checkpoint"
    if is_safetensors(path):
        tensors = _load_safetensors(path, ckpt_key)
        if map_location != "cpu":
            tensors = {k: v.to(map_location) for k, v in tensors.items()}
        node, entry = _select(tensors, state_dict_key, path, key)
        return StateDict(_check(node, entry, path, key, tensors), "safetensors", entry)
    obj = _load_torch(path, map_location, ckpt_key)
    node, entry = _select(obj, state_dict_key, path, key)
    return StateDict(_check(node, entry, path, key, obj), "torch", entry)
