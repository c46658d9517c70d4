"""Every ```python block of docs/hydra.md runs as written (each in a fresh namespace and directory),
and the presets table lists every base preset with the knobs its YAML file defines."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from helpers import python_blocks, run_block
from omegaconf import OmegaConf

from hydra_init.integration import conf_dir
from hydra_init.integration.schema import KNOBS

DOC = Path(__file__).resolve().parent.parent / "docs" / "hydra.md"
TEXT = DOC.read_text()
BLOCKS = python_blocks("docs/hydra.md")


def test_doc_has_examples() -> None:
    assert len(BLOCKS) >= 3


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_doc_block_runs(index: int, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    run_block("docs/hydra.md", BLOCKS, index)


def test_presets_table_names_each_preset_and_its_knobs() -> None:
    rows = {m.group(1): m.group(2) for m in re.finditer(r"^\| `(\w+)` \|.*\| ([^|]*) \|$", TEXT, flags=re.M)}
    for name in ("kaiming_conv", "kaiming_uniform", "xavier", "xavier_uniform", "normal", "trunc_normal",
                 "uniform", "constant", "caffe2_xavier", "orthogonal", "lecun_normal", "pytorch_default"):
        knobs = {k for k in KNOBS if OmegaConf.load(conf_dir() / "init" / f"{name}.yaml").get(k) is not None}
        documented = set(re.findall(r"`(\w+)`", rows[name])) & KNOBS
        assert documented == knobs, name


def test_lean_line_counts_in_the_docs_are_what_the_script_prints() -> None:
    import subprocess
    import sys

    out = subprocess.run([sys.executable, str(DOC.parent.parent / "scripts" / "config_lines.py")],
                         capture_output=True, text=True, check=True, timeout=300).stdout
    counts = {m.group(1): m.groups()[1:] for m in re.finditer(
        r"(padded schema|lean): init node (\d+) lines, --cfg job (\d+) lines, --help (\d+) lines, "
        r"'null' in init: (\d+)", out)}
    files = re.search(r"kaiming_conv.yaml: (\d+) lines \(\+ (\d+) in", out).groups()
    assert f"| {files[0]} + {files[1]} lines |" in TEXT
    for label, name in (("bound to the padded schema (before)", "padded schema"), ("lean (now)", "lean")):
        node, job, help_, nulls = counts[name]
        assert f"| {label} | {node} lines | {job} lines | {help_} lines | {nulls} |" in TEXT, out
    readme = (DOC.parent.parent / "README.md").read_text()
    assert f"{counts['lean'][0]} lines instead of {counts['padded schema'][0]}" in readme
