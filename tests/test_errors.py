"""Error messages as features: one InitConfigError (a ValueError) per bad config, naming
the key path, saying what is valid and suggesting a fix, raised before any write.

Every failing config below also holds a valid rule (``first``) that would write
every parameter, so a plan that wrote anything before validating would show up in
the bit-identical check.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
import torch
from helpers import assert_bit_identical, changed, snapshot
from omegaconf import OmegaConf
from torch import nn

import hydra_init
from hydra_init import InitConfig, InitConfigError, Normal, Rule, RuleConfig


class Scale(nn.Module):
    """A module with a parameter but no reset_parameters()."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(4, 4))


class Counts(nn.Module):
    """A module with an integer (non-trainable) parameter named like a weight."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(4, 4, dtype=torch.long), requires_grad=False)


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.ModuleDict({"layer1": nn.Conv2d(3, 4, 3), "layer2": nn.Conv2d(4, 4, 3)})
        self.norm = nn.LayerNorm(4)
        self.blocks = nn.ModuleList([nn.Linear(4, 4) for _ in range(3)])
        self.scale = Scale()
        self.counts = Counts()
        self.head = nn.Linear(4, 2)


FIRST = {"type": "Constant", "val": 0.5, "bias": 0.25, "exclude": "counts"}


def named(bad: dict | Rule, **top) -> dict:
    return {"seed": 0, "rules": {"first": FIRST, "bad": bad}, **top}


@dataclass
class Case:
    id: str
    cfg: object
    key: str  # the exact key path; a trailing "*" accepts any deeper key
    fragments: list[str] = field(default_factory=list)
    setup: object = None  # optional callable(model) run before the call


CASES = [
    # unknown initializer type, did-you-mean
    Case("unknown-type", named({"type": "Kaimng", "layer": "Linear"}), "init.rules.bad.type",
         ["unknown initializer 'Kaimng'", "did you mean 'Kaiming'", "Xavier"]),
    Case("missing-type", named({"layer": "Linear"}), "init.rules.bad.type", ["Kaiming"]),
    # layer typo: a class that exists nowhere
    Case("layer-typo", named({"type": "Normal", "std": 0.02, "layer": "Conv2D"}),
         "init.rules.bad.layer", ["'Conv2D'", "did you mean 'Conv2d'"]),
    Case("layer-typo-qualified", named({"type": "Zeros", "layer": "torch.nn.Conv2D"}),
         "init.rules.bad.layer", ["torch.nn.Conv2D"]),
    Case("layer-typo-mmengine-list", [FIRST | {"layer": "Linear"}, {"type": "Xavier", "layer": "Linaer"}],
         "init[1].layer", ["did you mean 'Linear'"]),
    # a name glob that matches no module lists nearby paths
    Case("name-glob", named({"type": "Zeros", "name": "backbone.layr1"}), "init.rules.bad.name",
         ["'backbone.layr1'", "backbone.layer1"]),
    Case("name-glob-star", named({"type": "Zeros", "name": "blocks.*.fc"}), "init.rules.bad.name",
         ["blocks.0"]),
    # params that match no parameter of the selected modules
    Case("params-typo", named({"type": "Zeros", "layer": "Linear", "params": "wieght"}),
         "init.rules.bad.params", ["did you mean 'weight'"]),
    # fan-based initializer on a 1-D parameter
    Case("fan-on-1d-layernorm", named({"type": "Kaiming", "layer": "LayerNorm"}), "init.rules.bad*",
         ["norm.weight", "Constant", "(4,)"]),
    Case("fan-on-1d-bias-by-params", named({"type": "Xavier", "name": "head", "params": ["weight", "bias"]}),
         "init.rules.bad*", ["head.bias", "Constant"]),
    Case("orthogonal-on-1d", named({"type": "Orthogonal", "params": "bias", "layer": "Linear"}),
         "init.rules.bad*", ["blocks.0.bias"]),
    Case("dirac-on-2d", named({"type": "Dirac", "layer": "Linear"}), "init.rules.bad*",
         ["Dirac", "blocks.0.weight"]),
    Case("dirac-groups", named({"type": "Dirac", "layer": "Conv2d", "groups": 3}), "init.rules.bad*",
         ["groups"]),
    Case("eye-on-4d", named({"type": "Eye", "layer": "Conv2d"}), "init.rules.bad*",
         ["Eye", "backbone.layer1.weight"]),
    Case("random-draw-on-integer-param", named({"type": "Normal", "std": 0.02, "layer": "Counts"}),
         "init.rules.bad*", ["counts.weight", "int64", "Constant"]),
    Case("fractional-constant-on-integer-param", named({"type": "Constant", "val": 0.5, "layer": "Counts"}),
         "init.rules.bad*", ["counts.weight", "0.5"]),
    Case("default-without-reset", named({"type": "Default", "layer": "Scale"}), "init.rules.bad*",
         ["reset_parameters", "scale"]),
    # bad enum values list the valid ones
    Case("enum-mode", named({"type": "Kaiming", "layer": "Linear", "mode": "fan_inn"}),
         "init.rules.bad.mode", ["fan_in", "fan_out", "did you mean 'fan_in'"]),
    Case("kaiming-fan-avg", named({"type": "Kaiming", "layer": "Linear", "mode": "fan_avg"}),
         "init.rules.bad.mode", ["fan_in", "fan_out"]),
    Case("enum-distribution", named({"type": "Xavier", "layer": "Linear", "distribution": "gaussian"}),
         "init.rules.bad.distribution", ["normal", "uniform", "truncated_normal"]),
    Case("enum-nonlinearity", named({"type": "Kaiming", "layer": "Linear", "nonlinearity": "Relu"}),
         "init.rules.bad.nonlinearity", ["leaky_relu", "did you mean 'relu'"]),
    Case("enum-bound-unit", named({"type": "TruncNormal", "std": 0.02, "layer": "Linear",
                                   "bound_unit": "sigma"}), "init.rules.bad.bound_unit", ["absolute", "std"]),
    # ranges
    Case("negative-std", named({"type": "Normal", "std": -0.02, "layer": "Linear"}), "init.rules.bad.std",
         ["std >= 0"]),
    Case("zero-std-trunc", named({"type": "TruncNormal", "std": 0.0, "layer": "Linear"}),
         "init.rules.bad.std", ["std > 0"]),
    Case("uniform-a-ge-b", named({"type": "Uniform", "a": 0.1, "b": -0.1, "layer": "Linear"}),
         "init.rules.bad.a", ["a <= b"]),
    Case("trunc-a-ge-b", named({"type": "TruncNormal", "std": 0.02, "a": 2, "b": -2}), "init.rules.bad.a",
         ["a < b"]),
    Case("variance-scale", named({"type": "VarianceScaling", "scale": -1.0}), "init.rules.bad.scale", []),
    Case("xavier-gain", named({"type": "Xavier", "gain": 0.0}), "init.rules.bad.gain", []),
    Case("bias-prob-one", named({"type": "Normal", "std": 0.01, "bias_prob": 1.0}),
         "init.rules.bad.bias_prob", ["0 < bias_prob < 1"]),
    Case("bias-prob-zero", named({"type": "Normal", "std": 0.01, "bias_prob": 0.0}),
         "init.rules.bad.bias_prob", ["0 < bias_prob < 1"]),
    Case("bias-prob-negative", [FIRST | {"layer": "Linear"},
                                {"type": "Normal", "std": 0.01, "layer": "Linear", "bias_prob": -0.5}],
         "init[1].bias_prob", ["0 < bias_prob < 1"]),
    Case("bias-prob-nan", named({"type": "Normal", "std": 0.01, "bias_prob": float("nan")}),
         "init.rules.bad.bias_prob", []),
    # unknown keys with did-you-mean
    Case("top-level-key", {"seed": 0, "rule": {"a": FIRST}}, "init.rule", ["did you mean 'rules'"]),
    Case("rule-key", named({"type": "Normal", "std": 0.01, "layers": "Linear"}), "init.rules.bad.layers",
         ["did you mean 'layer'"]),
    Case("argument-of-another-type", named({"type": "Kaiming", "std": 0.01}), "init.rules.bad.std",
         ["Kaiming has no argument 'std'", "mode"]),
    Case("wrong-value-type", named({"type": "Normal", "std": "small"}), "init.rules.bad.std", ["number"]),
    Case("seed-type", {"seed": "zero", "rules": {"first": FIRST}}, "init.seed", ["int"]),
    Case("priority-type", named({"type": "Zeros", "priority": "high"}), "init.rules.bad.priority", ["int"]),
    # knobs set but unused, in every config form
    Case("knob-unused-dictconfig", OmegaConf.create(named({"type": "Zeros"}, std=0.02)), "init.std",
         ["no rule"]),
    Case("knob-unused-dict", named({"type": "Zeros"}, std=0.02), "init.std", ["no rule"]),
    Case("knob-unused-structured", InitConfig(seed=0, std=0.02, rules={"first": RuleConfig(type="Zeros")}),
         "init.std", ["no rule"]),
    # expr
    Case("expr-uncaptured", named({"type": "Constant", "name": "blocks.{i}", "expr": {"val": "j + 1"}}),
         "init.rules.bad.expr.val", ["'j'", "i"]),
    Case("expr-no-captures", named({"type": "Constant", "layer": "Linear", "expr": {"val": "depth"}}),
         "init.rules.bad.expr.val", ["'depth'", "{depth}"]),
    Case("expr-forbidden-function", named({"type": "Constant", "name": "blocks.{i}",
                                           "expr": {"val": "__import__('os').getpid()"}}),
         "init.rules.bad.expr.val", ["allowed", "sqrt"]),
    Case("expr-forbidden-call", named({"type": "Constant", "name": "blocks.{i}",
                                       "expr": {"val": "open('/etc/passwd')"}}),
         "init.rules.bad.expr.val", ["'open'", "sqrt"]),
    Case("expr-attribute", named({"type": "Constant", "name": "blocks.{i}", "expr": {"val": "i.real"}}),
         "init.rules.bad.expr.val", ["not allowed"]),
    Case("expr-syntax", named({"type": "Constant", "name": "blocks.{i}", "expr": {"val": "i +"}}),
         "init.rules.bad.expr.val", ["parse"]),
    Case("expr-bad-argument", named({"type": "Normal", "name": "blocks.{i}", "expr": {"sdt": "0.1"}}),
         "init.rules.bad.expr.sdt", ["did you mean 'std'"]),
    Case("expr-invalid-at-one-module", named({"type": "Normal", "name": "blocks.{i}",
                                              "expr": {"std": "0.05 - 0.05 * i"}}),
         "init.rules.bad.expr*", ["i=2", "std"]),
    Case("expr-constant-invalid", named({"type": "Normal", "expr": {"std": "1 / 0"}}),
         "init.rules.bad.expr.std", []),
    # mmengine override
    Case("override-without-name", [FIRST | {"layer": "Linear", "override": {"type": "Zeros"}}],
         "init[0].override", ["name"]),
    Case("override-without-type", [FIRST | {"layer": "Linear", "override": {"name": "head", "val": 2.0}}],
         "init[0].override", ["type"]),
    Case("override-dead-name", [FIRST | {"layer": "Linear", "override": {"name": "haed"}}],
         "init[0].override.name", ["head"]),
    # Rule objects are validated like dicts
    Case("rule-object", named(Rule(Normal(std=-1.0), layer="Linear")), "init.rules.bad.std", ["std >= 0"]),
    # a module's own init_cfg
    Case("owned-init-cfg", {"seed": 0, "rules": {"first": FIRST}}, "backbone.init_cfg.type",
         ["did you mean 'Kaiming'"], setup=lambda m: setattr(m.backbone, "init_cfg", {"type": "Kaimng"})),
    Case("owned-init-cfg-in-list", {"seed": 0, "rules": {"first": FIRST}}, "blocks.1.init_cfg[0].layer",
         ["did you mean 'Linear'"],
         setup=lambda m: setattr(m.blocks[1], "init_cfg", [{"type": "Zeros", "layer": "Linaer"}])),
]


def _check(err: InitConfigError, case: Case) -> None:
    assert isinstance(err, ValueError)
    message = str(err)
    if case.key.endswith("*"):
        assert err.key.startswith(case.key[:-1]), err.key
    else:
        assert err.key == case.key, message
    assert err.key in message
    for fragment in case.fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_error_names_key_and_leaves_model_bit_identical(case: Case):
    model = Net()
    if case.setup is not None:
        case.setup(model)
    before = snapshot(model)
    with pytest.raises(InitConfigError) as info:
        hydra_init.apply(model, case.cfg, log=False)
    _check(info.value, case)
    assert_bit_identical(model, before)
    with pytest.raises(InitConfigError) as again:  # the dry run raises the same error
        hydra_init.plan(model, case.cfg)
    assert str(again.value) == str(info.value)


def test_failure_after_a_default_reset_rule_is_still_atomic():
    # A Default rule resets modules first at execution; the invalid Dirac must stop the
    # whole call before that.
    model = Net()
    before = snapshot(model)
    with pytest.raises(InitConfigError):
        hydra_init.apply(model, {"rules": {"torch": {"type": "Default", "layer": "Conv2d"},
                                           "bad": {"type": "Dirac", "layer": "Linear"}}}, log=False)
    assert_bit_identical(model, before)


# ----------------------------------------------------------------------------- warnings, not errors
def _apply(model, cfg):
    before = snapshot(model)
    report = hydra_init.apply(model, cfg, log=False)
    return report, changed(model, before)


def test_existing_but_absent_class_is_a_note_not_a_warning():
    # A preset's conv rule on an MLP: expected, so a note (DEBUG, in the report), not a warning.
    report, written = _apply(Net(), {"seed": 0, "rules": {"linear": {"type": "Xavier", "layer": "Linear"},
                                                          "conv3d": {"type": "Kaiming", "layer": "Conv3d"}}})
    assert written  # the other rule still ran
    assert report.rules["conv3d"]["matched"] == 0
    assert report.notes == ["rule 'conv3d' matched nothing in this model"]
    assert report.warnings == []
    assert report.to_dict()["notes"] == report.notes
    assert "note: rule 'conv3d' matched nothing" in str(report)


def test_unknown_class_in_a_rule_that_matched_is_a_warning():
    # A preset listing Linear and a third-party Conv1D (transformers) on a torch-only model.
    report, written = _apply(Net(), {"seed": 0, "rules": {"proj": {"type": "Normal", "std": 0.02,
                                                                   "layer": ["Linear", "Conv1D"]}}})
    assert {"head.weight", "blocks.0.weight"} <= written
    assert any("Conv1D" in w and "proj" in w for w in report.warnings)


def test_optional_rule_that_matches_nothing_is_a_note():
    report, written = _apply(Net(), {"seed": 0, "rules": {
        "first": FIRST, "maybe": {"type": "Zeros", "name": "decoder.*", "optional": True}}})
    assert written
    assert any("maybe" in n for n in report.notes) and report.warnings == []


def test_warnings_are_logged_and_notes_only_at_debug(caplog):
    rules = {"c": {"type": "Kaiming", "layer": "Conv3d"},  # a note: no Conv3d here
             "p": {"type": "Normal", "std": 0.02, "layer": ["Linear", "Conv1D"]}}  # a warning: no Conv1D
    with caplog.at_level("INFO", logger="hydra_init"):
        hydra_init.apply(Net(), {"seed": 0, "rules": rules})
    messages = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert [m for level, m in messages if level == "WARNING"] == [
        "hydra_init: rule 'p': no class 'Conv1D' here (did you mean 'Conv2d'?)"]  # Net has Conv2d
    assert [level for level, _ in messages] == ["INFO", "WARNING"]  # one summary line, one warning
    assert messages[0][1].startswith("hydra_init init report: ")
    caplog.clear()
    with caplog.at_level("DEBUG", logger="hydra_init"):
        hydra_init.apply(Net(), {"seed": 0, "rules": rules})
    assert ("DEBUG", "hydra_init: note: rule 'c' matched nothing in this model") in [
        (r.levelname, r.getMessage()) for r in caplog.records]


def test_key_argument_prefixes_every_error_path():
    # Under Hydra the init node may live elsewhere (model.init): errors name that path.
    with pytest.raises(InitConfigError) as info:
        hydra_init.apply(Net(), named({"type": "Normal", "std": -1.0}), key="model.init", log=False)
    assert info.value.key == "model.init.rules.bad.std"


def test_third_party_class_a_model_lacks_is_a_note():
    # gpt2's rules list Linear and transformers' Conv1D: on a torch-only MLP, Conv1D is just absent
    mlp = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
    report = hydra_init.plan(mlp, {"rules": {
        "linear": {"type": "Normal", "std": 0.02, "layer": ["Linear", "Conv1D"]},
        "embedding": {"type": "Normal", "std": 0.02, "layer": ["Embedding"]}}})
    assert report.warnings == []
    assert report.notes == ["rule 'linear': no class 'Conv1D' here",
                            "rule 'embedding' matched nothing in this model"]


def test_layer_case_typo_suggests_the_real_class():
    with pytest.raises(InitConfigError, match="did you mean 'LayerNorm'"):
        hydra_init.plan(Net(), named({"type": "Ones", "layer": "Layernorm"}))
