"""A custom initializer can bring its own draw: elementwise and whole-tensor (issue 9).

The draws live in ``tests/custom_draws.py`` (the sharded runs in ``_dist_worker.py``
import them too). Each test checks the values against an independent computation
or a property the draw guarantees, and against the other code paths (tiles, the
small-tensor batch, ranges of a shard, the meta build).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import hydra_init
from hydra_init import sampling
from hydra_init.meta import build_and_init
from hydra_init.sampling.generators import HashSource

sys.path.insert(0, str(Path(__file__).resolve().parent))
import custom_draws

custom_draws.register()

CFG = {"seed": 5, "rules": {
    "lap": {"type": "TestLaplace", "layer": "Linear", "scale": 0.5, "bias": 0.25},
    "perm": {"type": "TestSignedPermutation", "name": "square", "gain": 3.0},
}}


def model() -> nn.Module:
    m = nn.Module()
    m.big = nn.Linear(600, 400)  # 240k values: two tiles, the second one partial
    m.small = nn.Linear(30, 20)  # 600 values: the counter-based small batch
    m.square = nn.Linear(64, 64, bias=False)  # the whole-tensor draw (a name rule beats the class rule)
    return m


def test_elementwise_custom_draw_runs_through_tiles_and_small_batches():
    m = model()
    hydra_init.apply(m, CFG, log=False)
    big = m.big.weight.detach().double().flatten()
    # Laplace(0, b): E|x| = b and Var|x| = b^2, so over n = 240k values the mean of |x|
    # has a standard error of b / sqrt(n) = 0.001; 5 standard errors is a 1-in-1.7M miss.
    assert abs(float(big.abs().mean()) - 0.5) < 5 * 0.5 / math.sqrt(big.numel())
    assert float(big.median().abs()) < 0.01  # symmetric: the median's s.e. is b / sqrt(n) too
    assert torch.equal(m.big.bias, torch.full((400,), 0.25))
    # the small tensor, recomputed here from the counter-based source by hand
    key = sampling.derive_key(5, "small.weight", m.small.weight.shape)
    u = torch.empty(600, dtype=torch.float64)
    HashSource(key, 0).uniform(u, None)
    u -= 0.5
    expected = -0.5 * torch.sign(u) * torch.log1p(-2.0 * u.abs())
    assert torch.equal(m.small.weight.flatten(), expected.float())


def test_elementwise_custom_draw_is_addressable_by_range():
    draw = custom_draws.LaplaceDraw(1.0)
    numel = 3 * sampling.TILE + 17
    full = torch.empty(numel)
    sampling.fill_region_(full, draw, 11, full.shape)
    part = torch.empty(sampling.TILE)  # straddles a tile boundary, as a shard does
    start = sampling.TILE // 2
    sampling.fill_region_(part, draw, 11, full.shape, sampling.Region(start, 0, sampling.TILE, 1))
    assert torch.equal(part, full[start : start + sampling.TILE])


def test_whole_tensor_custom_draw_is_materialized():
    m = model()
    hydra_init.apply(m, CFG, log=False)
    w = m.square.weight.detach()
    assert torch.equal((w != 0).sum(0), torch.ones(64, dtype=torch.long))  # one entry per column
    assert torch.equal((w != 0).sum(1), torch.ones(64, dtype=torch.long))  # and per row
    assert set(w[w != 0].abs().tolist()) == {3.0}
    other = model()
    hydra_init.apply(other, {**CFG, "seed": 6}, log=False)
    assert not torch.equal(w, other.square.weight)  # the draw uses its key


def test_custom_draws_in_a_meta_build_match_an_eager_init():
    eager = model()
    hydra_init.apply(eager, CFG, log=False)
    built, _ = build_and_init(model, CFG, device="cpu", log=False)
    for name, value in eager.state_dict().items():
        assert torch.equal(value, built.state_dict()[name]), name


def test_a_draw_without_fill_from_says_so():
    class Nothing(sampling.Draw):
        pass

    with pytest.raises(TypeError, match="Nothing is not an elementwise random draw"):
        sampling.fill_(torch.empty(5), Nothing(), key=0)
