"""Execution groups parameters by kind (one draw, shape and dtype): one key pass and one
vectorized draw per group. The values must be those of each tensor drawn on its own: the
counter-based source of the value format (docs/performance.md), element by element.

Each model mixes what must leave a group - a non-contiguous weight, a float64 copy of
a layer, an integer parameter, tied and empty tensors - with many ordinary ones, and the
thread counts make the batches cut groups into slices.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import hydra_init
from hydra_init import sampling as S
from hydra_init.engine.parse import parse_config
from hydra_init.engine.plan import build_plan
from hydra_init.sampling.generators import HashSource


def _model() -> nn.Module:
    layers = [nn.Linear(8, 8) for _ in range(300)]  # 300 x 64 weight values: more than one batch
    odd = nn.Linear(8, 8)
    odd.weight = nn.Parameter(torch.empty(8, 8).t())  # the same kind, but not contiguous
    wide = nn.Linear(8, 8).double()
    model = nn.Sequential(*layers, odd, wide, nn.LayerNorm(8), nn.Linear(0, 3), nn.Embedding(5, 4))
    model.register_parameter("count", nn.Parameter(torch.zeros(3, dtype=torch.long), requires_grad=False))
    return model


CFG = {"seed": 3, "rules": {
    "linear": {"type": "Normal", "layer": "Linear", "std": 0.02, "bias": 0.25},
    "norm": {"type": "TruncNormal", "layer": "LayerNorm", "std": 1.0, "a": -1.0, "b": 1.0, "bias": -1.5},
    "embed": {"type": "Uniform", "layer": "Embedding", "a": -0.5, "b": 0.5},
    "count": {"type": "Constant", "layer": "Sequential", "params": "count", "val": 7},
}}


def _alone(draw: S.Draw, key: int, like: torch.Tensor) -> torch.Tensor:
    """One small tensor drawn on its own from the counter-based source (float64, then cast)."""
    if draw.constant:
        return torch.full_like(like, draw.value)
    buf = torch.empty(like.numel(), dtype=torch.float64)
    draw.fill_from(buf, HashSource(key, 0))
    return buf.view(like.shape).to(like.dtype)


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_grouped_values_equal_each_tensor_drawn_alone(threads: int) -> None:
    model = _model()
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        report = hydra_init.apply(model, CFG, log=False)
    finally:
        torch.set_num_threads(before)
    plan = build_plan(model, parse_config(CFG))
    params = dict(model.named_parameters())
    checked = 0
    for path, param in params.items():
        draw = plan.entries[path].draw
        if param.numel() == 0:
            continue
        expected = _alone(draw, S.derive_key(report.seed, path, param.shape), param)
        assert torch.equal(param, expected), path
        checked += 1
    assert checked == len(params) - 1  # every tensor but the empty weight


def test_a_failing_check_in_a_group_leaves_the_model_unchanged() -> None:
    """A meta tensor among many plain ones is refused before any group is written."""
    model = _model()
    with torch.device("meta"):
        model.append(nn.Linear(8, 8))
    before = {k: v.clone() for k, v in model.state_dict().items() if not v.is_meta}
    with pytest.raises(hydra_init.InitConfigError, match=r"'305\.weight' is on the meta device"):
        hydra_init.apply(model, CFG, log=False)
    after = {k: v for k, v in model.state_dict().items() if not v.is_meta}
    assert all(torch.equal(before[k], after[k]) for k in before)


_DRAWS = st.sampled_from([
    {"type": "Normal", "std": 0.5, "bias": 0.25},
    {"type": "Uniform", "a": -1.0, "b": 1.0, "bias": 0.0},
    {"type": "TruncNormal", "std": 1.0, "a": -1.0, "b": 1.0, "bias": -2.0},
    {"type": "Constant", "val": 3.0, "bias": 1.0},
])


@st.composite
def _layers(draw) -> nn.Module:
    """Random small Linears (so their kinds repeat), some float64, some with a transposed
    (non-contiguous) weight, some tied to an earlier layer's weight of the same shape."""
    model = nn.Sequential()
    for i in range(draw(st.integers(1, 40))):
        rows, cols = draw(st.sampled_from([(2, 3), (3, 2), (4, 4)]))
        layer = nn.Linear(cols, rows, bias=draw(st.booleans()))
        if draw(st.integers(0, 5)) == 0:
            layer = layer.double()
        if draw(st.integers(0, 5)) == 0:
            layer.weight = nn.Parameter(torch.empty(cols, rows, dtype=layer.weight.dtype).t())
        same = [m for m in model if m.weight.shape == layer.weight.shape
                and m.weight.dtype == layer.weight.dtype]
        if same and draw(st.integers(0, 5)) == 0:
            layer.weight = same[0].weight
        model.add_module(str(i), layer)
    return model


@settings(max_examples=40, deadline=None)
@given(_layers(), _DRAWS, st.integers(1, 3), st.integers(0, 2**32))
def test_random_models_grouped_equal_alone(model: nn.Module, rule: dict, threads: int, seed: int) -> None:
    """Any mix of kinds, layouts, dtypes and ties: each tensor gets its own draw's values."""
    cfg = {"seed": seed, "rules": {"linear": {"layer": "Linear", **rule}}}
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        hydra_init.apply(model, cfg, log=False)
    finally:
        torch.set_num_threads(before)
    plan = build_plan(model, parse_config(cfg))
    for path, param in model.named_parameters():  # each tied tensor once, under its first path
        expected = _alone(plan.entries[path].draw, S.derive_key(seed, path, param.shape), param)
        assert torch.equal(param, expected), path
