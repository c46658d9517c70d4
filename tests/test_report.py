"""The report: table grouped by rule, JSON-ready dict, totals, dry run, logging levels,
and the mmengine mean-based logging trap."""

from __future__ import annotations

import json
import logging

import pytest
import torch
from helpers import assert_bit_identical, changed, snapshot
from torch import nn

import hydra_init


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3)
        self.conv2 = nn.Conv2d(8, 8, 3)
        self.bn = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 4)
        self.extra = nn.Linear(4, 4)  # no rule touches it
        self.token = nn.Parameter(torch.zeros(1, 8))


CFG = {
    "seed": 1,
    "rules": {
        "conv": {"type": "Kaiming", "layer": "Conv2d", "mode": "fan_in"},
        "norm": {"type": "Constant", "val": 0.5, "layer": "_BatchNorm"},
        "head": {"type": "Normal", "std": 0.01, "bias_prob": 0.01, "name": "fc"},
        "token": {"type": "TruncNormal", "std": 0.02, "params": "token"},
        "video": {"type": "Kaiming", "layer": "Conv3d"},  # exists in torch, absent here
    },
}


@pytest.fixture
def applied() -> tuple[Net, hydra_init.InitReport]:
    model = Net()
    return model, hydra_init.apply(model, CFG, log=False)


def test_str_is_a_table_grouped_by_rule(applied):
    _, report = applied
    text = str(report)
    lines = text.splitlines()
    assert "11 parameters" in lines[0] and "seed 1" in lines[0]
    # One line per (rule, initializer): both conv weights share a line, both conv biases another.
    conv_lines = [line for line in lines if line.split()[:2] == ["rule", "conv"]]
    assert len(conv_lines) == 2
    weights = next(line for line in conv_lines if "Kaiming(" in line)
    assert "mode=fan_in" in weights and "conv1.weight" in weights and "conv2.weight" in weights
    assert " 2 " in weights  # two parameters in the group
    head_lines = [line for line in lines if line.split()[:2] == ["rule", "head"]]
    assert any("Normal(mean=0.0, std=0.01)" in line for line in head_lines)
    assert any("-4.59512" in line for line in head_lines)  # the bias from bias_prob=0.01
    default_line = next(line for line in lines if line.lstrip().startswith("default"))
    assert "extra.weight" in default_line
    assert any("totals" in line for line in lines)
    assert any("note" in line and "video" in line for line in lines)


def test_to_dict_is_json_ready_and_complete(applied):
    model, report = applied
    data = json.loads(json.dumps(report.to_dict()))
    assert data["applied"] is True and data["seed"] == 1
    params = {p["path"]: p for p in data["params"]}
    assert list(params) == [name for name, _ in model.named_parameters()]
    for name, p in model.named_parameters():
        assert params[name]["shape"] == list(p.shape)
        assert params[name]["dtype"] == "float32"
    assert params["conv1.weight"]["rule"] == "conv" and params["conv1.weight"]["source"] == "rule"
    assert params["extra.bias"]["source"] == "default" and params["extra.bias"]["rule"] is None
    assert params["token"]["rule"] == "token"
    assert set(data["rules"]) == {"conv", "norm", "head", "token", "video"}
    assert data["rules"]["conv"]["matched"] == 4 and data["rules"]["conv"]["written"] == 4
    assert data["rules"]["head"]["args"]["bias_prob"] == 0.01
    assert data["rules"]["video"]["matched"] == 0
    assert any("video" in n for n in data["notes"]) and data["warnings"] == []
    assert data["totals"] == report.totals


def test_totals_add_up(applied):
    model, report = applied
    totals = report.totals
    assert totals["params"] == len(list(model.parameters())) == 11
    assert totals["rule"] == 9 and totals["default"] == 2 and totals["lazy"] == 0
    per_source = sum(v for k, v in totals.items() if k not in ("params", "values"))
    assert per_source == totals["params"]
    assert totals["values"] == sum(p.numel() for p in model.parameters())


def test_untouched_parameters_keep_their_values_and_are_listed_as_default():
    model = Net()
    before = snapshot(model)
    report = hydra_init.apply(model, CFG, log=False)
    assert report.by_source("default") == ["extra.weight", "extra.bias"]
    written = changed(model, before)
    assert not written & {"extra.weight", "extra.bias"}
    assert {"conv1.weight", "fc.bias", "token", "bn.weight"} <= written


def test_getitem(applied):
    _, report = applied
    assert report["fc.bias"].init == "bias=-4.59512"
    assert report["fc.weight"].shape == (4, 8)
    with pytest.raises(KeyError):
        report["nope.weight"]


# ----------------------------------------------------------------------------- dry run
def test_plan_writes_nothing_and_matches_apply():
    model = Net()
    before = snapshot(model)
    dry = hydra_init.plan(model, CFG)
    assert_bit_identical(model, before)
    assert dry.applied is False and "dry run" in str(dry)
    done = hydra_init.apply(model, CFG, log=False)
    dry_dict, done_dict = dry.to_dict(), done.to_dict()
    assert dry_dict.pop("applied") is False and done_dict.pop("applied") is True
    assert dry_dict == done_dict
    # What the plan said is what happened: exactly its rule entries changed.
    assert changed(model, before) == set(dry.by_source("rule")) - {"bn.bias"}  # bn.bias was 0 already


def test_plan_without_seed_has_no_seed_but_apply_records_one():
    cfg = {"rules": {"fc": {"type": "Normal", "std": 0.02, "layer": "Linear"}}}
    assert hydra_init.plan(Net(), cfg).seed is None
    seed = hydra_init.apply(Net(), cfg, log=False).seed
    assert isinstance(seed, int)
    # The recorded seed reproduces the run.
    a, b = Net(), Net()
    torch.manual_seed(0)
    seed = hydra_init.apply(a, cfg, log=False).seed
    hydra_init.apply(b, {**cfg, "seed": seed}, log=False)
    assert torch.equal(a.fc.weight, b.fc.weight)


# ----------------------------------------------------------------------------- logging
def test_logging_info_summary_only(caplog):
    model = nn.Sequential(*[nn.Linear(4, 4) for _ in range(50)])
    with caplog.at_level(logging.INFO, logger="hydra_init"):
        hydra_init.apply(model, {"seed": 0, "rules": {"fc": {"type": "Xavier", "layer": "Linear"}}})
    infos = [r for r in caplog.records if r.levelno == logging.INFO]
    assert infos and not [r for r in caplog.records if r.levelno == logging.DEBUG]
    # 100 parameters, but the summary is grouped: a handful of lines, not one per parameter.
    text = "\n".join(r.getMessage() for r in infos)
    assert "100 parameters" in text
    assert len(text.splitlines()) < 10


def test_logging_debug_has_one_line_per_parameter(caplog):
    model = Net()
    with caplog.at_level(logging.DEBUG, logger="hydra_init"):
        hydra_init.apply(model, CFG)
    debug = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    for name, _ in model.named_parameters():
        assert sum(1 for m in debug if m.split()[0] == name) == 1, name
    assert any("Kaiming" in m for m in debug if m.startswith("conv1.weight"))


def test_log_false_is_silent(caplog):
    with caplog.at_level(logging.DEBUG, logger="hydra_init"):
        hydra_init.apply(Net(), {"seed": 0, "rules": {"fc": {"type": "Zeros", "layer": "Linear"}}},
                         log=False)
    assert not caplog.records


# ----------------------------------------------------------------------------- mmengine's trap
class ToyNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 1, 1)
        self.conv2 = nn.Conv2d(1, 1, 1)


def test_override_that_keeps_the_mean_is_still_reported_as_the_writer():
    # mmengine's tutorial logs conv2.bias as written by Kaiming: its log compares means
    # before and after, and Xavier's bias=0 equals Kaiming's bias=0. The report is built
    # from the plan, so the override shows as the writer.
    report = hydra_init.apply(ToyNet(), [{"type": "Kaiming", "layer": ["Conv2d"],
                                          "override": {"name": "conv2", "type": "Xavier"}}], log=False)
    assert report["conv2.weight"].init.startswith("Xavier(")
    assert report["conv2.bias"].rule == report["conv2.weight"].rule != report["conv1.bias"].rule
    assert "override" in report["conv2.bias"].rule
    assert report["conv1.bias"].rule == report["conv1.weight"].rule
    assert report["conv1.weight"].init.startswith("Kaiming(")


def test_same_constant_rewritten_by_a_later_rule_names_the_later_rule():
    model = nn.Linear(4, 4)
    report = hydra_init.apply(model, {"seed": 0, "rules": {
        "a": {"type": "Constant", "val": 1.0, "layer": "Linear"},
        "b": {"type": "Ones", "layer": "Module"}}}, log=False)
    assert report["weight"].rule == "b" and report.rules["a"]["written"] == 0


# ----------------------------------------------------------------------------- special parameters
def test_lazy_parameters_in_the_report():
    model = nn.Sequential(nn.LazyLinear(3), nn.Linear(3, 3))
    report = hydra_init.apply(model, {"seed": 0, "rules": {"fc": {"type": "Xavier", "layer": "Linear"}}},
                              log=False)
    assert report.totals["lazy"] == 2 and report["0.weight"].source == "lazy"
    json.dumps(report.to_dict())
    assert "lazy" in str(report)


def test_tied_parameters_are_listed_and_written_once():
    model = nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 10, bias=False))
    model[1].weight = model[0].weight  # weight tying
    report = hydra_init.apply(model, {"seed": 0, "rules": {"w": {"type": "Normal", "std": 0.02,
                                                                 "layer": ["Embedding", "Linear"]}}},
                              log=False)
    assert [r.path for r in report.params] == ["0.weight"]
    assert report.rules["w"]["written"] == 1


def test_to_json_is_to_dict_with_one_line_per_parameter() -> None:
    """The JSON written next to every Hydra job: indented, each parameter's row on its own
    line, and the same data as to_dict() for any indent (also a string, or none)."""
    model = nn.Sequential(nn.Linear(3, 2), nn.LayerNorm(2), nn.Embedding(4, 2))
    report = hydra_init.plan(model, {"seed": 1, "rules": {"lin": {"type": "Normal", "layer": "Linear"}}})
    text = report.to_json()
    lines = text.splitlines()
    rows = [line for line in lines if line.startswith('    {"path": ')]
    assert [json.loads(line.rstrip(","))["path"] for line in rows] == [r.path for r in report.params]
    for indent in (2, 4, "\t", None, 0):
        assert json.loads(report.to_json(indent)) == report.to_dict()


def test_rows_hold_each_parameter_facts_and_are_plain_records() -> None:
    """Rows shared by a kind are built from one template: each one must still carry its own
    path and the parameter's shape and dtype, and behave as a ParamRecord made directly."""
    import dataclasses

    from hydra_init.engine.report import ParamRecord

    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(3, 4), nn.LayerNorm(4), nn.Linear(4, 2).double())
    model[1].weight = model[0].weight  # a tie: its row carries the alias
    report = hydra_init.plan(model, {"rules": {"lin": {"type": "Normal", "layer": "Linear", "std": 0.1},
                                               "ln": {"type": "Ones", "layer": "LayerNorm"}}})
    params = dict(model.named_parameters())
    assert [r.path for r in report.params] == list(params)
    for record in report.params:
        param = params[record.path]
        assert record.shape == tuple(param.shape)
        assert record.dtype == str(param.dtype).removeprefix("torch.")
        direct = ParamRecord(**{f.name: getattr(record, f.name) for f in dataclasses.fields(ParamRecord)})
        assert record == direct and hash(record) == hash(direct) and repr(record) == repr(direct)
        assert list(vars(record)) == list(vars(direct))
        with pytest.raises(dataclasses.FrozenInstanceError):
            record.path = "x"  # type: ignore[misc]
    assert report["0.weight"].aliases == ("1.weight",)
    assert report["3.weight"].dtype == "float64" and report["2.weight"].rule == "ln"
