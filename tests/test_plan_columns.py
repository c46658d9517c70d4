"""The plan in columns: parameter selection by array operations, the kind table, and the
``path -> PlanEntry`` view over them.

The array selection (module position ranges over the index's parameter columns) is checked
against a reading of the rule module by module through ``named_modules()`` and each
module's own ``_parameters``, on random trees with tied and shared tensors.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import hydra_init
from hydra_init.engine.parse import parse_config
from hydra_init.engine.plan import _matched_modules, _selected_params, build_plan
from hydra_init.engine.rules import Rule
from hydra_init.engine.select import ModelIndex, glob_match
from hydra_init.initializers import Zeros


class Scaled(nn.Module):
    """A leaf with parameters under other names than weight/bias."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(2))
        self.weight = nn.Parameter(torch.ones(2, 2))


_LEAVES = st.sampled_from([lambda: nn.Linear(2, 2), lambda: nn.Linear(2, 2, bias=False),
                           lambda: nn.LayerNorm(2), Scaled])


@st.composite
def _models(draw, depth: int = 0) -> nn.Module:
    """A random tree of containers and leaves; some leaves' tensors tied to earlier leaves'
    and some leaves registered twice (both appear in ``named_modules(remove_duplicate=False)``)."""
    if depth >= 2 or (depth >= 1 and draw(st.booleans())):
        return draw(_LEAVES)()
    node = nn.Module()
    leaves: list[nn.Module] = []
    for i in range(draw(st.integers(1, 3))):
        child = draw(_models(depth + 1))
        node.add_module(f"c{i}", child)
        leaves.extend(m for m in child.modules() if not list(m.children()))
    if len(leaves) >= 2 and draw(st.booleans()):  # a tie: the last leaf's weight is the first's
        first, last = leaves[0], leaves[-1]
        if "weight" in first._parameters and "weight" in last._parameters and first is not last:
            last.weight = first.weight
    if leaves and draw(st.booleans()):  # one module under two paths
        node.add_module("again", leaves[0])
    return node


_RULES = st.builds(
    lambda layer, params: Rule(Zeros(), layer=layer, params=params, optional=True),
    layer=st.sampled_from([(), ("Linear",), ("LayerNorm",), ("Scaled", "Linear")]),
    params=st.sampled_from([(), ("weight",), ("bias",), ("s*",), ("*",), ("w*", "scale")]),
)


def _reference(model: nn.Module, rule: Rule) -> tuple[list[str], list[str]]:
    """(canonical path, role) of what ``rule`` selects, read module by module: each matched
    module's own parameters, a tensor counted once (its first path), in model order."""
    canonical: dict[int, str] = {}
    for path, module in model.named_modules(remove_duplicate=False):
        for name, tensor in module._parameters.items():
            if tensor is not None:
                canonical.setdefault(id(tensor), f"{path}.{name}" if path else name)
    selected: dict[str, str] = {}
    for _, module in model.named_modules(remove_duplicate=False):
        classes = {c.__name__ for c in type(module).__mro__}
        if rule.layer and not classes & set(rule.layer):
            continue
        for name, tensor in module._parameters.items():
            if tensor is None:
                continue
            if rule.params:
                role = "weight" if any(glob_match(name, p) for p in rule.params) else None
            else:
                role = name if name in ("weight", "bias") else None
            if role is not None:
                selected.setdefault(canonical[id(tensor)], role)
    return list(selected), list(selected.values())


@settings(max_examples=150, deadline=None)
@given(model=_models(), rule=_RULES)
def test_array_selection_selects_what_a_module_by_module_reading_selects(model, rule) -> None:
    index = ModelIndex(model)
    modules, _, _ = _matched_modules(rule, index)
    got = _selected_params(rule, index, modules)
    paths = [index.param_paths[i] for i in got.positions.tolist()]
    roles = [("weight", "bias")[r] for r in got.roles.tolist()]
    expected_paths, expected_roles = _reference(model, rule)
    assert sorted(zip(paths, roles, strict=True)) == sorted(zip(expected_paths, expected_roles, strict=True))
    assert len(set(paths)) == len(paths)  # a tensor once, whichever of its names matched
    assert not got.extra


def test_a_model_of_identical_blocks_has_a_handful_of_kinds() -> None:
    """The columns store one small integer per parameter: 1,000 blocks of the same shapes
    share a kind per (rule, role, shape), not an object each."""
    model = nn.Sequential(*(nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4)) for _ in range(1000)))
    plan = build_plan(model, parse_config({"rules": {
        "fc": {"type": "Normal", "layer": "Linear", "std": 0.02},
        "norm": {"type": "Ones", "layer": "LayerNorm"}}}))
    assert len(plan.columns) == 4000
    assert len(plan.columns.kinds) == 5  # the unused default, Linear weight/bias, LayerNorm weight/bias
    assert plan.columns.kind.dtype == np.int32


def test_entries_view_is_every_parameter_in_model_order_with_the_reports_fields() -> None:
    shared = nn.Linear(3, 3)
    model = nn.Sequential(nn.Linear(3, 3), shared, nn.LayerNorm(3), shared)
    report = hydra_init.plan(model, {"rules": {"fc": {"type": "Zeros", "layer": "Linear", "bias": 1.0}}})
    plan = build_plan(model, parse_config({"rules": {"fc": {"type": "Zeros", "layer": "Linear",
                                                            "bias": 1.0}}}))
    assert list(plan.entries) == [name for name, _ in model.named_parameters()]
    assert len(plan.entries) == len(report.params)
    for record in report.params:
        entry = plan.entries[record.path]
        assert (entry.path, entry.source, entry.rule.label if entry.rule else None) == (
            record.path, record.source, record.rule)
    assert plan.entries["1.bias"].role == "bias"
    assert "3.weight" not in plan.entries  # the second name of the shared module: one tensor, one entry


def test_entries_view_writes_through_and_keeps_one_entry_per_parameter() -> None:
    model = nn.Linear(2, 2)
    plan = build_plan(model, parse_config({"rules": {"fc": {"type": "Zeros", "layer": "Linear"}}}))
    entry = plan.entries["weight"]
    plan.entries["weight"] = type(entry)(entry.ref, "default", note="left alone")
    assert plan.entries["weight"].note == "left alone"
    assert plan.columns.at(0).source == "default"
    with pytest.raises(TypeError, match="every parameter"):
        del plan.entries["bias"]
    plan.entries["extra"] = type(entry)(entry.ref, "default")  # a tensor outside the columns
    assert list(plan.entries) == ["weight", "bias", "extra"]
    del plan.entries["extra"]
    assert len(plan.entries) == 2
