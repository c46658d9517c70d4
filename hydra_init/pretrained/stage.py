"""Pretrained rules: match a checkpoint to the model at plan time, copy it at execution.

:func:`resolve_pretrained` runs while the plan is built (nothing is written then):
it finds and reads the checkpoint (:mod:`hydra_init.pretrained`), maps its keys,
pairs them with the parameters and persistent buffers the rule targets, and
applies the rule's policies. Any problem (missing or unreadable file, a pickle
that would run code, an empty ``prefix`` match, shape mismatches, ...) is an
:class:`~hydra_init.InitConfigError` raised before the model changes.

Target: the rule's root module (the module whose ``init_cfg`` holds the rule,
or the whole model), or each module its ``name`` globs match; checkpoint keys
are relative to that root. ``layer``, ``exclude`` and ``params`` narrow what is
loaded; checkpoint keys for tensors they leave out are neither loaded nor
reported as unexpected.

:func:`copy_loaded` and :func:`copy_buffers` are called by execution after the
random draws. Loaded parameters beat every random rule (``reinit`` globs excepted).

>>> import os, tempfile, torch.nn as nn, hydra_init
>>> path = os.path.join(tempfile.mkdtemp(), "lin.pth")
>>> torch.save(nn.Sequential(nn.Linear(4, 2)).state_dict(), path)
>>> model = nn.Sequential(nn.Linear(4, 2), nn.Linear(2, 1))  # a new layer 1
>>> report = hydra_init.apply(model, {"seed": 0, "rules": {
...     "pretrained": {"type": "Pretrained", "checkpoint": path},
...     "new": {"type": "Zeros", "layer": "Linear"}}}, log=False)
>>> report.by_source("pretrained"), report.not_in_checkpoint
(['0.weight', '0.bias'], ['1.weight', '1.bias'])
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..engine.rules import Rule
from ..engine.select import ModelIndex, glob_match, join
from ..errors import InitConfigError, did_you_mean
from .formats import read_state_dict
from .keymap import KeyMap, parse_rename, strip_wrappers, suggest_alignment
from .policies import DtypeMismatch, MissingKeys, ShapeMismatch, UnexpectedKeys
from .sources import locate

__all__ = [
    "NOT_IN_CHECKPOINT",
    "REINIT",
    "LoadedBuffer",
    "LoadedTensor",
    "PretrainedLoad",
    "copy_buffers",
    "copy_loaded",
    "resolve_pretrained",
]

NOT_IN_CHECKPOINT = "not in checkpoint"
REINIT = "reinit"
_LIST_LIMIT = 20


@dataclass(frozen=True)
class LoadedTensor:
    """A checkpoint tensor bound for one parameter or buffer.

    ``tensor`` already has the target's dtype; ``key`` is the key as stored in the
    file (before wrapper stripping, ``prefix`` and renames), ``rule`` the rule that
    loads it (a higher-ranked Pretrained rule wins a tensor two rules load).
    """

    tensor: torch.Tensor
    checkpoint: str
    key: str
    rule: Rule | None = None

    @property
    def rank(self) -> tuple[int, ...]:
        return self.rule.rank() if self.rule is not None else ()


@dataclass(frozen=True)
class LoadedBuffer:
    """A checkpoint tensor bound for a persistent buffer (BatchNorm running stats)."""

    module: nn.Module
    name: str
    loaded: LoadedTensor


@dataclass
class PretrainedLoad:
    """What one Pretrained rule loads, and what it leaves to other rules.

    Attributes:
        tensors: parameter path -> checkpoint tensor to copy.
        buffers: buffer path -> checkpoint tensor to copy.
        not_loaded: parameter (or shape-skipped buffer) path -> why the checkpoint
            does not provide it (``not in checkpoint``, ``reinit``, or the shape
            mismatch); the other rules initialize these parameters.
        missing_buffers: buffer paths the checkpoint lacks (they keep their values).
        unexpected: checkpoint keys (as stored in the file) that match nothing.
        converted: keys whose dtype was converted to the model's.
    """

    rule: Rule
    checkpoint: str
    file: str = ""
    format: str = ""
    entry: str | None = None
    tensors: dict[str, LoadedTensor] = field(default_factory=dict)
    buffers: dict[str, LoadedBuffer] = field(default_factory=dict)
    not_loaded: dict[str, str] = field(default_factory=dict)
    missing_buffers: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    converted: list[str] = field(default_factory=list)

    @property
    def missing(self) -> list[str]:
        """Parameter paths the checkpoint has no key for."""
        return [p for p, why in self.not_loaded.items() if why == NOT_IN_CHECKPOINT]

    @property
    def skipped(self) -> dict[str, str]:
        """Parameter paths skipped for a shape mismatch, with both shapes."""
        return {p: why for p, why in self.not_loaded.items() if why not in (NOT_IN_CHECKPOINT, REINIT)}

    @property
    def reinit(self) -> list[str]:
        """Parameter paths the checkpoint covers but a ``reinit`` glob hands to the rules."""
        return [p for p, why in self.not_loaded.items() if why == REINIT]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary for the report."""
        return {
            "checkpoint": self.checkpoint,
            "file": self.file,
            "format": self.format,
            "entry": self.entry,
            "rule": self.rule.label,
            "loaded": len(self.tensors),
            "buffers_loaded": len(self.buffers),
            "missing": self.missing,
            "missing_buffers": list(self.missing_buffers),
            "shape_skipped": self.skipped,
            "reinit": self.reinit,
            "unexpected": list(self.unexpected),
            "dtype_converted": list(self.converted),
        }


# ----------------------------------------------------------------------------- targets
@dataclass(frozen=True)
class _Target:
    """A model tensor under a rule's roots: its checkpoint-relative key and where it lives.

    ``wanted`` is false for tensors the rule's ``layer``/``exclude``/``params`` leave out.
    """

    key: str
    path: str
    module: nn.Module
    name: str
    tensor: torch.Tensor
    is_param: bool
    wanted: bool = True


def _relative(path: str, root: str) -> str:
    return path[len(root) + 1 :] if root else path


def _roots(rule: Rule, index: ModelIndex) -> list[str]:
    """The modules checkpoint keys are relative to: the matched ``name``s, else the rule's scope."""
    if not rule.name:
        return [rule.scope]
    # the matches planning found (ModelIndex.glob_positions caches them), outermost only
    hits = sorted({i for g in rule.name for i in index.glob_positions(g, rule.scope)})
    roots, covered = [], 0
    for i in hits:
        if i >= covered:  # not inside the subtree of an earlier match
            roots.append(index.module_paths[i])
            covered = index.subtree_ends[i]
    return roots


def _root_of(path: str, roots: list[str]) -> str | None:
    for root in roots:
        if not root or path == root or path.startswith(root + "."):
            return root
    return None


def _tensors_of(
    index: ModelIndex, module_path: str, module: nn.Module
) -> Iterable[tuple[str, str, Any, bool]]:
    """``(registered path, canonical path, tensor, is_param)`` held directly by a module."""
    for ref in index.direct_params(module_path):
        if getattr(ref, "computed", False):  # a parametrized weight: checkpoints hold its originals
            continue
        yield join(module_path, ref.local_name), ref.path, ref.param, True
    skip = getattr(module, "_non_persistent_buffers_set", set())
    for name, buf in module._buffers.items():
        if buf is not None and name not in skip:
            path = join(module_path, name)
            yield path, path, buf, False


def _wanted(rule: Rule, registered: str) -> bool:
    """``params`` globs narrow a Pretrained rule as they narrow any rule."""
    if not rule.params:
        return True
    local = registered.rpartition(".")[2]
    full = _relative(registered, rule.scope) if rule.scope else registered
    return any(glob_match(full if "." in pat else local, pat) for pat in rule.params)


def _targets(
    rule: Rule, index: ModelIndex, modules: list[tuple[str, nn.Module]]
) -> tuple[list[_Target], set[str]]:
    """The tensors the rule loads, and every key under its roots (to tell filtered from unexpected)."""
    roots = _roots(rule, index)
    selected = {id(m) for _, m in modules}
    candidates: list[_Target] = []
    for module_path, module in index.modules:
        root = _root_of(module_path, roots)
        if root is None:
            continue
        keep = id(module) in selected
        for registered, path, tensor, is_param in _tensors_of(index, module_path, module):
            candidates.append(_Target(
                _relative(registered, root), path, module, registered.rpartition(".")[2], tensor, is_param,
                wanted=keep and _wanted(rule, registered),
            ))
    keys = strip_wrappers([c.key for c in candidates], rule.init.strip_prefixes)
    stripped = {original: new for new, original in keys.items()}
    targets = [dataclasses.replace(c, key=stripped[c.key]) for c in candidates if c.wanted]
    return targets, set(keys)


# ----------------------------------------------------------------------------- errors
def _listing(items: list[str], limit: int | None = _LIST_LIMIT) -> str:
    if limit is None or len(items) <= limit:
        return "; ".join(items)
    return "; ".join(items[:limit]) + f"; ... and {len(items) - limit} more"


def _convert(tensor: torch.Tensor, dtype: torch.dtype) -> torch.Tensor | None:
    """``tensor`` cast to ``dtype``, or ``None`` when the cast turns finite values into inf."""
    out = tensor.to(dtype)
    if (
        tensor.is_floating_point()
        and out.is_floating_point()
        and torch.finfo(dtype).max < torch.finfo(tensor.dtype).max  # only a narrower range can overflow
        and not torch.isfinite(out).all()
        and not torch.equal(torch.isfinite(tensor), torch.isfinite(out))
    ):
        return None
    return out


def _check_reinit(rule: Rule, targets: list[_Target]) -> None:
    paths = [_relative(t.path, rule.scope) for t in targets]
    for i, pattern in enumerate(rule.init.reinit):
        if not any(glob_match(p, pattern) for p in paths):
            raise InitConfigError(
                f"{rule.key}.reinit[{i}]", f"{pattern!r} matches no tensor this rule loads",
                valid="parameter path globs such as 'head.*' or '*.fc.weight'",
                hint=did_you_mean(pattern, paths) or "print([n for n, _ in model.named_parameters()])",
            )


# ----------------------------------------------------------------------------- resolve
@dataclass
class _Matching:
    """Checkpoint keys paired with targets, and the problems found, before policies apply."""

    used: set[str] = field(default_factory=set)
    missing: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)
    wrong_dtype: list[str] = field(default_factory=list)
    overflow: list[str] = field(default_factory=list)

    def shape_lines(self) -> list[str]:
        return [f"{key}: checkpoint {c} vs model {m} ({path})" for path, key, c, m in self.mismatched]


def _read(rule: Rule) -> tuple[str, Any, dict[str, str]]:
    """Locate and read the rule's checkpoint: ``(file, state dict, {model key: file key})``."""
    spec, key = rule.init, rule.key
    located = locate(spec.checkpoint, sha256=spec.sha256, key=f"{key}.checkpoint")
    file = str(located.path)
    try:
        state = read_state_dict(
            located.path, map_location=spec.map_location, state_dict_key=spec.state_dict_key, key=key
        )
    except InitConfigError as exc:
        if located.url is None:
            raise
        raise InitConfigError(
            exc.key, f"{exc.problem} (downloaded from {located.url})", valid=exc.valid,
            hint=f"delete the cached copy {file} to download it again; " + (exc.hint or ""),
        ) from None
    keymap = KeyMap(tuple(spec.strip_prefixes), spec.prefix, parse_rename(spec.rename, f"{key}.rename"))
    return file, state, keymap.apply(state.tensors, file=file, key=key)


def _match(rule: Rule, targets: list[_Target], state: Any, names: dict[str, str], result: PretrainedLoad
           ) -> _Matching:
    """Pair targets with checkpoint tensors into ``result``; collect what the policies decide on."""
    spec = rule.init
    found = _Matching()
    for target in targets:
        if target.path in result.tensors or target.path in result.buffers or target.path in result.not_loaded:
            found.used.add(target.key)  # a tied parameter or shared module seen under another name
            continue
        original = names.get(target.key)
        if original is None:
            found.missing.append(target.path)
            continue
        found.used.add(target.key)
        if nn.parameter.is_lazy(target.tensor):
            continue  # lazy: the plan reports it; nothing to copy into
        if any(glob_match(_relative(target.path, rule.scope), g) for g in spec.reinit):
            if target.is_param:
                result.not_loaded[target.path] = REINIT
            continue  # left to the other rules, whatever its shape or dtype
        tensor = state.tensors[original]
        if tuple(tensor.shape) != tuple(target.tensor.shape):
            found.mismatched.append(
                (target.path, original, tuple(tensor.shape), tuple(target.tensor.shape))
            )
            continue
        dtype = target.tensor.dtype
        if tensor.dtype != dtype:
            if DtypeMismatch(spec.dtype_mismatch) is DtypeMismatch.error:
                found.wrong_dtype.append(f"{original}: checkpoint {tensor.dtype}, model {dtype}")
                continue
            converted = _convert(tensor, dtype)
            if converted is None:
                found.overflow.append(f"{original}: {tensor.dtype} -> {dtype}")
                continue
            tensor = converted
            result.converted.append(original)
        loaded = LoadedTensor(tensor, spec.checkpoint, original, rule)
        if target.is_param:
            result.tensors[target.path] = loaded
        else:
            result.buffers[target.path] = LoadedBuffer(target.module, target.name, loaded)
    return found


def _enforce(rule: Rule, index: ModelIndex, file: str, names: dict[str, str], all_keys: set[str],
             targets: list[_Target], found: _Matching, result: PretrainedLoad) -> None:
    """Apply the rule's policies: raise, or record what is left to the other rules."""
    spec, key = rule.init, rule.key
    if not found.used:
        raise InitConfigError(
            f"{key}.checkpoint", f"no key of {file} matches a tensor of {_describe_roots(rule, index)}",
            valid="checkpoint keys such as " + ", ".join(sorted(names)[:4])
            + "; model keys such as " + ", ".join(sorted(all_keys)[:4]),
            hint=suggest_alignment(names, all_keys) or "set prefix, rename or name so that the two line up",
        )
    if found.mismatched and ShapeMismatch(spec.shape_mismatch) is ShapeMismatch.error:
        raise InitConfigError(
            f"{key}.shape_mismatch",
            f"{len(found.mismatched)} tensor(s) of {file} differ in shape from the model: "
            + _listing(found.shape_lines(), limit=None),
            valid="error (default), skip",
            hint="set shape_mismatch: skip to initialize them by the other rules instead "
            "(e.g. a head with a new number of classes), or reinit: [<their paths>]",
        )
    if found.wrong_dtype:
        raise InitConfigError(
            f"{key}.dtype_mismatch", f"{len(found.wrong_dtype)} tensor(s) of {file} differ in dtype: "
            + _listing(found.wrong_dtype), valid="convert (default), error",
            hint="set dtype_mismatch: convert to cast them to the model's dtype",
        )
    if found.overflow:
        raise InitConfigError(
            f"{key}.dtype_mismatch",
            f"casting {len(found.overflow)} tensor(s) of {file} to the model's dtype turns finite values "
            "into inf: " + _listing(found.overflow),
            hint="load into a model with a wider dtype (e.g. float32) and cast it afterwards",
        )
    if found.mismatched and not result.tensors and not result.buffers and not result.reinit:
        raise InitConfigError(
            f"{key}.checkpoint", f"nothing of {file} can be loaded: every tensor that matches by "
            f"name differs in shape ({_listing(found.shape_lines(), limit=3)})",
            hint="this checkpoint is probably for another architecture or size",
        )
    for path, original, ckpt_shape, model_shape in found.mismatched:
        result.not_loaded[path] = (
            f"shape mismatch: {original} is {ckpt_shape} in the checkpoint, {model_shape} here"
        )
    params = {t.path for t in targets if t.is_param}
    missing = [p for p in found.missing if p not in result.tensors and p not in result.buffers
               and p not in result.not_loaded]
    result.missing_buffers = [p for p in missing if p not in params]
    for path in missing:
        if path in params:
            result.not_loaded[path] = NOT_IN_CHECKPOINT
    if missing and MissingKeys(spec.missing_keys) is MissingKeys.error:
        absent = set(missing)
        raise InitConfigError(
            f"{key}.missing_keys", f"{len(missing)} model tensor(s) have no key in {file}: "
            + _listing(missing), valid="init (default), error",
            hint=suggest_alignment(set(names) - found.used, [t.key for t in targets if t.path in absent])
            or "set missing_keys: init to initialize them by the other rules",
        )
    result.unexpected = sorted(names[k] for k in set(names) - found.used - all_keys)
    if result.unexpected and UnexpectedKeys(spec.unexpected_keys) is UnexpectedKeys.error:
        raise InitConfigError(
            f"{key}.unexpected_keys", f"{len(result.unexpected)} key(s) of {file} match no model tensor: "
            + _listing(result.unexpected), valid="ignore (default), error",
            hint=suggest_alignment(set(names) - found.used, all_keys - found.used)
            or "set prefix to load a part of the checkpoint, or unexpected_keys: ignore",
        )


def resolve_pretrained(
    rule: Rule, index: ModelIndex, modules: list[tuple[str, nn.Module]]
) -> PretrainedLoad:
    """Read the rule's checkpoint and pair its tensors with the model's; write nothing.

    ``modules`` are the modules the rule's selectors matched (as for any rule).
    Raises :class:`~hydra_init.InitConfigError` for every problem, naming the
    config key, the file and the checkpoint keys involved. Model-side problems
    are found before the file is downloaded or read.
    """
    spec, key = rule.init, rule.key  # validated when parsed
    targets, all_keys = _targets(rule, index, modules)
    if not targets:
        raise InitConfigError(
            key, "the rule selects no parameter or buffer to load into",
            hint="check name/layer/exclude/params of this Pretrained rule",
        )
    _check_reinit(rule, targets)
    file, state, names = _read(rule)
    result = PretrainedLoad(rule, spec.checkpoint, file, state.format, state.entry)
    found = _match(rule, targets, state, names, result)
    _enforce(rule, index, file, names, all_keys, targets, found, result)
    return result


def _describe_roots(rule: Rule, index: ModelIndex) -> str:
    roots = _roots(rule, index)
    named = [r for r in roots if r]
    if not named:
        return "the model"
    return "module(s) " + ", ".join(named[:6]) + (" ..." if len(named) > 6 else "")


# ----------------------------------------------------------------------------- execute
def _copy(dst: torch.Tensor, src: torch.Tensor) -> None:
    """Copy a full tensor into ``dst``; a sharded ``DTensor`` keeps only its own shard."""
    if type(dst).__name__ == "DTensor" or type(dst.data).__name__ == "DTensor":
        from torch.distributed.tensor import distribute_tensor

        local = src.to(device=dst.device_mesh.device_type, dtype=dst.dtype)
        dst.copy_(distribute_tensor(local, dst.device_mesh, dst.placements, src_data_rank=None))
        return
    dst.copy_(src.to(device=dst.device, dtype=dst.dtype))


def copy_loaded(param: torch.Tensor, loaded: LoadedTensor) -> None:
    """Write a checkpoint tensor into a parameter (moved to its device)."""
    _copy(param, loaded.tensor)


def copy_buffers(loads: Iterable[PretrainedLoad]) -> None:
    """Write the buffers every Pretrained rule loads; a higher-ranked rule writes last and wins."""
    for load in sorted(loads, key=lambda item: item.rule.rank()):
        for buffer in load.buffers.values():
            _copy(buffer.module._buffers[buffer.name], buffer.loaded.tensor)
