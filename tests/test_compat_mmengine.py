"""hydra_init.compat next to the real mmengine 0.10.7: the same code, run on both.

Each scenario is written once against an API namespace (mmengine's or ours) and
must give the same values, or raise the same exception type. Only deterministic
values are compared (constants, degenerate distributions, loaded tensors);
random draws differ by design (our seeded sampler) and are tested in
test_compat.py by their statistics. Where hydra_init deliberately differs (the
README's migration table), the test shows both behaviours.
"""

from __future__ import annotations

import types
import warnings
from collections.abc import Callable

import pytest
import torch
from torch import nn

import hydra_init.compat as hc
from hydra_init import InitConfigError

with warnings.catch_warnings():  # mmengine's import scripts functions with torch.jit (deprecated)
    warnings.simplefilter("ignore", DeprecationWarning)
    import mmengine.model as mm_model  # the pinned `bench` extra, part of `dev`
    import mmengine.model.weight_init as mm_init
    from mmengine.registry import WEIGHT_INITIALIZERS as MM_REGISTRY

NAMES = ["BaseModule", "Sequential", "ModuleList", "ModuleDict", "initialize", "constant_init",
         "xavier_init", "normal_init", "uniform_init", "kaiming_init", "trunc_normal_init",
         "bias_init_with_prob", "ConstantInit", "XavierInit", "NormalInit", "TruncNormalInit",
         "UniformInit", "KaimingInit", "Caffe2XavierInit", "PretrainedInit", "BaseInit"]
MM = types.SimpleNamespace(**{n: getattr(mm_model, n, None) or getattr(mm_init, n) for n in NAMES},
                           REGISTRY=MM_REGISTRY, name="mmengine")
HC = types.SimpleNamespace(**{n: getattr(hc, n) for n in NAMES}, REGISTRY=hc.WEIGHT_INITIALIZERS,
                           name="hydra_init")
BOTH = pytest.mark.parametrize("api", [MM, HC], ids=lambda a: a.name)


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _same_on_both(scenario: Callable[[types.SimpleNamespace], nn.Module]) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    ours = _state(scenario(HC))
    torch.manual_seed(0)
    theirs = _state(scenario(MM))
    assert ours.keys() == theirs.keys()
    for key in ours:
        assert torch.equal(ours[key], theirs[key]), (key, ours[key], theirs[key])
    return ours


class FooModule(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(1, 2)
        self.conv2d = nn.Conv2d(3, 1, 3)
        self.conv2d_2 = nn.Conv2d(3, 2, 3)


# ----------------------------------------------------------------------------- initializer classes
def test_initializer_classes_write_the_same_constants() -> None:
    def scenario(api):
        model = nn.Sequential(nn.Conv2d(3, 1, 3), nn.ReLU(), nn.Linear(1, 2), nn.Conv1d(1, 2, 1))
        api.ConstantInit(val=1, bias=2, layer="Conv2d")(model)
        api.ConstantInit(val=3, bias_prob=0.01, layer="Linear")(model)
        api.ConstantInit(val=4.0, bias=5.0, layer="_ConvNd")(model[3:])  # a direct base class
        return model

    state = _same_on_both(scenario)
    assert torch.all(state["2.bias"] == hc.bias_init_with_prob(0.01))


def test_initializer_classes_degenerate_and_bias_values() -> None:
    def scenario(api):
        model = nn.Sequential(nn.Conv2d(3, 1, 3), nn.ReLU(), nn.Linear(1, 2))
        api.UniformInit(a=1, b=1, bias=2, layer=["Conv2d", "Linear"])(model)
        api.NormalInit(mean=7, std=0, bias=3, layer="Linear")(model)
        for cls in (api.XavierInit, api.KaimingInit, api.Caffe2XavierInit):
            cls(bias=0.1, layer="Conv2d")(model)  # weights random: compare the bias only
        with torch.no_grad():
            model[0].weight.zero_()
        return model

    _same_on_both(scenario)


def test_model_apply_with_an_initializer() -> None:
    """mmcv's tests call model.apply(initializer): the initializer runs on every sub-module."""

    def scenario(api):
        model = nn.Sequential(nn.Conv2d(3, 1, 3), nn.ReLU(), nn.Linear(1, 2))
        model.apply(api.ConstantInit(val=0, bias=0.5, layer=["Conv2d", "Linear"]))
        return model

    _same_on_both(scenario)


@BOTH
@pytest.mark.parametrize(
    ("make", "kind"),
    [
        (lambda api: api.ConstantInit(val=1, bias="1"), TypeError),
        (lambda api: api.ConstantInit(val=1, bias_prob="1"), TypeError),
        (lambda api: api.ConstantInit(val=1, layer=1), TypeError),
        (lambda api: api.XavierInit(bias="0.1", layer="Conv2d"), TypeError),
        (lambda api: api.KaimingInit(bias=0.1, layer=1), TypeError),
        (lambda api: api.initialize(FooModule(), "init_cfg"), TypeError),
        (lambda api: api.initialize(FooModule(), dict(type="Constant", val=1, layer="Linear",
                                                      override="conv")), TypeError),
        (lambda api: api.initialize(FooModule(), dict(
            type="Constant", val=1, bias=2, layer=["Conv2d", "Linear"],
            override=dict(type="Constant", name="conv2d_3", val=3, bias=4))), RuntimeError),
        (lambda api: api.initialize(FooModule(), dict(
            type="Constant", val=1, bias=2, layer=["Conv2d", "Linear"],
            override=[dict(type="Constant", name="conv2d", val=3, bias=4),
                      dict(type="Constant", name="conv2d_3", val=5, bias=6)])), RuntimeError),
        (lambda api: api.initialize(FooModule(), dict(
            type="Constant", val=1, bias=2, override=dict(name="conv2d_2", val=3, bias=4))), ValueError),
        (lambda api: api.initialize(FooModule(), dict(
            type="Constant", val=1, bias=2, override=dict(type="Constant", val=3, bias=4))), ValueError),
        (lambda api: api.xavier_init(nn.Linear(2, 2), distribution="trunc"), AssertionError),
        (lambda api: api.kaiming_init(nn.Linear(2, 2), distribution="trunc"), AssertionError),
        (lambda api: api.initialize(nn.Linear(2, 2), dict(type="Xavier", layer="Linear",
                                                          distribution="trunc")), AssertionError),
        (lambda api: api.bias_init_with_prob(0), ZeroDivisionError),
        (lambda api: api.initialize(FooModule(), dict(type="Kaimin", layer="Conv2d")), KeyError),
        (lambda api: api.initialize(FooModule(), dict(type="Constant", vall=1, layer="Conv2d")), TypeError),
        (lambda api: api.initialize(FooModule(), dict(type="Pretrained", checkpoint="/no/such.pth")),
         FileNotFoundError),
    ],
)
def test_exception_types_match_mmengine(api, make, kind) -> None:
    with pytest.raises(kind) as info:
        make(api)
    if api is HC:  # and ours is still the one clear config error, with our message
        assert isinstance(info.value, InitConfigError), type(info.value).__mro__


# ----------------------------------------------------------------------------- initialize
def test_initialize_layer_override_and_configs_untouched() -> None:
    cfgs = [
        dict(type="Constant", layer=["Conv2d", "Linear"], val=1, bias=2),
        [dict(type="Constant", layer="Conv2d", val=1), dict(type="Constant", layer="Linear", val=2)],
        dict(type="Constant", val=1, bias=2, layer=["Conv2d", "Linear"],
             override=dict(type="Constant", name="conv2d_2", val=3, bias=4)),
        dict(type="Constant", val=5, bias=6, override=dict(name="conv2d_2")),
    ]

    def scenario(api):
        model = FooModule()
        api.constant_init(model.linear, 0.25, 0.5)
        for cfg in cfgs:
            before = repr(cfg)
            api.initialize(model, cfg)
            assert repr(cfg) == before  # the caller's config is not mutated
        api.constant_init(model.conv2d, 9)
        return model

    _same_on_both(scenario)


def test_class_objects_as_type() -> None:
    def scenario(api):
        model = FooModule()
        api.initialize(model, [dict(type=api.ConstantInit, val=2, bias=1, layer="Conv2d"),
                               dict(type=api.UniformInit, a=3, b=3, layer="Linear")])
        return model

    _same_on_both(scenario)


def test_pretrained_override_applies_after_loading(tmp_path) -> None:
    source = FooModule()
    hc.ConstantInit(val=1, bias=2, layer=["Conv2d", "Linear"])(source)
    ckpt = tmp_path / "modelA.pth"
    torch.save(source.state_dict(), ckpt)

    def scenario(api):
        model = FooModule()
        api.initialize(model, dict(type="Pretrained", checkpoint=str(ckpt),
                                   override=dict(type="Constant", name="conv2d_2", val=3, bias=4)))
        part = nn.Linear(1, 2)
        api.PretrainedInit(checkpoint=str(ckpt), prefix="linear.")(part)
        return nn.ModuleDict({"model": model, "part": part})

    state = _same_on_both(scenario)
    assert torch.all(state["model.conv2d_2.weight"] == 3) and torch.all(state["model.linear.weight"] == 1)


def test_user_initializer_registered_and_used_by_name() -> None:
    def scenario(api):
        @api.REGISTRY.register_module(name=f"Shift{api.name}", force=True)
        class ShiftInit(api.BaseInit):
            def __init__(self, shift=1.0, **kwargs):
                super().__init__(**kwargs)
                self.shift = shift

            def __call__(self, module):
                def init(m):
                    if self.wholemodule or type(m).__name__ in self.layer:
                        api.constant_init(m, self.shift, self.bias)

                module.apply(init)

        model = FooModule()
        api.initialize(model, dict(type=f"Shift{api.name}", shift=4.0, bias=-1.0, layer="Conv2d"))
        api.initialize(model, dict(type=ShiftInit, shift=2.0, override=dict(name="linear")))
        return model

    try:
        _same_on_both(scenario)
    finally:
        hc.WEIGHT_INITIALIZERS.unregister("Shifthydra_init")


# ----------------------------------------------------------------------------- BaseModule
def _classes(api):
    class FooConv1d(api.BaseModule):
        def __init__(self, init_cfg=None):
            super().__init__(init_cfg)
            self.conv1d = nn.Conv1d(4, 1, 4)

    class FooConv2d(api.BaseModule):
        def __init__(self, init_cfg=None):
            super().__init__(init_cfg)
            self.conv2d = nn.Conv2d(3, 1, 3)

    class FooLinear(api.BaseModule):
        def __init__(self, init_cfg=None):
            super().__init__(init_cfg)
            self.linear = nn.Linear(3, 4)

    class FooLinearConv1d(api.BaseModule):
        def __init__(self, init_cfg=None):
            super().__init__(init_cfg)
            self.linear = FooLinear()
            self.conv1d = FooConv1d()

    class FooModel(api.BaseModule):
        def __init__(self, init_cfg=None):
            super().__init__(init_cfg)
            self.component1 = FooConv1d()
            self.component2 = FooConv2d()
            self.component3 = FooLinear()
            self.component4 = FooLinearConv1d()
            self.reg = nn.Linear(3, 4)

    return types.SimpleNamespace(**locals())


MODEL_CFG = [dict(type="Constant", val=1, bias=2, layer="Linear"),
             dict(type="Constant", val=3, bias=4, layer="Conv1d"),
             dict(type="Constant", val=5, bias=6, layer="Conv2d")]


def test_base_module_tree_as_in_mmengine_suite() -> None:
    def scenario(api):
        model = _classes(api).FooModel(MODEL_CFG)
        assert model.is_init is False
        model.init_weights()
        assert model.is_init and model.component4.linear.is_init
        return model

    state = _same_on_both(scenario)
    assert torch.all(state["component4.conv1d.conv1d.weight"] == 3) and torch.all(state["reg.bias"] == 2)


@pytest.mark.parametrize("container", ["Sequential", "ModuleList", "ModuleDict"])
def test_containers_inner_init_cfg_wins(container) -> None:
    def scenario(api):
        c = _classes(api)
        parts = [c.FooConv1d(dict(type="Constant", layer="Conv1d", val=0.0, bias=1.0)),
                 c.FooConv2d(dict(type="Constant", layer="Conv2d", val=2.0, bias=3.0)), c.FooLinear()]
        outer = dict(type="Constant", layer=["Conv1d", "Conv2d", "Linear"], val=4.0, bias=5.0)
        cls = getattr(api, container)
        model = (cls(*parts, init_cfg=outer) if container == "Sequential" else
                 cls(parts, init_cfg=outer) if container == "ModuleList" else
                 cls({str(i): p for i, p in enumerate(parts)}, init_cfg=outer))
        model.init_weights()
        return model

    _same_on_both(scenario)


def test_custom_init_weights_once_on_class_and_instance(recwarn) -> None:
    calls: dict[str, list[str]] = {"hydra_init": [], "mmengine": []}

    def scenario(api):
        log = calls[api.name]

        class Custom(api.BaseModule):
            def __init__(self):
                super().__init__(dict(type="Constant", layer="Linear", val=1.0, bias=0.0))
                self.fc = nn.Linear(2, 2)

            def init_weights(self):
                super().init_weights()
                log.append("class")
                with torch.no_grad():
                    self.fc.bias.fill_(9.0)

        class Net(api.BaseModule):
            def __init__(self):
                super().__init__(dict(type="Constant", layer="Linear", val=4.0, bias=5.0))
                self.custom = Custom()
                self.other = _classes(api).FooLinear()
                self.plain = nn.Linear(2, 2)

        net = Net()

        def instance_init():
            log.append("instance")
            with torch.no_grad():
                net.other.linear.weight.fill_(-1.0)

        net.other.init_weights = instance_init
        net.custom.init_weights()  # the child first, then its parent: the child is not redone
        net.init_weights()
        return net

    # mmengine re-applies the parent's Linear rule to the initialized child; hydra_init keeps the
    # child as it was (the migration table's "already-initialized subtrees are skipped").
    torch.manual_seed(0)
    ours = _state(scenario(HC))
    theirs = _state(scenario(MM))
    assert calls["hydra_init"] == calls["mmengine"] == ["class", "instance"]
    kept = {"custom.fc.weight": (1.0, 4.0), "custom.fc.bias": (9.0, 5.0)}  # (ours, mmengine's)
    for key in ours:
        if key in kept:
            assert torch.all(ours[key] == kept[key][0]) and torch.all(theirs[key] == kept[key][1])
        else:
            assert torch.equal(ours[key], theirs[key]), key
    assert not [w for w in recwarn if "more than once" in str(w.message)]


def test_is_init_set_by_the_user_skips_the_child_init_weights() -> None:
    def scenario(api):
        model = _classes(api).FooModel()  # no outer init_cfg: mmengine leaves the children alone too
        model.component1.init_cfg = dict(type="Constant", val=8, layer="Conv1d")
        model.component1.is_init = True
        model.component2.init_cfg = dict(type="Constant", val=8, layer="Conv2d")
        with torch.no_grad():
            for p in model.parameters():
                p.fill_(0.5)
        model.init_weights()
        return model

    state = _same_on_both(scenario)
    assert torch.all(state["component1.conv1d.weight"] == 0.5)
    assert torch.all(state["component2.conv2d.weight"] == 8)


def test_pretrained_model_with_a_custom_new_part(tmp_path) -> None:
    """mmengine's suite: a Pretrained root does not stop a new part's own init_weights."""

    def scenario(api):
        c = _classes(api)
        source = c.FooModel(MODEL_CFG)
        source.init_weights()
        ckpt = tmp_path / f"{api.name}.pth"
        torch.save(source.state_dict(), ckpt)

        class CustomLinear(api.BaseModule):
            def __init__(self):
                super().__init__()
                self.linear = nn.Linear(1, 1)

            def init_weights(self):
                nn.init.constant_(self.linear.weight, 1)
                nn.init.constant_(self.linear.bias, 2)

        model = c.FooModel(dict(type="Pretrained", checkpoint=str(ckpt)))
        model.linear = CustomLinear()
        model.init_weights()
        return model

    state = _same_on_both(scenario)
    assert torch.all(state["linear.linear.bias"] == 2) and torch.all(state["component2.conv2d.bias"] == 6)


def test_checkpoint_wins_over_a_descendant_init_weights(tmp_path) -> None:
    """mmengine loads a Pretrained init_cfg after the descendants' init_weights() (its #691)."""

    def scenario(api):
        c = _classes(api)

        class Custom(api.BaseModule):
            def __init__(self):
                super().__init__()
                self.fc = nn.Linear(3, 4)
                self.extra = nn.Linear(2, 2)

            def init_weights(self):
                nn.init.constant_(self.fc.weight, -3.0)  # in the checkpoint: loaded again after this
                nn.init.constant_(self.extra.weight, -4.0)  # not in it: kept
                nn.init.constant_(self.extra.bias, 0.0)

        source = c.FooModel(MODEL_CFG)
        source.init_weights()
        source.custom = nn.Module()
        source.custom.fc = nn.Linear(3, 4)
        nn.init.constant_(source.custom.fc.weight, 0.75)
        nn.init.constant_(source.custom.fc.bias, 0.25)
        ckpt = tmp_path / f"{api.name}.pth"
        torch.save(source.state_dict(), ckpt)
        model = c.FooModel(dict(type="Pretrained", checkpoint=str(ckpt)))
        model.custom = Custom()
        model.init_weights()
        return model

    state = _same_on_both(scenario)
    assert torch.all(state["custom.fc.weight"] == 0.75) and torch.all(state["custom.extra.weight"] == -4.0)


@pytest.mark.parametrize(
    ("outer", "inner"),
    [
        # mmcv's test_without_layer_weight_init: an inner dict without layer initializes nothing
        (MODEL_CFG, dict(type="Constant", val=7, bias=8)),
        # test_override_weight_init: the outer dict reaches only the override's module
        ([dict(type="Constant", val=10, bias=20, override=dict(name="reg"))], None),
        ([dict(type="Constant", val=1, bias=2, override=dict(name="reg", type="Constant", val=30, bias=40))],
         dict(type="Constant", layer="Conv1d", val=5, bias=6)),
        # test_nest_components_weight_init: inner configs win over outer ones, at every depth
        (MODEL_CFG, [dict(type="Constant", layer="Conv1d", val=11, bias=12),
                     dict(type="Constant", layer="Linear", val=13, bias=14)]),
    ],
)
def test_outer_and_inner_configs_as_in_mmcv_suite(outer, inner) -> None:
    def scenario(api):
        model = _classes(api).FooModel(outer)
        model.component1.init_cfg = inner
        model.component4.init_cfg = inner
        with torch.no_grad():
            for p in model.parameters():
                p.fill_(-0.5)  # what no config touches stays at this value on both sides
        model.init_weights()
        return model

    _same_on_both(scenario)
