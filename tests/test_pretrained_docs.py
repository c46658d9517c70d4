"""Every ```python block of docs/pretrained.md runs as written (each in a fresh namespace and directory)."""

from __future__ import annotations

import pytest
from helpers import python_blocks, run_block

from hydra_init.pretrained import sources

BLOCKS = python_blocks("docs/pretrained.md")


def test_doc_has_examples() -> None:
    assert len(BLOCKS) >= 5


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_doc_block_runs(index: int, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sources, "_SCHEMES", dict(sources._SCHEMES))  # schemes a block registers are dropped
    run_block("docs/pretrained.md", BLOCKS, index)
