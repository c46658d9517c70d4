"""Every ```python block of docs/pretrained.md runs as written (each in a fresh namespace and directory)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from hydra_init.checkpoints import sources

DOC = Path(__file__).resolve().parent.parent / "docs" / "pretrained.md"
BLOCKS = re.findall(r"^```python\n(.*?)^```", DOC.read_text(), flags=re.S | re.M)


def test_doc_has_examples() -> None:
    assert len(BLOCKS) >= 5


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_doc_block_runs(index: int, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sources, "_SCHEMES", dict(sources._SCHEMES))  # schemes a block registers are dropped
    exec(compile(BLOCKS[index], f"docs/pretrained.md[python block {index}]", "exec"), {"__name__": "doc"})
