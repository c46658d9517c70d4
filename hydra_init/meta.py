"""Meta-device build: construct a model without allocating or default-initializing its weights.

``build_and_init(build, init_cfg, device=...)`` runs ``build()`` so that every
*uninitialized* tensor it creates (``torch.empty`` and friends: the storage of
every ``nn.Linear``/``nn.Conv*``/``nn.Embedding`` weight) lives on the ``meta``
device, where PyTorch's default init is a no-op, while every tensor created
*with values* (``torch.zeros``, ``torch.arange``, ``torch.ones``...: BatchNorm
statistics, sinusoidal position tables, RoPE caches, a ``cls_token`` of zeros)
is computed exactly as an eager build computes it, on CPU. Then:

1. the init config is planned against the meta model (any config error is raised
   before a byte is allocated);
2. the model is materialized on ``device`` (``to_empty``), keeping every tensor
   that has values;
3. each parameter is written once: by its rule, or - when no rule covers an
   uninitialized parameter - by its module's own ``reset_parameters()``, seeded
   per module path like a ``Default`` rule.

No uninitialized memory reaches the caller. What cannot be reproduced fails with
:class:`MetaBuildError` naming the module and tensor: a buffer computed from an
uninitialized tensor (``torch.empty(...)`` then filled in place, or derived from
a weight), or from random numbers (an eager build draws them after the default
inits have consumed the global generator, so their values cannot be matched).
An uninitialized parameter that no rule covers and whose module has no
``reset_parameters()`` is an :class:`~hydra_init.InitConfigError` (add a rule).

Why this design (rather than rebuilding offending modules eagerly, or recording
``register_buffer`` calls): it needs no constructor arguments and no knowledge of
module classes, it computes buffers with the same code and the same CPU kernels
as an eager build (so they are bit-identical), and anything it cannot prove
equal is detected and reported instead of guessed.

Example:
    >>> import torch.nn as nn
    >>> model, report = build_and_init(
    ...     lambda: nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4)),
    ...     {"seed": 0, "rules": {"fc": {"type": "Normal", "layer": "Linear", "std": 0.02}}},
    ...     device="cpu", log=False)
    >>> model[1].running_var.tolist(), report.totals["rule"], report.totals["reset"]
    ([1.0, 1.0, 1.0, 1.0], 2, 2)
"""

from __future__ import annotations

import dataclasses
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from .api import execute_and_report
from .engine.execute import effective_seed
from .engine.parametrized import fills_on_assignment
from .engine.parse import parse_config
from .engine.plan import RESET_LABEL, build_plan, has_no_storage, without_gc
from .engine.report import InitReport
from .engine.rules import Rule
from .engine.sharding import is_dtensor, local_tensor
from .replay import REPLAY_LABEL, Recorder, Replay, Replayed
from .sampling import derive_key

__all__ = [
    "REPLAY_LABEL", "RESET_LABEL", "MetaBuildError", "allocate", "build_and_init", "build_meta", "init_meta",
    "materialize",
]


_EMPTY = {torch.empty, torch.empty_strided, torch.empty_permuted}
# Uninitialized copies of another tensor's layout: of a weight they stay on meta; of a
# real tensor (scratch space for a buffer computed in __init__) they stay real.
_EMPTY_LIKE = {torch.empty_like, torch.Tensor.new_empty, torch.Tensor.new_empty_strided}
# Value-carrying "like" factories: on a meta input they would silently give a meta
# tensor, but their values are known, so they are computed for real.
_LIKE = {torch.zeros_like, torch.ones_like, torch.full_like, torch.Tensor.new_zeros,
         torch.Tensor.new_ones, torch.Tensor.new_full, torch.Tensor.new_tensor}
# Functions (by name) that consume the global random generator.
_RANDOM = {
    "rand", "rand_like", "randn", "randn_like", "randint", "randint_like", "randperm", "normal",
    "bernoulli", "multinomial", "poisson", "normal_", "uniform_", "random_", "exponential_",
    "geometric_", "log_normal_", "cauchy_", "bernoulli_", "dropout", "dropout_", "alpha_dropout",
    "feature_alpha_dropout", "rrelu", "trunc_normal_", "kaiming_uniform_", "kaiming_normal_",
    "xavier_uniform_", "xavier_normal_", "orthogonal_", "sparse_",
}


class MetaBuildError(RuntimeError):
    """A meta-device build cannot reproduce what an eager build leaves in a tensor."""


def _tensors(value: Any) -> Iterator[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, (list, tuple)):
        for item in value:
            if isinstance(item, torch.Tensor):
                yield item


class _MetaBuildMode(TorchFunctionMode):
    """Uninitialized tensors go to ``meta``; tensors from the random generator are tracked."""

    def __init__(self) -> None:
        super().__init__()
        self.random: dict[int, torch.Tensor] = {}  # storage address -> a tensor keeping it alive
        self.recorder = Recorder(build_meta.__code__, _RANDOM)  # init ops on meta tensors, for replay

    def _tainted(self, value: Any) -> bool:
        return any(
            not t.is_meta and t.untyped_storage().data_ptr() in self.random for t in _tensors(value)
        )

    def _taint(self, value: Any) -> None:
        for t in _tensors(value):
            if not t.is_meta and t.numel():
                self.random[t.untyped_storage().data_ptr()] = t

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        alloc = func in _EMPTY or (func in _EMPTY_LIKE and getattr(args[0], "is_meta", False))
        if alloc:
            kwargs["device"] = "meta"
        elif func in _LIKE and args and getattr(args[0], "is_meta", False) and "device" not in kwargs:
            kwargs["device"] = "cpu"
        result = func(*args, **kwargs)
        self.recorder.observe(func, args, kwargs, result, alloc)
        random = getattr(func, "__name__", "") in _RANDOM
        if random or (self.random and (self._tainted(args) or self._tainted(list(kwargs.values())))):
            self._taint(result)
            if args and isinstance(args[0], torch.Tensor) and (func.__name__.endswith("_")
                                                              or func.__name__ == "__setitem__"):
                self._taint(args[0])  # written in place
        return result


def _named_tensors(model: nn.Module, kind: str) -> Iterator[tuple[str, nn.Module, str, torch.Tensor]]:
    """``(path, module, name, tensor)`` for every parameter (``_parameters``) or buffer (``_buffers``)."""
    for path, module in model.named_modules(remove_duplicate=False):
        for name, tensor in getattr(module, kind).items():
            if tensor is not None:
                yield path, module, name, tensor


def build_meta(build: Callable[[], nn.Module], *, seed: int | None = None) -> nn.Module:
    """Run ``build()`` with uninitialized tensors on ``meta`` and everything else computed.

    With ``seed``, random numbers drawn while building (rare: a parameter created
    with ``torch.randn``) come from a generator seeded from it, and the caller's
    global random state is left as it was.

    Raises:
        MetaBuildError: a buffer holds uninitialized (``meta``) or random values.

    >>> import torch.nn as nn
    >>> model = build_meta(lambda: nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2)))
    >>> model[0].weight.is_meta, model[1].running_mean.is_meta
    (True, False)
    """
    _check_build(build)
    mode = _MetaBuildMode()
    try:
        if seed is None:
            with mode:
                model = build()
        else:
            with torch.random.fork_rng(devices=[]), mode:
                torch.manual_seed(derive_key(seed, "<meta build>", ()) >> 1)
                model = build()
    except (RuntimeError, NotImplementedError) as exc:  # e.g. __init__ reads a weight's values
        raise MetaBuildError(
            f"build() failed on the meta device: {exc}. A module's __init__ uses the values of an "
            "uninitialized tensor (see the traceback); build this model eagerly (device=None / meta=False)"
        ) from exc
    if not isinstance(model, nn.Module):
        raise TypeError(f"build() returned {type(model).__name__}, not an nn.Module")
    problems = []
    for path, module, name, buf in _named_tensors(model, "_buffers"):
        where = f"{path + '.' if path else ''}{name} of {path or '<root>'} ({type(module).__name__})"
        if buf.is_meta and buf.numel() and not fills_on_assignment(module, name):  # spectral norm's u/v
            problems.append(f"buffer {where} was computed from uninitialized data (torch.empty or a weight)")
        elif mode._tainted(buf):
            problems.append(f"buffer {where} holds random numbers drawn in __init__")
    if problems:
        raise MetaBuildError(
            "a meta-device build cannot reproduce what an eager build leaves in these buffers: "
            + "; ".join(problems)
            + ". Build this model eagerly (device=None / meta=False), or create the buffer from "
            "values (torch.zeros, torch.arange...) and fill it in reset_parameters()."
        )
    mode.recorder.remember(model)
    _RECORDINGS[model] = mode.recorder
    return model


_RECORDINGS: weakref.WeakKeyDictionary[nn.Module, Recorder] = weakref.WeakKeyDictionary()
"""What each model built by :func:`build_meta` ran on its meta tensors (read by :func:`init_meta`)."""


def _check_build(build: Any) -> None:
    if isinstance(build, nn.Module):
        name = type(build).__name__
        raise TypeError(
            f"build must be a callable that constructs the model, not a model: got an instance of {name}. "
            f"Pass the class or a function, e.g. build_and_init({name}, ...) or "
            f"build_and_init(lambda: {name}(...), ...), so it is built on the meta device"
        )
    if not callable(build):
        raise TypeError(
            f"build must be a callable that constructs the model, got {type(build).__name__}; "
            "e.g. build_and_init(lambda: nn.Linear(2, 2), ...)"
        )


@without_gc
def allocate(model: nn.Module, device: torch.device | str) -> nn.Module:
    """Allocate every ``meta`` tensor on ``device``; tensors with values keep them.

    Like ``Module.to_empty`` but it keeps values, re-ties shared tensors (tied
    embeddings) and leaves lazy parameters lazy. On FSDP2-sharded models
    (``DTensor`` parameters) it runs ``to_empty`` itself and copies back what
    had values (buffers, parameters created from ``torch.zeros``/``ones``...).
    """
    places: dict[int, list[tuple[nn.Module, str, str]]] = {}
    kept = []
    sharded = False
    for kind in ("_parameters", "_buffers"):
        for _, module, name, tensor in _named_tensors(model, kind):
            where = places.setdefault(id(tensor), [])
            where.append((module, kind, name))
            sharded = sharded or is_dtensor(tensor)
            if len(where) == 1 and not has_no_storage(tensor):
                kept.append((module, kind, name, local_tensor(tensor).detach()))
    if sharded:  # FSDP2 expects to_empty; then restore the values it dropped
        model.to_empty(device=device)
        with torch.no_grad():
            for module, kind, name, values in kept:
                local_tensor(getattr(module, kind)[name]).copy_(values)
    else:
        for where in places.values():  # lazy parameters stay lazy, on the target device
            module, kind, name = where[0]
            tensor = getattr(module, kind)[name]
            if isinstance(tensor, nn.parameter.UninitializedTensorMixin):
                getattr(module, kind)[name] = type(tensor)(
                    requires_grad=tensor.requires_grad, device=device, dtype=tensor.dtype
                )
        model._apply(  # as .to()/to_empty do, so RNNs refresh their flat weights
            lambda t: torch.empty_like(t, device=device) if t.is_meta else t.to(device)
        )
    for where in places.values():  # _apply unties shared tensors (tied embeddings): tie them again
        module, kind, name = where[0]
        first = getattr(module, kind)[name]
        for other, _, other_name in where[1:]:
            setattr(other, other_name, first)
    return model


def init_meta(
    model: nn.Module, init_cfg: Any, *, device: torch.device | str, key: str = "init", log: bool = True
) -> InitReport:
    """Materialize a model built by :func:`build_meta` on ``device`` and initialize it.

    The model may have been sharded in between (FSDP2 ``fully_shard``): then each
    rank allocates and writes only its shards. Returns the report; the model is
    initialized in place.
    """
    parsed = parse_config(init_cfg, key=key)  # taken as it is when already parsed
    recorder = _RECORDINGS.get(model)
    replayed = recorder.replayed(model) if recorder is not None else {}
    rule = Rule(Replayed(), label=REPLAY_LABEL, key=parsed.key)
    # every check, before any allocation
    plan = build_plan(model, parsed, reset_uninitialized=True, replay=replayed, replay_rule=rule)
    replay = None
    if recorder is not None:
        custom = [plan.columns.index.param_paths[i] for i in plan.columns.positions("custom")]
        replay = Replay.prepare(recorder, model, custom)
    allocate(model, device)
    if replay:
        plan = dataclasses.replace(plan, seed=effective_seed(plan.seed))  # one seed for replay and rules
        replay.run(device, plan.seed)
    _RECORDINGS.pop(model, None)
    return execute_and_report(plan, log=log)


def build_and_init(
    build: Callable[[], nn.Module],
    init_cfg: Any,
    *,
    device: torch.device | str,
    key: str = "init",
    log: bool = True,
) -> tuple[nn.Module, InitReport]:
    """Build a model on the meta device, materialize it on ``device``, initialize it once.

    ``hydra_init.instantiate(cfg.model, init=cfg.init, device=...)`` calls this.
    See the module docstring for what is guaranteed and what raises.

    Args:
        build: constructs the model (e.g. ``lambda: MyModel(**kwargs)``).
        init_cfg: any config form :func:`hydra_init.apply` accepts.
        device: where the parameters are allocated (``"cpu"``, ``"cuda"``...).
        key: the config path used in error messages.
        log: log the report.

    Returns:
        ``(model, report)``.
    """
    _check_build(build)
    parsed = parse_config(init_cfg, key=key)
    model = build_meta(build, seed=parsed.seed)
    report = init_meta(model, parsed, device=device, key=key, log=log)
    return model, report


materialize = allocate
"""The 0.1 name of :func:`allocate` (kept as an alias)."""
