"""Real Hydra apps on the command line, in subprocesses, with hydra_init installed as users install it.

The app lives in a temp directory outside the repository and runs on a Python
where hydra_init was ``pip install``-ed from a wheel (``wheel_python`` in
conftest.py): the ``init`` group must come from the installed package through
the search-path plugin, with nothing copied into the app. One subprocess per
case where Hydra needs its own command line (``--help``, each bad input);
multiruns batch many checks in one process.

Statistical tolerances: the app writes each parameter's std; the conv weight
has 9,216 samples, so 6 standard errors of a sample std are 4.4% of it, while
the fan_in/fan_out mix-up it guards against is a factor of 2.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from hydra_init.integration.threads import available_cpus

ROOT = Path(__file__).resolve().parent.parent

TINYNET = '''
"""The app's model: every layer family kaiming_conv covers, and a head."""
from torch import nn


class TinyNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(16, 64, 3)
        self.bn = nn.BatchNorm2d(64)
        self.fc = nn.Linear(256, 128)
        self.head = nn.Linear(128, 10)
'''

APP = '''
"""A Hydra app that knows nothing of hydra_init's presets: its config only selects `init`."""
import hashlib
import json
import os
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig

if os.environ.get("APP_REGISTER"):  # the fallback for installs whose plugin Hydra cannot discover
    import hydra_init

    hydra_init.register()


@hydra.main(version_base=None, config_path="conf", config_name="config")
def main(cfg):
    if cfg.hook == "bare":  # no init in this config: the plugin alone must not load torch
        print("TORCH_LOADED=" + str("torch" in sys.modules))
        print("SOURCES=" + json.dumps([dict(s) for s in HydraConfig.get().runtime.config_sources]))
        return 0.0
    import torch

    import hydra_init

    torch.manual_seed(0)
    model = hydra.utils.instantiate(cfg.model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    try:
        if cfg.hook == "init":  # the init node instantiated by Hydra: a callable
            hydra.utils.instantiate(cfg.init)(model)
        elif cfg.hook == "instantiate":  # our hook builds and initializes
            model = hydra_init.instantiate(cfg.model, init=cfg.init)
        else:  # YAML-only wiring: plain Hydra instantiate of `wired`
            model = hydra.utils.instantiate(cfg.wired)
    except Exception:
        same = all(torch.equal(before[k], v) for k, v in model.state_dict().items())
        print(f"MODEL_UNTOUCHED={same}", flush=True)
        raise
    params = {}
    for name, p in model.named_parameters():
        x = p.detach().double()
        sha = hashlib.sha256(p.detach().numpy().tobytes()).hexdigest()
        params[name] = {"mean": x.mean().item(), "std": x.std().item(), "min": x.min().item(),
                        "max": x.max().item(), "sha": sha}
    out = Path(HydraConfig.get().runtime.output_dir)
    (out / "weights.json").write_text(json.dumps(
        {"params": params, "threads": torch.get_num_threads(), "hydra_init": hydra_init.__file__}))
    return round(float(sum(p.detach().double().sum() for p in model.parameters())), 6)


if __name__ == "__main__":
    main()
'''

CONFIG = """
defaults:
  - init: kaiming_conv
  - _self_

hook: init
model:
  _target_: tinynet.TinyNet
wired:
  _target_: hydra_init.initialized
  module: ${model}
  init: ${init}
"""

# The app's own preset of the same name as one of ours: it must win.
SHADOW = """
# The app's own constant preset, shadowing hydra_init's
defaults:
  - /hydra_init/schema/init@_here_
  - _self_

seed: 0
val: 0.125
bias: 0.0
rules:
  app_constant: {type: Constant, layer: [_ConvNd, Linear, _NormBase], val: "${...val}", bias: "${...bias}"}
"""


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("external_app")
    (root / "conf" / "init").mkdir(parents=True)
    (root / "app.py").write_text(APP)
    (root / "tinynet.py").write_text(TINYNET)
    (root / "conf" / "config.yaml").write_text(CONFIG)
    (root / "conf" / "bare.yaml").write_text("hook: bare\n")
    (root / "conf" / "init" / "constant.yaml").write_text(SHADOW)
    return root


def run(python: Path, app: Path, *args: str, ok: bool = True, env: dict | None = None) -> str:
    """``python app.py ARGS`` in the app's directory; returns stdout + stderr."""
    proc = subprocess.run(
        [str(python), "app.py", *args], cwd=app, capture_output=True, text=True, timeout=300,
        env={**{k: v for k, v in os.environ.items() if not k.startswith(("HYDRA_", "PYTHON"))},
             **(env or {})},
    )
    out = proc.stdout + proc.stderr
    assert (proc.returncode == 0) == ok, f"exit {proc.returncode}\n{out[-4000:]}"
    return out


NUMEL = (64 * 16 * 9, 64, 64, 64, 256 * 128, 128, 128 * 10, 10)
"""Sizes of TinyNet's parameters, in model order."""


def job_dirs(sweep_root: Path) -> list[Path]:
    """The job directories of the only sweep under ``sweep_root``, by job number."""
    (sweep,) = [p.parent for p in sweep_root.glob("*/multirun.yaml")]
    return sorted((p for p in sweep.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))


def load(path: Path) -> dict:
    return json.loads(path.read_text())


def std_ok(got: float, expected: float, n: int) -> bool:
    """Within 6 standard errors (expected / sqrt(2 n)) of a normal's std."""
    return abs(got - expected) <= 6 * expected / math.sqrt(2 * n)


# ------------------------------------------------------------------ discovery
def test_plugin_comes_from_the_installed_wheel_and_loads_no_torch(wheel_python, app):
    out = run(wheel_python, app, "--config-name", "bare")
    assert "TORCH_LOADED=False" in out
    sources = json.loads(out.split("SOURCES=")[1].splitlines()[0])
    providers = [s["provider"] for s in sources]
    ours = [(s["schema"], s["path"]) for s in sources if s["provider"] == "hydra-init"]
    assert ours == [("hydra-init-conf", ours[0][1]), ("hydra-init", "")], ours
    assert ours[0][1].endswith("site-packages/hydra_init/conf")
    assert ours[0][1].startswith(str(wheel_python.parent.parent))  # the venv the wheel went into
    assert providers.index("main") < providers.index("hydra-init")  # the app's own configs come first


def test_help_lists_the_init_group_and_its_options(wheel_python, app):
    out = run(wheel_python, app, "--help")
    groups = {line.split(":")[0]: line.split(":", 1)[1] for line in out.splitlines() if ": " in line}
    options = {o.strip() for o in groups["init"].split(",")}
    assert options >= {"kaiming_conv", "xavier", "trunc_normal", "pytorch_default", "constant"}
    assert {o.strip() for o in groups["init/rules"].split(",")} >= {"norm_ones", "head_zero"}


def test_info_defaults_shows_the_preset_lean_and_an_app_preset_bound_to_the_schema(wheel_python, app):
    out = run(wheel_python, app, "--info", "defaults", "init=xavier")
    # ours is served lean (typed nodes, no schema in its tree); the app's own binds to the padded schema
    assert "init/xavier" in out and "init/rules/norm_ones" in out and "hydra_init/schema/init" not in out
    out = run(wheel_python, app, "--info", "defaults", "init=constant")
    assert "init/constant" in out and "hydra_init/schema/init" in out


def test_cfg_job_prints_the_composed_init(wheel_python, app):
    out = run(wheel_python, app, "--cfg", "job", "init=trunc_normal", "init.std=0.05",
              "+init/rules=[head_zero]", "init.rules.weights.a=-3")
    init = yaml.safe_load(out)["init"]
    assert init["_target_"] == "hydra_init.Init" and init["std"] == 0.05
    assert list(init["rules"]) == ["norm_ones", "weights", "head_zero"]
    assert init["rules"]["weights"]["std"] == "${...std}" and init["rules"]["weights"]["a"] == -3


# ------------------------------------------------------------------ bad input
BAD_INPUT = {
    # overrides: (fragments the output must contain, whether the task ran and left the model untouched)
    ("init.a=abc",): (["Error merging override init.a=abc", "could not be converted to Float"], False),
    ("init.rules.conv.mode=fan_sideways",): (["Error merging override init.rules.conv.mode=fan_sideways",
                                              "expected one of [fan_in, fan_out, fan_avg]"], False),
    ("init.mode=fan_sideways",): (["Error merging override init.mode=fan_sideways",
                                   "expected one of [fan_in, fan_out, fan_avg]"], False),
    ("init.bogus=1",): (["Could not override 'init.bogus'", "Key 'bogus' is not in struct"], False),
    ("init.std=0.02",): (["Could not override 'init.std'", "To append to your config use +init.std=0.02"],
                         False),
    ("init=kaimin_conv",): (["Could not find 'init/kaimin_conv'", "Available options in 'init'",
                             "kaiming_conv"], False),
    ("init=normal", "init.std=-1"): (["init.rules.weights.std: std=-1.0 is negative",
                                      "the value of the knob init.std"], True),
    ("+init.bogus=1",): (["init.bogus: unknown key 'bogus'"], True),
    ("+init.std=0.02",): (["init.std: 'std' is set but no rule of this init config uses it",
                           "knobs used here: a, bias, mode, nonlinearity"], True),
    ("+init.rules.conv.mdoe=fan_in",): (["init.rules.conv.mdoe: unknown rule key 'mdoe'",
                                         "did you mean 'mode'?"], True),
    ("+init/rules=[head_zero]", "init.rules.head_zero.name=[haed]"): (
        ["init.rules.head_zero.name", "matches no module", "head"], True),
}


@pytest.mark.parametrize("overrides", list(BAD_INPUT), ids=" ".join)
def test_bad_input_fails_naming_the_key_before_the_model_is_touched(wheel_python, app, overrides):
    fragments, task_ran = BAD_INPUT[overrides]
    out = run(wheel_python, app, *overrides, ok=False)
    for fragment in fragments:
        assert fragment in out, f"{fragment!r} not in:\n{out[-3000:]}"
    if task_ran:
        assert "MODEL_UNTOUCHED=True" in out
        # the message first, as one log line, before Hydra's "Error executing job" and its traceback
        error_line = next(line for line in out.splitlines() if fragments[0] in line)
        assert error_line.startswith("[") and "[hydra_init][ERROR] - " in error_line, out[-3000:]
    else:  # refused while composing: the app never ran
        assert "MODEL_UNTOUCHED" not in out


# ------------------------------------------------------------------ multirun
def test_basic_multirun_selection_knobs_rules_reports_and_summary(wheel_python, app, tmp_path):
    run(wheel_python, app, "-m", f"hydra.sweep.dir={tmp_path}/sweep", "init=kaiming_conv,constant",
        "init.seed=1,2,1", "init.bias=0.1", "+init/rules=[head_zero]", "hydra/callbacks=init_summary")
    jobs = job_dirs(tmp_path)
    assert len(jobs) == 6  # (kaiming_conv, constant) x seeds (1, 2, 1), in that order
    weights = [load(j / "weights.json") for j in jobs]
    reports = [load(j / "init_report.json") for j in jobs]
    assert all(w["hydra_init"].startswith(str(wheel_python.parent.parent)) for w in weights)
    for i, (w, r) in enumerate(zip(weights, reports, strict=True)):
        p = w["params"]
        assert r["seed"] == [1, 2, 1][i % 3]
        assert p["fc.bias"]["min"] == pytest.approx(0.1) and p["fc.bias"]["max"] == pytest.approx(0.1)
        assert p["head.weight"]["max"] == 0 == p["head.weight"]["min"]  # +init/rules=[head_zero]
        assert r["rules"]["head_zero"]["written"] == 2
    kaiming, constant = reports[0]["rules"], reports[3]["rules"]
    assert set(kaiming) == {"norm_ones", "conv", "linear", "head_zero"}
    assert set(constant) == {"app_constant", "head_zero"}  # the app's constant.yaml shadows ours
    assert weights[3]["params"]["conv.weight"]["max"] == 0.125 == weights[3]["params"]["conv.weight"]["min"]
    conv = weights[0]["params"]["conv.weight"]
    assert std_ok(conv["std"], math.sqrt(2 / (64 * 9)), n=64 * 16 * 9)  # kaiming_conv: fan_out
    # job 2 repeats job 0's config after a job with another seed ran in the same process
    shas = [{k: v["sha"] for k, v in w["params"].items()} for w in weights]
    assert shas[0] == shas[2] and shas[0]["conv.weight"] != shas[1]["conv.weight"]
    summary = load(jobs[0].parent / "init_summary.json")
    assert [row["job"] for row in summary] == list(range(6))
    assert summary[0]["overrides"] == "init=kaiming_conv init.seed=1 init.bias=0.1 +init/rules=[head_zero]"
    for row, w in zip(summary, weights, strict=True):  # the metric column is what each job returned
        total = sum(p["mean"] * n for p, n in zip(w["params"].values(), NUMEL, strict=True))
        assert row["status"] == "COMPLETED" and row["metric"] == pytest.approx(total, abs=1e-3)
    assert summary[0]["initialized"] == 8 and summary[0]["default"] == 0 and summary[0]["seed"] == 1
    table = (jobs[0].parent / "init_summary.md").read_text().splitlines()
    assert table[0].startswith("| job | overrides | status | metric | initialized | default | rules |")
    assert len(table) == 2 + 6
    assert (jobs[0].parent / "init_summary.csv").read_text().count("\n") == 1 + 6


def test_joblib_multirun_in_parallel_workers_with_a_share_of_the_cores(wheel_python, app, tmp_path):
    run(wheel_python, app, "-m", f"hydra.sweep.dir={tmp_path}/sweep", "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2", "init.seed=1,2", "hook=instantiate,yaml", "init.rules.conv.mode=fan_in",
        "init.nonlinearity=leaky_relu", "init.a=0.2", "hydra/callbacks=[init_summary,torch_threads]")
    jobs = job_dirs(tmp_path)
    weights = [load(j / "weights.json") for j in jobs]
    assert len(jobs) == 4 and all((j / "init_report.json").is_file() for j in jobs)
    assert {w["threads"] for w in weights} == {max(1, available_cpus() // 2)}
    # init.rules.conv.mode=fan_in reached the conv rule; the knobs reached both rules
    gain = math.sqrt(2 / (1 + 0.2**2))
    assert std_ok(weights[0]["params"]["conv.weight"]["std"], gain / math.sqrt(16 * 9), n=NUMEL[0])
    assert std_ok(weights[0]["params"]["fc.weight"]["std"], gain / math.sqrt(256), n=NUMEL[4])
    # our hook and the YAML-only wiring give the same model for the same seed
    shas = [{k: v["sha"] for k, v in w["params"].items()} for w in weights]
    assert shas[0] == shas[1] and shas[2] == shas[3] and shas[0] != shas[2]
    summary = load(jobs[0].parent / "init_summary.json")
    assert [row["status"] for row in summary] == ["COMPLETED"] * 4


def test_submitit_local_multirun(wheel_python, app, tmp_path):
    run(wheel_python, app, "-m", f"hydra.sweep.dir={tmp_path}/sweep", "hydra/launcher=submitit_local",
        "init=xavier_uniform,orthogonal", "hydra/callbacks=[init_summary,torch_threads]")
    jobs = job_dirs(tmp_path)
    reports = [load(j / "init_report.json") for j in jobs]
    assert [sorted(r["rules"]) for r in reports] == [["norm_ones", "weights"]] * 2
    assert "Orthogonal" in reports[1]["rules"]["weights"]["init"]
    # submitit_local starts every job at once: one thread each
    assert {load(j / "weights.json")["threads"] for j in jobs} == {1}
    summary = load(jobs[0].parent / "init_summary.json")
    assert [row["overrides"] for row in summary] == ["init=xavier_uniform", "init=orthogonal"]


# ------------------------------------------------------------------ the editable-install trap
def test_pep660_editable_install_needs_register(editable_python, app):
    out = run(editable_python, app, ok=False)  # Hydra cannot scan the import hook: no init group
    assert "Could not find 'init/kaiming_conv'" in out
    run(editable_python, app, "hook=instantiate", env={"APP_REGISTER": "1"})


# ------------------------------------------------------------------ the example app
def run_example(tmp_path: Path, *args: str) -> str:
    """``examples/train.py ARGS`` with the checkout's package (the repository's own dev setup)."""
    proc = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "python"), str(ROOT / "examples" / "train.py"), *args],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    return out


def test_example_app_prints_the_report_and_a_training_result(tmp_path):
    out = run_example(tmp_path, f"hydra.run.dir={tmp_path}/run", "train.epochs=1")
    # one INFO line per init (the table is at DEBUG, and in init_report.json)
    assert "[hydra_init][INFO] - hydra_init init report: 10 parameters, 6,186 values, seed 0; " \
           "10 initialized by a rule" in out
    assert "rule    conv" not in out
    assert "trained SmallCNN for 1 epochs" in out and "test accuracy" in out
    assert load(tmp_path / "run" / "init_report.json")["totals"]["rule"] == 10


def test_example_optuna_search_of_init_std(tmp_path):
    out = run_example(tmp_path, "-m", f"hydra.sweep.dir={tmp_path}/sweep", "hparams_search=init_std_optuna",
                      "hydra.sweeper.n_trials=2", "model=mlp", "train.epochs=1")
    assert "Best parameters: {'init.std':" in out
    summary = load(tmp_path / "sweep" / "init_summary.json")
    assert len(summary) == 2 and all(row["status"] == "COMPLETED" for row in summary)
    stds = [float(row["overrides"].split("init.std=")[1].split()[0]) for row in summary]
    assert all(1e-3 <= std <= 1e-1 for std in stds) and stds[0] != stds[1]
    assert all(0 <= row["metric"] <= 1 for row in summary)  # the accuracy each trial returned
