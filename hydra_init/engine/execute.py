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

import torch
from torch import nn

from ..errors import InitConfigError
from ..initializers import Default
from ..sampling import (
    BUILTIN_DRAWS,
    Draw,
    FillDraw,
    Job,
    Task,
    derive_key,
    job_tasks,
    materialize,
    run_parallel,
)
from .parametrized import through_parametrizations, write_computed
from .plan import Plan, without_gc
from .restore import EngineStep, Restorer
from .sharding import agree_on_seed, is_dtensor, reset_sharded, sharded_work, zero_row

logger = logging.getLogger("hydra_init")

__all__ = ["effective_seed", "execute", "is_sharded", "reset_module"]

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


def _work(plan: Plan, writes: list[tuple[int, torch.Tensor, Draw]],
          seed: int) -> tuple[list[Job], list[Task], int]:
    """Jobs for the parallel batch, tasks for whole-tensor draws, and the values written.

    ``writes`` are the column positions with an engine draw, their parameters and draws
    (:func:`_check_storage`); parameters are looked up again when user code ran in between
    (a ``reset_parameters()`` may assign new ones).
    """
    jobs: list[Job] = []
    tasks: list[Task] = []
    values = 0
    Parameter = nn.Parameter
    blocks = plan.blocks
    columns = plan.columns
    paths = columns.index.param_paths
    whole_on_every_rank: list[str] = []
    add_job = jobs.append
    refresh = bool(plan.resets or plan.computed)
    for i, param, draw in writes:
        if refresh:
            param = columns.param(i)
        # Parameters are written in place under no_grad (execute's), so no `.data` alias is needed.
        shape = param.shape
        numel = shape.numel()
        if not numel:
            continue
        values += numel
        fill = type(draw) is FillDraw
        key = 0 if fill else derive_key(seed, paths[i], shape)
        if type(param) is not Parameter and is_dtensor(param):
            more_jobs, more_tasks = sharded_work(param, draw, key, blocks)
            if more_tasks and draw.elementwise and not blocks:
                whole_on_every_rank.append(paths[i])
            jobs.extend(more_jobs)
            for task in more_tasks:
                task.draw = draw  # type: ignore[attr-defined] - custom draws run first (execute)
                tasks.append(task)
        elif fill or (draw.elementwise and param.is_contiguous()):  # a fill takes any layout
            add_job(Job(param, draw, key, shape, None, blocks))
        else:
            tasks.append(_copy_task(param, draw, key, blocks))
    if whole_on_every_rank:
        _suggest_blocks(whole_on_every_rank)
    return jobs, tasks, values


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


def _run_custom(jobs: list[Job], whole: list[Task]) -> tuple[list[Job], list[Task]]:
    """Run the jobs and whole-tensor tasks of custom draws; return the built-in rest."""
    custom_jobs = [j for j in jobs if type(j.draw) not in BUILTIN_DRAWS]
    custom_whole = [t for t in whole if type(t.draw) not in BUILTIN_DRAWS]
    for task in custom_whole:
        task()
    run_parallel(job_tasks(custom_jobs))
    return ([j for j in jobs if type(j.draw) in BUILTIN_DRAWS],
            [t for t in whole if type(t.draw) in BUILTIN_DRAWS])


def _run_builtin(plan: Plan, jobs: list[Job], whole: list[Task], values: int) -> None:
    """The engine's own writes: built-in draws, checkpoint copies, padding rows."""
    for task in whole:  # whole-tensor draws (QR, Dirac...) parallelize inside themselves
        task()
    tasks = job_tasks(jobs)
    if values >= _PROGRESS_MIN_VALUES:
        from ..tools.progress import Progress

        with Progress(total=values, desc="hydra_init") as progress:
            run_parallel(progress.wrap(tasks, values))
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


def _check_storage(plan: Plan) -> tuple[bool, list[tuple[int, torch.Tensor, Draw]]]:
    """Refuse, before writing anything, parameters that have no storage (``meta`` tensors).

    Returns whether any parameter is sharded (a DTensor), and the column positions the
    engine draws (source ``rule`` with a draw; ``None`` is a write through a
    parametrization) with their parameters, read once here, and their draws.
    """
    sharded = False
    writes = []
    Parameter = nn.Parameter
    columns = plan.columns
    kinds, kind_of = columns.kinds, columns.kind.tolist()
    positions = columns.where(lambda kind: kind.source not in ("default", "lazy"))
    for i, param in zip(positions, columns.params(positions), strict=True):
        local = param
        if type(param) is not Parameter and is_dtensor(param):
            sharded = True
            local = param.to_local()
        if local.is_meta:
            raise InitConfigError(
                "", f"parameter {columns.index.param_paths[i]!r} is on the meta device: it has no storage "
                "to initialize",
                hint="materialize the model first (model.to_empty(device=...)), or build and initialize "
                "it in one step with hydra_init.meta.build_and_init",
            )
        kind = kinds[kind_of[i]]
        if kind.draw is not None and kind.source == "rule":
            writes.append((i, param, kind.draw))
    return sharded, writes


@without_gc
def execute(plan: Plan) -> int:
    """Write the plan into the model; returns the seed that was used."""
    sharded, writes = _check_storage(plan)
    seed = effective_seed(plan.seed, sharded=sharded)
    with torch.no_grad():
        # Steps that run user code first (reset_parameters(), right_inverse, custom draws), with
        # what they write copied: an error there puts the model back (engine/restore.py).
        with Restorer(plan, user_code_only=True):
            for path, module, rule in plan.resets:
                reset_module(module, derive_key(seed, path, ()), rule.init)
            if plan.computed:
                write_computed(plan.computed, seed, plan.blocks)
            jobs, whole, values = _work(plan, writes, seed)
            if plan.custom_draws:
                jobs, whole = _run_custom(jobs, whole)
        with EngineStep(plan):  # then the engine's own writes
            _run_builtin(plan, jobs, whole, values)
    return seed
