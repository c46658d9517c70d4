"""Reading a checkpoint file into a flat state dict (``str -> Tensor``), safely.

* PyTorch files (``.pt``, ``.pth``, ``.bin``, zip or legacy format) are read with
  ``torch.load(weights_only=True)``: only tensors and plain containers are
  unpickled. A file that asks to import anything else (a pickled model class,
  or a payload such as ``os.system``) is refused with an error that says so.
  There is deliberately no switch back to full unpickling.
* safetensors files (recognized by their header, whatever the suffix) need the
  optional ``safetensors`` extra.
* Every file is sniffed first (:mod:`~hydra_init.pretrained.sniff`): one that is
  plainly not a checkpoint (text, a Git LFS pointer, empty, numpy, cut short) is
  refused before any loader runs, and a failed load names what the file is.

Where the state dict sits inside the loaded object is
:mod:`~hydra_init.pretrained.contents`' job.

>>> import tempfile, os
>>> path = os.path.join(tempfile.mkdtemp(), "m.pth")
>>> torch.save({"epoch": 3, "state_dict": {"w": torch.ones(2)}}, path)
>>> found = read_state_dict(Path(path))
>>> list(found.tensors), found.entry, found.format
(['w'], 'state_dict', 'torch')
"""

from __future__ import annotations

import pickle
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..errors import InitConfigError
from .contents import NESTED_ENTRIES, check_state_dict, select_entry
from .refusals import load_reason, pickled_global, unreadable
from .sniff import FileKind, sniff

__all__ = ["NESTED_ENTRIES", "StateDict", "is_safetensors", "read_state_dict"]


_LOADABLE = ("torch-zip", "torch-legacy", "pickle", "safetensors", "binary")
"""File kinds worth handing to a loader; every other kind is refused from its first bytes."""


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
    return path.suffix == ".safetensors" or sniff(path).kind == "safetensors"


def _load_safetensors(path: Path, found: FileKind, key: str) -> dict[str, torch.Tensor]:
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
        raise unreadable(path, found, key, load_reason(exc)) from None


def _load_torch(path: Path, found: FileKind, map_location: str, key: str) -> Any:
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*pickle protocol.*")
            return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        refusal = pickled_global(path, exc, key) if isinstance(exc, pickle.UnpicklingError) else None
        raise (refusal or unreadable(path, found, key, load_reason(exc))) from None


def read_state_dict(
    path: Path, *, map_location: str = "cpu", state_dict_key: str | None = None, key: str = "checkpoint"
) -> StateDict:
    """Read ``path`` (PyTorch or safetensors) and return its state dict.

    Errors name the file and, for entries, the dotted path inside it; ``key`` is
    the config key of the rule (``init.rules.pretrained``).
    """
    ckpt_key = f"{key}.checkpoint"
    try:
        found = sniff(path)
    except OSError as exc:
        raise InitConfigError(
            ckpt_key, f"cannot read {path}: {exc.strerror or exc}",
            hint="check that the file is readable by this process (permissions, a mount that went away)",
        ) from None
    if found.kind not in _LOADABLE or not found.complete:
        raise unreadable(path, found, ckpt_key)
    if found.kind == "safetensors":
        tensors = _load_safetensors(path, found, ckpt_key)
        if map_location != "cpu":
            tensors = {k: v.to(map_location) for k, v in tensors.items()}
        node, entry = select_entry(tensors, state_dict_key, path, key)
        return StateDict(check_state_dict(node, entry, path, key, tensors), "safetensors", entry)
    obj = _load_torch(path, found, map_location, ckpt_key)
    node, entry = select_entry(obj, state_dict_key, path, key)
    return StateDict(check_state_dict(node, entry, path, key, obj), "torch", entry)
