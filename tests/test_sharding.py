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
from hydra_init.engine.sharding import _flat_range
from hydra_init.meta import build_and_init

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import _dist_worker as worker  # noqa: E402

WORLD_SIZES = (1, 2, 3)


@pytest.fixture(scope="module")
def gathered(tmp_path_factory) -> dict[int, dict]:
    out = tmp_path_factory.mktemp("dist")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, str(HERE / "_dist_worker.py"), str(out), *map(str, WORLD_SIZES)],
                   check=True, timeout=600, env=env)
    return {ws: torch.load(out / f"ws{ws}.pt") for ws in WORLD_SIZES}


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
