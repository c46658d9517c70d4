"""Precedence: later rule wins, priority reorders, each parameter is written once,
modules' own ``init_cfg`` wins for their subtree (also inside plain containers),
and a checkpoint beats random rules."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from helpers import changed, snapshot
from torch import nn
from torch.overrides import TorchFunctionMode

import hydra_init


def const(val: float, **selectors) -> dict:
    return {"type": "Constant", "val": val, "bias": val, **selectors}


def apply(model: nn.Module, named_rules: dict, **extra) -> hydra_init.InitReport:
    return hydra_init.apply(model, {"seed": 0, "rules": named_rules, **extra}, log=False)


def values(model: nn.Module) -> dict[str, float | None]:
    """Each parameter's constant value, or None when it is not constant."""
    out = {}
    for path, p in model.named_parameters():
        flat = p.detach().reshape(-1)
        out[path] = flat[0].item() if bool((flat == flat[0]).all()) else None
    return out


# ----------------------------------------------------------------------------- order and priority
def test_later_rule_wins():
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4))
    apply(model, {"first": const(1.0, layer="Linear"), "second": const(2.0, layer="Linear")})
    assert set(values(model).values()) == {2.0}
    apply(model, {"second": const(2.0, layer="Linear"), "first": const(1.0, layer="Linear")})
    assert set(values(model).values()) == {1.0}


def test_later_rule_wins_only_where_it_matches():
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4))
    report = apply(model, {"all": const(1.0, layer="Linear"), "one": const(2.0, name="1")})
    assert values(model) == {"0.weight": 1.0, "0.bias": 1.0, "1.weight": 2.0, "1.bias": 2.0}
    assert report["0.weight"].rule == "all" and report["1.weight"].rule == "one"


@pytest.mark.parametrize(("p_first", "p_second", "winner"), [(1, 0, 1.0), (0, 0, 2.0), (0, -1, 1.0),
                                                             (5, 7, 2.0)])
def test_priority_reorders(p_first, p_second, winner):
    model = nn.Linear(4, 4)
    apply(model, {"first": const(1.0, layer="Linear", priority=p_first),
                  "second": const(2.0, layer="Linear", priority=p_second)})
    assert set(values(model).values()) == {winner}


def test_priority_in_mmengine_list_form():
    model = nn.Linear(4, 4)
    hydra_init.apply(model, [const(1.0, layer="Linear", priority=2), const(2.0, layer="Linear")],
                     log=False)
    assert set(values(model).values()) == {1.0}


# ----------------------------------------------------------------------------- written once
class WriteCounter(TorchFunctionMode):
    """Counts the elements that torch calls write into each parameter's storage.

    Writes are in-place calls (``normal_``, ``copy_``, ``torch._foreach_add_``: a trailing
    underscore), item assignment and ``out=`` arguments. Function modes are per thread,
    so callers run the engine on one thread.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.storages = {p.untyped_storage().data_ptr(): n for n, p in model.named_parameters()}
        self.elements: Counter[str] = Counter()

    def _record(self, value) -> None:
        for t in value if isinstance(value, (list, tuple)) else [value]:
            if isinstance(t, torch.Tensor):
                name = self.storages.get(t.untyped_storage().data_ptr())
                if name is not None:
                    self.elements[name] += t.numel()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        if args and (name == "__setitem__" or (name.endswith("_") and not name.endswith("__"))):
            self._record(args[0])
        if "out" in kwargs:
            self._record(kwargs["out"])
        return func(*args, **kwargs)


WINNERS = {
    "uniform": {"type": "Uniform", "a": -1.0, "b": 1.0, "name": "1", "bias": 3.0},
    "narrow": {"type": "Normal", "std": 0.01, "name": "0"},
}
OVERLAPPING = {  # the same winners, plus rules that lose every parameter they match
    "wide": {"type": "Normal", "std": 1.0, "layer": "Linear"},
    "uniform": {"type": "Uniform", "a": -1.0, "b": 1.0, "layer": "Linear", "bias": 3.0},
    "narrow": {"type": "Normal", "std": 0.01, "name": "0"},
    "kaiming": {"type": "Kaiming", "layer": "Linear", "priority": -1},
    "ones": {"type": "Ones", "name": "1", "priority": -1},
}


def two_linears() -> nn.Sequential:
    # 0.weight has 90,000 values: more than one sampling tile of 65,536.
    return nn.Sequential(nn.Linear(300, 300), nn.Linear(16, 8))


def count_writes(named_rules: dict) -> Counter[str]:
    model = two_linears()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one thread: the function mode sees every write
    try:
        with WriteCounter(model) as counter:
            apply(model, named_rules)
    finally:
        torch.set_num_threads(threads)
    return counter.elements


def test_losing_rules_cost_no_writes():
    # However the engine writes a tensor, overlapping rules that lose must add nothing:
    # the writes per parameter equal those of the winners alone.
    alone, overlapped = count_writes(WINNERS), count_writes(OVERLAPPING)
    assert set(alone) == {"0.weight", "0.bias", "1.weight", "1.bias"}
    assert all(alone[name] > 0 for name in alone)
    assert overlapped == alone


def test_overlapping_rules_give_exactly_the_winners_values():
    overlapped, alone = two_linears(), two_linears()
    apply(overlapped, OVERLAPPING)
    apply(alone, WINNERS)
    for (name, a), b in zip(overlapped.named_parameters(), alone.parameters(), strict=True):
        assert torch.equal(a, b), name
    assert overlapped[0].weight.std().item() < 0.02  # the narrow winner, not std=1
    assert bool((overlapped[1].bias == 3.0).all())


# ----------------------------------------------------------------------------- module-owned init_cfg
class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 2, 1)
        self.norm = nn.BatchNorm2d(2)


class Backbone(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layer1 = Block()
        self.layer2 = Block()


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.backbone = Backbone()
        self.neck = nn.Sequential(nn.Conv2d(2, 2, 1), nn.Conv2d(2, 2, 1))
        self.stages = nn.ModuleList([nn.Conv2d(2, 2, 1), nn.Conv2d(2, 2, 1)])
        self.heads = nn.ModuleDict({"cls": nn.Conv2d(2, 2, 1), "reg": nn.Conv2d(2, 2, 1)})


OUTER = {"convs": const(1.0, layer="Conv2d")}


def conv_values(model: Net) -> dict[str, float | None]:
    return {k.removesuffix(".weight"): v for k, v in values(model).items()
            if k.endswith(".weight") and "norm" not in k}


def test_module_init_cfg_wins_over_outer_rules_for_its_subtree():
    model = Net()
    model.backbone.init_cfg = const(7.0, layer="Conv2d")  # mmengine-style dict
    report = apply(model, OUTER)
    got = conv_values(model)
    assert got.pop("backbone.layer1.conv") == 7.0 and got.pop("backbone.layer2.conv") == 7.0
    assert set(got.values()) == {1.0}
    assert report["backbone.layer1.conv.weight"].rule.startswith("backbone")


@pytest.mark.parametrize(
    ("owner", "inside"),
    [
        (lambda m: m.neck[1], ["neck.1"]),  # a module inside a plain Sequential
        (lambda m: m.neck, ["neck.0", "neck.1"]),  # the Sequential itself
        (lambda m: m.stages[0], ["stages.0"]),
        (lambda m: m.stages, ["stages.0", "stages.1"]),
        (lambda m: m.heads["reg"], ["heads.reg"]),
        (lambda m: m.heads, ["heads.cls", "heads.reg"]),
    ],
)
def test_init_cfg_inside_plain_containers(owner, inside):
    model = Net()
    owner(model).init_cfg = {"type": "Constant", "val": 7.0, "layer": "Conv2d"}
    apply(model, OUTER)
    got = conv_values(model)
    assert {k for k, v in got.items() if v == 7.0} == set(inside)
    assert {k for k, v in got.items() if v == 1.0} == set(got) - set(inside)


def test_named_rules_form_as_module_init_cfg():
    model = Net()
    model.neck.init_cfg = {"rules": {"first": const(7.0, layer="Conv2d"), "only_0": const(8.0, name="0")}}
    apply(model, OUTER)
    got = conv_values(model)
    assert (got["neck.0"], got["neck.1"], got["stages.0"]) == (8.0, 7.0, 1.0)


def test_owned_init_cfg_names_are_relative_to_the_owner():
    model = Net()
    model.backbone.init_cfg = [{"type": "Constant", "val": 7.0, "layer": "Conv2d",
                                "override": {"name": "layer2", "type": "Constant", "val": 9.0}}]
    apply(model, OUTER)
    got = conv_values(model)
    assert (got["backbone.layer1.conv"], got["backbone.layer2.conv"], got["neck.0"]) == (7.0, 9.0, 1.0)


def test_priority_beats_module_init_cfg():
    model = Net()
    model.backbone.init_cfg = const(7.0, layer="Conv2d")
    apply(model, {"convs": const(1.0, layer="Conv2d", priority=1)})
    assert set(conv_values(model).values()) == {1.0}


def test_deeper_init_cfg_wins_over_shallower():
    model = Net()
    model.backbone.init_cfg = const(7.0, layer="Conv2d")
    model.backbone.layer2.init_cfg = const(9.0, layer="Conv2d")
    apply(model, OUTER)
    got = conv_values(model)
    assert (got["backbone.layer1.conv"], got["backbone.layer2.conv"], got["neck.0"]) == (7.0, 9.0, 1.0)


def test_root_init_cfg_wins_over_the_config_given_to_apply():
    model = Net()
    model.init_cfg = const(7.0, layer="Conv2d")
    apply(model, OUTER)
    assert set(conv_values(model).values()) == {7.0}


@pytest.mark.parametrize("how", ["config", "argument"])
def test_module_init_cfg_can_be_turned_off(how):
    model = Net()
    model.backbone.init_cfg = const(7.0, layer="Conv2d")
    if how == "config":
        apply(model, OUTER, module_init_cfg=False)
    else:
        hydra_init.apply(model, {"seed": 0, "rules": OUTER}, module_init_cfg=False, log=False)
    assert set(conv_values(model).values()) == {1.0}


def test_module_init_cfg_alone():
    model = Net()
    model.heads.init_cfg = const(7.0, layer="Conv2d")
    before = snapshot(model)
    report = hydra_init.apply(model, None, log=False)
    assert changed(model, before) == {f"heads.{h}.{p}" for h in ("cls", "reg") for p in ("weight", "bias")}
    assert report.totals["rule"] == 4


# ----------------------------------------------------------------------------- pretrained
def test_checkpoint_beats_random_rules_whatever_their_priority(tmp_path):
    source = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2))
    path = tmp_path / "ckpt.pt"
    torch.save(source.state_dict(), path)
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2), nn.Linear(2, 2))
    report = apply(model, {
        "ckpt": {"type": "Pretrained", "checkpoint": str(path)},
        "random": {"type": "Normal", "std": 0.5, "layer": "Linear", "priority": 10},
    })
    for name, p in source.named_parameters():
        assert torch.equal(model.get_parameter(name), p), name
    assert report["0.weight"].source == "pretrained"
    assert report["2.weight"].source == "rule"  # not in the checkpoint: the random rule


def test_default_then_explicit_rule():
    model = nn.Linear(64, 32)
    apply(model, {"torch": {"type": "Default", "layer": "Linear"},
                  "weight_only": {"type": "Zeros", "layer": "Linear", "params": "weight"}})
    assert bool((model.weight == 0).all())
    assert model.bias.abs().max().item() <= 1 / 8 and bool((model.bias != 0).any())


def test_default_rule_reports_every_parameter_reset_parameters_writes():
    # reset_parameters() rewrites the whole module, so a Default rule limited to the weight
    # still changes the bias: the report must say so instead of "left at default".
    model = nn.Linear(64, 32)
    before = snapshot(model)
    report = apply(model, {"torch": {"type": "Default", "layer": "Linear", "params": "weight"}})
    assert changed(model, before) == {"weight", "bias"}
    assert report["bias"].source == "reset" and report["bias"].rule == "torch"
    assert report.by_source("default") == []
