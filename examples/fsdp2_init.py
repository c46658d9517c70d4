"""Initialize an FSDP2-sharded model with hydra_init: meta build -> fully_shard -> materialize -> init.

Each rank allocates and draws only its own shards, and the assembled weights are
bit-identical to a single-process init with the same seed, whatever the world
size. Runs on CPU with the gloo backend (on GPUs use ``nccl`` and ``device="cuda"``)::

    python examples/fsdp2_init.py --world-size 2
    python examples/fsdp2_init.py --world-size 3 --recipe plain   # to_empty + apply, by hand

Two recipes:

* ``meta`` (recommended): ``hydra_init.meta.build_meta`` builds with weights on
  the meta device but buffers (the RoPE cache here) computed as in an eager build;
  ``hydra_init.meta.init_meta`` then materializes (``to_empty``, keeping buffers)
  and initializes every parameter once - parameters no rule covers get their
  module's ``reset_parameters()``, seeded.
* ``plain``: ``with torch.device("meta")``, ``fully_shard``, ``model.to_empty()``,
  ``hydra_init.apply``. ``to_empty`` leaves *every* tensor uninitialized, buffers
  included, so the config must cover every parameter (checked below) and buffers
  must be recomputed by hand (``init_buffers`` here).
"""

from __future__ import annotations

import argparse
import os
import socket
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

import hydra_init
from hydra_init.meta import build_meta, init_meta

INIT = {
    "seed": 1234,
    "rules": {
        "linear": {"type": "TruncNormal", "layer": "Linear", "std": 0.02, "a": -2, "b": 2,
                   "bound_unit": "std"},
        "embed": {"type": "Normal", "layer": "Embedding", "std": 0.02},
        "out": {"type": "Zeros", "name": "blocks.*.out", "priority": 1},
    },
}
"""The init config: GPT-style; ``out`` zero-inits each block's output projection."""


class RMSNorm(nn.Module):
    """A norm with a parameter created with values and no ``reset_parameters()``."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * self.weight


class Block(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.hidden = nn.Linear(dim, 4 * dim)
        self.out = nn.Linear(4 * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.out(torch.relu(self.hidden(self.norm(x))))


class TinyLM(nn.Module):
    """Embedding (with a padding row), a RoPE-style buffer, blocks, an RMSNorm and a head."""

    def __init__(self, vocab: int = 50, dim: int = 16, depth: int = 2, length: int = 8) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim, padding_idx=0)
        self.register_buffer("freqs", self.rope_table(dim, length), persistent=False)
        self.blocks = nn.ModuleList(Block(dim) for _ in range(depth))
        self.norm = RMSNorm(dim)
        self.head = nn.Linear(dim, vocab, bias=False)

    @staticmethod
    def rope_table(dim: int, length: int) -> torch.Tensor:
        inv_freq = 1.0 / (10000 ** (torch.arange(0, dim, 2).float() / dim))
        return torch.outer(torch.arange(length).float(), inv_freq)

    def init_buffers(self) -> None:
        """Recompute the buffers (what the ``plain`` recipe has to do after ``to_empty``)."""
        self.freqs.copy_(self.rope_table(self.embed.embedding_dim, self.freqs.shape[0]))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.embed(tokens) + self.freqs[: tokens.shape[-1]].repeat(1, 2)
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x))


def shard(model: TinyLM, world_size: int) -> None:
    """FSDP2: one group per block, then the root."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh("cpu", (world_size,))
    for block in model.blocks:
        fully_shard(block, mesh=mesh)
    fully_shard(model, mesh=mesh)


def init_sharded(recipe: str, world_size: int) -> tuple[TinyLM, hydra_init.InitReport]:
    """Build, shard and initialize the model on this rank (the process group is up)."""
    if recipe == "meta":
        model = build_meta(TinyLM)
        shard(model, world_size)
        report = init_meta(model, INIT, device="cpu", log=False)
    else:
        with torch.device("meta"):
            model = TinyLM()
        shard(model, world_size)
        model.to_empty(device="cpu")
        norms = {"scales": {"type": "Ones", "layer": ["LayerNorm", "RMSNorm"], "params": "weight"},
                 "shifts": {"type": "Zeros", "layer": "LayerNorm", "params": "bias"}}
        cfg = {**INIT, "rules": {**INIT["rules"], **norms}}
        report = hydra_init.apply(model, cfg, log=False)
        left = report.by_source("default")
        if left:  # to_empty left these uninitialized: refuse to go on
            raise RuntimeError(f"no rule covers {left}: add rules, or use the meta recipe")
        with torch.no_grad():
            model.init_buffers()
    return model, report


def full_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every parameter and buffer as a whole tensor (a collective: all ranks call it)."""
    state = {}
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        full = tensor.full_tensor() if hasattr(tensor, "full_tensor") else tensor
        state[name] = full.detach().clone()
    return state


def run_rank(rank: int, world_size: int, port: int, recipe: str, out: str | None) -> None:
    """One rank: join the group on 127.0.0.1, initialize, and (rank 0) report or save."""
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size
    )
    try:
        model, report = init_sharded(recipe, world_size)
        state = full_state(model)
        if rank == 0:
            if out:
                torch.save(state, out)
            else:
                print(report)
                single, _ = hydra_init.meta.build_and_init(TinyLM, INIT, device="cpu", log=False)
                same = all(torch.equal(state[k], v) for k, v in full_state(single).items())
                print(f"world size {world_size}: identical to single-process init: {same}")
    finally:
        dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world-size", type=int, default=2)
    parser.add_argument("--recipe", choices=["meta", "plain"], default="meta")
    parser.add_argument("--out", type=Path, help="save rank 0's gathered state dict here")
    args = parser.parse_args()
    import torch.multiprocessing as mp

    out = str(args.out) if args.out else None
    mp.spawn(run_rank, args=(args.world_size, free_port(), args.recipe, out), nprocs=args.world_size)


if __name__ == "__main__":
    main()
