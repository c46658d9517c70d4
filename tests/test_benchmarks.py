"""The benchmark script runs end to end (quick mode: tiny models, one run each).

Correctness only: run.py checks after every timed init that hydra_init, the torch
loop and mmengine produced the same recipe, and exits non-zero otherwise; the
profile replays a truncated-normal tile and checks it against the sampler bit for
bit. No timing is asserted (speed belongs to ``make bench``).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

TITLES = ("### Models", "### Samplers", "### Where the truncated-normal time goes",
          "### Per-parameter overhead", "### Tensor-parallel shards", "### Tile layouts in one process",
          "### Meta-device build", "### GPU")


def test_benchmark_quick_mode_runs_and_prints_every_table():
    run = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--quick"],
        capture_output=True, text=True, timeout=600, cwd=ROOT,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    out = run.stdout
    for title in TITLES:
        assert title in out
    cases = ("ViT-Base/16", "ResNet-50", "ResNet-152", "GPT-2 small", "deep stack", "10,000 small parameters")
    for case in cases:
        assert f"| {case}" in out
    assert "timm-style loop" in out and "`nn.init.trunc_normal_` loop" in out
    assert re.search(r"\| blocks \| Shard\(1\) \| 2 \| 0\.50 \|", out)  # the shard probe ran on gloo
    assert "Command: `python benchmarks/run.py --quick`" in out


def test_every_generated_block_has_markers_in_the_docs():
    """``--write`` fills README/docs blocks by name; a block without markers would go stale."""
    import run

    docs = {path.name: path.read_text() for path in run.DOCS}
    for name in (*run.SECTIONS, "header", "targets"):
        assert any(f"<!-- bench:{name} -->\n" in text and f"<!-- /bench:{name} -->" in text
                   for text in docs.values()), name


def test_write_blocks_replaces_only_between_markers(tmp_path):
    import run

    page = tmp_path / "page.md"
    page.write_text("before\n<!-- bench:models -->\nold\n<!-- /bench:models -->\nafter\n")
    run.write_blocks({"models": "| new |", "meta": "unused"}, paths=(page,))
    assert page.read_text() == "before\n<!-- bench:models -->\n| new |\n<!-- /bench:models -->\nafter\n"
