"""Runs sharded inits on a gloo process group on 127.0.0.1 (used by test_sharding.py).

``python tests/_dist_worker.py OUT_DIR 1 2 3 4 2x2`` initializes, for each world size,
(a) the FSDP2 example with both recipes, (b) a model whose parameters are DTensors
with Shard(0) (uneven), Shard(1) and Replicate placements, (c) the same without a
seed, each rank having seeded torch differently, (d) with ``tiles: blocks``, large
weights sharded by columns (tensor parallel) and by rows. ``2x2`` is a 2-D mesh
(FSDP x TP: ``[Shard(0), Shard(1)]``) and runs (d) only, as does world size 4.
Rank 0 saves the gathered full tensors to ``OUT_DIR/ws{N}.pt``. Ranks are forked from
this fresh process (cheap: torch is imported once) and nothing ran before the fork.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import math
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.tensor import Replicate, Shard, distribute_tensor

import hydra_init

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
import custom_draws  # noqa: E402

custom_draws.register()


def load_example():
    spec = importlib.util.spec_from_file_location("fsdp2_init", ROOT / "examples" / "fsdp2_init.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Placed(nn.Module):
    """Parameters for every code path: tiled and counter-based draws, whole-tensor draws, resets."""

    def __init__(self) -> None:
        super().__init__()
        self.big = nn.Linear(300, 500)  # 150k values: more than one tile, cut mid-tile by shards
        self.small = nn.Linear(40, 50)  # 2k values: the counter-based path
        self.cols = nn.Linear(7, 9)  # Shard(1): not one contiguous range
        self.rep = nn.Conv2d(3, 4, 3)  # Replicate
        self.emb = nn.Embedding(7, 5, padding_idx=5)  # the padding row lives on one rank
        self.orth = nn.Linear(6, 6, bias=False)  # Orthogonal: whole-tensor QR
        self.norm = nn.LayerNorm(10)  # Default: reset_parameters on full-size copies
        self.tiny = nn.Linear(2, 1)  # one row: most ranks hold nothing
        self.wide = nn.Linear(700, 600)  # 420k values: 2 x 3 block tiles, cut mid-tile by shards


PLACEMENTS = {
    "big.weight": Shard(0), "big.bias": Shard(0), "small.weight": Shard(0), "small.bias": Shard(0),
    "cols.weight": Shard(1), "cols.bias": Replicate(), "rep.weight": Replicate(), "rep.bias": Replicate(),
    "emb.weight": Shard(0), "orth.weight": Shard(0), "norm.weight": Shard(0), "norm.bias": Shard(0),
    "tiny.weight": Shard(0), "tiny.bias": Shard(0), "wide.weight": Shard(1), "wide.bias": Shard(0),
}

RULES = {
    "big": {"type": "TruncNormal", "name": "big", "std": 0.02, "a": -2, "b": 2, "bound_unit": "std"},
    "small": {"type": "LecunNormal", "name": "small", "bias": 0.1},
    "cols": {"type": "Kaiming", "name": "cols", "mode": "fan_in", "distribution": "uniform"},
    "rep": {"type": "Xavier", "name": "rep"},
    "emb": {"type": "Normal", "name": "emb", "std": 1.0},
    "orth": {"type": "Orthogonal", "name": "orth", "gain": 2.0},
    "norm": {"type": "Default", "name": "norm"},
    "tiny": {"type": "Uniform", "name": "tiny", "a": -1, "b": 1},
    "wide": {"type": "Normal", "name": "wide", "std": 0.02, "bias": 0.5},
}
CFG = {"seed": 7, "rules": RULES}

# Block tiles: every elementwise draw on a row or column block draws only its tiles.
BLOCKS_CFG = {"seed": 11, "tiles": "blocks", "rules": RULES}
BLOCKS_PLACEMENTS = {**PLACEMENTS, "big.weight": Shard(1), "wide.weight": Shard(1), "small.weight": Shard(1),
                     "emb.weight": Shard(1)}
MESH_PLACEMENTS = {
    path: [Shard(0), Shard(1) if path.endswith("weight") and path != "norm.weight" else Replicate()]
    for path in PLACEMENTS}

# Custom initializers bringing their own draws (tests/custom_draws.py), on shards.
CUSTOM_PLACEMENTS = {"big.weight": Shard(0), "cols.weight": Shard(1), "orth.weight": Shard(0)}
CUSTOM_CFG = {"seed": 3, "rules": {
    "lap": {"type": "TestLaplace", "name": ["big", "cols"], "scale": 0.5},
    "perm": {"type": "TestSignedPermutation", "name": "orth", "gain": 2.0},
}}


class MLP(nn.Module):
    """A transformer MLP: the pair torch's tensor parallel splits by columns, then rows."""

    def __init__(self) -> None:
        super().__init__()
        self.up = nn.Linear(300, 1100)  # ColwiseParallel: weight and bias Shard(0)
        self.down = nn.Linear(1100, 300)  # RowwiseParallel: weight Shard(1), bias Replicate


TP_CFG = {"seed": 5, "tiles": "blocks", "rules": {
    "mlp": {"type": "TruncNormal", "layer": "Linear", "std": 0.02, "a": -2, "b": 2, "bound_unit": "std",
            "bias": 0.01}}}


def tensor_parallel_mlp(mesh, materialize: bool = True) -> MLP:
    """An MLP built on the meta device and split by torch's own ``parallelize_module``."""
    from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel, parallelize_module

    with torch.device("meta"):
        model = MLP()
    parallelize_module(model, mesh, {"up": ColwiseParallel(), "down": RowwiseParallel()})
    return model.to_empty(device="cpu") if materialize else model


def drawn_whole(model: nn.Module) -> list[str]:
    """Parameters this rank would draw whole with block tiles (instead of only its tiles)."""
    from hydra_init.engine.sharding import sharded_work
    from hydra_init.sampling import NormalDraw

    return [name for name, p in model.named_parameters()
            if sharded_work(p, NormalDraw(0.0, 1.0), 1, blocks=True)[1]]


def placed_model(mesh_shape: tuple[int, ...], placements: dict | None = None) -> Placed:
    """A Placed model whose parameters are DTensors (values left uninitialized)."""
    mesh = init_device_mesh("cpu", mesh_shape)
    model = Placed()
    for path, placement in (placements or PLACEMENTS).items():
        owner, name = path.rsplit(".", 1)
        module = model.get_submodule(owner)
        full = torch.full(getattr(module, name).shape, float("nan"))
        local = distribute_tensor(full, mesh, placement if isinstance(placement, list) else [placement],
                                  src_data_rank=None)
        setattr(module, name, nn.Parameter(local))
    return model


@contextlib.contextmanager
def _warnings():
    """The hydra_init logger's warnings while the block runs."""
    records: list[str] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: records.append(record.getMessage())
    logger = logging.getLogger("hydra_init")
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)


def rank_main(rank: int, layout: str, port: int, out_dir: str) -> None:
    os.environ["GLOO_SOCKET_IFNAME"] = "lo"
    torch.set_num_threads(1)  # several ranks share two cores
    mesh_shape = tuple(int(n) for n in layout.split("x"))
    world_size = math.prod(mesh_shape)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size)
    try:
        example = load_example()
        results: dict[str, object] = {}
        model = placed_model(mesh_shape, MESH_PLACEMENTS if len(mesh_shape) == 2 else BLOCKS_PLACEMENTS)
        hydra_init.apply(model, BLOCKS_CFG, log=False)
        results["blocks"] = example.full_state(model)
        if len(mesh_shape) == 1:
            model = tensor_parallel_mlp(init_device_mesh("cpu", mesh_shape))
        else:  # FSDP2 over tensor parallel: the MLP's up weight gets _StridedShard(0) + Shard(0)
            from torch.distributed.fsdp import fully_shard

            mesh = init_device_mesh("cpu", mesh_shape, mesh_dim_names=("dp", "tp"))
            model = tensor_parallel_mlp(mesh["tp"], materialize=False)
            fully_shard(model, mesh=mesh["dp"])
            model.to_empty(device="cpu")
        hydra_init.apply(model, TP_CFG, log=False)
        results["tp"] = example.full_state(model)
        results["tp_drawn_whole"] = drawn_whole(model)
        results["tp_placements"] = {n: str(p.placements) for n, p in model.named_parameters()}
        if layout in BLOCKS_ONLY:
            if rank == 0:
                torch.save(results, Path(out_dir) / f"ws{layout}.pt")
            return
        for recipe in ("meta", "plain"):
            model, _ = example.init_sharded(recipe, world_size)
            results[f"example_{recipe}"] = example.full_state(model)
        model = placed_model(mesh_shape)
        with _warnings() as hints:
            hydra_init.apply(model, CFG, log=False)
        results["hints"] = hints
        results["placed"] = example.full_state(model)
        model = placed_model(mesh_shape, CUSTOM_PLACEMENTS)
        hydra_init.apply(model, CUSTOM_CFG, log=False)
        results["custom"] = example.full_state(model)
        torch.manual_seed(100 + rank)  # ranks disagree; the engine must agree on one seed
        model = placed_model(mesh_shape)
        report = hydra_init.apply(model, {"rules": RULES}, log=False)
        seeds = [None] * world_size
        dist.all_gather_object(seeds, report.seed)
        results["unseeded"] = example.full_state(model)
        results["unseeded_seeds"] = seeds
        if rank == 0:
            torch.save(results, Path(out_dir) / f"ws{layout}.pt")
    finally:
        dist.destroy_process_group()


BLOCKS_ONLY = ("4", "2x2")  # the block-tile model only: the rest is covered by world sizes 1-3


def main(out_dir: str, layouts: list[str]) -> None:
    for layout in layouts:
        port = load_example().free_port()
        ranks = math.prod(int(n) for n in layout.split("x"))
        mp.start_processes(rank_main, args=(layout, port, out_dir), nprocs=ranks, start_method="fork")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
