"""The fine-tuning case through Hydra: ``init=pretrained init.checkpoint=...`` is the whole config.

A model is saved, extended with new modules (an adapter with its norm inside
the backbone, a new head), and reloaded through Hydra's compose API with the
``pretrained`` preset, as an app's command line would do it. Every parameter is
first poisoned with NaN, so a parameter that neither the checkpoint nor a rule
wrote is caught (mmengine leaves such new modules at PyTorch's defaults).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import pytest
import torch
from helpers import assert_std
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from hydra.utils import instantiate
from torch import nn

import hydra_init

WIDTH = 64  # the adapter's 64x64x1x1 conv holds 4,096 values: enough for a std check (below)


class Backbone(nn.Module):
    def __init__(self, adapter: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, WIDTH, 3)
        self.bn = nn.BatchNorm2d(WIDTH)
        if adapter:  # what a user adds to a pretrained backbone (the blog post's custom module)
            self.adapter = nn.Sequential(nn.Conv2d(WIDTH, WIDTH, 1), nn.GroupNorm(4, WIDTH))


class Net(nn.Module):
    def __init__(self, classes: int = 10, adapter: bool = False, aux_head: bool = False) -> None:
        super().__init__()
        self.backbone = Backbone(adapter)
        self.head = nn.Linear(WIDTH, classes)
        if aux_head:
            self.aux_head = nn.Linear(WIDTH, 256)


NEW = ["backbone.adapter.0.weight", "backbone.adapter.0.bias", "backbone.adapter.1.weight",
       "backbone.adapter.1.bias", "aux_head.weight", "aux_head.bias"]


@pytest.fixture(scope="module")
def compose_init(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., object]]:
    """``compose`` for an app whose primary config picks an ``init`` preset, as in examples/."""
    hydra_init.register()
    app = tmp_path_factory.mktemp("app")
    (app / "app.yaml").write_text("defaults:\n  - init: kaiming_conv\n  - _self_\n")
    with initialize_config_dir(config_dir=str(app), version_base=None):
        yield lambda *overrides: compose("app", overrides=list(overrides))


@pytest.fixture
def checkpoint(tmp_path) -> tuple[Net, str]:
    source = Net()
    with torch.no_grad():
        source.backbone.bn.running_var.fill_(4.0)
    path = tmp_path / "pretrained.pth"
    torch.save(source.state_dict(), path)
    return source, str(path)


def poisoned(model: nn.Module) -> nn.Module:
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(float("nan"))
    return model


def test_blog_case_is_one_config(compose_init, checkpoint):
    source, path = checkpoint
    cfg = compose_init("init=pretrained", f"init.checkpoint={path}")
    model = poisoned(Net(adapter=True, aux_head=True))
    report = instantiate(cfg.init)(model, log=False)  # what an app does with cfg.init

    for key, value in source.state_dict().items():  # loaded, BN running stats included
        assert torch.equal(model.state_dict()[key], value), key
    assert report.not_in_checkpoint == NEW
    assert not any(torch.isnan(p).any() for p in model.parameters())
    conv, norm = model.backbone.adapter
    # Kaiming fan_out relu: std sqrt(2 / fan_out) = sqrt(2 / 64); 6 standard errors at n = 4,096 is 6.6%
    assert_std(conv.weight.detach(), math.sqrt(2.0 / WIDTH))
    assert torch.all(conv.bias == 0) and torch.all(norm.weight == 1) and torch.all(norm.bias == 0)
    # TruncNormal std 0.02 truncated at 2 std, bias 0
    assert model.aux_head.weight.abs().max() <= 0.04 and torch.all(model.aux_head.bias == 0)
    assert report["aux_head.weight"].rule == "linear" and report["backbone.adapter.0.weight"].rule == "conv"
    assert report["backbone.conv.weight"].detail == f"{path}:backbone.conv.weight"
    assert "initialized (not in checkpoint): " + ", ".join(NEW) in str(report)


def test_command_line_policies_prefix_and_target(compose_init, checkpoint, tmp_path):
    source, path = checkpoint
    # a new number of classes: the head is skipped and initialized by the preset's linear rule
    cfg = compose_init("init=pretrained", f"init.checkpoint={path}",
                       "+init.rules.pretrained.shape_mismatch=skip")  # + : a field the preset leaves unset
    model = poisoned(Net(classes=3))
    report = hydra_init.apply(model, cfg.init, log=False)
    assert torch.equal(model.backbone.conv.weight, source.backbone.conv.weight)
    assert report.not_in_checkpoint == ["head.weight", "head.bias"] and torch.all(model.head.bias == 0)

    # a detector-style checkpoint: only its backbone, into the backbone, with renamed keys
    detector = {f"detector.trunk.{k.removeprefix('backbone.')}": v for k, v in source.state_dict().items()}
    det_path = tmp_path / "detector.pth"
    torch.save({"state_dict": detector, "meta": {"epoch": 1}}, det_path)
    cfg = compose_init("init=pretrained", f"init.checkpoint={det_path}", "init.prefix=detector.",
                       r"+init.rules.pretrained.rename=['^trunk\.=>']",
                       "+init.rules.pretrained.name=backbone")
    model = poisoned(Net())
    report = hydra_init.apply(model, cfg.init, log=False)
    for key, value in source.backbone.state_dict().items():
        assert torch.equal(model.backbone.state_dict()[key], value), key
    backbone = [k for k, _ in model.backbone.named_parameters(prefix="backbone")]
    assert report.by_source("pretrained") == backbone


def test_config_mistakes_fail_at_compose_or_before_any_write(compose_init, checkpoint):
    _, path = checkpoint
    with pytest.raises(ConfigCompositionException, match="missing_keys"):  # not in the lean preset
        compose_init("init=pretrained", f"init.checkpoint={path}", "init.rules.pretrained.missing_keys=raise")
    cfg = compose_init("init=pretrained", f"init.checkpoint={path}",
                       "+init.rules.pretrained.missing_keys=raise")
    with pytest.raises(hydra_init.InitConfigError, match=r"^init\.rules\.pretrained\.missing_keys: invalid"):
        hydra_init.apply(Net(), cfg.init)  # added with +: checked when the init is built
    cfg = compose_init("init=pretrained")  # no init.checkpoint
    with pytest.raises(hydra_init.InitConfigError, match=r"needs a checkpoint.*set init\.checkpoint"):
        hydra_init.apply(Net(), cfg.init)
