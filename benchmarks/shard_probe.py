"""Per-rank cost of a sharded init against world size, on gloo (CPU), in fresh processes.

``python benchmarks/shard_probe.py full|quick`` prints one JSON line per (placement,
world size): the largest per-rank CPU time of ``hydra_init.apply`` (seconds of this
rank's process; ranks share the machine's cores, so wall time would measure the
oversubscription, not the work) and the shard's share of the values.

Placements: ``Shard(0)`` (FSDP2's rows), ``Shard(1)`` (tensor parallel's columns)
and a 2-D mesh ``[Shard(0), Shard(1)]`` (FSDP x TP) at world size 4, each with flat
tiles (the default) and block tiles (``init.tiles: blocks``).
"""

from __future__ import annotations

import json
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.tensor import Shard, distribute_tensor

import hydra_init

CFG = {"seed": 0, "rules": {"linear": {"type": "TruncNormal", "layer": "Linear", "std": 0.02,
                                        "a": -2, "b": 2, "bound_unit": "std", "bias": 0.0}}}
LAYOUTS = {"Shard(0)": [(1, 1), (2, 1), (4, 1)], "Shard(1)": [(1, 1), (2, 1), (4, 1)], "2-D (2x2)": [(2, 2)]}
TILES = ("flat", "blocks")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _model(width: int, layers: int, mesh, placements) -> nn.Module:
    model = nn.Sequential(*(nn.Linear(width, width, bias=False) for _ in range(layers)))
    for layer in model:
        layer.weight = nn.Parameter(distribute_tensor(torch.empty(width, width), mesh, placements,
                                                      src_data_rank=None))
    return model


def _rank(rank: int, world: int, port: int, layout: str, tiles: str, mesh_shape: tuple, width: int,
          layers: int, out: str) -> None:
    os.environ["GLOO_SOCKET_IFNAME"] = "lo"
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        if layout == "2-D (2x2)":
            mesh, placements = init_device_mesh("cpu", mesh_shape), [Shard(0), Shard(1)]
        else:
            mesh, placements = init_device_mesh("cpu", (world,)), [Shard(int(layout[6]))]
        best = float("inf")
        for _ in range(3):
            model = _model(width, layers, mesh, placements)
            dist.barrier()
            start = time.process_time()
            hydra_init.apply(model, {**CFG, "tiles": tiles}, log=False)
            best = min(best, time.process_time() - start)
        local = sum(p.to_local().numel() for p in model.parameters())
        times = [None] * world
        dist.all_gather_object(times, (best, local))
        if rank == 0:
            Path(out).write_text(json.dumps(times))
    finally:
        dist.destroy_process_group()


def main(size: str) -> None:
    width, layers = (2048, 4) if size == "full" else (256, 2)
    total = width * width * layers
    layouts = LAYOUTS if size == "full" else {"Shard(1)": [(2, 1)]}  # quick: one run per layout, a smoke test
    for tiles in TILES:
        for layout, meshes in layouts.items():
            for mesh_shape in meshes:
                world = mesh_shape[0] * mesh_shape[1]
                with tempfile.TemporaryDirectory() as tmp:
                    out = str(Path(tmp) / "times.json")
                    args = (world, _free_port(), layout, tiles, mesh_shape, width, layers, out)
                    mp.start_processes(_rank, args=args, nprocs=world, start_method="fork")
                    times = json.loads(Path(out).read_text())
                seconds, share = max(t for t, _ in times), max(n for _, n in times) / total
                print(json.dumps({"layout": layout, "tiles": tiles, "world": world, "seconds": seconds,
                                  "share": share, "values": total}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
