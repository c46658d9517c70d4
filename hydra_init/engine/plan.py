"""Resolve rules against a model into a plan: one entry per parameter.

The plan is plain data. It is the dry run, the source of the report, and the
only thing execution reads, so validation happens here, before any tensor is
written: an invalid config leaves the model untouched.

Precedence for a parameter matched by several rules: a loaded checkpoint
tensor beats every random rule (unless the Pretrained rule lists it in
``reinit``); otherwise the highest ``(priority, depth, order)`` wins, where
``depth`` grows for rules held in a sub-module's own ``init_cfg`` and ``order``
is the rule's position (later wins).
"""

from __future__ import annotations

import dataclasses
import functools
import gc
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch
from torch import nn

from ..errors import InitConfigError, closest, did_you_mean
from ..initializers import Action, Default, Initializer, Pretrained
from ..sampling import BUILTIN_DRAWS, Draw, FillDraw, Tiles
from .overlaps import check_overlaps
from .parametrized import add_computed_entries, find_computed, finish_computed, prepare_computed
from .parse import ParsedConfig, parse_config, specialize
from .rules import Rule
from .select import (
    ModelIndex,
    ParamRef,
    glob_match,
    is_known_class,
    torch_class_names,
)
from .sharding import local_tensor
from .sizes import Size, bind_sizes, needed_sizes, read_sizes, recognized_families

__all__ = ["RESET_LABEL", "Plan", "PlanEntry", "build_plan", "has_no_storage"]

_FROM_INIT = "values from the module's __init__"

RESET_LABEL = "reset_parameters (meta build)"
"""The rule label of parameters a meta build leaves to their module's ``reset_parameters()``."""

WEIGHT, BIAS = "weight", "bias"
_PADDED = (nn.Embedding, nn.EmbeddingBag)
_Parameter = nn.Parameter


@dataclass(slots=True)
class PlanEntry:
    """What happens to one parameter.

    ``source`` is ``rule`` (drawn by ``rule``), ``pretrained`` (copied from a
    checkpoint), ``reset`` (the module's ``reset_parameters()``, by a Default rule),
    ``default`` (no rule: left as it is) or ``lazy`` (uninitialized, skipped).
    """

    ref: ParamRef
    source: str
    rule: Rule | None = None
    init: Action | None = None  # the rule's initializer, with expr arguments computed
    role: str = WEIGHT
    draw: Draw | None = None
    loaded: Any = None  # pretrained: the object describing the tensor to copy
    note: str = ""
    shape: torch.Size | None = None  # the parameter's shape and dtype, where planning read them
    dtype: torch.dtype | None = None

    @property
    def path(self) -> str:
        return self.ref.path


@dataclass
class Plan:
    """The resolved plan: entries by parameter path, rules, match counts, warnings and notes."""

    entries: dict[str, PlanEntry]
    rules: list[Rule]
    seed: int | None
    blocks: bool = False
    """The tile layout of large tensors: ``init.tiles: blocks`` (:class:`~hydra_init.sampling.Tiles`)."""
    matched: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # expected findings (rules with nothing to match here)
    resets: list[tuple[str, nn.Module, Rule]] = field(default_factory=list)
    pretrained: list[Any] = field(default_factory=list)
    aliases: dict[str, list[str]] = field(default_factory=dict)
    """Canonical path of a tied tensor -> its other names (written once, under the canonical path)."""
    sizes: dict[str, Size] = field(default_factory=dict)  # read from the model (engine/sizes.py)
    families: list[str] = field(default_factory=list)  # model families the config recognized
    computed: list[Any] = field(default_factory=list)  # writes through parametrizations (parametrized.py)
    custom_draws: bool = False
    """Whether some entry's draw is not one of the engine's own (``sampling.BUILTIN_DRAWS``)."""

    padded: list[str] = field(default_factory=list)
    """Paths of ``nn.Embedding``/``nn.EmbeddingBag`` weights with a ``padding_idx``."""

    @property
    def padding(self) -> list[PlanEntry]:
        """Entries of ``nn.Embedding``/``nn.EmbeddingBag`` weights with a ``padding_idx``: their
        padding row is zeroed after a write, as torch's ``reset_parameters()`` does."""
        return [self.entries[path] for path in self.padded if path in self.entries]


# ----------------------------------------------------------------------------- rule collection
def _owned_rules(index: ModelIndex, start: int, warnings: list[str]) -> list[Rule]:
    """Rules from modules' own ``init_cfg`` attributes, scoped to their subtrees."""
    rules: list[Rule] = []
    seen: set[int] = set()
    for path, module in index.init_cfg_candidates:
        cfg = _init_cfg_of(module)
        if cfg is None or id(module) in seen:
            continue
        seen.add(id(module))
        key = f"{path or '<root>'}.init_cfg"
        depth = 1 + (path.count(".") + 1 if path else 0)
        parsed = parse_config(cfg, key=key)
        warnings.extend(parsed.warnings)
        for rule in parsed.rules:
            label = f"{path}:{rule.label}" if path else f"<root>:{rule.label}"
            rules.append(
                dataclasses.replace(rule, scope=path, depth=depth, label=label, order=start)
            )
            start += 1
    return rules


_MISSING = object()


@functools.cache
def _class_init_cfg(cls: type) -> Any:
    """A class-level ``init_cfg`` (``None`` when the class has none)."""
    return getattr(cls, "init_cfg", None)


def _init_cfg_of(module: nn.Module) -> Any:
    """``module.init_cfg`` without ``nn.Module.__getattr__``'s slow miss on every plain module."""
    cfg = module.__dict__.get("init_cfg", _MISSING)
    if cfg is not _MISSING:
        return cfg
    cfg = _class_init_cfg(type(module))
    if hasattr(cfg, "__get__"):  # a property or other descriptor: ask the instance
        return getattr(module, "init_cfg", None)
    return cfg


# ----------------------------------------------------------------------------- matching
def _relative(path: str, scope: str) -> str:
    return path[len(scope) + 1 :] if scope and path != scope else ("" if path == scope else path)


Captures = dict[str, Any]


def _root_of(path: str, roots: dict[str, Captures]) -> Captures | None:
    """The captures of the matched root that ``path`` lies under (deepest root wins)."""
    while True:
        if path in roots:
            return roots[path]
        if not path:
            return None
        path = path.rpartition(".")[0]


def _matched_modules(
    rule: Rule, index: ModelIndex
) -> tuple[list[tuple[str, nn.Module]], set[str], dict[str, Captures]]:
    """Modules a rule selects, the name globs that matched nothing, and path captures.

    Works on positions in the index's pre-order module list, where a module's subtree
    is the run of positions after it (:attr:`ModelIndex.subtree_ends`): a matched
    root brings its run, an excluded one removes its run. Each glob is matched once
    (:meth:`ModelIndex.glob_positions`); captures are kept only for rules with ``expr``.
    """
    whole = not rule.scope and not rule.name and not rule.exclude
    positions: range | list[int] = index.scope_range(rule.scope)
    ends = index.subtree_ends if rule.name or rule.exclude else []
    dead_globs: set[str] = set()
    captures: dict[str, Captures] = {}
    if rule.name:
        roots: dict[int, Captures] = {}
        for pattern in rule.name:
            hits = index.glob_positions(pattern, rule.scope)
            if not hits:
                dead_globs.add(pattern)
            for i, got in hits.items():
                roots.setdefault(i, got)
        kept: list[int] = []
        covered = 0
        paths = index.module_paths
        for i in sorted(roots):  # a root inside an earlier root's run only refines its captures
            if i >= covered:
                kept.extend(range(i, ends[i]))
                covered = ends[i]
            if rule.expr:  # the deepest root's captures win: it comes later in pre-order
                got = roots[i]
                for j in range(i, ends[i]):
                    captures[paths[j]] = got
        positions = kept
    if rule.exclude:
        # Over the whole scope, not only what the name globs kept: an excluded module
        # may sit above the selected ones (name: "*.conv1", exclude: "backbone.layer2").
        excluded: set[int] = set()
        for pattern in rule.exclude:
            for i in index.glob_positions(pattern, rule.scope):
                excluded.update(range(i, ends[i]))
        positions = [i for i in positions if i not in excluded]
    modules = index.modules
    if rule.layer:
        from .select import class_matches

        classes = {cls for cls in index.by_class if any(class_matches(cls, n) for n in rule.layer)}
        if whole:  # the whole model: the matching classes' modules, in model order
            return index.modules_of(classes), dead_globs, captures
        return [modules[i] for i in positions if type(modules[i][1]) in classes], dead_globs, captures
    if whole:
        return modules, dead_globs, captures
    return [modules[i] for i in positions], dead_globs, captures


def _ancestors(path: str):
    """``path`` and every module path above it, up to the root ``""``."""
    while True:
        yield path
        if not path:
            return
        path = path.rpartition(".")[0]


def _selected_params(rule: Rule, index: ModelIndex, modules) -> list[tuple[ParamRef, str]]:
    """The parameters a rule selects from its matched modules, with their role.

    Without ``params``: each matched module's own ``weight`` (drawn) and ``bias``
    (constant). A plain glob matches the matched modules' own parameter names; a
    glob with a dot matches parameter paths relative to a matched module
    (``bn3.weight`` under every ``Bottleneck``; from the root, full paths).
    """
    out = []
    plain = [p for p in rule.params if "." not in p]
    dotted = [p for p in rule.params if "." in p]
    for path, _ in modules:
        for ref in index.direct_params(path):
            if not rule.params:
                if ref.local_name in (WEIGHT, BIAS):
                    out.append((ref, ref.local_name))
            elif any(glob_match(ref.local_name, pat) for pat in plain):
                out.append((ref, WEIGHT))
    if dotted:
        chosen = {ref.path for ref, _ in out}
        roots = {path for path, _ in modules}
        for ref in index.params.values():
            if ref.path in chosen:
                continue
            for root in _ancestors(ref.module_path):
                if root in roots:
                    rel = ref.path[len(root) + 1 :] if root else ref.path
                    if any(glob_match(rel, pat) for pat in dotted):
                        out.append((ref, WEIGHT))
                        chosen.add(ref.path)
                        break
    return out


def _no_match_problem(rule: Rule, index: ModelIndex, modules, dead_globs) -> None:
    """Raise for typos; warn (by returning) when a rule merely has no target here."""
    if rule.optional:
        return
    unknown = [n for n in rule.layer if not is_known_class(n, index.class_names)]
    # a class of another layout (Conv1D on nanoGPT) is no typo when the rule's other classes
    # are here: then a name glob that matches nothing is the cause, reported below
    if unknown and (len(unknown) == len(rule.layer) or not dead_globs):
        name = unknown[0]
        pool = set(index.class_names) | torch_class_names()
        raise InitConfigError(
            f"{rule.key}.layer", f"no class named {name!r} in the model or in torch.nn",
            valid="model classes: " + ", ".join(sorted({type(m).__name__ for _, m in index.modules})),
            hint=did_you_mean(name, pool) or "use the class name as printed by print(model)",
        )
    if rule.params and modules:
        names = sorted({ref.local_name for p, _ in modules for ref in index.direct_params(p)})
        raise InitConfigError(
            f"{rule.key}.params",
            f"{list(rule.params)} match no parameter of the {len(modules)} selected module(s)",
            valid="parameters there: " + (", ".join(names[:12]) or "none"),
            hint=did_you_mean(rule.params[0], names) or "params globs match parameter names "
            "(weight, in_proj_weight, cls_token) or full paths with dots",
        )
    if dead_globs and not modules:
        pattern = sorted(dead_globs)[0]
        raise InitConfigError(
            f"{rule.key}.name", f"module path {pattern!r} matches no module",
            valid="nearby paths: " + ", ".join(index.nearby_paths(pattern)),
            hint=did_you_mean(pattern, [p for p in index.module_paths if p])
            or "globs use * for any characters; print(dict(model.named_modules()).keys())",
        )


# ----------------------------------------------------------------------------- planning
def _check_shape(rule: Rule, init: Initializer, ref: ParamRef) -> Draw:
    shape = ref.param.shape
    if len(shape) < init.min_dims:
        raise InitConfigError(
            f"{rule.key}.type",
            f"{init.type_name} needs a weight with at least {init.min_dims} dims, but {ref.path} has "
            f"shape {tuple(shape)}",
            hint="use Constant/Ones for norm scales, or narrow the rule with layer/params "
            f"(e.g. exclude {ref.module.__class__.__name__})",
        )
    try:
        draw = init.draw(shape)
    except (ValueError, RuntimeError) as exc:
        raise InitConfigError(
            f"{rule.key}.type", f"{init.type_name} cannot fill {ref.path} "
            f"{tuple(shape)}: {exc}"
        ) from None
    return _check_dtype(rule, init, ref, draw)


def _check_dtype(rule: Rule, init: Initializer, ref: ParamRef, draw: Draw) -> Draw:
    """Integer/bool parameters take only whole constants (torch would truncate or fail mid-write)."""
    dtype = ref.param.dtype
    if dtype.is_floating_point or dtype.is_complex:
        return draw
    if isinstance(draw, FillDraw) and float(draw.value).is_integer():
        return draw
    what = f"the constant {draw.value:g}" if isinstance(draw, FillDraw) else "random real numbers"
    raise InitConfigError(
        f"{rule.key}.type", f"{init.type_name} writes {what} but {ref.path} has dtype "
        f"{str(dtype).removeprefix('torch.')}",
        valid="whole-number Constant, Zeros, Ones (and bias) for integer or bool parameters",
        hint="narrow the rule with layer/params/exclude so it skips this parameter",
    )


_F = TypeVar("_F", bound=Callable[..., Any])


def without_gc(fn: _F) -> _F:
    """Run ``fn`` with the cyclic garbage collector paused.

    Planning a big model allocates ~10 objects per parameter; the collector
    would otherwise rescan the whole model graph many times (half of the
    planning time for 10,000 parameters). Nothing here creates cycles to collect.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not gc.isenabled():
            return fn(*args, **kwargs)
        gc.disable()
        try:
            return fn(*args, **kwargs)
        finally:
            gc.enable()

    return wrapper  # type: ignore[return-value]


@without_gc
def build_plan(
    model: nn.Module,
    parsed: ParsedConfig,
    *,
    reset_uninitialized: bool = False,
    skip: Sequence[str] = (),
    skip_note: str = "skipped",
    replay: Mapping[str, Action] | None = None,
    replay_rule: Rule | None = None,
) -> Plan:
    """Resolve a parsed config against ``model`` into a complete :class:`Plan`, writing nothing.

    With ``reset_uninitialized`` (a meta-device build, :mod:`hydra_init.meta`), a
    parameter without storage that no rule covers is planned for its module's
    ``reset_parameters()`` under the rule :data:`RESET_LABEL`; one whose module has
    none is an error, raised here like every other. Parameters under the module
    paths in ``skip`` are left as they are (source ``default``, noted ``skip_note``):
    mmengine's already-initialized subtrees. ``replay`` (path -> action)
    plans parameters without storage instead as ``custom`` (the constructor's own init,
    replayed by :mod:`hydra_init.replay`) under ``replay_rule``.
    """
    index = ModelIndex(model)
    computed = find_computed(index)  # parametrized weights, indexed like parameters
    families, other_families, family_notes = recognized_families(parsed.recipe, index.class_names)
    rules = [r for r in parsed.rules if r.label not in other_families]
    sizes = read_sizes(parsed.recipe, model, needed_sizes(rules))
    rules = bind_sizes(rules, sizes)
    warnings = list(parsed.warnings) + family_notes
    if parsed.module_init_cfg:
        rules += _owned_rules(index, start=len(rules), warnings=warnings)

    best: dict[str, tuple[tuple, Rule, str, dict[str, Captures]]] = {}
    claims: dict[str, dict[str, str]] = {}  # tied tensors: rule label -> what it would write there
    plan = Plan(entries={}, rules=rules, seed=parsed.seed, blocks=parsed.tiles is Tiles.blocks,
                warnings=warnings, aliases=index.aliases,
                sizes=sizes, families=families)
    loaded: dict[str, Any] = {}
    selected_by: dict[str, list[str]] = {}
    for rule in rules:
        modules, dead_globs, captures = _matched_modules(rule, index)
        if isinstance(rule.init, Pretrained):
            from ..pretrained.stage import resolve_pretrained

            if not modules:
                _no_match_problem(rule, index, modules, dead_globs)
                if rule.optional:
                    plan.warnings.append(f"rule {rule.label!r} matched nothing in this model")
                    continue
            found = resolve_pretrained(rule, index, modules)
            plan.pretrained.append(found)
            for path, tensor_ref in found.tensors.items():
                if path not in loaded or tensor_ref.rank > loaded[path].rank:
                    loaded[path] = tensor_ref  # of two Pretrained rules, the higher-ranked wins
            plan.matched[rule.label] = len(found.tensors)
            continue
        selected = _selected_params(rule, index, modules)
        plan.matched[rule.label] = len(selected)
        selected_by[rule.label] = [ref.path for ref, _ in selected]
        if not selected:
            _no_match_problem(rule, index, modules, dead_globs)
            wanted = f"params {list(rule.params)}" if rule.params else "weight/bias"
            if modules:
                plan.warnings.append(
                    f"rule {rule.label!r} matched {len(modules)} module(s) but none has {wanted}")
            else:  # a layer family this model lacks (conv rules on an MLP): expected, a note
                plan.notes.append(f"rule {rule.label!r} matched nothing in this model")
        else:
            for pattern in sorted(dead_globs) if not rule.optional else ():  # optional: any may be absent
                plan.warnings.append(f"rule {rule.label!r}: name {pattern!r} matches no module")
            for pattern in rule.exclude:
                if not index.glob_positions(pattern, rule.scope):
                    plan.warnings.append(f"rule {rule.label!r}: exclude {pattern!r} matches no module")
            for name in rule.layer:
                if not is_known_class(name, index.class_names):
                    # close to a class of this model: a likely typo (warning); else a family it lacks
                    hint = closest(name, index.class_names)
                    (plan.warnings if hint else plan.notes).append(
                        f"rule {rule.label!r}: no class {name!r} here"
                        + (f" (did you mean {hint[0]!r}?)" if hint else "")
                    )
        rank = rule.rank()
        aliases = index.aliases
        for ref, role in selected:
            path = ref.path
            if aliases and path in aliases:
                claims.setdefault(path, {}).setdefault(rule.label, _writes(rule.init, role))
            current = best.get(path)
            if current is None or rank > current[0]:
                best[path] = (rank, rule, role, captures)

    plan.warnings.extend(shadowed_rule_warnings(selected_by, loaded))
    fallback = Rule(Default(), label=RESET_LABEL, key=parsed.key) if reset_uninitialized else None
    adopted = 0
    plan.warnings.extend(_tied_warnings(claims, best, index.aliases))
    skipped = tuple(prefix + "." for prefix in skip)
    replay = replay or {}
    entries = plan.entries
    make = _EntryMaker({name: size.value for name, size in sizes.items()})
    lazy = nn.parameter.UninitializedTensorMixin  # not UninitializedParameter: its isinstance is slow
    for ref, param in zip(index.params.values(), index.tensors, strict=True):
        path = ref.path
        if skipped and path.startswith(skipped):
            entries[path] = PlanEntry(ref, "default", note=skip_note)
        elif isinstance(param, lazy):
            entries[path] = PlanEntry(ref, "lazy", note="uninitialized (lazy) parameter")
        elif loaded and path in loaded:
            entries[path] = PlanEntry(ref, "pretrained", rule=loaded[path].rule, loaded=loaded[path])
        elif (won := best.get(path)) is not None:
            entries[path] = make(ref, param, won[1], won[2], won[3])
        elif path in replay and has_no_storage(param):
            entries[path] = PlanEntry(ref, "custom", rule=replay_rule, init=replay[path])
        elif fallback is not None and has_no_storage(param):
            entries[path] = PlanEntry(ref, "reset", rule=fallback, init=fallback.init, role=ref.local_name)
            adopted += 1
        else:
            entries[path] = PlanEntry(ref, "default", note=_FROM_INIT if fallback is not None else "")
    if adopted:
        plan.rules.append(fallback)
        plan.matched[fallback.label] = adopted
    if computed:  # parametrized weights: entries as for parameters, then settled against their originals
        add_computed_entries(plan.entries, computed, best, lambda ref, won: make(ref, ref.param, *won[1:]),
                             fallback)
        prepare_computed(plan.entries, computed, RESET_LABEL)
    plan.custom_draws = any(type(draw) not in BUILTIN_DRAWS for _, draw in make.draws.values())
    plan.padded = _padded_weights(index)
    plan.resets = _module_resets(plan.entries)
    if computed:
        plan.computed = finish_computed(plan.entries, computed)
    # a parameter that is a view of another: refused when written
    check_overlaps(zip(map(entries.__getitem__, index.params), index.tensors, strict=True))
    replayed = sum(e.rule is replay_rule for e in entries.values()) if replay else 0
    if replayed:  # counted after the resets, which take over their modules' parameters
        plan.rules.append(replay_rule)
        plan.matched[replay_rule.label] = replayed
    return plan


def _padded_weights(index: ModelIndex) -> list[str]:
    """Canonical paths of the weights of embeddings with a ``padding_idx`` (one test per class)."""
    out = []
    for cls in index.by_class:
        if issubclass(cls, _PADDED):
            for path, module in index.modules_of([cls]):
                if module.padding_idx is None:
                    continue
                weight = path + "." + WEIGHT if path else WEIGHT  # its own, not a tied alias's path
                out.extend(r.path for r in index.direct_params(path) if r.path == weight)
    return out


def shadowed_rule_warnings(selected_by: dict[str, list[str]], loaded: dict[str, Any]) -> list[str]:
    """Rules that can never win: a checkpoint covers every parameter they select."""
    out = []
    for label, paths in selected_by.items():
        if paths and all(p in loaded for p in paths):
            sources = sorted({loaded[p].rule.label for p in paths})
            out.append(
                f"rule {label!r} never writes: the checkpoint of rule {', '.join(map(repr, sources))} "
                f"covers all {len(paths)} parameter(s) it selects, and loaded tensors win; list them "
                "in that rule's reinit to initialize them instead, or remove the rule"
            )
    return out


def _writes(init: Action, role: str) -> str:
    """What a rule writes into a parameter, for comparing claims: a constant, or a random draw."""
    if not isinstance(init, Initializer):
        return init.describe()
    if role == BIAS:
        return f"constant {init.bias_value:g}"
    try:
        draw = init.draw(torch.Size([2, 2]))
    except (ValueError, RuntimeError, TypeError):
        return init.describe()
    return f"constant {draw.value:g}" if isinstance(draw, FillDraw) else init.describe()


def _tied_warnings(claims: dict[str, dict[str, str]], best: dict[str, tuple],
                   aliases: dict[str, list[str]]) -> list[str]:
    """A tied tensor is written once: two rules drawing it differently is worth a warning."""
    out = []
    for path, writes in claims.items():
        distinct = set(writes.values())
        if len(distinct) < 2 or all(w.startswith("constant ") for w in distinct) or path not in best:
            continue
        winner = best[path][1].label
        names = ", ".join([path, *aliases[path]])
        out.append(
            f"tied tensor {names} is claimed by rules {', '.join(sorted(writes))}; it is written once, "
            f"by {winner!r} (highest priority, then depth, then the later rule)"
        )
    return out


def _check_writable(rule: Rule, ref: ParamRef, local: torch.Tensor) -> None:
    """Refuse, while planning, tensors an in-place write would fail on half-way through the model.

    Called for the uncommon local tensors only: inference, non-contiguous or complex ones
    (:class:`_EntryMaker` tests those three properties of every parameter).
    """
    if local.is_inference():
        raise InitConfigError(
            f"{rule.key}", f"parameter {ref.path!r} is an inference tensor (created under "
            "torch.inference_mode()): it cannot be written in place outside it",
            hint="build the model outside torch.inference_mode(), or exclude this parameter",
        )
    # a contiguous tensor cannot overlap itself: only strided ones need the (slower) test
    if (not local.is_contiguous() and not local.is_meta and local.numel() > 1
            and torch._debug_has_internal_overlap(local) == 1):
        raise InitConfigError(
            f"{rule.key}", f"parameter {ref.path!r} (shape {tuple(local.shape)}, strides "
            f"{tuple(local.stride())}) has elements that share memory (an expanded or stride-0 view): "
            "writing it element by element is ill-defined",
            hint="make it a real tensor (nn.Parameter(t.clone())), or exclude it from the rule",
        )
    if local.dtype.is_complex and not isinstance(rule.init, Default):
        raise InitConfigError(
            f"{rule.key}.type",
            f"parameter {ref.path!r} is complex ({str(local.dtype).removeprefix('torch.')}): "
            "the initializers draw real numbers",
            valid="real (floating, integer, bool) parameters",
            hint="exclude it from the rule and initialize it in the module's reset_parameters()",
        )


class _EntryMaker:
    """Plan entries of the parameters rules won, with the per-parameter work kept small.

    What depends only on (initializer, role, shape, dtype) - the draw, and the checks
    that the initializer can fill that shape and dtype - is computed once per
    distinct combination and shared (draws are frozen), so a model of 10⁵ identical
    blocks asks each initializer for a handful of draws, not 10⁵. Only the storage
    checks (:func:`_check_writable`) look at every parameter.
    """

    def __init__(self, size_values: Mapping[str, Any]) -> None:
        self.size_values = size_values
        self.draws: dict[tuple, tuple[Action, Draw]] = {}
        self.specialized: dict[tuple[int, str], Action] = {}

    def __call__(self, ref: ParamRef, param: torch.Tensor, rule: Rule, role: str,
                 captures: Mapping[str, Captures]) -> PlanEntry:
        init = rule.init if not rule.expr else self._specialize(rule, ref.module_path, captures)
        local = param if type(param) is _Parameter else local_tensor(param)
        dtype = local.dtype
        if local.is_inference() or not local.is_contiguous() or dtype.is_complex:
            _check_writable(rule, ref, local)
        if isinstance(init, Default):
            return PlanEntry(ref, "reset", rule=rule, init=init, role=role)
        shape = param.shape
        if not param.numel():  # nothing to write, as torch.nn.init does for an empty tensor
            return PlanEntry(ref, "rule", rule=rule, init=init, role=role, draw=FillDraw(0.0),
                             note="empty tensor: nothing to write")
        key = (id(init), role, shape, dtype)
        known = self.draws.get(key)
        if known is None:
            if role == BIAS:
                draw = _check_dtype(rule, init, ref, FillDraw(init.bias_value))
            else:
                draw = _check_shape(rule, init, ref)
            known = self.draws[key] = (init, draw)  # holding init keeps its id unique meanwhile
        return PlanEntry(ref, "rule", rule, init, role, known[1], None, "", shape, dtype)

    def _specialize(self, rule: Rule, module_path: str, captures: Mapping[str, Captures]) -> Action:
        """The rule's initializer with its ``expr`` computed for one module (cached per module)."""
        key = (id(rule), module_path)
        init = self.specialized.get(key)
        if init is None:
            found = {**self.size_values, **captures.get(module_path, {})}
            init = self.specialized[key] = specialize(rule.init, rule.expr, found, rule.key)
        return init


def _module_resets(entries: dict[str, PlanEntry]) -> list[tuple[str, nn.Module, Rule]]:
    """The modules whose ``reset_parameters()`` the plan runs, children first (validated).

    ``reset_parameters()`` rewrites every parameter of its module, also those the
    Default rule did not select (``params: [weight]`` still resets the bias): their
    entries become ``reset`` entries here, while the plan is built.
    """
    owners: dict[int, tuple[str, nn.Module, Rule]] = {}
    for path, entry in entries.items():
        if entry.source != "reset":
            continue
        module = entry.ref.module
        if not entry.init.can_reset(module):
            where = entry.ref.module_path or "<root>"
            if entry.rule.label == RESET_LABEL:
                raise InitConfigError(
                    entry.rule.key,
                    f"parameter {path!r} would be uninitialized: no rule covers it and its module "
                    f"{where} ({type(module).__name__}) has no reset_parameters()",
                    hint=f"add a rule for it, e.g. rules: {{{entry.ref.local_name}: {{type: Zeros, "
                    f"name: '{entry.ref.module_path}', params: {entry.ref.local_name}}}}}, "
                    "or build the model eagerly",
                )
            raise InitConfigError(
                f"{entry.rule.key}.type",
                f"Default needs reset_parameters() but {where} ({type(module).__name__}) has none",
                hint="pick an explicit initializer for this module, or exclude it",
            )
        owners.setdefault(id(module), (entry.ref.module_path, module, entry.rule))
    if not owners:
        return []
    for path, entry in entries.items():
        owner = owners.get(id(entry.ref.module))
        if owner is not None and entry.source in ("default", "custom"):  # the reset rewrites them
            entries[path] = PlanEntry(entry.ref, "reset", rule=owner[2], init=owner[2].init,
                                      role=entry.ref.local_name)
    # Children first, as in an eager build: a parent's reset may set its children's
    # tensors (MultiheadAttention zeroes out_proj.bias), and must have the last word.
    return sorted(owners.values(), key=lambda item: -(item[0].count(".") + 1 if item[0] else 0))


def has_no_storage(param: torch.Tensor) -> bool:
    """A ``meta`` tensor (or DTensor with a meta local shard): built without values."""
    return local_tensor(param).is_meta
