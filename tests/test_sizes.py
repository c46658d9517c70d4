"""Sizes read from the model and families recognized by class (hydra_init.engine.sizes), as plain configs."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import hydra_init
from hydra_init import InitConfigError


class Config:
    n_layer = 3
    width = 8


class Net(nn.Module):
    """Three blocks under ``h``, a ``config`` like a Hugging Face model's."""

    def __init__(self, with_config: bool = True) -> None:
        super().__init__()
        if with_config:
            self.config = Config()
        self.h = nn.ModuleList([nn.Linear(8, 8) for _ in range(3)])
        self.out = nn.Linear(8, 5)


def scaled(sources, **knobs) -> dict:
    """One rule: every Linear weight normal with std 1/n, n a size read from the model."""
    return {"seed": 0, "sizes": {"n": sources}, **knobs,
            "rules": {"fc": {"type": "Normal", "layer": "Linear", "expr": {"std": "1 / n"}}}}


@pytest.mark.parametrize(("sources", "value", "source"), [
    ({"config": "n_layer"}, 3, "model.config.n_layer"),
    ({"attr": "config.width"}, 8, "model.config.width"),
    ({"count": "h.{i}"}, 3, "count of modules matching 'h.{i}'"),
    ({"count": "*", "layer": "Linear"}, 4, "count of modules matching '*' of class Linear"),
    ({"shape": "out.weight", "dim": 0}, 5, "out.weight.shape[0]"),
    ([{"config": "depth"}, {"value": 7}], 7, "the preset's fixed value"),  # first source that answers
])
def test_each_source_kind(sources, value, source) -> None:
    report = hydra_init.plan(Net(), scaled(sources))
    assert report.sizes == {"n": (value, source)}
    assert report["out.weight"].init == f"Normal(mean=0.0, std={1 / value!r})"


def test_explicit_knob_wins_and_is_not_an_unused_knob() -> None:
    report = hydra_init.plan(Net(), scaled({"config": "n_layer"}, n=4))
    assert report.sizes == {"n": (4, "init.n")}
    assert report["h.0.weight"].init == "Normal(mean=0.0, std=0.25)"
    assert json.loads(report.to_json())["sizes"] == {"n": {"value": 4, "source": "init.n"}}


def test_the_init_object_keeps_a_size_knob() -> None:
    init = hydra_init.Init(seed=0, sizes={"n": {"config": "n_layer"}}, n=2,
                           rules={"fc": {"type": "Normal", "layer": "Linear", "expr": {"std": "1 / n"}}})
    report = init(Net(), log=False)
    assert report.sizes == {"n": (2, "init.n")}


def test_unreadable_size_names_the_knob_and_writes_nothing() -> None:
    model = Net(with_config=False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(InitConfigError, match=r"init\.n: could not read 'n' from this Net: tried "
                                              r"model\.config\.n_layer.*Hint: set it: init\.n=<value>"):
        hydra_init.apply(model, scaled({"config": "n_layer"}), log=False)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize(("sources", "key"), [
    ({"conf": "n_layer"}, r"init\.sizes\.n\[0\]: a source needs exactly one of"),
    ({"count": "h.*", "dim": 1}, r"init\.sizes\.n\[0\]\.dim: unknown key 'dim' for a 'count' source"),
    ([], r"init\.sizes\.n: expected a source or a list of sources"),
])
def test_bad_source_is_a_config_error(sources, key) -> None:
    with pytest.raises(InitConfigError, match=key):
        hydra_init.plan(Net(), scaled(sources))


def test_an_expr_name_that_is_neither_captured_nor_a_size() -> None:
    cfg = scaled({"config": "n_layer"})
    cfg["rules"]["fc"]["expr"] = {"std": "1 / depth"}
    message = r"init\.rules\.fc\.expr\.std: 'depth' is not captured .* nor a size"
    with pytest.raises(InitConfigError, match=message):
        hydra_init.plan(Net(), cfg)


def test_families_gate_their_rules_and_are_reported() -> None:
    cfg = {"seed": 0, "families": {
        "mlp": {"classes": ["ModuleList"], "rules": ["zero_out"]},
        "conv": {"classes": ["Conv2d"], "rules": ["conv_only"]},
    }, "rules": {
        "fc": {"type": "Normal", "layer": "Linear", "std": 0.1},
        "zero_out": {"type": "Zeros", "name": "out"},
        "conv_only": {"type": "Ones", "layer": "Conv2d"},  # dropped: no Conv2d, so no error for it
    }}
    report = hydra_init.plan(Net(), cfg)
    assert report.families == ["mlp"] and report.warnings == []
    assert report["out.weight"].rule == "zero_out" and "conv_only" not in report.rules
    assert "family: mlp" in str(report)


def test_no_family_recognized_is_a_warning() -> None:
    cfg = {"families": {"conv": {"classes": ["Conv2d"], "rules": ["conv_only"]}},
           "rules": {"fc": {"type": "Zeros", "layer": "Linear"},
                     "conv_only": {"type": "Ones", "layer": "Conv2d"}}}
    report = hydra_init.plan(Net(), cfg)
    assert report.families == [] and report.warnings == [
        "no model family recognized (known: conv): only the generic rules apply"
    ]


def test_a_refused_family_is_an_error_with_its_message() -> None:
    cfg = {"families": {"lists": {"classes": ["ModuleList"], "refuse": "use init=other"}},
           "rules": {"fc": {"type": "Zeros", "layer": "Linear"}}}
    with pytest.raises(InitConfigError, match=r"this model is a ModuleList \(lists\): use init=other"):
        hydra_init.plan(Net(), cfg)


def test_a_family_naming_an_unknown_rule_is_a_config_error() -> None:
    cfg = {"families": {"mlp": {"classes": ["Linear"], "rules": ["zero_uot"]}},
           "rules": {"zero_out": {"type": "Zeros", "name": "out"}}}
    message = r"init\.families\.mlp\.rules: no rule named 'zero_uot'.*zero_out"
    with pytest.raises(InitConfigError, match=message):
        hydra_init.plan(Net(), cfg)
