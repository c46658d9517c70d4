"""Runs sharded inits on a gloo process group on 127.0.0.1 (used by test_sharding.py).

``python tests/_dist_worker.py OUT_DIR 1 2 3`` initializes, for each world size,
(a) the FSDP2 example with both recipes, (b) a model whose parameters are DTensors
with Shard(0) (uneven), Shard(1) and Replicate placements, (c) the same without a
seed, each rank having seeded torch differently. Rank 0 saves the gathered full
tensors to ``OUT_DIR/ws{N}.pt``. Ranks are forked from this fresh process (cheap:
torch is imported once) and nothing ran before the fork.
"""

from __future__ import annotations

import importlib.util
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


PLACEMENTS = {
    "big.weight": Shard(0), "big.bias": Shard(0), "small.weight": Shard(0), "small.bias": Shard(0),
    "cols.weight": Shard(1), "cols.bias": Replicate(), "rep.weight": Replicate(), "rep.bias": Replicate(),
    "emb.weight": Shard(0), "orth.weight": Shard(0), "norm.weight": Shard(0), "norm.bias": Shard(0),
    "tiny.weight": Shard(0), "tiny.bias": Shard(0),
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
}
CFG = {"seed": 7, "rules": RULES}

# Custom initializers bringing their own draws (tests/custom_draws.py), on shards.
CUSTOM_PLACEMENTS = {"big.weight": Shard(0), "cols.weight": Shard(1), "orth.weight": Shard(0)}
CUSTOM_CFG = {"seed": 3, "rules": {
    "lap": {"type": "TestLaplace", "name": ["big", "cols"], "scale": 0.5},
    "perm": {"type": "TestSignedPermutation", "name": "orth", "gain": 2.0},
}}


def placed_model(world_size: int, placements: dict | None = None) -> Placed:
    """A Placed model whose parameters are DTensors (values left uninitialized)."""
    mesh = init_device_mesh("cpu", (world_size,))
    model = Placed()
    for path, placement in (placements or PLACEMENTS).items():
        owner, name = path.rsplit(".", 1)
        module = model.get_submodule(owner)
        full = torch.full(getattr(module, name).shape, float("nan"))
        local = distribute_tensor(full, mesh, [placement], src_data_rank=None)
        setattr(module, name, nn.Parameter(local))
    return model


def rank_main(rank: int, world_size: int, port: int, out_dir: str) -> None:
    os.environ["GLOO_SOCKET_IFNAME"] = "lo"
    torch.set_num_threads(1)  # several ranks share two cores
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size)
    try:
        example = load_example()
        results: dict[str, object] = {}
        for recipe in ("meta", "plain"):
            model, _ = example.init_sharded(recipe, world_size)
            results[f"example_{recipe}"] = example.full_state(model)
        model = placed_model(world_size)
        hydra_init.apply(model, CFG, log=False)
        results["placed"] = example.full_state(model)
        model = placed_model(world_size, CUSTOM_PLACEMENTS)
        hydra_init.apply(model, CUSTOM_CFG, log=False)
        results["custom"] = example.full_state(model)
        torch.manual_seed(100 + rank)  # ranks disagree; the engine must agree on one seed
        model = placed_model(world_size)
        report = hydra_init.apply(model, {"rules": RULES}, log=False)
        seeds = [None] * world_size
        dist.all_gather_object(seeds, report.seed)
        results["unseeded"] = example.full_state(model)
        results["unseeded_seeds"] = seeds
        if rank == 0:
            torch.save(results, Path(out_dir) / f"ws{world_size}.pt")
    finally:
        dist.destroy_process_group()


def main(out_dir: str, sizes: list[int]) -> None:
    for world_size in sizes:
        port = load_example().free_port()
        mp.start_processes(rank_main, args=(world_size, port, out_dir), nprocs=world_size,
                           start_method="fork")


if __name__ == "__main__":
    main(sys.argv[1], [int(n) for n in sys.argv[2:]])
