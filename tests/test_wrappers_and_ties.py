"""Wrappers are invisible and tied tensors are one tensor (issue 10).

A compiled (``torch.compile``) or ``DataParallel``-wrapped model gets the values of
the bare model for the same seed, and globs written for the bare model match. A
tied weight (GPT-2/BERT's ``head.weight = embed.weight``) is written once; the report
names every name of it, and two drawing rules claiming it is a warning naming both.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import hydra_init


class TiedLM(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(50, 16)
        self.block = nn.Sequential(nn.Linear(16, 16), nn.LayerNorm(16))
        self.head = nn.Linear(16, 50, bias=False)
        self.head.weight = self.embed.weight


CFG = {"seed": 7, "rules": {
    "embed": {"type": "Normal", "std": 0.02, "name": "embed"},
    "block": {"type": "TruncNormal", "std": 0.02, "a": -2, "b": 2, "bound_unit": "std", "name": "block.0"},
    "norm": {"type": "Ones", "layer": "LayerNorm"},
}}

WRAPS = {
    "torch.compile": lambda m: torch.compile(m),
    "DataParallel": nn.DataParallel,
    "DataParallel(compile)": lambda m: nn.DataParallel(torch.compile(m)),
}


@pytest.mark.parametrize("wrap", sorted(WRAPS))
def test_a_wrapped_model_gets_the_bare_models_values(wrap: str) -> None:
    bare, inner = TiedLM(), TiedLM()
    wrapped = WRAPS[wrap](inner)
    bare_report = hydra_init.apply(bare, CFG, log=False)
    report = hydra_init.apply(wrapped, CFG, log=False)
    assert [r.path for r in report.params] == [r.path for r in bare_report.params]  # no _orig_mod./module.
    for name, value in bare.state_dict().items():
        assert torch.equal(inner.state_dict()[name], value), name


def test_a_tied_tensor_is_reported_under_every_name() -> None:
    report = hydra_init.apply(TiedLM(), CFG, log=False)
    record = report["head.weight"]
    assert record is report["embed.weight"] and record.aliases == ("head.weight",)
    assert record.rule == "embed" and "tied: also head.weight" in record.detail
    assert report.to_dict()["params"][0]["aliases"] == ["head.weight"]
    assert not report.warnings  # one rule claims it


def test_two_drawing_rules_on_a_tied_tensor_warn_naming_both_and_the_winner() -> None:
    cfg = {"seed": 0, "rules": {**CFG["rules"], "head": {"type": "Zeros", "name": "head"}}}
    model = TiedLM()
    report = hydra_init.apply(model, cfg, log=False)
    (warning,) = [w for w in report.warnings if "tied tensor" in w]
    assert "embed, head" in warning and "by 'head'" in warning
    assert bool((model.embed.weight == 0).all())  # the later rule wins, once, for both names
