"""Every config form gives the same result under a fixed seed: named-rules dict,
DictConfig, structured InitConfig, Rule objects, mmengine dict and list (with
``type``, ``layer``, ``override``, ``bias_prob``), ListConfig, YAML."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

import hydra_init
from hydra_init import Constant, InitConfig, Kaiming, Normal, Rule, RuleConfig

SEED = 1234


class Detector(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        with torch.random.fork_rng():
            torch.manual_seed(7)  # the same torch defaults in every instance
            self.conv = nn.Conv2d(3, 16, 3)
            self.bn = nn.BatchNorm2d(16)
            self.reg = nn.Linear(16, 4)
            self.cls = nn.Linear(16, 80)


# The reference: Kaiming fan_in on convs, BN scale 1 and shift 0, Normal(0.01) on linears,
# and the classifier's bias from a 1% prior, as a focal-loss head does.
NAMED = {
    "seed": SEED,
    "rules": {
        "conv": {"type": "Kaiming", "layer": "Conv2d", "mode": "fan_in"},
        "norm": {"type": "Constant", "val": 1.0, "layer": "_BatchNorm"},
        "linear": {"type": "Normal", "std": 0.01, "layer": "Linear"},
        "cls": {"type": "Normal", "std": 0.01, "name": "cls", "bias_prob": 0.01},
    },
}

MMENGINE = [
    {"type": "Kaiming", "layer": "Conv2d", "mode": "fan_in"},
    {"type": "Constant", "val": 1, "layer": ["_BatchNorm"]},
    {"type": "Normal", "std": 0.01, "layer": "Linear",
     "override": {"type": "Normal", "name": "cls", "std": 0.01, "bias_prob": 0.01}},
]

YAML = f"""
seed: {SEED}
rules:
  conv: {{type: Kaiming, layer: Conv2d, mode: fan_in}}
  norm: {{type: Constant, val: 1.0, layer: _BatchNorm}}
  linear: {{type: Normal, std: 0.01, layer: Linear}}
  cls: {{type: Normal, std: 0.01, name: cls, bias_prob: 0.01}}
"""


def structured() -> InitConfig:
    return InitConfig(seed=SEED, rules={
        "conv": RuleConfig(type="Kaiming", layer="Conv2d", mode="fan_in"),
        "norm": RuleConfig(type="Constant", val=1.0, layer="_BatchNorm"),
        "linear": RuleConfig(type="Normal", std=0.01, layer="Linear"),
        "cls": RuleConfig(type="Normal", std=0.01, name="cls", bias_prob=0.01),
    })


def rule_objects() -> dict:
    return {"seed": SEED, "rules": {
        "conv": Rule(Kaiming(mode="fan_in"), layer="Conv2d"),
        "norm": Rule(Constant(val=1.0), layer="_BatchNorm"),
        "linear": Rule(Normal(std=0.01), layer="Linear"),
        "cls": Rule(Normal(std=0.01, bias_prob=0.01), name="cls"),
    }}


def with_knobs():
    # Hydra presets: rules interpolate preset-level knobs.
    cfg = OmegaConf.create({
        "seed": SEED, "std": 0.01, "bias_prob": 0.01,
        "rules": {**NAMED["rules"],
                  "linear": {"type": "Normal", "std": "${...std}", "layer": "Linear"},
                  "cls": {"type": "Normal", "std": "${...std}", "name": "cls",
                          "bias_prob": "${...bias_prob}"}},
    })
    return cfg


SEEDED_FORMS = {
    "dict": lambda: NAMED,
    "DictConfig": lambda: OmegaConf.create(NAMED),
    "yaml": lambda: OmegaConf.create(YAML),
    "InitConfig": structured,
    "structured DictConfig": lambda: OmegaConf.structured(structured()),
    "Rule objects": rule_objects,
    "knobs": with_knobs,
}

# mmengine forms carry no seed: they use torch's global generator, like torch.nn.init.
UNSEEDED_FORMS = {
    "mmengine list": lambda: MMENGINE,
    "mmengine ListConfig": lambda: OmegaConf.create(MMENGINE),
    "Rule list": lambda: list(rule_objects()["rules"].values()),
}


def initialized(cfg) -> Detector:
    model = Detector()
    hydra_init.apply(model, cfg, log=False)
    return model


def assert_same(a: nn.Module, b: nn.Module) -> None:
    for (name, pa), pb in zip(a.named_parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb), name


@pytest.fixture(scope="module")
def reference() -> Detector:
    model = initialized(NAMED)
    # Sanity: the reference is what the config says.
    assert bool((model.bn.weight == 1).all()) and bool((model.bn.bias == 0).all())
    assert torch.allclose(torch.sigmoid(model.cls.bias), torch.full((80,), 0.01))
    assert bool((model.reg.bias == 0).all())
    return model


@pytest.mark.parametrize("form", SEEDED_FORMS)
def test_seeded_forms_give_identical_models(form, reference):
    assert_same(initialized(SEEDED_FORMS[form]()), reference)


@pytest.mark.parametrize("form", UNSEEDED_FORMS)
def test_unseeded_forms_match_the_named_form_at_the_seed_they_report(form):
    torch.manual_seed(0)
    model = Detector()
    seed = hydra_init.apply(model, UNSEEDED_FORMS[form](), log=False).seed
    assert_same(model, initialized({**NAMED, "seed": seed}))
    # torch.manual_seed makes an unseeded form reproducible too.
    torch.manual_seed(0)
    again = Detector()
    hydra_init.apply(again, UNSEEDED_FORMS[form](), log=False)
    assert_same(model, again)


def test_mmengine_single_dict_with_override():
    one = {"type": "Normal", "std": 0.01, "layer": "Linear",
           "override": {"type": "Normal", "name": "cls", "std": 0.01, "bias_prob": 0.01}}
    for cfg in (one, OmegaConf.create(one)):
        torch.manual_seed(0)
        model = Detector()
        report = hydra_init.apply(model, cfg, log=False)
        assert report.by_source("default") == ["conv.weight", "conv.bias", "bn.weight", "bn.bias"]
        assert torch.allclose(torch.sigmoid(model.cls.bias), torch.full((80,), 0.01))
        named = {"seed": report.seed, "rules": {k: NAMED["rules"][k] for k in ("linear", "cls")}}
        assert_same(model, initialized(named))


def test_mmengine_type_names_with_init_suffix():
    torch.manual_seed(0)
    model = Detector()
    seed = hydra_init.apply(model, [{"type": "KaimingInit", "layer": "Conv2d", "mode": "fan_in"}],
                            log=False).seed
    assert_same(model, initialized({"seed": seed, "rules": {"conv": NAMED["rules"]["conv"]}}))


def test_same_seed_same_bits_different_seed_differs():
    a, b = initialized(NAMED), initialized(NAMED)
    c = initialized({**NAMED, "seed": SEED + 1})
    assert_same(a, b)
    for name in ("conv.weight", "reg.weight", "cls.weight"):
        assert not torch.equal(a.get_parameter(name), c.get_parameter(name)), name


def test_values_do_not_depend_on_other_rules_or_models():
    # A parameter's draw depends on (seed, path, shape) only: adding rules for other
    # parameters or other modules does not shift its values.
    small = initialized({"seed": SEED, "rules": {"conv": NAMED["rules"]["conv"]}})
    full = initialized(NAMED)
    assert torch.equal(small.conv.weight, full.conv.weight)


def test_knob_reaches_every_rule_that_uses_it():
    cfg = with_knobs()
    cfg.std = 0.5
    model = initialized(cfg)
    expected = initialized({**NAMED, "rules": {**NAMED["rules"],
                                               "linear": {**NAMED["rules"]["linear"], "std": 0.5},
                                               "cls": {**NAMED["rules"]["cls"], "std": 0.5}}})
    assert_same(model, expected)


def test_disabled_rule_is_ignored():
    cfg = OmegaConf.create(NAMED)
    cfg.rules.norm.enabled = False
    model = Detector()
    with torch.no_grad():
        model.bn.weight.fill_(3.0)
    report = hydra_init.apply(model, cfg, log=False)
    assert report.by_source("default") == ["bn.weight", "bn.bias"]
    assert bool((model.bn.weight == 3.0).all())
