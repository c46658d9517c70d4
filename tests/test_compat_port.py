"""What an mmengine user porting code relies on, beyond values: reports, errors, registry, edges."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import hydra_init
from hydra_init import InitConfigError
from hydra_init.compat import (
    INITIALIZERS,
    WEIGHT_INITIALIZERS,
    BaseInit,
    BaseModule,
    ConstantInit,
    KaimingInit,
    NormalInit,
    PretrainedInit,
    Sequential,
    UniformInit,
    bias_init_with_prob,
    initialize,
    normal_init,
    trunc_normal_,
    uniform_init,
)
from hydra_init.compat.base_module import SKIPPED_NOTE


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _unchanged(model: nn.Module, before: dict[str, torch.Tensor]) -> bool:
    return all(torch.equal(before[k], v) for k, v in model.state_dict().items())


class Leaf(BaseModule):
    def __init__(self, init_cfg=None) -> None:
        super().__init__(init_cfg)
        self.fc = nn.Linear(3, 3)


class Parent(BaseModule):
    def __init__(self, init_cfg=None) -> None:
        super().__init__(init_cfg)
        self.child = Leaf(dict(type="Constant", layer="Linear", val=1.0, bias=0.0))
        self.head = nn.Linear(3, 2)


# ----------------------------------------------------------------------------- is_init and skipping
def test_initialized_child_is_not_redrawn_and_is_reported_as_skipped() -> None:
    model = Parent(dict(type="Normal", std=0.5, layer="Linear"))
    model.child.init_weights()
    with torch.no_grad():
        model.child.fc.weight.fill_(7.0)  # what the user did after initializing the child
    report = model.init_weights()
    assert torch.all(model.child.fc.weight == 7.0)
    assert report["child.fc.weight"].source == "default" and report["child.fc.weight"].detail == SKIPPED_NOTE
    assert report["head.weight"].source == "rule"


def test_is_init_setter() -> None:
    model = Parent()
    model.is_init = True
    assert model.is_init
    with pytest.warns(UserWarning, match="more than once"):
        assert model.init_weights() is None


# ----------------------------------------------------------------------------- custom init_weights
class Toy(nn.Module):  # not a BaseModule: its init_weights() is called, as mmengine does
    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.empty(4))
        self.calls = 0

    def init_weights(self) -> None:
        self.calls += 1
        nn.init.constant_(self.scale, 3.0)


class Inner(BaseModule):
    def __init__(self) -> None:
        super().__init__(dict(type="Constant", layer="Linear", val=2.0, bias=0.0))
        self.fc = nn.Linear(2, 2)
        self.toy = Toy()

    def init_weights(self) -> None:
        super().init_weights()
        with torch.no_grad():
            self.fc.bias.fill_(-1.0)  # overwrites a rule's value


class Outer(BaseModule):
    def __init__(self, init_cfg=None) -> None:
        super().__init__(init_cfg)
        self.inner = Inner()
        self.seq = nn.Sequential(Toy())  # reached through a plain container


def test_report_names_the_init_weights_that_wrote_last() -> None:
    model = Outer()
    report = model.init_weights()
    assert model.inner.toy.calls == 1 and model.seq[0].calls == 1  # exactly once each
    rec = report["inner.fc.bias"]
    assert rec.source == "custom" and rec.init == "Inner.init_weights() [inner]"
    assert rec.detail == "overwrote rule 'inner:Constant[0]' (bias=0)"  # what it overwrote
    assert report["inner.toy.scale"].init == "Toy.init_weights() [inner.toy]"  # the nested writer
    assert report["seq.0.scale"].source == "custom"
    assert report["inner.fc.weight"].source == "rule"  # untouched by the custom code


def test_instance_init_weights_is_called_and_reported() -> None:
    model = Parent()
    seen = []

    def init_weights() -> None:
        seen.append(1)
        nn.init.zeros_(model.child.fc.weight)

    model.child.init_weights = init_weights
    report = model.init_weights()
    assert seen == [1] and torch.all(model.child.fc.weight == 0)
    assert report["child.fc.weight"].init == "Leaf.init_weights() [child]"


def test_custom_writes_silence_the_left_at_default_warning(tmp_path) -> None:
    class Net(BaseModule):
        def __init__(self, init_cfg=None) -> None:
            super().__init__(init_cfg)
            self.stem = nn.Linear(3, 3)
            self.toy = Toy()  # not in the checkpoint, written by its own init_weights()

    ckpt = tmp_path / "stem.pth"
    torch.save({"stem.weight": torch.ones(3, 3), "stem.bias": torch.zeros(3)}, ckpt)
    report = Net(dict(type="Pretrained", checkpoint=str(ckpt))).init_weights()
    assert report["toy.scale"].source == "custom"
    assert not [w for w in report.warnings if "keep their current values" in w]


def test_failing_config_leaves_the_model_bit_identical() -> None:
    model = Outer([dict(type="Constant", layer="Linear", val=1.0),
                   dict(type="Kaiming", layer="Conv2D")])  # typo
    before = _state(model)
    with pytest.raises(InitConfigError, match="did you mean 'Conv2d'"):
        model.init_weights()
    assert _unchanged(model, before) and not model.is_init and model.inner.toy.calls == 0


# ----------------------------------------------------------------------------- Pretrained override
def test_pretrained_override_in_a_module_init_cfg(tmp_path) -> None:
    source = Parent()
    ckpt = tmp_path / "parent.pth"
    torch.save(source.state_dict(), ckpt)
    model = Parent(dict(type="Pretrained", checkpoint=str(ckpt),
                        override=dict(type="Constant", name="head", val=3.0, bias=4.0)))
    cfg_before = repr(model.init_cfg)
    report = model.init_weights()
    assert torch.all(model.head.weight == 3.0) and torch.all(model.head.bias == 4.0)
    assert report["head.weight"].source == "rule" and report["child.fc.weight"].source == "pretrained"
    assert repr(model.init_cfg) == cfg_before  # the module's own config is restored


def test_native_rule_shadowed_by_a_checkpoint_warns(tmp_path) -> None:
    model = nn.Sequential(nn.Linear(3, 3))
    ckpt = tmp_path / "m.pth"
    torch.save(model.state_dict(), ckpt)
    report = hydra_init.plan(model, {"rules": {
        "load": {"type": "Pretrained", "checkpoint": str(ckpt)},
        "fc": {"type": "Normal", "std": 0.02, "layer": "Linear"},
    }})
    assert any("rule 'fc' never writes" in w and "'load'" in w and "reinit" in w for w in report.warnings)


# ----------------------------------------------------------------------------- classes and registry
def test_registry_names_and_mmcv_alias() -> None:
    assert INITIALIZERS is WEIGHT_INITIALIZERS
    assert WEIGHT_INITIALIZERS.get("Kaiming") is KaimingInit and "Pretrained" in WEIGHT_INITIALIZERS
    assert WEIGHT_INITIALIZERS.get("PretrainedInit") is PretrainedInit
    with pytest.raises(KeyError, match="did you mean 'Constant'"):
        WEIGHT_INITIALIZERS.build(dict(type="Konstant"))
    with pytest.raises(KeyError, match="already registered"):
        WEIGHT_INITIALIZERS.register_module(name="Kaiming", module=type("K", (BaseInit,), {}))


def test_registered_class_in_a_native_config_and_its_errors() -> None:
    @WEIGHT_INITIALIZERS.register_module()
    class OffsetInit(BaseInit):
        def __init__(self, offset, **kwargs):
            super().__init__(**kwargs)
            if offset < 0:
                raise ValueError("offset must be >= 0")
            self.offset = offset

        def __call__(self, module):
            with torch.no_grad():
                module.weight.fill_(self.offset)
                module.bias.fill_(self.bias)

    try:
        model = nn.Sequential(nn.Linear(2, 2), nn.Conv2d(1, 1, 1))
        report = hydra_init.apply(model, {"seed": 0, "rules": {
            "fc": {"type": "OffsetInit", "layer": "Linear", "offset": 2.5, "bias": 1.0}}}, log=False)
        assert torch.all(model[0].weight == 2.5) and torch.all(model[0].bias == 1.0)
        assert report["0.weight"].init == "OffsetInit(offset=2.5)"
        before = _state(model)
        with pytest.raises(InitConfigError, match="needs the argument 'offset'"):
            hydra_init.apply(model, {"rules": {"fc": {"type": "OffsetInit", "layer": "Linear"}}})
        with pytest.raises(ValueError, match="offset must be >= 0") as info:  # the user's own check
            initialize(model, dict(type=OffsetInit, layer="Linear", offset=-1))
        assert isinstance(info.value, InitConfigError)
        assert _unchanged(model, before)
    finally:
        WEIGHT_INITIALIZERS.unregister("OffsetInit")


def test_class_object_that_is_not_an_initializer_is_refused() -> None:
    with pytest.raises(InitConfigError, match="class Linear is not an initializer"):
        initialize(nn.Linear(2, 2), dict(type=nn.Linear, layer="Linear"))


def test_initializer_class_call_returns_the_report() -> None:
    model = nn.Sequential(nn.Linear(4, 4))
    report = NormalInit(std=0.0, mean=1.5, layer="Linear")(model)
    assert torch.all(model[0].weight == 1.5) and report["0.weight"].init.startswith("Normal")
    assert ConstantInit(val=1)(model) is None  # no layer: nothing, as in mmengine


# ----------------------------------------------------------------------------- degenerate and edges
def test_degenerate_values_fill_the_constant() -> None:
    layer = nn.Linear(3, 3)
    uniform_init(layer, 1, 1)
    assert torch.all(layer.weight == 1)
    normal_init(layer, mean=-2, std=0)
    assert torch.all(layer.weight == -2)
    UniformInit(a=0.5, b=0.5, layer="Linear")(layer)
    assert torch.all(layer.weight == 0.5)


@pytest.mark.parametrize(("value", "kind"), [(0, ZeroDivisionError), (1, ValueError), (1.5, ValueError),
                                            (-0.1, ValueError), (math.nan, ValueError), ("0.1", TypeError)])
def test_bias_init_with_prob_edges(value, kind) -> None:
    with pytest.raises(kind, match="prior_prob") as info:
        bias_init_with_prob(value)
    assert isinstance(info.value, InitConfigError)


def test_trunc_normal_refuses_integer_tensors() -> None:
    tensor = torch.zeros(4, dtype=torch.int64)
    with pytest.raises(RuntimeError, match="int64") as info:
        trunc_normal_(tensor)
    assert isinstance(info.value, InitConfigError) and torch.all(tensor == 0)


def test_negative_std_and_reversed_bounds_keep_torch_types() -> None:
    with pytest.raises(RuntimeError, match="std=-1"):
        normal_init(nn.Linear(2, 2), std=-1)
    with pytest.raises(RuntimeError, match="above b"):
        initialize(nn.Linear(2, 2), dict(type="Uniform", a=1, b=0, layer="Linear"))


def test_seeded_container_init_is_reproducible() -> None:
    weights = []
    for _ in range(2):
        model = Sequential(nn.Linear(8, 8), init_cfg=dict(type="Kaiming", layer="Linear"))
        torch.manual_seed(5)  # the draws follow torch's global generator, as in mmengine
        model.init_weights()
        weights.append(model[0].weight.detach().clone())
    assert torch.equal(*weights)


def test_shared_child_is_visited_once(recwarn) -> None:
    toy = Toy()
    model = Sequential(Sequential(toy), Sequential(toy))
    model.init_weights()
    assert toy.calls == 1 and not [w for w in recwarn if "more than once" in str(w.message)]
