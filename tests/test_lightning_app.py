"""hydra_init inside a lightning-hydra-template-shaped app (tests/lightning_app), tested the template's way.

The template's tests compose ``train.yaml`` with ``return_hydra_config=True``, call
``HydraConfig().set_config(cfg)``, then instantiate and train under ``tmp_path``,
where ``hydra.runtime.output_dir`` is unset (``???``): reporting must not break
that. The subprocess tests run ``src/train.py`` as a user does (a run, a joblib
sweep, an Optuna search) and read what the jobs leave.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

import hydra_init
from hydra_init.tools.cli import main as cli

pytest.importorskip("lightning", reason="the `lightning` test extra (part of `dev`)")

APP = Path(__file__).resolve().parent / "lightning_app"
CONFIGS = APP / "configs"
WIRED = "hydra_init.initialized"


@pytest.fixture(autouse=True)
def _app_importable(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.syspath_prepend(str(APP))  # `src.models...`, as the template's rootutils sets up
    yield
    HydraConfig.instance().cfg = None  # HydraConfig().set_config(cfg) is process-wide: undo it


def compose_train(tmp_path: Path, *overrides: str) -> DictConfig:
    """The template's ``cfg_train`` fixture: compose with the hydra node, then point paths at tmp_path."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose(config_name="train.yaml", return_hydra_config=True, overrides=list(overrides))
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path)
        cfg.paths.log_dir = str(tmp_path)
        cfg.trainer.max_epochs = 1
        cfg.logger = None
    assert OmegaConf.is_missing(cfg.hydra.runtime, "output_dir")  # as in the template's tests
    return cfg


def net_of(cfg: DictConfig) -> DictConfig:
    """The net's own constructor node, whichever way the app is wired."""
    net = cfg.model.net
    return net.module if net._target_ == WIRED else net


def build_net(cfg: DictConfig, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return instantiate(net_of(cfg))


# ------------------------------------------------------------------ the template's config tests
def test_yaml_wired_app_instantiates_under_set_config_and_writes_no_report(tmp_path, caplog) -> None:
    cfg = compose_train(tmp_path)
    HydraConfig().set_config(cfg)
    instantiate(cfg.data)
    with caplog.at_level(logging.DEBUG, logger="hydra_init"):
        model = instantiate(cfg.model)  # used to raise MissingMandatoryValue writing the report
    instantiate(cfg.trainer)
    expected = build_net(cfg, seed=1)  # whatever the construction draws, the init overwrites
    hydra_init.apply(expected, cfg.init, log=False)
    for name, value in expected.state_dict().items():
        assert torch.equal(model.net.state_dict()[name], value), name
    assert not list(tmp_path.rglob("init_report*.json"))  # no job output directory: skipped ...
    assert any("no job output directory" in r.getMessage() and r.levelname == "DEBUG"
               for r in caplog.records)  # ... and said so at DEBUG only
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_python_route_trains_fast_dev_run(tmp_path) -> None:
    cfg = compose_train(tmp_path, "model=dense_python")
    assert cfg.init_in_python and cfg.model.net._target_ != WIRED
    HydraConfig().set_config(cfg)
    model = hydra_init.instantiate(cfg.model, init=cfg.init)  # the crash, on this route
    assert bool((model.net.model[1].weight == 1).all()) and bool((model.net.model[0].bias == 0).all())
    with open_dict(cfg):
        cfg.trainer.fast_dev_run = True
    from src.train import train

    metrics = train(cfg)
    assert {"train/loss", "val/loss", "test/acc"} <= set(metrics)
    assert not list(tmp_path.rglob("init_report*.json"))


@pytest.mark.parametrize("off", [("init=none",), ("init.enabled=false",)], ids=" ".join)
def test_off_switch_leaves_the_net_as_constructed(tmp_path, off) -> None:
    cfg = compose_train(tmp_path, *off)
    HydraConfig().set_config(cfg)
    torch.manual_seed(3)
    model = instantiate(cfg.model)
    constructed = build_net(cfg, seed=3)
    for name, value in constructed.state_dict().items():
        assert torch.equal(model.net.state_dict()[name], value), name
    report = hydra_init.Init.from_config(cfg.init).plan(constructed)
    assert report.totals["default"] == report.totals["params"] == 10 and report.warnings == []


def test_experiment_config_selects_its_preset_and_knob(tmp_path) -> None:
    cfg = compose_train(tmp_path, "experiment=example")
    assert cfg.hydra.runtime.choices.init == "xavier" and cfg.init.gain == pytest.approx(2**0.5)
    assert cfg.model.net.module.lin1_size == 24 and cfg.seed == 7
    HydraConfig().set_config(cfg)
    model = instantiate(cfg.model)
    assert model.net.model[0].weight.shape == (24, 16)


def test_bad_override_fails_with_the_message_first(tmp_path, caplog) -> None:
    cfg = compose_train(tmp_path, "+init.rules.linear.mdoe=fan_in")
    HydraConfig().set_config(cfg)
    with caplog.at_level(logging.ERROR, logger="hydra_init"), pytest.raises(InstantiationException):
        instantiate(cfg.model)
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert errors == ["init.rules.linear.mdoe: unknown rule key 'mdoe'. Valid: type, layer, name, params, "
                      "exclude, priority, enabled, optional, override, expr, bias, bias_prob, a, mode, "
                      "nonlinearity, distribution. Hint: did you mean 'mode'?"]


def test_composed_init_node_is_lean(tmp_path) -> None:
    cfg = compose_train(tmp_path)
    text = OmegaConf.to_yaml(OmegaConf.create({"init": OmegaConf.to_container(cfg.init)}))
    preset = (hydra_init.integration.conf_dir() / "init" / "kaiming_conv.yaml").read_text()
    norm_ones = (hydra_init.integration.conf_dir() / "init" / "rules" / "norm_ones.yaml").read_text()
    assert "null" not in text
    # as long as the preset file plus the rule file it includes (their comments and defaults aside)
    assert len(text.splitlines()) <= len(preset.splitlines()) + len(norm_ones.splitlines()) + 4


# ------------------------------------------------------------------ plan: the wrapper wherever it is
def test_plan_finds_the_nested_wrapper_and_builds_on_meta(capsys, monkeypatch, tmp_path) -> None:
    monkeypatch.chdir(tmp_path)
    assert cli(["plan", "--params", str(CONFIGS / "train.yaml"), "init=xavier", "init.gain=2.0"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("model.net:\nhydra_init plan (dry run): 10 parameters, ")
    assert "Xavier(gain=2.0, distribution=normal)" in out and "model.0.weight" in out
    assert cli(["plan", str(CONFIGS / "train.yaml"), "--model-key", "model.net", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["applied"] is False and report["totals"]["rule"] == 10
    assert not list(tmp_path.iterdir())  # nothing written


# ------------------------------------------------------------------ as a user runs it
def run_app(tmp_path: Path, *args: str, ok: bool = True) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HYDRA_", "PYTHON"))}
    env["PROJECT_ROOT"] = str(tmp_path)
    proc = subprocess.run([sys.executable, "src/train.py", *args], cwd=APP, env=env, capture_output=True,
                          text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert (proc.returncode == 0) == ok, out[-4000:]
    return out


def test_run_writes_the_report_and_logs_the_lean_init_as_hyperparameters(tmp_path) -> None:
    out = run_app(tmp_path, f"hydra.run.dir={tmp_path}/run", "trainer.max_epochs=1", "test=false")
    run = tmp_path / "run"
    init_lines = [line for line in out.splitlines() if "[hydra_init]" in line]
    assert len(init_lines) == 1 and "[INFO] - hydra_init init report: 10 parameters" in init_lines[0]
    assert json.loads((run / "init_report.json").read_text())["totals"]["rule"] == 10
    (hparams_file,) = run.rglob("hparams.yaml")
    hparams = yaml.safe_load(hparams_file.read_text())
    assert hparams["init_preset"] == "kaiming_conv"
    assert hparams["init"]["rules"]["conv"] == {"type": "Kaiming", "layer": ["_ConvNd"], "mode": "fan_out",
                                                "nonlinearity": "relu", "a": 0.0,
                                                "distribution": "normal", "bias": 0.0}
    saved = yaml.safe_load((run / ".hydra" / "config.yaml").read_text())
    assert saved["init"]["enabled"] is True and None not in saved["init"].values()


def test_joblib_sweep_reports_per_job_and_summary_shows_what_varies(tmp_path, capsys) -> None:
    sweep = tmp_path / "sweep"
    run_app(tmp_path, "-m", f"hydra.sweep.dir={sweep}", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
            "init=kaiming_conv,none", "trainer.max_epochs=1", "test=false")
    reports = [json.loads((sweep / str(i) / "init_report.json").read_text()) for i in (0, 1)]
    assert reports[0]["totals"]["rule"] == 10 and reports[1]["totals"]["default"] == 10
    assert (sweep / "init_summary.md").is_file()  # the app's default callback
    for job in ("0", "1"):  # summary reads what Hydra leaves too: drop the callback's records
        (sweep / job / "hydra_init_job.json").unlink()
    assert cli(["summary", str(sweep), "--plot", "no", "--out", str(tmp_path / "table")]) == 0
    captured = capsys.readouterr()
    assert "| 0 | init=kaiming_conv |" in captured.out and "| 1 | init=none |" in captured.out
    assert "overrides shared by every job: trainer.max_epochs=1 test=" in captured.err


def test_optuna_search_over_the_preset_knob(tmp_path) -> None:
    sweep = tmp_path / "optuna"
    out = run_app(tmp_path, "-m", "hparams_search=init_optuna", f"hydra.sweep.dir={sweep}",
                  "hydra.sweeper.n_trials=2", "trainer.max_epochs=1", "test=false")
    assert "Best parameters: {'init.std':" in out
    reports = sorted(sweep.glob("*/init_report.json"))
    assert len(reports) == 2
    stds = [json.loads(p.read_text())["rules"]["weights"]["args"]["std"] for p in reports]
    assert all(1e-3 <= s <= 1e-1 for s in stds) and stds[0] != stds[1]


def test_summary_refuses_a_directory_that_is_not_a_hydra_run(tmp_path, capsys) -> None:
    (tmp_path / "notes.txt").write_text("not a run\n")
    assert cli(["summary", str(tmp_path)]) == 2
    assert "is not a Hydra run or multirun directory" in capsys.readouterr().err
