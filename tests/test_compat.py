"""The mmengine/mmcv compatibility layer, checked against the examples in their docs."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import hydra_init
from hydra_init import InitConfigError
from hydra_init.compat import (
    BaseModule,
    ModuleDict,
    ModuleList,
    Sequential,
    bias_init_with_prob,
    caffe2_xavier_init,
    constant_init,
    initialize,
    kaiming_init,
    normal_init,
    trunc_normal_,
    trunc_normal_init,
    uniform_init,
    xavier_init,
)


def _filled(tensor: torch.Tensor, value: float) -> bool:
    return bool(torch.all(tensor == value))


class FooNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.feat = nn.Conv1d(3, 1, 3)
        self.reg = nn.Conv2d(3, 3, 3)
        self.cls = nn.Sequential(nn.Conv1d(3, 1, 3), nn.Linear(1, 2))


# ----------------------------------------------------------------------------- functional API
def test_constant_init_and_missing_bias() -> None:
    conv = nn.Conv2d(3, 4, 3)
    constant_init(conv, 1, bias=2)
    assert _filled(conv.weight, 1) and _filled(conv.bias, 2)
    no_bias = nn.Conv2d(3, 4, 3, bias=False)
    constant_init(no_bias, 0.5)  # bias=None is skipped, as in mmengine
    assert _filled(no_bias.weight, 0.5)


# Large layers so the sample std is within 3% of its expectation: the relative
# standard error of a sample std over n normal values is 1/sqrt(2n) (n=262144 ->
# 0.14%); 3% is > 20 standard errors yet catches a wrong gain (sqrt(2) = 41%).
@pytest.mark.parametrize(
    ("fn", "kwargs", "expected_std"),
    [
        (normal_init, {"std": 0.02}, lambda fi, fo: 0.02),
        (xavier_init, {"gain": 2.0}, lambda fi, fo: 2.0 * math.sqrt(2.0 / (fi + fo))),
        (xavier_init, {"distribution": "uniform"}, lambda fi, fo: math.sqrt(2.0 / (fi + fo))),
        (kaiming_init, {}, lambda fi, fo: math.sqrt(2.0 / fo)),
        (kaiming_init, {"mode": "fan_in", "distribution": "uniform"}, lambda fi, fo: math.sqrt(2.0 / fi)),
        (caffe2_xavier_init, {}, lambda fi, fo: math.sqrt(1.0 / fi)),
        (uniform_init, {"a": -0.1, "b": 0.1}, lambda fi, fo: 0.2 / math.sqrt(12.0)),
    ],
)
def test_functional_std_matches_formula(fn, kwargs, expected_std) -> None:
    torch.manual_seed(0)
    layer = nn.Linear(1024, 256)  # fan_in=1024, fan_out=256
    fn(layer, bias=0.25, **kwargs)
    std = layer.weight.detach().std().item()
    assert std == pytest.approx(expected_std(1024, 256), rel=0.03)
    assert _filled(layer.bias, 0.25)


def test_trunc_normal_init_bounds_are_absolute() -> None:
    layer = nn.Linear(512, 512)
    trunc_normal_init(layer, std=1.0, a=-0.5, b=0.5)
    w = layer.weight.detach()
    assert w.min() >= -0.5 and w.max() <= 0.5
    # truncated to +-0.5 std the values are nearly uniform: std ~ 0.2876 (vs 1.0)
    assert w.std().item() == pytest.approx(0.2876, rel=0.03)


def test_trunc_normal_fills_tensor_in_bounds() -> None:
    t = torch.empty(1000, 100)
    out = trunc_normal_(t, mean=0.0, std=1.0, a=-2.0, b=2.0)
    assert out is t and t.min() >= -2 and t.max() <= 2


def test_functional_reproducible_with_manual_seed() -> None:
    a, b = nn.Linear(64, 64), nn.Linear(64, 64)
    torch.manual_seed(3)
    kaiming_init(a)
    torch.manual_seed(3)
    kaiming_init(b)
    assert torch.equal(a.weight, b.weight)


def test_bias_init_with_prob() -> None:
    assert bias_init_with_prob(0.01) == pytest.approx(-math.log(99.0))


def test_functional_rejects_bad_distribution() -> None:
    with pytest.raises(AssertionError, match="Valid: normal, uniform"):  # mmengine asserts
        xavier_init(nn.Linear(2, 2), distribution="trunc")


# ----------------------------------------------------------------------------- initialize
def test_initialize_layer_list_same_config() -> None:
    model = FooNet()
    initialize(model, dict(type="Constant", layer=["Conv1d", "Conv2d", "Linear"], val=1))
    for p in (model.feat.weight, model.reg.weight, model.cls[0].weight, model.cls[1].weight):
        assert _filled(p, 1)


def test_initialize_per_layer_configs() -> None:
    model = FooNet()
    initialize(
        model,
        [
            dict(type="Constant", layer="Conv1d", val=1),
            dict(type="Constant", layer="Conv2d", val=2),
            dict(type="Constant", layer="Linear", val=3),
        ],
    )
    assert _filled(model.feat.weight, 1) and _filled(model.reg.weight, 2)
    assert _filled(model.cls[1].weight, 3)


def test_initialize_override_wins() -> None:
    model = FooNet()
    initialize(
        model,
        dict(
            type="Constant", layer=["Conv1d", "Conv2d"], val=1, bias=2,
            override=dict(type="Constant", name="reg", val=3, bias=4),
        ),
    )
    assert _filled(model.reg.weight, 3) and _filled(model.reg.bias, 4)
    assert _filled(model.feat.weight, 1) and _filled(model.cls[0].bias, 2)


def test_initialize_override_without_layer_only_touches_override() -> None:
    model = FooNet()
    before = model.feat.weight.detach().clone()
    report = initialize(model, dict(type="Constant", val=1, bias=2, override=dict(name="reg")))
    assert _filled(model.reg.weight, 1) and _filled(model.reg.bias, 2)
    assert torch.equal(model.feat.weight, before)  # untouched, as mmengine documents
    assert "feat.weight" in report.by_source("default")


def test_initialize_without_layer_or_override_warns() -> None:
    model = FooNet()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    report = initialize(model, dict(type="Constant", val=1))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert any("initializes nothing" in w for w in report.warnings)


def test_initialize_override_reaches_nested_names() -> None:
    # mmengine's override only accepts direct attributes; ours takes module paths.
    model = FooNet()
    initialize(model, dict(type="Constant", layer="Conv1d", val=1,
                           override=dict(type="Constant", name="cls.1", val=7)))
    assert _filled(model.cls[1].weight, 7) and _filled(model.cls[0].weight, 1)


@pytest.mark.parametrize(
    "bad",
    [
        dict(type="Constant", layer=["Conv1d"], val=1, override=dict(type="Constant", val=3)),
        dict(type="Constant", layer=["Conv1d"], val=1, override=dict(name="reg", val=3, bias=4)),
    ],
)
def test_initialize_invalid_overrides(bad) -> None:
    model = FooNet()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(InitConfigError, match=r"init_cfg\.override"):
        initialize(model, bad)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_initialize_typo_in_layer_is_an_error_not_a_noop() -> None:
    with pytest.raises(InitConfigError, match="did you mean 'Conv2d'"):
        initialize(FooNet(), dict(type="Constant", layer="Conv2D", val=1))


def test_initialize_accepts_otx_class_names() -> None:
    model = FooNet()
    initialize(model, dict(type="ConstantInit", layer="Conv2d", val=5))
    assert _filled(model.reg.weight, 5)


def test_initialize_rejects_non_dict() -> None:
    with pytest.raises(TypeError):
        initialize(FooNet(), "Constant")


# ----------------------------------------------------------------------------- BaseModule
class FooConv1d(BaseModule):
    def __init__(self, init_cfg=None) -> None:
        super().__init__(init_cfg)
        self.conv1d = nn.Conv1d(4, 1, 4)


class FooConv2d(BaseModule):
    def __init__(self, init_cfg=None) -> None:
        super().__init__(init_cfg)
        self.conv2d = nn.Conv2d(3, 1, 3)


CFG1 = dict(type="Constant", layer="Conv1d", val=0.0, bias=1.0)
CFG2 = dict(type="Constant", layer="Conv2d", val=2.0, bias=3.0)
OUTER = dict(type="Constant", layer=["Conv1d", "Conv2d"], val=4.0, bias=5.0)


def _check_inner_wins(first: FooConv1d, second: FooConv2d) -> None:
    assert _filled(first.conv1d.weight, 0) and _filled(first.conv1d.bias, 1)
    assert _filled(second.conv2d.weight, 2) and _filled(second.conv2d.bias, 3)


def test_base_module_init_weights() -> None:
    model = FooConv1d(CFG1)
    model.init_weights()
    assert model.is_init and _filled(model.conv1d.weight, 0)


@pytest.mark.parametrize(
    "container",
    [
        lambda a, b, cfg: Sequential(a, b, init_cfg=cfg),
        lambda a, b, cfg: ModuleList([a, b], init_cfg=cfg),
        lambda a, b, cfg: ModuleDict({"a": a, "b": b}, init_cfg=cfg),
        # plain torch containers: children's init_cfg still apply via hydra_init.apply
        lambda a, b, cfg: nn.Sequential(a, b),
    ],
)
@pytest.mark.parametrize("outer", [None, OUTER])
def test_containers_inner_init_cfg_has_priority(container, outer) -> None:
    a, b = FooConv1d(CFG1), FooConv2d(CFG2)
    model = container(a, b, outer)
    if isinstance(model, BaseModule):
        model.init_weights()
    else:
        hydra_init.apply(model, outer and [outer], log=False)
    _check_inner_wins(a, b)


def test_outer_config_covers_children_without_their_own() -> None:
    a, b = FooConv1d(None), FooConv2d(CFG2)
    Sequential(a, b, init_cfg=OUTER).init_weights()
    assert _filled(a.conv1d.weight, 4) and _filled(b.conv2d.weight, 2)


class ToyConv(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.custom_weight = nn.Parameter(torch.empty(1, 1, 1, 1))
        self.custom_bias = nn.Parameter(torch.empty(1))

    def init_weights(self) -> None:
        with torch.no_grad():
            self.custom_weight.fill_(1)
            self.custom_bias.fill_(0)


class ToyNet(BaseModule):
    def __init__(self, init_cfg=None) -> None:
        super().__init__(init_cfg)
        self.conv1 = nn.Conv2d(1, 1, 1)
        self.conv2 = nn.Conv2d(1, 1, 1)
        self.custom_conv = ToyConv()


def test_custom_init_weights_runs_and_is_reported() -> None:
    net = ToyNet([dict(type="Kaiming", layer=["Conv2d"], override=dict(name="conv2", type="Xavier"))])
    report = net.init_weights()
    assert _filled(net.custom_conv.custom_weight, 1)
    rec = report["custom_conv.custom_weight"]
    assert rec.source == "custom" and "ToyConv.init_weights()" in rec.init
    # the override is reported as the writer of conv2.bias (mmengine's mean-based log
    # attributes it to Kaiming, because both set it to 0)
    assert report["conv2.bias"].rule.endswith("override[conv2]")
    assert report["conv2.weight"].init.startswith("Xavier")


class CustomSubclass(BaseModule):
    def __init__(self) -> None:
        super().__init__(dict(type="Constant", layer="Linear", val=1.0))
        self.fc = nn.Linear(2, 2)

    def init_weights(self) -> None:
        super().init_weights()
        with torch.no_grad():
            self.fc.bias.fill_(9.0)


def test_subclass_custom_init_weights_runs_once_without_warning(recwarn) -> None:
    parent = Sequential(CustomSubclass())
    parent.init_weights()
    assert _filled(parent[0].fc.weight, 1) and _filled(parent[0].fc.bias, 9)
    assert not [w for w in recwarn if "more than once" in str(w.message)]


def test_init_weights_twice_warns() -> None:
    model = FooConv1d(CFG1)
    model.init_weights()
    with pytest.warns(UserWarning, match="more than once"):
        model.init_weights()


def test_pretrained_part_does_not_block_new_children(tmp_path) -> None:
    """mmcv 1.x's trap: a Pretrained init_cfg returned early, leaving new children at defaults."""

    class Backbone(BaseModule):
        def __init__(self, init_cfg=None) -> None:
            super().__init__(init_cfg)
            self.stem = nn.Conv2d(3, 4, 3)
            self.adapter = FooConv2d(dict(type="Constant", layer="Conv2d", val=0.5, bias=0.0))

    source = Backbone()
    ckpt = tmp_path / "backbone.pth"
    torch.save({"stem.weight": source.stem.weight.detach(), "stem.bias": source.stem.bias.detach()}, ckpt)
    model = Backbone(dict(type="Pretrained", checkpoint=str(ckpt)))
    report = model.init_weights()
    assert torch.equal(model.stem.weight, source.stem.weight)
    assert _filled(model.adapter.conv2d.weight, 0.5)  # the new part got its rule
    assert report["stem.weight"].source == "pretrained"
