"""Execute a plan: write each parameter once, by its winning rule.

Order: first the steps that run user code, under the restore guard
(:mod:`hydra_init.engine.restore`): module resets (``Default`` rules, seeded per
module path), writes through parametrizations, custom draws. Then the engine's own
writes: every built-in draw in one parallel batch (tiles of large tensors, one
vectorized batch for all small ones, one grouped fill for constants), checkpoint
copies, and the padding rows of ``nn.Embedding``/``nn.EmbeddingBag`` weights
(``Plan.padding``). Running custom draws before built-in ones changes no value: each
tensor is written by one rule. DTensor parameters (FSDP2, tensor parallel) go
through :mod:`hydra_init.engine.sharding`: each rank writes only its shard.
"""

from __future__ import annotations

import logging
import operator
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ..errors import InitConfigError
from ..initializers import Default
from ..sampling import (
    BUILTIN_DRAWS,
    SMALL,
    Draw,
    FillDraw,
    Group,
    Job,
    Task,
    derive_key,
    derive_keys,
    group_jobs,
    group_tasks,
    materialize,
    run_parallel,
)
from .columns import Kind
from .parametrized import through_parametrizations, write_computed
from .plan import Plan, without_gc
from .restore import EngineStep, Restorer
from .sharding import agree_on_seed, is_dtensor, reset_sharded, sharded_work, zero_row

logger = logging.getLogger("hydra_init")

__all__ = ["effective_seed", "execute", "is_sharded", "reset_module"]

_DEVICE, _IS_META = operator.attrgetter("device"), operator.attrgetter("is_meta")
_DEVICE_DTYPE = operator.attrgetter("device", "dtype")
_PROGRESS_MIN_VALUES = 50_000_000  # below this an init takes well under the progress delay


def effective_seed(seed: int | None, *, sharded: bool = False) -> int:
    """The plan's seed, or one drawn from torch's global generator (``torch.manual_seed``).

    With ``sharded=True`` and torch.distributed initialized, every rank uses rank
    0's seed, so shards of one tensor come from one draw.
    """
    if seed is not None:
        return int(seed)
    drawn = int(torch.randint(0, 2**62, (1,)).item())
    return agree_on_seed(drawn) if sharded else drawn


def is_sharded(param: torch.Tensor) -> bool:
    """Whether a parameter is a DTensor (FSDP2 / tensor parallel)."""
    return is_dtensor(param)


def reset_module(module: nn.Module, key: int, init: Default | None = None) -> None:
    """``module.reset_parameters()`` under a generator seeded from ``key``.

    The global RNG state is restored afterwards, so a seeded init does not
    disturb the caller's random stream. Sharded modules reset full-size copies
    and keep their slices (:func:`hydra_init.engine.sharding.reset_sharded`).
    """
    if any(is_dtensor(p) for p in module.parameters(recurse=False)):
        reset_sharded(module, lambda: _seeded_reset(module, key, init))
    else:
        _seeded_reset(module, key, init)


def _seeded_reset(module: nn.Module, key: int, init: Default | None = None) -> None:
    params = module.parameters(recurse=False)
    devices = sorted({p.device.index or 0 for p in params if p.device.type == "cuda"})
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(key >> 1)
        with through_parametrizations(module):  # a parametrized weight: reset through right_inverse
            (init or Default()).reset(module)


@dataclass
class _Work:
    """What the engine draws: jobs (large tensors, shards, odd layouts), groups of small
    tensors and of constants, whole-tensor tasks, and how many values in all."""

    jobs: list[Job] = field(default_factory=list)
    small: list[Group] = field(default_factory=list)
    fills: list[Group] = field(default_factory=list)
    whole: list[Task] = field(default_factory=list)
    values: int = 0
    whole_on_every_rank: list[str] = field(default_factory=list)
    """Sharded parameters drawn whole on every rank (flat tiles of a shard that is not one range)."""

    def tasks(self) -> list[Task]:
        """The parallel tasks (the whole-tensor ones parallelize inside themselves)."""
        tiled, small, fills = group_jobs(self.jobs)
        return group_tasks(tiled, self.small + small, self.fills + fills)

    def split(self, test: Callable[[Draw], bool]) -> tuple[_Work, _Work]:
        """The work whose draws pass ``test``, and the rest."""
        parts = _Work(), _Work()
        for name in ("jobs", "small", "fills", "whole"):
            for item in getattr(self, name):
                getattr(parts[not test(item.draw)], name).append(item)
        return parts


def _work(plan: Plan, positions: list[int], params: list[torch.Tensor], seed: int) -> _Work:
    """The work of the parameters at ``positions`` (engine draws, :func:`_check_storage`).

    Parameters of one kind (one draw, shape and dtype) that are plain, contiguous, on one
    device and small go as one :class:`Group`, keyed in one pass; every other parameter
    gets its own job or task. Parameters are looked up again when user code ran in
    between (a ``reset_parameters()`` may assign new ones).
    """
    work = _Work()
    if not positions:
        return work
    columns = plan.columns
    paths = columns.index.param_paths
    refresh = bool(plan.resets or plan.computed)
    if refresh:
        params = columns.params(positions)
    kind_of = columns.kind[positions]
    order = np.argsort(kind_of, kind="stable")
    ends = [*(np.flatnonzero(np.diff(kind_of[order])) + 1).tolist(), len(order)]
    order = order.tolist()
    begin = 0
    for end in ends:
        members = order[begin:end]
        begin = end
        kind = columns.kinds[kind_of[members[0]]]
        where = [positions[j] for j in members]
        tensors = [params[j] for j in members]
        if refresh or not _as_group(work, kind, where, tensors, paths, seed):
            for i, param in zip(where, tensors, strict=True):
                _one(work, plan, paths[i], param, kind.draw, seed)
    return work


def _as_group(work: _Work, kind: Kind, where: list[int], tensors: list[torch.Tensor],
              paths: list[str], seed: int) -> bool:
    """Add parameters of one kind to ``work`` as one group, if they can be: plain small (or
    constant) tensors of the planned shape, contiguous (a constant takes any layout), on one
    device with one dtype. Returns whether they were added."""
    draw, shape = kind.draw, kind.shape
    if shape is None or set(map(type, tensors)) != {nn.Parameter}:
        return False
    numel = shape.numel()
    if draw.constant:
        if len(set(map(_DEVICE, tensors))) > 1:
            return False
        if numel:
            work.fills.append(Group(draw, tensors, [], None))
            work.values += numel * len(tensors)
        return True
    if not draw.elementwise or numel > SMALL or len(set(map(_DEVICE_DTYPE, tensors))) > 1:
        return False
    if tensors[0].shape != shape or not all(map(torch.Tensor.is_contiguous, tensors)):
        return False
    if numel:
        work.small.append(Group(draw, tensors, derive_keys(seed, [paths[i] for i in where], shape), shape))
        work.values += numel * len(tensors)
    return True


def _one(work: _Work, plan: Plan, path: str, param: torch.Tensor, draw: Draw, seed: int) -> None:
    """Add one parameter's job (or task) to ``work``."""
    # Parameters are written in place under no_grad (execute's), so no `.data` alias is needed.
    shape = param.shape
    numel = shape.numel()
    if not numel:
        return
    work.values += numel
    blocks = plan.blocks
    fill = type(draw) is FillDraw
    key = 0 if fill else derive_key(seed, path, shape)
    if type(param) is not nn.Parameter and is_dtensor(param):
        more_jobs, more_tasks = sharded_work(param, draw, key, blocks)
        if more_tasks and draw.elementwise and not blocks:
            work.whole_on_every_rank.append(path)
        work.jobs.extend(more_jobs)
        for task in more_tasks:
            task.draw = draw  # type: ignore[attr-defined] - custom draws run first (execute)
            work.whole.append(task)
    elif fill or (draw.elementwise and param.is_contiguous()):  # a fill takes any layout
        work.jobs.append(Job(param, draw, key, shape, None, blocks))
    else:
        work.whole.append(_copy_task(param, draw, key, blocks))


def _suggest_blocks(paths: list[str]) -> None:
    shown = ", ".join(paths[:3]) + (f" and {len(paths) - 3} more" if len(paths) > 3 else "")
    logger.warning(
        "%d sharded parameters (%s) are not one range of their tensor (Shard(1), a 2-D mesh): every "
        "rank drew them whole and kept its part. Set init.tiles=blocks to draw only each rank's "
        "own rows and columns (its values differ from the flat tiles'; docs/distributed.md).",
        len(paths), shown)


def _copy_task(param: torch.Tensor, draw: Draw, key: int, blocks: bool) -> Task:
    def task() -> None:
        param.copy_(materialize(draw, param.shape, key, param.dtype, param.device, blocks))

    task.draw = draw  # type: ignore[attr-defined] - custom draws run first (execute)
    return task


def _run_custom(work: _Work) -> _Work:
    """Run the work of custom draws; return the built-in rest."""
    custom, builtin = work.split(lambda draw: type(draw) not in BUILTIN_DRAWS)
    for task in custom.whole:
        task()
    run_parallel(custom.tasks())
    builtin.values = work.values
    return builtin


def _run_builtin(plan: Plan, work: _Work) -> None:
    """The engine's own writes: built-in draws, checkpoint copies, padding rows."""
    for task in work.whole:  # whole-tensor draws (QR, Dirac...) parallelize inside themselves
        task()
    tasks = work.tasks()
    if work.values >= _PROGRESS_MIN_VALUES:
        from ..tools.progress import Progress

        with Progress(total=work.values, desc="hydra_init") as progress:
            run_parallel(progress.wrap(tasks, work.values))
    else:
        run_parallel(tasks)
    if plan.pretrained:
        from ..pretrained.stage import copy_buffers, copy_loaded

        columns = plan.columns
        for i in columns.positions("pretrained"):
            copy_loaded(columns.param(i), columns.at(i).loaded)
        copy_buffers(plan.pretrained)
    for entry in plan.padding:
        if entry.source in ("rule", "reset"):
            zero_row(entry.ref.param, entry.ref.module.padding_idx)


def _check_storage(plan: Plan) -> tuple[bool, list[int], list[torch.Tensor]]:
    """Refuse, before writing anything, parameters that have no storage (``meta`` tensors).

    Returns whether any parameter is sharded (a DTensor), and the column positions the
    engine draws (source ``rule`` with a draw; ``None`` is a write through a
    parametrization) with their parameters, read once here.
    """
    columns = plan.columns
    positions = columns.where(lambda kind: kind.source not in ("default", "lazy"))
    params = columns.params(positions)
    sharded = False
    local = params
    if params and set(map(type, params)) != {nn.Parameter}:
        local = [p.to_local() if type(p) is not nn.Parameter and is_dtensor(p) else p for p in params]
        sharded = any(a is not b for a, b in zip(local, params, strict=True))
    if any(map(_IS_META, local)):
        first = next(j for j, t in enumerate(local) if t.is_meta)
        raise InitConfigError(
            "", f"parameter {columns.index.param_paths[positions[first]]!r} is on the meta device: it "
            "has no storage to initialize",
            hint="materialize the model first (model.to_empty(device=...)), or build and initialize "
            "it in one step with hydra_init.meta.build_and_init",
        )
    drawn = np.array([k.draw is not None and k.source == "rule" for k in columns.kinds], dtype=bool)
    keep = np.flatnonzero(drawn[columns.kind[positions]]).tolist()
    return sharded, [positions[j] for j in keep], [params[j] for j in keep]


@without_gc
def execute(plan: Plan) -> int:
    """Write the plan into the model; returns the seed that was used."""
    sharded, positions, params = _check_storage(plan)
    seed = effective_seed(plan.seed, sharded=sharded)
    with torch.no_grad():
        # Steps that run user code first (reset_parameters(), right_inverse, custom draws), with
        # what they write copied: an error there puts the model back (engine/restore.py).
        with Restorer(plan, user_code_only=True):
            for path, module, rule in plan.resets:
                reset_module(module, derive_key(seed, path, ()), rule.init)
            if plan.computed:
                write_computed(plan.computed, seed, plan.blocks)
            work = _work(plan, positions, params, seed)
            if work.whole_on_every_rank:
                _suggest_blocks(work.whole_on_every_rank)
            if plan.custom_draws:
                work = _run_custom(work)
        with EngineStep(plan):  # then the engine's own writes
            _run_builtin(plan, work)
    return seed
