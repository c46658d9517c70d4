"""Selecting what a rule touches: layer (whole MRO, simple or qualified), name globs,
params, exclude, and mmengine's ``override``.

Every test writes a constant that no parameter holds before, and reads back which
parameters changed (the ground truth), then checks the report agrees.
"""

from __future__ import annotations

import pytest
import torch
from helpers import changed, snapshot
from torch import nn

import hydra_init


class MyConv(nn.Conv2d):
    """A user conv: Conv2d is its direct base, _ConvNd two levels up."""


class Base(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(4, 4))


class Mid(Base):
    pass


class Leaf(Mid):
    """Base is an indirect base, two levels up (mmengine only looks at direct bases)."""


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = MyConv(4, 4, 3)
        self.bn1 = nn.BatchNorm2d(4)
        self.conv2 = nn.Conv2d(4, 4, 1)


class Backbone(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3)
        self.layer1 = Block()
        self.layer2 = Block()


class Attn(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(8, 2)
        self.proj = nn.Linear(8, 8)


class TBlock(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(8)
        self.attn = Attn()
        self.mlp = nn.Sequential(nn.Linear(8, 16), nn.GELU(), nn.Linear(16, 8))


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, 8))
        self.pos_embed = nn.Parameter(torch.zeros(1, 4, 8))
        self.backbone = Backbone()
        self.blocks = nn.ModuleList([TBlock(), TBlock()])
        self.rnn = nn.GRU(8, 8)
        self.lstm = nn.LSTM(8, 8, num_layers=2)
        self.leaf = Leaf()
        self.head = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3))


def wb(*modules: str) -> set[str]:
    """``weight`` and ``bias`` paths of modules."""
    return {f"{m}.{p}" for m in modules for p in ("weight", "bias")}


CONVS = ["backbone.stem", *(f"backbone.layer{i}.conv{j}" for i in (1, 2) for j in (1, 2))]


def touched(cfg, model: nn.Module | None = None) -> set[str]:
    """Apply ``cfg`` to a fresh Net; the parameter paths whose bits changed.

    Also checks that the report lists exactly these as written by a rule.
    """
    model = model if model is not None else Net()
    before = snapshot(model)
    report = hydra_init.apply(model, cfg, log=False)
    got = changed(model, before)
    assert got == set(report.by_source("rule")) | set(report.by_source("reset"))
    return got


def rules(**named) -> dict:
    return {"seed": 0, "rules": named}


def const(**selectors) -> dict:
    """A Constant rule whose weight (0.5) and bias (0.25) values no parameter holds before."""
    return {"type": "Constant", "val": 0.5, "bias": 0.25, **selectors}


# ----------------------------------------------------------------------------- layer
@pytest.mark.parametrize(
    "layer",
    ["Conv2d", "_ConvNd", "torch.nn.Conv2d", "torch.nn.modules.conv.Conv2d", ["Conv2d", "Conv3d"]],
)
def test_layer_matches_class_and_subclasses(layer):
    assert touched(rules(c=const(layer=layer))) == wb(*CONVS)


def test_layer_matches_indirect_base_over_the_whole_mro():
    # mmengine checks only the class and its direct bases: Base would miss Leaf.
    assert touched(rules(c=const(layer="Base"))) == {"leaf.weight"}
    assert touched(rules(c=const(layer="Mid"))) == {"leaf.weight"}


def test_layer_by_qualified_name_of_a_user_class():
    qualified = f"{MyConv.__module__}.{MyConv.__qualname__}"
    got = touched(rules(c=const(layer=qualified)))
    assert got == wb("backbone.layer1.conv1", "backbone.layer2.conv1")


def test_layer_by_simple_name_of_a_user_class():
    got = touched(rules(c=const(layer="MyConv")))
    assert got == wb("backbone.layer1.conv1", "backbone.layer2.conv1")


def test_layer_private_base_batchnorm():
    got = touched(rules(n=const(layer="_BatchNorm")))
    assert got == wb("backbone.layer1.bn1", "backbone.layer2.bn1")


def test_linear_reaches_multihead_attention_out_proj_subclass():
    # MultiheadAttention.out_proj is a NonDynamicallyQuantizableLinear(Linear).
    got = touched(rules(l=const(layer="Linear")))
    linears = [f"blocks.{i}.{m}" for i in (0, 1)
               for m in ("attn.attn.out_proj", "attn.proj", "mlp.0", "mlp.2")]
    assert got == wb(*linears, "head.0", "head.2")


# ----------------------------------------------------------------------------- name
@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("backbone.layer*.conv1", wb("backbone.layer1.conv1", "backbone.layer2.conv1")),
        ("*.attn.proj", wb("blocks.0.attn.proj", "blocks.1.attn.proj")),
        ("head", wb("head.0", "head.2")),  # a module brings its whole subtree
        ("backbone.layer?.conv[2]", wb("backbone.layer1.conv2", "backbone.layer2.conv2")),
        (["head.0", "blocks.1.mlp"], wb("head.0", "blocks.1.mlp.0", "blocks.1.mlp.2")),
    ],
)
def test_name_globs(name, expected):
    assert touched(rules(n=const(name=name))) == expected


def test_name_and_layer_intersect():
    got = touched(rules(n=const(name="backbone.layer2", layer="BatchNorm2d")))
    assert got == wb("backbone.layer2.bn1")


def test_exclude_removes_subtrees():
    got = touched(rules(c=const(layer="Conv2d", exclude=["backbone.layer2"])))
    assert got == wb("backbone.stem", "backbone.layer1.conv1", "backbone.layer1.conv2")


def test_exclude_an_ancestor_of_the_name_matches():
    # The excluded module is above the modules the name glob selects.
    got = touched(rules(c=const(name="*.conv1", exclude="backbone.layer2")))
    assert got == wb("backbone.layer1.conv1")


# ----------------------------------------------------------------------------- params
def test_params_multihead_attention_in_proj():
    got = touched(rules(m={"type": "Xavier", "layer": "MultiheadAttention",
                           "params": "in_proj_weight"}))
    assert got == {"blocks.0.attn.attn.in_proj_weight", "blocks.1.attn.attn.in_proj_weight"}


def test_params_rnn_weights_by_name_and_glob():
    assert touched(rules(g={"type": "Orthogonal", "layer": "GRU", "params": "weight_ih_l0"})) == {
        "rnn.weight_ih_l0"
    }
    got = touched(rules(g={"type": "Orthogonal", "layer": "RNNBase", "params": "weight_hh_*"}))
    assert got == {"rnn.weight_hh_l0", "lstm.weight_hh_l0", "lstm.weight_hh_l1"}


def test_gru_bool_bias_attribute_is_skipped_not_a_crash():
    # GRU has `bias = True` (a bool), and no `weight`: the default params select nothing
    # there, and naming `bias` explicitly is not a crash either.
    model = Net()
    assert model.rnn.bias is True
    before = snapshot(model)
    report = hydra_init.apply(model, rules(g={"type": "Normal", "std": 0.1, "layer": "GRU"}),
                              log=False)
    assert changed(model, before) == set()
    assert any("'g'" in w for w in report.warnings)
    got = touched(rules(g={"type": "Normal", "std": 0.1, "layer": "GRU",
                           "params": ["bias", "bias_ih_l0"]}))
    assert got == {"rnn.bias_ih_l0"}


def test_params_free_parameters():
    got = touched(rules(t={"type": "TruncNormal", "std": 0.02, "params": ["cls_token", "pos_embed"]}))
    assert got == {"cls_token", "pos_embed"}


def test_params_dotted_full_path():
    got = touched(rules(p={"type": "Normal", "std": 0.02,
                           "params": ["blocks.1.attn.attn.in_proj_weight", "blocks.*.norm.weight"]}))
    assert got == {"blocks.1.attn.attn.in_proj_weight", "blocks.0.norm.weight", "blocks.1.norm.weight"}


def test_params_dotted_relative_to_each_matched_module():
    # Under every TBlock, the parameter at attn.proj.weight (like bn3.weight in a Bottleneck).
    got = touched(rules(p={"type": "Normal", "std": 0.02, "layer": "TBlock", "params": "attn.proj.weight"}))
    assert got == {"blocks.0.attn.proj.weight", "blocks.1.attn.proj.weight"}


def test_params_given_draw_the_bias_too():
    # With params set, every matching parameter gets the initializer (bias is not a constant).
    model = Net()
    hydra_init.apply(model, rules(h={"type": "Ones", "name": "head.2", "params": ["weight", "bias"]}),
                     log=False)
    assert torch.equal(model.head[2].bias, torch.ones(3))


def test_default_params_are_weight_and_bias_only():
    got = touched(rules(a=const(layer="MultiheadAttention")))
    assert got == set()  # in_proj_* are not weight/bias; out_proj is a child, not selected


def test_lazy_parameters_are_skipped_and_reported():
    model = nn.Sequential(nn.LazyLinear(4), nn.ReLU(), nn.Linear(4, 2))
    report = hydra_init.apply(model, rules(k={"type": "Kaiming", "layer": "Linear"}), log=False)
    assert report.by_source("lazy") == ["0.weight", "0.bias"]
    assert set(report.by_source("rule")) == {"2.weight", "2.bias"}
    assert "lazy" in str(report)
    model(torch.randn(3, 5))  # materializes normally afterwards
    assert model[0].weight.shape == (4, 5)


# ----------------------------------------------------------------------------- mmengine override
def test_override_reaches_deeper_than_direct_attributes():
    cfg = [{"type": "Constant", "val": 1.5, "layer": "Conv2d",
            "override": {"name": "backbone.layer1.conv1", "type": "Constant", "val": 5.0}}]
    model = Net()
    hydra_init.apply(model, cfg, log=False)
    assert bool((model.backbone.layer1.conv1.weight == 5.0).all())
    for other in (model.backbone.stem, model.backbone.layer1.conv2, model.backbone.layer2.conv1):
        assert bool((other.weight == 1.5).all())


def test_override_with_only_a_name_reuses_the_parent_init_on_the_whole_subtree():
    # mmengine: override={name} takes the parent's type and arguments, ignoring its layer.
    cfg = [{"type": "Constant", "val": 1.5, "bias": 0.25, "layer": "Conv2d",
            "override": [{"name": "head"}, {"name": "*.mlp", "type": "Zeros"}]}]
    got = touched(cfg)
    mlps = [f"blocks.{i}.mlp.{j}" for i in (0, 1) for j in (0, 2)]
    assert got == wb(*CONVS, "head.0", "head.2", *mlps)
    model = Net()
    hydra_init.apply(model, cfg, log=False)
    assert bool((model.head[2].weight == 1.5).all()) and bool((model.head[2].bias == 0.25).all())


def test_override_wins_over_its_parent_even_with_priority():
    cfg = [{"type": "Ones", "layer": "Conv2d", "priority": 3,
            "override": {"name": "backbone.layer1", "type": "Constant", "val": 4.0}}]
    model = Net()
    hydra_init.apply(model, cfg, log=False)
    assert bool((model.backbone.layer1.conv2.weight == 4.0).all())
    assert bool((model.backbone.layer2.conv2.weight == 1.0).all())


# ----------------------------------------------------------------------------- globs over the module tree
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_NAMES = st.sampled_from(["a", "b", "ab", "0", "1", "12", "conv", "conv1", "lin"])


@st.composite
def _trees(draw, depth: int = 0) -> nn.Module:
    """A random module tree, three or four levels deep: containers with 1-3 named children,
    Linear leaves (which hold no modules, so globs and subtrees meet at every level)."""
    if depth >= 3 or (depth >= 2 and draw(st.booleans())):
        return nn.Linear(1, 1)
    node = nn.Module()
    for name in draw(st.lists(_NAMES, min_size=1, max_size=3, unique=True)):
        node.add_module(name, draw(_trees(depth + 1)))
    return node


_PATTERNS = st.lists(st.sampled_from(["*", "a", "b", "?", "1", "conv", ".", "*.", "{x}", "lin", "[ab]", "0"]),
                     min_size=1, max_size=4).map("".join).filter(lambda g: _valid_glob(g))


def _valid_glob(pattern: str) -> bool:
    from hydra_init.engine.select import check_glob

    try:
        check_glob(pattern)  # a config with an invalid glob is refused while parsing
    except ValueError:
        return False
    return True


def _selected_by_brute_force(model: nn.Module, names: list[str], exclude: list[str]) -> list[str]:
    """The documented semantics, path by path: a module is selected when it or an ancestor
    matches a name glob (all modules without names) and neither it nor an ancestor is excluded."""
    from hydra_init.engine.select import glob_match

    def ancestors(path: str) -> list[str]:
        parts = path.split(".") if path else []
        return [""] + [".".join(parts[: i + 1]) for i in range(len(parts))]

    paths = [p for p, _ in model.named_modules(remove_duplicate=False)]
    return [
        p for p in paths
        if (not names or any(glob_match(a, g) for a in ancestors(p) for g in names))
        and not any(glob_match(a, x) for a in ancestors(p) for x in exclude)
    ]


@settings(max_examples=150, deadline=None)
@given(model=_trees(), names=st.lists(_PATTERNS, max_size=2), exclude=st.lists(_PATTERNS, max_size=2))
def test_name_and_exclude_globs_select_what_path_by_path_matching_selects(model, names, exclude) -> None:
    """The planner matches each glob once over all paths and selects subtrees as runs of
    the pre-order module list; that must select exactly the modules a path-by-path reading
    of the rule selects, for any tree and globs."""
    from hydra_init.engine.plan import _matched_modules
    from hydra_init.engine.rules import Rule
    from hydra_init.engine.select import ModelIndex
    from hydra_init.initializers import Zeros

    rule = Rule(Zeros(), name=tuple(names), exclude=tuple(exclude), optional=True)
    index = ModelIndex(model)
    selected, dead, _ = _matched_modules(rule, index)
    assert [index.module_paths[i] for i in selected] == _selected_by_brute_force(model, names, exclude)
    from hydra_init.engine.select import glob_match

    paths = [p for p, _ in model.named_modules(remove_duplicate=False)]
    assert dead == {g for g in names if not any(glob_match(p, g) for p in paths)}
