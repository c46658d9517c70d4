"""The benchmark cases: one model, one recipe, written three ways.

For each case: the hydra_init config, the torch loop a user would write instead
(each tensor written once, tied tensors once, timm's truncated-normal algorithm
for ViTs), and the mmengine equivalent. ``check`` verifies after every run that
the result is the recipe (so the columns time the same work); ``drawn`` counts
the random values the recipe draws (for the limit column).
"""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from comparators import timm_trunc_normal_
from models import deep_stack, gpt2_small, many_small, resnet50, resnet152, vit_base
from torch import nn

__all__ = ["CASES", "Case", "mmengine_version"]


def mmengine_version() -> str | None:
    try:
        import mmengine
    except ImportError:
        return None
    return mmengine.__version__


@contextlib.contextmanager
def _quiet():
    """mmengine prints a line per parameter from init_weights(); don't time the terminal."""
    import logging

    loggers = [logging.getLogger(n) for n in ("mmengine", "")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def _mm_initialize(cfg) -> Callable[[nn.Module], None]:
    def run(model: nn.Module) -> None:
        from mmengine.model import initialize

        with _quiet():
            initialize(model, cfg)

    return run


def _mm_init_weights(model: nn.Module) -> None:
    for module in model.modules():  # init_weights() runs once per module; re-arm it
        if hasattr(module, "_is_init"):
            module._is_init = False
    with _quiet():
        model.init_weights()


def _close(value: float, target: float, rel: float, what: str) -> None:
    if not abs(value - target) <= rel * target:
        raise AssertionError(f"{what}: {value:.5g}, expected {target:.5g} (±{rel:.0%})")


def _numel(tensors) -> int:
    return sum({id(t): t.numel() for t in tensors}.values())  # tied tensors once


def _weights(*classes: type[nn.Module]) -> Callable[[nn.Module], int]:
    return lambda model: _numel(m.weight for m in model.modules() if isinstance(m, classes))


def _std(tensors) -> float:
    values = torch.cat([t.detach().flatten().double() for t in tensors])
    return float(values.std())


@dataclass
class Case:
    """One row of the table."""

    name: str
    build: Callable[[str], nn.Module]
    hydra_cfg: dict | None
    loop: Callable[[nn.Module], None]
    mm: Callable[[nn.Module], None] | None
    check: Callable[[nn.Module], None]
    kind: str  # the distribution, for the targets: "trunc_normal", "normal", "nested", "small"
    drawn: Callable[[nn.Module], int]  # random values the recipe draws (constants excluded)
    loop_label: str = "torch loop"
    mm_build: Callable[[str], nn.Module] | None = None  # a model mmengine can init (BaseModule)


# ----------------------------------------------------------------------------- ViT
VIT_CFG = {"seed": 0, "rules": {
    "linear": {"type": "TruncNormal", "layer": "Linear", "std": 0.02, "a": -2, "b": 2,
               "bound_unit": "std", "bias": 0.0},
    "norm": {"type": "Ones", "layer": "LayerNorm", "bias": 0.0},
}}


def _vit_loop(trunc_normal_: Callable[..., torch.Tensor]) -> Callable[[nn.Module], None]:
    def loop(model: nn.Module) -> None:
        for m in model.modules():
            if isinstance(m, nn.Linear):
                trunc_normal_(m.weight, std=0.02, a=-0.04, b=0.04)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    return loop


vit_loop = _vit_loop(timm_trunc_normal_)  # what ViT code runs (timm's, mmengine's algorithm)
vit_torch_loop = _vit_loop(nn.init.trunc_normal_)  # torch's own sampler, for reference


def vit_check(model: nn.Module) -> None:
    weights = [m.weight for m in model.modules() if isinstance(m, nn.Linear)]
    assert max(float(w.detach().abs().max()) for w in weights) <= 0.04
    _close(_std(weights), 0.02 * 0.87962566, 0.02, "ViT Linear std (truncated at ±2 std)")
    assert all(bool((m.weight == 1).all()) for m in model.modules() if isinstance(m, nn.LayerNorm))


# ----------------------------------------------------------------------------- ResNet-50
RESNET_CFG = {"seed": 0, "rules": {
    "conv": {"type": "Kaiming", "layer": "_ConvNd", "mode": "fan_out", "nonlinearity": "relu"},
    "linear": {"type": "Kaiming", "layer": "Linear", "mode": "fan_in", "nonlinearity": "relu"},
    "norm": {"type": "Ones", "layer": "_BatchNorm", "bias": 0.0},
}}


def resnet_loop(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            nn.init.zeros_(m.bias)


def resnet_check(model: nn.Module) -> None:
    conv = max((m for m in model.modules() if isinstance(m, nn.Conv2d)), key=lambda m: m.weight.numel())
    fan_out = conv.weight.shape[0] * conv.weight[0, 0].numel()
    _close(_std([conv.weight]), math.sqrt(2.0 / fan_out), 0.03, "largest conv std (Kaiming fan_out)")
    assert all(bool((m.weight == 1).all()) for m in model.modules() if isinstance(m, nn.BatchNorm2d))


RESNET_MM = [
    {"type": "Kaiming", "layer": "Conv2d", "mode": "fan_out", "nonlinearity": "relu"},
    {"type": "Constant", "layer": "BatchNorm2d", "val": 1.0, "bias": 0.0},
    {"type": "Kaiming", "layer": "Linear", "mode": "fan_in", "nonlinearity": "relu"},
]


# ----------------------------------------------------------------------------- GPT-2
GPT_CFG = {"seed": 0, "rules": {
    "linear": {"type": "Normal", "layer": "Linear", "std": 0.02, "bias": 0.0},
    "embedding": {"type": "Normal", "layer": "Embedding", "std": 0.02},
    "norm": {"type": "Ones", "layer": "LayerNorm", "bias": 0.0},
}}


def gpt_loop(model: nn.Module) -> None:
    """nanoGPT's ``_init_weights``, writing the tied embedding / head weight once."""
    seen: set[int] = set()

    def once(t: torch.Tensor) -> bool:
        new = id(t) not in seen
        seen.add(id(t))
        return new

    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Embedding)):
            if once(m.weight):
                nn.init.normal_(m.weight, std=0.02)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def gpt_check(model: nn.Module) -> None:
    _close(_std([model.h[0].mlp.c_fc.weight, model.wte.weight]), 0.02, 0.02, "GPT-2 std")
    assert bool((model.ln_f.weight == 1).all()) and model.lm_head.weight is model.wte.weight


GPT_MM = [
    {"type": "Normal", "layer": "Linear", "std": 0.02, "bias": 0.0},
    {"type": "Normal", "layer": "Embedding", "std": 0.02},
    {"type": "Constant", "layer": "LayerNorm", "val": 1.0, "bias": 0.0},
]


# ----------------------------------------------------------------------------- deep stack
def deep_loop(model: nn.Module) -> None:
    """What the nested configs resolve to, written as a loop that writes each tensor once.

    Attention Linears: Xavier (the innermost init_cfg); other Linears of even blocks:
    Kaiming; of odd blocks: the root's last Linear rule, a truncated normal (timm's
    algorithm); LayerNorms: ones; biases: zeros.
    """
    for i, block in enumerate(model.blocks):
        for m in block.attn.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_normal_(m.weight)
                nn.init.zeros_(m.bias)
        for m in (block.fc1, block.fc2):
            if i % 2 == 0:
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            else:
                timm_trunc_normal_(m.weight, std=0.02, a=-0.04, b=0.04)
            nn.init.zeros_(m.bias)
        nn.init.ones_(block.norm.weight)
        nn.init.zeros_(block.norm.bias)


def deep_check(model: nn.Module) -> None:
    even, odd = model.blocks[0], model.blocks[1]
    dim = even.fc1.weight.shape[1]
    even_fc1, odd_fc1 = [b.fc1.weight for b in model.blocks[::2]], [b.fc1.weight for b in model.blocks[1::2]]
    _close(_std(even_fc1), math.sqrt(2.0 / dim), 0.03, "even blocks: Kaiming")
    _close(_std(odd_fc1), 0.02 * 0.87962566, 0.03, "odd blocks: TruncNormal")
    assert float(odd.fc2.weight.detach().abs().max()) <= 0.04
    # q, k, v and o of every block: >= 16,384 values even in quick mode, so the standard error of
    # the std is <= 1/sqrt(2 * 16384) = 0.55% and the 3% tolerance is > 5 sigma (q alone: 2.7 sigma)
    attention = [getattr(b.attn, n).weight for b in model.blocks for n in "qkvo"]
    _close(_std(attention), math.sqrt(1.0 / dim), 0.03, "attention: Xavier")
    assert bool((even.norm.weight == 1).all())


# ----------------------------------------------------------------------------- many small
SMALL_CFG = {"seed": 0, "rules": {"linear": {"type": "Normal", "layer": "Linear", "std": 0.02, "bias": 0.0}}}


def small_loop(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=0.02)
            nn.init.zeros_(m.bias)


def small_check(model: nn.Module) -> None:
    _close(_std([m.weight for m in model]), 0.02, 0.05, "small Linear std")
    assert all(int(torch.count_nonzero(m.bias)) == 0 for m in model)


def _deep_mm_build(size: str) -> nn.Module:
    from mmengine.model import BaseModule, ModuleList

    return deep_stack(BaseModule, size, ModuleList)


VIT_MM = _mm_initialize([
    {"type": "TruncNormal", "layer": "Linear", "std": 0.02, "a": -0.04, "b": 0.04, "bias": 0.0},
    {"type": "Constant", "layer": "LayerNorm", "val": 1.0, "bias": 0.0},
])

CASES = [
    Case("ViT-Base/16, trunc normal ±2 std", vit_base, VIT_CFG, vit_loop, VIT_MM, vit_check,
         "trunc_normal", _weights(nn.Linear), loop_label="timm-style loop"),
    Case("ViT-Base/16, vs torch's trunc_normal_", vit_base, VIT_CFG, vit_torch_loop, None, vit_check,
         "trunc_normal_torch", _weights(nn.Linear), loop_label="`nn.init.trunc_normal_` loop"),
    Case("ResNet-50, kaiming_conv", resnet50, RESNET_CFG, resnet_loop, _mm_initialize(RESNET_MM),
         resnet_check, "kaiming", _weights(nn.Conv2d, nn.Linear)),
    Case("ResNet-152, kaiming_conv", resnet152, RESNET_CFG, resnet_loop, _mm_initialize(RESNET_MM),
         resnet_check, "kaiming", _weights(nn.Conv2d, nn.Linear)),
    Case("GPT-2 small, normal 0.02", gpt2_small, GPT_CFG, gpt_loop, _mm_initialize(GPT_MM),
         gpt_check, "normal", _weights(nn.Linear, nn.Embedding)),
    Case("deep stack, overlapping + nested init_cfg", lambda size: deep_stack(nn.Module, size), None,
         deep_loop, _mm_init_weights, deep_check, "nested", _weights(nn.Linear), mm_build=_deep_mm_build),
    Case("10,000 small parameters", many_small, SMALL_CFG, small_loop,
         _mm_initialize({"type": "Normal", "layer": "Linear", "std": 0.02, "bias": 0.0}),
         small_check, "small", _weights(nn.Linear)),
]
