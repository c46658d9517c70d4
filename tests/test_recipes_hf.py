"""``init=hf``, ``gpt2`` and ``bert`` against Hugging Face transformers itself (no copies, no downloads).

Each case builds a reference model from a small config with transformers' own
``_init_weights`` (the constructor runs it), builds a second one, poisons every
parameter with NaN, applies the preset (no knobs: sizes come from the model) and
compares EVERY parameter's distribution with the reference's, tensor by tensor:

* exact zeros and exact ones: the same count (a padding row, a zero bias, a norm
  scale; a continuous draw hits neither, so any difference is a real one);
* constant tensors: identical values;
* random tensors: the two-sample Kolmogorov-Smirnov test (the family: normal vs
  uniform vs truncated) at p > 1e-6, means within 6 standard errors of their
  difference (6 sqrt(s1^2/n + s2^2/n)), stds within 6 standard errors of their
  difference (6 sqrt(s1^2/(2n) + s2^2/(2n)), a normal's kurtosis 3 being the upper bound
  of every law here), and bounds: no value of ours beyond what a normal of the
  reference's std reaches with probability 1e-9 over n draws.

The smallest random tensor (T5's relative_attention_bias, 32 buckets x 4 heads =
128 values) has a 53% std tolerance: it still tells T5's factor * d_model**-0.5 =
0.0625 from the generic factor = 0.5 (8x). Every other weight has >= 4,096 values
(std tolerance <= 9.4%), and the quirks checked differ by far more (GPT-2's
c_proj at depth 4: 2.8x; Gemma's norms: 0 vs 1; T5 q vs k: 4x).
Seeds are fixed, so the tests are deterministic.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import pytest
import torch
import transformers
from scipy import stats
from torch import nn

import hydra_init
from hydra_init import InitConfigError
from hydra_init.integration.presets import compose

SIGMAS = 6.0
KS_P = 1e-6  # per tensor; ~300 tensors here: a correct init fails somewhere with probability < 3e-4
SMALL = dict(
    vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
    num_key_value_heads=2, initializer_range=0.05, max_position_embeddings=64,
)
"""Llama-like: 2 layers, width 64, initializer_range 0.05 (not the 0.02 default, so it is read)."""

Build = Callable[[], nn.Module]


def _cases() -> dict[str, tuple[str, Build]]:
    t = transformers
    t5 = dict(vocab_size=128, d_model=64, d_kv=16, d_ff=128, num_layers=2, num_heads=4,
              initializer_factor=0.5)
    return {
        "llama": ("llama", lambda: t.LlamaForCausalLM(t.LlamaConfig(**SMALL))),
        "mistral": ("mistral", lambda: t.MistralForCausalLM(t.MistralConfig(**SMALL))),
        "qwen2": ("qwen2", lambda: t.Qwen2ForCausalLM(t.Qwen2Config(**SMALL))),
        "gemma": ("gemma", lambda: t.GemmaForCausalLM(t.GemmaConfig(**SMALL, head_dim=16))),
        "gptj": ("gptj", lambda: t.GPTJForCausalLM(t.GPTJConfig(
            vocab_size=128, n_embd=64, n_layer=2, n_head=4, rotary_dim=8, n_positions=64,
            initializer_range=0.05))),
        "gpt_neo": ("gpt_neo", lambda: t.GPTNeoForCausalLM(t.GPTNeoConfig(
            vocab_size=128, hidden_size=64, num_layers=2, num_heads=4, max_position_embeddings=64,
            attention_types=[[["global", "local"], 1]], initializer_range=0.05))),
        "gpt2": ("gpt2", lambda: gpt2(n_layer=4)),
        "t5": ("t5", lambda: t.T5ForConditionalGeneration(t.T5Config(**t5))),
        "t5_gated": ("t5", lambda: t.T5ForConditionalGeneration(
            t.T5Config(**t5, feed_forward_proj="gated-gelu"))),
        "bert": ("bert", lambda: bert()),
    }


def gpt2(n_layer: int) -> nn.Module:
    config = transformers.GPT2Config(
        vocab_size=128, n_embd=64, n_layer=n_layer, n_head=4, n_positions=64, initializer_range=0.05,
        bos_token_id=0, eos_token_id=0,
    )
    return transformers.GPT2LMHeadModel(config)


def bert() -> nn.Module:
    return transformers.BertForMaskedLM(transformers.BertConfig(
        vocab_size=128, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
        max_position_embeddings=64, initializer_range=0.05,
    ))


@functools.cache
def composed(preset: str, *overrides: str) -> Any:
    """The ``init`` node of ``+init=<preset> [overrides]``, composed by Hydra once per combination."""
    return compose([f"+init={preset}", *overrides]).init


def reference_and_ours(build: Build, *overrides: str, preset: str = "hf") -> tuple[nn.Module, nn.Module, Any]:
    """transformers' own init, and a second build poisoned with NaN then initialized by the preset."""
    torch.manual_seed(0)
    reference = build()
    ours = build()
    with torch.no_grad():
        for p in ours.parameters():
            p.fill_(float("nan"))
    report = hydra_init.apply(ours, composed(preset, *overrides), log=False)
    return reference, ours, report


def assert_same_distribution(path: str, ref: torch.Tensor, got: torch.Tensor) -> None:
    ref, got = ref.detach().double().flatten(), got.detach().double().flatten()
    assert ref.shape == got.shape, path
    assert not torch.isnan(got).any(), f"{path}: never written"
    for value in (0.0, 1.0):
        n_ref, n_got = int((ref == value).sum()), int((got == value).sum())
        assert n_ref == n_got, f"{path}: {n_got} values == {value:g}, reference {n_ref}"
    if bool((ref == ref[0]).all()):
        assert bool((got == ref[0]).all()), f"{path}: reference all {ref[0].item():g}, got {got[:4].tolist()}"
        return
    n = ref.numel()
    s_ref, s_got = ref.std().item(), got.std().item()
    mean_tol = SIGMAS * math.sqrt((s_ref**2 + s_got**2) / n)
    assert abs(ref.mean().item() - got.mean().item()) <= mean_tol, (
        f"{path}: mean {got.mean().item():.5g}, reference {ref.mean().item():.5g} (tolerance {mean_tol:.3g})"
    )
    std_tol = SIGMAS * math.sqrt((s_ref**2 + s_got**2) / (2 * n))
    assert abs(s_ref - s_got) <= std_tol, f"{path}: std {s_got:.5g}, reference {s_ref:.5g} ({std_tol:.3g})"
    bound = stats.norm.isf(1e-9 / (2 * n)) * (s_ref + std_tol)
    assert (got - ref.mean()).abs().max().item() <= bound, f"{path}: a value beyond {bound:.3g}"
    p = stats.ks_2samp(ref.numpy(), got.numpy()).pvalue
    assert p > KS_P, f"{path}: not the reference's law (KS p {p:.2g}, std {s_got:.4g} vs {s_ref:.4g})"


def assert_matches_reference(reference: nn.Module, ours: nn.Module) -> None:
    ref_params = dict(reference.named_parameters())
    our_params = dict(ours.named_parameters())
    assert set(ref_params) == set(our_params)
    for path, ref in ref_params.items():
        assert_same_distribution(path, ref, our_params[path])


# ============================================================================ init=hf
@pytest.mark.parametrize("case", list(_cases()))
def test_hf_reproduces_transformers_init(case) -> None:
    family, build = _cases()[case]
    reference, ours, report = reference_and_ours(build)
    assert_matches_reference(reference, ours)
    assert report.families[0] == family and report.warnings == []
    assert f"family: {', '.join(report.families)}" in str(report)


def test_hf_reads_std_and_t5_sizes_from_the_config() -> None:
    _, build = _cases()["t5"]
    _, _, report = reference_and_ours(build)
    assert report.families == ["t5", "t5_dense"]
    assert report.sizes == {
        # T5Config has no initializer_range: transformers' generic std is initializer_factor
        "std": (0.5, "model.config.initializer_factor"),
        "initializer_factor": (0.5, "model.config.initializer_factor"),
        "d_model": (64, "model.config.d_model"), "d_kv": (16, "model.config.d_kv"),
        "d_ff": (128, "model.config.d_ff"), "num_heads": (4, "model.config.num_heads"),
    }
    _, _, report = reference_and_ours(_cases()["llama"][1])
    assert report.sizes == {"std": (0.05, "model.config.initializer_range")}  # GPT-2's n_layer: not read


def test_hf_gemma_norms_are_zero_centred() -> None:
    """Gemma's RMSNorm computes x * (1 + weight): transformers stores its weights as 0, Llama's as 1."""
    _, gemma, _ = reference_and_ours(_cases()["gemma"][1])
    _, llama, _ = reference_and_ours(_cases()["llama"][1])
    assert torch.all(gemma.model.norm.weight == 0) and torch.all(llama.model.norm.weight == 1)


def test_hf_gpt2_scales_c_proj_but_gpt_neo_does_not() -> None:
    _, gpt, _ = reference_and_ours(_cases()["gpt2"][1])
    _, neo, _ = reference_and_ours(_cases()["gpt_neo"][1])
    c_proj = gpt.transformer.h[0].mlp.c_proj.weight  # Conv1D: (in, out) = (4 * 64, 64)
    assert tuple(c_proj.shape) == (256, 64)
    expected = 0.05 / math.sqrt(2 * 4)
    tol = SIGMAS * expected / math.sqrt(2 * c_proj.numel())
    assert abs(c_proj.std().item() - expected) <= tol
    neo_std = neo.transformer.h[0].mlp.c_proj.weight.std().item()
    assert abs(neo_std - 0.05) <= SIGMAS * 0.05 / math.sqrt(2 * 256 * 64)


def test_hf_explicit_knob_wins_and_the_report_says_so() -> None:
    reference, ours, report = reference_and_ours(_cases()["llama"][1], "init.std=0.1")
    assert report.sizes["std"] == (0.1, "init.std")
    w = ours.model.layers[0].mlp.down_proj.weight
    assert abs(w.std().item() - 0.1) <= SIGMAS * 0.1 / math.sqrt(2 * w.numel())
    del reference


def test_hf_on_a_model_of_no_known_family_warns_and_uses_the_default_std() -> None:
    model = nn.Sequential(nn.Linear(64, 64), nn.LayerNorm(64))
    report = hydra_init.apply(model, composed("hf"), log=False)
    assert report.families == [] and report.sizes == {"std": (0.02, "the preset's fixed value")}
    assert any("no model family recognized" in w for w in report.warnings)
    assert torch.all(model[1].weight == 1)


# ============================================================================ gpt2 and bert on transformers
@pytest.mark.parametrize("n_layer", [2, 4])
def test_gpt2_preset_matches_gpt2lmheadmodel_at_any_depth(n_layer) -> None:
    reference, ours, report = reference_and_ours(lambda: gpt2(n_layer), preset="gpt2")
    assert_matches_reference(reference, ours)
    assert report.sizes == {"std": (0.05, "model.config.initializer_range"),
                            "n_layer": (n_layer, "model.config.n_layer")}


def test_bert_preset_matches_bertformaskedlm() -> None:
    reference, ours, report = reference_and_ours(bert, preset="bert")
    assert_matches_reference(reference, ours)
    assert report.sizes == {"std": (0.05, "model.config.initializer_range")}


# ======================================================================= presets that refuse a layout say so
def test_llama_preset_on_a_hugging_face_llama_points_to_init_hf() -> None:
    model = _cases()["llama"][1]()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(InitConfigError, match=r"LlamaForCausalLM|PreTrainedModel") as err:
        hydra_init.apply(model, composed("llama"), log=False)
    assert "init=hf" in str(err.value) and "torchtitan" in str(err.value)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize("case", ["gptj", "gpt_neo"])
def test_gpt2_preset_on_gpt_neo_and_gptj_points_to_init_hf(case) -> None:
    model = _cases()[case][1]()
    with pytest.raises(InitConfigError, match=r"init=hf"):
        hydra_init.apply(model, composed("gpt2"), log=False)


def test_a_dead_glob_is_the_headline_not_an_absent_class() -> None:
    """On GPT-J (no c_proj, no Conv1D) a c_proj rule's error names the glob, not the missing Conv1D."""
    model = _cases()["gptj"][1]()
    cfg = {"rules": {"residual": {"type": "Normal", "std": 0.01, "layer": ["Linear", "Conv1D"],
                                  "name": "*.c_proj"}}}
    with pytest.raises(InitConfigError, match=r"init\.rules\.residual\.name: module path '\*\.c_proj'"):
        hydra_init.apply(model, cfg, log=False)
