"""``init.tiles``: flat tiles (the default value format) or block tiles (addressable columns).

Block tiles exist so that a tensor-parallel rank draws only its own columns
(test_sharding.py checks the shards against a single process on gloo); here:
the config key and its errors, what changes between the layouts and what does
not, and that block tiles are still independent streams of the right distribution.
"""

from __future__ import annotations

import math

import hydra.utils
import numpy as np
import pytest
import torch
from helpers import assert_bit_identical, assert_mean, assert_std, snapshot
from hydra import compose, initialize
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import hydra_init
from hydra_init import sampling

RULES = {"all": {"type": "Normal", "layer": ["Linear", "LayerNorm"], "std": 1.0, "params": "*"}}


def model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(1000, 600), nn.Linear(10, 20), nn.LayerNorm(5000))


def values(tiles: str | None, seed: int = 3) -> dict[str, torch.Tensor]:
    m = model()
    cfg = {"seed": seed, "rules": RULES, **({"tiles": tiles} if tiles else {})}
    hydra_init.apply(m, cfg, log=False)
    return {k: v.detach().clone() for k, v in m.state_dict().items()}


def test_flat_is_the_default_and_blocks_change_only_large_2d_weights():
    flat, default, blocks = values("flat"), values(None), values("blocks")
    assert all(torch.equal(flat[k], default[k]) for k in flat)
    assert not torch.equal(flat["0.weight"], blocks["0.weight"])  # 600 x 1000: 2 x 4 block tiles
    for name in ("0.bias", "1.weight", "1.bias", "2.weight", "2.bias"):  # 1-D, or small: one format
        assert torch.equal(flat[name], blocks[name]), name
    again = values("blocks")
    assert all(torch.equal(blocks[k], again[k]) for k in blocks)


def test_a_bad_layout_names_the_key_and_the_choices_and_writes_nothing():
    m = model()
    before = snapshot(m)
    with pytest.raises(hydra_init.InitConfigError) as err:
        hydra_init.apply(m, {"seed": 0, "tiles": "block", "rules": RULES}, log=False)
    message = str(err.value)
    assert message.startswith("init.tiles: invalid value 'block'")
    assert "flat, blocks" in message and "did you mean 'blocks'" in message
    assert_bit_identical(m, before)


def test_the_layout_is_recorded_in_the_report_config():
    report = hydra_init.apply(model(), {"seed": 0, "tiles": "blocks", "rules": RULES}, log=False)
    assert report.tiles == report.to_dict()["tiles"] == "blocks"
    assert report.summary_line().startswith("hydra_init init report: 6 parameters, 610,820 values, seed 0, "
                                            "block tiles")
    assert hydra_init.plan(model(), {"rules": RULES}).to_dict()["tiles"] == "flat"


def test_hydra_overrides_select_the_layout():
    hydra_init.register()
    with initialize(version_base=None, config_path=None):
        cfg = compose(overrides=["+init=normal", "init.seed=1", "init.tiles=blocks"])
    init = hydra.utils.instantiate(cfg.init)
    assert init.parsed.tiles is sampling.Tiles.blocks


def test_block_tiles_are_independent_standard_normals():
    """A (2048, 2048) block-tile draw: 4 x 8 tiles of 512 x 256. Mean and std within 6 standard
    errors over 4.2M values; the correlation between any two of a row of tiles below
    5 / sqrt(131072) = 0.014 (a 5-sigma band for independent streams)."""
    out = torch.empty(2048, 2048)
    sampling.fill_region_(out, sampling.NormalDraw(0.0, 1.0), sampling.derive_key(0, "w", out.shape),
                          out.shape, blocks=True)
    assert_mean(out.double(), 0.0, 1.0)
    assert_std(out.double(), 1.0)
    tiles = out[:512].reshape(512, 8, 256).permute(1, 0, 2).reshape(8, -1).double().numpy()
    corr = np.corrcoef(tiles)[np.triu_indices(8, 1)]
    assert np.abs(corr).max() < 5 / math.sqrt(512 * 256)





@st.composite
def tensors_and_regions(draw):
    """A large 2-D or 3-D shape (several block tiles) and a rectangle of its (dim 0, rest) view."""
    shape = (draw(st.integers(2, 700)), *draw(st.lists(st.integers(1, 40), min_size=1, max_size=2)))
    if math.prod(shape) <= sampling.SMALL:
        shape = (shape[0], *shape[1:-1], shape[-1] * (sampling.SMALL // math.prod(shape) + 1))
    rows, cols = shape[0], math.prod(shape[1:])
    top = draw(st.integers(0, rows - 1))
    left = draw(st.integers(0, cols - 1))
    region = sampling.Region(top, left, draw(st.integers(1, rows - top)), draw(st.integers(1, cols - left)))
    return shape, region


@settings(max_examples=40, deadline=None)
@given(tensors_and_regions(), st.sampled_from([sampling.NormalDraw(0.0, 1.0), sampling.UniformDraw(-1.0, 1.0),
                                               sampling.TruncNormalDraw(0.0, 1.0, -2.0, 2.0)]))
def test_any_rectangle_of_block_tiles_is_the_same_part_of_the_whole(case, draw):
    shape, region = case
    key = sampling.derive_key(1, "w", shape)
    full = torch.empty(shape)
    sampling.fill_region_(full, draw, key, shape, blocks=True)
    part = torch.empty(region.rows, region.cols)
    sampling.fill_region_(part, draw, key, shape, region, blocks=True)
    view = full.view(shape[0], -1)
    expected = view[region.row : region.row + region.rows, region.col : region.col + region.cols]
    assert torch.equal(part, expected)
