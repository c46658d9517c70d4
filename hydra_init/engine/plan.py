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
import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypeVar

import numpy as np
import torch
from torch import nn

from ..errors import InitConfigError, closest, did_you_mean
from ..initializers import Action, Default, Initializer, Pretrained
from ..sampling import BUILTIN_DRAWS, Draw, FillDraw, Tiles
from .columns import Entries, Kind, PlanColumns, PlanEntry
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

_SHAPE, _DTYPE = operator.attrgetter("shape"), operator.attrgetter("dtype")
_IS_INFERENCE, _IS_CONTIGUOUS = torch.Tensor.is_inference, torch.Tensor.is_contiguous

__all__ = ["RESET_LABEL", "Plan", "PlanEntry", "build_plan", "has_no_storage"]

_FROM_INIT = "values from the module's __init__"

RESET_LABEL = "reset_parameters (meta build)"
"""The rule label of parameters a meta build leaves to their module's ``reset_parameters()``."""

WEIGHT, BIAS = "weight", "bias"
_PADDED = (nn.Embedding, nn.EmbeddingBag)
_Parameter = nn.Parameter


@dataclass
class Plan:
    """The resolved plan: what happens to each parameter, rules, match counts, warnings and notes."""

    columns: PlanColumns
    """What happens to each parameter: a kind per parameter, into a table of shared fields
    (:mod:`.columns`)."""
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

    def __post_init__(self) -> None:
        self.entries = Entries(self.columns)
        """``path -> PlanEntry``, in model order: a view of :attr:`columns`."""

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
Captures = dict[str, Any]


def _matched_modules(rule: Rule, index: ModelIndex) -> tuple[Sequence[int], set[str], dict[str, Captures]]:
    """Positions (in :attr:`ModelIndex.modules`) of the modules a rule selects, the name
    globs that matched nothing, and path captures.

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
    if rule.layer:
        from .select import class_matches

        classes = {cls for cls in index.by_class if any(class_matches(cls, n) for n in rule.layer)}
        if whole:  # the whole model: the matching classes' modules, in model order
            return index.positions_of(classes), dead_globs, captures
        modules = index.modules
        return [i for i in positions if type(modules[i][1]) in classes], dead_globs, captures
    return positions, dead_globs, captures


class Selection(NamedTuple):
    """The parameters one rule selects: column positions with their roles (0 weight, 1 bias),
    and tensors outside the columns (a parametrization's computed weight) with their roles."""

    positions: np.ndarray
    roles: np.ndarray
    extra: list[tuple[Any, str]]
    count: int  # how many (parameter, role) pairs the rule matched, tied names counted each


ROLES = (WEIGHT, BIAS)


def _selected_params(rule: Rule, index: ModelIndex, modules: Sequence[int]) -> Selection:
    """The parameters a rule selects from its matched modules, with their role.

    Without ``params``: each matched module's own ``weight`` (drawn) and ``bias``
    (constant). A plain glob matches the matched modules' own parameter names; a
    glob with a dot matches parameter paths relative to a matched module
    (``bn3.weight`` under every ``Bottleneck``; from the root, full paths).

    Modules whose parameters are their own columns (all but tied aliases and parametrized
    modules) are selected with array operations over their position ranges.
    """
    if any("." in p for p in rule.params) or (
            index.special_modules and not index.special_modules.isdisjoint(modules)):
        return _selected_refs(rule, index, modules)
    bounds = index.bounds_array
    mods = np.fromiter(modules, dtype=np.int64, count=len(modules))
    starts = bounds[mods]
    counts = bounds[mods + 1] - starts
    positions = np.arange(int(counts.sum()), dtype=np.int64)
    positions += np.repeat(starts - (np.cumsum(counts) - counts), counts)
    names, ids = index.local_ids
    if rule.params:
        chosen = [k for k, name in enumerate(names) if any(glob_match(name, p) for p in rule.params)]
        positions = positions[np.isin(ids[positions], chosen)]
        roles = np.zeros(len(positions), dtype=np.int8)
    else:
        role_of = np.full(len(names), -1, dtype=np.int8)
        for code, role in enumerate(ROLES):
            if role in names:
                role_of[names.index(role)] = code
        roles = role_of[ids[positions]]
        keep = roles >= 0
        positions, roles = positions[keep], roles[keep]
    return Selection(positions, roles, [], len(positions))


def _selected_refs(rule: Rule, index: ModelIndex, modules: Sequence[int]) -> Selection:
    """:func:`_selected_params` parameter by parameter, through the modules' refs (tied
    aliases, computed tensors, dotted ``params`` globs). A tensor selected twice (through
    two of its names) keeps its first role."""
    out = []
    plain = [p for p in rule.params if "." not in p]
    dotted = [p for p in rule.params if "." in p]
    module_paths = index.module_paths
    for m in modules:
        for ref in index.direct_params(module_paths[m]):
            if not rule.params:
                if ref.local_name in ROLES:
                    out.append((ref, ref.local_name))
            elif any(glob_match(ref.local_name, pat) for pat in plain):
                out.append((ref, WEIGHT))
    if dotted:
        chosen = {ref.path for ref, _ in out}
        roots = {module_paths[m] for m in modules}
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
    position = index.position
    seen: set[int] = set()
    positions, roles, extra = [], [], []
    for ref, role in out:
        i = position.get(ref.path)
        if i is None:
            extra.append((ref, role))
        elif i not in seen:
            seen.add(i)
            positions.append(i)
            roles.append(ROLES.index(role))
    return Selection(np.asarray(positions, dtype=np.int64), np.asarray(roles, dtype=np.int8), extra,
                     len(out))


def _ancestors(path: str):
    """``path`` and every module path above it, up to the root ``""``."""
    while True:
        yield path
        if not path:
            return
        path = path.rpartition(".")[0]


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

    paths = index.param_paths
    columns = PlanColumns(index, note=_FROM_INIT if reset_uninitialized else "")
    plan = Plan(columns, rules=rules, seed=parsed.seed, blocks=parsed.tiles is Tiles.blocks,
                warnings=warnings, aliases=index.aliases,
                sizes=sizes, families=families)
    loaded: dict[str, Any] = {}
    selections: dict[int, Selection] = {}
    captures_of: dict[int, dict[str, Captures]] = {}
    extra_best: dict[str, tuple[tuple, Rule, str, dict[str, Captures]]] = {}  # computed tensors
    claims: dict[str, dict[str, str]] = {}  # tied tensors: rule label -> what it would write there
    tied = np.asarray([index.position[p] for p in index.aliases], dtype=np.int64) if index.aliases else None
    for k, rule in enumerate(rules):
        found, dead_globs, captures = _matched_modules(rule, index)
        if isinstance(rule.init, Pretrained):
            from ..pretrained.stage import resolve_pretrained

            modules = [index.modules[i] for i in found]
            if not modules:
                _no_match_problem(rule, index, modules, dead_globs)
                if rule.optional:
                    plan.warnings.append(f"rule {rule.label!r} matched nothing in this model")
                    continue
            loads = resolve_pretrained(rule, index, modules)
            plan.pretrained.append(loads)
            for path, tensor_ref in loads.tensors.items():
                if path not in loaded or tensor_ref.rank > loaded[path].rank:
                    loaded[path] = tensor_ref  # of two Pretrained rules, the higher-ranked wins
            plan.matched[rule.label] = len(loads.tensors)
            continue
        selected = selections[k] = _selected_params(rule, index, found)
        captures_of[k] = captures
        plan.matched[rule.label] = selected.count
        if not selected.count:
            modules = [index.modules[i] for i in found]
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
        if tied is not None and len(selected.positions):
            hit = np.isin(selected.positions, tied)
            for i, role in zip(selected.positions[hit].tolist(), selected.roles[hit].tolist(), strict=True):
                claims.setdefault(paths[i], {}).setdefault(rule.label, _writes(rule.init, ROLES[role]))
        rank = rule.rank()
        for ref, role in selected.extra:
            current = extra_best.get(ref.path)
            if current is None or rank > current[0]:
                extra_best[ref.path] = (rank, rule, role, captures)

    # the winner of each parameter: rules by rank, the highest last (of equal ranks, the first rule)
    winner = np.full(len(paths), -1, dtype=np.int64)
    won_role = np.zeros(len(paths), dtype=np.int8)
    for k in sorted(selections, key=lambda k: (rules[k].rank(), -k)):
        winner[selections[k].positions] = k
        won_role[selections[k].positions] = selections[k].roles
    if loaded:
        plan.warnings.extend(shadowed_rule_warnings(
            {rules[k].label: [paths[i] for i in s.positions.tolist()] + [r.path for r, _ in s.extra]
             for k, s in selections.items()}, loaded))
    fallback = Rule(Default(), label=RESET_LABEL, key=parsed.key) if reset_uninitialized else None
    plan.warnings.extend(_tied_warnings(
        claims, {p: rules[winner[index.position[p]]] for p in claims if winner[index.position[p]] >= 0},
        index.aliases))
    make = _EntryMaker(index, {name: size.value for name, size in sizes.items()})
    taken = _fill_settled(columns, skip, skip_note, loaded)
    if taken is not None:
        winner[taken] = -1
    _fill_won(columns, make, rules, winner, won_role, captures_of)
    adopted = _fill_unwritten(columns, winner, taken, replay or {}, replay_rule, fallback)
    if adopted:
        plan.rules.append(fallback)
        plan.matched[fallback.label] = adopted
    if computed:  # parametrized weights: entries as for parameters, then settled against their originals
        add_computed_entries(plan.entries, computed, extra_best,
                             lambda ref, won: make.one(ref, ref.param, *won[1:]), fallback)
        prepare_computed(plan.entries, computed, RESET_LABEL)
    plan.custom_draws = any(type(known[1]) not in BUILTIN_DRAWS for known in make.draws.values())
    plan.padded = _padded_weights(index)
    plan.resets = _module_resets(plan)
    if computed:
        plan.computed = finish_computed(plan.entries, computed)
    # a parameter that is a view of another: refused when written
    check_overlaps(index.tensors, columns.entry)
    replayed = sum(n for kind, n in columns.counts() if kind.rule is replay_rule) if replay else 0
    if replayed:  # counted after the resets, which take over their modules' parameters
        plan.rules.append(replay_rule)
        plan.matched[replay_rule.label] = replayed
    return plan


def _fill_settled(columns: PlanColumns, skip: Sequence[str], skip_note: str,
                  loaded: Mapping[str, Any]) -> np.ndarray | None:
    """Columns of the parameters no rule decides: under a skipped subtree (left as they are),
    lazy (uninitialized), loaded from a checkpoint. Returns their positions (``None``: none)."""
    index = columns.index
    kind = columns.kind
    taken: list[int] = []
    if skip:
        skipped = tuple(prefix + "." for prefix in skip)
        found = [i for i, path in enumerate(index.param_paths) if path.startswith(skipped)]
        kind[found] = columns.kind_id(Kind("default", note=skip_note))
        taken += found
    lazy = nn.parameter.UninitializedTensorMixin  # not UninitializedParameter: its isinstance is slow
    if any(issubclass(cls, lazy) for cls in set(map(type, index.tensors))):
        done = set(taken)
        found = [i for i, t in enumerate(index.tensors) if i not in done and isinstance(t, lazy)]
        kind[found] = columns.kind_id(Kind("lazy", note="uninitialized (lazy) parameter"))
        taken += found
    if loaded:
        done = set(taken)
        for path, tensor_ref in loaded.items():
            i = index.position.get(path)
            if i is not None and i not in done:
                kind[i] = columns.kind_id(Kind("pretrained", tensor_ref.rule, loaded=tensor_ref))
                taken.append(i)
    return np.asarray(taken, dtype=np.int64) if taken else None


def _fill_won(columns: PlanColumns, make: _EntryMaker, rules: list[Rule], winner: np.ndarray,
              won_role: np.ndarray, captures_of: dict[int, dict[str, Captures]]) -> None:
    """Columns of the parameters rules won, one group of positions per winning rule."""
    won = np.flatnonzero(winner >= 0)
    if not len(won):
        return
    by_rule = winner[won]
    order = np.argsort(by_rule, kind="stable")
    won, by_rule = won[order], by_rule[order]
    starts = np.flatnonzero(np.diff(by_rule, prepend=-1))
    for start, end in zip(starts.tolist(), [*starts[1:].tolist(), len(won)], strict=True):
        k = int(by_rule[start])
        positions = won[start:end]
        roles = won_role[positions].tolist()
        rule = rules[k]
        if rule.expr:  # an initializer per module: entry by entry
            for i, role in zip(positions.tolist(), roles, strict=True):
                columns.set(i, make.one(columns.ref(i), columns.index.tensors[i], rule, ROLES[role],
                                        captures_of[k]))
        else:
            make.group(columns, positions, roles, rule)


def _fill_unwritten(columns: PlanColumns, winner: np.ndarray, taken: np.ndarray | None,
                    replay: Mapping[str, Action], replay_rule: Rule | None, fallback: Rule | None) -> int:
    """Columns of a meta build's parameters without storage that no rule won: the constructor's
    own init replayed (``replay``), else their module's ``reset_parameters()`` (``fallback``).
    Returns how many the fallback took."""
    if not replay and fallback is None:
        return 0
    rest = winner < 0
    if taken is not None:
        rest[taken] = False
    index = columns.index
    adopted = 0
    for i in np.flatnonzero(rest).tolist():
        path = index.param_paths[i]
        if not has_no_storage(index.tensors[i]):
            continue
        if path in replay:
            columns.kind[i] = columns.kind_id(Kind("custom", replay_rule, replay[path]))
        elif fallback is not None:
            columns.kind[i] = columns.kind_id(Kind("reset", fallback, fallback.init, index.param_local[i]))
            adopted += 1
    return adopted


def _padded_weights(index: ModelIndex) -> list[str]:
    """Canonical paths of the weights of embeddings with a ``padding_idx`` (one test per class)."""
    out = []
    paths, bounds = index.param_paths, index.param_bounds
    for cls in index.by_class:
        if issubclass(cls, _PADDED):
            for m in index.positions_of([cls]):
                path, module = index.modules[m]
                if module.padding_idx is None:
                    continue
                weight = path + "." + WEIGHT if path else WEIGHT  # its own, not a tied alias's path
                out.extend(paths[i] for i in range(bounds[m], bounds[m + 1]) if paths[i] == weight)
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


def _tied_warnings(claims: dict[str, dict[str, str]], winners: dict[str, Rule],
                   aliases: dict[str, list[str]]) -> list[str]:
    """A tied tensor is written once: two rules drawing it differently is worth a warning."""
    out = []
    for path, writes in claims.items():
        distinct = set(writes.values())
        if len(distinct) < 2 or all(w.startswith("constant ") for w in distinct) or path not in winners:
            continue
        winner = winners[path].label
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
    checks (:func:`_check_writable`) look at every parameter, and only the uncommon
    ones (inference, non-contiguous or complex tensors) go further than three tests.
    """

    def __init__(self, index: ModelIndex, size_values: Mapping[str, Any]) -> None:
        self.index = index
        self.size_values = size_values
        self.draws: dict[tuple, tuple[Action, Draw, str]] = {}
        self.specialized: dict[tuple[int, str], Action] = {}

    def group(self, columns: PlanColumns, positions: np.ndarray, roles: list[int], rule: Rule) -> None:
        """Fill the columns of the parameters at ``positions`` (roles: 0 weight, 1 bias), all won
        by ``rule`` (no ``expr``): one kind per distinct (role, shape, dtype)."""
        init = rule.init
        tensors = self.index.tensors
        where = positions.tolist()
        params = [tensors[i] for i in where]
        locals_ = params if set(map(type, params)) <= {_Parameter} else [
            t if type(t) is _Parameter else local_tensor(t) for t in params]
        dtypes = list(map(_DTYPE, locals_))  # map with C getters: no Python frame per tensor
        if any(map(_IS_INFERENCE, locals_)) or not all(map(_IS_CONTIGUOUS, locals_)) or any(
                d.is_complex for d in set(dtypes)):
            for j, t in enumerate(locals_):
                if t.is_inference() or not t.is_contiguous() or t.dtype.is_complex:
                    _check_writable(rule, columns.ref(where[j]), t)
        if isinstance(init, Default):
            ids = [columns.kind_id(Kind("reset", rule, init, role)) for role in ROLES]
            columns.kind[positions] = np.asarray(ids, dtype=np.int32)[roles]
            return
        keys = list(zip(roles, map(_SHAPE, params), dtypes, strict=True))
        local = {key: n for n, key in enumerate(dict.fromkeys(keys))}  # distinct, in model order
        codes = np.fromiter(map(local.__getitem__, keys), dtype=np.int64, count=len(keys))
        first = np.unique(codes, return_index=True)[1].tolist()  # where each first occurs
        ids = []
        for (role, shape, dtype), j in zip(local, first, strict=True):
            _, draw, note = self._known(rule, init, columns.ref(where[j]), ROLES[role], shape, dtype)
            ids.append(columns.kind_id(Kind("rule", rule, init, ROLES[role], draw, None, note, shape, dtype)))
        columns.kind[positions] = np.asarray(ids, dtype=np.int32)[codes]

    def one(self, ref: Any, param: torch.Tensor, rule: Rule, role: str,
            captures: Mapping[str, Captures]) -> PlanEntry:
        """The entry of one parameter (or computed tensor) won by ``rule``."""
        init = rule.init if not rule.expr else self._specialize(rule, ref.module_path, captures)
        local = param if type(param) is _Parameter else local_tensor(param)
        if local.is_inference() or not local.is_contiguous() or local.dtype.is_complex:
            _check_writable(rule, ref, local)
        if isinstance(init, Default):
            return PlanEntry(ref, "reset", rule=rule, init=init, role=role)
        shape, dtype = param.shape, local.dtype
        _, draw, note = self._known(rule, init, ref, role, shape, dtype)
        return PlanEntry(ref, "rule", rule, init, role, draw, None, note, shape, dtype)

    def _known(self, rule: Rule, init: Action, ref: Any, role: str, shape: torch.Size,
               dtype: torch.dtype) -> tuple[Action, Draw, str]:
        """The draw (checked) of one (initializer, role, shape, dtype), and its note; remembered."""
        known = self.draws.get((id(init), role, shape, dtype))
        if known is not None:
            return known
        if not shape.numel():  # nothing to write, as torch.nn.init does for an empty tensor
            draw, note = FillDraw(0.0), "empty tensor: nothing to write"
        elif role == BIAS:
            draw, note = _check_dtype(rule, init, ref, FillDraw(init.bias_value)), ""
        else:
            draw, note = _check_shape(rule, init, ref), ""
        known = self.draws[(id(init), role, shape, dtype)] = (init, draw, note)  # init's id stays unique
        return known

    def _specialize(self, rule: Rule, module_path: str, captures: Mapping[str, Captures]) -> Action:
        """The rule's initializer with its ``expr`` computed for one module (cached per module)."""
        key = (id(rule), module_path)
        init = self.specialized.get(key)
        if init is None:
            found = {**self.size_values, **captures.get(module_path, {})}
            init = self.specialized[key] = specialize(rule.init, rule.expr, found, rule.key)
        return init


def _module_resets(plan: Plan) -> list[tuple[str, nn.Module, Rule]]:
    """The modules whose ``reset_parameters()`` the plan runs, children first (validated).

    ``reset_parameters()`` rewrites every parameter of its module, also those the
    Default rule did not select (``params: [weight]`` still resets the bias): their
    entries become ``reset`` entries here, while the plan is built.
    """
    columns, entries = plan.columns, plan.entries
    index = columns.index
    found = [(i, columns.entry(i)) for i in columns.positions("reset")]
    found += [(None, e) for e in entries.extra.values() if e.source == "reset"]
    owners: dict[int, tuple[str, nn.Module, Rule]] = {}
    ranges: list[int] = []  # module positions of the owners, for their parameters' columns
    for i, entry in found:
        module = entry.ref.module
        if not entry.init.can_reset(module):
            where = entry.ref.module_path or "<root>"
            if entry.rule.label == RESET_LABEL:
                raise InitConfigError(
                    entry.rule.key,
                    f"parameter {entry.path!r} would be uninitialized: no rule covers it and its module "
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
        if id(module) not in owners:
            owners[id(module)] = (entry.ref.module_path, module, entry.rule)
            ranges.append(index.param_owner[i] if i is not None
                          else index.module_position[entry.ref.module_path])
    if not owners:
        return []
    bounds = index.param_bounds
    for m in ranges:
        for i in range(bounds[m], bounds[m + 1]):
            owner = owners.get(id(columns.ref(i).module))
            if owner is not None and columns.at(i).source in ("default", "custom"):  # the reset rewrites them
                columns.set(i, PlanEntry(columns.ref(i), "reset", rule=owner[2], init=owner[2].init,
                                         role=index.param_local[i]))
    for path, entry in list(entries.extra.items()):
        owner = owners.get(id(entry.ref.module))
        if owner is not None and entry.source in ("default", "custom"):
            entries.extra[path] = PlanEntry(entry.ref, "reset", rule=owner[2], init=owner[2].init,
                                            role=entry.ref.local_name)
    # Children first, as in an eager build: a parent's reset may set its children's
    # tensors (MultiheadAttention zeroes out_proj.bias), and must have the last word.
    return sorted(owners.values(), key=lambda item: -(item[0].count(".") + 1 if item[0] else 0))


def has_no_storage(param: torch.Tensor) -> bool:
    """A ``meta`` tensor (or DTensor with a meta local shard): built without values."""
    return local_tensor(param).is_meta
