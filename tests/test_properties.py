"""Property-based: random models x random configs x random dtypes give a correct result,
or one InitConfigError with the model bit-identical (issue 10's promise).

"Correct" is checked from the report: every parameter it says a rule or a reset
wrote is finite, and every parameter it says was left alone kept its exact bits.
Any other exception type is a failure. Hypothesis shrinks a failure to a minimal
model and config; the example count keeps the test to a few seconds.
"""

from __future__ import annotations

import math

import torch
from helpers import changed, snapshot
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import hydra_init
from hydra_init import InitConfigError

DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]

sizes = st.integers(min_value=0, max_value=5)


@st.composite
def layers(draw) -> nn.Module:
    kind = draw(st.sampled_from(["linear", "conv", "norm", "embedding", "bn", "lstm"]))
    a, b = draw(sizes), draw(sizes)
    if kind == "linear":
        return nn.Linear(a, b, bias=draw(st.booleans()))
    if kind == "conv":
        return nn.Conv1d(max(a, 1), max(b, 1), kernel_size=draw(st.integers(1, 3)))
    if kind == "norm":
        return nn.LayerNorm(max(a, 1))
    if kind == "embedding":
        return nn.Embedding(max(a, 1), b, padding_idx=0 if draw(st.booleans()) else None)
    if kind == "bn":
        return nn.BatchNorm1d(max(a, 1))
    return nn.LSTM(max(a, 1), max(b, 1))


@st.composite
def models(draw) -> nn.Module:
    model = nn.Sequential(*draw(st.lists(layers(), min_size=1, max_size=4)))
    if draw(st.booleans()):
        model.add_module("tied", nn.Linear(1, 1, bias=False))
        first = next((m for m in model if isinstance(m, nn.Linear)), None)
        if first is not None:
            model.tied.weight = first.weight
    return model.to(draw(st.sampled_from(DTYPES)))


NUMBERS = st.sampled_from([0.02, 1.0, 0.0, -1.0, float("nan"), float("inf"), 1e300, 3])
TYPES = st.sampled_from(["Normal", "TruncNormal", "Uniform", "Xavier", "Kaiming", "Orthogonal", "Constant",
                         "Zeros", "Ones", "Default", "Eye", "Dirac", "LecunNormal", "Kaimig"])
LAYERS = st.sampled_from(["Linear", "_ConvNd", "LayerNorm", "Embedding", "_BatchNorm", "LSTM", "Module",
                          "Linaer", "RNNBase"])
NAMES = st.sampled_from(["*", "0", "1*", "*.weight", "[z-a]", "nosuch", "{i}", "tied"])
PARAMS = st.sampled_from(["weight", "bias", "weight_*", "*", "nope"])
ARGS = {"std": NUMBERS, "mean": NUMBERS, "a": NUMBERS, "b": NUMBERS, "gain": NUMBERS, "val": NUMBERS,
        "bias": NUMBERS, "bias_prob": st.sampled_from([0.01, 0.5, 0.0, 2.0]),
        "mode": st.sampled_from(["fan_in", "fan_out", "fan_avg", "sideways"])}


@st.composite
def rules(draw) -> dict:
    rule: dict = {"type": draw(TYPES)}
    if draw(st.booleans()):
        rule["layer"] = draw(st.lists(LAYERS, max_size=2))
    if draw(st.booleans()):
        rule["name"] = draw(st.lists(NAMES, max_size=2))
    if draw(st.booleans()):
        rule["params"] = draw(st.lists(PARAMS, min_size=1, max_size=2))
    for arg in draw(st.lists(st.sampled_from(sorted(ARGS)), max_size=2, unique=True)):
        rule[arg] = draw(ARGS[arg])
    for flag in ("optional", "enabled"):
        if draw(st.integers(0, 3)) == 0:
            rule[flag] = draw(st.sampled_from([True, False, "no"]))
    return rule


configs = st.builds(
    lambda seed, tiles, rs: {"seed": seed, **({"tiles": tiles} if tiles else {}),
                             "rules": {f"r{i}": r for i, r in enumerate(rs)}},
    st.integers(0, 2**31), st.sampled_from([None, "flat", "blocks", "rows"]),  # "rows": not a layout
    st.lists(rules(), min_size=1, max_size=3),
)


def _finite(t: torch.Tensor) -> bool:
    return bool(torch.isfinite(t.detach().double()).all()) if t.numel() else True


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(models(), configs)
def test_random_config_gives_a_correct_result_or_one_clear_error(model: nn.Module, cfg: dict) -> None:
    before = snapshot(model)
    try:
        report = hydra_init.apply(model, cfg, log=False)
    except InitConfigError as err:
        assert err.key, err  # names the key path
        assert changed(model, before) == set()  # bit for bit, NaN payloads included
        return
    params = dict(model.named_parameters(remove_duplicate=False))
    for record in report.params:
        tensor = params[record.path]
        if record.source in ("rule", "reset"):
            constant = record.init.startswith(("Constant", "bias="))
            assert _finite(tensor) or (constant and not math.isfinite(float(tensor.detach().double().max()))
                                       and tensor.dtype in (torch.float16, torch.bfloat16)), record
        elif record.source == "default":
            assert torch.equal(tensor.detach(), before[record.path]), record.path
