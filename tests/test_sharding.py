"""Sharded init on torch.distributed: every world size gives the single-process tensors, bit for bit.

One subprocess (tests/_dist_worker.py) runs gloo process groups on 127.0.0.1 with
world sizes 1, 2 and 3 and saves rank 0's gathered full tensors; the references
are computed here, in this process, without any sharding.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import hydra_init
from hydra_init import sampling
from hydra_init.engine.sharding import _flat_range, grid_region
from hydra_init.meta import build_and_init

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import _dist_worker as worker  # noqa: E402

WORLD_SIZES = (1, 2, 3)
BLOCK_LAYOUTS = (*WORLD_SIZES, 4, "2x2")  # "2x2": a 2-D mesh, [Shard(0), Shard(1)]


@pytest.fixture(scope="module")
def gathered(tmp_path_factory) -> dict[int | str, dict]:
    out = tmp_path_factory.mktemp("dist")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, str(HERE / "_dist_worker.py"), str(out), *map(str, BLOCK_LAYOUTS)],
                   check=True, timeout=600, env=env)
    return {layout: torch.load(out / f"ws{layout}.pt") for layout in BLOCK_LAYOUTS}


def _state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return worker.load_example().full_state(model)


def _assert_identical(expected: dict[str, torch.Tensor], got: dict[str, torch.Tensor]) -> None:
    assert expected.keys() == got.keys()
    for name, tensor in expected.items():
        assert torch.equal(tensor, got[name]), name
        assert not torch.isnan(got[name]).any(), name


@pytest.mark.parametrize("world_size", WORLD_SIZES)
@pytest.mark.parametrize("recipe", ["meta", "plain"])
def test_fsdp2_example_matches_single_process(gathered, world_size, recipe):
    example = worker.load_example()
    single, _ = build_and_init(example.TinyLM, example.INIT, device="cpu", log=False)
    _assert_identical(_state(single), gathered[world_size][f"example_{recipe}"])
    assert torch.count_nonzero(single.embed.weight[0]) == 0  # the padding row


@pytest.mark.parametrize("world_size", WORLD_SIZES)
def test_shard_replicate_and_uneven_placements_match_single_process(gathered, world_size):
    single = worker.Placed()
    hydra_init.apply(single, worker.CFG, log=False)
    _assert_identical(_state(single), gathered[world_size]["placed"])


@pytest.mark.parametrize("world_size", WORLD_SIZES)
def test_custom_draws_on_shards_match_single_process(gathered, world_size):
    """A user's Draw subclasses (elementwise on Shard(0)/Shard(1), whole-tensor on Shard(0))."""
    single = worker.Placed()
    hydra_init.apply(single, worker.CUSTOM_CFG, log=False)
    got = gathered[world_size]["custom"]
    for path in worker.CUSTOM_PLACEMENTS:
        assert torch.equal(single.get_parameter(path), got[path]), path


@pytest.mark.parametrize("layout", (*WORLD_SIZES, 4, "2x2"), ids=str)
def test_torch_tensor_parallel_with_block_tiles_matches_single_process(gathered, layout):
    """``parallelize_module`` (ColwiseParallel, RowwiseParallel) on a meta-built MLP, and on the
    2x2 mesh FSDP2's ``fully_shard`` over it, then apply: every rank draws only its own tiles
    (none of its parameters is drawn whole) and the gathered tensors are the single-process ones."""
    single = worker.MLP()
    hydra_init.apply(single, worker.TP_CFG, log=False)
    _assert_identical(_state(single), gathered[layout]["tp"])
    assert gathered[layout]["tp_drawn_whole"] == []
    if layout == "2x2":  # FSDP2 over a TP row shard: a strided shard that is one block of rows
        assert "_StridedShard" in gathered[layout]["tp_placements"]["up.weight"]


@pytest.mark.parametrize("world_size", WORLD_SIZES)
def test_column_shards_of_flat_tiles_suggest_block_tiles(gathered, world_size):
    """Flat tiles: a Shard(1) weight is drawn whole on every rank, and the log says how to avoid it
    (on one rank the shard is the whole tensor: nothing to say)."""
    hints = gathered[world_size]["hints"]
    if world_size == 1:
        assert hints == []
        return
    (hint,) = hints
    assert "cols.weight" in hint and "wide.weight" in hint and "init.tiles=blocks" in hint


@pytest.mark.parametrize(
    ("offset", "local", "world"),
    [((0, 512), (2048, 512), 4),  # Shard(1), rank 1 of 4 (tensor parallel)
     ((1024, 0), (512, 2048), 4),  # Shard(0), rank 2 of 4 (FSDP)
     ((1024, 1024), (1024, 1024), 4),  # a 2x2 mesh, [Shard(0), Shard(1)]
     ((0, 1024), (2048, 1024), 2)],
)
def test_with_block_tiles_a_shard_draws_only_its_own_tiles(offset, local, world):
    """Per-rank work is the shard's share: its region needs 1/world of the tensor's tiles."""
    shape, draw = (2048, 2048), sampling.NormalDraw(0.0, 1.0)
    region = grid_region(shape, offset, local, torch.device("cpu"), blocks=True)
    mine = sampling.region_tasks(torch.empty(local), draw, 1, shape, region, blocks=True)
    everything = sampling.region_tasks(torch.empty(shape), draw, 1, shape, blocks=True)
    assert len(mine) * world == len(everything)


def test_with_flat_tiles_only_row_ranges_are_regions():
    cpu = torch.device("cpu")
    rows = grid_region((2048, 2048), (1024, 0), (512, 2048), cpu, blocks=False)
    assert rows == (1024 * 2048, 0, 512 * 2048, 1)
    assert grid_region((2048, 2048), (0, 512), (2048, 512), cpu, blocks=False) is None


@pytest.mark.parametrize("layout", BLOCK_LAYOUTS, ids=str)
def test_block_tiles_on_row_column_and_2d_shards_match_single_process(gathered, layout):
    """``tiles: blocks``: Shard(1) and a 2x2 mesh (FSDP x TP) give the single-process tensors."""
    single = worker.Placed()
    hydra_init.apply(single, worker.BLOCKS_CFG, log=False)
    _assert_identical(_state(single), gathered[layout]["blocks"])


@pytest.mark.parametrize("world_size", WORLD_SIZES)
def test_without_a_seed_all_ranks_use_rank_zeros_seed(gathered, world_size):
    seeds = gathered[world_size]["unseeded_seeds"]
    assert len(set(seeds)) == 1
    single = worker.Placed()
    hydra_init.apply(single, {"seed": seeds[0], "rules": worker.RULES}, log=False)
    _assert_identical(_state(single), gathered[world_size]["unseeded"])


@pytest.mark.parametrize(
    ("shape", "offset", "local", "start"),
    [
        ((6, 4), (2, 0), (3, 4), 8),  # Shard(0): whole rows
        ((6, 4), (0, 1), (6, 2), None),  # Shard(1): a column block
        ((1, 5), (0, 2), (1, 2), 2),  # a single row: a range within it
        ((3, 1, 4), (1, 0, 0), (2, 1, 4), 4),
        ((4, 3, 2), (1, 1, 0), (1, 2, 2), 8),  # within one slice of dim 0
        ((4, 3, 2), (1, 1, 0), (2, 2, 2), None),
    ],
)
def test_flat_range_of_a_block(shape, offset, local, start):
    assert _flat_range(shape, offset, local) == start
    if start is not None:  # cross-check against the element indices themselves
        index = torch.arange(torch.Size(shape).numel()).view(shape)
        block = index[tuple(slice(o, o + n) for o, n in zip(offset, local, strict=True))]
        assert block.flatten().tolist() == list(range(start, start + block.numel()))
