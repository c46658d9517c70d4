"""Execute a plan: write each parameter once, by its winning rule.

Order: module resets (Default rules) first, then every drawn tensor in one
parallel batch of tiles, then checkpoint copies, then Embedding padding rows.
"""

from __future__ import annotations

import torch
from torch import nn

from .plan import Plan, PlanEntry
from .sampling import Task, derive_key, materialize, range_tasks, run_parallel

__all__ = ["effective_seed", "execute"]


def effective_seed(seed: int | None) -> int:
    """The plan's seed, or one drawn from torch's global generator (``torch.manual_seed``)."""
    if seed is not None:
        return int(seed)
    return int(torch.randint(0, 2**62, (1,)).item())


def _reset(module: nn.Module, key: int) -> None:
    devices = sorted({p.device.index or 0 for p in module.parameters(recurse=False)
                      if p.device.type == "cuda"})
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(key >> 1)
        reset = getattr(module, "reset_parameters", None) or module._reset_parameters
        reset()


def _tasks_for(entry: PlanEntry, key: int) -> list[Task]:
    param = entry.ref.param
    if is_sharded(param):
        from .sharding import sharded_tasks

        return sharded_tasks(param, entry.draw, key)
    if entry.draw.elementwise and param.is_contiguous():
        return range_tasks(param.data.view(-1), entry.draw, key, param.numel())
    full = materialize(entry.draw, param.shape, key, param.dtype, param.device)
    return [lambda: param.data.copy_(full)]


def is_sharded(param: torch.Tensor) -> bool:
    """Whether a parameter is a DTensor (FSDP2 / tensor parallel)."""
    return type(param.data).__name__ == "DTensor" or type(param).__name__ == "DTensor"


def execute(plan: Plan) -> int:
    """Write the plan into the model; returns the seed that was used."""
    seed = effective_seed(plan.seed)
    with torch.no_grad():
        for path, module, _ in plan.resets:
            _reset(module, derive_key(seed, path, ()))
        tasks: list[Task] = []
        for entry in plan.entries.values():
            if entry.source == "rule":
                key = derive_key(seed, entry.path, entry.ref.param.shape)
                tasks.extend(_tasks_for(entry, key))
        run_parallel(tasks)
        for entry in plan.entries.values():
            if entry.source == "pretrained":
                from .pretrained import copy_loaded

                copy_loaded(entry.ref.param, entry.loaded)
        if plan.pretrained:
            from .pretrained import copy_buffers

            copy_buffers(plan.pretrained)
        for entry in plan.entries.values():
            _zero_padding_row(entry)
    return seed


def _zero_padding_row(entry: PlanEntry) -> None:
    module = entry.ref.module
    padding_idx = getattr(module, "padding_idx", None)
    if (
        entry.source in ("rule", "reset")
        and entry.ref.local_name == "weight"
        and isinstance(module, nn.Embedding)
        and padding_idx is not None
    ):
        entry.ref.param[padding_idx].fill_(0)
