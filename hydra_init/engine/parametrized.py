"""Tensors computed from parameters: parametrizations and the old weight/spectral-norm hooks.

``torch.nn.utils.parametrizations.weight_norm(nn.Linear(4, 3))`` removes the Linear's
``weight`` parameter: ``m.weight`` is computed on every access from
``m.parametrizations.weight.original0`` and ``original1``. A rule for the Linear means
its *effective* weight, so the plan indexes ``<module>.weight`` as a :class:`ComputedRef`
(matched by the default weight role, by ``params: [weight]`` and by dotted globs like any
parameter) and execution writes it *through* the parametrization: it draws the tensor
the rule describes for the effective shape, with the key an unparametrized
``<module>.weight`` would get, and assigns ``m.weight = value`` under ``torch.no_grad()``,
which calls ``right_inverse`` and sets the originals. The report lists the originals,
pointing to the rule, with the parametrization named in their detail.

What the parametrization makes of the drawn tensor is its own business, and the detail
says it: ``weight_norm``'s inverse is exact (the effective weight is the draw, up to
rounding), ``spectral_norm``'s keeps the draw as ``original`` so the effective weight is
the draw divided by its spectral norm (the power-iteration vectors are restarted for
the new weight, seeded, as registering ``spectral_norm`` does), and ``orthogonal``'s
projects the draw onto the orthogonal matrices (the Q of its QR decomposition).

Refused while planning (one :class:`~hydra_init.InitConfigError`, nothing written): a
parametrization without ``right_inverse`` (torch cannot assign through it), torch's
``orthogonal(..., use_trivialization=False)`` with the ``matrix_exp``/``cayley`` map
(its ``right_inverse`` raises), and the old ``torch.nn.utils.spectral_norm`` hook. The
old ``torch.nn.utils.weight_norm`` hook is written through: ``weight_v = w``,
``weight_g = ||w||`` over every dim but ``dim``.

Precedence: a rule may also target the originals themselves (``params:
["parametrizations.weight.original*"]``). For each original the higher-ranked of the two
rules wins (``(priority, depth, order)``, as everywhere; a tie goes to the effective
weight), and a checkpoint tensor beats both. The write through the parametrization
happens first, then the originals' own writes replace what it set in them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize

from ..errors import InitConfigError
from ..sampling import Draw, derive_key
from .select import ModelIndex, join
from .sharding import local_tensor

__all__ = [
    "ComputedRef",
    "ComputedWrite",
    "ThroughRef",
    "find_computed",
    "finish_computed",
    "prepare_computed",
    "through_parametrizations",
    "write_computed",
]

PARAMETRIZE, WEIGHT_NORM_HOOK, SPECTRAL_NORM_HOOK = "parametrize", "weight_norm hook", "spectral_norm hook"


@dataclass(frozen=True)
class ComputedRef:
    """``module.<local_name>``, computed from the parameters at ``originals`` (canonical paths).

    It stands where a :class:`~hydra_init.engine.select.ParamRef` would (same attributes),
    so rules select it like a parameter. :attr:`param` is a ``meta`` stand-in of the
    effective shape and dtype: the plan's checks read shape and dtype only, and computing
    the real tensor would run the parametrization (a spectral norm's power iteration
    writes its buffers).
    """

    path: str
    module_path: str
    local_name: str
    module: nn.Module
    originals: tuple[str, ...] = ()
    kind: str = PARAMETRIZE
    standin: torch.Tensor | None = field(default=None, compare=False, hash=False, repr=False)
    computed = True  # read by the checkpoint stage, which skips it (checkpoints hold the originals)

    @property
    def param(self) -> torch.Tensor:
        return self.standin

    def through(self) -> str:
        """How a value reaches the originals, for the report."""
        if self.kind == WEIGHT_NORM_HOOK:
            return f"the old {self.kind} ({self.local_name}_v = value, {self.local_name}_g = its norm)"
        names = ", ".join(type(p).__name__ for p in self.module.parametrizations[self.local_name])
        return f"its parametrization ({names}.right_inverse)"


@dataclass(frozen=True)
class ThroughRef:
    """An original written through its effective tensor, standing where its ``ParamRef`` was:
    ``module`` is the owner of the effective tensor (the report describes its reset),
    ``holder`` the module that holds the parameter."""

    path: str
    module_path: str
    local_name: str
    module: nn.Module
    holder: nn.Module | None = field(default=None, compare=False, hash=False, repr=False)
    computed = False

    @property
    def param(self) -> torch.nn.Parameter:
        return self.holder._parameters[self.local_name]


@dataclass
class ComputedWrite:
    """One rule's value, drawn for an effective tensor and assigned through its parametrization."""

    ref: ComputedRef
    draw: Draw


# ----------------------------------------------------------------------------- finding them
def _standin(shape: torch.Size, dtype: torch.dtype, inference: bool) -> torch.Tensor:
    with torch.inference_mode(inference):
        return torch.empty(shape, dtype=dtype, device="meta")


def _effective(plist: nn.Module) -> torch.Tensor | None:
    """The parametrization's output on meta copies of its tensors: shape and dtype, no side effect."""
    tensors = (*plist.named_parameters(), *plist.named_buffers())
    fake = {k: torch.empty_like(v, device="meta") for k, v in tensors}
    try:
        with torch.no_grad():
            out = torch.func.functional_call(plist, fake, ())
    except Exception:  # a parametrization meta tensors cannot run: fall back on the original's shape
        return plist.original if getattr(plist, "is_tensor", False) else None
    return out if isinstance(out, torch.Tensor) else None


def _hooks(module: nn.Module) -> Iterator[tuple[str, str, tuple[str, ...]]]:
    """``(kind, name, original names)`` of the old weight_norm / spectral_norm hooks on ``module``."""
    if not module._forward_pre_hooks:
        return
    from torch.nn.utils.spectral_norm import SpectralNorm
    from torch.nn.utils.weight_norm import WeightNorm

    for hook in module._forward_pre_hooks.values():
        if isinstance(hook, WeightNorm):
            yield WEIGHT_NORM_HOOK, hook.name, (hook.name + "_g", hook.name + "_v")
        elif isinstance(hook, SpectralNorm):
            yield SPECTRAL_NORM_HOOK, hook.name, (hook.name + "_orig",)


def find_computed(index: ModelIndex) -> list[ComputedRef]:
    """Index every parametrized or hook-computed parameter of the model as a :class:`ComputedRef`.

    Only the modules the index's walk noted (``parametrizations`` in their children, or
    forward pre-hooks) are looked at. The refs join their module's direct parameters, so
    rules select them by name (default weight role, ``params: [weight]``); they are not in
    ``index.params``, so the plan's entries come from :func:`add_computed_entries`.
    """
    found: list[ComputedRef] = []
    for path, module in index.computed_candidates:
        candidates: list[tuple[str, str, tuple[str, ...], torch.Tensor | None]] = []
        plists = module._modules.get("parametrizations")
        if plists is not None and parametrize.is_parametrized(module):
            for name, plist in plists.items():
                holder = join(path, f"parametrizations.{name}")
                originals = tuple(join(holder, n) for n in plist._parameters if n.startswith("original"))
                if originals:
                    candidates.append((PARAMETRIZE, name, originals, _effective(plist)))
        for kind, name, names in _hooks(module):
            if all(module._parameters.get(n) is not None for n in names):
                first = module._parameters[names[-1]]
                candidates.append((kind, name, tuple(join(path, n) for n in names), first))
        for kind, name, originals, effective in candidates:
            known = all(o in index.params for o in originals)
            if effective is None or name in module._parameters or not known:
                continue  # shape unknown, or an original tied elsewhere: left to rules on the originals
            inference = any(local_tensor(index.params[o].param).is_inference() for o in originals)
            ref = ComputedRef(join(path, name), path, name, module, originals, kind,
                              _standin(effective.shape, effective.dtype, inference))
            index.add_computed(ref)  # selected like a parameter of the module
            found.append(ref)
    return found


# ----------------------------------------------------------------------------- planning
def _refuse(ref: ComputedRef, key: str) -> None:
    """Raise while planning when a value cannot be assigned through ``ref``'s parametrization."""
    originals = " / ".join(o.rpartition(".")[2] for o in ref.originals)
    target = f"params: [{ref.originals[0].rpartition('.')[2] if len(ref.originals) == 1 else 'original*'}]"
    if ref.kind == SPECTRAL_NORM_HOOK:
        raise InitConfigError(
            key, f"{ref.path} is computed by the old torch.nn.utils.spectral_norm hook, which has no inverse "
            f"to write it through",
            hint=f"use torch.nn.utils.parametrizations.spectral_norm (written through right_inverse), or "
            f"initialize {ref.originals[0]} itself: name: '{ref.module_path}', params: [{originals}]",
        )
    if ref.kind != PARAMETRIZE:
        return
    from torch.nn.utils.parametrizations import _OrthMaps, _Orthogonal

    holder = f"{ref.module_path + '.' if ref.module_path else ''}parametrizations.{ref.local_name}"
    for p in ref.module.parametrizations[ref.local_name]:
        if not hasattr(p, "right_inverse"):
            why = f"its parametrization {type(p).__name__} has no right_inverse"
        elif (isinstance(p, _Orthogonal) and not hasattr(p, "base")
              and p.orthogonal_map != _OrthMaps.householder):
            why = (f"its parametrization {type(p).__name__} (orthogonal with the {p.orthogonal_map.name} map "
                   "and use_trivialization=False) cannot be assigned to (torch raises NotImplementedError)")
        else:
            continue
        raise InitConfigError(
            key, f"cannot initialize {ref.path} through its parametrization: {why}, so torch cannot "
            "turn a value for the weight into the tensors it is computed from",
            hint=f"initialize the originals themselves (name: '{holder}', {target}), add a right_inverse "
            f"to {type(p).__name__}, or exclude {ref.module_path or '<root>'} from the rule",
        )


def fills_on_assignment(module: nn.Module, name: str) -> bool:
    """Whether buffer ``name`` of ``module`` gets its values when a weight is assigned through it
    (a spectral norm's power-iteration vectors), so a meta build may leave it without values."""
    from torch.nn.utils.parametrizations import _SpectralNorm

    return isinstance(module, _SpectralNorm) and name in ("_u", "_v")


def _unfilled(ref: ComputedRef) -> str | None:
    """What of ``ref``'s parametrization has no values until a weight is assigned through it."""
    if ref.kind != PARAMETRIZE:
        return None
    from torch.nn.utils.parametrizations import _Orthogonal, _SpectralNorm

    for p in ref.module.parametrizations[ref.local_name]:
        if isinstance(p, _SpectralNorm) and getattr(p, "_u", None) is not None and p._u.is_meta:
            return "the spectral norm's power-iteration vectors (u, v)"
        if isinstance(p, _Orthogonal) and "base" in p._buffers and (p.base is None or p.base.is_meta):
            return "the orthogonal parametrization's base"
    return None


def _refuse_unfilled(ref: ComputedRef, key: str) -> None:
    what = _unfilled(ref)
    if what is not None:
        raise InitConfigError(
            key, f"{ref.path}: on a meta build {what} get values only when a weight is written through "
            "the parametrization, and no rule writes it (the originals have rules or values of their own)",
            hint=f"add a rule for the weight itself (name: '{ref.module_path}', params: {ref.local_name}), "
            "or build the model eagerly",
        )


def add_computed_entries(entries: dict, refs: list[ComputedRef], best: dict[str, Any],
                         entry_for: Callable[[ComputedRef, Any], Any], fallback: Any) -> None:
    """The plan entries of the effective tensors, as the plan makes them for parameters:
    ``best`` (path -> the winning rule's tuple) through ``entry_for``, else a meta build's
    reset ``fallback`` when the originals have no storage, else ``default``."""
    from .plan import PlanEntry, has_no_storage

    for ref in refs:
        if ref.path in best:
            entries[ref.path] = entry_for(ref, best[ref.path])
            continue
        holder = ref.module.parametrizations[ref.local_name] if ref.kind == PARAMETRIZE else ref.module
        params = [holder._parameters[o.rpartition(".")[2]] for o in ref.originals]
        if fallback is not None and all(has_no_storage(p) for p in params):
            entries[ref.path] = PlanEntry(ref, "reset", rule=fallback, init=fallback.init,
                                          role=ref.local_name)
        else:
            entries[ref.path] = PlanEntry(ref, "default")


def prepare_computed(entries: dict, refs: list[ComputedRef], fallback_label: str) -> None:
    """Before module resets are gathered: refuse what cannot be written through, and settle
    meta builds' reset fallbacks (``fallback_label``) between effective tensors and originals.

    A meta build plans uncovered meta tensors for their module's ``reset_parameters()``.
    For a parametrized weight that is the owner's reset (``Linear.reset_parameters()``
    writes the effective weight through the parametrization, see
    :func:`through_parametrizations`), kept only when every original is uncovered too;
    the originals' own fallback (a ``ParametrizationList`` has no reset) is cleared here and
    set by :func:`finish_computed`.
    """
    from .plan import PlanEntry

    for ref in refs:
        entry = entries[ref.path]
        mine = [entries[o] for o in ref.originals]
        fallback = [e.source == "reset" and e.rule.label == fallback_label for e in mine]
        if entry.source == "reset" and entry.rule.label == fallback_label and not all(fallback):
            _refuse_unfilled(ref, entry.rule.key)
            entries[ref.path] = PlanEntry(ref, "default")  # the originals have values of their own
            continue
        if entry.source not in ("rule", "reset"):
            continue
        _refuse(ref, entry.rule.key)
        for e, is_fallback in zip(mine, fallback, strict=True):
            if is_fallback:  # written through the effective tensor instead
                entries[e.path] = PlanEntry(e.ref, "default", note="through")


def finish_computed(entries: dict, refs: list[ComputedRef]) -> list[ComputedWrite]:
    """After module resets: take the effective tensors out of the entries and point their
    originals to the rule (or reset) that writes them; returns the writes to run."""
    from .plan import PlanEntry

    writes: list[ComputedWrite] = []
    for ref in refs:
        entry = entries.pop(ref.path)
        if entry.source not in ("rule", "reset"):
            continue
        if entry.source == "reset" and not _invertible(ref):
            continue  # a reset of the owner for its other parameters: it cannot reach these
        rank = entry.rule.rank()
        how = ("reset_parameters() writes it, " if entry.source == "reset" else "") + ref.through()
        note = f"through {ref.path}: {how}{_what_it_makes(ref)}"
        for path in ref.originals:
            own = entries[path]
            if own.source == "pretrained" or (own.source == "rule" and own.rule.rank() > rank):
                continue  # the original's own write comes after and wins
            holder = own.ref.module if not isinstance(own.ref, ThroughRef) else own.ref.holder
            through = ThroughRef(own.ref.path, own.ref.module_path, own.ref.local_name, ref.module, holder)
            entries[path] = PlanEntry(through, entry.source, rule=entry.rule, init=entry.init,
                                      role=entry.role, note=note)
        if entry.source == "rule" and entry.draw is not None and ref.standin.numel():
            writes.append(ComputedWrite(ref, entry.draw))
    return writes


def _what_it_makes(ref: ComputedRef) -> str:
    if ref.kind != PARAMETRIZE:
        return ""
    from torch.nn.utils.parametrizations import _Orthogonal, _SpectralNorm

    kinds = {type(p) for p in ref.module.parametrizations[ref.local_name]}
    if _Orthogonal in kinds:
        return "; it projects the value onto the orthogonal matrices (QR)"
    if _SpectralNorm in kinds:
        return "; the weight is the value divided by its spectral norm (power iteration restarted)"
    return ""


def _invertible(ref: ComputedRef) -> bool:
    try:
        _refuse(ref, "")
    except InitConfigError:
        return False
    return True


# ----------------------------------------------------------------------------- execution
def _assign(ref: ComputedRef, value: torch.Tensor, key: int) -> None:
    """Set ``ref``'s effective tensor to ``value`` through its parametrization or hook."""
    module, name = ref.module, ref.local_name
    if ref.kind == WEIGHT_NORM_HOOK:
        hook = next(h for h in module._forward_pre_hooks.values() if getattr(h, "name", None) == name)
        module._parameters[name + "_v"].copy_(value)
        module._parameters[name + "_g"].copy_(torch.norm_except_dim(value, 2, hook.dim))
        setattr(module, name, hook.compute_weight(module))
        return
    devices = [value.device.index or 0] if value.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):  # right_inverse may draw (orthogonal's completion)
        torch.manual_seed(key >> 1)
        setattr(module, name, value)
        _restart_power_iteration(module.parametrizations[name])


def _restart_power_iteration(plist: nn.Module) -> None:
    """A spectral norm's ``u``/``v`` were estimated for the old weight: estimate them again,
    from fresh (seeded) random vectors and power iterations, as registering it does."""
    from torch.nn.functional import normalize
    from torch.nn.utils.parametrizations import _SpectralNorm

    first = plist[0]
    if not isinstance(first, _SpectralNorm) or not plist.is_tensor or plist.original.ndim <= 1:
        return
    for vector in (first._u, first._v):
        vector.normal_(0, 1)
        vector.copy_(normalize(vector, dim=0, eps=first.eps))
    # 15 iterations in __init__, and one more where registering calls the parametrization (training mode)
    steps = 15 + (first.training and not plist.unsafe)
    first._power_method(first._reshape_weight_to_matrix(plist.original), steps)


def write_computed(writes: list[ComputedWrite], seed: int, blocks: bool = False) -> None:
    """Draw each effective tensor (the key of an unparametrized ``<module>.<name>``) and assign it."""
    from ..sampling.whole import fill_

    for write in writes:
        ref = write.ref
        holder = ref.module.parametrizations[ref.local_name] if ref.kind == PARAMETRIZE else ref.module
        device = holder._parameters[ref.originals[0].rpartition(".")[2]].device
        shape = ref.standin.shape
        value = torch.empty(shape, dtype=ref.standin.dtype, device=device)
        key = derive_key(seed, ref.path, shape)
        fill_(value, write.draw, key, blocks)
        module = ref.module
        if isinstance(module, (nn.Embedding, nn.EmbeddingBag)) and module.padding_idx is not None \
                and ref.local_name == "weight":
            value[module.padding_idx].zero_()
        _assign(ref, value, key)


@contextlib.contextmanager
def through_parametrizations(module: nn.Module) -> Iterator[None]:
    """Let ``reset_parameters()`` write a parametrized module's effective tensors.

    Under ``parametrize.cached()`` every read of ``module.weight`` returns one cached
    tensor; it is seeded here with zeros of the effective shape (not computed: on a meta
    build the originals hold no values yet), so the reset's in-place init lands in it,
    and that tensor is then assigned through the parametrization. Any other module:
    nothing happens.
    """
    if not parametrize.is_parametrized(module):
        yield
        return
    names = [n for n in module.parametrizations if _invertible(ComputedRef(n, "", n, module))]
    with parametrize.cached():
        for name in names:
            plist = module.parametrizations[name]
            like = _effective(plist)
            device = next(iter(plist.parameters())).device
            if like is not None and isinstance(getattr(parametrize, "_cache", None), dict):
                zeros = torch.zeros(like.shape, dtype=like.dtype, device=device)
                parametrize._cache[id(module), name] = zeros
        yield
        values = {name: getattr(module, name) for name in names}
    for name, value in values.items():
        setattr(module, name, value)
        _restart_power_iteration(module.parametrizations[name])
