"""Meta-device build: same result as an eager build + apply, or a clear error.

The reference for "what an eager build leaves" is always computed here by
building the same model eagerly, never copied from the implementation.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import hydra_init
from hydra_init.meta import RESET_LABEL, MetaBuildError, build_and_init, build_meta
from hydra_init.meta import allocate as materialize


class Sinusoidal(nn.Module):
    """A fixed position table computed in __init__ (non-persistent, as in many transformers)."""

    def __init__(self, length: int, dim: int) -> None:
        super().__init__()
        position = torch.arange(length).unsqueeze(1)
        div = torch.exp(torch.arange(0, dim, 2) * (-math.log(10000.0) / dim))
        table = torch.zeros(length, dim)
        table[:, 0::2] = torch.sin(position * div)
        table[:, 1::2] = torch.cos(position * div)
        self.register_buffer("table", table, persistent=False)


class Rotary(nn.Module):
    """A RoPE cache: inverse frequencies and cos/sin tables."""

    def __init__(self, dim: int, length: int) -> None:
        super().__init__()
        inv_freq = 1.0 / (10000 ** (torch.arange(0, dim, 2).float() / dim))
        freqs = torch.outer(torch.arange(length).float(), inv_freq)
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        self.register_buffer("cos", freqs.cos(), persistent=False)
        self.register_buffer("sin", freqs.sin(), persistent=False)


class RMSNorm(nn.Module):
    """A parameter created with values and no reset_parameters() (a common custom module)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))


class Gate(nn.Module):
    """An uninitialized parameter (torch.empty) and no reset_parameters()."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.gate = nn.Parameter(torch.empty(dim, dim))


class Net(nn.Module):
    def __init__(self, with_gate: bool = False) -> None:
        super().__init__()
        self.embed = nn.Embedding(11, 8, padding_idx=3)
        self.pos = Sinusoidal(6, 8)
        self.rope = Rotary(8, 6)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, 8))
        self.conv = nn.Conv1d(8, 8, 3)
        self.bn = nn.BatchNorm1d(8)
        self.norm = RMSNorm(8)
        self.fc = nn.Linear(8, 4)
        self.gate = Gate(4) if with_gate else None
        self.head = nn.Linear(4, 11, bias=False)
        self.head.weight = nn.Parameter(torch.empty(11, 4))


CFG = {"seed": 5, "rules": {
    "linear": {"type": "TruncNormal", "layer": "Linear", "std": 0.02, "a": -2, "b": 2, "bound_unit": "std"},
    "embed": {"type": "Normal", "layer": "Embedding", "std": 0.02},
}}
# What the meta build does for parameters no rule covers, written out for an eager model.
EAGER_EQUIVALENT = {"seed": 5, "rules": {
    **CFG["rules"],
    "defaults": {"type": "Default", "layer": ["Conv1d", "BatchNorm1d"], "priority": -1},
}}


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    out = dict(model.named_parameters(remove_duplicate=False))
    out.update(model.named_buffers(remove_duplicate=False))
    lazy = nn.parameter.UninitializedTensorMixin
    return {k: v if isinstance(v, lazy) else v.detach() for k, v in out.items()}


def test_meta_build_equals_eager_build_then_apply():
    torch.manual_seed(0)
    eager = Net()
    hydra_init.apply(eager, EAGER_EQUIVALENT, log=False)
    model, report = build_and_init(Net, CFG, device="cpu", log=False)
    expected, got = _state(eager), _state(model)
    assert expected.keys() == got.keys()
    for name, tensor in expected.items():
        assert not got[name].is_meta, name
        assert torch.equal(tensor, got[name]), name
    assert set(report.by_source("reset")) == {"conv.weight", "conv.bias", "bn.weight", "bn.bias"}
    assert report["conv.weight"].rule == RESET_LABEL


def test_buffers_and_valued_parameters_are_computed_as_in_eager():
    eager = Net()
    model, _ = build_and_init(Net, CFG, device="cpu", log=False)
    for name in ("pos.table", "rope.inv_freq", "rope.cos", "rope.sin", "bn.running_mean",
                 "bn.running_var", "bn.num_batches_tracked", "cls_token", "norm.weight"):
        assert torch.equal(_state(eager)[name], _state(model)[name]), name
    assert model.bn.num_batches_tracked.item() == 0


def test_embedding_padding_row_is_zero_after_a_rule_and_after_a_reset():
    model, _ = build_and_init(Net, CFG, device="cpu", log=False)
    assert torch.count_nonzero(model.embed.weight[3]) == 0
    assert torch.count_nonzero(model.embed.weight) == 10 * 8  # the other rows were drawn
    model, report = build_and_init(Net, {"seed": 1, "rules": {}}, device="cpu", log=False)
    assert report["embed.weight"].source == "reset"
    assert torch.count_nonzero(model.embed.weight[3]) == 0


def test_uninitialized_parameter_without_rule_or_reset_is_a_config_error_naming_it():
    with pytest.raises(hydra_init.InitConfigError, match=r"gate\.gate.*Gate.*no reset_parameters"):
        build_and_init(lambda: Net(with_gate=True), CFG, device="cpu", log=False)
    cfg = {"seed": 5, "rules": {**CFG["rules"], "gate": {"type": "Orthogonal", "layer": "Gate",
                                                           "params": "gate"}}}
    model, report = build_and_init(lambda: Net(with_gate=True), cfg, device="cpu", log=False)
    assert report["gate.gate"].source == "rule"
    assert torch.allclose(model.gate.gate @ model.gate.gate.T, torch.eye(4), atol=1e-5)


class EmptyBuffer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("stats", torch.empty(4))
        self.stats.fill_(1.0)  # values written in place into an uninitialized tensor


class RandomBuffer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("projection", torch.randn(4, 4) / 2)


class WeightCopy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(2, 2)
        self.register_buffer("initial", self.fc.weight.detach().clone())


@pytest.mark.parametrize(
    ("cls", "message"),
    [(EmptyBuffer, r"buffer stats of <root> \(EmptyBuffer\).*uninitialized"),
     (RandomBuffer, r"buffer projection of <root> \(RandomBuffer\).*random"),
     (WeightCopy, r"buffer initial of <root> \(WeightCopy\).*uninitialized")],
)
def test_buffers_that_cannot_be_reproduced_fail_naming_the_module(cls, message):
    with pytest.raises(MetaBuildError, match=message):
        build_and_init(cls, {}, device="cpu", log=False)


def test_a_nested_offending_module_is_named_by_its_path():
    with pytest.raises(MetaBuildError, match=r"block\.1\.projection of block\.1 \(RandomBuffer\)"):
        build_meta(lambda: nn.ModuleDict({"block": nn.Sequential(nn.Linear(2, 2), RandomBuffer())}))


class RandomParam(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.pos = nn.Parameter(torch.randn(3, 4) * 0.02)


def test_random_parameters_built_in_init_are_seeded_and_leave_the_global_rng_alone():
    state = torch.random.get_rng_state()
    a, _ = build_and_init(RandomParam, {"seed": 3}, device="cpu", log=False)
    assert torch.equal(state, torch.random.get_rng_state())
    b, _ = build_and_init(RandomParam, {"seed": 3}, device="cpu", log=False)
    c, _ = build_and_init(RandomParam, {"seed": 4}, device="cpu", log=False)
    assert torch.equal(a.pos, b.pos) and not torch.equal(a.pos, c.pos)


def test_tied_weights_stay_tied():
    def build() -> nn.Module:
        model = nn.Sequential(nn.Embedding(7, 4), nn.Linear(4, 7, bias=False))
        model[1].weight = model[0].weight
        return model

    model, report = build_and_init(build, {"seed": 0, "rules": {"e": {"type": "Normal", "std": 0.02,
                                                                       "layer": "Embedding"}}},
                                   device="cpu", log=False)
    assert model[1].weight is model[0].weight
    assert report.totals["params"] == 1 and float(model[0].weight.detach().std()) > 0


def test_config_errors_come_before_any_allocation():
    built = []

    def build() -> nn.Module:
        built.append(1)
        return nn.Linear(2, 2)

    with pytest.raises(hydra_init.InitConfigError, match="Kaimin"):
        build_and_init(build, {"rules": {"x": {"type": "Kaimin"}}}, device="cpu", log=False)
    assert not built  # the config is parsed before build() runs


def test_materialize_keeps_values_and_allocates_the_rest():
    model = build_meta(lambda: nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3)))
    materialize(model, "cpu")
    assert not any(t.is_meta for t in _state(model).values())
    assert torch.equal(model[1].running_var, torch.ones(3))


def test_without_a_seed_torch_manual_seed_decides():
    torch.manual_seed(7)
    a, _ = build_and_init(Net, {"rules": CFG["rules"]}, device="cpu", log=False)
    torch.manual_seed(7)
    b, _ = build_and_init(Net, {"rules": CFG["rules"]}, device="cpu", log=False)
    torch.manual_seed(8)
    c, _ = build_and_init(Net, {"rules": CFG["rules"]}, device="cpu", log=False)
    assert all(torch.equal(x, y) for x, y in zip(_state(a).values(), _state(b).values(), strict=True))
    assert not torch.equal(a.fc.weight, c.fc.weight)


class Mixed(nn.Module):
    """Modules with their own parameter names, fused weights and lazy parameters."""

    def __init__(self) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(8, 2)
        self.gru = nn.GRU(8, 8, 2)
        self.layer = nn.TransformerEncoderLayer(8, 2, 16)
        self.lazy = nn.LazyLinear(3)


def test_uncovered_parameters_get_their_module_reset_exactly_as_a_default_rule():
    eager = Mixed()
    hydra_init.apply(eager, {"seed": 1, "rules": {"all": {"type": "Default", "params": "*"}}}, log=False)
    model, report = build_and_init(Mixed, {"seed": 1}, device="cpu", log=False)
    for name, tensor in _state(eager).items():
        if isinstance(tensor, nn.parameter.UninitializedTensorMixin):
            assert isinstance(_state(model)[name], nn.parameter.UninitializedTensorMixin)
        else:
            assert torch.equal(tensor, _state(model)[name]), name
    assert report.totals["lazy"] == 2
    x = torch.randn(5, 2, 8)  # the model works: GRU flat weights refreshed, lazy layer materializes
    assert model.gru(x)[0].shape == (5, 2, 8) and model.lazy(x).shape == (5, 2, 3)


def test_a_checkpoint_loads_into_a_meta_build_and_the_rest_is_initialized(tmp_path):
    class Backbone(nn.Module):
        def __init__(self, adapter: bool = False) -> None:
            super().__init__()
            self.conv = nn.Conv1d(4, 6, 3)
            self.bn = nn.BatchNorm1d(6)
            self.adapter = nn.Linear(6, 6) if adapter else None

    source = Backbone()
    source.bn.running_mean.fill_(0.5)  # a trained statistic: must come from the checkpoint
    torch.save(source.state_dict(), tmp_path / "ckpt.pt")
    cfg = {"seed": 0, "rules": {
        "pretrained": {"type": "Pretrained", "checkpoint": str(tmp_path / "ckpt.pt")},
        "adapter": {"type": "Zeros", "layer": "Linear"},
    }}
    model, report = build_and_init(lambda: Backbone(adapter=True), cfg, device="cpu", log=False)
    for name, tensor in source.state_dict().items():
        assert torch.equal(model.state_dict()[name], tensor), name
    assert report["adapter.weight"].source == "rule" and torch.count_nonzero(model.adapter.weight) == 0


def test_apply_on_an_unmaterialized_meta_model_is_a_clear_error():
    with torch.device("meta"):
        model = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4))
    with pytest.raises(hydra_init.InitConfigError, match=r"'0\.weight' is on the meta device.*to_empty"):
        hydra_init.apply(model, CFG, log=False)
    assert hydra_init.plan(model, CFG).totals["rule"] == 2  # a dry run needs no storage


class ScratchBuffer(nn.Module):
    """A buffer computed through torch.empty_like scratch space of a real tensor."""

    def __init__(self) -> None:
        super().__init__()
        angles = torch.linspace(0, 3, 5)
        out = torch.empty_like(angles)
        torch.cos(angles, out=out)
        self.register_buffer("table", out)
        self.fc = nn.Linear(5, 5)


class ReadsWeight(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 3)
        self.scale = float(self.fc.weight.detach().abs().max())  # needs the default init values


def test_scratch_space_of_real_tensors_stays_real():
    model, _ = build_and_init(ScratchBuffer, CFG, device="cpu", log=False)
    assert torch.equal(model.table, ScratchBuffer().table)


def test_an_init_that_reads_weight_values_fails_with_a_meta_build_error():
    with pytest.raises(MetaBuildError, match="build this model eagerly"):
        build_and_init(ReadsWeight, CFG, device="cpu", log=False)
