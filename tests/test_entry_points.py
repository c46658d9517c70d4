"""One config, one behaviour: every way in gives the same values and the same refusal.

The config is parsed and validated once, whatever the entry point (``apply``,
``plan``, ``Init``, ``hydra.utils.instantiate(cfg.init)``, ``hydra_init.instantiate``,
the ``initialized`` wrapper, ``build_and_init``). The cases include knob refusals
after Hydra has resolved the interpolations, where the old check fell back to
matching values (``init.std=0.0`` looked used because a rule held ``0.0``).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator

import hydra.utils
import pytest
import torch
from helpers import assert_bit_identical, snapshot
from hydra import compose, initialize
from hydra.errors import InstantiationException
from omegaconf import DictConfig, OmegaConf
from torch import nn

import hydra_init
from hydra_init.meta import build_and_init

MODEL = {"_target_": "torch.nn.Sequential", "_args_": [
    {"_target_": "torch.nn.Conv2d", "in_channels": 3, "out_channels": 4, "kernel_size": 3},
    {"_target_": "torch.nn.BatchNorm2d", "num_features": 4},
    {"_target_": "torch.nn.Flatten"},
    {"_target_": "torch.nn.Linear", "in_features": 4 * 6 * 6, "out_features": 5},
]}


def build() -> nn.Module:
    torch.manual_seed(0)  # the same constructor values for every entry point
    return hydra.utils.instantiate(MODEL)


@pytest.fixture(scope="module")
def composed() -> Iterator[Callable[..., DictConfig]]:
    hydra_init.register()
    with initialize(version_base=None, config_path=None):

        def compose_fn(*overrides: str) -> DictConfig:
            cfg = compose(overrides=list(overrides))
            OmegaConf.set_struct(cfg, False)
            cfg.model = {"_target_": "hydra_init.initialized", "module": MODEL, "init": "${init}"}
            return cfg

        yield compose_fn


def _apply(cfg: DictConfig) -> nn.Module:
    model = build()
    hydra_init.apply(model, cfg.init, log=False)
    return model


def _init_from_config(cfg: DictConfig) -> nn.Module:
    model = build()
    hydra_init.Init.from_config(cfg.init)(model, log=False)
    return model


def _hydra_instantiate_init(cfg: DictConfig) -> nn.Module:
    init = hydra.utils.instantiate(cfg.init)  # resolved by Hydra before Init sees it
    model = build()
    init(model, log=False)
    return model


def _hydra_init_instantiate(cfg: DictConfig) -> nn.Module:
    torch.manual_seed(0)
    return hydra_init.instantiate(cfg.model.module, init=cfg.init)


def _initialized_wrapper(cfg: DictConfig) -> nn.Module:
    torch.manual_seed(0)
    return hydra.utils.instantiate(cfg.model)  # YAML-only wiring


def _initialized_wrapper_not_recursive(cfg: DictConfig) -> nn.Module:
    cfg.model._recursive_ = False  # module and init reach `initialized` as (resolved) configs
    torch.manual_seed(0)
    return hydra.utils.instantiate(cfg.model)


def _build_and_init(cfg: DictConfig) -> nn.Module:
    model, _ = build_and_init(build, cfg.init, device="cpu", log=False)
    return model


def _dry_run_then_apply(cfg: DictConfig) -> nn.Module:
    model = build()
    hydra_init.plan(model, cfg.init)
    init = hydra_init.Init.from_config(cfg.init)
    init(model, log=False)
    return model


ENTRY_POINTS = {
    "apply": _apply,
    "Init.from_config": _init_from_config,
    "hydra.utils.instantiate(cfg.init)": _hydra_instantiate_init,
    "hydra_init.instantiate": _hydra_init_instantiate,
    "initialized": _initialized_wrapper,
    "initialized(_recursive_=false)": _initialized_wrapper_not_recursive,
    "build_and_init": _build_and_init,
    "plan+Init": _dry_run_then_apply,
}

GOOD = [
    ("+init=kaiming_conv", "init.mode=fan_in", "init.seed=3"),
    ("+init=xavier", "init.gain=2.0"),
    ("+init=normal", "init.std=0.05"),
]

BAD = {
    # a knob the preset has no rule for: after Hydra resolves, the value 0.0 also sits in `a`/`bias`
    ("+init=kaiming_conv", "+init.std=0.0"): "init.std: 'std' is set but no rule",
    ("+init=kaiming_conv", "init.std=0.0"): "Could not override 'init.std'",  # lean: Hydra refuses
    ("+init=normal", "init.std=-1"): "init.rules.weights.std: std=-1.0 is negative",
    ("+init=xavier", "+init.bogus=1"): "init.bogus: unknown key 'bogus'",
    ("+init=xavier", "init.rules.weights.distribution=uniformly"): "distribution",
}


@pytest.mark.parametrize("overrides", GOOD, ids=lambda o: " ".join(o))
def test_every_entry_point_writes_the_same_values(composed, overrides) -> None:
    cfg = composed(*overrides)
    models = {name: entry(copy.deepcopy(cfg)) for name, entry in ENTRY_POINTS.items()}
    reference = snapshot(models["apply"])
    assert any(not torch.equal(v, snapshot(build())[k]) for k, v in reference.items())  # it did init
    for model in models.values():
        assert_bit_identical(model, reference)


def _message(exc: BaseException) -> str:
    while isinstance(exc, InstantiationException) and exc.__cause__ is not None:
        exc = exc.__cause__
    return str(exc)


@pytest.mark.parametrize("overrides", sorted(BAD), ids=lambda o: " ".join(o))
def test_every_entry_point_refuses_the_same_way(composed, overrides) -> None:
    expected = BAD[overrides]
    try:
        composed_cfg = composed(*overrides)
    except Exception as exc:  # refused by Hydra at composition (schema types): the same for all
        assert expected in str(exc), str(exc)
        return
    for name, entry in ENTRY_POINTS.items():
        with pytest.raises((hydra_init.InitConfigError, InstantiationException)) as caught:
            entry(copy.deepcopy(composed_cfg))
        message = _message(caught.value)
        assert isinstance(caught.value, hydra_init.InitConfigError) or "InitConfigError" in repr(
            caught.value.__cause__
        ), name
        assert expected in message, (name, message)


def test_a_parsed_config_is_taken_as_it_is_and_cannot_change() -> None:
    init = hydra_init.Init(seed=0, rules={"fc": {"type": "Ones", "layer": "Linear"}})
    parsed = hydra_init.engine.parse.parse_config(init)
    assert parsed is init.parsed  # no second parse
    with pytest.raises(AttributeError):
        parsed.seed = 1  # frozen
