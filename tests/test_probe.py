"""The probe: signal propagation at init, per layer, without changing the model.

Theory used for the expected values: a Linear layer of fan-in n with weights of
std s followed by a ReLU multiplies the variance of the signal by n * s^2 / 2, so
its std changes by sqrt(n s^2 / 2) per layer: 8 for s = 1 and n = 128, 0.08 for
s = 0.01, and 1 for Kaiming (s^2 = 2 / n). At a fixed std, a layer k > 1 behind
k - 1 hidden layers of width n grows as n^((k - 1) / 2): the slope of log std over
log width is (k - 1) / 2; a fan-scaled init keeps every slope at 0.
"""

from __future__ import annotations

import gc
import json
import math
import re
import subprocess
import sys
import weakref
from pathlib import Path

import pytest
import torch
from helpers import assert_bit_identical, python_blocks, run_block, snapshot
from torch import nn

import hydra_init
from hydra_init.meta import build_and_init
from hydra_init.tools.cli import main
from hydra_init.tools.probe import probe
from hydra_init.tools.probe_plot import fit_slope

ROOT = Path(__file__).resolve().parent.parent
WHY_INIT = ROOT / "examples" / "why_init"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def relu_mlp(width: int = 128, depth: int = 12, std: float | None = None, seed: int = 0) -> nn.Sequential:
    """``depth`` Linear layers with a ReLU after each but the last; Normal(std) or Kaiming weights."""
    layers: list[nn.Module] = [nn.Linear(64, width)]
    for _ in range(depth - 2):
        layers += [nn.ReLU(), nn.Linear(width, width)]
    layers += [nn.ReLU(), nn.Linear(width, 10)]
    model = nn.Sequential(*layers)
    rule = {"type": "Normal", "std": std} if std is not None else {
        "type": "Kaiming", "mode": "fan_in", "nonlinearity": "relu"}
    rules = {"w": {**rule, "layer": "Linear", "bias": 0.0}}
    hydra_init.apply(model, {"seed": seed, "rules": rules}, log=False)
    return model


def gaussian(rows: int = 512, features: int = 64) -> torch.Tensor:
    return torch.randn(rows, features, generator=torch.Generator().manual_seed(1))


# ----------------------------------------------------------------------------- the model is left alone
class Mixed(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(16, 32)
        self.norm = nn.BatchNorm1d(32)
        self.drop = nn.Dropout(0.5)
        self.act = nn.ReLU()
        self.head = nn.Linear(32, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.act(self.drop(self.norm(self.fc(x)))))


def test_probe_changes_no_parameter_buffer_grad_mode_or_random_state() -> None:
    torch.manual_seed(0)
    model = Mixed()
    model.norm.running_mean.fill_(0.5)
    model.head.eval()  # a mixed state: the probe must restore each module's own mode
    model.fc.weight.grad = torch.full_like(model.fc.weight, 3.0)
    before = snapshot(model)
    modes = {name: m.training for name, m in model.named_modules()}
    batch = torch.randn(64, 16)
    rng = torch.get_rng_state()

    report = probe(model, batch, loss="cross_entropy")

    assert_bit_identical(model, before)  # parameters and buffers (running stats, num_batches_tracked)
    assert {name: m.training for name, m in model.named_modules()} == modes
    assert torch.equal(model.fc.weight.grad, torch.full_like(model.fc.weight, 3.0))
    assert model.head.weight.grad is None
    assert torch.equal(torch.get_rng_state(), rng)
    assert [lay.path for lay in report.layers] == ["fc", "norm", "drop", "act", "head"]
    assert report.mode == "train" and report["norm"].act_std == pytest.approx(1.0, abs=0.02)  # batch stats


def test_hooks_are_removed_and_no_activation_outlives_the_call() -> None:
    model = relu_mlp(width=32, depth=4)
    seen: list[weakref.ref] = []
    watch = model[2].register_forward_hook(lambda m, a, out: seen.append(weakref.ref(out)))
    report = probe(model, gaussian())
    watch.remove()
    gc.collect()
    assert len(seen) == 1 and seen[0]() is None  # the graph (which held it) is gone
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
    assert report["2"].out_grad_std is not None  # the backward reached it while it lived


def test_meta_built_model_after_init_and_a_meta_model_is_refused() -> None:
    cfg = {"seed": 0, "rules": {"w": {"type": "Kaiming", "layer": "Linear", "nonlinearity": "relu"}}}
    model, _ = build_and_init(lambda: nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 8)), cfg,
                              device="cpu", log=False)
    assert probe(model, gaussian()).verdict == "stable"
    with torch.device("meta"):
        unbuilt = nn.Linear(4, 4)
    with pytest.raises(ValueError, match="meta device"):
        probe(unbuilt, torch.randn(2, 4))


def test_each_call_of_a_shared_module_is_a_row_and_blocks_on_request() -> None:
    sys.path.insert(0, str(WHY_INIT))
    try:
        from model import PlainNet
    finally:
        sys.path.remove(str(WHY_INIT))
    net = PlainNet(width=16, depth=3)
    labels = [lay.label for lay in probe(net, gaussian()).layers]
    assert labels == ["layers.0", "activation#1", "layers.1", "activation#2", "layers.2"]
    nested = nn.Sequential(nn.Sequential(nn.Linear(64, 8), nn.ReLU()), nn.Linear(8, 2))
    rows = [(lay.label, lay.kind) for lay in probe(nested, gaussian(), blocks=True).layers]
    assert rows == [("0.0", "leaf"), ("0.1", "leaf"), ("0", "block"), ("1", "leaf")]


def test_dead_relu_units_are_counted() -> None:
    model = nn.Sequential(nn.Linear(64, 10), nn.ReLU())
    with torch.no_grad():
        model[0].weight.zero_()
        model[0].bias.copy_(torch.tensor([-1.0] * 4 + [1.0] * 6))  # 4 of 10 units never fire
    layer = probe(model, gaussian())["1"]
    assert layer.dead_frac == pytest.approx(0.4) and layer.zero_frac == pytest.approx(0.4)  # float32
    assert probe(model, gaussian())["0"].dead_frac is None  # not an activation


# ----------------------------------------------------------------------------- explode / vanish / flat
@pytest.mark.parametrize(("std", "verdict", "factor"), [
    (1.0, "explodes", 8.0),        # sqrt(128 * 1 / 2)
    (0.01, "vanishes", 0.08),      # sqrt(128 * 1e-4 / 2)
    (None, "stable", 1.0),         # Kaiming
])
def test_deep_relu_mlp_explodes_vanishes_or_stays_flat(std, verdict, factor) -> None:
    report = probe(relu_mlp(std=std), gaussian())
    assert report.verdict == verdict
    # the per-layer factor is a geometric mean over 12 layers of 128 units x 512 rows: each layer's
    # variance ratio is off by ~sqrt(2/128) = 12 % (random weights), ~3.5 % on the mean of 12 std ratios;
    # 25 % leaves 7 standard errors (the first and last layers have other fans: 64 in, 10 out)
    assert report.factor_per_layer == pytest.approx(factor, rel=0.25)
    hidden = [lay.gain for lay in report.weighted()[1:-1]]
    assert math.exp(sum(map(math.log, hidden)) / len(hidden)) == pytest.approx(factor, rel=0.15)
    if verdict == "stable":
        assert report.flagged() == [] and report.grad_factor_per_layer == pytest.approx(1.0, rel=0.25)
    else:
        assert report.flagged()[-1].label == "22" and report.to_dict()["summary"]["first_flagged"]


# ----------------------------------------------------------------------------- the why-init table
def _documented_output_std() -> dict[str, tuple[float, float]]:
    """Setting -> (low, high) of docs/why_init.md's column "std of the output at init"."""
    text = (ROOT / "docs" / "why_init.md").read_text()
    rows = re.findall(r"^\| `(init=[^`]+)`[^|]* \| ([^|]+) \|", text, flags=re.M)
    out = {}
    for setting, cell in rows:
        values = [float(v) for v in cell.strip().split(" to ")]
        out[setting] = (min(values), max(values))
    return out


DOCUMENTED = _documented_output_std()


def test_the_why_init_table_has_its_six_settings() -> None:
    assert len(DOCUMENTED) == 6 and "init=normal init.std=1.0" in DOCUMENTED


@pytest.mark.parametrize("setting", sorted(DOCUMENTED))
def test_probe_reproduces_the_why_init_output_std_without_training(setting, tmp_path, capsys) -> None:
    code = main(["probe", str(WHY_INIT / "conf" / "config.yaml"), *setting.split(), "--out", str(tmp_path),
                 "--plot", "no"])
    out = capsys.readouterr().out
    assert code == 0 and "batch: data.train_images() -> 1438x64 float32; loss cross_entropy" in out
    document = json.loads((tmp_path / "probe.json").read_text())
    assert document["overrides"] == setting.split() and document["init"]["seed"] == 0
    last = document["layers"][-1]
    assert last["path"] == "layers.19"
    low, high = DOCUMENTED[setting]
    # the table prints two significant digits (some truncated) of seeds 0-2; this is seed 0
    assert low / 1.1 <= last["act_std"] <= high * 1.1
    documented = "explodes" if low > 10 else "vanishes" if high < 0.1 else "stable"
    assert document["summary"]["verdict"] == documented
    assert f"signal {documented}" in out


def test_probe_measures_what_the_why_init_job_measures() -> None:
    """Same numbers as the example's own hand-written hooks (train.signal_at_init)."""
    from hydra_init.integration.presets import compose
    from hydra_init.tools.probe_cli import probe_config

    sys.path.insert(0, str(WHY_INIT))
    try:
        from data import digits
        from train import signal_at_init

        cfg = compose(["init=xavier", "seed=1"], config=WHY_INIT / "conf" / "config.yaml")
        torch.manual_seed(cfg.seed)
        model = hydra_init.instantiate(cfg.model, init=cfg.init)
        x, y = digits()[:2]
        expected = signal_at_init(model, x, y)
        report, _ = probe_config(cfg, cfg.model, cfg.init, build=lambda: hydra_init.instantiate(cfg.model))
        true_labels = probe(model, x, loss=lambda logits: nn.functional.cross_entropy(logits, y))
    finally:
        sys.path.remove(str(WHY_INIT))
    relu = [lay.act_std for lay in report.layers if lay.type == "ReLU"] + [report.layers[-1].act_std]
    assert relu == pytest.approx(expected["activation_std"], rel=1e-5)  # float32 sums in another order
    grads = [lay.grad_std for lay in true_labels.weighted()]  # the job's loss: its true labels
    assert grads == pytest.approx(expected["grad_std"], rel=1e-4)


# ----------------------------------------------------------------------------- width sweeps
def test_width_sweep_grows_under_a_fixed_std_and_stays_flat_when_fan_scaled() -> None:
    widths = [64, 128, 256, 512]
    fixed = [probe(relu_mlp(width=w, depth=4, std=0.05), gaussian(256)) for w in widths]
    scaled = [probe(relu_mlp(width=w, depth=4), gaussian(256)) for w in widths]
    for k in range(4):
        grow = fit_slope(widths, [r.weighted()[k].act_std for r in fixed])
        flat = fit_slope(widths, [r.weighted()[k].act_std for r in scaled])
        # each layer's std is off by ~sqrt(1/width) <= 12 % from its random weights, compounding over
        # k layers; over a width range of ln(8) = 2.1 that moves a slope by ~0.1 at most (0.2 allowed)
        assert grow == pytest.approx(k / 2, abs=0.2), k
        assert abs(flat) < 0.2, k


def test_width_sweep_with_the_callback_gives_the_coordinate_check(tmp_path, capsys) -> None:
    sweep = tmp_path / "sweep"
    done = subprocess.run(
        [sys.executable, str(WHY_INIT / "train.py"), "-m", "model.width=32,512",
         "init=normal,kaiming_uniform",
         "model.depth=4", "train.steps=0", "hydra/callbacks=[init_summary,init_probe]",
         f"hydra.sweep.dir={sweep}"],
        capture_output=True, text=True, timeout=300, cwd=WHY_INIT,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    job = json.loads((sweep / "0" / "probe.json").read_text())
    assert job["overrides"][:2] == ["model.width=32", "init=normal"] and len(job["layers"]) == 7
    assert json.loads((sweep / "0" / "curves.json").read_text())["probe_act_std"]["x"] == [1, 2, 3, 4]

    assert main(["summary", str(sweep)]) == 0
    err = capsys.readouterr().err
    assert "init=normal: 3 grow with model.width" in err, err
    assert "init=kaiming_uniform: flat with model.width" in err, err
    check = json.loads((sweep / "probe_coord_check.json").read_text())
    slopes = {s: [lay["slope"] for lay in layers] for s, layers in check["settings"].items()}
    assert slopes["init=normal"][1:] == pytest.approx([0.5, 1.0, 1.5], abs=0.25)  # k / 2, see above
    assert max(map(abs, slopes["init=kaiming_uniform"])) < 0.25
    for name in ("probe_coord_check.png", "curve_probe_act_std.png", "curve_probe_grad_std.png"):
        assert (sweep / name).read_bytes().startswith(PNG_MAGIC), name


# ----------------------------------------------------------------------------- the command
def test_probe_a_target_infers_its_input_and_draws(tmp_path, capsys) -> None:
    code = main(["probe", "torch.nn.Linear", "init=kaiming_uniform", "model.in_features=32",
                 "model.out_features=8", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0 and "batch: Gaussian 256x32" in out
    assert (tmp_path / "probe.png").read_bytes().startswith(PNG_MAGIC)
    code = main(["probe", "torch.nn.Embedding", "init=normal", "model.num_embeddings=50",
                 "model.embedding_dim=16", "--out", str(tmp_path), "--plot", "no", "--json"])
    document = json.loads(capsys.readouterr().out)
    assert code == 0 and document["batch"] == "tokens 8x128 (vocabulary 50)"
    assert document["layers"][0]["act_std"] == pytest.approx(0.01, rel=0.05)  # 16k draws: 1 % noise


@pytest.mark.parametrize(("argv", "message"), [
    (["+probe.los=mean_square"], "probe.los: unknown probe setting. Valid: input, loss, mode, blocks, "
     "threshold, seed. Hint: did you mean 'loss' or 'blocks'?"),
    (["probe.loss=crossentropy"], "probe.loss: unknown loss 'crossentropy'. Valid: mean_square, "
     "cross_entropy. Hint: did you mean 'cross_entropy'?"),
    (["probe.input={shape:[256,0]}"], "probe.input: bad input shape [256, 0]. Valid: a list of positive "
     "sizes, e.g. [256, 64]"),
    (["probe.input={shape:[4,8],vocab:9}"], "probe.input: unknown input keys ['vocab']"),
])
def test_probe_config_errors_name_the_key(argv, message, tmp_path, capsys) -> None:
    config = WHY_INIT / "conf" / "config.yaml"
    code = main(["probe", str(config), "~probe.input", *(f"+{a}" if "input" in a else a for a in argv),
                 "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and message in err
    assert not (tmp_path / "probe.json").exists()


# ----------------------------------------------------------------------------- the docs
DOC_BLOCKS = python_blocks("docs/probe.md")
DOC = (ROOT / "docs" / "probe.md").read_text()


def test_the_doc_shows_what_the_command_prints(tmp_path, capsys, monkeypatch) -> None:
    command, shown = re.search(r"```bash\n(hydra-init probe [^\n]+)\n```\n\n```text\n(.*?)\n```", DOC,
                               flags=re.S).groups()
    argv = command.split()[1:]
    argv[argv.index("--out") + 1] = str(tmp_path)
    monkeypatch.chdir(ROOT)
    assert main(argv) == 0
    assert capsys.readouterr().out.rstrip("\n") == shown


@pytest.mark.parametrize("index", range(len(DOC_BLOCKS)))
def test_probe_doc_block_runs(index, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    run_block("docs/probe.md", DOC_BLOCKS, index)
