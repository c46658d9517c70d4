"""Parameters that are views of other parameters, and errors nobody foresaw half-way through a write.

Hostile-input style (tests/test_hostile_inputs.py): each case gives a correct result, or
one InitConfigError (or an InitExecutionError saying the model was restored) and a
bit-identical model.
"""

from __future__ import annotations

import pytest
import torch
from helpers import assert_bit_identical, snapshot
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

import hydra_init
from hydra_init import InitConfigError, InitExecutionError
from hydra_init.engine import restore
from hydra_init.sampling import draws


class Viewed(nn.Module):
    """``head`` is ``big``'s first rows: one memory under two parameters."""

    def __init__(self, offset: int = 0) -> None:
        super().__init__()
        self.big = nn.Parameter(torch.zeros(8, 4))
        self.head = nn.Parameter(self.big.data[offset: offset + 2])
        self.other = nn.Linear(4, 4)


def rule(**selectors) -> dict:
    return {"seed": 0, "rules": {"r": {"type": "Normal", "std": 0.1, **selectors}}}


@pytest.mark.parametrize("selectors", [{"params": ["big"]}, {"params": ["head"]}, {"params": ["*"]}],
                         ids=["the base", "the view", "both"])
def test_writing_a_parameter_that_shares_memory_is_refused_naming_both(selectors: dict) -> None:
    model = Viewed(offset=3)
    before = snapshot(model)
    with pytest.raises(InitConfigError) as caught:
        hydra_init.apply(model, rule(**selectors), log=False)
    assert caught.value.key == "init.rules.r"
    for words in ("'big'", "'head'", "share memory", "clone()"):
        assert words in str(caught.value)
    assert_bit_identical(model, before)


def test_two_views_of_one_storage_that_do_not_overlap_are_written() -> None:
    base = torch.zeros(8)
    model = nn.Module()
    model.low = nn.Parameter(base[:4])
    model.high = nn.Parameter(base[4:])
    hydra_init.apply(model, {"seed": 0, "rules": {"r": {"type": "Ones", "params": "*"}}}, log=False)
    assert torch.equal(base, torch.ones(8))


def test_overlapping_parameters_no_rule_writes_are_no_problem() -> None:
    model = Viewed()
    report = hydra_init.apply(model, rule(layer="Linear"), log=False)
    assert report["big"].source == "default" and report["other.weight"].source == "rule"


def test_a_tied_parameter_is_still_one_tensor_written_once() -> None:
    model = nn.Sequential(nn.Embedding(5, 4), nn.Linear(4, 5, bias=False))
    model[1].weight = model[0].weight
    cfg = {"seed": 0, "rules": {"r": {"type": "Ones", "params": "weight"}}}
    report = hydra_init.apply(model, cfg, log=False)
    assert report["1.weight"].path == "0.weight"


# ----------------------------------------------------------------------------- restore
# Steps that run user code (reset_parameters(), right_inverse, custom draws) run first, with
# what they write copied; the engine's own draws and copies run after them, uncopied.
def _failing_on_call(monkeypatch, n: int, cls: type = draws.NormalDraw) -> None:
    """Make the n-th tile a draw of ``cls`` fills raise, as an unforeseen failure would (each
    128x128 weight is one tile: more than SMALL, less than TILE elements)."""
    real = cls.fill_tile
    calls = {"n": 0}

    def fill_tile(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == n:
            raise RuntimeError("simulated device failure")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(cls, "fill_tile", fill_tile)


class Spiky(draws.Draw):
    """A custom elementwise draw (user code): signs of a uniform, times 0.1."""

    def fill_from(self, buf, src):
        src.uniform(buf, None)
        buf.copy_(torch.where(buf < 0.5, -0.1, 0.1))


class SpikyInit(hydra_init.Initializer):
    type_name = "SpikyInit"

    def draw(self, shape):
        return Spiky()


class Flaky(nn.BatchNorm1d):
    """A module whose own reset_parameters() fails after writing part of its state."""

    fail = False

    def reset_parameters(self) -> None:
        super().reset_parameters()
        if self.fail:
            raise RuntimeError("reset_parameters went wrong")


def model_with_everything() -> nn.Module:
    """Resets (BatchNorm buffers), draws, constants and a write through a parametrization."""
    return nn.Sequential(nn.Linear(128, 128), Flaky(128), weight_norm(nn.Linear(128, 128)),
                         nn.Linear(128, 128))


CFG = {"seed": 0, "rules": {
    "fc": {"type": "Normal", "std": 0.02, "layer": "Linear", "bias": 0.5},
    "bn": {"type": "Default", "layer": "BatchNorm1d"},
}}


def _assert_restored(model: nn.Module, before, originals, cfg=CFG, match: str = "") -> None:
    with pytest.raises(InitExecutionError) as caught:
        hydra_init.apply(model, cfg, log=False)
    assert match in str(caught.value)
    assert "the model was restored to its state before the call" in str(caught.value)
    assert isinstance(caught.value.__cause__, RuntimeError)
    assert_bit_identical(model, before)
    assert [p for _, p in model.named_parameters()] == originals  # the same Parameter objects


def _prepared() -> tuple[nn.Module, dict, list]:
    model = model_with_everything()
    with torch.no_grad():
        model[1].running_mean.fill_(3.0)  # something the BatchNorm reset changes
    return model, snapshot(model), [p for _, p in model.named_parameters()]


def test_a_failing_write_through_a_parametrization_restores_the_model(monkeypatch) -> None:
    model, before, originals = _prepared()
    _failing_on_call(monkeypatch, 1)  # the first normal tile: the draw written through weight_norm
    _assert_restored(model, before, originals, match="simulated device failure")


def test_a_failing_reset_parameters_restores_the_model(monkeypatch) -> None:
    model, before, originals = _prepared()
    monkeypatch.setattr(Flaky, "fail", True)
    _assert_restored(model, before, originals, match="reset_parameters went wrong")


def test_a_failing_custom_draw_restores_the_model(monkeypatch) -> None:
    monkeypatch.setitem(hydra_init.initializers.REGISTRY, "SpikyInit", SpikyInit)
    model, before, originals = _prepared()
    cfg = {"seed": 0, "rules": {**CFG["rules"],
                                "spiky": {"type": "SpikyInit", "name": "3", "priority": 1}}}
    real = Spiky.fill_from
    monkeypatch.setattr(Spiky, "fill_from", lambda self, buf, src: (_ for _ in ()).throw(
        RuntimeError("custom draw failed")) if buf.numel() > 64 else real(self, buf, src))
    _assert_restored(model, before, originals, cfg=cfg, match="custom draw failed")


@pytest.mark.parametrize("nth", [2, 3])  # the engine's own draws of 3.weight / 0.weight
def test_a_failure_of_the_engines_own_writes_says_the_model_was_not_restored(monkeypatch, nth) -> None:
    model, _, _ = _prepared()
    _failing_on_call(monkeypatch, nth)
    not_restored = r"could NOT be restored \(the engine's own writes"
    with pytest.raises(InitExecutionError, match=not_restored) as caught:
        hydra_init.apply(model, CFG, log=False)
    assert "0.weight" in str(caught.value) and "please report" in str(caught.value)
    assert isinstance(caught.value.__cause__, RuntimeError)


def test_above_the_restore_limit_the_error_says_the_model_was_not_restored(monkeypatch) -> None:
    monkeypatch.setattr(restore, "RESTORE_LIMIT", 1024)  # bytes: less than one 128x128 weight
    _failing_on_call(monkeypatch, 1)
    with pytest.raises(InitExecutionError, match=r"could NOT be restored .* 0\.weight"):
        hydra_init.apply(model_with_everything(), CFG, log=False)
