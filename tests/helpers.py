"""Shared utilities for the core-engine tests (statistics, snapshots, small models).

Statistical tolerances are expressed in standard errors of the statistic for the
sample size at hand, with :data:`SIGMAS` of them as the bound: a correct
implementation fails a single check with probability below 1e-8 (the tests are
seeded anyway, so they are deterministic), while a wrong formula (a factor of
sqrt(2), the wrong fan) is off by tens of standard errors.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

import hydra_init
from hydra_init import Initializer, Rule

SIGMAS = 6.0
"""Bound, in standard errors. P(|N(0,1)| > 6) = 2e-9."""

ROWS, COLS = 256, 1024
"""A 256x1024 weight: 262,144 samples (fan_in 1024 != fan_out 256, so the fan mode matters)."""

CONV_SHAPE = (64, 32, 5, 5)
"""A conv weight of 51,200 samples; fan_in = 32*25 = 800, fan_out = 64*25 = 1600."""


class Holder(nn.Module):
    """A module holding one ``weight`` of any shape and a ``bias`` of its first dim."""

    def __init__(self, shape: tuple[int, ...], bias: bool = True) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.full(shape, float("nan")))
        self.bias = nn.Parameter(torch.full(shape[:1], float("nan"))) if bias else None


def init_holder(
    init: Initializer | dict[str, Any], shape: tuple[int, ...], seed: int = 0
) -> Holder:
    """Apply one initializer (object or mmengine-style dict) to a fresh :class:`Holder`."""
    holder = Holder(shape)
    rule = Rule(init, layer="Holder") if isinstance(init, Initializer) else {**init, "layer": "Holder"}
    hydra_init.apply(holder, {"seed": seed, "rules": {"under_test": rule}}, log=False)
    return holder


def draw(init: Initializer | dict[str, Any], shape: tuple[int, ...] = (ROWS, COLS), seed: int = 0):
    """The weight an initializer draws for ``shape`` (a detached float64 copy)."""
    return init_holder(init, shape, seed).weight.detach().double()


def assert_mean(x: torch.Tensor, mean: float, sigma: float) -> None:
    """Sample mean within SIGMAS standard errors (sigma / sqrt(n)) of ``mean``."""
    n = x.numel()
    tol = SIGMAS * sigma / math.sqrt(n)
    got = x.mean().item()
    assert abs(got - mean) <= tol, f"mean {got:.6g} vs {mean:.6g} (tolerance {tol:.3g}, n={n})"


def assert_std(x: torch.Tensor, sigma: float, kurtosis: float = 3.0) -> None:
    """Sample std within SIGMAS standard errors of ``sigma``.

    The standard error of a sample std is sigma * sqrt((kurtosis - 1) / (4 n)): for a
    normal (kurtosis 3) sigma / sqrt(2 n), for a uniform (1.8) smaller. Kurtosis 3 is
    the default upper bound for every distribution here (truncated normals have less).
    With n = 262,144 the bound is 0.83% of sigma; a sqrt(2) error is 41%.
    """
    n = x.numel()
    tol = SIGMAS * sigma * math.sqrt((kurtosis - 1.0) / (4.0 * n))
    got = x.std().item()
    assert abs(got - sigma) <= tol, f"std {got:.6g} vs {sigma:.6g} (tolerance {tol:.3g}, n={n})"


def assert_bounds(x: torch.Tensor, low: float, high: float, density_at_edges: float) -> None:
    """Values lie in [low, high] and come close to both ends.

    ``density_at_edges`` is a lower bound on the probability density near each end.
    The chance that no sample lands within ``eps`` of an end is about
    (1 - density * eps)^n = exp(-n * density * eps); ``eps`` is chosen so that this is
    exp(-30), so a too narrow range (a bound off by any visible factor) fails.
    """
    n = x.numel()
    eps = 30.0 / (n * density_at_edges)
    lo, hi = x.min().item(), x.max().item()
    slack = 1e-6 * max(abs(low), abs(high))  # float32 rounding of the bounds
    assert low - slack <= lo <= low + eps, f"min {lo:.6g} vs bound {low:.6g} (eps {eps:.3g})"
    assert high - eps <= hi <= high + slack, f"max {hi:.6g} vs bound {high:.6g} (eps {eps:.3g})"


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    """A deep copy of the state dict (parameters and buffers)."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.detach().contiguous().view(-1).view(torch.uint8)


def changed(model: nn.Module, before: dict[str, torch.Tensor]) -> set[str]:
    """State-dict keys whose bits differ from ``before``."""
    now = model.state_dict()
    assert now.keys() == before.keys()
    return {k for k in now if not torch.equal(_bits(now[k]), _bits(before[k]))}


def assert_bit_identical(model: nn.Module, before: dict[str, torch.Tensor]) -> None:
    """Every parameter and buffer has exactly the bits it had in ``before``."""
    assert changed(model, before) == set()


def filled_with(model: nn.Module, value: float) -> set[str]:
    """Parameter paths whose every element equals ``value``."""
    return {
        path for path, p in model.named_parameters() if bool((p.detach() == value).all())
    }


def trunc_std_factor(bound: float) -> float:
    """Std of a standard normal truncated to [-bound, bound] (closed form).

    Var = 1 - 2 b phi(b) / (2 Phi(b) - 1); at b = 2 this is 0.8796^2.
    """
    phi = math.exp(-0.5 * bound * bound) / math.sqrt(2.0 * math.pi)
    mass = math.erf(bound / math.sqrt(2.0))
    return math.sqrt(1.0 - 2.0 * bound * phi / mass)


# ----------------------------------------------------------------------------- documentation examples
DOCS_ROOT = Path(__file__).resolve().parent.parent


def python_blocks(relative: str) -> list[str]:
    """The ```python blocks of a Markdown file of the repository (```py blocks are illustrations)."""
    text = (DOCS_ROOT / relative).read_text()
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)


def run_block(relative: str, blocks: list[str], index: int) -> None:
    """Run one block in a fresh namespace, compiled as a script (no inherited future flags)."""
    code = compile(blocks[index], f"{relative}[python block {index}]", "exec", dont_inherit=True)
    exec(code, {"__name__": "doc"})
