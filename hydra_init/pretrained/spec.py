"""The ``Pretrained`` action: which checkpoint to load, and the policies for what does not fit.

A Pretrained rule does not draw: the plan matches its checkpoint to the model
(:mod:`hydra_init.pretrained.stage`) and execution copies the tensors. This module
holds only its arguments and their checks, all run when the config is parsed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import ClassVar

import torch

from ..errors import InitConfigError
from ..initializers import Action
from .keymap import WRAPPER_PREFIXES, parse_rename
from .policies import DtypeMismatch, MissingKeys, ShapeMismatch, UnexpectedKeys

__all__ = ["Pretrained"]

_NO_BIAS = "Pretrained copies biases from the checkpoint and has no bias value"


@dataclass
class Pretrained(Action):
    """Copy tensors from a checkpoint instead of drawing them.

    Loaded parameters are never overwritten by random rules, whatever the rule
    order or priority; parameters the checkpoint does not cover are left to the
    other rules and listed in the report as "initialized (not in checkpoint)".
    Reading happens while planning, so every problem is raised before the model
    changes. See ``docs/pretrained.md``.

    Args:
        checkpoint: a path, ``file://``, ``http(s)://`` (cached under
            ``$TORCH_HOME/hub``) or a registered scheme such as ``torchvision://``.
        sha256: expected sha256 of the file (hex, the full digest or a prefix of
            at least 8 characters), checked whatever the source.
        state_dict_key: dotted entry holding the weights (``state_dict_ema``);
            default: the top level, else ``state_dict``, ``model``, ``model_state_dict``.
        prefix: keep only keys under it, removing it (``backbone.`` from a detector).
        map_location: device the file is read onto (``cpu``).
        strip_prefixes: wrapper prefixes removed when every key has them.
        rename: ``"regex=>replacement"`` strings applied in order (``re.sub``).
        reinit: path globs of checkpoint-covered parameters the other rules
            initialize instead (``[head.*]``).
        missing_keys / unexpected_keys / shape_mismatch / dtype_mismatch: policies,
            see :mod:`hydra_init.pretrained.policies`.

    >>> Pretrained(checkpoint="detector.pth", prefix="backbone.").describe()
    "Pretrained(checkpoint='detector.pth', prefix='backbone.')"
    """

    checkpoint: str = ""
    sha256: str | None = None
    state_dict_key: str | None = None
    prefix: str | None = None
    map_location: str = "cpu"
    strip_prefixes: list[str] = field(default_factory=lambda: list(WRAPPER_PREFIXES))
    rename: list[str] = field(default_factory=list)
    reinit: list[str] = field(default_factory=list)
    missing_keys: MissingKeys = MissingKeys.init
    unexpected_keys: UnexpectedKeys = UnexpectedKeys.ignore
    shape_mismatch: ShapeMismatch = ShapeMismatch.error
    dtype_mismatch: DtypeMismatch = DtypeMismatch.convert
    type_name: ClassVar[str] = "Pretrained"

    refused_args: ClassVar[dict[str, str]] = {"bias": _NO_BIAS, "bias_prob": _NO_BIAS}

    def validate(self, key: str) -> None:
        """Every check of the arguments, the device included (nothing is re-checked later)."""
        super().validate(key)
        _check(
            bool(self.checkpoint),
            f"{key}.checkpoint",
            "Pretrained needs a checkpoint",
            "a path, file://, http(s):// URL or a registered scheme",
            "with the pretrained preset, set init.checkpoint=PATH",
        )
        _check(
            self.sha256 is None or re.fullmatch(r"[0-9a-fA-F]{8,64}", self.sha256) is not None,
            f"{key}.sha256",
            f"sha256={self.sha256!r} is not a hex digest",
            "8 to 64 hex characters (a prefix of the file's sha256)",
            "compute it with: sha256sum FILE",
        )
        _check_device(self.map_location, f"{key}.map_location")
        for name in ("strip_prefixes", "reinit"):
            for i, item in enumerate(getattr(self, name)):
                _check(bool(item), f"{key}.{name}[{i}]", "empty string", "a non-empty string")
        for i, item in enumerate(self.strip_prefixes):
            _check(item.endswith("."), f"{key}.strip_prefixes[{i}]", f"{item!r} does not end with '.'",
                   "module path prefixes such as 'module.'", f"write {item + '.'!r}")
        parse_rename(self.rename, f"{key}.rename")

    def describe(self) -> str:
        """The checkpoint and the arguments that differ from their defaults."""
        defaults = Pretrained()
        changed = {
            k: v for k, v in self.args().items() if k == "checkpoint" or v != getattr(defaults, k)
        }
        return f"Pretrained({', '.join(f'{k}={v!r}' for k, v in changed.items())})"


def _check(condition: bool, key: str, problem: str, valid: str, hint: str | None = None) -> None:
    if not condition:
        raise InitConfigError(key, problem, valid=valid, hint=hint)


def _check_device(device: str, key: str) -> None:
    """``map_location`` names a device, and that device exists here."""
    try:
        torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise InitConfigError(
            key, f"{device!r} is not a device: {exc}", valid="cpu, cuda, cuda:0, mps, ..."
        ) from None
    try:
        torch.empty(0, device=device)
    except (RuntimeError, AssertionError) as exc:
        raise InitConfigError(
            key, f"device {device!r} is not available here: {exc}",
            hint="use map_location: cpu (tensors are moved to each parameter's device when copied)",
        ) from None
