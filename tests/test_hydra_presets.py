"""The ``init`` config group: every preset composed through Hydra's compose API and applied.

Each preset is composed exactly as an app selects it (``init=<preset>``, served by
the search-path plugin), applied to :class:`Net`, a model holding every layer
family the presets target, and its statistics are checked against the formulas.
Every parameter starts as NaN, so a parameter a preset forgets stays NaN.

Statistical tolerances come from ``tests/helpers.py``: 6 standard errors of
the statistic for the sample size (conv weight 18,432 samples, linear 131,072,
embedding 64,000), i.e. a few percent of the std, while a wrong fan (fan_in
288 vs fan_out 576 for the conv) or a missing gain is off by 41% or more.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from helpers import assert_bounds, assert_mean, assert_std, trunc_std_factor
from hydra import compose, initialize
from omegaconf import DictConfig, OmegaConf
from torch import nn

import hydra_init
from hydra_init.integration import conf_dir
from hydra_init.integration.recipe_schemas import RECIPE_SCHEMAS

BASE_PRESETS = [
    "kaiming_conv", "kaiming_uniform", "xavier", "xavier_uniform", "normal", "trunc_normal",
    "uniform", "constant", "caffe2_xavier", "orthogonal", "lecun_normal", "pytorch_default",
]
CONV_FAN_IN, CONV_FAN_OUT = 32 * 9, 64 * 9
FC_FAN_IN, FC_FAN_OUT = 512, 256


class Net(nn.Module):
    """Conv2d + BatchNorm2d, Linear + LayerNorm, Embedding, and a ``head``."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(32, 64, 3)
        self.bn = nn.BatchNorm2d(64)
        self.fc = nn.Linear(FC_FAN_IN, FC_FAN_OUT)
        self.ln = nn.LayerNorm(FC_FAN_OUT)
        self.emb = nn.Embedding(1000, 64)
        self.head = nn.Linear(FC_FAN_OUT, 10)


def poisoned_net() -> Net:
    torch.manual_seed(0)
    net = Net()
    with torch.no_grad():
        for p in net.parameters():
            p.fill_(float("nan"))
    return net


@pytest.fixture(scope="module")
def compose_init() -> Iterator[Callable[..., DictConfig]]:
    """``compose_init("xavier", "init.std=1")``: the composed config of an app with no config of its own."""
    hydra_init.register()  # a no-op when Hydra discovered the plugin itself
    with initialize(version_base=None, config_path=None):

        def compose_fn(preset: str, *overrides: str, hydra_node: bool = False) -> DictConfig:
            return compose(overrides=[f"+init={preset}", *overrides], return_hydra_config=hydra_node)

        yield compose_fn


def apply_preset(compose_init, preset: str, *overrides: str) -> tuple[Net, hydra_init.InitReport]:
    net = poisoned_net()
    report = hydra_init.Init.from_config(compose_init(preset, *overrides).init)(net, log=False)
    return net, report


def assert_knob_refused(compose_init, preset: str, knob: str, value: str) -> None:
    """A knob the preset does not have: Hydra refuses ``init.<knob>=...`` (the lean preset holds no
    such key), and ours refuses the forced ``+init.<knob>=...`` naming the key."""
    from hydra.errors import ConfigCompositionException

    with pytest.raises(ConfigCompositionException, match=rf"Could not override 'init\.{knob}'"):
        compose_init(preset, f"init.{knob}={value}")
    with pytest.raises(hydra_init.InitConfigError, match=rf"^init\.{knob}: '{knob}' is set but no rule"):
        apply_preset(compose_init, preset, f"+init.{knob}={value}")


def w(net: Net, name: str) -> torch.Tensor:
    return net.get_parameter(name).detach().double()


# ------------------------------------------------------------------ expectations per preset
def normal(std: float) -> Callable[[torch.Tensor], None]:
    def check(x: torch.Tensor) -> None:
        assert_mean(x, 0.0, std)
        assert_std(x, std)

    return check


def uniform(bound: float) -> Callable[[torch.Tensor], None]:
    def check(x: torch.Tensor) -> None:
        assert_bounds(x, -bound, bound, density_at_edges=1 / (2 * bound))
        assert_std(x, bound / math.sqrt(3), kurtosis=1.8)

    return check


def trunc_normal(std: float, cut: float) -> Callable[[torch.Tensor], None]:
    """N(0, std^2) truncated at +-cut std."""

    def check(x: torch.Tensor) -> None:
        # density of the truncated normal at its edges, in 1/std units: phi(cut) / (mass in [-cut, cut])
        edge = math.exp(-0.5 * cut * cut) / math.sqrt(2 * math.pi) / math.erf(cut / math.sqrt(2)) / std
        assert_bounds(x, -cut * std, cut * std, density_at_edges=edge)
        assert_std(x, std * trunc_std_factor(cut))

    return check


def orthogonal(gain: float) -> Callable[[torch.Tensor], None]:
    def check(x: torch.Tensor) -> None:
        m = x.reshape(x.shape[0], -1)
        small = m @ m.T if m.shape[0] <= m.shape[1] else m.T @ m
        torch.testing.assert_close(small, gain**2 * torch.eye(small.shape[0], dtype=small.dtype),
                                   atol=1e-5, rtol=0)

    return check


def constant(val: float) -> Callable[[torch.Tensor], None]:
    def check(x: torch.Tensor) -> None:
        assert bool((x == val).all())

    return check


def lecun(fan_in: int) -> Callable[[torch.Tensor], None]:
    # variance 1/fan_in after truncation at +-2 of the drawn normal: drawn std = sqrt(1/fan_in) / 0.8796
    return trunc_normal(math.sqrt(1 / fan_in) / trunc_std_factor(2.0), 2.0)


RELU_GAIN = math.sqrt(2.0)
EXPECTED: dict[str, dict[str, Callable[[torch.Tensor], None] | None]] = {
    # parameter -> expectation; None: left at its default (stays NaN here)
    "kaiming_conv": {"conv.weight": normal(RELU_GAIN / math.sqrt(CONV_FAN_OUT)),
                     "fc.weight": normal(RELU_GAIN / math.sqrt(FC_FAN_IN)), "emb.weight": None},
    "kaiming_uniform": {"conv.weight": uniform(RELU_GAIN * math.sqrt(3 / CONV_FAN_IN)),
                        "fc.weight": uniform(RELU_GAIN * math.sqrt(3 / FC_FAN_IN)), "emb.weight": None},
    "xavier": {"conv.weight": normal(math.sqrt(2 / (CONV_FAN_IN + CONV_FAN_OUT))),
               "fc.weight": normal(math.sqrt(2 / (FC_FAN_IN + FC_FAN_OUT))), "emb.weight": None},
    "xavier_uniform": {"conv.weight": uniform(math.sqrt(6 / (CONV_FAN_IN + CONV_FAN_OUT))),
                       "fc.weight": uniform(math.sqrt(6 / (FC_FAN_IN + FC_FAN_OUT))), "emb.weight": None},
    "normal": {"conv.weight": normal(0.01), "fc.weight": normal(0.01), "emb.weight": normal(0.01)},
    "trunc_normal": {"conv.weight": trunc_normal(0.02, 2.0), "fc.weight": trunc_normal(0.02, 2.0),
                     "emb.weight": trunc_normal(0.02, 2.0)},
    "uniform": {"conv.weight": uniform(0.05), "fc.weight": uniform(0.05), "emb.weight": uniform(0.05)},
    "constant": {"conv.weight": constant(0.0), "fc.weight": constant(0.0), "emb.weight": constant(0.0)},
    "caffe2_xavier": {"conv.weight": uniform(math.sqrt(3 / CONV_FAN_IN)),
                      "fc.weight": uniform(math.sqrt(3 / FC_FAN_IN)), "emb.weight": None},
    "orthogonal": {"conv.weight": orthogonal(1.0), "fc.weight": orthogonal(1.0), "emb.weight": None},
    "lecun_normal": {"conv.weight": lecun(CONV_FAN_IN), "fc.weight": lecun(FC_FAN_IN), "emb.weight": None},
    # torch's reset_parameters(): kaiming_uniform(a=sqrt(5)) = U(+-1/sqrt(fan_in)); Embedding N(0, 1)
    "pytorch_default": {"conv.weight": uniform(1 / math.sqrt(CONV_FAN_IN)),
                        "fc.weight": uniform(1 / math.sqrt(FC_FAN_IN)), "emb.weight": normal(1.0)},
}


@pytest.mark.parametrize("preset", BASE_PRESETS)
def test_preset_statistics(compose_init, preset):
    net, report = apply_preset(compose_init, preset)
    for name, check in EXPECTED[preset].items():
        if check is None:
            assert report[name].source == "default" and torch.isnan(w(net, name)).all(), name
        else:
            check(w(net, name))
    # norm layers: weight 1, bias 0, in every preset
    for norm in ("bn", "ln"):
        assert bool((w(net, f"{norm}.weight") == 1).all()) and bool((w(net, f"{norm}.bias") == 0).all())
    if preset == "pytorch_default":  # Linear/Conv biases: U(+-1/sqrt(fan_in)) as torch draws them
        assert w(net, "fc.bias").abs().max() <= 1 / math.sqrt(FC_FAN_IN)
        assert w(net, "fc.bias").std() > 0
    else:
        for bias in ("conv.bias", "fc.bias", "head.bias"):
            assert bool((w(net, bias) == 0).all()), bias
    assert report.warnings == []  # Net holds every targeted family: nothing matched nothing


# ------------------------------------------------------------------ knobs
STD_PRESETS = {"normal", "trunc_normal"}


@pytest.mark.parametrize("preset", BASE_PRESETS)
def test_bias_knob_reaches_every_rule_that_uses_it(compose_init, preset):
    if preset == "pytorch_default":  # the modules' own reset draws the bias: the knob means nothing
        assert_knob_refused(compose_init, preset, "bias", "0.1")
        return
    net, _ = apply_preset(compose_init, preset, "init.bias=0.1")
    for bias in ("conv.bias", "fc.bias", "head.bias"):
        assert torch.allclose(w(net, bias), torch.tensor(0.1, dtype=torch.float64)), bias
    assert bool((w(net, "bn.bias") == 0).all())  # norm biases are not the knob's


@pytest.mark.parametrize("preset", BASE_PRESETS)
def test_std_knob_where_it_means_something(compose_init, preset):
    if preset not in STD_PRESETS:
        assert_knob_refused(compose_init, preset, "std", "0.05")
        return
    net, _ = apply_preset(compose_init, preset, "init.std=0.05")
    drawn = 0.05 * (trunc_std_factor(2.0) if preset == "trunc_normal" else 1.0)
    assert_std(w(net, "fc.weight"), drawn)
    assert_std(w(net, "emb.weight"), drawn)


@pytest.mark.parametrize("preset", [p for p in BASE_PRESETS if p != "constant"])
def test_seed_knob_makes_the_draws_reproducible(compose_init, preset):
    seven = hydra_init.Init.from_config(compose_init(preset, "init.seed=7").init)
    eight = hydra_init.Init.from_config(compose_init(preset, "init.seed=8").init)
    a, b, c = poisoned_net(), poisoned_net(), poisoned_net()
    seven(a, log=False), seven(b, log=False), eight(c, log=False)
    for name in ("conv.weight", "fc.weight"):
        assert torch.equal(w(a, name), w(b, name))
        assert not torch.equal(w(a, name), w(c, name))


def test_other_knobs_of_the_presets(compose_init):
    net, _ = apply_preset(compose_init, "kaiming_conv", "init.mode=fan_in", "init.nonlinearity=leaky_relu",
                          "init.a=0.2")
    gain = math.sqrt(2 / (1 + 0.2**2))
    assert_std(w(net, "conv.weight"), gain / math.sqrt(CONV_FAN_IN))
    net, _ = apply_preset(compose_init, "xavier", "init.gain=2.0")
    assert_std(w(net, "fc.weight"), 2 * math.sqrt(2 / (FC_FAN_IN + FC_FAN_OUT)))
    net, _ = apply_preset(compose_init, "uniform", "init.a=-0.2", "init.b=0.3")
    assert_bounds(w(net, "fc.weight"), -0.2, 0.3, density_at_edges=2.0)
    net, _ = apply_preset(compose_init, "constant", "init.val=0.5")
    assert bool((w(net, "conv.weight") == 0.5).all())
    net, _ = apply_preset(compose_init, "trunc_normal", "init.bound_unit=absolute", "init.a=-0.01",
                          "init.b=0.01")
    assert w(net, "fc.weight").abs().max() <= 0.01


# ------------------------------------------------------------------ one rule, added rules
def test_a_rule_field_override_reaches_one_rule(compose_init):
    # With the command line known (the hydra node composed, as in every Hydra job), the preset's
    # own `mode` knob, now unused, is fine: only knobs the overrides set must be used.
    cfg = compose_init("kaiming_conv", "init.rules.conv.mode=fan_in", hydra_node=True)
    net = poisoned_net()
    hydra_init.Init.from_config(cfg.init)(net, log=False)
    assert_std(w(net, "conv.weight"), RELU_GAIN / math.sqrt(CONV_FAN_IN))  # conv rule: now fan_in
    assert_std(w(net, "fc.weight"), RELU_GAIN / math.sqrt(FC_FAN_IN))  # linear rule: untouched


def test_a_left_over_knob_without_the_command_line_is_refused_with_the_fix(compose_init):
    cfg = compose_init("kaiming_conv", "init.rules.conv.mode=fan_in")
    with pytest.raises(hydra_init.InitConfigError, match=r"init\.mode=null"):
        hydra_init.Init.from_config(cfg.init)
    cfg = compose_init("kaiming_conv", "init.rules.conv.mode=fan_in", "init.mode=null")
    net = poisoned_net()
    hydra_init.Init.from_config(cfg.init)(net, log=False)
    assert_std(w(net, "conv.weight"), RELU_GAIN / math.sqrt(CONV_FAN_IN))


def test_rules_group_adds_named_rules(compose_init):
    net, report = apply_preset(compose_init, "xavier", "+init/rules=[norm_ones,head_zero]")
    assert bool((w(net, "head.weight") == 0).all()) and bool((w(net, "head.bias") == 0).all())
    assert report["head.weight"].rule == "head_zero"
    assert report["fc.weight"].rule == "weights"
    # a second rule file can be addressed like the preset's own rules
    net, _ = apply_preset(compose_init, "xavier", "+init/rules=[head_zero]", "init.rules.head_zero.name=[fc]")
    assert bool((w(net, "fc.weight") == 0).all())


def test_embedding_and_recurrent_rules(compose_init):
    """embedding_normal: N(0, 0.02) on 64,000 values; rnn_orthogonal: LSTM's (128, 32) W_hh has W^T W = I."""
    model = nn.ModuleDict({"emb": nn.Embedding(1000, 64, padding_idx=0), "lstm": nn.LSTM(16, 32)})
    cfg = compose_init("xavier", "+init/rules=[embedding_normal,rnn_orthogonal]")
    report = hydra_init.Init.from_config(cfg.init)(model, log=False)
    emb = model["emb"].weight.detach().double()
    assert bool((emb[0] == 0).all())  # the padding row
    assert_std(emb[1:], 0.02)
    orthogonal(1.0)(model["lstm"].weight_hh_l0.detach().double())
    assert report["lstm.weight_ih_l0"].source == "default"  # only hidden-to-hidden weights


# ------------------------------------------------------------------ files
def preset_files() -> list[Path]:
    root = conf_dir()
    assert root is not None
    return sorted((root / "init").glob("*.yaml")) + sorted((root / "init" / "rules").glob("*.yaml"))


def test_every_preset_file_starts_with_its_description_and_binds_to_the_schema():
    files = preset_files()
    assert {f.stem for f in files} >= set(BASE_PRESETS) | {"norm_ones", "head_zero", "embedding_normal",
                                                           "rnn_orthogonal"}
    for path in files:
        first = path.read_text().splitlines()[0]
        assert first.startswith("# ") and len(first) > 20, f"{path.name}: line 1 must be '# <description>'"
        if path.parent.name == "init":
            defaults = OmegaConf.load(path).get("defaults", [])
            schemas = [f"/hydra_init/schema/{name}@_here_" for name in ("init", *RECIPE_SCHEMAS)]
            assert any(d in defaults for d in schemas), f"{path.name} does not bind to the schema"


def test_no_preset_relies_on_harmful_initializer_defaults():
    """Normal's std=1 and Uniform's [0, 1] (mmengine's defaults) must always be set explicitly."""
    for path in preset_files():
        rules = OmegaConf.load(path).get("rules") if path.parent.name == "init" else OmegaConf.load(path)
        for name, rule in (rules or {}).items():
            if rule.get("type") in ("Normal", "TruncNormal"):
                assert "std" in rule or "std" in rule.get("expr", {}), f"{path.stem}.{name}: std unset"
            if rule.get("type") == "Uniform":
                assert "a" in rule and "b" in rule, f"{path.stem}.{name}: bounds unset"
