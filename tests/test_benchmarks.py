"""The benchmark script runs end to end (quick mode: tiny models, one run each).

Correctness only: run.py checks after every timed init that hydra_init, the torch
loop and mmengine produced the same recipe, and exits non-zero otherwise. No
timing is asserted (speed belongs to ``make bench``).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_benchmark_quick_mode_runs_and_prints_every_table():
    run = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--quick"],
        capture_output=True, text=True, timeout=600, cwd=ROOT,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    out = run.stdout
    for title in ("### Models", "### Samplers", "### Meta-device build", "### GPU"):
        assert title in out
    for case in ("ViT-Base/16", "ResNet-50", "GPT-2 small", "deep stack", "10,000 small parameters"):
        assert f"| {case}" in out
    assert "Command: `python benchmarks/run.py --quick`" in out
