"""The Hydra glue in-process: ``Init``, the instantiate hook, the knob check, job files, callbacks.

The command-line behaviour of the same pieces, in real Hydra apps run as
subprocesses, is in ``test_hydra_cli.py``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import hydra.utils
import pytest
import torch
from helpers import assert_bit_identical, snapshot
from hydra import compose, initialize
from hydra.core.config_search_path import ConfigSearchPath
from hydra.core.object_type import ObjectType
from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn, JobStatus
from hydra.errors import ConfigCompositionException, InstantiationException
from hydra.plugins.search_path_plugin import SearchPathPlugin
from omegaconf import DictConfig, OmegaConf
from torch import nn

import hydra_init
from hydra_init.integration import callbacks, job, threads
from hydra_init.integration.recipe_schemas import RECIPE_SCHEMAS
from hydra_plugins.hydra_init_searchpath.schema_source import HydraInitSchemaSource
from hydra_plugins.hydra_init_searchpath.searchpath import PROVIDER, HydraInitSearchPathPlugin

ZERO_LINEAR = {"seed": 0, "rules": {"fc": {"type": "Zeros", "layer": "Linear"}}}


@pytest.fixture(scope="module")
def compose_app() -> Iterator[Callable[..., DictConfig]]:
    """Compose ``init`` plus a ``model`` node, as an app with ``defaults: [init: ...]`` would."""
    hydra_init.register()
    with initialize(version_base=None, config_path=None):

        def compose_fn(*overrides: str) -> DictConfig:
            cfg = compose(overrides=list(overrides))
            OmegaConf.set_struct(cfg, False)
            cfg.model = {"_target_": "torch.nn.Linear", "in_features": 64, "out_features": 32}
            return cfg

        yield compose_fn


# ------------------------------------------------------------------ hydra.utils.instantiate(cfg.init)
def test_hydra_instantiate_gives_a_callable_init(compose_app):
    cfg = compose_app("+init=xavier", "init.seed=3")
    init = hydra.utils.instantiate(cfg.init)
    assert isinstance(init, hydra_init.Init) and init.seed == 3
    assert init.knobs == {"bias": 0.0, "gain": 1.0}
    model = nn.Sequential(nn.Linear(64, 32), nn.LayerNorm(32))
    report = init(model, log=False)
    assert isinstance(report, hydra_init.InitReport)
    assert report["0.weight"].rule == "weights" and report["1.weight"].rule == "norm_ones"
    # the same draws as the engine applied to the composed node directly
    twin = nn.Sequential(nn.Linear(64, 32), nn.LayerNorm(32))
    hydra_init.apply(twin, cfg.init, log=False)
    assert torch.equal(model[0].weight, twin[0].weight)


def test_every_preset_survives_hydra_instantiate(compose_app):
    """Hydra resolves ``${...knob}`` before calling Init: no recipe's knob may look unused then
    (knobs interpolated into name globs, ``enabled`` flags and ``expr`` formulas included)."""
    presets = sorted(p.stem for p in (hydra_init.integration.conf_dir() / "init").glob("*.yaml"))
    assert len(presets) >= 12
    for preset in presets:
        extra = ["init.checkpoint=weights.pt"] if preset == "pretrained" else []
        init = hydra.utils.instantiate(compose_app(f"+init={preset}", *extra).init)
        assert isinstance(init, hydra_init.Init), preset


def test_unused_knob_is_refused_on_both_paths(compose_app):
    with pytest.raises(ConfigCompositionException, match=r"Could not override 'init\.std'"):
        compose_app("+init=kaiming_conv", "init.std=0.02")  # the lean preset has no std: Hydra refuses
    cfg = compose_app("+init=kaiming_conv", "+init.std=0.02")  # forced in with +: ours refuses
    with pytest.raises(hydra_init.InitConfigError, match=r"^init\.std: 'std' is set but no rule"):
        hydra_init.Init.from_config(cfg.init)  # unresolved node: interpolations inspected
    with pytest.raises(InstantiationException, match=r"init\.std: 'std' is set but no rule"):
        hydra.utils.instantiate(cfg.init)  # resolved by Hydra: values inspected


def test_a_bad_value_from_a_knob_names_the_knob(compose_app):
    cfg = compose_app("+init=normal", "init.std=-1")
    with pytest.raises(hydra_init.InitConfigError, match=r"rules\.weights\.std: .*is negative "
                                                         r"\(the value of the knob init\.std\)"):
        hydra_init.Init.from_config(cfg.init)


def test_unknown_key_added_with_plus_is_refused(compose_app):
    cfg = compose_app("+init=xavier", "+init.bogus=1")
    with pytest.raises(hydra_init.InitConfigError, match=r"^init\.bogus: unknown key 'bogus'"):
        hydra_init.Init.from_config(cfg.init)


# ------------------------------------------------------------------ Init.from_config forms
def test_init_from_every_config_form():
    rule = {"type": "Normal", "layer": "Linear", "std": "${...std}"}
    plain = {"seed": 0, "std": 0.5, "rules": {"fc": rule}}
    assert hydra_init.Init.from_config(plain).config["rules"]["fc"]["std"] == 0.5  # interpolation resolved
    ones = hydra_init.RuleConfig(type="Ones", layer="Linear")
    structured = hydra_init.InitConfig(seed=1, rules={"fc": ones})
    assert hydra_init.Init.from_config(structured).config["rules"]["fc"]["type"] == "Ones"
    mmengine = [{"type": "Constant", "layer": "Linear", "val": 2.0}]
    model = nn.Linear(3, 3)
    hydra_init.Init.from_config(mmengine)(model, log=False)
    assert bool((model.weight == 2.0).all())
    init = hydra_init.Init.from_config(ZERO_LINEAR)
    assert hydra_init.Init.from_config(init) is init
    assert repr(init) == "Init(seed=0, rules=[fc=Zeros])"
    with pytest.raises(hydra_init.InitConfigError, match="expected an init config"):
        hydra_init.Init.from_config(3.0)


def test_init_plan_is_a_dry_run():
    model = nn.Linear(4, 4)
    before = snapshot(model)
    report = hydra_init.Init(**ZERO_LINEAR).plan(model)
    assert not report.applied and report["weight"].rule == "fc"
    assert_bit_identical(model, before)


# ------------------------------------------------------------------ the instantiate hook
class Counted(nn.Linear):
    built = 0

    def __init__(self, *args, **kwargs) -> None:
        Counted.built += 1
        super().__init__(*args, **kwargs)


def test_instantiate_builds_and_initializes(compose_app):
    cfg = compose_app("+init=constant", "init.val=0.25")
    model = hydra_init.instantiate(cfg.model, init=cfg.init, out_features=8)  # kwargs reach the build
    assert model.weight.shape == (8, 64) and bool((model.weight == 0.25).all())


def test_instantiate_validates_the_init_before_building_the_model(compose_app):
    cfg = compose_app("+init=constant", "+init.std=0.1")
    cfg.model._target_ = f"{__name__}.Counted"
    built = Counted.built
    with pytest.raises(hydra_init.InitConfigError, match=r"^init\.std"):
        hydra_init.instantiate(cfg.model, init=cfg.init)
    assert Counted.built == built


def test_instantiate_without_init_builds_only():
    model = hydra_init.instantiate({"_target_": "torch.nn.Linear", "in_features": 2, "out_features": 2})
    assert isinstance(model, nn.Linear)


def test_instantiate_refuses_a_config_that_builds_no_module():
    with pytest.raises(TypeError, match=r"not an nn\.Module"):
        hydra_init.instantiate({"_target_": "builtins.dict"}, init=ZERO_LINEAR)


YAML_ONLY = """
init: {_target_: hydra_init.Init, seed: 0, val: 0.5,
       rules: {fc: {type: Constant, layer: Linear, val: "${...val}"}}}
model:
  _target_: hydra_init.initialized
  module: {_target_: torch.nn.Linear, in_features: 4, out_features: 3}
  init: ${init}
"""


@pytest.mark.parametrize("recursive", [True, False])
def test_yaml_only_wiring_under_plain_hydra_instantiate(recursive):
    cfg = OmegaConf.create(YAML_ONLY)
    cfg.model._recursive_ = recursive  # false: module and init reach `initialized` as configs
    model = hydra.utils.instantiate(cfg.model)
    assert isinstance(model, nn.Linear) and bool((model.weight == 0.5).all())


def test_initialized_refuses_what_is_not_a_module():
    with pytest.raises(TypeError, match=r"nn\.Module or a config"):
        hydra_init.initialized(42, init=ZERO_LINEAR)


# ------------------------------------------------------------------ job files
def test_report_files_are_numbered_per_directory(tmp_path):
    report = hydra_init.Init(**ZERO_LINEAR)(nn.Linear(2, 2), log=False)
    assert job.job_output_dir() is None  # not in a Hydra job: the call above wrote nothing
    first = job.write_report(report, tmp_path)
    second = job.write_report(report, tmp_path)
    assert [p.name for p in job.report_files(tmp_path)] == ["init_report.json", "init_report_2.json"]
    assert [first, second] == job.report_files(tmp_path)
    assert json.loads(first.read_text())["totals"]["rule"] == 2
    assert job.write_report(report) is None


# ------------------------------------------------------------------ callbacks
def job_config(sweep: Path, num: int) -> DictConfig:
    return OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep)}, "job": {"num": num},
                                       "runtime": {"output_dir": str(sweep / str(num))}}})


def finished(status: JobStatus, value, overrides: list[str]) -> JobReturn:
    ret = JobReturn(overrides=overrides, status=status)
    ret.return_value = value
    return ret


def test_summary_callback_collects_one_row_per_job(tmp_path, caplog):
    sweep = tmp_path / "sweep"
    (sweep / "7").mkdir(parents=True)
    (sweep / "7" / callbacks.JOB_FILE).write_text(json.dumps({"job": 7, "status": "COMPLETED"}))
    cb = callbacks.InitSummaryCallback()
    cb.on_multirun_start(job_config(sweep, 0))
    assert not (sweep / "7" / callbacks.JOB_FILE).exists()  # an earlier sweep's record is forgotten
    model = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4))
    report = hydra_init.Init(seed=5, rules={"fc": {"type": "Zeros", "layer": "Linear"}})(model, log=False)
    job.write_report(report, sweep / "0")
    cb.on_job_end(job_config(sweep, 0), finished(JobStatus.COMPLETED, torch.tensor(0.75), ["init.seed=5"]))
    cb.on_job_end(job_config(sweep, 1), finished(JobStatus.FAILED, ValueError("bad\nsecond line"), ["x=1"]))
    with caplog.at_level("INFO", logger="hydra_init"):
        cb.on_multirun_end(job_config(sweep, 0))
    rows = json.loads((sweep / "init_summary.json").read_text())
    assert [r["job"] for r in rows] == [0, 1]
    assert rows[0] | {"dir": "0"} == {
        "job": 0, "overrides": "init.seed=5", "status": "COMPLETED", "metric": 0.75, "initialized": 2,
        "default": 2, "rules": "fc:2", "seed": 5, "warnings": 0, "error": "", "dir": "0"}
    assert rows[1]["status"] == "FAILED" and rows[1]["error"] == "ValueError: bad"
    assert rows[1]["initialized"] is None  # the failed job wrote no report
    csv_lines = (sweep / "init_summary.csv").read_text().splitlines()
    assert csv_lines[0].startswith("job,overrides,status,metric,initialized") and len(csv_lines) == 3
    table = (sweep / "init_summary.md").read_text()
    assert "| 0 | init.seed=5 | COMPLETED | 0.75 | 2 | 2 | fc:2 | 5 | 0 |" in table
    assert table.strip() in caplog.text


def test_summary_callback_leaves_single_runs_alone(tmp_path):
    cfg = job_config(tmp_path, 0)
    cfg.hydra.mode = "RUN"
    callbacks.InitSummaryCallback().on_job_end(cfg, finished(JobStatus.COMPLETED, 1.0, []))
    assert not list(tmp_path.rglob(callbacks.JOB_FILE))


def test_summary_of_dict_metrics_gets_one_column_per_key(tmp_path):
    sweep = tmp_path / "s"
    cb = callbacks.InitSummaryCallback()
    cb.on_job_end(job_config(sweep, 0), finished(JobStatus.COMPLETED, {"acc": 0.5, "loss": 1}, []))
    (row,) = callbacks.collect_rows(sweep)
    assert row["metric.acc"] == 0.5 and row["metric.loss"] == 1 and "metric" not in row


# ------------------------------------------------------------------ threads
JOBLIB = "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"
SUBMITIT = "hydra_plugins.hydra_submitit_launcher.submitit_launcher."


@pytest.mark.parametrize(("launcher", "expected"), [
    ({"_target_": JOBLIB, "n_jobs": 2}, 4),
    ({"_target_": JOBLIB, "n_jobs": -1}, 1),  # one job per CPU
    ({"_target_": JOBLIB, "n_jobs": 3}, 2),
    ({"_target_": JOBLIB, "n_jobs": 16}, 1),
    ({"_target_": SUBMITIT + "LocalLauncher", "cpus_per_task": None}, 1),
    ({"_target_": SUBMITIT + "SlurmLauncher", "cpus_per_task": 6}, 6),
    ({"_target_": SUBMITIT + "SlurmLauncher", "cpus_per_task": None}, 8),
    ({"_target_": "hydra._internal.core_plugins.basic_launcher.BasicLauncher"}, None),
])
def test_job_threads_per_launcher(launcher, expected):
    assert threads.job_threads(OmegaConf.create({"hydra": {"launcher": launcher}}), cpus=8) == expected


def test_limit_threads_sets_torch_threads():
    before = torch.get_num_threads()
    try:
        cfg = OmegaConf.create({"hydra": {"launcher": {"_target_": JOBLIB, "n_jobs": 10**6}}})
        assert threads.limit_threads(cfg) == 1 and torch.get_num_threads() == 1
        assert threads.limit_threads() is None  # not in a Hydra job
    finally:
        torch.set_num_threads(before)


# ------------------------------------------------------------------ plugins
def test_schema_source_serves_the_schemas_without_listing_them_at_the_root():
    source = HydraInitSchemaSource(provider=PROVIDER, path="hydra-init://")
    assert source.is_group("hydra_init/schema") and source.is_config("hydra_init/schema/init")
    assert not source.is_config("init/kaiming_conv") and not source.is_group("init")
    # the core schemas plus one per recipe, listed by the source without importing hydra_init
    assert source.list("hydra_init/schema", ObjectType.CONFIG) == sorted(["init", "rule", *RECIPE_SCHEMAS])
    gpt2 = source.load_config("hydra_init/schema/gpt2.yaml").config
    assert OmegaConf.get_type(gpt2) is RECIPE_SCHEMAS["gpt2"] and "n_layer" in gpt2
    assert source.list("", None) == []  # not offered as a config group in --help
    node = source.load_config("hydra_init/schema/init.yaml").config
    assert OmegaConf.get_type(node) is hydra_init.InitConfig
    with pytest.raises(ValueError, match="no config"):
        source.load_config("hydra_init/schema/nope")


class _Path(ConfigSearchPath):
    def __init__(self) -> None:
        from hydra.core.config_search_path import SearchPathElement

        self.elements = [SearchPathElement("main", "file://app/conf")]

    def get_path(self):
        return self.elements

    def append(self, provider, path, anchor=None):
        from hydra.core.config_search_path import SearchPathElement

        self.elements.append(SearchPathElement(provider, path))

    def prepend(self, provider, path, anchor=None):  # pragma: no cover - the plugin never prepends
        raise AssertionError("an app's own conf/init must shadow ours: append only")


def test_search_path_plugin_appends_once_after_the_app():
    path = _Path()
    HydraInitSearchPathPlugin().manipulate_search_path(path)
    HydraInitSearchPathPlugin().manipulate_search_path(path)  # discovered and registered: still once
    assert [(e.provider, e.path) for e in path.get_path()] == [
        ("main", "file://app/conf"),
        (PROVIDER, f"hydra-init-conf://{hydra_init.integration.conf_dir()}"),
        (PROVIDER, "hydra-init://"),
    ]


def test_register_is_idempotent():
    hydra_init.register()
    hydra_init.register()
    found = Plugins.instance().discover(SearchPathPlugin)
    assert [p.__name__ for p in found].count("HydraInitSearchPathPlugin") == 1


# ------------------------------------------------------------------ device: built on meta, initialized once
def test_instantiate_on_a_device_matches_the_eager_path(compose_app):
    cfg = compose_app("+init=kaiming_uniform", "init.seed=4")
    model_cfg = {"_target_": "torch.nn.Sequential", "_args_": [
        {"_target_": "torch.nn.Conv2d", "in_channels": 3, "out_channels": 8, "kernel_size": 3},
        {"_target_": "torch.nn.BatchNorm2d", "num_features": 8},
        {"_target_": "torch.nn.Flatten"},
        {"_target_": "torch.nn.Linear", "in_features": 8 * 6 * 6, "out_features": 4}]}
    eager = hydra_init.instantiate(model_cfg, init=cfg.init)
    on_device = hydra_init.instantiate(model_cfg, init=cfg.init, device="cpu")
    assert all(p.device.type == "cpu" for p in on_device.parameters())
    for (name, a), (_, b) in zip(eager.state_dict().items(), on_device.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    wired = OmegaConf.create({"init": cfg.init, "model": {
        "_target_": "hydra_init.initialized", "_recursive_": False, "module": model_cfg,
        "init": "${init}", "device": "cpu"}})
    assert torch.equal(hydra.utils.instantiate(wired.model)[3].weight, eager[3].weight)
