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
