"""``expr``: safe arithmetic on path captures, and the ``{name}`` captures of name globs."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import SIGMAS
from torch import nn

import hydra_init
from hydra_init import InitConfigError
from hydra_init.engine.expressions import evaluate, names_in
from hydra_init.engine.select import glob_captures


# ----------------------------------------------------------------------------- the language
@pytest.mark.parametrize(
    ("text", "variables", "expected"),
    [
        ("1 + 2 * 3", {}, 7.0),
        ("(1 + 2) * 3", {}, 9.0),
        ("2 ** 3 ** 2", {}, 512.0),  # right-associative, as in Python
        ("-2 ** 2", {}, -4.0),
        ("7 // 2 + 7 % 2", {}, 4.0),
        ("7 / 2", {}, 3.5),
        ("+x - -x", {"x": 1.5}, 3.0),
        ("0.02 / sqrt(2 * (layer_id + 1))", {"layer_id": 1}, 0.01),
        ("abs(-3) + max(1, n, 2) + min(4, n)", {"n": 5}, 3 + 5 + 4),
        ("exp(log(10))", {}, 10.0),
        ("log(8, 2)", {}, 3.0),
        ("1e-3 * 2", {}, 0.002),
        ("2 ** -1", {}, 0.5),
    ],
)
def test_evaluate_arithmetic(text, variables, expected):
    assert evaluate(text, variables) == pytest.approx(expected, rel=1e-12)


def test_names_in_excludes_function_names():
    assert names_in("0.02 / sqrt(2 * n_layer) + max(a, b)") == {"n_layer", "a", "b"}
    assert names_in("1 + 2") == set()


@pytest.mark.parametrize(
    "text",
    [
        "__import__('os').system('true')",
        "eval('1')",
        "open('/etc/passwd')",
        "math.sqrt(4)",  # attribute call
        "x.real",  # attribute
        "x[0]",  # subscript
        "(lambda: 1)()",
        "[i for i in (1, 2)]",
        "'a' * 3",  # strings
        "True + 1",  # booleans are not numbers here
        "1 if x else 2",
        "x < 2",
        "1 << 10",
        "max(*[1, 2])",
        "max(1, key=abs)",
        "sqrt",  # a function used as a value
        "y + 1",  # unknown name
        "1 +",  # syntax
        "max()",  # a call that fails inside the function
        "sqrt(1, 2)",
        "(-1) ** 0.5",  # a complex result
        "sqrt(-1)",
        "log(0)",
        "1 / 0",
        "exp(1000)",
        "10 ** 10 ** 10",  # must fail fast, not compute a 10-billion-digit integer
        "9 ** 9 ** 9",
    ],
)
def test_evaluate_refuses_with_a_clean_error(text):
    # Only ValueError/ArithmeticError: both become an InitConfigError naming the key.
    with pytest.raises((ValueError, ArithmeticError)):
        evaluate(text, {"x": 1})


@pytest.mark.parametrize("text", ["10 ** 10 ** 10", "max()", "(-1) ** 0.5", "__import__('os')"])
def test_bad_constant_expression_is_a_config_error(text):
    model = nn.Linear(4, 4)
    with pytest.raises(InitConfigError) as info:
        hydra_init.apply(model, {"rules": {"fc": {"type": "Normal", "layer": "Linear",
                                                  "expr": {"std": text}}}}, log=False)
    assert info.value.key == "init.rules.fc.expr.std"


# ----------------------------------------------------------------------------- captures
def test_glob_captures():
    assert glob_captures("layers.3.attention.wo", "layers.{layer_id}.attention.*") == {"layer_id": 3}
    assert glob_captures("stages.1.blocks.12.mlp", "stages.{s}.blocks.{b}.mlp") == {"s": 1, "b": 12}
    assert glob_captures("enc.attn", "{part}.attn") == {"part": "enc"}  # non-digits stay strings
    assert glob_captures("layers.3.4.wo", "layers.{i}.wo") is None  # one segment only
    assert glob_captures("head", "layers.{i}") is None


class Stack(nn.Module):
    def __init__(self, depth: int = 4, width: int = 8) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            nn.ModuleDict({"attn": nn.Linear(width, width), "mlp": nn.Linear(width, width)})
            for _ in range(depth)
        )
        self.head = nn.Linear(width, 2)


def test_capture_drives_a_per_module_argument():
    model = Stack()
    report = hydra_init.apply(model, {"seed": 0, "rules": {
        "depth": {"type": "Constant", "name": "layers.{layer_id}.mlp", "expr": {"val": "layer_id + 1",
                                                                              "bias": "-layer_id"}},
    }}, log=False)
    for i, layer in enumerate(model.layers):
        assert bool((layer["mlp"].weight == i + 1).all())
        assert bool((layer["mlp"].bias == -i).all())
    assert report["layers.2.mlp.weight"].rule == "depth"
    assert report.totals["rule"] == 8


def test_capture_in_several_globs_and_later_rules_still_win():
    model = Stack()
    hydra_init.apply(model, {"seed": 0, "rules": {
        "both": {"type": "Constant", "name": ["layers.{i}.attn", "layers.{i}.mlp"],
                 "expr": {"val": "10 * i"}},
        "last": {"type": "Zeros", "name": "layers.3"},
    }}, log=False)
    assert bool((model.layers[1]["attn"].weight == 10).all())
    assert bool((model.layers[2]["mlp"].weight == 20).all())
    assert bool((model.layers[3]["mlp"].weight == 0).all())


def test_depth_scaled_std_statistically():
    # GPT-2 style: std = 0.02 / sqrt(2 * (i + 1)) for the output projection of block i.
    # Each 256x256 weight has n = 65,536 samples: tolerance 6 / sqrt(2 n) = 1.7% of the std,
    # while neighbouring blocks differ by at least sqrt(4/3) - 1 = 15%.
    model = Stack(depth=3, width=256)
    hydra_init.apply(model, {"seed": 0, "rules": {
        "proj": {"type": "Normal", "name": "layers.{i}.attn", "expr": {"std": "0.02 / sqrt(2 * (i + 1))"}},
    }}, log=False)
    for i, layer in enumerate(model.layers):
        w = layer["attn"].weight.detach().double()
        expected = 0.02 / math.sqrt(2 * (i + 1))
        assert abs(w.std().item() - expected) <= SIGMAS * expected / math.sqrt(2 * w.numel())


def test_constant_expression_without_captures():
    model = nn.Linear(4, 4)
    report = hydra_init.apply(model, {"seed": 0, "rules": {
        "fc": {"type": "Constant", "layer": "Linear", "expr": {"val": "1 / sqrt(16)"}}}}, log=False)
    assert bool((model.weight == 0.25).all())
    assert report.rules["fc"]["args"]["val"] == 0.25


def test_string_capture_used_as_a_number_is_a_config_error():
    model = nn.ModuleDict({"enc": nn.Linear(2, 2), "dec": nn.Linear(2, 2)})
    before = [p.clone() for p in model.parameters()]
    with pytest.raises(InitConfigError) as info:
        hydra_init.apply(model, {"rules": {"x": {"type": "Constant", "name": "{part}",
                                                 "expr": {"val": "part * 2"}}}}, log=False)
    assert info.value.key.startswith("init.rules.x.expr")
    assert "part" in str(info.value)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


@pytest.mark.parametrize("text", ["i.real", "open('x') * i", "i if i else 1", "[i][0]"])
def test_forbidden_construct_is_refused_even_where_the_rule_loses(text):
    # Validation cannot wait for a module that uses the expression: here a later rule
    # wins every parameter, and the broken expression must still be an error.
    cfg = {"rules": {"a": {"type": "Constant", "name": "layers.{i}.mlp", "expr": {"val": text}},
                     "b": {"type": "Zeros", "layer": "Linear"}}}
    with pytest.raises(InitConfigError) as info:
        hydra_init.plan(Stack(), cfg)
    assert info.value.key == "init.rules.a.expr.val"
