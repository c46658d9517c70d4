"""The why-init experiment end to end, at a tiny budget: multiruns, summary table, pictures.

Runs ``examples/why_init/sweep.py`` (what ``make sweep`` runs) in a subprocess with
one seed, 10 training steps and a 12-layer, 32-wide network, for two of its three
multiruns (three jobs), so it stays around 20 s.

The signal-propagation checks follow from the variance of a ReLU layer,
Var(out) = width * std^2 / 2 * Var(in), so the std of the signal changes by a
factor sqrt(32 * std^2 / 2) per layer: 4 for std 1.0 (4^11 = 4e6 after 11 hidden
layers) and 0.04 for std 0.01 (0.04^11 = 4e-16). Orthogonal weights with the
ReLU gain sqrt(2) keep it of order one. The bounds below sit orders of magnitude
away from those values, so they test the physics, not the sampling noise.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SWEEP = ROOT / "examples" / "why_init" / "sweep.py"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_reduced_sweep_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "why_init"
    done = subprocess.run(
        [sys.executable, str(SWEEP), "--seeds", "0", "--steps", "10", "--out", str(out),
         "--only", "fixed_std", "--only", "orthogonal_relu",
         "model.depth=12", "model.width=32", "train.log_every=5"],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    # the sweep table: one row per job, with its overrides and returned metrics
    table = (out / "init_summary.md").read_text().splitlines()
    rows = [line for line in table[2:] if line.startswith("| ")]
    assert len(rows) == 3
    for setting in ("init=normal init.std=1.0", "init=normal init.std=0.01",
                    "init=orthogonal init.gain=1.4142135623730951"):
        assert sum(setting in row for row in rows) == 1, setting
    assert "metric.test_acc" in table[0] and "metric.output_std_at_init" in table[0]
    records = json.loads((out / "init_summary.json").read_text())
    assert all(r["status"] == "COMPLETED" and r["initialized"] == 24 for r in records)

    # the pictures: metrics, training loss curves, signal propagation at init
    for name in ("init_summary.png", "curve_train_loss.png", "curve_activation_std.png",
                 "curve_grad_std.png"):
        data = (out / name).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 5_000, name

    # each job logged its curves; the signal explodes, vanishes or survives as theory says
    last_std = {}
    for record in records:
        job_dir = out / record["dir"]
        curves = json.loads((job_dir / "curves.json").read_text())
        assert len(curves["activation_std"]["y"]) == 12  # 11 hidden layers + the logits
        loss = curves["train_loss"]
        setting = record["overrides"].split(" seed=")[0]
        last_std[setting] = curves["activation_std"]["y"][-2]
        if setting == "init=normal init.std=1.0":  # exploded logits (~4^11); training stops at a NaN
            assert loss["y"][0] > 1e6
        else:
            assert loss["x"] == [0, 5, 10] and None not in loss["y"]
    assert last_std["init=normal init.std=1.0"] > 1e3
    assert last_std["init=normal init.std=0.01"] < 1e-6
    assert 0.05 < last_std["init=orthogonal init.gain=1.4142135623730951"] < 20
