"""Every ```python block of the README runs as written (each in a fresh namespace).

Blocks fenced as ```py are illustrations that need something a unit test cannot
start (several processes, a cluster); they are covered by their own tests.
"""

from __future__ import annotations

import pytest
from helpers import python_blocks, run_block

BLOCKS = python_blocks("README.md")


def test_readme_has_examples() -> None:
    assert len(BLOCKS) >= 5


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_block_runs(index: int, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    run_block("README.md", BLOCKS, index)
