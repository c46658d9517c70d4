"""The ``hydra-init`` command (presets, plan, summary) and its helpers (progress, curves, pictures).

The commands run in-process through :func:`hydra_init.tools.cli.main` (the function the
``hydra-init`` console script calls); one test runs the installed console script
itself. Expected values are derived from the preset files and from models built
here, never copied from the command's own output.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch
from hydra.core.utils import JobReturn, JobStatus
from omegaconf import OmegaConf

import hydra_init
from hydra_init.integration.callbacks import InitSummaryCallback
from hydra_init.integration.job import write_report
from hydra_init.tools.cli import main
from hydra_init.tools.curves import Curve, log_curve, read_curves
from hydra_init.tools.progress import Progress, format_count
from hydra_init.tools.sweep_plot import metric_columns, setting_labels

ROOT = Path(__file__).resolve().parent.parent
PRESETS = ROOT / "conf" / "init"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# ============================================================================ presets
def test_presets_lists_every_preset_with_its_description_and_knobs(capsys) -> None:
    code, out, _ = run(capsys, "presets")
    assert code == 0
    files = sorted(PRESETS.glob("*.yaml"))
    assert len(files) >= 8
    for path in files:
        description = path.read_text().splitlines()[0].removeprefix("#").strip()
        line = next((ln for ln in out.splitlines() if ln.split()[:1] == [path.stem]), None)
        assert line is not None, f"{path.stem} not listed"
        assert description in line
        # every knob the file sets at top level is listed with its value
        raw = OmegaConf.load(path)
        knobs_line = out.splitlines()[out.splitlines().index(line) + 1]
        for key, value in raw.items():
            if key in ("defaults", "rules", "enabled") or OmegaConf.is_config(value):  # enabled: not a knob
                continue
            if value is None:  # a knob the user must set
                assert f"{key}=null" in knobs_line, (path.stem, key, knobs_line)
                continue
            text = str(value).lower() if isinstance(value, bool) else str(value)
            assert f"{key}={text}" in knobs_line, (path.stem, key, knobs_line)
    for rule in (PRESETS / "rules").glob("*.yaml"):
        assert rule.stem in out


def test_presets_json(capsys) -> None:
    code, out, _ = run(capsys, "presets", "--json")
    assert code == 0
    listed = {p["name"]: p for p in json.loads(out)}
    assert set(listed) == {p.stem for p in PRESETS.glob("*.yaml")}
    assert listed["gpt2"]["knobs"]["n_layer"] == OmegaConf.load(PRESETS / "gpt2.yaml").n_layer
    assert all(not p["error"] for p in listed.values())


# ============================================================================ plan
def test_plan_a_target_with_model_arguments(capsys) -> None:
    code, out, _ = run(capsys, "plan", "torch.nn.Linear", "init=bert", "model.in_features=64",
                       "model.out_features=32", "init.std=0.05", "--json")
    assert code == 0
    report = json.loads(out)
    assert report["applied"] is False
    params = {p["path"]: p for p in report["params"]}
    assert params["weight"]["shape"] == [32, 64]
    assert params["weight"]["init"] == "Normal(mean=0.0, std=0.05)"
    assert params["bias"]["init"] == "bias=0"


def test_plan_of_an_app_config_uses_its_model_and_overrides(capsys) -> None:
    config = ROOT / "examples" / "why_init" / "conf" / "config.yaml"
    code, out, _ = run(capsys, "plan", str(config), "init=orthogonal", "init.gain=2.0", "model.depth=12",
                       "--params")
    assert code == 0
    assert "plan (dry run)" in out
    listed = [ln.split()[0] for ln in out.splitlines() if ln.startswith("  layers.")]
    assert listed == [f"layers.{i}.{p}" for i in range(12) for p in ("weight", "bias")]
    assert "Orthogonal(gain=2.0)" in out


def test_plan_builds_the_module_of_the_initialized_wrapper_without_applying(capsys, tmp_path) -> None:
    (tmp_path / "app.yaml").write_text(
        "defaults:\n  - init: xavier\n  - _self_\n"
        "model:\n  _target_: hydra_init.initialized\n"
        "  module: {_target_: torch.nn.Linear, in_features: 16, out_features: 8}\n"
        "  init: ${init}\n"
    )
    code, out, _ = run(capsys, "plan", str(tmp_path / "app.yaml"), "--json")
    assert code == 0
    report = json.loads(out)
    assert report["applied"] is False and report["totals"]["rule"] == 2
    assert not (tmp_path / "init_report.json").exists()


def test_plan_falls_back_to_cpu_when_the_model_cannot_be_built_on_meta(capsys, tmp_path, monkeypatch) -> None:
    (tmp_path / "needs_values.py").write_text(
        "import torch\n"
        "class Net(torch.nn.Linear):\n"
        "    def __init__(self):\n"
        "        super().__init__(4, 4)\n"
        "        if self.weight.is_meta:  # like a constructor computing a buffer from the weights\n"
        "            raise NotImplementedError('needs real values')\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    code, out, err = run(capsys, "plan", "needs_values.Net", "init=xavier", "--json")
    assert code == 0, err
    assert "building it on cpu" in err
    assert json.loads(out)["totals"]["rule"] == 2


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["torch.nn.Linear", "init=gtp2"], "Could not find 'init/gtp2'"),
        (["torch.nn.Linear", "init=gpt2", "init.bogus=1"], "init.bogus"),
        (["torch.nn.Linear", "model.in_features=2", "model.out_features=2", "init=gpt2", "init.n_layer=0"],
         "init.rules.residual.expr.std"),
        (["torch.nn.Linear", "model.in_features=2", "model.out_features=2", "init=xavier", "init.std=0.1"],
         "init.std"),
        (["torch.nn.Linear", "model.in_features=2"], "no init config: add init=<preset>"),
    ],
)
def test_plan_errors_name_the_problem(capsys, argv, message) -> None:
    code, out, err = run(capsys, "plan", *argv)
    assert code == 2
    assert message in err and out == ""


def test_console_script_is_installed() -> None:
    exe = shutil.which("hydra-init", path=str(Path(sys.executable).parent))
    assert exe is not None, "hydra-init console script not installed in this environment"
    done = subprocess.run([exe, "plan", "torch.nn.Linear", "init=vit", "model.in_features=4",
                           "model.out_features=2"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "TruncNormal" in done.stdout


# ============================================================================ summary
def _fake_job(sweep: Path, num: int, overrides: list[str], metric: object, std: float, losses: list[float]):
    """A job directory as a real sweep leaves it: report, curves, and the summary callback's record."""
    job_dir = sweep / str(num)
    model = torch.nn.Linear(8, 8)
    report = hydra_init.apply(model, {"seed": num, "rules": {"fc": {"type": "Normal", "layer": "Linear",
                                                                     "std": std}}}, log=False)
    write_report(report, job_dir)
    log_curve("train_loss", losses, [0, 10, 20][: len(losses)], yscale="log", directory=job_dir)
    config = OmegaConf.create({"hydra": {"job": {"num": num}, "runtime": {"output_dir": str(job_dir)}}})
    job_return = JobReturn(overrides=overrides, status=JobStatus.COMPLETED, _return_value=metric)
    InitSummaryCallback().on_job_end(config, job_return)
    return job_dir


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    sweep = tmp_path / "multirun"
    _fake_job(sweep, 0, ["init=normal", "init.std=1.0", "seed=0"], {"acc": 0.10, "loss": float("nan")},
              1.0, [2.3, float("nan")])
    _fake_job(sweep, 1, ["init=normal", "init.std=0.01", "seed=0"], {"acc": 0.12, "loss": 2.3}, 0.01,
              [2.3, 2.3, 2.3])
    _fake_job(sweep, 2, ["init=normal", "init.std=0.01", "seed=1"], {"acc": 0.11, "loss": 2.3}, 0.01,
              [2.3, 2.29, 2.28])
    return sweep


def test_summary_prints_the_table_and_draws_the_sweep(capsys, sweep) -> None:
    code, out, err = run(capsys, "summary", str(sweep))
    assert code == 0, err
    lines = [ln for ln in out.splitlines() if ln.startswith("| ")]
    assert len(lines) == 1 + 3  # header + one row per job
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert {"overrides", "metric.acc", "initialized", "rules"} <= set(header)
    assert "| init.std=0.01 seed=1 |" in out  # only what varies across the jobs ...
    assert "overrides shared by every job: init=normal" in err  # ... the rest said once
    for name in ("init_summary.csv", "init_summary.json", "init_summary.md"):
        assert (sweep / name).is_file()
    for name in ("init_summary.png", "curve_train_loss.png"):
        data = (sweep / name).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 5000, name


def test_summary_of_several_sweeps_into_one_directory(capsys, sweep, tmp_path) -> None:
    other = tmp_path / "other"
    _fake_job(other, 0, ["init=xavier", "seed=0"], 0.9, 0.1, [2.3, 0.5, 0.1])
    out_dir = tmp_path / "merged"
    code, out, err = run(capsys, "summary", str(sweep), str(other), "--out", str(out_dir), "--plot", "no",
                         "--format", "csv")
    assert code == 0, err
    rows = [ln for ln in out.splitlines() if ln]
    assert len(rows) == 1 + 4
    assert any("init=xavier" in r for r in rows)
    assert (out_dir / "init_summary.md").is_file() and not (out_dir / "init_summary.png").exists()


def test_summary_refuses_a_directory_without_hydra_jobs(capsys, tmp_path) -> None:
    code, _, err = run(capsys, "summary", str(tmp_path))
    assert code == 2
    assert f"{tmp_path} is not a Hydra run or multirun directory: no job under it has a .hydra/" in err


def test_summary_reads_what_hydra_leaves_without_the_callback(capsys, tmp_path) -> None:
    for num, overrides in enumerate((["init=xavier", "seed=0"], ["init=normal", "seed=0"])):
        job = tmp_path / str(num)
        (job / ".hydra").mkdir(parents=True)
        (job / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
        (job / ".hydra" / "hydra.yaml").write_text(f"hydra:\n  job:\n    num: {num}\n")
    code, out, err = run(capsys, "summary", str(tmp_path), "--plot", "no")
    assert code == 0, err
    assert "| 0 | init=xavier |" in out and "| 1 | init=normal |" in out
    assert "overrides shared by every job: seed=0" in err


# ============================================================================ sweep pictures
def test_setting_labels_drop_seeds_and_shared_overrides() -> None:
    rows = [{"overrides": "init=normal init.std=1.0 seed=0 train.steps=9"},
            {"overrides": "init=normal init.std=1.0 init.seed=4 train.steps=9"},
            {"overrides": "init=xavier +seed=2 train.steps=9"}]
    assert setting_labels(rows) == ["init=normal init.std=1.0", "init=normal init.std=1.0", "init=xavier"]


def test_metric_columns_keep_numeric_ones() -> None:
    rows = [{"metric.acc": 0.5, "metric.note": "n/a", "metric.loss": "nan", "job": 1},
            {"metric.acc": 0.6, "metric.note": "n/a", "metric.loss": 2.0, "job": 2}]
    assert metric_columns(rows) == ["metric.acc", "metric.loss"]


# ============================================================================ curves
def test_curves_round_trip_with_non_finite_values(tmp_path) -> None:
    log_curve("loss", [3.0, float("inf"), float("nan")], [0, 5, 10], xlabel="step", directory=tmp_path)
    log_curve("loss", [2.0, 1.0], directory=tmp_path)  # same name: replaced
    log_curve("act", [1.0, float("nan")], directory=tmp_path, yscale="log")
    curves = read_curves(tmp_path)
    assert curves["loss"].y == [2.0, 1.0] and curves["loss"].x == [0.0, 1.0]
    assert curves["act"].y == [1.0, None] and curves["act"].diverged
    assert read_curves(tmp_path / "nowhere") == {}


def test_log_curve_outside_a_hydra_job_writes_nothing() -> None:
    assert log_curve("loss", [1.0]) is None


def test_curve_validation() -> None:
    with pytest.raises(ValueError, match="yscale"):
        Curve("x", [1.0], yscale="cubic")
    with pytest.raises(ValueError, match="2 x values for 1 y"):
        Curve("x", [1.0], x=[0.0, 1.0])


# ============================================================================ progress
class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def progress_log(caplog):
    caplog.set_level(logging.INFO, logger="hydra_init.test_progress")
    return logging.getLogger("hydra_init.test_progress"), caplog


def test_progress_is_silent_for_fast_work(progress_log) -> None:
    logger, caplog = progress_log
    clock = FakeClock()
    with Progress(total=100, logger=logger, clock=clock, delay=2.0) as progress:
        for _ in range(100):
            clock.now += 0.01  # 1 s in all: below the delay
            progress.update(1)
    assert caplog.records == []


def test_progress_logs_periodically_then_a_closing_line(progress_log) -> None:
    logger, caplog = progress_log
    clock = FakeClock()
    with Progress(total=1000, desc="init", logger=logger, clock=clock, delay=2.0, interval=5.0) as progress:
        for _ in range(100):
            clock.now += 0.25  # 25 s in all
            progress.update(10)
    messages = [r.getMessage() for r in caplog.records]
    # first line once 2 s have passed, then one per 5 s: at 2, 7, 12, 17, 22 s, plus the closing line
    assert len(messages) == 6
    assert messages[0].startswith("init: 80/1.0k values (8%), 2.0 s elapsed, ~23.0 s left")
    assert messages[-1] == "init: done, 1.0k/1.0k values in 25.0 s"


def test_progress_counts_from_many_threads() -> None:
    progress = Progress(total=8 * 10_000, delay=1e9)
    tasks = progress.wrap([lambda: None] * 7, 10_000 * 8 - 5)

    def work() -> None:
        for _ in range(10_000):
            progress.update(1)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert progress.done == 80_000
    for task in tasks:
        task()
    assert progress.done == 80_000 + 79_995


def test_progress_wrap_of_no_tasks_counts_the_size() -> None:
    progress = Progress(total=10, delay=1e9)
    assert progress.wrap([], 10) == []
    assert progress.done == 10


def test_format_count() -> None:
    assert [format_count(n) for n in (0, 999, 1000, 2_500_000, 7e9)] == ["0", "999", "1.0k", "2.50M", "7.00G"]


def test_progress_rejects_bad_timing() -> None:
    with pytest.raises(ValueError):
        Progress(total=1, interval=0)
