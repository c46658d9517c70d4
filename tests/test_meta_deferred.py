"""Deferred init on meta builds: a constructor's own init is recorded and replayed, not dropped.

References are eager builds of the same classes, computed here.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from torch import nn

import hydra_init
from hydra_init.meta import REPLAY_LABEL, MetaBuildError, build_and_init


# ----------------------------------------------------------------------------- a nanoGPT-style model
@dataclass
class GPTConfig:
    vocab_size: int = 96
    block_size: int = 32
    n_layer: int = 2
    n_head: int = 2
    n_embd: int = 64


class Attention(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd)


class MLP(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd)


class Block(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd)
        self.attn = Attention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd)
        self.mlp = MLP(config)


class GPT(nn.Module):
    """nanoGPT's structure and its __init__-time init (normal 0.02, zero biases, scaled c_proj)."""

    def __init__(self, config: GPTConfig = GPTConfig()) -> None:  # noqa: B008 - a frozen-like default
        super().__init__()
        self.transformer = nn.ModuleDict({
            "wte": nn.Embedding(config.vocab_size, config.n_embd),
            "wpe": nn.Embedding(config.block_size, config.n_embd),
            "h": nn.ModuleList([Block(config) for _ in range(config.n_layer)]),
            "ln_f": nn.LayerNorm(config.n_embd),
        })
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.transformer.wte.weight = self.lm_head.weight  # weight tying
        self.apply(self._init_weights)
        for pn, p in self.named_parameters():
            if pn.endswith("c_proj.weight"):
                torch.nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                torch.nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)


def _expected_std(path: str) -> float:
    return 0.02 / math.sqrt(2 * GPTConfig.n_layer) if path.endswith("c_proj.weight") else 0.02


def _params(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach() for k, v in model.named_parameters()}


def _assert_same_distribution(path: str, got: torch.Tensor, eager: torch.Tensor) -> None:
    # The smallest drawn tensor here is wpe (32 x 64 = 2048 values). For n normal draws the
    # sample std has relative standard error 1/sqrt(2n) <= 1.6%, the mean has standard error
    # std/sqrt(n) <= 2.2% of std: 10% and 0.15 std are over 6 standard errors (no flakes),
    # while the two stds in play (0.02 and 0.01) differ by 50%.
    std = _expected_std(path)
    for values in (got, eager):
        assert abs(float(values.std()) / std - 1) < 0.10, path
        assert abs(float(values.mean())) < 0.15 * std, path
    # And the shape of the distribution: the fraction within one std is 68.3% for a normal
    # (binomial standard error <= 1.03% at n = 2048), far from a uniform's 57.7%.
    inside = float((got.abs() < std).double().mean())
    assert abs(inside - 0.683) < 0.05, path


def test_a_self_initializing_gpt_built_on_meta_equals_an_eager_build():
    torch.manual_seed(0)
    eager = GPT()
    model, report = build_and_init(GPT, {"seed": 0}, device="cpu", log=False)
    assert model.transformer.wte.weight is model.lm_head.weight
    got, expected = _params(model), _params(eager)
    assert got.keys() == expected.keys()
    for path, values in got.items():
        if values.dim() == 1:  # biases are zeroed and LayerNorms reset: exact values
            assert torch.equal(values, expected[path]), path
        else:
            _assert_same_distribution(path, values, expected[path])
    assert report["transformer.h.0.mlp.c_proj.weight"].source == "custom"
    assert report["transformer.h.0.mlp.c_proj.weight"].rule == REPLAY_LABEL
    assert report["transformer.h.0.mlp.c_proj.weight"].init == "__init__: normal_(mean=0.0, std=0.01)"
    assert report["transformer.h.0.attn.c_attn.bias"].init == "__init__: zero_()"
    assert report["transformer.ln_f.weight"].source == "reset"  # LayerNorm's own reset_parameters()
    assert report.rules[REPLAY_LABEL]["written"] == report.totals["custom"] == 2 + 2 * 8


def test_replayed_draws_are_seeded_per_parameter_and_leave_the_global_rng_alone():
    state = torch.random.get_rng_state()
    a, _ = build_and_init(GPT, {"seed": 1}, device="cpu", log=False)
    assert torch.equal(state, torch.random.get_rng_state())
    b, _ = build_and_init(GPT, {"seed": 1}, device="cpu", log=False)
    c, _ = build_and_init(GPT, {"seed": 2}, device="cpu", log=False)
    assert all(torch.equal(x, y) for x, y in zip(_params(a).values(), _params(b).values(), strict=True))
    assert not torch.equal(a.lm_head.weight, c.lm_head.weight)
    first, second = (a.transformer.h[i].attn.c_proj.weight for i in (0, 1))
    assert not torch.equal(first, second)  # one key per parameter path, not one stream reused


def test_a_partial_config_writes_its_rules_and_replays_the_rest():
    cfg = {"seed": 3, "rules": {"qkv": {"type": "Xavier", "name": "*.c_attn"},
                                "norms": {"type": "Constant", "val": 0.5, "layer": "LayerNorm"}}}
    eager = GPT()
    hydra_init.apply(eager, cfg, log=False)
    model, report = build_and_init(GPT, cfg, device="cpu", log=False)
    got, expected = _params(model), _params(eager)
    for path, values in got.items():
        # rules draw from (seed, path, shape): the same values; biases and norms are exact
        if report[path].source == "rule" or values.dim() == 1:
            assert torch.equal(values, expected[path]), path
        else:
            assert report[path].source == "custom", path
            _assert_same_distribution(path, values, expected[path])
    assert report.totals["rule"] == 2 * 2 + 5 * 2  # c_attn weight+bias per block, 5 LayerNorms


# ----------------------------------------------------------------------------- deterministic inits
class Deterministic(nn.Module):
    """Values written in __init__ by fill_, zero_, copy_ of computed values, views and other weights."""

    def __init__(self) -> None:
        super().__init__()
        self.table = nn.Parameter(torch.empty(3, 4))
        with torch.no_grad():
            self.table.copy_(torch.arange(12.0).view(3, 4))
        self.fc = nn.Linear(4, 4)
        nn.init.zeros_(self.fc.weight)
        with torch.no_grad():
            self.fc.weight[0].fill_(2.0)  # through a view
            self.fc.bias.fill_(0.5)
            self.fc.weight.data[:, 1] += 1.0  # through .data and an in-place add
        self.twice = nn.Parameter(torch.empty(3, 4))
        with torch.no_grad():
            self.twice.copy_(self.table * 2)  # computed from another meta parameter
        self.scale = nn.Parameter(torch.empty(4))
        nn.init.constant_(self.scale, 3.0)
        filled = torch.empty(2, 2)
        nn.init.ones_(filled)
        self.wrapped = nn.Parameter(filled)  # a parameter around a tensor filled before


def test_a_deterministic_self_init_is_replayed_value_for_value():
    eager = Deterministic()
    model, report = build_and_init(Deterministic, {"seed": 0}, device="cpu", log=False)
    for path, values in _params(eager).items():
        assert torch.equal(_params(model)[path], values), path
        assert report[path].source == "custom", path
    assert float(model.fc.weight.detach()[0, 1]) == 3.0


def test_a_rule_on_a_parameter_another_one_copied_keeps_the_copy_as_in_eager():
    cfg = {"seed": 0, "rules": {"t": {"type": "Zeros", "params": "table"}}}
    eager = Deterministic()
    hydra_init.apply(eager, cfg, log=False)
    model, _ = build_and_init(Deterministic, cfg, device="cpu", log=False)
    assert torch.count_nonzero(model.table) == 0
    assert torch.equal(model.twice, torch.arange(12.0).view(3, 4) * 2)
    for path, values in _params(eager).items():
        assert torch.equal(_params(model)[path], values), path


class NoReset(nn.Module):
    """A custom module without reset_parameters() that draws its weight in __init__."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = nn.Parameter(torch.empty(64, 64))
        nn.init.uniform_(self.gate, -0.5, 0.5)


def test_a_module_without_reset_parameters_gets_its_recorded_init():
    model, report = build_and_init(NoReset, {"seed": 0}, device="cpu", log=False)
    assert report["gate"].source == "custom"
    # 4096 uniform(-0.5, 0.5) draws: the std 1/sqrt(12) = 0.2887 has relative standard error
    # about 1/sqrt(4096 * 1.8) = 1.2%, so 5% is 4 standard errors; the bounds are exact.
    assert float(model.gate.detach().abs().max()) <= 0.5
    assert abs(float(model.gate.detach().std()) / (1 / math.sqrt(12)) - 1) < 0.05


# ----------------------------------------------------------------------------- errors
class ViewParameter(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        big = torch.empty(8)
        nn.init.normal_(big)
        self.part = nn.Parameter(big[:4])  # a view: allocation gives it its own storage


def test_an_init_that_cannot_be_replayed_fails_naming_the_module_before_allocating():
    with pytest.raises(MetaBuildError, match=r"part of <root> \(ViewParameter\)"):
        build_and_init(ViewParameter, {"seed": 0}, device="cpu", log=False)


def test_a_model_instead_of_a_builder_is_one_clear_error_before_anything_runs():
    with pytest.raises(TypeError, match=r"build must be a callable.*instance of Linear.*lambda: Linear"):
        build_and_init(nn.Linear(2, 2), {"seed": 0}, device="cpu", log=False)
    with pytest.raises(TypeError, match="build must be a callable"):
        build_and_init("GPT", {"seed": 0}, device="cpu", log=False)


class ZeroBias(nn.Module):
    """Only the bias is changed after nn.Linear's own init (the weight keeps PyTorch's default)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(256, 64)
        nn.init.zeros_(self.fc.bias)


def test_a_module_partly_reinitialized_in_init_keeps_both_parts():
    eager = ZeroBias()
    model, report = build_and_init(ZeroBias, {"seed": 0}, device="cpu", log=False)
    assert torch.count_nonzero(model.fc.bias) == 0  # a reset_parameters() would have redrawn it
    assert report["fc.bias"].source == report["fc.weight"].source == "custom"
    assert report["fc.weight"].init.startswith("__init__: kaiming_uniform_(")
    # Kaiming-uniform with a=sqrt(5) is U(-1/sqrt(256), 1/sqrt(256)): exact bounds, and a std of
    # bound/sqrt(3) = 0.0361 known to 1.2% (relative standard error of 16384 uniform draws
    # is about 1/sqrt(16384 * 1.8) = 0.6%), so 4% is over 6 standard errors.
    bound = 1 / math.sqrt(256)
    for weight in (model.fc.weight.detach(), eager.fc.weight.detach()):
        assert float(weight.abs().max()) <= bound
        assert abs(float(weight.std()) / (bound / math.sqrt(3)) - 1) < 0.04


def test_the_deferred_init_example_of_the_docs_prints_what_they_show(capsys):
    text = (Path(__file__).resolve().parents[1] / "docs" / "performance.md").read_text()
    found = re.search(r"```python\n(import math\n[^`]*?TinyGPT[^`]*)```\n\nprints\n\n```\n([^`]*)```", text)
    code, shown = found.groups()
    exec(compile(code, "docs/performance.md[TinyGPT]", "exec"), {"__name__": "doc"})
    assert capsys.readouterr().out == shown
