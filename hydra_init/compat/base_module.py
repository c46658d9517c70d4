"""OpenMMLab-style ``initialize`` and a ``BaseModule`` mixin, for porting mmengine code.

Semantics kept from mmengine:

* ``init_cfg`` on a module applies to its subtree, and a child's ``init_cfg``
  wins over its parent's (``BaseModule`` nesting, also inside ``Sequential``,
  ``ModuleList`` and ``ModuleDict``);
* a user-written ``init_weights()`` on a descendant (a subclass override, one
  assigned on an instance, or any ``init_weights`` of a plain module) runs after
  the configs, exactly once, children in order, and so has the last word ("the
  priority of init_weights is higher than init_cfg") — except over tensors a
  checkpoint in an ancestor's ``init_cfg`` loads, which are copied in again;
* ``init_weights()`` runs once (``is_init``, which users may set);
* a ``Pretrained`` dict's ``override`` applies after loading;
* errors carry mmengine's exception types (:mod:`hydra_init.compat.errors`).

Traps removed: class names match over the whole MRO; ``override`` reaches any
depth; typos raise; a ``Pretrained`` part no longer stops its children from
being initialized — new modules added to a pretrained backbone get their rules;
and a subtree already initialized (``is_init``) is left alone, also by its
ancestors' rules. The report says what each custom ``init_weights()`` wrote.

>>> import torch.nn as nn
>>> class Net(BaseModule):
...     def __init__(self, init_cfg=None):
...         super().__init__(init_cfg)
...         self.conv = nn.Conv2d(3, 8, 3)
...         self.head = nn.Linear(8, 2)
>>> net = Net(init_cfg=[dict(type="Kaiming", layer="Conv2d"),
...                     dict(type="Constant", val=0, layer="Linear")])
>>> report = net.init_weights()
>>> net.is_init, net.head.weight.detach().abs().sum().item()
(True, 0.0)
"""

from __future__ import annotations

import contextlib
import contextvars
import copy
import logging
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..api import apply
from ..engine.execute import execute
from ..engine.parse import ParsedConfig
from ..engine.plan import Plan, build_plan
from ..engine.report import InitReport
from .errors import dual_error, mmengine_errors

__all__ = ["BaseModule", "ModuleDict", "ModuleList", "Sequential", "initialize"]

log = logging.getLogger("hydra_init")

SKIPPED_NOTE = "already initialized (is_init): skipped"


def initialize(module: nn.Module, init_cfg: dict | list[dict]) -> InitReport:
    """mmengine's ``initialize(module, init_cfg)``: apply mmengine-style dicts to a module.

    Accepts ``type`` (a name or a class), ``layer``, ``override``, ``bias``,
    ``bias_prob`` and ``Pretrained`` (``checkpoint``, ``prefix``,
    ``map_location``; its ``override`` applies after loading). Only the given
    config is applied (sub-modules' own ``init_cfg`` are not consulted, as in
    mmengine). Errors carry mmengine's exception types too. Returns the report.

    >>> import torch.nn as nn
    >>> model = nn.Sequential(nn.Conv1d(3, 1, 3), nn.Linear(1, 2))
    >>> _ = initialize(model, [dict(type="Constant", layer="Conv1d", val=1),
    ...                        dict(type="Constant", layer="Linear", val=2)])
    >>> model[1].weight.detach().mean().item()
    2.0
    """
    if not isinstance(init_cfg, (dict, list)):
        raise dual_error(TypeError)(
            "init_cfg", f"expected a dict or a list of dicts, got {type(init_cfg).__name__}",
            hint="e.g. dict(type='Kaiming', layer='Conv2d')",
        )
    cfg = [mmengine_dict(c, module) for c in init_cfg] if isinstance(init_cfg, list) else mmengine_dict(
        init_cfg, module)
    with mmengine_errors():
        return apply(module, copy.deepcopy(cfg), key="init_cfg", module_init_cfg=False, log=False)


def _is_pretrained(kind: Any) -> bool:
    name = getattr(kind, "type_name", None) or getattr(kind, "__name__", kind)
    return name in ("Pretrained", "PretrainedInit")


def mmengine_dict(cfg: Any, owner: nn.Module | None = None) -> Any:
    """mmengine's reading of one dict: a ``Pretrained`` dict's ``override`` applies after loading.

    The engine keeps loaded tensors over every rule, so the parameters of the
    override's modules become ``reinit`` paths of the Pretrained rule (loaded,
    then overridden, as in mmengine; each tensor still written once; their
    buffers are still loaded). ``owner`` is the module the dict initializes.

    >>> head = nn.Module()
    >>> head.fc = nn.Linear(2, 2)
    >>> owner = nn.ModuleDict({"head": head})
    >>> mmengine_dict(dict(type="Pretrained", checkpoint="a.pth",
    ...                    override=dict(type="Zeros", name="head")), owner)["reinit"]
    ['head.fc.weight', 'head.fc.bias']
    """
    if not isinstance(cfg, Mapping) or cfg.get("override") is None or not _is_pretrained(cfg.get("type")):
        return cfg
    items = cfg["override"] if isinstance(cfg["override"], (list, tuple)) else [cfg["override"]]
    names = [o["name"] for o in items
             if isinstance(o, Mapping) and isinstance(o.get("name"), str) and set(o) != {"name"}]
    if not names:
        return cfg
    paths = []
    for name in names:
        target = getattr(owner, name, None) if owner is not None else None
        if isinstance(target, nn.Module):
            paths.extend(f"{name}.{p}" for p, _ in target.named_parameters())
        else:  # no such attribute: the engine's error for the override names it
            paths.append(f"{name}.*")
    return {**cfg, "reinit": [*(cfg.get("reinit") or []), *paths]}


# ----------------------------------------------------------------------------- one init_weights() pass
@dataclass
class _Pass:
    """State of the top-level ``init_weights()`` while descendants' ``init_weights()`` run."""

    pending: set[int]  # BaseModules planned, whose init_weights() has not been visited yet
    skipped: set[int]  # modules already initialized before this pass (is_init)
    paths: dict[int, str]
    params: dict[str, torch.Tensor]
    called: set[int] = field(default_factory=set)
    # parameter path -> (writer, version after, completion seq, writer's module path)
    writes: dict[str, tuple[str, int, int, str]] = field(default_factory=dict)
    seq: int = 0


_PASS: contextvars.ContextVar[_Pass | None] = contextvars.ContextVar("hydra_init_compat_pass", default=None)


def _has_custom_init_weights(module: nn.Module) -> bool:
    """Whether ``module.init_weights`` is user code: a subclass override, an instance attribute,
    or any ``init_weights`` of a module that is not a :class:`BaseModule`."""
    if not callable(getattr(module, "init_weights", None)):
        return False
    if not isinstance(module, BaseModule) or "init_weights" in vars(module):
        return True
    return type(module).init_weights is not BaseModule.init_weights


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _visit_children(module: nn.Module, path: str, state: _Pass) -> None:
    """mmengine's recursion: each child's ``init_weights()``, in order; through plain containers."""
    for name, child in module.named_children():
        child_path = _join(path, name)
        if id(child) in state.skipped or id(child) in state.called:
            continue  # skipped, or a module shared under two names and already visited
        state.called.add(id(child))
        if _has_custom_init_weights(child):
            _call_custom(child, child_path, state)
        elif isinstance(child, BaseModule):
            child.init_weights()  # the pending branch: visits its children
        else:
            _visit_children(child, child_path, state)


def _call_custom(module: nn.Module, path: str, state: _Pass) -> None:
    """Run a user ``init_weights()`` and record what it wrote (storage version counters)."""
    before = {p: t._version for p, t in module.named_parameters(prefix=path) if p in state.params}
    start = state.seq
    module.init_weights()
    state.seq += 1
    writer = f"{type(module).__name__}.init_weights() [{path}]"
    for p, version in before.items():
        now = state.params[p]._version
        if now == version:
            continue
        prior = state.writes.get(p)
        if prior is not None and prior[1] == now and prior[2] > start:
            continue  # written by a nested init_weights() and not touched since
        state.writes[p] = (writer, now, state.seq, path)


@contextlib.contextmanager
def _mmengine_init_cfgs(root: nn.Module) -> Iterator[None]:
    """Modules' ``init_cfg`` read as mmengine reads them (Pretrained ``override``), restored after."""
    swapped = []
    for module in root.modules():
        cfg = getattr(module, "init_cfg", None)
        new = [mmengine_dict(c, module) for c in cfg] if isinstance(cfg, list) else mmengine_dict(cfg, module)
        if new is not cfg and new != cfg:
            swapped.append((module, cfg))
            module.init_cfg = new
    try:
        yield
    finally:
        for module, cfg in swapped:
            module.init_cfg = cfg


def _init_tree(root: BaseModule) -> InitReport:
    """The top-level ``init_weights()``: one plan for the subtree, then users' ``init_weights()``."""
    named = list(root.named_modules(remove_duplicate=False))
    skipped_paths: list[str] = []
    skipped: set[int] = set()
    for path, module in named:
        if path and getattr(module, "is_init", False) is True and not any(
            path.startswith(p + ".") for p in skipped_paths
        ):
            skipped_paths.append(path)
            skipped.add(id(module))
    with _mmengine_init_cfgs(root), mmengine_errors():
        plan = build_plan(root, ParsedConfig(module_init_cfg=True), skip=skipped_paths,
                          skip_note=SKIPPED_NOTE)
    seed = execute(plan)
    inside = [(p, m) for p, m in named if not any(p == s or p.startswith(s + ".") for s in skipped_paths)]
    state = _Pass(
        pending={id(m) for p, m in inside if isinstance(m, BaseModule) and p},
        skipped=skipped,
        paths={id(m): p for p, m in inside},
        params={p: t for p, t in root.named_parameters()
                if not any(p.startswith(s + ".") for s in skipped_paths)},
    )
    token = _PASS.set(state)
    try:
        _visit_children(root, "", state)
    finally:
        _PASS.reset(token)
    for _, module in inside:
        if isinstance(module, BaseModule):
            module._is_init = True
    _reload_over_descendants(plan, state)
    written = {p: w[0] for p, w in state.writes.items()}
    report = InitReport.from_plan(plan, seed=seed, applied=True, written_by=written)
    report.log(log)
    return report


def _reload_over_descendants(plan: Plan, state: _Pass) -> None:
    """mmengine loads a module's Pretrained init_cfg after its descendants' ``init_weights()``:
    a checkpoint tensor that a descendant's custom code overwrote is copied in again."""
    from ..pretrained.stage import copy_loaded

    for path, (_, _, _, writer_path) in list(state.writes.items()):
        entry = plan.entries.get(path)
        if entry is None or entry.source != "pretrained":
            continue
        scope = entry.loaded.rule.scope
        if writer_path != scope and (not scope or writer_path.startswith(scope + ".")):
            with torch.no_grad():
                copy_loaded(entry.ref.param, entry.loaded)
            del state.writes[path]


class BaseModule(nn.Module):
    """An ``nn.Module`` with an ``init_cfg`` and ``init_weights()``, like mmengine's.

    ``init_weights()`` resolves every ``init_cfg`` in the subtree into one plan
    (each parameter written once, inner configs winning), then calls the
    descendants' own ``init_weights()`` as mmengine does (children in order, a
    custom one exactly once, also one set on an instance). Subtrees already
    initialized (``is_init``, settable) are skipped. The returned report records
    what each custom ``init_weights()`` wrote, found by storage version counters.
    """

    def __init__(self, init_cfg: dict | list[dict] | None = None) -> None:
        super().__init__()
        self._is_init = False
        self.init_cfg = copy.deepcopy(init_cfg)

    @property
    def is_init(self) -> bool:
        """Whether ``init_weights()`` has run; set it to ``True`` to have a parent skip this subtree."""
        return self._is_init

    @is_init.setter
    def is_init(self, value: bool) -> None:
        self._is_init = bool(value)

    def init_weights(self) -> InitReport | None:
        """Initialize the subtree from the ``init_cfg`` attributes found in it."""
        state = _PASS.get()
        if state is not None and id(self) in state.pending:
            state.pending.discard(id(self))  # planned by the top-level pass: visit the children
            _visit_children(self, state.paths[id(self)], state)
            self._is_init = True
            return None
        if self._is_init:
            warnings.warn(
                f"init_weights of {type(self).__name__} has been called more than once", stacklevel=2
            )
            return None
        token = _PASS.set(None)
        try:
            return _init_tree(self)
        finally:
            _PASS.reset(token)


class Sequential(BaseModule, nn.Sequential):
    """``nn.Sequential`` with an ``init_cfg`` (mmengine's ``Sequential``)."""

    def __init__(self, *args: nn.Module, init_cfg: dict | list[dict] | None = None) -> None:
        BaseModule.__init__(self, init_cfg)
        nn.Sequential.__init__(self, *args)


class ModuleList(BaseModule, nn.ModuleList):
    """``nn.ModuleList`` with an ``init_cfg`` (mmengine's ``ModuleList``)."""

    def __init__(self, modules: Any = None, init_cfg: dict | list[dict] | None = None) -> None:
        BaseModule.__init__(self, init_cfg)
        nn.ModuleList.__init__(self, modules)


class ModuleDict(BaseModule, nn.ModuleDict):
    """``nn.ModuleDict`` with an ``init_cfg`` (mmengine's ``ModuleDict``)."""

    def __init__(self, modules: Any = None, init_cfg: dict | list[dict] | None = None) -> None:
        BaseModule.__init__(self, init_cfg)
        nn.ModuleDict.__init__(self, modules)
