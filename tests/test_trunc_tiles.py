"""Truncated-normal tiles: the scaled route gives the plain route's bits.

A tile of a zero-mean truncated normal with normal proposals is drawn already scaled
by ``std`` (``hydra_init.sampling.truncnormal._scaled_tile_``); a proposal equal to a
scaled bound leaves the tile undecided, and the tile is drawn again the plain way.
Every case here compares bytes with the plain route, ``trunc_normal_`` on a
``TorchSource``, which is what a tile's values are defined by.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hydra_init.sampling import TruncNormalDraw, fill_
from hydra_init.sampling import truncnormal as tn
from hydra_init.sampling.generators import TorchSource, generator
from hydra_init.sampling.keys import TILE, tile_seed

INF = float("inf")
SCALED = [  # zero-mean, normal proposals: the scaled route
    TruncNormalDraw(0.0, 0.02, -0.04, 0.04),  # ViT: ±2 std
    TruncNormalDraw(0.0, 1.0, -2.0, 2.0),
    TruncNormalDraw(0.0, 0.5, 0.0, INF),  # folded: |z|
    TruncNormalDraw(0.0, 3.0, -9.0, 4.5),  # asymmetric
    TruncNormalDraw(0.0, 1 / 3, -0.6, 0.9),  # the scaled bound 0.9 rounds above b: the clamp pass runs
    TruncNormalDraw(0.0, 0.013, -0.031, 0.027),  # the scaled bound -0.031 rounds below a: the clamp pass runs
]
PLAIN = [  # the plain route only
    TruncNormalDraw(0.1, 0.02, 0.06, 0.14),  # a mean: the kernel's fma would round once, not twice
    TruncNormalDraw(0.0, 1.0, -1e-3, 1e-3),  # narrow: inverse CDF
    TruncNormalDraw(0.0, 1.0, -INF, -0.5),  # mirrored
]
UNDECIDED_SEED = 718  # manual_seed(718): a ±2 std float32 tile with a proposal on a scaled bound


def _plain(numel: int, d: TruncNormalDraw, seed: int, dtype: torch.dtype) -> bytes:
    out = torch.empty(numel, dtype=dtype)
    tn.trunc_normal_(out, d, TorchSource(torch.Generator().manual_seed(seed)))
    return out.numpy().tobytes()


@pytest.fixture
def scaled_calls(monkeypatch):
    """How often the scaled route ran, and how often it gave up."""
    calls = {"ran": 0, "undecided": 0}
    original = tn._scaled_tile_

    def counted(*args):
        calls["ran"] += 1
        decided = original(*args)
        calls["undecided"] += not decided
        return decided

    monkeypatch.setattr(tn, "_scaled_tile_", counted)
    return calls


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("d", SCALED + PLAIN, ids=repr)
def test_a_tile_has_the_plain_routes_bits(d, dtype, scaled_calls):
    expected_route = d in SCALED
    for numel, seeds in ((16, 20), (17, 20), (4099, 10), (TILE, 3)):
        for seed in range(seeds):
            out = torch.empty(numel, dtype=dtype)
            d.fill_tile(out, torch.Generator().manual_seed(seed))
            assert out.numpy().tobytes() == _plain(numel, d, seed, dtype), (numel, seed)
    assert (scaled_calls["ran"] == 53) if expected_route else (scaled_calls["ran"] == 0)


def test_tiles_under_16_values_take_the_plain_route(scaled_calls):
    d = SCALED[0]
    out = torch.empty(15)
    d.fill_tile(out, torch.Generator().manual_seed(1))  # torch's kernel computes small buffers otherwise
    assert out.numpy().tobytes() == _plain(15, d, 1, torch.float32)
    assert scaled_calls["ran"] == 0


def test_an_undecided_tile_is_drawn_again_the_plain_way(scaled_calls):
    d = SCALED[0]
    plan = tn.trunc_plan(-2.0, 2.0)
    probe = torch.empty(TILE)
    assert not tn._scaled_tile_(probe, d, plan, torch.Generator().manual_seed(UNDECIDED_SEED))
    for seed, numel in ((717, TILE), (UNDECIDED_SEED, TILE), (719, 1000)):
        out = torch.empty(numel)
        d.fill_tile_from(out, lambda seed=seed: torch.Generator().manual_seed(seed))
        assert out.numpy().tobytes() == _plain(numel, d, seed, torch.float32), seed
    assert scaled_calls == {"ran": 4, "undecided": 2}  # the probe, then the three tiles


def test_a_torch_whose_kernel_rounds_otherwise_keeps_the_plain_route(monkeypatch, scaled_calls):
    monkeypatch.setattr(tn, "_kernel_scales_exactly", lambda: False)
    d = SCALED[0]
    out = torch.empty(4096)
    d.fill_tile(out, torch.Generator().manual_seed(5))
    assert out.numpy().tobytes() == _plain(4096, d, 5, torch.float32)
    assert scaled_calls["ran"] == 0


def test_this_torch_scales_in_its_kernel_exactly():
    # if this fails, a torch upgrade changed normal_'s arithmetic: the scaled route is off
    # (values are unchanged, the ±2 std tiles are slower); see _kernel_scales_exactly
    assert tn._kernel_scales_exactly()


def test_a_tensor_of_many_tiles_equals_its_tiles_drawn_alone():
    d = SCALED[0]
    whole = torch.empty(3 * TILE + 77)
    fill_(whole, d, 123)
    cpu = torch.device("cpu")
    for tile, start in enumerate(range(0, whole.numel(), TILE)):
        part = torch.empty(min(TILE, whole.numel() - start))
        tn.trunc_normal_(part, d, TorchSource(generator(cpu, tile_seed(123, tile))))
        assert torch.equal(whole[start : start + part.numel()], part), tile


@settings(max_examples=200, deadline=None)
@given(st.lists(st.booleans(), max_size=300), st.integers(0, 7))
def test_positions_are_flatnonzero(bits, offset):
    mask = np.array([False] * offset + bits, dtype=bool)[offset:]  # views at any alignment too
    assert tn._positions(mask).tolist() == np.flatnonzero(mask).tolist()
