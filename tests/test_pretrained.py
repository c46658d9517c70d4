"""Pretrained rules: partial initialization, key mapping, targets, policies, report, atomicity.

Models are tiny (a conv backbone with BatchNorm and a linear head), so every
check is exact: loaded tensors are compared bit for bit with the checkpoint,
and the rules for new parts use constants the test chooses, so "initialized by
a rule" is recognizable without statistics.
"""

from __future__ import annotations

import json

import pytest
import torch
from helpers import assert_bit_identical, changed, snapshot
from torch import nn

import hydra_init
from hydra_init import InitConfigError


class Backbone(nn.Module):
    def __init__(self, adapter: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.bn = nn.BatchNorm2d(8)
        self.adapter = nn.Conv2d(8, 8, 1) if adapter else None


class Net(nn.Module):
    """``new=True`` adds what fine-tuning adds: an adapter inside the backbone and an extra head."""

    def __init__(self, classes: int = 10, new: bool = False) -> None:
        super().__init__()
        self.backbone = Backbone(adapter=new)
        self.head = nn.Linear(8, classes)
        self.extra = nn.Linear(8, 4) if new else None


NEW_PARAMS = ["backbone.adapter.weight", "backbone.adapter.bias", "extra.weight", "extra.bias"]


def trained(classes: int = 10, seed: int = 1) -> Net:
    """A source model whose every tensor (running stats included) differs from PyTorch's defaults."""
    net = Net(classes)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for tensor in net.state_dict().values():
            if tensor.is_floating_point():
                tensor.copy_(torch.randn(tensor.shape, generator=gen))
        net.backbone.bn.num_batches_tracked.fill_(7)
    return net


@pytest.fixture
def source() -> Net:
    return trained()


@pytest.fixture
def ckpt(tmp_path, source) -> str:
    path = tmp_path / "model.pth"
    torch.save(source.state_dict(), path)
    return str(path)


def save(tmp_path, obj, name: str = "ckpt.pth") -> str:
    path = tmp_path / name
    torch.save(obj, path)
    return str(path)


def pre(checkpoint: str, **fields) -> dict:
    """A Pretrained rule as a plain dict."""
    return {"type": "Pretrained", "checkpoint": checkpoint, **fields}


def assert_loaded(model: nn.Module, source_state: dict[str, torch.Tensor], keys, prefix: str = "") -> None:
    state = model.state_dict()
    for k in keys:
        assert torch.equal(state[k], source_state[prefix + k]), k


NEW_PARTS = {"new_conv": {"type": "Constant", "layer": "Conv2d", "val": 0.5, "bias": 0.25},
             "new_linear": {"type": "Constant", "layer": "Linear", "val": -0.5, "bias": 0.75}}


# ----------------------------------------------------------------------------- partial init
def test_checkpoint_params_and_buffers_load_and_new_parts_get_the_rules(ckpt, source):
    model = Net(new=True)
    report = hydra_init.apply(
        model, {"seed": 0, "rules": {"pretrained": pre(ckpt), **NEW_PARTS}},
        log=False,
    )
    assert_loaded(model, source.state_dict(), source.state_dict().keys())  # incl. BN running stats
    assert torch.all(model.backbone.adapter.weight == 0.5) and torch.all(model.backbone.adapter.bias == 0.25)
    assert torch.all(model.extra.weight == -0.5) and torch.all(model.extra.bias == 0.75)
    assert report.not_in_checkpoint == NEW_PARAMS
    assert report.by_source("pretrained") == [k for k, _ in source.named_parameters()]
    assert report["backbone.conv.weight"].detail == f"{ckpt}:backbone.conv.weight"
    assert report["extra.weight"].detail == f"not in checkpoint ({ckpt})"
    totals = report.pretrained_totals
    assert (totals["loaded"], totals["initialized"], totals["left_at_default"]) == (6, 4, 0)
    assert totals["buffers_loaded"] == 3 and totals["unexpected_keys"] == 0
    text = str(report)
    assert "initialized (not in checkpoint): " + ", ".join(NEW_PARAMS) in text
    assert "6 loaded, 4 initialized (4 not in checkpoint), 0 left at default, 0 unexpected keys" in text
    json.dumps(report.to_dict())  # JSON-ready


@pytest.mark.parametrize("priority", [0, 100])
@pytest.mark.parametrize("pretrained_first", [True, False])
def test_loaded_params_beat_random_rules_whatever_order(ckpt, source, priority, pretrained_first):
    pretrained = {"pretrained": pre(ckpt)}
    random = {"all": {"type": "Constant", "val": 3.0, "priority": priority}}
    rules = {**pretrained, **random} if pretrained_first else {**random, **pretrained}
    model = Net(new=True)
    hydra_init.apply(model, {"rules": rules}, log=False)
    assert_loaded(model, source.state_dict(), [k for k, _ in source.named_parameters()])
    assert torch.all(model.extra.weight == 3.0)


def test_reinit_globs_hand_covered_params_to_the_rules(ckpt, source):
    model = Net(new=True)
    report = hydra_init.apply(model, {"rules": {
        "pretrained": pre(ckpt, reinit=["head.*"]), **NEW_PARTS}}, log=False)
    assert torch.all(model.head.weight == -0.5) and torch.all(model.head.bias == 0.75)
    assert_loaded(model, source.state_dict(), ["backbone.conv.weight", "backbone.bn.running_var"])
    assert report["head.weight"].detail == f"reinit ({ckpt})"
    assert "head.weight" in report.not_in_checkpoint


def test_reinit_parameters_may_differ_in_shape(ckpt, source):
    model = Net(classes=5)  # a new number of classes, re-initialized on purpose
    report = hydra_init.apply(model, {"rules": {"pretrained": pre(ckpt, reinit=["head.*"]), **NEW_PARTS}},
                              log=False)
    assert torch.all(model.head.weight == -0.5) and report.checkpoints[0]["shape_skipped"] == {}
    assert_loaded(model, source.state_dict(), ["backbone.conv.weight"])


def test_reinit_glob_that_matches_nothing_is_an_error(ckpt):
    model = Net()
    before = snapshot(model)
    with pytest.raises(InitConfigError, match=r"init\.rules\.p\.reinit\[0\].*'haed\.\*' matches no tensor"):
        hydra_init.apply(model, {"rules": {"p": pre(ckpt, reinit=["haed.*"])}})
    assert_bit_identical(model, before)


def test_params_missing_from_checkpoint_without_rule_are_a_loud_warning(ckpt):
    model = Net(new=True)
    before = snapshot(model)
    report = hydra_init.apply(model, pre(ckpt), log=False)
    assert {k for k in changed(model, before) if k.startswith(("extra", "backbone.adapter"))} == set()
    assert report.by_source("default") == NEW_PARAMS
    assert report.not_in_checkpoint == []
    assert any("4 parameter(s) were not loaded" in w and "add a rule" in w for w in report.warnings)


def test_applying_the_same_config_twice_gives_the_same_model(ckpt):
    cfg = {"seed": 5, "rules": {"pretrained": pre(ckpt),
                                "rest": {"type": "Normal", "std": 0.1, "layer": ["Linear", "Conv2d"]}}}
    first, second = Net(new=True), Net(new=True)
    hydra_init.apply(first, cfg, log=False)
    hydra_init.apply(second, cfg, log=False)
    hydra_init.apply(second, cfg, log=False)  # again, on an already initialized model
    assert changed(second, snapshot(first)) == set()


def test_dry_run_reads_the_checkpoint_but_writes_nothing(ckpt):
    model = Net(new=True)
    before = snapshot(model)
    report = hydra_init.plan(model, {"rules": {"p": pre(ckpt), **NEW_PARTS}})
    assert_bit_identical(model, before)
    assert report.applied is False and report.not_in_checkpoint == NEW_PARAMS


# ----------------------------------------------------------------------------- targets and key mapping
def detector_checkpoint(tmp_path, source) -> str:
    """mmdet-style: weights under ``state_dict`` with backbone./neck./head. prefixes, plus meta."""
    state = {f"backbone.{k}": v for k, v in source.backbone.state_dict().items()}
    state["neck.lateral.weight"] = torch.ones(8, 8)
    state["bbox_head.cls.weight"] = torch.ones(3, 8)
    return save(tmp_path, {"meta": {"epoch": 12, "classes": ["a", "b"]}, "state_dict": state}, "det.pth")


def test_mmengine_dict_prefix_loads_a_backbone_from_a_detector(tmp_path, source):
    path = detector_checkpoint(tmp_path, source)
    model = Net()
    cfg = dict(type="Pretrained", checkpoint=path, prefix="backbone.")  # mmengine's form
    report = hydra_init.apply(model.backbone, cfg, log=False)
    assert_loaded(model.backbone, source.backbone.state_dict(), source.backbone.state_dict().keys())
    assert report.checkpoints[0]["entry"] == "state_dict"
    assert report["conv.weight"].detail == f"{path}:backbone.conv.weight"  # the key as stored in the file


def test_name_targets_a_submodule_with_keys_relative_to_it(tmp_path, source):
    path = detector_checkpoint(tmp_path, source)
    model = Net()
    before = snapshot(model)
    report = hydra_init.apply(model, {"rules": {"bb": {
        "type": "Pretrained", "checkpoint": path, "prefix": "backbone", "name": "backbone"}}}, log=False)
    assert_loaded(model, source.state_dict(), [k for k in before if k.startswith("backbone.")])
    assert changed(model, before) == {k for k in before if k.startswith("backbone.")}  # head untouched
    assert report.checkpoints[0]["unexpected"] == []  # prefix dropped neck./bbox_head. keys


def test_name_targets_only_that_part_of_a_whole_model_checkpoint(ckpt, source):
    model = Net()
    before = snapshot(model)
    report = hydra_init.apply(model, {"rules": {"bb": {
        "type": "Pretrained", "checkpoint": ckpt, "prefix": "backbone.", "name": "backbone"}}}, log=False)
    assert changed(model, before) == {k for k in before if k.startswith("backbone.")}
    assert report.checkpoints[0]["unexpected"] == []


def test_empty_prefix_match_names_prefix_and_file_and_leaves_model_unchanged(ckpt):
    model = Net()
    before = snapshot(model)
    with pytest.raises(InitConfigError) as err:
        hydra_init.apply(model, {"rules": {"p": pre(ckpt, prefix="backbon.")}})
    assert err.value.key == "init.rules.p.prefix"
    text = str(err.value)
    assert ckpt in text and "'backbon.'" in text and "did you mean 'backbone.'" in text
    assert_bit_identical(model, before)


def test_keys_matching_nothing_suggest_the_prefix(tmp_path, source):
    path = detector_checkpoint(tmp_path, source)
    model = Backbone()
    before = snapshot(model)
    with pytest.raises(InitConfigError, match=r"no key of .*det\.pth matches.*set prefix: 'backbone\.'"):
        hydra_init.apply(model, pre(path))
    assert_bit_identical(model, before)


def test_rename_rules_apply_in_order(tmp_path, source):
    renamed = {k.replace("backbone.conv.", "stem.proj.").replace("backbone.bn.", "stem.norm."): v
               for k, v in source.state_dict().items()}
    path = save(tmp_path, renamed)
    model = Net()
    hydra_init.apply(model, {"type": "Pretrained", "checkpoint": path,
                             "rename": [r"^stem\.=>trunk.", r"^trunk\.proj\.=>backbone.conv.",
                                        r"^trunk\.(norm)\.=>backbone.bn."]}, log=False)
    assert_loaded(model, source.state_dict(), source.state_dict().keys())


def test_rename_collision_and_bad_regex_are_errors(ckpt):
    with pytest.raises(InitConfigError, match=r"rename\[0\].*maps both"):
        hydra_init.plan(Net(), pre(ckpt, rename=[r"\.(weight|bias)$=>.w"]))
    with pytest.raises(InitConfigError, match=r"init\[0\]\.rename\[1\].*invalid rename"):
        hydra_init.plan(Net(), [pre(ckpt, rename=["a=>b", "(=>x"])])
    with pytest.raises(InitConfigError, match=r"rename\[0\].*not 'pattern=>replacement'"):
        hydra_init.plan(Net(), [pre(ckpt, rename=["conv->stem"])])


@pytest.mark.parametrize("wrapper", ["module.", "_orig_mod.", "module._orig_mod."])
def test_wrapped_checkpoints_load_into_a_plain_model(tmp_path, source, wrapper):
    path = save(tmp_path, {wrapper + k: v for k, v in source.state_dict().items()})
    model = Net()
    report = hydra_init.apply(model, pre(path), log=False)
    assert_loaded(model, source.state_dict(), source.state_dict().keys())
    assert report["head.weight"].detail == f"{path}:{wrapper}head.weight"


def test_a_wrapped_model_loads_a_plain_checkpoint(ckpt, source):
    class Wrapper(nn.Module):  # what DistributedDataParallel looks like from the outside
        def __init__(self) -> None:
            super().__init__()
            self.module = Net()

    model = Wrapper()
    hydra_init.apply(model, pre(ckpt), log=False)
    assert_loaded(model.module, source.state_dict(), source.state_dict().keys())


def test_a_child_named_module_is_not_mistaken_for_a_wrapper(tmp_path):
    class Holder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.module = nn.Linear(2, 2)
            self.other = nn.Linear(2, 2)

    src = Holder()
    path = save(tmp_path, src.state_dict())
    model = Holder()
    hydra_init.apply(model, pre(path), log=False)
    assert changed(model, snapshot(src)) == set()


def test_state_dict_key_picks_an_entry_and_a_wrong_one_suggests(tmp_path, source):
    ema = trained(seed=2)
    path = save(tmp_path, {"state_dict": source.state_dict(), "state_dict_ema": ema.state_dict()})
    model = Net()
    hydra_init.apply(model, pre(path, state_dict_key="state_dict_ema"), log=False)
    assert changed(model, snapshot(ema)) == set()
    with pytest.raises(InitConfigError, match=r"state_dict_key: .*'state_dict_emma'.*'state_dict_ema'"):
        hydra_init.plan(model, pre(path, state_dict_key="state_dict_emma"))


def test_tied_parameters_load_once_under_either_name(tmp_path):
    class Tied(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(5, 3)
            self.out = nn.Linear(3, 5, bias=False)
            self.out.weight = self.embed.weight

    src = Tied()
    path = save(tmp_path, {"out.weight": src.out.weight.detach().clone()})  # safetensors-style dedup
    model = Tied()
    report = hydra_init.apply(model, pre(path), log=False)
    assert torch.equal(model.embed.weight, src.embed.weight)
    assert report.by_source("pretrained") == ["embed.weight"] and report.not_in_checkpoint == []


@pytest.mark.parametrize("whole_priority", [0, 1])
def test_of_two_pretrained_rules_the_higher_ranked_wins(tmp_path, source, whole_priority):
    other = trained(seed=3)
    first, second = save(tmp_path, source.state_dict(), "a.pth"), save(tmp_path, other.state_dict(), "b.pth")
    model = Net()
    report = hydra_init.apply(model, {"rules": {
        "whole": pre(first, priority=whole_priority),
        "backbone": pre(second, name="backbone", prefix="backbone.")}},  # later: wins ties
        log=False)
    backbone = [k for k in source.state_dict() if k.startswith("backbone.")]
    assert_loaded(model, (source if whole_priority else other).state_dict(), backbone)
    assert_loaded(model, source.state_dict(), ["head.weight", "head.bias"])
    # per checkpoint, "loaded" counts the parameters it finally wrote (4 in the backbone, 2 in the head)
    assert [c["loaded"] for c in report.checkpoints] == ([6, 0] if whole_priority else [2, 4])


def test_a_name_glob_loads_one_block_checkpoint_into_every_matching_block(tmp_path):
    block = nn.Sequential(nn.Linear(3, 3), nn.LayerNorm(3))
    path = save(tmp_path, block.state_dict())
    model = nn.Module()
    model.blocks = nn.ModuleList(nn.Sequential(nn.Linear(3, 3), nn.LayerNorm(3)) for _ in range(3))
    model.head = nn.Linear(3, 1)
    before = snapshot(model)
    report = hydra_init.apply(model, pre(path, name="blocks.*"), log=False)
    for b in model.blocks:
        assert changed(b, snapshot(block)) == set()
    assert not {k for k in changed(model, before) if k.startswith("head")}
    assert report.checkpoints[0]["loaded"] == 12


# ----------------------------------------------------------------------------- policies
def test_shape_mismatch_error_names_every_key_with_both_shapes(ckpt):
    model = Net(classes=5)
    model.backbone.conv = nn.Conv2d(3, 8, 5)
    before = snapshot(model)
    with pytest.raises(InitConfigError) as err:
        hydra_init.apply(model, {"rules": {"p": pre(ckpt)}})
    text = str(err.value)
    assert err.value.key == "init.rules.p.shape_mismatch" and "3 tensor(s)" in text
    for expected in ("backbone.conv.weight: checkpoint (8, 3, 3, 3) vs model (8, 3, 5, 5)",
                     "head.weight: checkpoint (10, 8) vs model (5, 8)",
                     "head.bias: checkpoint (10,) vs model (5,)"):
        assert expected in text
    assert "shape_mismatch: skip" in text
    assert_bit_identical(model, before)


def test_shape_mismatch_skip_initializes_by_rules(ckpt, source):
    model = Net(classes=5)
    report = hydra_init.apply(model, {"rules": {
        "p": pre(ckpt, shape_mismatch="skip"), **NEW_PARTS}}, log=False)
    assert torch.all(model.head.weight == -0.5)
    assert_loaded(model, source.state_dict(), ["backbone.conv.weight", "backbone.bn.running_mean"])
    expected = f"shape mismatch: head.weight is (10, 8) in the checkpoint, (5, 8) here ({ckpt})"
    assert report["head.weight"].detail == expected
    assert report.checkpoints[0]["shape_skipped"].keys() == {"head.weight", "head.bias"}


def test_every_tensor_mismatching_is_an_error_even_with_skip(tmp_path):
    path = save(tmp_path, nn.Linear(3, 3).state_dict())
    with pytest.raises(InitConfigError, match=r"nothing of .* can be loaded: every tensor"):
        hydra_init.plan(nn.Linear(4, 4), pre(path, shape_mismatch="skip"))


def test_missing_keys_error_lists_them(ckpt):
    model = Net(new=True)
    with pytest.raises(InitConfigError) as err:
        hydra_init.apply(model, pre(ckpt, missing_keys="error"))
    assert err.value.key == "init.missing_keys"
    assert all(p in str(err.value) for p in NEW_PARAMS)


def test_unexpected_keys_are_reported_or_refused(tmp_path, source):
    state = {**source.state_dict(), "aux.weight": torch.ones(2), "aux.bias": torch.ones(2)}
    path = save(tmp_path, state)
    report = hydra_init.apply(Net(), pre(path), log=False)
    assert report.checkpoints[0]["unexpected"] == ["aux.bias", "aux.weight"]
    assert report.pretrained_totals["unexpected_keys"] == 2 and "(aux.bias, aux.weight)" in str(report)
    model = Net()
    before = snapshot(model)
    with pytest.raises(InitConfigError, match=r"unexpected_keys: 2 key\(s\) .* aux\.bias; aux\.weight"):
        hydra_init.apply(model, pre(path, unexpected_keys="error"))
    assert_bit_identical(model, before)


def test_keys_left_out_by_selectors_are_not_unexpected(ckpt, source):
    model = Net()
    before = snapshot(model)
    report = hydra_init.apply(model, pre(ckpt, exclude="head",
                                      unexpected_keys="error"), log=False)
    assert changed(model, before) == {k for k in before if k.startswith("backbone.")}
    assert report.checkpoints[0]["unexpected"] == []


def test_dtype_is_converted_to_the_models_or_refused(tmp_path, source):
    state = {k: v.double() if v.is_floating_point() else v for k, v in source.state_dict().items()}
    path = save(tmp_path, state)
    model = Net()
    report = hydra_init.apply(model, pre(path), log=False)
    assert model.head.weight.dtype == torch.float32
    assert torch.equal(model.head.weight, source.head.weight)  # float32 -> float64 -> float32 is exact
    assert "head.weight" in report.checkpoints[0]["dtype_converted"]
    with pytest.raises(InitConfigError, match=r"dtype_mismatch: .*head\.weight: checkpoint torch\.float64"):
        hydra_init.plan(Net(), pre(path, dtype_mismatch="error"))


def test_a_cast_that_overflows_is_refused(tmp_path):
    src = nn.Linear(2, 2)
    with torch.no_grad():
        src.weight.fill_(1e6)  # above float16's max (65504)
    path = save(tmp_path, src.state_dict())
    model = nn.Linear(2, 2).half()
    before = snapshot(model)
    with pytest.raises(InitConfigError, match=r"into inf: weight: torch\.float32 -> torch\.float16"):
        hydra_init.apply(model, pre(path))
    assert_bit_identical(model, before)


@pytest.mark.parametrize(("field", "value", "match"), [
    ("missing_keys", "raise", r"missing_keys: invalid value 'raise'. Valid: init, error"),
    ("shape_mismatch", "skipp", r"shape_mismatch: invalid value 'skipp'.*did you mean 'skip'"),
    ("sha256", "xyz", r"sha256: sha256='xyz' is not a hex digest"),
    ("map_location", "gpu0", r"map_location: 'gpu0' is not a device"),
    ("map_location", "cuda:99", r"map_location: device 'cuda:99' is not available here"),  # checked at plan
    ("strip_prefixes", ["module"], r"strip_prefixes\[0\]: 'module' does not end with '\.'"),
    ("bias", 0.1, r"bias: Pretrained copies biases"),
    ("checkpoint", "", r"checkpoint: Pretrained needs a checkpoint"),
])
def test_bad_pretrained_fields_are_config_errors(field, value, match):
    cfg = {"rules": {"p": {"type": "Pretrained", "checkpoint": "x.pth", field: value}}}
    with pytest.raises(InitConfigError, match=r"init\.rules\.p\." + match):
        hydra_init.plan(Net(), cfg)


# ----------------------------------------------------------------------------- module-level init_cfg
def test_module_init_cfg_pretrained_does_not_stop_outer_rules_for_new_children(tmp_path, source):
    """mmengine's trap: a Pretrained init_cfg returns early and new children keep PyTorch defaults."""
    path = detector_checkpoint(tmp_path, source)
    model = Net(new=True)
    model.backbone.init_cfg = dict(type="Pretrained", checkpoint=path, prefix="backbone.")
    report = hydra_init.apply(model, {"seed": 0, "rules": NEW_PARTS}, log=False)
    assert_loaded(model.backbone, source.backbone.state_dict(), source.backbone.state_dict().keys())
    assert torch.all(model.backbone.adapter.weight == 0.5) and torch.all(model.backbone.adapter.bias == 0.25)
    assert torch.all(model.head.weight == -0.5)
    assert report.not_in_checkpoint == ["backbone.adapter.weight", "backbone.adapter.bias"]
    assert report["backbone.conv.weight"].rule == "backbone:Pretrained[0]"


def test_compat_base_module_with_a_pretrained_part_initializes_its_new_children(tmp_path, source):
    """The blog post's model, ported as mmengine code: BaseModule parts with their own init_cfg."""
    from hydra_init.compat import BaseModule

    path = detector_checkpoint(tmp_path, source)

    class MyBackbone(BaseModule):
        def __init__(self, init_cfg=None) -> None:
            super().__init__(init_cfg)
            self.conv = nn.Conv2d(3, 8, 3)
            self.bn = nn.BatchNorm2d(8)
            self.adapter = nn.Conv2d(8, 8, 1)  # the user's new module

    class Model(BaseModule):
        def __init__(self, init_cfg=None) -> None:
            super().__init__(init_cfg)
            self.backbone = MyBackbone(init_cfg=dict(type="Pretrained", checkpoint=path, prefix="backbone."))
            self.head = nn.Linear(8, 10)

    model = Model(init_cfg=[dict(type="Constant", layer="Conv2d", val=0.5, bias=0.25),
                            dict(type="Constant", layer="Linear", val=-0.5)])
    model.init_weights()
    assert_loaded(model.backbone, source.backbone.state_dict(), source.backbone.state_dict().keys())
    assert torch.all(model.backbone.adapter.weight == 0.5) and torch.all(model.backbone.adapter.bias == 0.25)
    assert torch.all(model.head.weight == -0.5)


def test_fsdp2_sharded_parameters_load_through_their_dtensors(ckpt, source):
    """A one-rank gloo group on 127.0.0.1: parameters are DTensors after fully_shard.

    One rank keeps the test cheap; it exercises the DTensor copy path (each rank
    keeps its slice of the full checkpoint tensor, with no communication). A
    multi-process run belongs with the sharding tests, which start several ranks.
    """
    import socket

    import torch.distributed as dist
    from torch.distributed.fsdp import fully_shard

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
    try:
        model = Net(new=True)
        fully_shard(model)
        assert type(model.head.weight).__name__ == "DTensor"
        hydra_init.apply(model, {"seed": 0, "rules": {"pretrained": pre(ckpt), **NEW_PARTS}}, log=False)
        full = {k: v.full_tensor() if hasattr(v, "full_tensor") else v for k, v in model.state_dict().items()}
        for key, value in source.state_dict().items():
            assert torch.equal(full[key], value), key
        assert torch.all(full["extra.weight"] == -0.5)
    finally:
        dist.destroy_process_group()


def test_a_pretrained_built_in_python_is_validated_too(ckpt):
    rule = hydra_init.Rule(hydra_init.Pretrained(checkpoint=ckpt, shape_mismatch="skipp"))
    with pytest.raises(InitConfigError, match=r"shape_mismatch: invalid value 'skipp'. Valid: error, skip"):
        hydra_init.plan(Net(), [rule])
    model = Net()
    hydra_init.apply(model, [hydra_init.Rule(hydra_init.Pretrained(checkpoint=ckpt, shape_mismatch="skip"))],
                     log=False)
    assert torch.equal(model.head.weight, trained().head.weight)
